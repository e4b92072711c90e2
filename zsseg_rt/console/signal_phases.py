"""Signals at every phase of a command's start-up, and the test hook that stops a command at a phase.

The rule (:mod:`zsseg_rt.console.errors`): SIGINT raises ``KeyboardInterrupt`` and SIGTERM raises ``Terminated`` in the
main thread wherever it is; the command's cleanup runs; it exits with 128 + the signal. That holds in Python code,
not inside Ray, which a command's start-up spends most of its time in (``zsseg serve`` 10-60 s):

* Ray's core worker runs the Python handler itself while it waits (``ray.get``: ``check_signals`` in ``_raylet.pyx``
  calls ``PyErr_CheckSignals``). A ``KeyboardInterrupt`` there becomes Ray's own plain ``KeyboardInterrupt`` (the
  signal's number lost); any other exception is neither handled nor passed on: "SystemError: <built-in method ...>
  returned a result with an exception set", or printed and dropped (the signal swallowed).
* ``ray.init`` installs its own SIGTERM handler (``sys.exit(15)``) as it starts, the Ray node one that kills the
  cluster and exits 1, and the driver's core worker a native one (absl's failure handler); a signal arriving before
  the command put its handler back ended it with exit code 15 and no message.
* An exception raised at an arbitrary point of ``ray.init``, of an import of Ray's modules or of ``serve.start``
  leaves Ray half made; leaving the process so ended once in a segfault (the probe's U10 row).

:func:`held_signals` is the cure, around every call into Ray a command makes while it starts or stops: SIGINT and
SIGTERM are only recorded meanwhile (and a handler Ray sets for them is kept out); after the call the command's
handlers are back (at the OS level too: a native handler set meanwhile is replaced) and the first signal recorded is
acted on there, at a safe point: the command's handler raises, its cleanup (``ray.shutdown()``) runs.

:func:`phase` is a **test hook**, not a user feature: ``python_tests/test_signal_phases.py`` sweeps SIGINT and
SIGTERM across the phases of ``zsseg serve``, ``batch``, ``camera --preview`` and ``export`` by events, not by
sleeps. With ``$ZSSEG_TEST_PHASE_HOOK`` unset (always, outside that test) ``phase`` returns at once.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import threading
from typing import Any, Iterator, List

__all__ = ["PHASE_HOOK_ENV", "held_signals", "phase"]

_HELD = (signal.SIGINT, signal.SIGTERM)
_set_handler = signal.signal  # the real one: held_signals replaces signal.signal while it holds
_holding = False  # a held_signals block is open (a nested one holds nothing more)


def _act_on(signum: int, handler: Any) -> None:
    """What the signal would have done outside the block: the handler called (it may raise, here), the default
    action taken (the signal sent again), an ignored one ignored."""
    if callable(handler):
        handler(signum, None)
    elif handler == signal.SIG_DFL:
        signal.raise_signal(signum)


@contextlib.contextmanager
def held_signals(act: bool = True) -> Iterator[List[int]]:
    """Hold SIGINT and SIGTERM for the block (main thread only; elsewhere no Python handler runs): a signal is
    recorded (in the list the block gets) and, once the block ends, acted on (``act``; False: dropped, e.g. while a
    command already shuts down). Meanwhile ``signal.signal`` keeps every handler for them out (``ray.init`` and the
    Ray node set their own), and after the block the handlers of before are set again, also at the OS level (the
    driver's core worker sets a native SIGTERM handler). A nested block holds nothing more: the outer one acts."""
    global _holding
    if threading.current_thread() is not threading.main_thread() or _holding:
        yield []
        return
    previous = {signum: signal.getsignal(signum) for signum in _HELD}
    if any(handler is None for handler in previous.values()):
        yield []  # a handler installed outside Python: it could not be put back, nothing held
        return
    caught: List[int] = []

    def hold(signum: int, _frame: Any) -> None:
        caught.append(signum)

    def keep_out(signum, handler):  # signal.signal while the block holds: Ray's handlers for the two are kept out
        if signum in previous and threading.current_thread() is threading.main_thread():
            return hold
        return _set_handler(signum, handler)

    held = [signum for signum, handler in previous.items() if handler != signal.SIG_IGN]  # an ignored one stays so
    _holding = True
    try:
        for signum in held:
            _set_handler(signum, hold)
        signal.signal = keep_out
        yield caught
    finally:
        signal.signal = _set_handler
        for signum, handler in previous.items():
            _set_handler(signum, handler)
        _holding = False
        if caught and act:
            _act_on(caught[0], previous[signal.Signals(caught[0])])


# ------------------------------------------------------------------------------------------------- the test hook
PHASE_HOOK_ENV = "ZSSEG_TEST_PHASE_HOOK"  # "PHASE@SOCKET": stop at PHASE, tell the test listening on SOCKET


def phase(name: str) -> None:
    """Test hook: a command passes the start-up phase ``name`` ("serve:ray-ready", "worker:model-load", ...).

    With ``$ZSSEG_TEST_PHASE_HOOK`` = ``name@/path/to/socket`` (set by the signal-sweep test only), the process
    connects to the test's Unix socket there, says ``name pid`` and waits until a signal has reached it (main thread
    only: then its Python handler runs here, or where the command acts on a held one) or the test hangs up (a Ray
    worker waits so, loading no model, while the test signals its driver). Any other phase, no listener (the test
    took its one stop already: another worker got there first), or the variable unset: it returns at once."""
    hook = os.environ.get(PHASE_HOOK_ENV)
    if not hook or hook.partition("@")[0] != name:
        return
    main = threading.current_thread() is threading.main_thread()
    with contextlib.ExitStack() as stack:
        waits = [stack.enter_context(_signal_wakeup())] if main else []  # before the test is told: no signal is lost
        client = stack.enter_context(socket.socket(socket.AF_UNIX, socket.SOCK_STREAM))
        try:
            client.connect(hook.partition("@")[2])
        except OSError:
            return
        client.sendall(f"{name} {os.getpid()}\n".encode())
        select.select(waits + [client], [], [])


@contextlib.contextmanager
def _signal_wakeup() -> Iterator[socket.socket]:
    """A socket that becomes readable once a signal's C-level handler has run (in any thread: its byte, written by
    ``signal.set_wakeup_fd``); the Python-level handler runs as soon as the main thread is back in Python code."""
    wake_read, wake_write = socket.socketpair()
    wake_write.setblocking(False)
    previous = signal.set_wakeup_fd(wake_write.fileno(), warn_on_full_buffer=False)
    try:
        yield wake_read
    finally:
        signal.set_wakeup_fd(previous)
        wake_read.close()
        wake_write.close()
