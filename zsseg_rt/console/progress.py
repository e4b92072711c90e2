"""Progress bars that a Ctrl-C or SIGTERM cannot leave half made.

Every long command turns SIGINT and SIGTERM into an exception raised in the main thread wherever it happens to be
(``cli_errors.sigterm_interrupts``; Python's own ``KeyboardInterrupt``). Raised inside ``tqdm.__init__`` (which
draws the bar before it sets its last attributes) it leaves a half-made bar whose ``__del__`` then prints
"Exception ignored in: <function tqdm.__del__ ...> AttributeError: ... 'last_print_t'" and a traceback after the
command's one-line message (found by CI: ``zsseg train`` signalled just as its bar appeared). :func:`progress_bar`
makes the bar with both signals held: one that arrives meanwhile is acted on (its handler called, or the signal sent
again where the default action applies) as soon as the bar is whole.

Long stages that report steps (an export's graphs and verification, a preparation's quantisation, gate and
measurement) draw their bars with :func:`stage_bar`, which draws only inside :func:`shown` (``zsseg export``,
``zsseg demo``, ``zsseg build-engine``): library calls and tests stay quiet, and the functions that report steps need
no argument for it.
"""

from __future__ import annotations

import contextvars
import signal
import threading
from contextlib import contextmanager
from typing import Any, Iterator, List

__all__ = ["progress_bar", "shown", "signals_deferred", "stage_bar"]

_HELD = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM for the block (main thread only: elsewhere Python runs no signal handler, so nothing
    is held). A signal that arrived is acted on when the block ends, once: the handler that was installed is called
    (it may raise ``KeyboardInterrupt`` / ``Terminated``, now at a safe point), a default action is taken by sending
    the signal again, an ignored one stays ignored."""
    if threading.current_thread() is not threading.main_thread() or any(signal.getsignal(s) is None for s in _HELD):
        yield  # not the main thread, or a handler installed outside Python (it could not be put back): nothing held
        return
    caught: List[int] = []

    def hold(signum: int, _frame: Any) -> None:
        caught.append(signum)

    previous = {}
    try:
        for signum in _HELD:
            previous[signum] = signal.signal(signum, hold)
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if caught:
            first = caught[0]
            handler = previous.get(signal.Signals(first))
            if callable(handler):
                handler(first, None)
            elif handler == signal.SIG_DFL:
                signal.raise_signal(first)  # the default action, in this thread now (os.kill: any thread)


def progress_bar(*args: Any, **kwargs: Any) -> Any:
    """``tqdm(*args, **kwargs)``, made with SIGINT and SIGTERM held (:func:`signals_deferred`)."""
    from tqdm import tqdm

    with signals_deferred():
        return tqdm(*args, **kwargs)


_SHOWN: "contextvars.ContextVar[bool]" = contextvars.ContextVar("zsseg_export_progress_bars", default=False)


@contextmanager
def shown(enabled: bool = True) -> Iterator[None]:
    """Within the block, :func:`stage_bar` draws its bars (``enabled``) or not."""
    token = _SHOWN.set(bool(enabled))
    try:
        yield
    finally:
        _SHOWN.reset(token)


def stage_bar(total: int, desc: str, unit: str = "step") -> Any:
    """A tqdm bar of ``total`` steps named ``desc`` (disabled outside :func:`shown`); use it as a context manager and
    call ``update()`` per step. It leaves no line behind: the stage's own line says when it is done."""
    return progress_bar(
        total=int(total), desc=desc, unit=unit, disable=not _SHOWN.get(), leave=False, dynamic_ncols=True
    )
