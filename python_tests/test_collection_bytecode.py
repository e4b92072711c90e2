"""collection_bytecode (the plugin conftest.py registers): under PYTHONDONTWRITEBYTECODE=1 a pytest process still
writes the bytecode of what it collects (the rewritten test modules and the modules they import), and nothing that a
test imports while it runs; pytest-xdist workers of one run collect in turn."""

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
