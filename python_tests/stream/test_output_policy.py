"""One output policy for every file ``zsseg camera`` writes (issue 64, defects N6, N7, N8, N11, N13; the probe at
b991c98): every output checked before the first frame, refused without ``--overwrite`` (an interrupted run's
leftovers too), a label folder that ends up holding this run's maps only and never loses a user's file, a failed run
that replaces nothing, one file mode. In-process runs of the tiny bundle on a 6-frame clip (each well under a
second), one ``kill -9`` in a subprocess."""

from __future__ import annotations

import errno
import json
import os
import stat

import pytest

cv2 = pytest.importorskip("cv2")
from processes import killed_when, zsseg_process  # noqa: E402
from stream_fakes import count_frames, write_band_clip  # noqa: E402


@pytest.fixture
def clip(tmp_path):
    return write_band_clip(tmp_path / "clip.avi", frames=6)


def _camera(capsys, *argv):
    """``zsseg camera ARGV --no-progress`` in this process: ``(exit code, stderr lines)``."""
    from zsseg_rt import cli

    code = cli.main(["camera", *argv, "--no-progress"])
    return code, [line for line in capsys.readouterr().err.splitlines() if line.strip()]


def _visible(folder) -> list:
    """The files of ``folder`` a user sees (``ls``): hidden bookkeeping left out."""
    return sorted(name for name in os.listdir(folder) if not name.startswith("."))


def test_a_label_folder_never_replaces_a_users_files(tmp_path, tiny_bundle, clip, capsys):
    """N6 (probe V7): a user's folder holding notes.txt and a 000001.png of their own. Was: rc 0, their 000001.png
    silently replaced by a label map, with or without --overwrite."""
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("my notes")
    (folder / "000001.png").write_bytes(b"my own picture")
    argv = [clip, "--bundle", tiny_bundle, "--classes", "a,b", "--labels-out", str(folder)]
    code, err = _camera(capsys, *argv)
    assert code == 1 and err == [
        f"zsseg camera: error: {str(folder / '000001.png')!r} exists already: pass --overwrite to replace it (outputs "
        "are replaced only once the run has ended well), or choose another --labels-out"
    ], err
    code, err = _camera(capsys, *argv, "--overwrite")
    assert code == 1 and len(err) == 1, err
    assert err[0].startswith(f"zsseg camera: error: {str(folder / '000001.png')!r} was not written there by zsseg_rt")
    assert "--overwrite replaces only the label maps an earlier run wrote" in err[0], err
    assert (folder / "000001.png").read_bytes() == b"my own picture"
    assert (folder / "notes.txt").read_text() == "my notes"
    assert sorted(os.listdir(folder)) == ["000001.png", "notes.txt"]  # no staging folder, no manifest left


def test_a_label_folder_holds_only_this_runs_maps(tmp_path, tiny_bundle, clip, capsys):
    """N6 (probe V6, V8): into the folder of an earlier, longer run with another vocabulary. Was: refused nothing
    without --overwrite, and with it the old maps 000002-000005 stayed beside a classes.json of the new vocabulary."""
    labels = tmp_path / "labels"
    code, err = _camera(capsys, clip, "--bundle", tiny_bundle, "--classes", "a,b,c", "--labels-out", str(labels))
    assert code == 0, err
    assert _visible(labels) == [f"{i:06d}.png" for i in range(6)] + ["classes.json"]
    before = {name: (labels / name).read_bytes() for name in _visible(labels)}
    again = [clip, "--bundle", tiny_bundle, "--classes", "a,b", "--labels-out", str(labels), "--max-frames", "2"]
    code, err = _camera(capsys, *again)
    assert code == 1 and len(err) == 1 and "(and 6 more) exists already: pass --overwrite" in err[0], err
    assert {name: (labels / name).read_bytes() for name in _visible(labels)} == before
    code, err = _camera(capsys, *again, "--overwrite")
    assert code == 0, err
    assert _visible(labels) == ["000000.png", "000001.png", "classes.json"]  # was: 000002-000005 of a,b,c too
    assert json.loads((labels / "classes.json").read_text())["classes"] == ["a", "b"]


def test_a_failing_label_folder_replaces_no_other_output(tmp_path, tiny_bundle, clip, capsys, monkeypatch):
    """N7 (probe V10): the disk refuses the third label map of a run given --overwrite. Was: exit 1, but the good
    6-frame video given with -o was replaced by a shorter one (docs/usage.md: a failed run replaces nothing)."""
    video, labels, stats = tmp_path / "keep.mp4", tmp_path / "labels", tmp_path / "stats.json"
    code, err = _camera(capsys, clip, "--bundle", tiny_bundle, "--classes", "a,b", "-o", str(video))
    assert code == 0, err
    good = video.read_bytes()
    real_replace, maps = os.replace, []

    def full_disk_for_maps(source, target, *args, **kwargs):
        if str(target).endswith(".png") and not os.path.basename(str(target)).startswith("."):
            maps.append(target)
            if len(maps) > 2:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_replace(source, target, *args, **kwargs)

    monkeypatch.setattr(os, "replace", full_disk_for_maps)
    argv = [clip, "--bundle", tiny_bundle, "--classes", "a,b", "-o", str(video), "--overwrite"]
    code, err = _camera(capsys, *argv, "--labels-out", str(labels), "--stats-json", str(stats))
    monkeypatch.undo()
    assert code == 1 and maps, err
    assert err[-1].startswith("zsseg camera: error: cannot write ") and "No space left on device" in err[-1], err
    assert "000002.png" in err[-1], err
    assert video.read_bytes() == good  # was: a shorter video in its place
    assert not stats.exists() and (not labels.exists() or _visible(labels) == [])


def test_outputs_are_written_with_the_umask_like_every_other_file(tmp_path, tiny_bundle, clip, capsys):
    """N8 (probe V11): label PNGs and classes.json were 0600 (mkstemp's) while the video and stats were 0644."""
    out = tmp_path / "out"
    argv = [clip, "--bundle", tiny_bundle, "--classes", "a,b", "-o", str(out / "v.mp4"), "-o", str(out / "frames/")]
    code, err = _camera(capsys, *argv, "--labels-out", str(out / "labels"), "--stats-json", str(out / "stats.json"))
    assert code == 0, err
    umask = os.umask(0)
    os.umask(umask)
    files = [out / "v.mp4", out / "stats.json"] + [p for d in ("frames", "labels") for p in (out / d).iterdir()]
    modes = {str(path.relative_to(out)): stat.S_IMODE(path.stat().st_mode) for path in files}
    assert set(modes.values()) == {0o666 & ~umask}, modes


def _kill_9_mid_labels(argv, labels):
    """``zsseg camera ARGV --loop`` in a subprocess, killed with SIGKILL once it has written 3 label maps (wherever
    it keeps them: the folder or below it); progress is polled, the deadline only turns a hang into a failure."""
    process = zsseg_process("camera", *argv, "--loop", "--no-progress")

    def maps() -> int:
        return sum(name.endswith(".png") for _, _, names in os.walk(labels) for name in names)

    killed_when(process, lambda: maps() >= 3, "3 label maps written", 300)
    return process.pid


def test_what_a_killed_run_left_is_named_and_removed_only_with_overwrite(tmp_path, tiny_bundle, clip, capsys, caplog):
    """N8 (probe V11): kill -9 left hidden .tmp-*.png files in the label folder that no later run removed or named
    (and the next run wrote beside them without --overwrite)."""
    labels = tmp_path / "labels"
    argv = [clip, "--bundle", tiny_bundle, "--classes", "a,b", "--labels-out", str(labels)]
    pid = _kill_9_mid_labels(argv, labels)
    hidden = sorted(name for name in os.listdir(labels) if name.startswith(".zsseg-staging-"))
    assert _visible(labels) == [] and hidden, os.listdir(labels)  # nothing under a final name; the staging folder
    assert sorted(os.listdir(labels)) == [".zsseg-owner"] + hidden  # and the killed run's owner lock (issue 75)
    code, err = _camera(capsys, *argv)
    assert code == 1 and len(err) == 1, err  # was: rc 0, the maps written beside the leftovers
    stale = f"its owner lock ({labels / '.zsseg-owner'}) was left by process {pid}, which no longer runs"
    assert any(stale in message for message in caplog.messages), caplog.messages
    leftover = str(labels / hidden[0])
    assert err[0].startswith(f"zsseg camera: error: {leftover!r} is left by an interrupted run writing --labels-out")
    assert "pass --overwrite to remove it and write anew" in err[0], err
    code, err = _camera(capsys, *argv, "--overwrite", "--max-frames", "2")
    assert code == 0, err
    assert f"removed {leftover}, left by an interrupted run (--overwrite)" in caplog.messages, caplog.messages
    assert sorted(os.listdir(labels)) == [".zsseg-outputs.json", "000000.png", "000001.png", "classes.json"]


def test_a_partial_video_of_an_interrupted_run_needs_overwrite(tmp_path, tiny_bundle, clip, capsys, caplog):
    """N13 (probe D2c): the next run deleted an interrupted run's out.partial.mp4 without --overwrite. The temporary
    file of a stats JSON a kill interrupted is named the same way."""
    video, partial = tmp_path / "out.mp4", tmp_path / "out.partial.mp4"
    stats, temporary = tmp_path / "stats.json", tmp_path / ".stats.json.0123abcd.tmp"
    partial.write_bytes(b"what the killed run wrote")
    temporary.write_text("{")
    argv = [clip, "--bundle", tiny_bundle, "--classes", "a,b", "-o", str(video), "--stats-json", str(stats)]
    code, err = _camera(capsys, *argv)
    assert code == 1 and err == [
        f"zsseg camera: error: {str(partial)!r} (and 1 more) is left by an interrupted run writing -o {video}: pass "
        "--overwrite to remove it and write anew, or move it away"
    ], err
    assert partial.read_bytes() == b"what the killed run wrote" and not video.exists() and temporary.exists()
    code, err = _camera(capsys, *argv, "--overwrite")
    assert code == 0, err
    for path in (partial, temporary):
        assert f"removed {path}, left by an interrupted run (--overwrite)" in caplog.messages, caplog.messages
        assert not path.exists()
    assert count_frames(video) == 6 and json.loads(stats.read_text())["processed"] == 6


@pytest.mark.parametrize(
    "outputs, message",
    [
        # was: rc 0 and the video replaced by the stats JSON
        (["-o", "{out}", "--stats-json", "{out}"], "-o {out} and --stats-json {out} name the same file"),
        # was: the whole stream processed, then "cannot write"
        (["-o", "{out}", "-o", "{out}"], "-o {out} is given twice: give it once"),
        (["-o", "{dir}/", "--labels-out", "{dir}"], "-o {dir}/ and --labels-out {dir} name the same folder"),
        (
            ["--labels-out", "{dir}", "--stats-json", "{dir}/classes.json"],
            "--stats-json {dir}/classes.json is a file that --labels-out {dir} writes",
        ),
    ],
)
def test_output_collisions_are_refused_before_the_model_loads(tmp_path, tiny_bundle, clip, capsys, outputs, message):
    """N11 (probe U3, U4): two outputs naming one file or folder: one line before anything is written or loaded."""
    out, folder = str(tmp_path / "out.mp4"), str(tmp_path / "frames")
    argv = [clip, "--bundle", tiny_bundle, "--classes", "a,b"] + [part.format(out=out, dir=folder) for part in outputs]
    code, err = _camera(capsys, *argv)
    assert code == 1 and len(err) == 1 and message.format(out=out, dir=folder) in err[0], err
    assert os.listdir(tmp_path) == ["clip.avi"]  # nothing written


def test_classes_and_a_class_file_together_are_refused(tmp_path, tiny_bundle, clip, capsys):
    """N11 (probe U5): both were accepted; the watcher then read README.md as a vocabulary."""
    words = tmp_path / "classes.txt"
    words.write_text("cat\ndog\n")
    code, err = _camera(capsys, clip, "--bundle", tiny_bundle, "--classes", "a,b", "--class-file", str(words))
    assert code == 1 and len(err) == 1, err
    assert "give the vocabulary once: --classes 'a,b' or --class-file" in err[0] and "not both" in err[0], err


def test_a_full_disk_is_refused_before_the_first_frame(tmp_path, tiny_bundle, clip, capsys, monkeypatch):
    """All outputs checked before the first frame, the disk's free space too (a disk that fills up while writing
    stops the run at that write: test_video_output_safety.py)."""
    import shutil

    real = shutil.disk_usage
    full = str(tmp_path / "full")

    def usage(path):
        found = real(path)
        return found._replace(free=0) if str(path).startswith(full) or str(path) == str(tmp_path) else found

    monkeypatch.setattr(shutil, "disk_usage", usage)
    os.mkdir(full)
    code, err = _camera(capsys, clip, "--bundle", tiny_bundle, "--classes", "a,b", "-o", f"{full}/out.mp4")
    assert code == 1 and err == [
        f"zsseg camera: error: cannot write -o {full + '/out.mp4'!r}: its disk is full (0 bytes free at {full!r}); "
        "nothing was written (free space there, or write to another disk)"
    ], err
    assert os.listdir(full) == []


def test_the_stream_loop_puts_no_output_in_place_after_a_failure(tmp_path, fake_engine):
    """N7 for the Python API: a sink that fails mid-run made ``StreamRunner.run()`` still close (finalise and rename)
    the video sink beside it. Now every sink is aborted after a failure: the old video stays."""
    from stream_fakes import numbered_frame

    from zsseg_rt.stream import CallableSource, FrameSink, StreamRunner, VideoFileSink

    class FullDisk(FrameSink):
        name = "full disk"

        def __init__(self):
            self.frames = 0

        def write(self, frame):
            self.frames += 1
            if self.frames == 3:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    video = tmp_path / "out.avi"
    video.write_bytes(b"the old video")
    source = CallableSource(lambda: (numbered_frame(i) for i in range(6)), live=False)
    runner = StreamRunner(fake_engine, source, [VideoFileSink(str(video)), FullDisk()], drop_stale=False)
    with pytest.raises(OSError, match="No space left on device"):
        runner.run(handle_signals=False)
    assert video.read_bytes() == b"the old video"  # was: the 3 frames written so far, as the video
    assert count_frames(tmp_path / "out.partial.avi") == 3  # what it was given, kept under its partial name
