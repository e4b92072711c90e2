"""Collection writes its bytecode (issue 79 item 3: CI's CPU time), a pytest plugin that conftest.py registers.

CI's machine sets PYTHONDONTWRITEBYTECODE=1, so every pytest process rewrote the asserts of every test module it
collected and compiled every module of the checkout it imported, each time: about 18 CPU-s of collecting
python_tests, of which about 9 come back when the rewritten modules' bytecode is there (measured on the 2-core
EPYC: `pytest python_tests --collect-only`, 18.0 CPU-s cold, 8.7 warm). While a process collects, this plugin lets
Python and pytest write that bytecode (``__pycache__``, ignored by git; pytest's own files carry its version in their
name and are read only while the source's size and time match) and puts the setting back after collection: nothing
a test runs or starts writes any. In a pytest-xdist run the first worker (gw0) collects under a lock of the run and
the others wait for it once, then collect side by side reading what it wrote (when they all collected at the same
time each rewrote everything). Only the first leads: until 2026-11-28 every worker held the lock for its whole
collection, so the workers collected one after another, and on the GPU machine's 16 workers the ops, models and
sanitizer stages ran out of time before a test ran (docs/gpu_runs/2026-11-28T063447_nvidia-h200_ops.*; the
lease's diagnosis: python_tests/ops alone, lighter to collect, passed in 44 s). Another pytest session of the same
CI run (the fake-CUDA, runtime-only and emulation sessions) reads what an earlier one wrote."""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from typing import Iterator, Optional

import pytest

XDIST_RUN_ENV = "PYTEST_XDIST_TESTRUNUID"  # the same in every worker of one pytest-xdist run


LEADER = "gw0"  # the worker that collects first, under the lock


def lock_path(environ=os.environ) -> Optional[str]:
    """The lock of one pytest-xdist run's first collection, None outside pytest-xdist."""
    run = environ.get(XDIST_RUN_ENV)
    if not (run and environ.get("PYTEST_XDIST_WORKER")):
        return None
    return os.path.join(tempfile.gettempdir(), f"zsseg-collect-{run}.lock")


def leads(environ=os.environ) -> bool:
    """Whether this process holds the lock for its whole collection (the run's first worker) or only waits for it."""
    return environ.get("PYTEST_XDIST_WORKER", LEADER) == LEADER


@contextlib.contextmanager
def bytecode_written(lock: Optional[str] = None, lead: bool = True) -> Iterator[None]:
    """Python and pytest write bytecode inside (``sys.dont_write_bytecode`` False). With ``lock``: held throughout
    when ``lead``, else only taken and given back first (wait for a leader's collection under way, then collect
    beside the other followers); the setting it had is back afterwards, whatever happens inside."""
    before = sys.dont_write_bytecode
    with contextlib.ExitStack() as stack:
        if lock is not None:
            from filelock import FileLock

            if lead:
                stack.enter_context(FileLock(lock))
            else:
                with FileLock(lock):
                    pass
        sys.dont_write_bytecode = False
        try:
            yield
        finally:
            sys.dont_write_bytecode = before


@pytest.hookimpl(hookwrapper=True)
def pytest_collection(session):
    with bytecode_written(lock_path(), lead=leads()):
        yield
