"""How ``python -m benchmarks cuda`` times one op: kernel time and host time apart (issue 62, item 5).

For each side of a case (zsseg_rt's op, torch eager, torch.compile with ``--compile``), every round measures:

* **host time**: ``calls`` calls enqueued one after the other with nothing queued before them, timed on the host
  (``perf_counter``) before any synchronisation: what the Python call costs the host per call, the GPU not being
  what it waits for (a call that synchronises inside is caught by the kernel sample's check below);
* **kernel time**: a sleep kernel first (the *backlog*, about three times what the host needs to enqueue the calls),
  then two CUDA events around ``calls`` calls enqueued back to back: the GPU reaches the first call with all of them
  queued, runs them back to back, and the time between the events divided by ``calls`` is the device's time per
  call with the host's cost hidden. The sample is *saturated* when the GPU had not yet reached the start event when
  the host finished enqueueing (``Event.query()``); if it had, the host was the bottleneck after all and the sample
  is taken again with twice the backlog (at most ``RETRIES`` times; a sample that stays unsaturated is kept, marked);
* **graph time**: where the op can be captured, one call captured in a CUDA graph and the graph replayed ``calls``
  times the same way (a saturated GPU, between events): the kernels as a deployed graph runs them. Measured in
  rounds of its own after the eager ones (a capture that fails cannot cost the judged numbers);
* **end-to-end** (the form this benchmark had before issue 62, informational): one call between two events on an
  idle GPU, synchronised, i.e. host plus kernel.

Sides alternate within each round (ours, torch, ours, torch, ...); each statistic is the median over the rounds,
and the verdict is the median of the rounds' kernel ratios (ours / torch of the same round) over the rounds whose
kernel samples were saturated on both sides. On the CPU (``--device cpu``, a smoke test of the script) there are
no events: "kernel" and "host" are both the wall time of the calls, and saturation does not apply (``None``).

Everything device-specific goes through a *clock* (:class:`CudaClock`, :class:`CpuClock`; the tests inject a
simulated GPU), so the statistic itself is tested without a GPU and without timing anything.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional

RETRIES = 3  # a kernel sample that was not saturated is taken again with twice the backlog, this many times
BACKLOG_FACTOR = 3.0  # the backlog: this many times the host time of enqueueing the calls
MIN_BACKLOG_MS = 0.5


class CudaClock:
    """torch.cuda's events and sleep kernel on the current device and stream."""

    asynchronous = True

    def __init__(self) -> None:
        import torch

        self._torch = torch
        self.cycles_per_ms = self._calibrate()

    def event(self):
        return self._torch.cuda.Event(enable_timing=True)

    def backlog(self, ms: float) -> None:
        if ms > 0:
            self._torch.cuda._sleep(max(1, int(ms * self.cycles_per_ms)))

    def synchronize(self) -> None:
        self._torch.cuda.synchronize()

    @staticmethod
    def now() -> float:
        return time.perf_counter()

    def _calibrate(self) -> float:
        """Sleep-kernel cycles per ms of this GPU (the second of two runs: the first also loads the kernel)."""
        rate = 0.0
        for cycles in (100_000, 2_000_000):
            start, end = self.event(), self.event()
            start.record()
            self._torch.cuda._sleep(cycles)
            end.record()
            end.synchronize()
            rate = cycles / max(start.elapsed_time(end), 1e-6)
        return rate


class _CpuEvent:
    t = 0.0

    def record(self) -> None:
        self.t = time.perf_counter()

    def query(self) -> bool:
        return True

    def synchronize(self) -> None:
        pass

    def elapsed_time(self, end: "_CpuEvent") -> float:
        return (end.t - self.t) * 1e3


class CpuClock:
    """The CPU smoke test's clock: events are host timestamps, there is no backlog, nothing is asynchronous."""

    asynchronous = False

    @staticmethod
    def event() -> _CpuEvent:
        return _CpuEvent()

    def backlog(self, ms: float) -> None:
        pass

    def synchronize(self) -> None:
        pass

    @staticmethod
    def now() -> float:
        return time.perf_counter()


@dataclass
class Sample:
    kernel_ms: float  # the time between the events per call
    host_us: float  # the host's enqueue time per call
    saturated: Optional[bool]  # the GPU had not reached the start event when the host was done (None: CPU)
    backlog_ms: float


def sample(fn: Callable[[], Any], calls: int, clock, backlog_ms: float) -> Sample:
    """``calls`` calls of ``fn`` between two events, after a backlog of ``backlog_ms`` on the GPU."""
    clock.synchronize()
    clock.backlog(backlog_ms)
    start, end = clock.event(), clock.event()
    start.record()
    t0 = clock.now()
    for _ in range(calls):
        fn()
    host_s = clock.now() - t0
    saturated = (not start.query()) if clock.asynchronous else None
    end.record()
    end.synchronize()
    return Sample(start.elapsed_time(end) / calls, host_s * 1e6 / calls, saturated, backlog_ms)


def kernel_sample(fn: Callable[[], Any], calls: int, clock, host_us: float, at_least_ms: float = 0.0) -> Sample:
    """A saturated kernel sample: the backlog sized from the host time (or ``at_least_ms``: what an earlier round
    needed), doubled while the GPU caught up."""
    if not clock.asynchronous:
        return sample(fn, calls, clock, 0.0)
    backlog_ms = max(MIN_BACKLOG_MS, BACKLOG_FACTOR * host_us * calls / 1e3, at_least_ms)
    result = sample(fn, calls, clock, backlog_ms)
    for _ in range(RETRIES):
        if result.saturated:
            break
        backlog_ms *= 2
        result = sample(fn, calls, clock, backlog_ms)
    return result


def end_to_end_ms(fn: Callable[[], Any], clock) -> float:
    """One call between two events on an idle GPU, synchronised (the benchmark's form before issue 62)."""
    clock.synchronize()
    start, end = clock.event(), clock.event()
    start.record()
    fn()
    end.record()
    end.synchronize()
    return start.elapsed_time(end)


@dataclass
class Side:
    """One side of a case: its call and, where it could be captured, the replay of its CUDA graph."""

    name: str
    call: Callable[[], Any]
    replay: Optional[Callable[[], Any]] = None
    samples: Dict[str, List[Any]] = field(default_factory=dict)

    def add(self, key: str, value: Any) -> None:
        self.samples.setdefault(key, []).append(value)


def _last(side: Side, key: str) -> float:
    """The backlog the side's previous round ended with (0 in the first): a backlog that once needed doubling is not
    found again from scratch every round."""
    return side.samples.get(key, [0.0])[-1]


def measure_side(side: Side, calls: int, clock) -> None:
    """One round of one side's eager call: host time, kernel time, end-to-end (appended to ``side.samples``)."""
    host = sample(side.call, calls, clock, 0.0)
    kernel = kernel_sample(side.call, calls, clock, host.host_us, _last(side, "backlog_ms"))
    side.add("host_us", host.host_us)
    side.add("kernel_ms", kernel.kernel_ms)
    side.add("saturated", kernel.saturated)
    side.add("backlog_ms", kernel.backlog_ms)
    side.add("e2e_ms", end_to_end_ms(side.call, clock))


def measure_graph(side: Side, calls: int, clock) -> None:
    """One round of one side's graph replay, where it has one: host time and kernel time of the replays."""
    if side.replay is None:
        return
    host = sample(side.replay, calls, clock, 0.0)
    graph = kernel_sample(side.replay, calls, clock, host.host_us, _last(side, "graph_backlog_ms"))
    side.add("graph_ms", graph.kernel_ms)
    side.add("graph_backlog_ms", graph.backlog_ms)
    side.add("graph_host_us", host.host_us)
    side.add("graph_saturated", graph.saturated)


def run_rounds(sides: List[Side], calls: int, rounds: int, clock, measure: Callable = measure_side) -> None:
    """``rounds`` rounds of ``measure`` (:func:`measure_side` or :func:`measure_graph`), the sides alternating
    within each (ours, torch, ours, torch, ...)."""
    for _ in range(rounds):
        for side in sides:
            measure(side, calls, clock)


def _median(values: Optional[List[float]]) -> Optional[float]:
    return statistics.median(values) if values else None


def side_summary(side: Side) -> dict:
    """The medians of one side's rounds, and how many of its kernel samples were saturated."""
    s = side.samples
    saturated = s.get("saturated", [])
    return {
        "kernel_ms": _median(s.get("kernel_ms")),
        "host_us": _median(s.get("host_us")),
        "graph_ms": _median(s.get("graph_ms")),
        "graph_host_us": _median(s.get("graph_host_us")),
        "e2e_ms": _median(s.get("e2e_ms")),
        "saturated_rounds": None if any(v is None for v in saturated) else sum(bool(v) for v in saturated),
        "rounds": len(s.get("kernel_ms", [])),
    }


def _isolated(side: Side, i: int) -> bool:
    """Round ``i`` of ``side`` measured the kernel alone (saturated, or a synchronous CPU clock)."""
    return side.samples["saturated"][i] is not False


def compare(ours: Side, reference: Side, limit: float = 1.0) -> dict:
    """The verdict of ``ours`` against ``reference``: the median of the rounds' kernel ratios over the rounds whose
    kernel samples were saturated on both sides; ``isolated`` unless fewer than half the rounds were."""
    a, b = ours.samples, reference.samples
    rounds = min(len(a.get("kernel_ms", [])), len(b.get("kernel_ms", [])))
    kept = [i for i in range(rounds) if _isolated(ours, i) and _isolated(reference, i)]
    kernel_ratios = [a["kernel_ms"][i] / b["kernel_ms"][i] for i in kept]

    def ratio(key: str) -> Optional[float]:
        x, y = _median(a.get(key)), _median(b.get(key))
        return None if x is None or not y else x / y

    isolated = rounds > 0 and 2 * len(kept) >= rounds
    kernel_ratio = _median(kernel_ratios)
    return {
        "kernel_ratio": kernel_ratio,
        "kernel_ratios": kernel_ratios,
        "isolated": isolated,
        "host_ratio": ratio("host_us"),
        "graph_ratio": ratio("graph_ms"),
        "e2e_ratio": ratio("e2e_ms"),
        "pass": bool(isolated and kernel_ratio is not None and kernel_ratio <= limit),
    }


def capture(factory: Callable[[int], Callable[[], Any]]) -> Callable[[], None]:
    """One call captured in a CUDA graph (torch.cuda.graph), returned as the graph's replay. ``factory(stream)``
    makes the call on a stream (zsseg_rt's ops take the capture stream and preallocated outputs; torch's ignore
    it). Three warm-up calls on a side stream first, as torch asks before a capture."""
    import torch

    side_stream = torch.cuda.Stream()
    side_stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side_stream):
        warm = factory(side_stream.cuda_stream)
        for _ in range(3):
            warm()
    torch.cuda.current_stream().wait_stream(side_stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        factory(torch.cuda.current_stream().cuda_stream)()
    torch.cuda.synchronize()
    return _Replay(graph, factory)


class _Replay:
    """A captured graph's replay; keeps what the capture used (the factory holds the preallocated outputs)."""

    def __init__(self, graph: Any, keep: Any) -> None:
        self.graph, self.keep = graph, keep

    def __call__(self) -> None:
        self.graph.replay()
