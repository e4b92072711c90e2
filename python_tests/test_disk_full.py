"""A write the disk refuses names the file (issue 51, defect 9): on a full disk `zsseg export` said only
`error: [Errno 28] No space left on device`, and a training checkpoint `unexpected pos 704 vs 598` (torch's words for
a failed write). Every writer of the commands' outputs now raises an OSError naming its path, leaves no temporary
file, and the command line adds what to do.

The disk is really full: a small tmpfs mounted in a user namespace of a child process (`unshare -rm`), filled up
first. Where user namespaces are not allowed the tests skip, saying so."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest
from support import subprocess_env

FILL = textwrap.dedent(
    """
    import os, sys
    disk = sys.argv[1]
    with open(os.path.join(disk, "filler"), "wb", buffering=0) as handle:  # the disk full to the last block
        try:
            while True:
                handle.write(b"\\0" * 4096)
        except OSError:
            pass
    """
)

# Every writer, each on the full disk; per writer: the error's type, errno, filename and message, and what is left.
WRITERS = FILL + textwrap.dedent(
    """
    import json, errno
    from pathlib import Path
    from zsseg_rt.console.errors import format_error

    def attempt(name, write, target):
        try:
            write(target)
            found = {"error": None}
        except Exception as exc:
            found = {"error": type(exc).__name__, "errno": getattr(exc, "errno", None),
                     "filename": getattr(exc, "filename", None) or getattr(exc, "path", None), "message": format_error(exc)}
        found["left"] = sorted(n for n in os.listdir(disk) if n != "filler")
        print(json.dumps(dict(found, writer=name, target=target)), flush=True)

    def checkpoint(path):
        import torch
        from zsseg_rt.train.checkpoint import atomic_save
        atomic_save({"weights": torch.zeros(50000)}, path)

    def engine_file(path):
        from zsseg_rt.runtime.engine_cache import atomic_write
        atomic_write(path, b"x" * 100000)

    def label_png(path):
        from zsseg_rt.outputs.image_files import write_image_file
        write_image_file(path, b"x" * 100000, fsync=False)  # as zsseg batch writes its label PNGs

    def metrics(path):
        from zsseg_rt.eval.evaluate import save_json
        save_json({"mIoU": 0.5, "per_class": list(range(20000))}, path)

    def profile(path):
        from zsseg_rt.profiling import write_outputs
        write_outputs({"results": [], "rows": list(range(20000))}, path, plot=False)

    attempt("checkpoint", checkpoint, os.path.join(disk, "iter_10.pth"))
    attempt("engine", engine_file, os.path.join(disk, "engines", "image_encoder.engine"))
    attempt("label_png", label_png, os.path.join(disk, "a", "cat.jpg.png"))
    attempt("metrics", metrics, os.path.join(disk, "metrics.json"))
    attempt("profile", profile, os.path.join(disk, "profile"))
    """
)


def _on_a_full_disk(tmp_path, argv, disk_kb=512):
    """Run ``argv`` (its ``DISK`` items replaced by the mount point) in a child whose ``tmp_path/disk`` is a tmpfs of
    ``disk_kb`` KiB; skip where user namespaces (or tmpfs in them) are not allowed."""
    unshare = shutil.which("unshare")
    if unshare is None or not sys.platform.startswith("linux"):
        pytest.skip("a full disk is a tmpfs in a user namespace: needs Linux and unshare (util-linux)")
    disk = tmp_path / "disk"
    disk.mkdir()
    probe = subprocess.run([unshare, "-rm", "mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(disk)], check=False)
    if probe.returncode != 0:
        pytest.skip("user namespaces (unshare -rm) or tmpfs mounts in them are not allowed here")
    argv = [str(disk) + item[4:] if item.startswith("DISK") else item for item in argv]
    script = f'mount -t tmpfs -o size={disk_kb}k tmpfs "$1" && shift && exec "$@"'
    return subprocess.run(
        [unshare, "-rm", "sh", "-c", script, "sh", str(disk), *argv],
        capture_output=True,
        text=True,
        env=subprocess_env(OMP_NUM_THREADS="1"),
        timeout=600,
        check=False,
    )


def test_every_writer_names_the_file_the_full_disk_refused(tmp_path):
    pytest.importorskip("torch")
    done = _on_a_full_disk(tmp_path, [sys.executable, "-c", WRITERS, "DISK"])
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert [row["writer"] for row in rows] == ["checkpoint", "engine", "label_png", "metrics", "profile"], rows
    for row in rows:
        expected = row["target"] if row["writer"] != "profile" else os.path.join(row["target"], "profile.json")
        assert row["errno"] == 28 and row["filename"] == expected, row
        if row["writer"] == "label_png":  # the outputs' one writer (zsseg_rt.io_safety.atomic_write_bytes)
            assert row["error"] == "OutputWriteError", row
            assert row["message"].startswith(f"cannot write {expected!r}: No space left on device (0 of "), row
            assert row["message"].endswith("no file was written) (free space there, or write to another disk)"), row
        else:
            assert row["error"] == "OSError", row
            assert row["message"].startswith("No space left on device (writ"), row
            assert row["message"].endswith(f"{expected!r} (free space there, or write to another disk)"), row
        assert not [name for name in row["left"] if ".tmp" in name], row  # no temporary file left behind


@pytest.mark.host_only  # zsseg export on the CPU in a child on a full disk: CI's, not the lease's
def test_export_on_a_full_disk_names_where_it_wrote(tiny_bundle, tmp_path):
    pytest.importorskip("torch")
    with open(os.path.join(tiny_bundle, "meta.json"), encoding="utf-8") as handle:
        native = json.load(handle).get("source_checkpoint")
    if not native or not os.path.isdir(native):
        pytest.skip("the tiny bundle was prebuilt elsewhere: its native checkpoint is not here")
    argv = [sys.executable, "-m", "zsseg_rt.cli", "export", "DISK/b", "--native", native, "--max-classes", "4"]
    done = _on_a_full_disk(tmp_path, [*argv, "--verify-images"], disk_kb=2048)
    lines = [line for line in done.stderr.splitlines() if line.strip() and not line.startswith("ONNX graphs:")]
    assert done.returncode == 1 and len(lines) == 1, done.stderr[-3000:]  # one line after the progress bar
    disk = str(tmp_path / "disk")
    assert lines[0].startswith(
        f"zsseg export: error: No space left on device (writing the bundle {disk}/b into its staging folder): "
        f"'{disk}/.zsseg-export-"
    ), lines[0]
    assert lines[0].endswith("(free space there, or write to another disk)"), lines[0]
    assert os.listdir(disk) == []  # nothing left on the (real, unmounted) folder; the tmpfs went with its namespace


# ---- issue 64: N17 (segment on a full disk), D11 (export's and build-engine's words) -------------------------------
def _images(folder, count):
    import numpy as np

    cv2 = pytest.importorskip("cv2")
    os.makedirs(folder, exist_ok=True)
    paths = []
    for index in range(count):
        path = os.path.join(folder, f"img{index}.png")
        cv2.imwrite(path, np.random.default_rng(index).integers(0, 255, (20, 30, 3), dtype=np.uint8))
        paths.append(path)
    return paths


def test_segment_stops_at_the_first_write_the_disk_refuses(tiny_bundle, tmp_path, capsys, monkeypatch):
    """N17 (probe D7b): with 4 photos on a full disk `segment` computed every image, then skipped each with the same
    error (4 lines and "all 4 images failed"). Now the first refused write stops the run: one line, the count."""
    from zsseg_rt import cli

    images, out = _images(tmp_path / "in", 4), tmp_path / "out"
    real_replace, refused = os.replace, []

    def full_disk(source, target, *args, **kwargs):  # the disk takes the class map and the first image's outputs
        taken = (str(out / "img0"), str(out / "classes.json"), str(out / ".zsseg-meaning.json"))  # (the map and its
        # record first since issue 75, E6), then nothing
        if str(target).startswith(str(out)) and not str(target).startswith(taken):
            refused.append(target)
            raise OSError(28, os.strerror(28))
        return real_replace(source, target, *args, **kwargs)

    monkeypatch.setattr(os, "replace", full_disk)
    argv = ["segment", *images, "--bundle", tiny_bundle, "--classes", "cat,dog", "-o", str(out)]
    code = cli.main([*argv, "--backend", "onnxruntime"])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 1 and len(refused) == 1 and len(err) == 1, err  # was: 3 "skipped" lines, each image segmented
    first = str(out / "img1_overlay.png")
    assert err[0].startswith(f"zsseg segment: error: cannot write {first!r}: No space left on device"), err
    stopped = "; stopped at image 2 of 4 (the results of 1 images before it are kept; the others were not segmented)"
    assert stopped in err[0], err
    assert err[0].endswith("(free space there, or write to another disk)"), err


def test_segment_json_on_a_full_disk_prints_the_images_written_before_it(tiny_bundle, tmp_path, capsys, monkeypatch):
    """--json when the disk fills at the second image: stdout is the JSON of the first (written) one, the stop is one
    line on stderr (on the Session, stdout was empty: the results written were not said)."""
    from zsseg_rt import cli

    images, out = _images(tmp_path / "in", 3), tmp_path / "out"
    real_replace = os.replace

    def full_disk(source, target, *args, **kwargs):  # the class map, its record and img0's views, then nothing
        taken = (str(out / "img0"), str(out / "classes.json"), str(out / ".zsseg-meaning.json"))
        if str(target).startswith(str(out)) and not str(target).startswith(taken):
            raise OSError(28, os.strerror(28))
        return real_replace(source, target, *args, **kwargs)

    monkeypatch.setattr(os, "replace", full_disk)
    argv = ["segment", *images, "--bundle", tiny_bundle, "--classes", "cat,dog", "-o", str(out), "--json"]
    code = cli.main([*argv, "--backend", "onnxruntime"])
    captured = capsys.readouterr()
    err = [line for line in captured.err.splitlines() if line.strip()]
    assert code == 1 and len(err) == 1 and "stopped at image 2 of 3" in err[0], err
    rows = json.loads(captured.out)
    assert [row["image"] for row in rows] == [images[0]], rows
    assert rows[0]["overlay"] == str(out / "img0_overlay.png") and os.path.isfile(rows[0]["overlay"])


def test_segment_refuses_a_full_disk_before_loading_the_model(tiny_bundle, tmp_path, capsys, monkeypatch):
    from zsseg_rt import cli

    images, out = _images(tmp_path / "in", 2), tmp_path / "out"
    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda path: real(path)._replace(free=0))
    code = cli.main(["segment", *images, "--bundle", tiny_bundle, "--classes", "cat,dog", "-o", str(out)])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 1 and err == [
        f"zsseg segment: error: cannot write -o {str(out)!r}: its disk is full (0 bytes free at {str(tmp_path)!r}); "
        "nothing was written (free space there, or write to another disk)"
    ], err
    assert not out.exists()


def test_export_refusals_say_the_flag_in_the_users_words(tmp_path, capsys):
    """D11 (probe D11d): `zsseg export` said "pass overwrite=True (CLI: --overwrite)" on the command line."""
    from zsseg_rt import cli

    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "notes.txt").write_text("mine")
    assert cli.main(["export", str(taken)]) == 1
    (line,) = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert line == (
        f"zsseg export: error: {str(taken)!r} exists already: pass --overwrite to replace the bundle (only a bundle "
        "`zsseg export` wrote is replaced, once the new one is verified), or choose another output"
    ), line
    assert cli.main(["export", str(taken), "--overwrite"]) == 1
    (line,) = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert line.startswith(f"zsseg export: error: --overwrite refused: {str(taken)!r} is not a zsseg_rt bundle"), line
    from zsseg_rt.export.overwrite import OverwriteRefused, check_export_destination

    with pytest.raises(OverwriteRefused, match="pass overwrite=True to replace the bundle"):  # Python's words
        check_export_destination(str(taken), False)


def test_export_on_a_disk_full_to_the_last_block_names_the_folder(tmp_path, monkeypatch):
    """D11 (probe D11e): on a disk filled up with dd, `zsseg export full/b` said "error: [Errno 28] No space left on
    device (free space there, ...)": the record of the staging folder's lock file could not be written (an OSError
    naming no file), before the bundle's own writes (which name it: the test above)."""
    from disk_faults import FullDiskOs

    from zsseg_rt.console.errors import format_error
    from zsseg_rt.export import overwrite

    full = tmp_path / "full"
    full.mkdir()
    monkeypatch.setattr(overwrite, "os", FullDiskOs(budget=0))
    with pytest.raises(OSError) as caught:
        overwrite.ExportStaging(str(full), str(full / "b"))
    assert format_error(caught.value) == (
        f"No space left on device (preparing the staging folder of the bundle {full / 'b'}): {str(full)!r} (free "
        "space there, or write to another disk)"
    )
    assert os.listdir(full) == []  # no staging folder, no lock left


def test_build_engine_on_a_full_disk_names_the_engines_folder(tiny_bundle, capsys, monkeypatch):
    """D11 (probe A15, D11e): `zsseg build-engine BUNDLE --backend auto` on a full disk said "[Errno 28] No space left
    on device (free space there, ...)" with no path: a writer that names no file (onnx.save, a compiled cache)."""
    from zsseg_rt import cli
    from zsseg_rt.prepare import auto as auto_precision

    def full_disk(bundle, cache_dir=None, force=False, **options):  # (cache_dir: issue 75 item 7)
        raise OSError(28, os.strerror(28))

    monkeypatch.setattr(auto_precision, "prepare_and_keep", full_disk)
    assert cli.main(["build-engine", tiny_bundle, "--backend", "auto"]) == 1
    (line,) = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    engines = os.path.join(tiny_bundle, "engines")
    assert line == (
        f"zsseg build-engine: error: No space left on device (writing the bundle's engines and records): {engines!r} "
        "(free space there, or write to another disk)"
    ), line
