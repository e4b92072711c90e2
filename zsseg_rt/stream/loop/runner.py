"""The stream loop: the newest frame of every source -> one batched ``segment([...])`` -> overlay (legend, FPS,
latency) -> each source's sinks, as a pipeline.

``segment`` is any callable ``frame_bgr -> SegmentationResult``-like object (``overlay(image, alpha, legend,
title)``), which with several sources also takes a list of frames and returns one result per frame; a
``zsseg_rt.Engine`` is one (``engine([f1, f2, ...])`` packs the windows of all frames into encoder calls of at most
``max_batch``). Vocabulary changes (``set_classes``, a watched class file, the preview page) are applied between
steps, for every source at once, so the streams never restart and nothing is rebuilt.

The pipeline (every stage in its own thread, joined by bounded queues, frames passed by reference)::

    capture thread per source --(its newest frame; every frame of a file)--> inference (the caller's thread: one
    segment() call per step for the frames of all sources that are ready) --(queue of QUEUE_SIZE per source)-->
    writer thread per source (overlay, video encoding, file writes, the preview: ``writer.py``)

so decoding, inference and drawing/encoding/writing overlap. Back-pressure is per source: a source whose writer is
``QUEUE_SIZE`` results behind takes no part in the next steps until its writer catches up (its frames wait in its
capture: every frame of a file, the newest of a camera), so memory stays bounded, a file source runs at its writer's
pace, and a stuck writer never holds up the other sources' inference or writing.
"""

from __future__ import annotations

import collections
import logging
import queue
import signal
import threading
import time
from typing import Callable, Deque, List, Optional, Sequence, Tuple, Type, Union

import numpy as np

from zsseg_rt.outputs.sink_base import FrameSink
from zsseg_rt.vocabulary import validate_class_names

from ..sources import FrameSource
from ..video_filter.video_metrics import VideoMetrics
from .capture import Backoff, Frame, FrameGrabber
from .flight import FlightSteps, open_flight
from .protocols import DelayedSegmenter, StreamSegmenter, objects_of
from .stream_stats import PERCENTILE_WINDOW, SourceStats, StreamStats, percentiles
from .vocabulary import ClassFileWatcher, checked_names
from .writer import WriterThreads

log = logging.getLogger("zsseg_rt.stream")

QUEUE_SIZE = 2  # results waiting for a source's writer thread; a full queue leaves the source out of the next steps


class _Stream:
    """One source of a runner: its capture thread, sinks, statistics and writer thread."""

    def __init__(
        self,
        index: int,
        name: str,
        source: FrameSource,
        sinks: Sequence[FrameSink],
        grabber,
        window: int,
        consistency: bool = False,
    ):
        self.index, self.name, self.source, self.grabber = index, name, source, grabber
        self.metrics = VideoMetrics(consistency=consistency)  # updated by its writer thread
        self.sinks: List[FrameSink] = list(sinks)
        self.stats = SourceStats(name=name, source=source.name, live=bool(source.live))
        self.times: Deque[float] = collections.deque(maxlen=max(2, int(window)))
        self.latencies: Deque[float] = collections.deque(maxlen=max(1, int(window)))
        self.latency_recent: Deque[float] = collections.deque(maxlen=PERCENTILE_WINDOW)
        self.e2e: Deque[float] = collections.deque(maxlen=PERCENTILE_WINDOW)
        self.e2e_window: Deque[float] = collections.deque(maxlen=max(1, int(window)))
        self.queue: "queue.Queue" = queue.Queue(maxsize=QUEUE_SIZE)
        self.writer: Optional[threading.Thread] = None
        self.done = False  # no more frames from it: ended, failed, or its max_frames reached
        # a segment callable with a delay (VideoSegmenter(stabilize_delay=N)): the frames whose results are still
        # held back, oldest first, and whether the end of the stream was flushed
        self.pending: Deque[Frame] = collections.deque()
        self.flushed = False
        self.in_flight = 0  # its frames submitted in flight whose results were not output yet (flight.py)
        self.submitted = 0  # its frames submitted in flight
        self.unwritten = 0  # its results queued for its writer and not yet written (in_order: drained before the next)


class MultiStreamRunner(WriterThreads):
    """Run segmentation on several sources with one ``segment`` callable (one model in memory).

    Args:
        segment: callable ``frame [H,W,3] uint8 BGR -> result`` with ``result.overlay(...)``; with several sources
            also ``[frame, ...] -> [result, ...]`` (an Engine does both).
        sources: the ``FrameSource`` objects (see ``open_source``); one capture thread each.
        sinks: per source, where its overlays go (a list of sink lists, in the order of ``sources``).
        shared_sinks: sinks that show every source (the preview grid): ``write_stream(index, frame)``.
        names: the sources' display names (statistics, progress line, preview); default their ``name``.
        set_classes: callable applying a new vocabulary; default ``segment.set_classes`` when it exists.
        class_file: a text file of class names, watched for changes while streaming.
        drop_stale: per source or for all: True keeps only the newest frame (a live camera), False processes every
            frame (files); None: live sources drop stale frames, the others do not.
        loop, backoff, max_reconnects: see ``FrameGrabber``.
        opened: per source or for all: the caller opened it already (``FrameGrabber(opened=...)``).
        alpha: overlay opacity; legend: draw the legend and the FPS / latency line.
        max_frames: each source stops after this many processed frames (None: until it ends or ``stop()``).
        on_result: optional callback ``(frame: Frame, result, stats: StreamStats)`` after each frame is segmented
            (in the inference thread, before it is drawn and written; ``frame.stream`` says which source).
            ``on_written`` (attribute): ``(frame, result)`` in its writer thread once every sink has it (run() raises).
        window: frames averaged for the FPS / latency figures.
        temporal_consistency: also measure each source's flow-warped temporal consistency (a DIS flow per frame in
            its writer thread; flicker and the end-to-end frame rate are always measured): ``SourceStats.video``.
        in_flight: frames kept in flight on a GPU's device pipeline (``flight.py``: the next step submitted before the
            last one's results are taken; 1: each step waited for); used only where ``segment.in_flight`` has lanes.
        objects: find each result's objects (``Result.objects()``, the Engine's limits) in the inference thread, before
            ``on_result`` and the sinks see it: ``result.frame_objects``; or a callable ``(source, result)`` (--track).
        in_order: the sources one after another (a source's frames once every earlier one ended and its writer wrote
            its every result: a shared sink gets them in order), not side by side.

    The run ends when every source is done (a file or folder at its end, a source that gave up reconnecting, or
    ``max_frames``), or at ``stop()`` / SIGINT / SIGTERM / a sink's stop request. Live sources never end by
    themselves: they reconnect with backoff until ``max_reconnects``.
    """

    def __init__(
        self,
        segment: Callable,
        sources: Sequence[FrameSource],
        sinks: Optional[Sequence[Sequence[FrameSink]]] = None,
        shared_sinks: Sequence[FrameSink] = (),
        names: Optional[Sequence[str]] = None,
        set_classes: Optional[Callable] = None,
        class_file: Optional[str] = None,
        drop_stale: Union[None, bool, Sequence[bool]] = None,
        loop: bool = False,
        backoff: Optional[Backoff] = None,
        max_reconnects: Optional[int] = None,
        alpha: float = 0.5,
        legend: bool = True,
        max_frames: Optional[int] = None,
        on_result: Optional[Callable] = None,
        window: int = 30,
        opened: Union[bool, Sequence[bool]] = False,
        temporal_consistency: bool = False,
        in_flight: int = 2,
        objects: Union[bool, Callable] = False,
        in_order: bool = False,
    ):
        if isinstance(in_flight, bool) or not isinstance(in_flight, int) or in_flight < 1:
            raise ValueError(f"in_flight must be a whole number >= 1, got {in_flight!r}")
        sources = list(sources)
        if not sources:
            raise ValueError("a stream needs at least one source")
        count = len(sources)
        sink_lists = [list(s) for s in sinks] if sinks is not None else [[] for _ in sources]
        names = list(names) if names is not None else [source.name for source in sources]
        if len(sink_lists) != count or len(names) != count:
            raise ValueError(f"{count} sources need {count} sink lists and names, got {len(sink_lists)}, {len(names)}")
        drops = [drop_stale] * count if drop_stale is None or isinstance(drop_stale, bool) else list(drop_stale)
        opens = [opened] * count if isinstance(opened, bool) else list(opened)
        if len(drops) != count or len(opens) != count:
            raise ValueError(f"drop_stale and opened need one value per source ({count})")
        self.segment = segment
        self._set_classes = set_classes if set_classes is not None else getattr(segment, "set_classes", None)
        self.watcher = ClassFileWatcher(class_file) if class_file else None
        self.shared_sinks: List[FrameSink] = list(shared_sinks)
        self._ready = threading.Event()  # set by a capture thread (a frame, or its end) and a writer (room freed)
        self.streams: List[_Stream] = []
        for index, (source, name, own_sinks) in enumerate(zip(sources, names, sink_lists)):
            grabber = FrameGrabber(
                source,
                drop_stale=bool(source.live) if drops[index] is None else bool(drops[index]),
                loop=loop,
                backoff=backoff,
                max_reconnects=max_reconnects,
                opened=bool(opens[index]),
                notify=self._ready,
            )
            self.streams.append(_Stream(index, str(name), source, own_sinks, grabber, window, temporal_consistency))
        self.alpha = float(alpha)
        self.legend = bool(legend)
        self.max_frames = max_frames
        self.on_result, self.on_written = on_result, None
        self.in_flight, self.in_order = in_flight, bool(in_order)
        # the errors of one frame's segmentation that skip that frame instead of ending the run (a Session's
        # skipped_fails: out of memory, a bad value), and each frame skipped so: (frame, why)
        self.skip_errors: Tuple[Type[BaseException], ...] = ()
        self.skipped_frames: List[Tuple[Frame, str]] = []
        self.objects = objects if callable(objects) or not objects else lambda _source, result: result.objects()
        self._flight: Optional[FlightSteps] = None  # open while run() runs, where frames can be in flight
        self.stats = StreamStats(sources=[stream.stats for stream in self.streams])
        self._calls: Deque[float] = collections.deque(maxlen=max(1, int(window)))
        self._frame_latencies: Deque[float] = collections.deque(maxlen=PERCENTILE_WINDOW)
        self._e2e_all: Deque[float] = collections.deque(maxlen=max(1, int(window)))
        self._pending_classes: Optional[Union[List[str], str]] = None
        self._pending_request = 0  # the request_classes() number of the pending vocabulary (0: not from one)
        self._requests = 0
        self._finished = False  # run() has returned: requests are refused (nothing would apply them)
        self._pending_lock = threading.Lock()
        self._stop = threading.Event()
        self._signalled: Optional[int] = None  # the signal received (set by the handler alone)
        self._stats_lock = threading.Lock()
        self._writer_error: Optional[BaseException] = None
        self._abandoned = False  # abandon(): a failed run, its sinks aborted
        self._started: Optional[float] = None  # time.monotonic() when run() began
        self._ended: Optional[float] = None
        self._cpu_start = self._cpu_end = 0.0
        names_now = getattr(segment, "class_names", None)
        if names_now:
            self.stats.classes = list(names_now)

    # ---- control (any thread) ---------------------------------------------------------------------------
    def stop(self) -> None:
        """Ask the loop to finish the current step and return (safe from signal handlers and other threads)."""
        self._stop.set()
        self._ready.set()

    def abandon(self) -> None:
        """Stop the loop as a failed run (any thread): its sinks are aborted, not closed, so nothing is put in place
        (a ``Session`` whose app loop raised or was dropped unfinished)."""
        self._abandoned = True
        self.stop()

    def set_classes(self, names) -> None:
        """Change the vocabulary while streaming; applied before the next step (from any thread)."""
        if self._set_classes is None:
            raise RuntimeError("this segment callable has no set_classes(); pass set_classes=... to the runner")
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
            if self._finished or self._stopping():
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
        """Thread-safe copy of the stats as a dict, with ``sources``: one dict per source (the preview's ``/stats``)."""
        self._sync_counters()
        with self._stats_lock:
            return self.stats.as_dict()

    # ---- loop -------------------------------------------------------------------------------------------
    def run(self, handle_signals: Optional[bool] = None) -> StreamStats:
        """Process frames until every source is done, ``stop()``, a sink's stop request, or SIGINT / SIGTERM
        (handled when running in the main thread, unless ``handle_signals=False``). Every frame segmented is drawn
        and written, and every sink closed (video files finalised), before it returns. Returns the final stats.

        Raises:
            the first exception of a writer thread (e.g. an ``OutputWriteError``: the disk is full), else the first of
            a sink's ``close()`` (a video that could not be finalised), after that cleanup.
        """
        if handle_signals is None:
            handle_signals = threading.current_thread() is threading.main_thread()
        previous = self._install_signals() if handle_signals else {}
        looped = False  # the loop ended without an exception (then a delay's held-back results are written)
        self.stats.started_at, self._started, self._cpu_start = time.time(), time.monotonic(), time.process_time()
        try:
            for stream in self.streams:
                stream.writer = threading.Thread(
                    target=self._write_loop, args=(stream,), name=f"zsseg-writer[{stream.name}]", daemon=True
                )
                stream.writer.start()
            for stream in self.streams:
                stream.grabber.start()
            self._flight = open_flight(self.segment, self.in_flight)
            self._loop()
            looped = True
        finally:
            if self._signalled is not None:  # outside the handler (see _on_signal)
                self._stop.set()
                log.info("signal %d received: stopping the stream", self._signalled)
            with self._pending_lock:
                self._finished = True
                if self._pending_request:  # queued after the last frame: never applied
                    self._vocabulary_outcome(self._pending_request, "the stream stopped before it applied")
                    self._pending_request = 0
            for stream in self.streams:
                stream.grabber.request_stop()
            for stream in self.streams:
                stream.grabber.stop()
            self._close_flight(looped)  # the frames still in flight output, the lanes freed
            for stream in self.streams:  # the results a delay still holds (a stop before a source's end)
                if looped and self._writer_error is None:
                    self._flush(stream)
            for stream in self.streams:  # every frame segmented is drawn and written before the sinks close
                if stream.writer is not None:
                    stream.queue.put(None)
                    stream.writer.join()
            self._ended, self._cpu_end = time.monotonic(), time.process_time()
            self._sync_counters()
            close_error = self._close_sinks()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        if self._writer_error is not None:
            raise self._writer_error
        if close_error is not None:  # e.g. a video whose last fragment met a full disk: no success reported
            raise close_error
        return self.stats

    def _close_sinks(self) -> Optional[BaseException]:
        """End every sink, in two steps so that a failed run replaces no output: every sink is finished first (a
        video's last fragment written); only when every write and every finish succeeded are they closed (their
        outputs put in place). After a failure every sink is aborted instead (nothing put in place: a failing label
        folder leaves the old video as it was). Returns the first failure, which ``run()`` raises unless a writer's
        failure comes first; the others are logged on one line each."""
        first: Optional[BaseException] = None
        sinks = self._all_sinks()
        if self._writer_error is None and not self._abandoned:
            for sink in sinks:
                try:
                    getattr(sink, "finish", lambda: None)()  # a sink of its own may have none (then close() does it)
                except Exception as exc:  # noqa: BLE001 - the run failed: every sink is aborted below
                    first = exc
                    break
        failed = self._writer_error is not None or first is not None or self._abandoned
        for sink in sinks:
            try:
                (getattr(sink, "abort", sink.close) if failed else sink.close)()
            except Exception as exc:  # noqa: BLE001 - end every sink even if one fails
                if first is None and self._writer_error is None:
                    first = exc
                else:
                    log.error("closing %s failed too: %s", sink.name, exc)
        return first

    def _install_signals(self) -> dict:
        previous = {}
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                previous[sig] = signal.signal(sig, self._on_signal)
            except (ValueError, OSError):  # not the main thread / unsupported platform
                pass
        return previous

    def _on_signal(self, signum, _frame) -> None:
        # only a flag: no lock and no log line. The handler runs in the main thread between two of its bytecodes,
        # and the main thread may hold a lock the handler would wait for: ``_ready``'s or ``_stop``'s (an Event's
        # set / clear / wait take a plain Lock), or tqdm's write lock (a progress update) while another thread (the
        # preview's request log, with -v) holds the logging handler's lock and waits for tqdm's: a log line here then
        # waits for ever (a CI run hung so after SIGTERM). The loop's wait on ``_ready`` is at most 0.2 s; then it
        # sees the flag, and run() logs the signal.
        self._signalled = signum

    @property
    def signalled(self) -> Optional[int]:
        """The signal (SIGINT / SIGTERM) that stopped :meth:`run`, or None."""
        return self._signalled

    def _stopping(self) -> bool:
        return self._stop.is_set() or self._signalled is not None

    def _loop(self) -> None:
        while not self._stopping() and not all(stream.done for stream in self.streams):
            self._apply_vocabulary()
            self._ready.clear()  # a frame or freed room after the polls below sets it again: no lost wake-up
            batch: List[Tuple[_Stream, Frame]] = []
            for stream in self.streams:
                if self.in_order and not all(self._drained(earlier) for earlier in self.streams[: stream.index]):
                    break  # in order: an earlier source still runs, or its last results are not written yet
                if stream.done or stream.queue.qsize() + stream.in_flight >= QUEUE_SIZE:  # its writer is behind
                    continue  # (its frames in flight count: their results are on their way to its queue)
                if self.max_frames is not None and stream.submitted >= self.max_frames:
                    continue  # its last frames are in flight (frames in flight only)
                frame = stream.grabber.get(timeout=0)
                if frame is not None:
                    frame.stream = stream.index
                    batch.append((stream, frame))
                elif stream.grabber.finished:
                    self._finish_stream(stream)
            if not batch:
                if self._flight is not None and len(self._flight):  # idle: a new frame until the oldest is due
                    wait = self._flight.expected_wait()
                    if not (wait > 0 and self._ready.wait(wait)):
                        self._deliver_flight(keep=0)  # then what is in flight is output
                    continue
                if not all(stream.done for stream in self.streams):
                    self._ready.wait(0.2)
                continue
            self._process(batch)
            if self._writer_error is not None:
                return
            if any(sink.stop_requested for sink in self._all_sinks()):
                return

    def _drained(self, stream: _Stream) -> bool:
        """``stream`` is done and every result of it written (none in flight, none waiting for its writer): in order,
        the next source starts only then (a sink they share, one folder or MCAP file, gets every frame in order)."""
        with self._stats_lock:
            return stream.done and not stream.in_flight and not stream.unwritten

    def _all_sinks(self) -> List[FrameSink]:
        return [sink for stream in self.streams for sink in stream.sinks] + self.shared_sinks

    def _finish_stream(self, stream: _Stream) -> None:
        if stream.done:  # e.g. its max_frames reached by a frame in flight after its source ended
            return
        self._flush(stream)
        stream.done = True
        error = stream.grabber.error
        if error is not None:
            log.error("source %s stopped: %s", stream.name, error)
        if stream.grabber.finished:
            return
        stream.grabber.request_stop()  # e.g. its max_frames: read nothing more

    def _process(self, batch: List[Tuple[_Stream, Frame]]) -> None:
        if self._flight is not None:  # this step submitted, then the previous step's results taken
            self._flight.submit(batch)
            with self._stats_lock:
                self.stats.engine_calls += 1
            self._deliver_flight(keep=len(batch))
            return
        start = time.perf_counter()
        if isinstance(
            self.segment, StreamSegmenter
        ):  # state per source (zsseg_rt.stream.video_filter.video.VideoSegmenter)
            results = list(self.segment.segment_streams([f.stream for _, f in batch], [f.image for _, f in batch]))
        elif len(batch) == 1:
            try:
                results = [self.segment(batch[0][1].image)]
            except self.skip_errors as exc:  # (none by default) this frame only: skipped, said, the stream goes on
                self._skip_frame(batch[0][0], batch[0][1], exc)
                return
        else:
            results = list(self.segment([frame.image for _, frame in batch]))
            if len(results) != len(batch):
                raise RuntimeError(f"segment() returned {len(results)} results for {len(batch)} frames")
        latency = time.perf_counter() - start
        now = time.monotonic()
        with self._stats_lock:
            self._calls.append(latency)
            self.stats.engine_calls += 1
        delayed = isinstance(self.segment, DelayedSegmenter) and bool(self.segment.delay)
        for (stream, frame), result in zip(batch, results):
            self._update_stats(stream, latency, now)
            if delayed:  # the result of the oldest frame held back (None while the first frames come in)
                stream.pending.append(frame)
                if result is not None:
                    self._output(stream, stream.pending.popleft(), result)
            else:
                self._output(stream, frame, result)
            self._check_max_frames(stream)

    def _skip_frame(self, stream: _Stream, frame: Frame, exc: BaseException) -> None:
        """A frame whose segmentation raised one of ``skip_errors`` (out of memory, a bad value): said, kept in
        ``skipped_frames`` as ``(frame, why)``, nothing written of it (``zsseg segment``'s rule for an image)."""
        from zsseg_rt.console.errors import format_error

        why = format_error(exc)
        log.warning("skipped %s: %s", frame.path or f"{stream.name} frame {frame.index}", why)
        self.skipped_frames.append((frame, why))

    def _check_max_frames(self, stream: _Stream) -> None:
        if self.max_frames is not None and stream.stats.processed >= self.max_frames:
            self._finish_stream(stream)

    def _deliver_flight(self, keep: int) -> None:
        """Output the results of the frames in flight, oldest first, until ``keep`` are left (flight.py)."""
        assert self._flight is not None
        for stream, frame, result, latency in self._flight.take(keep):
            with self._stats_lock:
                self._calls.append(latency)
            self._update_stats(stream, latency, time.monotonic())
            self._output(stream, frame, result)
            self._check_max_frames(stream)

    def _close_flight(self, deliver: bool) -> None:
        """At the end of run(): the frames still in flight output (``deliver``: the loop ended without an exception
        and no writer failed), then the lanes freed."""
        if self._flight is None:
            return
        try:
            if deliver and self._writer_error is None:
                self._deliver_flight(keep=0)
        finally:
            flight, self._flight = self._flight, None
            flight.close()

    def _output(self, stream: _Stream, frame: Frame, result) -> None:
        if self.objects:  # found once (and tracked: --track), for the app's loop and every sink (COCO, robot outputs)
            result.frame_objects = objects_of(self.objects, stream.index, frame, result)  # with its frame: by file
        with self._stats_lock:
            stream.unwritten += 1  # (the writer counts it down once written)
        stream.queue.put((frame, result, stream.stats.title()))  # room: only this thread puts, after full()
        if self.on_result is not None:
            self.on_result(frame, result, self.stats)

    def _flush(self, stream: _Stream) -> None:
        """The results a delayed segment callable still holds for ``stream`` (its end, or the run's), each with its
        frame; once per stream."""
        if stream.flushed or not isinstance(self.segment, DelayedSegmenter) or not self.segment.delay:
            return
        stream.flushed = True
        for result in self.segment.flush(stream.index):
            if stream.pending:
                self._output(stream, stream.pending.popleft(), result)

    # ---- vocabulary -------------------------------------------------------------------------------------
    def _apply_vocabulary(self) -> None:
        with self._pending_lock:
            names, self._pending_classes = self._pending_classes, None
            request, self._pending_request = self._pending_request, 0
        if names is None and self.watcher is not None:
            names = self.watcher.poll(time.monotonic())
        if names is None:
            return
        current = getattr(self.segment, "class_names", None)
        wanted = checked_names(names)
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

    # ---- statistics -------------------------------------------------------------------------------------
    def _sync_counters(self) -> None:
        with self._stats_lock:
            for stream in self.streams:
                grabber, stats = stream.grabber, stream.stats
                stats.captured, stats.dropped, stats.reconnects = grabber.captured, grabber.dropped, grabber.reconnects
                stats.failed_opens, stats.state = grabber.failed_opens, grabber.state
                stats.error = str(grabber.error) if grabber.error is not None else grabber.last_error
                stats.decode_errors = int(getattr(stream.source, "decode_errors", 0))
                stats.frames_declared = getattr(stream.source, "frames_declared", None)
                stats.ffmpeg_messages = int(getattr(stream.source, "ffmpeg_messages", 0))
                stats.frames_missing = int(getattr(stream.source, "missing_count", 0) or 0)
                stats.missing_frames = list(getattr(stream.source, "missing", []) or [])
            if self._started is not None:
                self.stats.elapsed_s = (self._ended or time.monotonic()) - self._started
                self.stats.cpu_s = (self._cpu_end if self._ended else time.process_time()) - self._cpu_start
            sources = [stream.stats for stream in self.streams]
            self.stats.captured = sum(s.captured for s in sources)
            self.stats.dropped = sum(s.dropped for s in sources)
            self.stats.reconnects = sum(s.reconnects for s in sources)
            self.stats.decode_errors = sum(s.decode_errors for s in sources)

    def _update_stats(self, stream: _Stream, latency: float, now: float) -> None:
        self._sync_counters()
        with self._stats_lock:
            stats = stream.stats
            stats.processed += 1
            stream.times.append(now)
            stream.latencies.append(latency)
            stream.latency_recent.append(latency)
            self._frame_latencies.append(latency)
            span = stream.times[-1] - stream.times[0] if len(stream.times) > 1 else 0.0
            stats.fps = (len(stream.times) - 1) / span if span > 0 else 0.0
            stats.latency_ms = 1000.0 * float(np.mean(stream.latencies))
            stats.latency_p50_ms, stats.latency_p99_ms = percentiles(stream.latency_recent)
            total = self.stats
            total.processed += 1
            total.fps = sum(s.stats.fps for s in self.streams)
            total.latency_ms = 1000.0 * float(np.mean(self._calls))
            total.latency_p50_ms, total.latency_p99_ms = percentiles(self._frame_latencies)
            total.mean_batch = total.processed / max(1, total.engine_calls)


class StreamRunner(MultiStreamRunner):
    """Run segmentation on one live source (the one-source :class:`MultiStreamRunner`).

    Args:
        segment: callable ``frame [H,W,3] uint8 BGR -> result`` with ``result.overlay(...)`` (e.g. an Engine).
        source: a ``FrameSource`` (see ``open_source``).
        sinks: where overlays go (window, video file, image folder, MJPEG preview, ...).
        drop_stale: True (default): the newest frame, stale ones dropped; False: every frame (``FrameGrabber``).
        source_opened: the caller opened ``source`` already (``FrameGrabber(opened=...)``).
        name: its name in the statistics (default ``source.name``).
        options: the other arguments of :class:`MultiStreamRunner` (``set_classes``, ``class_file``, ``loop``,
            ``backoff``, ``max_reconnects``, ``alpha``, ``legend``, ``max_frames``: stop after this many processed
            frames, ``on_result``, ``window``).
    """

    def __init__(
        self,
        segment: Callable,
        source: FrameSource,
        sinks: Sequence[FrameSink] = (),
        *,
        drop_stale: bool = True,
        source_opened: bool = False,
        name: Optional[str] = None,
        **options,
    ):
        super().__init__(
            segment,
            [source],
            [list(sinks)],
            names=[name or source.name],
            drop_stale=drop_stale,
            opened=source_opened,
            **options,
        )

    @property
    def source(self) -> FrameSource:
        return self.streams[0].source

    @property
    def grabber(self) -> FrameGrabber:
        return self.streams[0].grabber

    @property
    def sinks(self) -> List[FrameSink]:
        return self.streams[0].sinks
