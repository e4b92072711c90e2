"""FFmpeg's own messages (through PyAV) for one source: logged at WARNING, counted, and capped.

FFmpeg reports a damaged packet at its ERROR level, several lines each (the parser's and the decoder's): a clip with 13
damaged packets gave 86 ERROR lines in a run that ended well (exit 0), because the source skips and counts such packets
(``decode_errors``; ``PyAVFileSource``). So the messages a source's reads cause are captured in the reading thread
(``av.logging.Capture``, local to it) and re-logged by this class on the logger ``libav.<component>`` (``libav.h264``)
at WARNING, prefixed with the source's name; the first ``cap`` of a source are shown, the rest counted
(``count``), and :meth:`summary` gives the final count for the source's last line and ``--stats-json``
(``ffmpeg_messages``).

FFmpeg's decoder threads log too (H.264 frame threads: "error while decoding MB 0 7"), outside the reading thread's
capture, so PyAV logged those at ERROR, without the source's name (4 such lines in a clip with 10
damaged spots). While a source is open, PyAV's global capture holds them, and each source's reads say them as its
own (its name, WARNING, counted and capped); with several sources open, as one of theirs (named together, counted
against none).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import weakref
from typing import Any, Iterator, List, Optional, Tuple

__all__ = ["FFmpegMessages", "MESSAGE_CAP"]

MESSAGE_CAP = 10  # FFmpeg lines shown per source; the others are counted


_SOURCES: "weakref.WeakSet[FFmpegMessages]" = weakref.WeakSet()  # the sources open (their FFmpeg messages)
_strays_lock = threading.Lock()
_TOGETHER: "dict[str, FFmpegMessages]" = {}  # the owners of the lines one of several open sources caused
_strays: Optional[Any] = None  # PyAV's global capture while a source is open: the lines no thread captured


def _open_strays() -> None:
    """Catch, while a source is open, the FFmpeg lines no reading thread captures (its decoder threads'): PyAV keeps
    them in its global capture instead of logging them at ERROR."""
    global _strays
    import av.logging

    with _strays_lock:
        if _strays is None:
            _strays = av.logging.Capture(local=False)
            _strays.__enter__()


def _close_strays() -> List[Tuple[int, Optional[str], str]]:
    """The lines caught since the last call (``(level, component, message)``); the global capture ends with the last
    open source."""
    global _strays
    with _strays_lock:
        if _strays is None:
            return []
        caught = list(_strays.logs)
        del _strays.logs[: len(caught)]
        if not _SOURCES:
            _strays.__exit__(None, None, None)
            caught += list(_strays.logs)
            _strays = None
        return caught


class FFmpegMessages:
    """The FFmpeg messages of the source ``name``: ``with messages.captured(): ...`` around each call into PyAV."""

    def __init__(self, name: str, cap: int = MESSAGE_CAP):
        self.name = name
        self.cap = int(cap)
        self.count = 0
        self._lock = threading.Lock()

    @classmethod
    def together(cls, sources: List["FFmpegMessages"]) -> "FFmpegMessages":
        """The owner of a message that one of several sources caused (a decoder thread's: which, FFmpeg does not
        say): named after all of them, its lines not counted against any."""
        name = f"one of the video sources ({', '.join(sorted(source.name for source in sources))})"
        with _strays_lock:
            return _TOGETHER.setdefault(name, cls(name))  # capped as one source

    def release(self) -> None:
        """The source is closed: the FFmpeg lines caught meanwhile are said, and later ones are no longer its own."""
        if self in _SOURCES:
            others = [source for source in _SOURCES if source is not self]
            _SOURCES.discard(self)
            self._say_strays(others)

    def _say_strays(self, others: List["FFmpegMessages"]) -> None:
        owner = self if not others else FFmpegMessages.together([self, *others])
        for level, component, message in _close_strays():
            owner._say(level, component, message)

    @contextlib.contextmanager
    def captured(self) -> Iterator[None]:
        """Capture FFmpeg's messages of this thread while in the block, then log them (also after an exception)."""
        import av.logging

        _SOURCES.add(self)  # open: a decoder thread's lines are this source's too (until release())
        _open_strays()
        logs: list = []
        try:
            with av.logging.Capture(local=True) as logs:
                yield
        finally:
            for level, component, message in logs:
                self._say(level, component, message)
            self._say_strays([source for source in _SOURCES if source is not self])

    def _say(self, level: int, component: Optional[str], message: str) -> None:
        import av.logging

        logger = logging.getLogger(f"libav.{component or 'ffmpeg'}")
        text = str(message).strip()
        if level <= av.logging.FATAL:  # FFmpeg gives up: the source fails with its own error; shown, always
            logger.error("%s: FFmpeg: %s", self.name, text)
            return
        if level > av.logging.WARNING:  # the detail an application asked for (av.logging.set_level): not counted
            level_py = logging.INFO if level <= av.logging.INFO else logging.DEBUG
            logger.log(level_py, "%s: FFmpeg: %s", self.name, text)
            return
        with self._lock:  # (a decoder thread's message and the reading thread's may come at once)
            self.count += 1  # FFmpeg's errors and warnings: about data the source skips and counts
            count = self.count
        if count > self.cap:
            return
        last = count == self.cap
        note = f" (the first {self.cap} FFmpeg messages of this source are shown; the others are counted)"
        logger.warning("%s: FFmpeg: %s%s", self.name, text, note if last else "")

    def summary(self) -> str:
        """``"52 FFmpeg messages (10 shown)"``, or "" when there were none."""
        if not self.count:
            return ""
        shown = min(self.count, self.cap)
        return f"{self.count} FFmpeg messages ({shown} shown)"
