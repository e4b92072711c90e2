"""FFmpeg's own messages (through PyAV) for one source: logged at WARNING, counted, and capped.

FFmpeg reports a damaged packet at its ERROR level, several lines each (the parser's and the decoder's): a clip with 13
damaged packets gave 86 ERROR lines in a run that ended well (exit 0), because the source skips and counts such packets
(``decode_errors``; ``PyAVFileSource``). So the messages a source's reads cause are captured in the reading thread
(``av.logging.Capture``, local to it) and re-logged by this class on the logger ``libav.<component>`` (``libav.h264``)
at WARNING, prefixed with the source's name; the first ``cap`` of a source are shown, the rest counted
(``count``), and :meth:`summary` gives the final count for the source's last line and ``--stats-json``
(``ffmpeg_messages``).
"""

from __future__ import annotations

import contextlib
import logging
from typing import Iterator, Optional

__all__ = ["FFmpegMessages", "MESSAGE_CAP"]

MESSAGE_CAP = 10  # FFmpeg lines shown per source; the others are counted


class FFmpegMessages:
    """The FFmpeg messages of the source ``name``: ``with messages.captured(): ...`` around each call into PyAV."""

    def __init__(self, name: str, cap: int = MESSAGE_CAP):
        self.name = name
        self.cap = int(cap)
        self.count = 0

    @contextlib.contextmanager
    def captured(self) -> Iterator[None]:
        """Capture FFmpeg's messages of this thread while in the block, then log them (also after an exception)."""
        import av.logging

        logs: list = []
        try:
            with av.logging.Capture(local=True) as logs:
                yield
        finally:
            for level, component, message in logs:
                self._say(level, component, message)

    def _say(self, level: int, component: Optional[str], message: str) -> None:
        import av.logging

        logger = logging.getLogger(f"libav.{component or 'ffmpeg'}")
        text = str(message).strip()
        if level <= av.logging.FATAL:  # FFmpeg gives up: the source fails with its own error; shown, always
            logger.error("%s: FFmpeg: %s", self.name, text)
            return
        if level > av.logging.WARNING:  # the detail an application asked for (av.logging.set_level): not counted
            logger.log(logging.INFO if level <= av.logging.INFO else logging.DEBUG, "%s: FFmpeg: %s", self.name, text)
            return
        self.count += 1  # FFmpeg's errors and warnings: about data the source skips and counts
        if self.count > self.cap:
            return
        last = self.count == self.cap
        note = f" (the first {self.cap} FFmpeg messages of this source are shown; the others are counted)"
        logger.warning("%s: FFmpeg: %s%s", self.name, text, note if last else "")

    def summary(self) -> str:
        """``"52 FFmpeg messages (10 shown)"``, or "" when there were none."""
        if not self.count:
            return ""
        shown = min(self.count, self.cap)
        return f"{self.count} FFmpeg messages ({shown} shown)"
