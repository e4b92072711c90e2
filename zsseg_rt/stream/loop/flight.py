"""The stream loop's frames in flight: on a GPU's device pipeline the loop submits a step's frames
and only then takes the previous step's results, so the device works on the next frames while the host waits for,
copies out and queues the last ones (``Engine.in_flight``, ``zsseg_rt/runtime/device/in_flight.py``).

``MultiStreamRunner(in_flight=2)`` (the default) opens one with ``segment.in_flight(depth)`` when the segment callable
has it (a ``zsseg_rt.Engine``; a ``VideoSegmenter`` whose filter is off) and frames can be in flight there (``lanes``
> 0: a device pipeline on a GPU); elsewhere (a CPU, a video filter, which needs each result before the next frame)
the loop runs as before, each step waited for. Results are output in the order the frames came in, each to its
source. A result is never held back for a frame that does not come: when no frame is ready (a live camera between
frames, a decoder slower than the device) the loop waits for one only until the oldest frame in flight is due (its
submit time plus the shortest latency of the recent frames: ``expected_wait``; its result could not be taken
sooner), then takes what is in flight (``take(keep=0)``). And a source's frames in flight count against its
writer's queue (back-pressure unchanged).
"""

from __future__ import annotations

import collections
import logging
import time
from typing import Any, Deque, Iterator, Optional, Tuple

log = logging.getLogger("zsseg_rt.stream")

__all__ = ["FlightSteps", "open_flight"]


class FlightSteps:
    """Frames of the loop's steps in flight on ``flight`` (an ``InFlight``, or what ``segment.in_flight`` gives)."""

    def __init__(self, flight: Any):
        self.flight = flight
        self.per_stream = bool(getattr(flight, "per_stream", False))  # VideoSegmenter's: results name the source
        self.waiting: Deque[Tuple[Any, Any, float]] = collections.deque()  # (stream, frame, submitted at)
        self.latencies: Deque[float] = collections.deque(maxlen=30)  # submit -> result of the recent frames

    def __len__(self) -> int:
        return len(self.waiting)

    def submit(self, batch) -> None:
        """Submit a step's ``(stream, frame)`` pairs, in order; each source's ``in_flight`` and ``submitted`` count."""
        for stream, frame in batch:
            began = time.perf_counter()
            if self.per_stream:
                self.flight.submit(frame.image, stream=stream.index)
            else:
                self.flight.submit(frame.image)
            stream.in_flight += 1
            stream.submitted += 1
            self.waiting.append((stream, frame, began))

    def take(self, keep: int = 0) -> Iterator[Tuple[Any, Any, Any, float]]:
        """The oldest frames' ``(stream, frame, result, latency seconds)`` until ``keep`` are left in flight."""
        while len(self.waiting) > keep:
            stream, frame, began = self.waiting.popleft()
            try:
                result = self.flight.result()
            finally:
                stream.in_flight -= 1
            self.latencies.append(time.perf_counter() - began)
            yield stream, frame, result, self.latencies[-1]

    def expected_wait(self, most: float = 0.2) -> float:
        """Seconds until the oldest frame in flight is due (its submit time plus the shortest recent latency; 0 with
        none measured yet), at most ``most``: how long the idle loop may wait for a new frame at no cost."""
        if not self.waiting or not self.latencies:
            return 0.0
        return min(most, max(0.0, self.waiting[0][2] + min(self.latencies) - time.perf_counter()))

    def close(self) -> None:
        self.waiting.clear()
        self.flight.close()


def open_flight(segment: Any, depth: int) -> Optional[FlightSteps]:
    """``FlightSteps`` over ``segment.in_flight(depth)`` where frames can be in flight (see the module docstring),
    else None (the loop waits for each step)."""
    opener = getattr(segment, "in_flight", None)
    from .protocols import DelayedSegmenter

    # a look-ahead's results are already an earlier frame's
    delayed = isinstance(segment, DelayedSegmenter) and bool(segment.delay)
    if depth <= 1 or not callable(opener) or delayed:
        return None
    flight = opener(depth)
    if flight is None:
        return None
    if not flight.lanes:
        log.debug("frames not in flight: %s", flight.why_synchronous)
        flight.close()
        return None
    log.info("%d frames in flight on the device pipeline (%d lanes)", depth, flight.lanes)
    return FlightSteps(flight)
