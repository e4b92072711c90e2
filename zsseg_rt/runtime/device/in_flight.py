"""Frames in flight through the device pipeline: the next frame is launched before the last one is waited for
(the wall time as users see it).

    with engine.in_flight(2) as flight:      # or: for result in engine.stream(frames, in_flight=2): ...
        flight.submit(frame)                  # returns at once on a device pipeline: launched, not waited for
        flight.submit(next_frame)
        result = flight.result()              # the oldest frame's Result (waits for it), in submission order

A synchronous call (``engine(frame)``) copies the frame in, launches the frame's CUDA graph, waits for its labels,
copies them out, and only then takes the next frame: the GPU idles while the host works (the H100 lease of
2026-11-26: 2.77 ms a call for 2.42 ms of device time at fp16, C=171). In flight, frame N+1 is on the device while
the host waits for, and copies out, frame N's results.

**Lanes.** An ``InFlight`` runs ``depth`` device pipelines of its own ("lanes", each with its stream, frame and
staging buffers, CUDA graphs and copy of the vocabulary), made from the Engine's backend as the Engine makes its own
(``make_device_pipeline``): the Engine's synchronous calls, from any thread, never meet a frame in flight, and two
lanes' streams let one frame's copies and post-processing overlap the next one's encoder. A lane holds one frame at
a time. A frame goes to a free lane; when every lane holds one, the oldest is waited for first (its result kept
until ``result()`` takes it). So the host never writes a frame buffer or reads a staging buffer that device work
in flight still uses (``Memory.host_access``: the emulated runtime reports such an access as a race), a warm frame
allocates nothing and synchronises once (the wait for its results), and results come back in submission order,
equal to the synchronous path's (the same graphs on the same inputs). The first frame of each kind on each lane is
captured as the synchronous path captures it (run eagerly, captured, its first replay checked), waited for at once.

**Where frames cannot be in flight** (``lanes == 0``, ``why_synchronous`` says why): no device pipeline (the host
path; any CPU), fast mode, the two-stage pipeline, a backend whose device executor runs the contexts of its host
path (TensorRT without ``cuda_graphs``), ``depth`` 1; and, frame by frame, whole-image inference. Such frames run
through ``engine(image)`` at ``submit``: the same results, in the same order, nothing in flight.

**Memory.** Each lane holds what the Engine's device pipeline holds (its buffers; with graphs, each frame kind's
graph and its pool): ``depth`` times that while the ``InFlight`` is open. ``close()`` (or leaving ``with``) waits
for the lanes and frees everything they hold.

Tested on the emulated CUDA runtime (python_tests/runtime/test_in_flight_cuda.py: no race, results equal to the
synchronous path and in order, buffers reused, the calls of a warm frame, everything freed); timed only on a GPU
(``checks/gpu_engine.py``: frames per second with two in flight).
"""

from __future__ import annotations

import collections
import dataclasses
import threading
import time
from typing import Any, Deque, Iterable, Iterator, List, Optional

import numpy as np

from ..result import Result
from .device_video import host_path_reason

__all__ = ["InFlight", "lanes_unavailable", "stream"]


@dataclasses.dataclass
class _Lane:
    pipe: Any  # a DevicePipeline of this InFlight's own
    vocabulary: Any = None  # the PreparedVocabulary uploaded to it
    frame: Optional["_Frame"] = None  # the frame it holds (launched, not waited for), or None: free


@dataclasses.dataclass
class _Frame:
    number: int
    began: float  # perf_counter at submit
    result: Optional[Result] = None  # once run or waited for
    lane: Optional[_Lane] = None
    kind: str = ""  # "graph" (a replay launched), "eager" (enqueued eagerly), "" (already done)
    started: Any = None  # the graph's entry, or what DevicePipeline.start_eagerly returned
    hook: Any = None  # the Engine's stage_hook at submit
    image: Any = None
    order: str = "bgr"
    path: Optional[str] = None
    names: List[str] = dataclasses.field(default_factory=list)
    host_s: float = 0.0  # host time spent on it in submit


def lanes_unavailable(engine: Any) -> Optional[str]:
    """Why ``engine``'s frames cannot be in flight (see the module docstring), or None when they can."""
    reason = host_path_reason(engine)  # no device pipeline, or a mode other than exact
    if reason is not None:
        return reason
    device = engine.pipeline.device
    memory = device.memory
    if memory.kind == "host" or not getattr(memory, "cuda", True):
        return "the device pipeline runs on host buffers (nothing to overlap)"
    if getattr(device.executor, "shares_contexts", False):
        return (
            "the backend's device executor runs the contexts of its host path (TensorRT without cuda_graphs): a "
            "second executor must not run beside it"
        )
    return None


def _new_lane(pipeline: Any) -> Any:
    """A device pipeline like ``pipeline.device``, of its own: ``pipeline.make_device_lane()`` where a test set one,
    else ``make_device_pipeline`` over the same backend, windows per call, test scale, post-processing kernels and
    image encoder variant (the Engine's choices, shared: a geometry or an encoder timed once serves every lane)."""
    factory = getattr(pipeline, "make_device_lane", None)
    if factory is not None:
        return factory()
    from .device_pipeline import make_device_pipeline

    device = pipeline.device
    shared = {"device_pipeline": True, "postprocess_kernel": device.kernels, "encoder_variant": device.encoders}
    return make_device_pipeline(pipeline.meta, pipeline.backend, shared, max_windows=device.max_windows,
                                test_scale=device.test_scale)  # fmt: skip


def _close_lane(pipe: Any) -> None:
    """Wait for a lane, then free everything it holds: its graphs, frame buffers, vocabulary, and its memory."""
    memory = pipe.memory
    memory.activate()
    memory.synchronize()
    if pipe.graphs is not None:
        pipe.graphs.clear(pipe)
    pipe.release_frame_state(pipe.take_frame_state())
    for name in ("_image", "_text", "_bias"):
        buffer = getattr(pipe, name, None)
        if buffer is not None:
            memory.release(buffer)
            setattr(pipe, name, None)
    close = getattr(memory, "close", None)  # CudaMemory: whatever else it allocated (the executor's buffers)
    if close is not None:
        close()
    destroy = getattr(getattr(memory, "driver", None), "stream_destroy", None)
    if getattr(memory, "owns_stream", False) and destroy is not None:  # a CudaMemory's stream, made for the lane
        destroy(memory.stream)


class InFlight:
    """Up to ``depth`` frames of ``engine`` in flight at once (see the module docstring).

    Args:
        engine: a ``zsseg_rt.Engine``.
        depth: frames in flight at most (>= 1); on a device pipeline, the lanes made.
        color_order: the channel order of NumPy frames, "bgr" (default) or "rgb"; ``submit`` may say otherwise.

    Thread-safe (one call at a time). Not reentrant with the Engine's own lanes: each ``InFlight`` has its own.
    """

    def __init__(self, engine: Any, depth: int = 2, color_order: Optional[str] = None):
        if isinstance(depth, bool) or not isinstance(depth, (int, np.integer)) or depth < 1:
            raise ValueError(f"in_flight must be a whole number >= 1, got {depth!r}")
        _check_order(color_order)
        self.engine = engine
        self.depth = int(depth)
        self.color_order = color_order
        self.why_synchronous = "in_flight=1: each frame is waited for" if depth == 1 else lanes_unavailable(engine)
        self._lanes: List[_Lane] = []
        self._queue: Deque[_Frame] = collections.deque()
        self._lock = threading.Lock()
        self._submitted = 0
        self._turn = 0  # the lane to try first
        self._closed = False
        if self.why_synchronous is None:
            try:
                for _ in range(self.depth):
                    self._lanes.append(_Lane(_new_lane(engine.pipeline)))
            except BaseException:
                self.close()
                raise

    @property
    def lanes(self) -> int:
        """Device pipelines this InFlight runs (0: every frame runs synchronously, ``why_synchronous`` says why)."""
        return len(self._lanes)

    @property
    def graph_stats(self) -> Optional[dict]:
        """The lanes' CUDA graph counters added up (``FrameGraphs.stats``: captured, replayed, checked, ...), or None
        when no lane has graphs: ``checks/gpu_engine.py`` counts the replays of the frames it timed in flight."""
        stats = [lane.pipe.graphs.stats for lane in self._lanes if lane.pipe.graphs is not None]
        return {key: sum(each[key] for each in stats) for key in stats[0]} if stats else None

    def __len__(self) -> int:
        """Frames submitted whose results ``result()`` has not taken yet."""
        return len(self._queue)

    def submit(self, image: Any, color_order: Optional[str] = None) -> int:
        """Start one image (a path, a NumPy ``[H, W, 3]`` uint8 array, a PIL image, as ``engine(image)`` takes): on
        a lane, launched and not waited for, after the Engine's checks (limits, vocabulary); when every lane holds a
        frame, the oldest is waited for first. Returns the frame's number (0, 1, ...)."""
        _check_order(color_order)
        with self._lock:
            if self._closed:
                raise RuntimeError("InFlight.submit: this InFlight was closed")
            began = time.perf_counter()
            order = color_order or self.color_order
            item = _Frame(self._submitted, began)
            engine = self.engine
            vocab = engine._next_frame()  # the vocabulary snapshot this frame runs with (and a prepared upgrade)
            if self._lanes and engine.pipeline.inference_for(vocab) == "windows":
                self._start(item, image, order, vocab)
            else:  # nothing in flight: the Engine's own call
                item.result = engine(image, color_order=order)
            item.host_s = time.perf_counter() - began
            self._queue.append(item)
            self._submitted += 1
            return item.number

    def result(self) -> Result:
        """The oldest submitted frame's :class:`~zsseg_rt.Result` (waits for it); ``timing`` has "device_pipeline"
        (the host's time in submit and in the wait) and "total" (from submit to now)."""
        with self._lock:
            if not self._queue:
                raise RuntimeError("InFlight.result: no frame submitted whose result was not taken")
            item = self._queue[0]
            if item.result is None:
                self._wait(item)
            self._queue.popleft()
            assert item.result is not None
            return item.result

    def close(self) -> None:
        """Wait for every lane and free what the lanes hold; results not taken are dropped. Idempotent."""
        with self._lock:
            self._closed = True
            lanes, self._lanes = self._lanes, []
            self._queue.clear()
        errors = []
        for lane in lanes:
            try:
                _close_lane(lane.pipe)
            except Exception as exc:  # noqa: BLE001 - every lane is closed; the first failure is raised
                errors.append(exc)
        if errors:
            raise errors[0]

    def __enter__(self) -> "InFlight":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    # ---- lanes ------------------------------------------------------------------------------------------------
    def _free_lane(self) -> _Lane:
        """The next free lane in turn (so every lane warms up, each frame kind captured on each); when every lane
        holds a frame, the oldest frame is waited for first (its result kept until taken)."""
        count = len(self._lanes)
        turn = [self._lanes[(self._turn + k) % count] for k in range(count)]
        lane = next((lane for lane in turn if lane.frame is None), None)
        if lane is None:
            oldest = next(item for item in self._queue if item.lane is not None and item.result is None)
            lane = oldest.lane
            assert lane is not None
            self._wait(oldest)
        self._turn = (self._lanes.index(lane) + 1) % count
        return lane

    def _start(self, item: _Frame, image: Any, order: Optional[str], vocab: Any) -> None:
        engine = self.engine
        array, order, path = engine._as_image(image, order)
        if order not in ("bgr", "rgb"):
            raise ValueError(f"color_order must be 'bgr' or 'rgb', got {order!r}")
        engine.pipeline.plan(array, vocab.bias, len(vocab.text))  # the Engine's checks and limits, before any work
        lane = self._free_lane()
        pipe = lane.pipe
        if lane.vocabulary is not vocab:  # its first frame, or the first after set_classes: uploaded once
            pipe.set_vocabulary(vocab.text, vocab.bias)
            lane.vocabulary = vocab
        frame = np.ascontiguousarray(array)
        hook = engine.stage_hook
        item.image, item.order, item.path, item.names, item.hook = array, order, path, list(vocab.names), hook
        if pipe.graphs is not None and (hook is None or pipe.stage_clock().in_graph):
            started = pipe.graphs.start(pipe, frame, order, True, hook)
            if isinstance(started, tuple):  # a new kind: run, captured and checked now, as the synchronous call does
                item.result = self._result(item, *started)
                return
            item.kind = "graph"
        else:
            started = pipe.start_eagerly(frame, order, True, hook)
            item.kind = "eager"
        item.started, item.lane, lane.frame = started, lane, item

    def _wait(self, item: _Frame) -> None:
        lane = item.lane
        assert lane is not None
        pipe = lane.pipe
        waited = time.perf_counter()
        try:
            pipe.memory.activate()
            if item.kind == "graph":
                labels, scores = pipe.graphs.wait(pipe, item.started, item.hook)
            else:
                labels, scores = pipe.wait_eagerly(item.started)
        finally:
            lane.frame, item.lane, item.started = None, None, None
        item.host_s += time.perf_counter() - waited
        item.result = self._result(item, labels, scores)

    def _result(self, item: _Frame, labels: np.ndarray, scores: Optional[np.ndarray]) -> Result:
        engine = self.engine
        result = Result(labels, scores, list(item.names), item.order, inference="windows")  # type: ignore[arg-type]
        now = time.perf_counter()
        result.timing = {"device_pipeline": 1000.0 * (item.host_s or now - item.began)}
        result.timing["total"] = 1000.0 * (now - item.began)
        result.image, result.path = item.image, item.path
        result.banner, result.backend = engine.meta.weights_banner, engine.backend.name
        mark = getattr(engine, "mark_unknown", None)  # the unknown threshold (unknown_below), as engine(image)
        return mark(result) if mark is not None else result


def stream(
    engine: Any, frames: Iterable[Any], in_flight: int = 2, color_order: Optional[str] = None
) -> Iterator[Result]:
    """``engine``'s Results of ``frames``, in order, with up to ``in_flight`` frames in flight: frame N+1 is
    submitted before frame N's result is waited for (:class:`InFlight`; its lanes are freed when the generator ends
    or is closed)."""
    with InFlight(engine, in_flight, color_order) as flight:
        for frame in frames:
            flight.submit(frame)
            if len(flight) >= flight.depth:
                yield flight.result()
        while len(flight):
            yield flight.result()


def _check_order(color_order: Optional[str]) -> None:
    if color_order not in (None, "bgr", "rgb"):
        raise ValueError(f"color_order must be 'bgr' or 'rgb', got {color_order!r}")
