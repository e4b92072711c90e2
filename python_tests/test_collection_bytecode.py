"""collection_bytecode (the plugin conftest.py registers): under PYTHONDONTWRITEBYTECODE=1 a pytest process still
writes the bytecode of what it collects (the rewritten test modules and the modules they import), and nothing that a
test imports while it runs; the other pytest-xdist workers of one run wait for the first one's collection, then
collect side by side (not in turn: 16 workers in turn timed three GPU stages out before a test ran)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import collection_bytecode
import pytest
from support import subprocess_env

HERE = Path(__file__).resolve().parent


def _project(root: Path) -> Path:
    root.mkdir()
    (root / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
    (root / "helper_mod.py").write_text("VALUE = 1\n", encoding="utf-8")
    (root / "late_mod.py").write_text("VALUE = 2\n", encoding="utf-8")
    (root / "test_a.py").write_text(
        "import helper_mod\n\n\ndef test_late():\n    import late_mod\n\n    assert late_mod.VALUE == helper_mod.VALUE + 1\n",
        encoding="utf-8",
    )
    return root


def _pytest(root: Path, *plugin: str) -> list:
    env = subprocess_env(str(HERE), str(root), PYTHONDONTWRITEBYTECODE="1")
    for name in ("PYTEST_XDIST_WORKER", "PYTEST_XDIST_TESTRUNUID", "PYTEST_ADDOPTS"):
        env.pop(name, None)
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist", *plugin, "test_a.py"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    return sorted(p.name.split(".")[0] for p in root.rglob("*.pyc"))


def test_collection_writes_its_bytecode_and_the_tests_none(tmp_path):
    # the control: PYTHONDONTWRITEBYTECODE=1 alone, no bytecode anywhere
    assert _pytest(_project(tmp_path / "plain")) == []
    # with the plugin: the rewritten test module and what it imports at collection; not what the test imports
    assert _pytest(_project(tmp_path / "plugin"), "-p", "collection_bytecode") == ["helper_mod", "test_a"]


def test_the_setting_comes_back_whatever_happens_inside(monkeypatch):
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    with pytest.raises(KeyError):
        with collection_bytecode.bytecode_written():
            assert sys.dont_write_bytecode is False
            raise KeyError("inside")
    assert sys.dont_write_bytecode is True


MEETING = """import os, pathlib, time

worker = os.environ.get("PYTEST_XDIST_WORKER")
if worker in ("gw1", "gw2"):  # two followers meet while both collect: impossible when workers collect in turn
    here = pathlib.Path(os.environ["MEET_DIR"])
    (here / worker).touch()
    other = "gw2" if worker == "gw1" else "gw1"
    deadline = time.monotonic() + float(os.environ["MEET_WAIT_S"])
    while not (here / other).exists():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{worker} collected alone: {other} never collected beside it")
        time.sleep(0.01)


def test_met():
    pass
"""
IN_TURN = """import pytest
from filelock import FileLock


@pytest.hookimpl(hookwrapper=True)
def pytest_collection(session):  # the defect of 6ba992f: every worker held the run's lock for its whole collection
    with FileLock(str(session.config.rootpath / "turn.lock")):
        yield
"""


def _meeting(root: Path, wait_s: float, *plugin: str):
    root.mkdir()
    (root / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
    (root / "test_meet.py").write_text(MEETING, encoding="utf-8")
    (root / "in_turn.py").write_text(IN_TURN, encoding="utf-8")
    env = subprocess_env(str(HERE), str(root), MEET_DIR=str(root), MEET_WAIT_S=str(wait_s))
    for name in ("PYTEST_XDIST_WORKER", "PYTEST_XDIST_TESTRUNUID", "PYTEST_ADDOPTS"):
        env.pop(name, None)
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "3", *plugin, "test_meet.py"]
    return subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=300)


def test_the_workers_after_the_first_collect_side_by_side(tmp_path):
    # the control: workers that collect in turn never meet (the first to arrive waits for one that cannot come)
    in_turn = _meeting(tmp_path / "in_turn", 3.0, "-p", "in_turn")
    assert in_turn.returncode != 0 and "collected alone" in in_turn.stdout + in_turn.stderr, in_turn.stdout
    # the plugin: gw1 and gw2 wait at most for gw0's collection, then collect together and meet
    run = _meeting(tmp_path / "plugin", 120.0, "-p", "collection_bytecode")
    assert run.returncode == 0 and "1 passed" in run.stdout, run.stdout + run.stderr
    assert (tmp_path / "plugin" / "gw1").exists() and (tmp_path / "plugin" / "gw2").exists()


def test_only_the_first_worker_holds_the_lock_throughout(tmp_path):
    assert collection_bytecode.leads({}) and collection_bytecode.leads({"PYTEST_XDIST_WORKER": "gw0"})
    assert not collection_bytecode.leads({"PYTEST_XDIST_WORKER": "gw1"})
    lock = str(tmp_path / "collect.lock")
    from filelock import FileLock, Timeout

    with collection_bytecode.bytecode_written(lock, lead=False):  # a follower gave the lock back before collecting
        FileLock(lock).acquire(timeout=0.05)
        FileLock(lock).release(force=True)
    held = FileLock(lock)
    held.acquire()
    try:  # a follower waits while the leader collects
        with pytest.raises(Timeout):
            FileLock(lock, timeout=0.05).acquire()
    finally:
        held.release()


def test_the_workers_of_one_run_share_one_lock(tmp_path):
    assert collection_bytecode.lock_path({}) is None  # no pytest-xdist: nothing to wait for
    assert collection_bytecode.lock_path({"PYTEST_XDIST_TESTRUNUID": "abc"}) is None  # the controller
    run = {"PYTEST_XDIST_TESTRUNUID": "abc", "PYTEST_XDIST_WORKER": "gw0"}
    assert collection_bytecode.lock_path(run) == collection_bytecode.lock_path(dict(run, PYTEST_XDIST_WORKER="gw1"))
    assert collection_bytecode.lock_path(run) != collection_bytecode.lock_path(dict(run, PYTEST_XDIST_TESTRUNUID="x"))
    lock = str(tmp_path / "collect.lock")
    with collection_bytecode.bytecode_written(lock):  # held inside: another taker waits
        from filelock import FileLock, Timeout

        with pytest.raises(Timeout):
            FileLock(lock).acquire(timeout=0.05)
    FileLock(lock).acquire(timeout=0.05)  # released after
