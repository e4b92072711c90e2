"""CUDA graphs for the device pipeline: each kind of frame is captured once and then replayed with one launch.

A frame's device work (``DevicePipeline.enqueue_frame``: upload into page-locked memory's device twin, preprocess,
image encoder, head, fused post-processing, labels (and scores) copied into page-locked staging buffers) depends on
the frame's size and channels, the colour order, whether scores are wanted, the vocabulary (its size C and the
buffers holding it) and the precision the graphs run at. That is the key of a graph:

* a frame whose key has no graph yet runs eagerly (which also warms up cuBLAS/cuDNN before any capture), then the
  same work is captured into a graph that owns that frame kind's buffers (frame, merged logits, results, staging):
  addresses a graph reads or writes never change while it lives;
* a frame of a known kind is copied into its graph's page-locked frame buffer, the graph is replayed, the stream
  synchronised and the staging buffers copied into the caller's arrays;
* ``set_vocabulary`` drops every graph before the vocabulary buffers they read are replaced (captured again on
  the next frame of each kind); at most ``max_graphs`` graphs are kept (least recently used dropped first);
* a capture that fails (e.g. an operation that cannot be captured) turns graphs off for this pipeline with a
  warning; frames then run eagerly, with the same results.

``TorchCudaGraphs`` captures with ``torch.cuda.CUDAGraph`` on the memory's own stream (the torch backend's
executor); ``DriverCudaGraphs`` with the CUDA driver's stream capture on a ``CudaMemory``'s stream (the TensorRT
device path, opt-in: ``TensorRTBackend(..., cuda_graphs=True)``). Neither has run on a GPU yet (no GPU was
available while they were written). ``DriverCudaGraphs`` with the whole ``DevicePipeline`` is tested in CI on the
emulated CUDA runtime, whose capture records a graph that runs only when launched (python_tests/runtime/
test_device_graphs_cuda.py); ``TorchCudaGraphs`` needs torch's CUDA build, so its bookkeeping is tested on the CPU
with a recording stand-in and the capture itself by ``tools/gpu_check.sh`` on the next GPU run.
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


@dataclass
class _Entry:
    handle: Any  # the captured graph
    state: Dict[str, Any]  # the frame kind's buffers (DevicePipeline.take_frame_state), owned by the graph
    outputs: Tuple[np.ndarray, Optional[np.ndarray]]  # the staging buffers the graph downloads into
    transfers: List[Tuple[str, str, int]] = field(default_factory=list)  # the copies one replay makes
    replays: int = 0


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
        self.stats = {"eager": 0, "captured": 0, "replayed": 0, "dropped": 0, "capture_failed": 0}

    def key(self, pipe, frame: np.ndarray, color_order: str, with_scores: bool) -> tuple:
        return (tuple(frame.shape), color_order, bool(with_scores), int(pipe._num_classes), self.vocabulary_version,
                self.precision)  # fmt: skip

    def __len__(self) -> int:
        return len(self._entries)

    def segment(self, pipe, frame: np.ndarray, color_order: str, with_scores: bool):
        """One frame: replayed when its kind has a graph, else run eagerly and captured (see the module docstring)."""
        key = self.key(pipe, frame, color_order, with_scores)
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
            return self._replay(pipe, entry, frame)
        if not self.enabled:
            self.stats["eager"] += 1
            return pipe._segment_eagerly(frame, color_order, with_scores)
        saved = pipe.take_frame_state()  # the buffers of the other kinds stay untouched
        try:
            result = pipe._segment_eagerly(frame, color_order, with_scores)  # fresh buffers for this kind
            self.stats["eager"] += 1
            state = pipe.take_frame_state()  # the buffers the eager run used: the graph's from now on
            self._capture(pipe, key, state, frame.shape[:2], color_order, with_scores)
        finally:
            pipe.put_frame_state(saved)
        return result

    def _capture(self, pipe, key: tuple, state: Dict[str, Any], out_hw, color_order: str, with_scores: bool) -> None:
        memory = pipe.memory
        outputs: List[Any] = []

        def frame_work() -> None:  # the graph's body: this frame kind's buffers, bound at capture
            pipe.put_frame_state(state)
            try:
                outputs[:] = pipe.enqueue_frame(state["_frame_host"], state["_frame"], out_hw, color_order, with_scores)
            finally:
                after = pipe.take_frame_state()
                moved = [name for name in state if not _same_buffers(after[name], state[name])]
            if moved:  # the graph would write into buffers it does not own: a defect, never replayed
                raise RuntimeError(f"buffers {moved} were reallocated while the frame was captured")

        start = len(memory.transfers.entries)
        try:
            memory.activate()
            handle = self.backend.capture(frame_work)
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
            return
        transfers = list(memory.transfers.entries[start:])  # logged while capturing: what each replay copies
        del memory.transfers.entries[start:]  # a capture moves no data
        self._entries[key] = _Entry(handle, state, (outputs[0], outputs[1]), transfers)
        self.stats["captured"] += 1
        LOG.info("captured a CUDA graph for frames %s (%d kept)", key[:4], len(self._entries))
        while len(self._entries) > self.max_graphs:
            self._drop(pipe, *self._entries.popitem(last=False))

    def _replay(self, pipe, entry: _Entry, frame: np.ndarray):
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
        memory.synchronize()
        entry.replays += 1
        self.stats["replayed"] += 1
        return memory.read_staging(*entry.outputs)

    def _drop(self, pipe, key: tuple, entry: _Entry) -> None:
        pipe.memory.synchronize()  # nothing enqueued may still use the buffers
        self.backend.release(entry.handle)
        pipe.release_frame_state(entry.state)
        self.stats["dropped"] += 1

    def clear(self, pipe) -> None:
        """Drop every graph (the vocabulary changes: they read its buffers); the next frames capture again."""
        while self._entries:
            self._drop(pipe, *self._entries.popitem(last=False))
        self.vocabulary_version += 1
