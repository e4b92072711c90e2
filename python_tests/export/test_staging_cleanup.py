"""An export killed with ``kill -9`` leaves its hidden staging folder beside the bundle (issue 37, defect 3: 597 MB
each, never removed or mentioned). The next export into the same folder removes the staging folders whose owner
process is gone, says so, and never touches the staging folder of an export that is still running (its owner lock
is held) nor one whose owner cannot be told (no lock file: an older zsseg_rt)."""

from __future__ import annotations

import glob
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from zsseg_rt import cli

pytest.importorskip("torch", reason="exporting needs torch")

# A running export's staging folder, as zsseg_rt.export.overwrite lays it out: the folder, and beside it its lock file,
# flock-ed by the owner for as long as it runs, recording the owner. The process runs until its stdin closes.
LIVE_EXPORT = r"""
import fcntl, json, os, socket, sys, time
path = os.path.join(sys.argv[1], ".zsseg-export-stillrun")
os.mkdir(path)
with open(os.path.join(path, "image_encoder.onnx"), "wb") as handle:
    handle.write(b"x" * 4096)
fd = os.open(path + ".lock", os.O_RDWR | os.O_CREAT, 0o644)
fcntl.flock(fd, fcntl.LOCK_EX)
record = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(), "destination": ""}
os.write(fd, json.dumps(record).encode())
print("READY", flush=True)
sys.stdin.read()
"""


def _staging_with_data(parent, exclude):
    """A staging folder of the export being run that already holds a file (its first graph), or None."""
    for path in glob.glob(os.path.join(parent, ".zsseg-export-*")):
        if path in exclude or path.endswith(".lock") or not os.path.isdir(path):
            continue
        if any(files for _root, _dirs, files in os.walk(path)):
            return path
    return None


def test_a_killed_export_is_cleaned_up_by_the_next_one_and_a_live_one_is_kept(tmp_path, tiny_bundle, capsys):
    if not sys.platform.startswith("linux"):
        pytest.skip("kill -9 and flock: Linux")
    native = os.path.join(os.path.dirname(tiny_bundle), "native")
    parent = tmp_path / "bundles"
    parent.mkdir()
    out = parent / "b"
    live = str(parent / ".zsseg-export-stillrun")
    unowned = str(parent / ".zsseg-export-olderzss")  # left by a zsseg_rt without owner locks: owner unknown
    os.mkdir(unowned)
    with open(os.path.join(unowned, "meta.json"), "w", encoding="utf-8") as handle:
        handle.write("{}")
    holder = subprocess.Popen(
        [sys.executable, "-c", LIVE_EXPORT, str(parent)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    argv = ["export", str(out), "--native", native, "--max-classes", "4", "--verify-images"]
    export = subprocess.Popen(
        [sys.executable, "-m", "zsseg_rt.cli", *argv], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        assert holder.stdout.readline().strip() == "READY"
        deadline = time.monotonic() + 600
        stale = None
        while stale is None and time.monotonic() < deadline and export.poll() is None:
            time.sleep(0.2)
            stale = _staging_with_data(str(parent), {live, unowned})
        assert stale is not None, "the export never wrote into a staging folder"
        os.kill(export.pid, signal.SIGKILL)  # as the issue did: no handler runs, nothing is cleaned up
        export.wait(30)
        assert os.path.isdir(stale), "the killed export left no staging folder: nothing to test"

        assert cli.main(argv) == 0  # the next export into the same folder
        said = capsys.readouterr().out
        assert not os.path.exists(stale) and not os.path.exists(stale + ".lock"), os.listdir(parent)
        assert f"removed {stale}" in said and "interrupted export" in said and "no longer running" in said, said
        assert os.path.isdir(live) and os.path.isfile(live + ".lock")  # a running export's folder: untouched
        assert os.path.isfile(os.path.join(live, "image_encoder.onnx"))
        assert os.path.isdir(unowned) and f"kept {unowned}" in said, said  # owner unknown: kept, and said
        assert sorted(os.listdir(parent)) == sorted(
            ["b", os.path.basename(live), os.path.basename(live) + ".lock", os.path.basename(unowned)]
        )
        with open(out / "meta.json", encoding="utf-8") as handle:
            assert json.load(handle)["format_version"]
    finally:
        for process in (export, holder):
            if process.poll() is None:
                process.kill()
                process.wait()
        if holder.stdin:
            holder.stdin.close()


def test_a_bundle_moved_aside_by_a_killed_export_is_put_back(tmp_path, capsys):
    """replace_directory's fallback (no atomic exchange) renames the old bundle to .NAME.old-<staging> before it
    renames the new one in: an export killed between the two leaves the only copy there; it is renamed back."""
    from zsseg_rt.export.overwrite import ExportStaging, remove_stale_staging

    staging = ExportStaging(str(tmp_path), str(tmp_path / "b"))
    name = os.path.basename(staging.path)
    aside = tmp_path / f".b.old-{name}"
    os.rename(staging.path, tmp_path / "b")  # the old bundle, as the fallback's first rename leaves it ...
    os.rename(tmp_path / "b", aside)
    (aside / "meta.json").write_text("{}")
    kept = remove_stale_staging(str(tmp_path), say=print)  # the owner (this process) holds the lock: kept
    assert kept == [] and aside.is_dir()
    staging._fd, fd = None, staging._fd  # ... then the owner dies: its lock is released, its file stays
    os.close(fd)
    done = remove_stale_staging(str(tmp_path), say=print)
    said = capsys.readouterr().out
    assert done == [str(aside)] and (tmp_path / "b" / "meta.json").is_file() and not aside.exists()
    assert "restored" in said and sorted(os.listdir(tmp_path)) == ["b"], (said, os.listdir(tmp_path))
