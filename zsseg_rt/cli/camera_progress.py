"""The progress bar of ``zsseg camera`` (video files and image folders, and several sources): the ``progress`` a
:class:`~zsseg_rt.stream.loop.session.Session` is given (a context manager around the run whose value is called after each
frame). tqdm; imported when the command runs."""

from __future__ import annotations

import contextlib
import os
import time
from typing import Any, Iterator, Optional

__all__ = ["camera_progress"]


def camera_progress(no_progress: bool) -> Any:
    """The Session's ``progress``: a bar over the frames when there is one to show, else nothing."""

    @contextlib.contextmanager
    def shown(session: Any) -> Iterator[Optional["_ProgressUpdate"]]:
        bar = None if no_progress else _progress(session.inputs, session.options)
        if bar is None:
            yield None
            return
        from tqdm.contrib.logging import logging_redirect_tqdm

        update = _ProgressUpdate(bar, len(session.inputs) > 1)
        with bar, logging_redirect_tqdm():  # log lines above the bar, not through it
            try:
                yield update
            finally:
                session.runner.snapshot()  # the final counters and states
                update.show(session.runner.stats)

    return shown


def _progress_bar_class():
    """tqdm that prints its last line once, however fast the frames come: the line of the full count (``total``
    known) is drawn by ``close()`` only, not also by the last update (drawn when tqdm's ``mininterval`` had passed,
    so on a slow or loaded machine) and again when a log line after it (the video file written) moves the bar down.
    Without a total, ``close()`` prints the bar once more unless the last line drawn already shows the final count."""
    from tqdm import tqdm

    class ProgressBar(tqdm):
        _shown_n = -1  # the count of the last line drawn
        _closing = False

        def display(self, msg=None, pos=None):
            if msg is None:
                if not self._closing and self.total is not None and self.n >= self.total:
                    return True  # the full count: close() draws it, once
                if self._closing and self._shown_n == self.n:
                    return True  # close(): the final count is on screen already; close() only ends the line
                self._shown_n = self.n
            return super().display(msg, pos)

        def close(self):
            self._closing = True
            super().close()

    return ProgressBar


def _frames_to_process(source, options) -> Optional[int]:
    """The frames a source will deliver (None: unknown or endless)."""
    total = None if options.loop or source.live else source.frame_count
    if options.max_frames is not None:
        total = min(total, options.max_frames) if total is not None else options.max_frames
    return total


def _progress(inputs, options):
    """A tqdm bar over the frames processed. One source: for a file or folder (every frame is processed), None for a
    live source. Several sources: always, its total the sum of the sources' frames when all are known, and each
    source's statistics (fps, latency p50/p99, drops, reconnects) after the count."""
    from zsseg_rt.console.progress import signals_deferred

    if len(inputs) == 1:
        source = inputs[0].source
        if source.live:
            return None
        name = os.path.basename(os.path.normpath(source.name.split(":", 1)[-1]))
        with signals_deferred():  # a signal meanwhile would leave a half-made bar (zsseg_rt/console/progress.py)
            return _progress_bar_class()(total=_frames_to_process(source, options), unit="frame", desc=name)
    totals = [_frames_to_process(item.source, options) for item in inputs]
    total = None if any(t is None for t in totals) else sum(t for t in totals if t is not None)
    with signals_deferred():
        return _progress_bar_class()(total=total, unit="frame", desc=f"{len(inputs)} sources")


class _ProgressUpdate:
    """``on_result`` of the runner: counts a frame on the bar; with several sources, the per-source statistics after
    the count, renewed at most every ``interval`` seconds."""

    def __init__(self, bar, several: bool, interval: float = 0.5):
        self.bar, self.several, self.interval = bar, several, interval
        self._last = float("-inf")

    def __call__(self, _frame, _result, stats) -> None:
        now = time.monotonic()
        if now - self._last >= self.interval:
            self._last = now
            self.show(stats, refresh=False)
        self.bar.update(1)

    def show(self, stats, refresh: bool = True) -> None:
        """Put each source's statistics after the count (several sources); one source: its frame rate (and its
        flicker once measured)."""
        if self.several:
            self.bar.set_postfix_str(" | ".join(s.line() for s in stats.sources), refresh=refresh)
        elif stats.sources:
            source = stats.sources[0]
            flicker = source.video.get("flicker_pct")
            text = f"{source.fps:.2f} fps" + (f" flicker {flicker:.2f}%" if flicker is not None else "")
            self.bar.set_postfix_str(text, refresh=refresh)
