"""The writer threads of a :class:`~zsseg_rt.stream.loop.runner.MultiStreamRunner`: one per source, each drawing and
writing that source's results in order (the overlay drawn once, only when a sink takes it), then its video metrics
and end-to-end latency measured, and ``on_written`` told. A failed write (or ``on_written``'s exception) stops the
run, which ``run()`` raises in the caller's thread; the results after it are taken and dropped, so inference never
waits on a dead writer. Moved out of ``runner.py`` (:class:`WriterThreads`, a base of the runner)."""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from typing import Any, Callable, Deque, List, Optional

import numpy as np

from zsseg_rt.outputs.sink_base import FrameSink

from .capture import Frame
from .protocols import ResultSink, StreamSegmenter
from .stream_stats import StreamStats, percentiles

__all__ = ["WriterThreads"]

log = logging.getLogger("zsseg_rt.stream")


class WriterThreads:
    """The writer side of a runner: :meth:`_write_loop` runs in each source's writer thread (the runner's ``run()``
    starts them and ends each with a ``None``). What it uses of the runner is declared below."""

    segment: Any
    alpha: float
    legend: bool
    stats: StreamStats
    shared_sinks: List[FrameSink]
    on_written: Optional[Callable[[Frame, Any], None]]
    _ready: threading.Event
    _stats_lock: threading.Lock
    _writer_error: Optional[BaseException]
    _e2e_all: Deque[float]

    def stop(self) -> None:  # the runner's
        raise NotImplementedError

    def _write_loop(self, stream: Any) -> None:
        """Draw and write ``stream``'s results in order until the ``None`` that ends it; after a failure the rest are
        taken and dropped (so inference never waits on a dead writer) and ``run()`` raises the failure."""
        while True:
            item = stream.queue.get()
            self._ready.set()  # room in the queue: the loop takes this source's frames again
            if item is None:
                return
            try:
                if self._writer_error is None:
                    self._write_item(stream, *item)
            finally:
                with self._stats_lock:
                    stream.unwritten -= 1
                self._ready.set()  # written: in order, the next source may start (the runner's _drained)

    def _write_item(self, stream: Any, frame: Frame, result: Any, title: str) -> None:
        """One result written to every sink, ``on_written`` told, the source's measures updated; a failure (of a sink
        or of ``on_written``) is kept for ``run()`` to raise and stops the run."""
        try:
            self._write_frame(stream, frame, result, title)
            if self.on_written is not None:  # every sink has it (its line once its files exist: zsseg segment)
                self.on_written(frame, result)
        except BaseException as exc:  # noqa: BLE001 - re-raised by run() in the caller's thread
            log.debug("writing %s's frame failed: %s", stream.name, exc)  # run() raises it: one message
            self._writer_error = exc
            self.stop()
            return
        self._measure(stream, frame, result)
        e2e = time.monotonic() - frame.timestamp
        with self._stats_lock:
            stream.e2e.append(e2e)
            stream.e2e_window.append(e2e)
            self._e2e_all.append(e2e)
            stream.stats.e2e_latency_ms = 1000.0 * float(np.mean(stream.e2e_window))
            stream.stats.e2e_latency_p50_ms, stream.stats.e2e_latency_p99_ms = percentiles(stream.e2e)
            self.stats.e2e_latency_ms = 1000.0 * float(np.mean(self._e2e_all))

    def _write_frame(self, stream: Any, frame: Frame, result, title: str) -> None:
        """One result to the source's sinks and the shared ones. The overlay is drawn once, and only when a sink
        takes it: a sink of results (``write_result``: label maps, the robot outputs) gets the result, and, when it
        takes an overlay (``takes_overlay``), a callable that draws it (a live server with no viewer never calls
        it); the others get the overlay image."""
        drawn: List[np.ndarray] = []

        def overlay() -> np.ndarray:
            if not drawn:
                drawn.append(self.render(frame.image, result, title))
            return drawn[0]

        own = len(stream.sinks)
        alone = dataclasses.replace(frame, stream=0)  # what a source's own sinks see: it alone, their source 0
        for place, sink in enumerate([*stream.sinks, *self.shared_sinks]):
            mine = place < own
            if isinstance(sink, ResultSink):  # a shared one learns the source from frame.stream
                shown = alone if mine else frame
                if getattr(sink, "takes_overlay", False):
                    sink.write_result(shown, result, overlay)
                else:
                    sink.write_result(shown, result)
            elif mine and getattr(sink, "takes_number", False):  # named by the frame's number (frames/)
                sink.write_numbered(overlay(), frame.index)
            elif mine:
                sink.write(overlay())
            else:  # shared by every source (the preview grid)
                sink.write_stream(stream.index, overlay())

    def _measure(self, stream: Any, frame: Frame, result) -> None:
        """The source's video metrics after a frame was written (never fatal to the stream: a segment callable whose
        results have no labels of the frame's size is logged once and not measured)."""
        try:
            stream.metrics.update(frame.image, result.labels, getattr(result, "keyframe", True), frame.timestamp)
        except (AttributeError, TypeError, ValueError) as exc:
            if stream.metrics.frames == 0 and not getattr(stream, "_metrics_warned", False):
                stream._metrics_warned = True  # type: ignore[attr-defined]
                log.warning("video metrics of %s not measured: %s", stream.name, exc)
            return
        video = stream.metrics.summary()
        if isinstance(self.segment, StreamSegmenter):
            video.update(self.segment.stats(stream.index))
        with self._stats_lock:
            stream.stats.video = video

    def render(self, image: np.ndarray, result, title: Optional[str] = None) -> np.ndarray:
        """The overlay written to the sinks: class colours, legend, and the live FPS / latency line (``title``;
        default the stream's)."""
        return result.overlay(image, alpha=self.alpha, legend=self.legend, title=title or self.stats.title())
