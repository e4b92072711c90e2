"""The capture thread: reads a source continuously and always hands the newest frame over (stale frames are
dropped and counted), reconnecting with exponential backoff when the source is lost."""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from typing import Optional

import numpy as np

from ..sources import FrameSource, SourceError

log = logging.getLogger("zsseg_rt.stream")


@dataclasses.dataclass
class Frame:
    """One captured frame. ``index``: its number, the name every output gives it: a file's or folder's from its
    presentation time (``FrameSource.last_number``: a frame lost to damaged data leaves a gap; a ``--loop`` counts on
    after the last one), a live source's capture order (gaps = dropped frames, in both); ``timestamp``: time.monotonic() at
    capture, for end-to-end latency; ``capture_time``: time.time() at capture (the wall clock: a live frame's time
    stamp, e.g. ``header.stamp`` of the robot outputs); ``pts``: the frame's presentation time in seconds from the
    start of a video file (its time stamp there; None for a live source)."""

    image: np.ndarray  # [H, W, 3] uint8 BGR
    index: int
    timestamp: float
    stream: int = 0  # which source of a multi-source runner it came from (its position in the list)
    capture_time: float = 0.0
    pts: Optional[float] = None
    path: Optional[str] = None  # the image file it was read from (an image folder's frame), else None


@dataclasses.dataclass
class Backoff:
    """Reconnect delays: ``initial``, doubled after each failure up to ``maximum`` (reset after a good frame)."""

    initial: float = 0.5
    maximum: float = 10.0
    factor: float = 2.0

    def delay(self, attempt: int) -> float:
        return min(self.maximum, self.initial * self.factor ** max(0, attempt - 1))


class FrameGrabber:
    """Runs ``source`` in a background thread.

    Args:
        source: the ``FrameSource`` (opened by the thread).
        drop_stale: True (default, latency over throughput): a frame not yet taken when the next one arrives is
            replaced and counted in ``dropped``. False: the thread waits until each frame is taken (every frame
            processed, e.g. converting a video file).
        loop: restart finite sources (files, folders) at their end instead of stopping.
        backoff: reconnect delays after the source is lost or fails to open.
        max_reconnects: give up after this many consecutive failed attempts (None: never; ``error`` is set).
        pace: for non-live sources with a known fps, read at that rate (as a camera would deliver them) when
            ``drop_stale``; without pacing a file would be read as fast as possible and mostly dropped.
        opened: the caller opened ``source`` already (e.g. to fail at once on a missing camera): the thread reads
            it without opening it again. Reconnects after a loss still reopen it.
        notify: an event set whenever a frame is published or the thread finishes (a consumer of several
            grabbers waits on one event for all of them).

    ``state`` says where the thread is: "starting", "streaming", "reconnecting" (lost, or not opened yet: retrying
    with backoff), "ended" (a finite source's end), "failed" (gave up, or an error: ``error``) or "stopped";
    ``failed_opens`` counts the open attempts that failed and ``last_error`` says why the source is not streaming
    now ("lost", or why the last open failed; None once it opened).
    """

    def __init__(
        self,
        source: FrameSource,
        drop_stale: bool = True,
        loop: bool = False,
        backoff: Optional[Backoff] = None,
        max_reconnects: Optional[int] = None,
        pace: bool = True,
        opened: bool = False,
        notify: Optional[threading.Event] = None,
    ):
        self.source = source
        self.notify = notify
        self.opened = opened
        self.drop_stale = drop_stale
        self.loop = loop
        self.backoff = backoff or Backoff()
        self.max_reconnects = max_reconnects
        self.pace = pace
        self.captured = 0
        self._read = 0  # frames read from the source (the index of the next one)
        self._offset = 0  # added to a source's frame numbers: a looped file counts on after its last frame
        self._last_index: Optional[int] = None
        self.dropped = 0
        self.reconnects = 0
        self.failed_opens = 0
        self.state = "starting"
        self.last_error: Optional[str] = None
        self.error: Optional[BaseException] = None
        self._cond = threading.Condition()
        self._latest: Optional[Frame] = None
        self._finished = False
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    # ---- consumer side ----------------------------------------------------------------------------------
    @property
    def finished(self) -> bool:
        """True once the source ended (finite, not looping), gave up reconnecting, or ``stop()`` was called,
        and the last frame has been taken."""
        with self._cond:
            return self._finished and self._latest is None

    def get(self, timeout: Optional[float] = None) -> Optional[Frame]:
        """The newest frame not yet taken, waiting up to ``timeout`` seconds; None when there is none."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._latest is None and not self._finished:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return None
                self._cond.wait(remaining)
            frame, self._latest = self._latest, None
            if frame is not None and not self.drop_stale:
                self.captured += 1  # every-frame mode: a frame counts once the consumer has it (see _publish)
            self._cond.notify_all()
            return frame

    def start(self) -> "FrameGrabber":
        if self._thread is not None:
            raise RuntimeError("FrameGrabber.start() called twice")
        self._thread = threading.Thread(target=self._run, name=f"zsseg-capture[{self.source.name}]", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread and close the source (waits up to ``timeout`` for a blocked read to return).

        Without ``drop_stale`` (every frame processed) nothing is dropped at a stop either: the frame read ahead
        and not taken is discarded, never counted as captured (the consumer stopped before it, as for the frames
        after it), and the thread publishes nothing more."""
        self.request_stop()
        with self._cond:
            if not self.drop_stale:
                self._latest = None
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning(
                    "capture thread of %s did not stop within %.1fs (blocked in a read)", self.source.name, timeout
                )

    def request_stop(self) -> None:
        """Ask the thread to stop without waiting for it (``stop()`` then waits): stopping several grabbers, each
        waits for its own read at the same time."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()

    # ---- capture thread ---------------------------------------------------------------------------------
    def _wake(self) -> None:
        if self.notify is not None:
            self.notify.set()

    def _publish(self, image: np.ndarray, timestamp: float) -> bool:
        """Hand a frame over (replacing, and counting as dropped, one not yet taken when ``drop_stale``; else waiting
        until it is taken). False when it was not handed over: every-frame mode and the grabber is stopping (a
        frame the consumer will never take is neither captured nor dropped).

        ``captured`` only grows, and a stop leaves it as it was: with ``drop_stale`` a frame counts when it is read
        (a camera's frame is captured whether or not it is processed); in every-frame mode when the consumer takes it
        (``get``), so the one frame read ahead, which a stop discards, is never counted (it was counted here and
        taken back at the stop: a preview's ``/stats`` said 43 and the final stats 42)."""
        with self._cond:
            if not self.drop_stale:
                while self._latest is not None and not self._stop.is_set():
                    self._cond.wait(0.1)
                if self._stop.is_set():
                    return False
            if self._latest is not None:
                self.dropped += 1
            self._read += 1
            if self.drop_stale:
                self.captured += 1
            pts = getattr(self.source, "last_pts", None)  # a file's presentation time of the frame just read
            path = getattr(self.source, "last_path", None)  # an image folder's file of the frame just read
            self._latest = Frame(image, self._number(), timestamp, capture_time=time.time(), pts=pts, path=path)
            self._cond.notify_all()
        self._wake()
        return True

    def _number(self) -> int:
        """The frame just read's number: its source's (from its presentation time), counted on after the last one
        when the source started again (``loop``); a source without numbers (live): its capture order."""
        number = getattr(self.source, "last_number", None)
        if number is None:
            index = self._read - 1
        else:
            index = self._offset + int(number)
            if self._last_index is not None and index <= self._last_index:  # the file started again
                self._offset += self._last_index + 1 - index
                index = self._last_index + 1
        self._last_index = index
        return index

    def _finish(self) -> None:
        with self._cond:
            self._finished = True
            self._cond.notify_all()
        self._wake()

    def _open_with_backoff(self, attempt: int) -> int:
        """Open the source, retrying with backoff; returns the number of failed attempts (0 = opened at once)."""
        while not self._stop.is_set():
            try:
                self.source.open()
                self.state = "streaming"
                self.last_error = None
                return attempt
            except (SourceError, OSError) as exc:
                attempt += 1
                self.failed_opens += 1
                self.last_error = str(exc)
                self.state = "reconnecting"
                if self.max_reconnects is not None and attempt > self.max_reconnects:
                    self.error = exc
                    self.state = "failed"
                    log.error("giving up on %s after %d attempts: %s", self.source.name, attempt - 1, exc)
                    return -1
                delay = self.backoff.delay(attempt)
                log.warning(
                    "source %s unavailable (%s); retrying in %.1fs (attempt %d)", self.source.name, exc, delay, attempt
                )
                self._stop.wait(delay)
        return -1

    def _run(self) -> None:
        attempt = 0
        try:
            if self.opened:
                self.state = "streaming"
            elif self._open_with_backoff(0) < 0:
                return
            next_due = time.monotonic()
            while not self._stop.is_set():
                try:
                    image = self.source.read()
                except SourceError as exc:  # a file that cannot be read on (damaged beyond resynchronising)
                    self.error = exc  # the consumer reports it (the runner: "source NAME stopped: ...")
                    log.debug("%s", exc)
                    return
                if image is not None:
                    attempt = 0
                    if not self._publish(image, time.monotonic()):  # the time of capture: e2e latency
                        return
                    if self.drop_stale and self.pace and not self.source.live and self.source.fps:
                        next_due += 1.0 / self.source.fps
                        wait = next_due - time.monotonic()
                        if wait > 0:
                            self._stop.wait(wait)
                        else:
                            next_due = time.monotonic()
                    continue
                if self.source.ended and not self.loop:
                    log.info("source %s ended after %d frames", self.source.name, self._read)
                    self.state = "ended"
                    return
                self.source.close()
                if self.source.ended:
                    log.info("source %s ended; looping", self.source.name)
                else:
                    attempt += 1
                    self.reconnects += 1
                    self.state = "reconnecting"
                    self.last_error = "lost (the source gave no frame)"
                    delay = self.backoff.delay(attempt)
                    log.warning("source %s lost; reconnecting in %.1fs (attempt %d)", self.source.name, delay, attempt)
                    if self.max_reconnects is not None and attempt > self.max_reconnects:
                        self.error = SourceError(f"{self.source.name} lost and not back after {attempt - 1} tries")
                        self.state = "failed"
                        log.error("%s", self.error)
                        return
                    self._stop.wait(delay)
                attempt = self._open_with_backoff(attempt)
                if attempt < 0:
                    return
                next_due = time.monotonic()
        except BaseException as exc:  # noqa: BLE001 - reported to the consumer through ``error``
            self.error = exc
            self.state = "failed"
            log.exception("capture thread of %s failed", self.source.name)
        finally:
            if self.error is not None:
                self.state = "failed"
            elif self.state not in ("ended", "failed"):
                self.state = "stopped"
            self.source.close()
            self._finish()
