"""The stream loop: newest frame -> ``segment(frame)`` -> overlay (legend, FPS, latency) -> sinks.

``segment`` is any callable ``frame_bgr -> SegmentationResult``-like object (``overlay(image, alpha, legend,
title)``); a ``zsseg_rt.Engine`` is one. Vocabulary changes (``set_classes``, a watched class file) are applied
between frames, so the stream never restarts and nothing is rebuilt.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import signal
import threading
import time
from typing import Callable, Deque, List, Optional, Sequence, Tuple, Union

import numpy as np

from zsseg_rt.vocabulary import validate_class_names

from .capture import Backoff, Frame, FrameGrabber
from .sinks import FrameSink
from .sources import FrameSource
from .vocabulary import ClassFileWatcher

log = logging.getLogger("zsseg_rt.stream")


@dataclasses.dataclass
class StreamStats:
    """Counters and rates of a running stream (a snapshot; JSON-serialisable via ``as_dict``).

    ``fps``: processed frames per second over the last ``window`` frames; ``latency_ms``: mean time in
    ``segment`` over that window; ``e2e_latency_ms``: mean time from capture to sinks written.
    """

    processed: int = 0
    captured: int = 0
    dropped: int = 0
    reconnects: int = 0
    fps: float = 0.0
    latency_ms: float = 0.0
    e2e_latency_ms: float = 0.0
    classes: List[str] = dataclasses.field(default_factory=list)
    vocabulary_changes: int = 0
    vocabulary_request: int = 0  # the last request_classes() number handled (applied, refused or replaced)
    vocabulary_error: Optional[str] = None  # why that request was not applied; None when it was

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    def title(self) -> str:
        return f"{self.fps:.1f} FPS  {self.latency_ms:.0f} ms  drop {self.dropped}"


class StreamRunner:
    """Run segmentation on a live source.

    Args:
        segment: callable ``frame [H,W,3] uint8 BGR -> result`` with ``result.overlay(...)`` (e.g. an Engine).
        source: a ``FrameSource`` (see ``open_source``).
        sinks: where overlays go (window, video file, image folder, MJPEG preview, ...).
        set_classes: callable applying a new vocabulary; default ``segment.set_classes`` when it exists.
        class_file: a text file of class names, watched for changes while streaming.
        drop_stale, loop, backoff, max_reconnects, source_opened: see ``FrameGrabber`` (``opened``).
        alpha: overlay opacity; legend: draw the legend and the FPS / latency line.
        max_frames: stop after this many processed frames (None: until the source ends or ``stop()``).
        on_result: optional callback ``(frame: Frame, result, stats: StreamStats)`` after each frame.
        window: frames averaged for the FPS / latency figures.
    """

    def __init__(
        self,
        segment: Callable,
        source: FrameSource,
        sinks: Sequence[FrameSink] = (),
        set_classes: Optional[Callable] = None,
        class_file: Optional[str] = None,
        drop_stale: bool = True,
        loop: bool = False,
        backoff: Optional[Backoff] = None,
        max_reconnects: Optional[int] = None,
        alpha: float = 0.5,
        legend: bool = True,
        max_frames: Optional[int] = None,
        on_result: Optional[Callable] = None,
        window: int = 30,
        source_opened: bool = False,
    ):
        self.segment = segment
        self.source = source
        self.sinks: List[FrameSink] = list(sinks)
        self._set_classes = set_classes if set_classes is not None else getattr(segment, "set_classes", None)
        self.watcher = ClassFileWatcher(class_file) if class_file else None
        self.grabber = FrameGrabber(
            source,
            drop_stale=drop_stale,
            loop=loop,
            backoff=backoff,
            max_reconnects=max_reconnects,
            opened=source_opened,
        )
        self.alpha = float(alpha)
        self.legend = bool(legend)
        self.max_frames = max_frames
        self.on_result = on_result
        self.stats = StreamStats()
        self._times: Deque[float] = collections.deque(maxlen=max(2, int(window)))
        self._latencies: Deque[float] = collections.deque(maxlen=max(1, int(window)))
        self._e2e: Deque[float] = collections.deque(maxlen=max(1, int(window)))
        self._pending_classes: Optional[Union[List[str], str]] = None
        self._pending_request = 0  # the request_classes() number of the pending vocabulary (0: not from one)
        self._requests = 0
        self._finished = False  # run() has returned: requests are refused (nothing would apply them)
        self._pending_lock = threading.Lock()
        self._stop = threading.Event()
        self._stats_lock = threading.Lock()
        names = getattr(segment, "class_names", None)
        if names:
            self.stats.classes = list(names)

    # ---- control (any thread) ---------------------------------------------------------------------------
    def stop(self) -> None:
        """Ask the loop to finish the current frame and return (safe from signal handlers and other threads)."""
        self._stop.set()

    def set_classes(self, names) -> None:
        """Change the vocabulary while streaming; applied before the next frame (from any thread)."""
        if self._set_classes is None:
            raise RuntimeError("this segment callable has no set_classes(); pass set_classes=... to StreamRunner")
        with self._pending_lock:
            self._supersede_pending()
            self._pending_classes = list(names) if not isinstance(names, str) else names
            self._pending_request = 0

    def request_classes(self, names) -> Tuple[int, List[str]]:
        """Check ``names`` now (the vocabulary rules and the segment's class limit) and queue them like
        :meth:`set_classes`; returns ``(request number, checked names)``. ``snapshot()["vocabulary_request"]``
        reaches that number once the loop has handled it, with ``vocabulary_error`` saying why when it refused.

        Raises:
            TypeError / ValueError naming what is wrong (nothing is queued).
        """
        if self._set_classes is None:
            raise RuntimeError("this stream cannot change its vocabulary (the segment callable has no set_classes())")
        meta = getattr(self.segment, "meta", None)
        checked = validate_class_names(names, getattr(meta, "max_classes", None))
        with self._pending_lock:
            if self._finished or self._stop.is_set():
                raise RuntimeError("the stream has stopped: nothing would apply a new vocabulary")
            self._supersede_pending()
            self._requests += 1
            self._pending_classes = list(checked)
            self._pending_request = self._requests
            return self._requests, list(checked)

    def _supersede_pending(self) -> None:
        """A queued request replaced before the loop took it is reported as not applied (under _pending_lock)."""
        if self._pending_request:
            self._vocabulary_outcome(self._pending_request, "replaced by a newer vocabulary change before it applied")

    def snapshot(self) -> dict:
        """Thread-safe copy of the stats as a dict (used by the MJPEG ``/stats`` endpoint)."""
        with self._stats_lock:
            return self.stats.as_dict()

    # ---- loop -------------------------------------------------------------------------------------------
    def run(self, handle_signals: Optional[bool] = None) -> StreamStats:
        """Process frames until the source ends, ``max_frames``, ``stop()``, a sink's stop request, or SIGINT /
        SIGTERM (handled when running in the main thread, unless ``handle_signals=False``). Sinks are always
        closed (video files finalised) before returning. Returns the final stats."""
        if handle_signals is None:
            handle_signals = threading.current_thread() is threading.main_thread()
        previous = self._install_signals() if handle_signals else {}
        self.grabber.start()
        try:
            self._loop()
        finally:
            with self._pending_lock:
                self._finished = True
                if self._pending_request:  # queued after the last frame: never applied
                    self._vocabulary_outcome(self._pending_request, "the stream stopped before it applied")
                    self._pending_request = 0
            self.grabber.stop()
            self._sync_counters()
            for sink in self.sinks:
                try:
                    sink.close()
                except Exception:  # noqa: BLE001 - close every sink even if one fails
                    log.exception("closing sink %s failed", sink.name)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return self.stats

    def _install_signals(self) -> dict:
        previous = {}
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                previous[sig] = signal.signal(sig, self._on_signal)
            except (ValueError, OSError):  # not the main thread / unsupported platform
                pass
        return previous

    def _on_signal(self, signum, _frame) -> None:
        log.info("signal %d received: stopping the stream", signum)
        self.stop()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._apply_vocabulary()
            frame = self.grabber.get(timeout=0.2)
            if frame is None:
                if self.grabber.finished:
                    if self.grabber.error is not None:
                        log.error("stream stopped: %s", self.grabber.error)
                    return
                continue
            self._process(frame)
            if self.max_frames is not None and self.stats.processed >= self.max_frames:
                return
            if any(sink.stop_requested for sink in self.sinks):
                return

    def _apply_vocabulary(self) -> None:
        with self._pending_lock:
            names, self._pending_classes = self._pending_classes, None
            request, self._pending_request = self._pending_request, 0
        if names is None and self.watcher is not None:
            names = self.watcher.poll(time.monotonic())
        if names is None:
            return
        current = getattr(self.segment, "class_names", None)
        wanted = _checked_names(names)
        if current is not None and wanted is not None and list(current) == wanted:
            self._vocabulary_outcome(request, None)  # e.g. the watched file's first read: already the vocabulary
            return
        if self._set_classes is None:
            log.warning("class change ignored: the segment callable has no set_classes()")
            self._vocabulary_outcome(request, "the segment callable has no set_classes()")
            return
        try:
            self._set_classes(names)
        except (ValueError, RuntimeError, TypeError) as exc:
            log.warning("class change to %r refused (%s); keeping %r", names, exc, self.stats.classes)
            self._vocabulary_outcome(request, str(exc))
            return
        current = getattr(self.segment, "class_names", None)
        with self._stats_lock:
            self.stats.classes = list(current) if current else (wanted if wanted is not None else list(names))
            self.stats.vocabulary_changes += 1
        self._vocabulary_outcome(request, None)
        log.info("vocabulary now %s", ", ".join(self.stats.classes))

    def _vocabulary_outcome(self, request: int, error: Optional[str]) -> None:
        """Report how request number ``request`` ended (0: a change not from request_classes, e.g. the watched
        class file: only logged, so it never overwrites a request's outcome)."""
        if not request:
            return
        with self._stats_lock:
            self.stats.vocabulary_error = error
            self.stats.vocabulary_request = max(self.stats.vocabulary_request, request)

    def _process(self, frame: Frame) -> None:
        start = time.perf_counter()
        result = self.segment(frame.image)
        latency = time.perf_counter() - start
        self._times.append(time.monotonic())
        self._latencies.append(latency)
        self._update_stats()
        image = self.render(frame.image, result)
        for sink in self.sinks:
            sink.write(image)
        self._e2e.append(time.monotonic() - frame.timestamp)
        with self._stats_lock:
            self.stats.e2e_latency_ms = 1000.0 * float(np.mean(self._e2e))
        if self.on_result is not None:
            self.on_result(frame, result, self.stats)

    def render(self, image: np.ndarray, result) -> np.ndarray:
        """The overlay written to the sinks: class colours, legend, and the live FPS / latency line."""
        return result.overlay(image, alpha=self.alpha, legend=self.legend, title=self.stats.title())

    def _sync_counters(self) -> None:
        with self._stats_lock:
            self.stats.captured = self.grabber.captured
            self.stats.dropped = self.grabber.dropped
            self.stats.reconnects = self.grabber.reconnects

    def _update_stats(self) -> None:
        self._sync_counters()
        with self._stats_lock:
            self.stats.processed += 1
            span = self._times[-1] - self._times[0] if len(self._times) > 1 else 0.0
            self.stats.fps = (len(self._times) - 1) / span if span > 0 else 0.0
            self.stats.latency_ms = 1000.0 * float(np.mean(self._latencies))


def _checked_names(names) -> Optional[List[str]]:
    """``names`` as the vocabulary unit reads them (a string is comma-separated; names stripped), or None when it
    refuses them (the segment's ``set_classes`` then says why)."""
    try:
        return validate_class_names(names)
    except (TypeError, ValueError):
        return None
