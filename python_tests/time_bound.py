"""Every test bounded in time: a hang is a named failure, not a stalled job (issue 75, item 8: a mutant of the serve
bound was caught only by a 600 s hang, and the venv has no pytest-timeout).

Each phase of a test (set-up, call, tear-down) runs under a wall-clock bound: ``@pytest.mark.time_bound(SECONDS)``,
else ``$ZSSEG_TEST_TIME_BOUND`` (0: none), else :data:`DEFAULT_S` (generous: the longest test of a CI run on a
loaded 2-core machine takes a few minutes). Past it, the stacks of every thread are printed and the test fails with
``NODEID: the call ran past its time bound of N s (a hang?)`` (SIGALRM in the main thread, where pytest and
pytest-xdist's workers run tests). Code blocked where Python cannot raise (a native wait that ignores signals) is
ended a minute later by faulthandler, which prints the stacks and exits: pytest-xdist then names the test its worker
crashed in.

The hooks are registered by conftest.py (:func:`register`); tests that wait on something themselves still bound each wait with a
message of its own (an event, a process), which says more than this last resort.
"""

from __future__ import annotations

import faulthandler
import os
import signal
import sys
import threading

import pytest

__all__ = ["DEFAULT_S", "TIME_BOUND_ENV", "register", "time_bound_s"]

TIME_BOUND_ENV = "ZSSEG_TEST_TIME_BOUND"
DEFAULT_S = 1200.0
NATIVE_GRACE_S = 60.0  # then faulthandler ends a process whose main thread cannot raise


def register(config) -> None:
    """Register this module's hooks and its marker (conftest.py's ``pytest_configure``)."""
    if not config.pluginmanager.has_plugin("zsseg_time_bound"):
        config.pluginmanager.register(sys.modules[__name__], "zsseg_time_bound")
    config.addinivalue_line(
        "markers",
        "time_bound(seconds): this test's bound per phase (set-up, call, tear-down); a hang past it is a named "
        f"failure (python_tests/time_bound.py; default ${TIME_BOUND_ENV} or {DEFAULT_S:g} s)",
    )


def time_bound_s(item) -> float:
    """The bound of ``item``'s phases in seconds (0: none)."""
    marker = item.get_closest_marker("time_bound")
    if marker is not None and marker.args:
        return float(marker.args[0])
    text = os.environ.get(TIME_BOUND_ENV, "").strip()
    return float(text) if text else DEFAULT_S


def _bounded(item, phase: str):
    seconds = time_bound_s(item)
    usable = hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
    if not seconds or not usable:
        yield
        return

    def expired(_signum, _frame):
        try:  # the real stderr (a test's capsys has no file descriptor); pytest shows it with the failure
            faulthandler.dump_traceback(file=sys.__stderr__, all_threads=True)
        except (AttributeError, ValueError, OSError):
            pass
        pytest.fail(f"{item.nodeid}: the {phase} ran past its time bound of {seconds:g} s (a hang?)", pytrace=True)

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    faulthandler.dump_traceback_later(seconds + NATIVE_GRACE_S, exit=True)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        faulthandler.cancel_dump_traceback_later()
        signal.signal(signal.SIGALRM, previous)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item):
    yield from _bounded(item, "set-up")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    yield from _bounded(item, "call")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item, nextitem):
    yield from _bounded(item, "tear-down")
