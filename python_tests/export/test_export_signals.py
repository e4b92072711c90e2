"""`zsseg export` stopped by SIGTERM (what `docker stop`, systemd and CI runners send) cleans up as it does after
Ctrl-C (issue 51, defect 4): it used to die at once and leave its staging folder (~600 MB for a full-size model) and
its lock until a later export removed them. Both signals now end the export with the shell's code, 128 + the
signal's number (130 Ctrl-C, 143 SIGTERM), after the staging folder and then its lock are removed.

The signal is sent at a point the export cannot leave by itself: its verification image is a named pipe no one
writes, so once the export says it verifies, it waits on that pipe with its staging folder written (no timing)."""

from __future__ import annotations

import json
import os
import signal
import sys

import pytest
from processes import popen_text, signalled
from support import subprocess_env

pytest.importorskip("torch", reason="exporting needs torch")

if not sys.platform.startswith("linux"):
    pytest.skip("named pipes and flock: Linux", allow_module_level=True)


def _native(tiny_bundle: str) -> str:
    with open(os.path.join(tiny_bundle, "meta.json"), encoding="utf-8") as handle:
        native = json.load(handle).get("source_checkpoint")
    if not native or not os.path.isdir(native):
        pytest.skip("the tiny bundle was prebuilt elsewhere: its native checkpoint is not here")
    return native


# SIGTERM only: Ctrl-C (SIGINT) took this path already on c783dbf, and run_command's handling of both signals is
# test_signals.py's (a subprocess per command, no export: the suite's time is kept for what only an export shows)
@pytest.mark.parametrize("sig", [signal.SIGTERM], ids=["SIGTERM"])
def test_a_signal_mid_export_removes_the_staging_folder_and_its_lock(tiny_bundle, tmp_path, sig):
    parent = tmp_path / "bundles"
    parent.mkdir()
    never_written = tmp_path / "photo.png"
    os.mkfifo(never_written)  # opening it for reading waits for a writer: the export cannot finish
    argv = [sys.executable, "-m", "zsseg_rt.cli", "export", str(parent / "b"), "--native", _native(tiny_bundle)]
    argv += ["--max-classes", "4", "--verify-images", str(never_written)]
    proc = popen_text(argv, env=subprocess_env(OMP_NUM_THREADS="1"))

    def staged():
        said = []
        for line in proc.stdout:  # the stage line comes once every graph is in the staging folder
            said.append(line)
            if line.startswith("verifying the bundle against PyTorch"):
                break
        else:
            pytest.fail(f"the export ended before verifying: {''.join(said)}{proc.stderr.read()}")
        left = sorted(os.listdir(parent))
        assert len(left) == 2 and left[1] == left[0] + ".lock", left  # the staging folder and its lock
        assert os.listdir(parent / left[0]), "nothing written to the staging folder yet: nothing to clean up"

    out, err = signalled(proc, sig, staged, timeout=120)
    assert proc.returncode == 128 + sig, (proc.returncode, err[-2000:])
    assert f"zsseg export: interrupted ({signal.Signals(sig).name})" in err, err[-2000:]
    assert "Traceback" not in err, err[-2000:]
    assert sorted(os.listdir(parent)) == [], "the staging folder or its lock was left behind"
