"""A private local Ray cluster goes with the process that started it (issue 37, defect 4): after `kill -9` of a
running `zsseg batch`, no process of its cluster is left (Ray 2.60 left `ray::DashboardAgent` and
`ray::RuntimeEnvAgent` re-parented to init for a minute or more, holding loopback ports, and workers for seconds).
The watchdog (zsseg_rt/scale/reaper.py) is tested alone first (no Ray, a second), then with a real `zsseg batch`."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest
from phase_sweep import command_line, descendants, left_over, start_time, wait_until_gone
from support import subprocess_env

pytestmark = pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="reads Linux's /proc")


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie has ended: it only waits for its parent to collect it)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _kill_all(pids) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


_FAKE_DRIVER = r"""
import os, subprocess, sys, time
from zsseg_rt.scale import REAPER_TOKEN_ENV, _REAPER_PIPES, _start_cluster_reaper

session = sys.argv[1]
assert _start_cluster_reaper() is not None
sleeper = [sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"]
# a process of the cluster: carries the mark, ignores SIGTERM, in a session of its own (re-parented when we die)
marked = subprocess.Popen(sleeper, start_new_session=True)
os.environ.pop(REAPER_TOKEN_ENV)
# an agent whose environment shows no mark (setproctitle overwrites it) but that holds a log file of the session
agent = subprocess.Popen(
    [sys.executable, "-c", f"import time; log = open({session!r} + '/agent.log', 'w'); print('up', flush=True); "
     "time.sleep(600)"], stdout=subprocess.PIPE, start_new_session=True)
assert agent.stdout.readline().strip() == b"up"
bystander = subprocess.Popen(sleeper, start_new_session=True)  # neither: not the watchdog's business
# a reader of the session's logs (tail -f): not the cluster's either
reader = subprocess.Popen(
    [sys.executable, "-c", f"import time; log = open({session!r} + '/agent.log'); print('up', flush=True); "
     "time.sleep(600)"], stdout=subprocess.PIPE, start_new_session=True)
assert reader.stdout.readline().strip() == b"up"
os.write(_REAPER_PIPES[-1], f"session {session}\n".encode())
print(marked.pid, agent.pid, bystander.pid, reader.pid, flush=True)
time.sleep(600)
"""


def test_watchdog_ends_the_marked_processes_of_a_killed_driver(tmp_path):
    """Without Ray: a driver starts the watchdog and four processes (one marked, ignoring SIGTERM; one writing a
    file in the session folder; one neither; one reading that file), then is killed with SIGKILL. The first two end
    (SIGKILL after the grace period for the first), the other two are left alone, and the watchdog exits."""
    session = tmp_path / "session"
    session.mkdir()
    driver = subprocess.Popen(
        [sys.executable, "-c", _FAKE_DRIVER, str(session)], stdout=subprocess.PIPE, text=True, env=subprocess_env()
    )
    spared: list = []
    try:
        line = driver.stdout.readline()
        assert line.strip(), f"the fake driver failed (exit code {driver.poll()})"
        marked, agent, *spared = (int(v) for v in line.split())
        family = descendants(driver.pid)
        watchdogs = [pid for pid in family if "reaper.py" in command_line(pid)]
        assert len(watchdogs) == 1 and all(_alive(pid) for pid in (marked, agent, *spared))
        start = time.monotonic()
        driver.kill()
        driver.wait()
        left = wait_until_gone({marked: start_time(marked), agent: start_time(agent)}, "", 15)
        assert not left, f"still running {time.monotonic() - start:.1f} s after the driver's SIGKILL: {left}"
        assert all(_alive(pid) for pid in spared), "the watchdog ended a process that was not the cluster's"
        deadline = time.monotonic() + 15
        while _alive(watchdogs[0]) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(watchdogs[0]), "the watchdog did not exit after its work"
    finally:
        if driver.poll() is None:
            driver.kill()
        _kill_all([*descendants(driver.pid), *spared])


@pytest.mark.slow  # a Ray cluster of its own (~20 s on 2 cores)
def test_kill_9_of_batch_leaves_no_ray_process(tmp_path, tiny_bundle):
    """`zsseg batch` killed with SIGKILL mid-run (its first manifest row written, images left): within 30 s no
    process of its cluster is left: none of the driver's descendants seen just before the kill (GCS, raylet,
    dashboard, monitors, agents, workers), and none naming the run's private Ray folder (RAY_TMPDIR) in its command
    line or open files. Before: DashboardAgent and RuntimeEnvAgent ran on for a minute or more."""
    pytest.importorskip("ray", reason="the scale tests need the 'scale' extra (ray[data,serve])")
    import cv2
    import numpy as np

    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for index in range(200):
        cv2.imwrite(str(images / f"im{index:03d}.png"), rng.integers(0, 256, (48, 64, 3), dtype=np.uint8))
    out = tmp_path / "out"
    ray_tmp = tempfile.mkdtemp(prefix="zsr", dir="/tmp")  # short: Ray's socket paths must fit in 107 bytes
    env = subprocess_env(RAY_TMPDIR=ray_tmp)
    env.pop("RAY_ADDRESS", None)
    command = [sys.executable, "-m", "zsseg_rt.cli", "batch", str(images), str(out), "--bundle", tiny_bundle]
    command += ["--classes", "cat,dog", "--workers", "1", "--num-cpus", "2", "--batch-size", "1"]
    command += ["--backend", "onnxruntime", "--no-progress"]
    log = open(tmp_path / "driver.log", "wb")
    driver = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    snapshot: dict = {}
    try:
        deadline = time.monotonic() + 240
        manifest = out / "manifest.jsonl"
        while not (manifest.is_file() and manifest.stat().st_size):
            assert driver.poll() is None, (tmp_path / "driver.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "no manifest row after 240 s"
            time.sleep(0.2)
        snapshot = descendants(driver.pid)
        names = [command_line(pid) for pid in snapshot]
        for part in ("gcs_server", "raylet", "ray::"):  # the check below sees the cluster: it can fail
            assert any(part in name for name in names), (part, names)
        assert driver.poll() is None, "the batch ended before it could be killed mid-run"
        start = time.monotonic()
        driver.kill()
        driver.wait()
        left = wait_until_gone(snapshot, ray_tmp, 30)
        assert not left, f"{time.monotonic() - start:.0f} s after kill -9 of the driver these still run: {left}"
        print(f"{len(snapshot)} processes of the run; none left {time.monotonic() - start:.1f} s after kill -9")
    finally:
        log.close()
        if driver.poll() is None:
            driver.kill()
            driver.wait()
        _kill_all(left_over(snapshot, ray_tmp))  # a failing run leaves nothing behind either
        shutil.rmtree(ray_tmp, ignore_errors=True)
