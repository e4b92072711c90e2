"""CUDA graphs for the device pipeline: each kind of frame is captured once and then replayed with one launch.

A frame's device work (``DevicePipeline.enqueue_frame``: upload into page-locked memory's device twin, preprocess,
image encoder, head, fused post-processing, labels (and scores) copied into page-locked staging buffers) depends on
the frame's size and channels, the colour order, whether scores are wanted, the vocabulary (its size C and the
buffers holding it), the precision the graphs run at and whether its stages are timed. That is the key of a graph:

* a frame whose key has no graph yet runs eagerly (which also warms up cuBLAS/cuDNN before any capture), then the
  same work is captured into a graph that owns that frame kind's buffers (frame, merged logits, results, staging):
  addresses a graph reads or writes never change while it lives;
* a frame of a known kind is copied into its graph's page-locked frame buffer, the graph is replayed, the stream
  synchronised and the staging buffers copied into the caller's arrays;
* ``set_vocabulary`` drops every graph before the vocabulary buffers they read are replaced (captured again on
  the next frame of each kind); at most ``max_graphs`` graphs are kept (least recently used dropped first);
* a capture that fails (e.g. an operation that cannot be captured) turns graphs off for this pipeline with a
  warning; frames then run eagerly, with the same results;
* the first replay of every graph is checked against the eager run of the same frame, right after the capture:
  the graph's device frame buffer, device results and host staging buffers are overwritten first (an inverted
  frame, -1 labels, NaN scores), so the replay must upload, compute and download everything itself. A replay that
  differs beyond ``replay_mismatch``'s bound drops that graph and turns graphs off for this pipeline, with one
  warning; the frame's result is the eager one;
* a timed frame (a ``stage_hook``) is a kind of its own: its graph is captured with the stage clock's timing
  events as event-record nodes (``stage_timing.EventClock``), each replay records them, and after the replay's
  synchronisation the stage times go to the hook. The untimed graph of the same frame has no such nodes.

``TorchCudaGraphs`` captures with ``torch.cuda.CUDAGraph`` on the memory's own stream (the torch backend's
executor); ``DriverCudaGraphs`` with the CUDA driver's stream capture on a ``CudaMemory``'s stream (the TensorRT
device path, opt-in: ``backend="tensorrt"`` with ``cuda_graphs=True``). What ran on a GPU (the H200 lease of 2026-11-26,
ops stage): ``TorchCudaGraphs`` capture and replay of the tiny fp32 bundle (python_tests/runtime/
test_cuda_graphs.py::test_real_cuda_graphs_match_the_eager_pipeline: 2 replays, both first-replay checks passed),
and ``DriverCudaGraphs`` with ``CudaMemory`` over the CUDA-runtime stand-in driver (python_tests/runtime/
test_device_graphs_cuda.py). What has not: the full-size encoder's graph, fp16/bf16 graphs, timed graphs (event
nodes), and ``DriverCudaGraphs`` over the real ctypes ``cuda_driver.CudaDriver`` (``checks/gpu_engine.py`` and
``checks/gpu_probe.py`` run them on the next lease). In CI, ``DriverCudaGraphs`` with the whole
``DevicePipeline`` runs on the emulated CUDA runtime, whose capture records a graph that runs only when launched;
``TorchCudaGraphs``' bookkeeping is tested on the CPU with a recording stand-in. The first-replay check is what
stands between a wrong capture and a silently wrong result.
"""

from __future__ import annotations

import collections
import logging
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

LOG = logging.getLogger("zsseg_rt.cuda_graphs")

__all__ = ["DriverCudaGraphs", "FrameGraphs", "TorchCudaGraphs"]


class TorchCudaGraphs:
    """Captures and replays with ``torch.cuda.CUDAGraph`` on ``memory.torch_stream`` (a ``TorchMemory`` with its
    own stream: the legacy default stream cannot be captured)."""

    def __init__(self, memory):
        if getattr(memory, "torch_stream", None) is None:
            raise ValueError(
                "CUDA graphs need a TorchMemory on CUDA with its own stream (TorchMemory(own_stream=True))"
            )
        self.memory = memory

    def capture(self, body: Callable[[], Any]):
        torch = self.memory.torch
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, stream=self.memory.torch_stream):
            body()
        return graph

    def replay(self, graph) -> None:
        graph.replay()  # enqueued on the stream it was captured on

    def release(self, graph) -> None:
        graph.reset()


class DriverCudaGraphs:
    """Captures and replays with the CUDA driver's stream capture (global mode) on ``memory.stream`` (a
    ``CudaMemory``, whose driver has ``begin_capture``/``end_capture``/``graph_instantiate``/``graph_launch``/
    ``graph_exec_destroy``/``graph_destroy``, as ``cuda_driver.CudaDriver`` does). A capture yields an instantiated
    graph; the captured graph itself is destroyed at once (the executable does not need it)."""

    def __init__(self, memory):
        needed = ("begin_capture", "end_capture", "graph_instantiate", "graph_launch", "graph_exec_destroy")
        missing = [name for name in needed + ("graph_destroy",) if not hasattr(memory.driver, name)]
        if missing:
            raise ValueError(f"CUDA graphs need a driver with {', '.join(missing)}")
        self.memory = memory

    def capture(self, body: Callable[[], Any]):
        driver, stream = self.memory.driver, self.memory.stream
        driver.begin_capture(stream)
        try:
            body()
        except BaseException:
            try:  # leave capture mode; the (invalid or partial) graph is not used
                graph = driver.end_capture(stream)
            except Exception:  # noqa: BLE001 - the body's error is the one to report
                graph = 0
            if graph:
                driver.graph_destroy(graph)
            raise
        graph = driver.end_capture(stream)  # CudaError when an illegal call invalidated the capture
        try:
            return driver.graph_instantiate(graph)
        finally:
            driver.graph_destroy(graph)

    def replay(self, graph) -> None:
        self.memory.driver.graph_launch(graph, self.memory.stream)

    def release(self, graph) -> None:
        self.memory.driver.graph_exec_destroy(graph)


def _same_buffers(a, b) -> bool:
    """Whether two frame-state values hold the very same buffers (dicts and tuples compared member by member)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same_buffers(a[k], b[k]) for k in a)
    if isinstance(a, tuple) and isinstance(b, tuple):
        return len(a) == len(b) and all(x is y or (isinstance(x, tuple) and x == y) for x, y in zip(a, b))
    return a is b


# The first replay of a graph against the eager run of the same frame (``FrameGraphs`` checks it once per graph). The
# replay launches the kernels the eager run launched, on the same inputs, so it is bitwise equal unless a library
# picked another algorithm while capturing (cuBLAS chooses its GEMM algorithm per call; under capture its workspace
# comes from the graph's pool): that changes the summation order of a dot product, a few ulps of each encoder
# output, so scores (sigmoid of the logits) move by about 1e-6 in fp32 and by the format's own rounding (fp16
# ~1e-3, bf16 ~8e-3 relative on logits up to ~10) at a reduced precision, and a label flips only where two classes
# tie within that. What a wrong replay gives (stale or missing buffers, a missed upload or download, another
# vocabulary) is labels wrong over whole windows and scores off by O(0.1) or NaN: far beyond these bounds.
REPLAY_LABEL_FRACTION = 1e-3  # at most this share of the pixels may get another label
REPLAY_SCORE_ATOL = {"fp32": 1e-4}  # largest |score difference|; any other precision: REPLAY_SCORE_ATOL_REDUCED
REPLAY_SCORE_ATOL_REDUCED = 2e-2


def replay_mismatch(eager, replayed, precision: str = "fp32") -> Optional[str]:
    """Why a graph's replay ``(labels, scores or None)`` is not the eager run's of the same frame (beyond the bound
    above), or None when it agrees."""
    labels, scores = eager
    got_labels, got_scores = replayed
    if got_labels.shape != labels.shape:
        return f"labels of shape {list(got_labels.shape)} instead of {list(labels.shape)}"
    differ = int(np.count_nonzero(got_labels != labels))
    allowed = int(REPLAY_LABEL_FRACTION * labels.size)
    if differ > allowed:
        return f"{differ} of {labels.size} labels differ (at most {allowed} may)"
    if scores is None:
        return None
    atol = REPLAY_SCORE_ATOL.get(precision, REPLAY_SCORE_ATOL_REDUCED)
    nan_differs = np.isnan(scores) != np.isnan(got_scores)
    if nan_differs.any():
        return f"{int(np.count_nonzero(nan_differs))} scores are NaN in one run only"
    finite = np.isfinite(scores) & np.isfinite(got_scores)
    worst = float(np.max(np.abs(scores[finite] - got_scores[finite]), initial=0.0))
    if worst > atol:
        return f"scores differ by up to {worst:.3g} (bound {atol:g} at {precision})"
    return None


@dataclass
class _Entry:
    handle: Any  # the captured graph
    state: Dict[str, Any]  # the frame kind's buffers (DevicePipeline.take_frame_state), owned by the graph
    outputs: Tuple[np.ndarray, Optional[np.ndarray]]  # the staging buffers the graph downloads into
    transfers: List[Tuple[str, str, int]] = field(default_factory=list)  # the copies one replay makes
    replays: int = 0
    clock: Any = None  # a timed graph's stage clock (stage_timing.EventClock): its events are nodes of the graph


class FrameGraphs:
    """The captured graphs of one ``DevicePipeline`` (see the module docstring).

    Args:
        backend: captures/replays/releases graphs (``TorchCudaGraphs``, or a stand-in in tests).
        precision: part of every key (the graphs of one pipeline share it; recorded for the report).
        max_graphs: graphs kept at most (each holds its frame kind's buffers and activations).
    """

    def __init__(self, backend, precision: str = "fp32", max_graphs: int = 8):
        if int(max_graphs) < 1:
            raise ValueError(f"max_graphs must be >= 1, got {max_graphs}")
        self.backend = backend
        self.precision = precision
        self.max_graphs = int(max_graphs)
        self.enabled = True
        self._entries: "collections.OrderedDict[tuple, _Entry]" = collections.OrderedDict()
        self.vocabulary_version = 0
        # "checked": first replays that matched the eager run; "check_failed": one that did not (graphs then off)
        self.stats = {"eager": 0, "captured": 0, "replayed": 0, "dropped": 0, "capture_failed": 0}
        self.stats.update(checked=0, check_failed=0)
        # the batched graphs' (frame_batches.BatchGraphs: several frames of one kind in one graph)
        self.stats.update(batch_captured=0, batch_replayed=0, batch_checked=0, batch_padded=0)
        self.batches: Any = None  # their BatchGraphs, made by the first batched call (frame_batches.batches_of)

    def key(self, pipe, frame: np.ndarray, color_order: str, with_scores: bool, timed: bool = False) -> tuple:
        return (tuple(frame.shape), color_order, bool(with_scores), int(pipe._num_classes), self.vocabulary_version,
                self.precision, bool(timed))  # fmt: skip

    def __len__(self) -> int:
        return len(self._entries)

    def segment(self, pipe, frame: np.ndarray, color_order: str, with_scores: bool, stage_hook=None):
        """One frame: replayed when its kind has a graph, else run eagerly and captured (see the module docstring).
        ``stage_hook(stage, seconds)``: the frame's stage times, after its synchronisation (a timed graph's from
        the events each replay records; the eager frame's from the pipeline's clock)."""
        key = self.key(pipe, frame, color_order, with_scores, stage_hook is not None)
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
            return self._replay(pipe, entry, frame, stage_hook)
        if not self.enabled:
            self.stats["eager"] += 1
            return pipe._segment_eagerly(frame, color_order, with_scores, stage_hook)
        saved = pipe.take_frame_state()  # the buffers of the other kinds stay untouched
        try:
            result = pipe._segment_eagerly(frame, color_order, with_scores, stage_hook)  # fresh buffers for this kind
            self.stats["eager"] += 1
            state = pipe.take_frame_state()  # the buffers the eager run used: the graph's from now on
            clock = None
            if stage_hook is not None:  # its events made now, outside the capture, as many as the eager run took
                clock = pipe.memory.stage_clock()
                clock.reserve(pipe.stage_clock().marks)
            entry = self._capture(pipe, key, state, frame.shape[:2], color_order, with_scores, clock)
            if entry is not None:
                self._check_first_replay(pipe, key, entry, frame, result)
        finally:
            pipe.put_frame_state(saved)
        return result

    def _capture(
        self, pipe, key: tuple, state: Dict[str, Any], out_hw, color_order: str, with_scores: bool, clock=None
    ):
        """Capture this frame kind's graph over ``state``'s buffers (with ``clock``'s timing events as nodes when
        it is timed): its entry, or None when the capture failed (graphs are then off, with a warning)."""
        memory = pipe.memory
        outputs: List[Any] = []

        def frame_work() -> None:  # the graph's body: this frame kind's buffers, bound at capture
            pipe.put_frame_state(state)
            try:
                host, device_frame = state["_frame_host"], state["_frame"]
                outputs[:] = pipe.enqueue_frame(host, device_frame, out_hw, color_order, with_scores, clock)
            finally:
                after = pipe.take_frame_state()
                moved = [name for name in state if not _same_buffers(after[name], state[name])]
            if moved:  # the graph would write into buffers it does not own: a defect, never replayed
                raise RuntimeError(f"buffers {moved} were reallocated while the frame was captured")

        start = len(memory.transfers.entries)
        try:
            memory.activate()
            memory.capturing = True  # e.g. CudaMemory records timing events as event-record nodes now
            try:
                handle = self.backend.capture(frame_work)
            finally:
                memory.capturing = False
        except Exception as exc:  # noqa: BLE001 - the frame's result is already computed eagerly: say it, go eager
            self.enabled = False
            self.stats["capture_failed"] += 1
            warnings.warn(
                f"CUDA graph capture failed ({type(exc).__name__}: {exc}); this pipeline runs eagerly from now on "
                "(same results, more launch overhead)",
                RuntimeWarning,
                stacklevel=4,
            )
            del memory.transfers.entries[start:]
            memory.synchronize()
            pipe.release_frame_state(state)
            if clock is not None:
                clock.close()
            return None
        transfers = list(memory.transfers.entries[start:])  # logged while capturing: what each replay copies
        del memory.transfers.entries[start:]  # a capture moves no data
        entry = self._entries[key] = _Entry(handle, state, (outputs[0], outputs[1]), transfers, clock=clock)
        self.stats["captured"] += 1
        LOG.info("captured a CUDA graph for frames %s (%d kept)", key[:4], len(self._entries))
        while len(self._entries) > self.max_graphs:
            self._drop(pipe, *self._entries.popitem(last=False))
        return entry

    def _check_first_replay(self, pipe, key: tuple, entry: _Entry, frame: np.ndarray, eager) -> None:
        """Replay a new graph on the frame it was captured from, with its buffers overwritten first (see the module
        docstring), and compare with that frame's eager result: beyond ``replay_mismatch``'s bound the graph is
        dropped and graphs are off for this pipeline (one warning)."""
        self._poison(pipe, entry)
        why = replay_mismatch(eager, self._launch(pipe, entry, frame), self.precision)
        if why is None:
            self.stats["checked"] += 1
            return
        self.enabled = False
        self.stats["check_failed"] += 1
        self._entries.pop(key, None)
        self._drop(pipe, key, entry)
        warnings.warn(
            f"the first replay of a CUDA graph differs from the eager run of the same frame {list(frame.shape)} "
            f"({why}): CUDA graphs are off for this pipeline from now on (frames run eagerly; this frame's result is "
            "the eager one)",
            RuntimeWarning,
            stacklevel=4,
        )

    @staticmethod
    def _poison(pipe, entry: _Entry) -> None:
        """Overwrite what a replay must write: the device frame (an inverted frame; nothing where the device reads
        the host buffer itself, zero-copy), the device results (-1 labels, NaN scores) and the host staging
        buffers, so that a replay that skips its upload, its post-processing or a download cannot match."""
        memory, state = pipe.memory, entry.state
        host_frame, device_frame = state["_frame_host"], state["_frame"]
        uploads = []
        if memory.device_view(host_frame) is None:
            uploads.append(("graph_check_frame", 255 - host_frame, device_frame))
        if state["_result"] is not None:
            hw = state["_result"][0]
            uploads.append(("graph_check_labels", np.full(hw, -1, np.int32), state["_result"][1]))
            uploads.append(("graph_check_scores", np.full(hw, np.nan, np.float32), state["_result"][2]))
        memory.activate()
        with memory.stream_context():
            for name, host, buffer in uploads:
                memory.upload(name, host, buffer)
        memory.synchronize()  # the host arrays above are temporaries
        labels, scores = entry.outputs
        memory.host_access(labels, True, "labels staging buffer")
        labels.fill(-1)
        if scores is not None:
            memory.host_access(scores, True, "scores staging buffer")
            scores.fill(np.nan)

    def _launch(self, pipe, entry: _Entry, frame: np.ndarray):
        """Copy ``frame`` into the graph's frame buffer, replay it, wait: its ``(labels, scores or None)``."""
        self._start(pipe, entry, frame)
        return self._finish(pipe, entry)

    def _start(self, pipe, entry: _Entry, frame: np.ndarray) -> None:
        """Copy ``frame`` into the graph's frame buffer and launch the replay, without waiting for it."""
        memory = pipe.memory
        memory.host_access(entry.state["_frame_host"], True, "frame")
        np.copyto(entry.state["_frame_host"], frame)
        memory.activate()
        memory.transfers.paused = True  # the copies were logged at capture: logged once per replay below
        try:
            with memory.stream_context():
                self.backend.replay(entry.handle)
        finally:
            memory.transfers.paused = False
        memory.transfers.entries.extend(entry.transfers)

    def _finish(self, pipe, entry: _Entry):
        """Wait for a replay ``_start`` launched: copies of its staging buffers ``(labels, scores or None)``."""
        pipe.memory.synchronize()
        entry.replays += 1
        return pipe.memory.read_staging(*entry.outputs)

    def _replay(self, pipe, entry: _Entry, frame: np.ndarray, stage_hook=None):
        self._start(pipe, entry, frame)
        return self.wait(pipe, entry, stage_hook)

    # ---- a frame in flight (in_flight.py): launched now, waited for later -----------------------------------------
    def start(self, pipe, frame: np.ndarray, color_order: str, with_scores: bool, stage_hook=None):
        """:meth:`segment` without its wait: a frame of a kind with a graph is copied into that graph's frame buffer
        and its replay launched; returns the graph's entry, whose results :meth:`wait` reads. A frame of a new kind
        (or with graphs off) runs as :meth:`segment` runs it, waited for: returns its ``(labels, scores)`` instead.
        Until :meth:`wait`, nothing else may run on ``pipe`` (the graph's frame and staging buffers are in use)."""
        key = self.key(pipe, frame, color_order, with_scores, stage_hook is not None)
        entry = self._entries.get(key)
        if entry is None:
            return self.segment(pipe, frame, color_order, with_scores, stage_hook)
        self._entries.move_to_end(key)
        self._start(pipe, entry, frame)
        return entry

    def wait(self, pipe, entry: _Entry, stage_hook=None):
        """The results of a replay :meth:`start` launched (after the stream's one synchronisation), and its stage
        times to ``stage_hook`` for a timed graph."""
        result = self._finish(pipe, entry)
        self.stats["replayed"] += 1
        if stage_hook is not None and entry.clock is not None:  # the events this replay recorded, now complete
            entry.clock.report(stage_hook)
        return result

    def _drop(self, pipe, key: tuple, entry: _Entry) -> None:
        pipe.memory.synchronize()  # nothing enqueued may still use the buffers
        self.backend.release(entry.handle)
        pipe.release_frame_state(entry.state)
        if entry.clock is not None:  # after the graph: its event-record nodes name these events
            entry.clock.close()
        self.stats["dropped"] += 1

    def clear(self, pipe) -> None:
        """Drop every graph, batched ones too (the vocabulary changes: they read its buffers); the next frames
        capture again."""
        if self.batches is not None:
            self.batches.clear(pipe)
        while self._entries:
            self._drop(pipe, *self._entries.popitem(last=False))
        self.vocabulary_version += 1
