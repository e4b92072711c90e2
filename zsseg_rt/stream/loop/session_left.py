"""How a :class:`~zsseg_rt.stream.loop.session.Session` whose app loop was left unfinished without ``close()`` ends:
as a failed run (:class:`LoopLeft`: its outputs are not put in place), at interpreter exit too (:class:`LeftOpen`, an
``atexit`` hook), said in one warning naming what became of its partial files (:func:`left_line`). Moved out of
``session.py``."""

from __future__ import annotations

import weakref
from typing import Any, Optional, Sequence

__all__ = ["LeftOpen", "LoopLeft", "left_line"]


class LoopLeft(Exception):
    """The app's loop was left unfinished without ``close()``: the run failed (its outputs are not put in place)."""


class LeftOpen:
    """At interpreter exit (``atexit``), a Session whose loop is still open is ended as a failed run while the
    interpreter still works (an iterator left open at exit printed an ImportError traceback from its sources'
    close during shutdown and left a partial file)."""

    def __init__(self, session: "weakref.ref[Any]"):
        self.session = session

    def __call__(self) -> None:
        session = self.session()
        if session is not None:
            session._abandon("the interpreter exited with the loop still open")


def left_line(why: Optional[str], kept: Sequence[str]) -> str:
    """The warning of a run whose app loop was left unfinished: why, and what became of its partial files."""
    said = (
        f"; kept, with what was written: {', '.join(kept)} (pass overwrite=True to the next run to remove it, or move "
        "it away)"
        if kept
        else ""
    )
    return (
        f"the stream's loop ended as a failed run ({why}): no output was put in place, none replaced{said}; to end a "
        "loop early as a good run, call close() or leave it inside `with Session(...)`"
    )
