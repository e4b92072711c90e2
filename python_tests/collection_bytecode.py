"""Collection writes its bytecode (issue 79 item 3: CI's CPU time), a pytest plugin that conftest.py registers.

CI's machine sets PYTHONDONTWRITEBYTECODE=1, so every pytest process rewrote the asserts of every test module it
collected and compiled every module of the checkout it imported, each time: about 18 CPU-s of collecting
python_tests, of which about 9 come back when the rewritten modules' bytecode is there (measured on the 2-core
EPYC: `pytest python_tests --collect-only`, 18.0 CPU-s cold, 8.7 warm). While a process collects, this plugin lets
Python and pytest write that bytecode (``__pycache__``, ignored by git; pytest's own files carry its version in their
name and are read only while the source's size and time match) and puts the setting back after collection: nothing
a test runs or starts writes any. The pytest-xdist workers of one run collect in turn (a lock per run): the first
writes, the others read; when they collected at the same time each rewrote everything. Another pytest session of
the same CI run (the fake-CUDA, runtime-only and emulation sessions) reads what an earlier one wrote."""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from typing import Iterator, Optional

import pytest

XDIST_RUN_ENV = "PYTEST_XDIST_TESTRUNUID"  # the same in every worker of one pytest-xdist run


def lock_path(environ=os.environ) -> Optional[str]:
    """The lock the workers of one pytest-xdist run collect under, None outside pytest-xdist."""
    run = environ.get(XDIST_RUN_ENV)
    if not (run and environ.get("PYTEST_XDIST_WORKER")):
        return None
    return os.path.join(tempfile.gettempdir(), f"zsseg-collect-{run}.lock")


@contextlib.contextmanager
def bytecode_written(lock: Optional[str] = None) -> Iterator[None]:
    """Python and pytest write bytecode inside (``sys.dont_write_bytecode`` False), under ``lock`` when given;
    the setting it had is back afterwards, whatever happens inside."""
    before = sys.dont_write_bytecode
    with contextlib.ExitStack() as stack:
        if lock is not None:
            from filelock import FileLock

            stack.enter_context(FileLock(lock))
        sys.dont_write_bytecode = False
        try:
            yield
        finally:
            sys.dont_write_bytecode = before


@pytest.hookimpl(hookwrapper=True)
def pytest_collection(session):
    with bytecode_written(lock_path()):
        yield
