"""Per-stage timing of the device pipeline (the Engine's ``stage_hook``), without changing what runs.

A frame's stages ("upload", "preprocess", "image_encoder", "head", "postprocess", "download") are enqueued on one
stream, one after the other. A ``StageClock`` times them as the pipeline's memory allows (``Memory.stage_clock``):

* ``EventClock`` (``TorchMemory`` on CUDA; ``CudaMemory`` whose driver has timing events): a timing event is
  recorded on the pipeline's stream at every stage boundary: before the first stage, and at the end of each stage
  (the stages are contiguous in stream order, so a stage starts where the previous one ended). Inside a CUDA-graph
  capture the records are event-record nodes of the graph (torch's ``Event(external=True)``, the driver's
  ``CU_EVENT_RECORD_EXTERNAL``), which every replay records again: a timed frame runs as deployed, replayed as one
  graph. Nothing waits for the events: after the frame's one synchronisation, the time between consecutive events
  (``cudaEventElapsedTime``) goes to the hook, in seconds: each stage's device time, without the host's launch
  cost or wake-ups. Eager frames (graphs off, the first frame of a kind) use the same events.
* ``HostClock`` (``HostMemory``, torch on the CPU, where every stage runs on the calling thread): ``perf_counter``
  around each stage.
* ``SyncClock``: the measure of the pipeline before in-graph timing, kept for a memory without timing events (a
  driver that has none): the stream synchronised before and after each stage and ``perf_counter`` between, so a
  stage's time is its device work plus its launch and the host's wake-up. A capture cannot synchronise, so frames
  timed so run eagerly.

Every clock hands its times over after the frame's synchronisation (``report``), in stream order. A clock is reused
frame after frame (its events too): ``restart`` at the start of each frame's enqueue.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any, Callable, Iterator, List, Optional, Tuple

StageHook = Callable[[str, float], None]

__all__ = ["EventClock", "HostClock", "StageClock", "StageHook", "SyncClock", "stage"]


class StageClock:
    """Times the stages of one frame (see the module docstring)."""

    in_graph = False  # its marks can be captured into a CUDA graph, and each replay records them again

    def restart(self) -> None:
        """Forget the previous frame's stages (called where a frame's enqueue starts, also inside a capture)."""
        raise NotImplementedError

    def begin(self, name: str) -> None:
        raise NotImplementedError

    def end(self, name: str) -> None:
        raise NotImplementedError

    def times(self) -> List[Tuple[str, float]]:
        """``[(stage, seconds)]`` of the last frame in stream order; valid once its stream was synchronised."""
        raise NotImplementedError

    def report(self, hook: StageHook) -> None:
        """Hand each stage's time to ``hook(stage, seconds)`` (after the frame's synchronisation)."""
        for name, seconds in self.times():
            hook(name, seconds)

    @property
    def marks(self) -> int:
        """Time stamps taken by the last frame (an event clock: events recorded)."""
        return 0

    def reserve(self, count: int) -> None:
        """Have ``count`` marks ready before a capture (an event clock creates its events now, outside it)."""

    def close(self) -> None:
        """Free what the clock holds (an event clock: its events)."""


class HostClock(StageClock):
    """``perf_counter`` around each stage: for memories whose stages run on the calling thread."""

    def __init__(self) -> None:
        self._times: List[Tuple[str, float]] = []
        self._start = 0.0

    def restart(self) -> None:
        self._times = []

    def begin(self, name: str) -> None:
        self._start = time.perf_counter()

    def end(self, name: str) -> None:
        self._times.append((name, time.perf_counter() - self._start))

    def times(self) -> List[Tuple[str, float]]:
        return list(self._times)

    @property
    def marks(self) -> int:
        return 2 * len(self._times)


class SyncClock(HostClock):
    """The stream synchronised before and after each stage, ``perf_counter`` between (see the module docstring)."""

    def __init__(self, memory: Any) -> None:
        super().__init__()
        self.memory = memory

    def begin(self, name: str) -> None:
        self.memory.synchronize()  # what came before is finished: the time below is this stage's
        super().begin(name)

    def end(self, name: str) -> None:
        self.memory.synchronize()
        super().end(name)


class EventClock(StageClock):
    """Timing events on the memory's stream at the stage boundaries (see the module docstring).

    ``memory`` gives the events: ``timing_event()`` (a new one, created outside any capture where it can be),
    ``record_timing_event(event)`` (on the pipeline's stream; an event-record node while capturing),
    ``elapsed_ms(start, end)`` (float milliseconds between two completed records) and ``release_timing_event(event)``.
    """

    in_graph = True

    def __init__(self, memory: Any) -> None:
        self.memory = memory
        self._events: List[Any] = []  # pooled: the same events frame after frame (a frame is synchronised first)
        self._used = 0
        self._stages: List[Tuple[str, int, int]] = []  # (stage, index of its start event, index of its end event)
        self._last_end: Optional[int] = None  # the event that ended the previous stage: the next one's start
        self._start = 0

    def restart(self) -> None:
        self._used, self._stages, self._last_end = 0, [], None

    def _mark(self) -> int:
        if self._used == len(self._events):
            self._events.append(self.memory.timing_event())
        self.memory.record_timing_event(self._events[self._used])
        self._used += 1
        return self._used - 1

    def begin(self, name: str) -> None:
        self._start = self._last_end if self._last_end is not None else self._mark()

    def end(self, name: str) -> None:
        index = self._mark()
        self._stages.append((name, self._start, index))
        self._last_end = index

    def times(self) -> List[Tuple[str, float]]:
        events, elapsed = self._events, self.memory.elapsed_ms
        return [(name, elapsed(events[a], events[b]) / 1e3) for name, a, b in self._stages]

    @property
    def marks(self) -> int:
        return self._used

    @property
    def stages(self) -> List[str]:
        """The stages of the last frame, in order (what ``report`` hands over)."""
        return [name for name, _, _ in self._stages]

    def reserve(self, count: int) -> None:
        while len(self._events) < int(count):
            self._events.append(self.memory.timing_event())

    def close(self) -> None:
        events, self._events = self._events, []
        for event in events:
            self.memory.release_timing_event(event)
        self.restart()


@contextlib.contextmanager
def stage(clock: Optional[StageClock], name: str) -> Iterator[None]:
    """One stage of ``clock`` (free without one)."""
    if clock is None:
        yield
        return
    clock.begin(name)
    yield
    clock.end(name)
