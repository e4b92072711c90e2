"""Two commands on one output (issue 75, item 2 and E1), under a busy loop on every core: a run held at a phase of
its start (after it claimed its outputs) by the phase hook's socket, a second run on the same output refused at its
start with the first run's process, ``--overwrite`` included, the first run then ending well with its own frames; and
a run killed while it held its outputs, whose lock the next run takes over and says. No sleeps: the phase hook is the
handshake, and every wait is bounded with a message naming what did not happen.

The probe (B53, B54 at 0707000): two ``zsseg camera`` runs on one ``-o``: both rc 0, both "wrote N frames", the file
held the second run's 20 frames; the second run's ``--overwrite`` removed the first one's ``race.partial.mp4``."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile

import pytest
from support import subprocess_env

cv2 = pytest.importorskip("cv2")
from phase_sweep import CHILD, HOOK_ENV, _accept  # noqa: E402
from stream_fakes import count_frames, write_band_clip  # noqa: E402

REACH_S = 300.0  # a command's start-up under a busy loop on every core (imports, the tiny bundle): well under this


@pytest.fixture
def busy_cores():
    """A busy loop on every core while the test runs (the concurrency cases must not depend on timing)."""
    loops = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(os.cpu_count() or 1)]
    try:
        yield len(loops)
    finally:
        for loop in loops:
            loop.kill()
            loop.wait()


@contextlib.contextmanager
def held_at(phase: str, argv):
    """``zsseg ARGV`` in a subprocess, held at ``phase`` (it waits there until the connection yielded is closed);
    yields ``(process, connection, stderr file)``. A command that never reaches the phase fails the test, named."""
    scratch = tempfile.mkdtemp(prefix="zso", dir="/tmp")  # short: a Unix socket's path fits in 107 bytes
    address = os.path.join(scratch, "s")
    err = open(os.path.join(scratch, "err"), "w+")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(address)
    listener.listen(1)
    env = subprocess_env(OMP_NUM_THREADS="1", **{HOOK_ENV: f"{phase}@{address}"})
    process = subprocess.Popen(
        [sys.executable, "-c", CHILD, *argv], stdout=subprocess.DEVNULL, stderr=err, env=env, text=True
    )
    try:
        connection = _accept(listener, process, REACH_S)
        if connection is None:
            err.seek(0)
            raise AssertionError(f"zsseg {argv[0]} never reached {phase} (exit {process.poll()}): {err.read()[-2000:]}")
        with connection:
            said = connection.makefile().readline().split()
            assert said == [phase, str(process.pid)], said
            yield process, connection, err
    finally:
        listener.close()
        if process.poll() is None:
            process.kill()
            process.wait()
        err.close()
        shutil.rmtree(scratch, ignore_errors=True)


def _camera(capsys, *argv):
    from zsseg_rt import cli

    code = cli.main(["camera", *argv, "--no-progress"])
    return code, [line for line in capsys.readouterr().err.splitlines() if line.strip()]


def _ended(process, err, seconds: float = REACH_S) -> str:
    try:
        process.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"the held run did not end within {seconds:g} s once let go") from None
    err.seek(0)
    return err.read()


@pytest.mark.time_bound(900)
def test_a_second_camera_run_on_a_running_runs_output_is_refused_with_its_process(
    tmp_path, tiny_bundle, busy_cores, capsys
):
    """E1 (B54): run A holds -o race.mp4 (held at the start of its stream); run B, and run C with --overwrite, on
    the same -o are refused at their start with A's process (were: B "left by an interrupted run", C removed A's
    partial and replaced A's video); A then ends well and its video holds its own 6 frames."""
    clip = write_band_clip(tmp_path / "clip.avi", frames=6)
    out = tmp_path / "race.mp4"
    first = ["camera", clip, "--bundle", tiny_bundle, "--classes", "a,b", "-o", str(out), "--no-progress"]
    with held_at("camera:stream-start", first) as (process, connection, err):
        for extra in ([], ["--overwrite"]):
            argv = [clip, "--bundle", tiny_bundle, "--classes", "c,d,e", "--max-frames", "2", "-o", str(out), *extra]
            code, lines = _camera(capsys, *argv)
            assert code == 1 and lines == [
                f"zsseg camera: error: -o {str(out)!r} is being written by another run now (process {process.pid}): "
                "wait for it to end, or choose another -o (--overwrite never takes an output from a running run)"
            ], lines
        connection.close()  # let A go on
        log = _ended(process, err)
    assert process.returncode == 0, log
    assert f"wrote 6 frames to {out}" in log, log
    assert count_frames(out) == 6 and not os.path.lexists(tmp_path / "race.partial.mp4")
    assert sorted(os.listdir(tmp_path)) == ["clip.avi", "race.mp4"]  # no lock file left either


@pytest.mark.time_bound(900)
def test_a_camera_run_takes_over_the_outputs_of_a_killed_run_and_says_so(
    tmp_path, tiny_bundle, busy_cores, capsys, caplog
):
    """A run killed (SIGKILL) while it held its -o and --labels-out: the next run names the stale locks with the
    killed run's process, takes the outputs over (its leftovers removed with --overwrite, named) and ends well."""
    clip = write_band_clip(tmp_path / "clip.avi", frames=6)
    out, labels = tmp_path / "out.mp4", tmp_path / "labels"
    argv = [clip, "--bundle", tiny_bundle, "--classes", "a,b", "-o", str(out), "--labels-out", str(labels)]
    with held_at("camera:stream-start", ["camera", *argv, "--no-progress"]) as (process, _, _err):
        process.kill()
        assert process.wait(timeout=60) == -9
    assert os.path.exists(tmp_path / ".out.mp4.zsseg-owner") and os.path.exists(labels / ".zsseg-owner")
    code, lines = _camera(capsys, *argv, "--overwrite")
    assert code == 0, lines
    for option, path, lock in (
        ("-o", out, tmp_path / ".out.mp4.zsseg-owner"),
        ("--labels-out", labels, labels / ".zsseg-owner"),
    ):
        said = f"{option} {path}: its owner lock ({lock}) was left by process {process.pid}, which no longer runs"
        assert any(message.startswith(said) for message in caplog.messages), caplog.messages
    assert count_frames(out) == 6 and sorted(os.listdir(labels))[-1] == "classes.json"
    assert not os.path.lexists(tmp_path / ".out.mp4.zsseg-owner") and not os.path.lexists(labels / ".zsseg-owner")


@pytest.mark.time_bound(900)
def test_a_second_segment_run_on_a_running_runs_folder_is_refused_and_a_killed_ones_taken_over(
    tmp_path, tiny_bundle, busy_cores, capsys
):
    """E1 for ``zsseg segment -o DIR``: run A holds DIR (held once it claimed it); run B, and B with --overwrite
    (which removes an interrupted run's temporary files there), are refused at their start with A's process; A then
    writes its results. A run killed while it held DIR: the next run says so and writes."""
    from zsseg_rt import cli

    photo = str(tmp_path / "p.png")
    cv2.imwrite(photo, __import__("numpy").full((20, 30, 3), 90, "uint8"))
    out = tmp_path / "out"
    argv = [photo, "--bundle", tiny_bundle, "--classes", "a,b", "-o", str(out), "--backend", "onnxruntime"]
    with held_at("segment:outputs-planned", ["segment", *argv]) as (process, connection, err):
        for extra in ([], ["--overwrite"]):
            code = cli.main(["segment", *argv, *extra])
            lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
            assert code == 1 and lines == [
                f"zsseg segment: error: -o {str(out)!r} is being written by another run now (process "
                f"{process.pid}): wait for it to end, or choose another -o (--overwrite never takes an output from a "
                "running run)"
            ], lines
        connection.close()
        log = _ended(process, err)
    assert process.returncode == 0, log
    assert sorted(os.listdir(out)) == [".zsseg-meaning.json", "classes.json", "p_overlay.png"]
    with held_at("segment:outputs-planned", ["segment", *argv, "--overwrite"]) as (process, _, _err):
        process.kill()
        assert process.wait(timeout=60) == -9
    assert cli.main(["segment", *argv, "--overwrite"]) == 0
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    said = f"zsseg segment: note: -o {out}: its owner lock ({out / '.zsseg-owner'}) was left by process {process.pid}"
    assert any(line.startswith(said) for line in lines), lines
    assert sorted(os.listdir(out)) == [".zsseg-meaning.json", "classes.json", "p_overlay.png"]
