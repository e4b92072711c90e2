"""Device-resident frame pipeline: the frame goes to the device once, labels (and scores if asked) come back once.

    frame (host, uint8) --upload--> ops.preprocess --> image encoder --> head --> fused post-processing
                                                        (bound buffers: no copies between graphs)
    labels [H,W] int32 (+ scores) --download--> host

Every stage runs where the buffers live, on one stream: a ``Memory`` says where that is (``HostMemory``: NumPy,
for CPU runs and tests; ``TorchMemory``: torch tensors on any torch device, exchanged with the native ops through
DLPack; ``CudaMemory`` in ``cuda_memory.py``: raw CUDA allocations for TensorRT), and an ``Executor`` runs the
bundle graphs on those buffers (the image encoder's outputs are the head's inputs as they are). The text
embeddings and per-class bias are uploaded once per vocabulary (``set_vocabulary``).

Every host<->device copy goes through ``Memory.upload`` / ``Memory.download`` and is counted in
``Memory.transfers``, so tests can prove the count per frame with a recording memory.

Per-stage timing (the Engine's ``stage_hook``): when a hook is given, each stage ("upload", "preprocess",
"image_encoder", "head", "postprocess", "download") is timed by the memory's ``stage_clock`` (``stage_timing.py``):
on a GPU by timing events recorded on the pipeline's stream at the stage boundaries, inside the frame's CUDA graph
when it has one (a timed frame is replayed as deployed), read after the frame's one synchronisation: each stage's
device time, with no synchronisation added. On the host, ``perf_counter`` around each stage. Without a hook nothing
is recorded.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import itertools
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from zsseg_rt import ops, pipeline
from zsseg_rt.bundle import BundleMeta, Names
from zsseg_rt.options import ENGINE_OPTIONS

from .postprocess_choice import PostprocessKernels
from .postprocess_plans import REFERENCE, PostprocessPlans
from .stage_timing import EventClock, HostClock, StageClock, StageHook, SyncClock, stage

Buffer = Any  # an array of the Memory's kind (np.ndarray, torch.Tensor, CudaBuffer)


@dataclasses.dataclass
class TransferLog:
    """Host<->device copies: one entry ``(direction, name, nbytes)`` per copy ("up" or "down")."""

    entries: List[Tuple[str, str, int]] = dataclasses.field(default_factory=list)
    paused: bool = False  # a CUDA-graph replay logs the copies its capture recorded, not Python's re-run of them

    def record(self, direction: str, name: str, nbytes: int) -> None:
        if not self.paused:
            self.entries.append((direction, name, int(nbytes)))

    def count(self, direction: str) -> int:
        return sum(1 for d, _, _ in self.entries if d == direction)

    def nbytes(self, direction: str) -> int:
        return sum(n for d, _, n in self.entries if d == direction)

    def clear(self) -> None:
        self.entries.clear()


class Memory:
    """Where a pipeline's buffers live. Subclasses allocate, copy and synchronise; copies are logged."""

    kind = "abstract"
    stream = 0  # the stream every op of the pipeline is enqueued on (CUDA handle as int; 0 elsewhere)
    page_locked = False  # host_buffer gives page-locked memory (worth reusing, instead of one per frame)
    capturing = False  # True while a CUDA graph is being captured on ``stream`` (set by ``FrameGraphs``)

    def __init__(self) -> None:
        self.transfers = TransferLog()

    def empty(self, shape: Sequence[int], dtype) -> Buffer:
        raise NotImplementedError

    def host_buffer(self, shape: Sequence[int], dtype) -> np.ndarray:
        """A host array that copies are fastest from/into (pinned memory on CUDA)."""
        return np.empty(tuple(shape), dtype=dtype)

    def _copy_up(self, host: np.ndarray, buffer: Buffer) -> None:
        raise NotImplementedError

    def _copy_down(self, buffer: Buffer, host: np.ndarray) -> None:
        raise NotImplementedError

    def device_view(self, host: np.ndarray) -> Optional[Buffer]:
        """The device address of a host buffer from ``host_buffer`` when the device reads host memory directly
        (zero-copy on integrated GPUs), else None."""
        return None

    def host_access(self, host: np.ndarray, write: bool, what: str) -> None:
        """The host is about to read (or write, ``write=True``) ``host``, a buffer from ``host_buffer`` that device
        work copies into or out of (or reads in place). Nothing to do here; a memory whose device work can be
        checked (``CudaMemory`` on a driver with ``check_host_access``: the emulated CUDA runtime's) reports a host
        access not ordered after that work, e.g. a staging buffer read without a synchronize."""

    def read_staging(self, labels: np.ndarray, scores: Optional[np.ndarray]) -> Tuple[np.ndarray, Optional[np.ndarray]]:
        """Copies of a frame's staging buffers ``(labels, scores or None)``, host buffers the next frame reuses;
        read once the stream was synchronised (a read before is reported where ``host_access`` can check it)."""
        self.host_access(labels, False, "labels staging buffer")
        if scores is not None:
            self.host_access(scores, False, "scores staging buffer")
        return labels.copy(), (scores.copy() if scores is not None else None)

    def upload(self, name: str, host: np.ndarray, buffer: Buffer) -> None:
        """Make ``buffer`` hold ``host``: a copy, or nothing when ``buffer`` is ``host``'s zero-copy view
        (logged as "mapped")."""
        if not self._zero_copy(name, host, buffer):
            self.transfers.record("up", name, host.nbytes)
            self._copy_up(host, buffer)

    def download(self, name: str, buffer: Buffer, host: np.ndarray) -> None:
        if not self._zero_copy(name, host, buffer):
            self.transfers.record("down", name, host.nbytes)
            self._copy_down(buffer, host)

    def _zero_copy(self, name: str, host: np.ndarray, buffer: Buffer) -> bool:
        """Whether ``buffer`` is ``host``'s zero-copy view (nothing to copy either way; logged as "mapped")."""
        view = self.device_view(host)
        if view is not None and _same_address(view, buffer):
            self.transfers.record("mapped", name, host.nbytes)
            return True
        return False

    def copy_into(self, destination: Buffer, offset: int, source: Buffer) -> None:
        """``destination[offset : offset + len(source)] = source`` on the device, enqueued on ``stream`` (a
        device-side copy, not a host transfer; both C-contiguous with the same trailing shape)."""
        raise NotImplementedError

    def release(self, buffer) -> None:
        """Free a buffer from ``empty`` or ``host_buffer`` now, instead of at ``close`` (call it only once nothing
        enqueued can still use the buffer, e.g. after ``synchronize``). A no-op for anything else (a view, a buffer
        of another memory) and where memory is garbage-collected."""

    def leading(self, buffer: Buffer, n: int) -> Buffer:
        """The first ``n`` entries along axis 0, without a copy."""
        return buffer[:n]

    def rows(self, buffer: Buffer, start: int, n: int) -> Buffer:
        """Entries ``start : start + n`` along axis 0, without a copy."""
        return buffer[int(start) : int(start) + int(n)]

    def synchronize(self) -> None:
        """Wait for everything enqueued on ``stream``."""

    def activate(self) -> None:
        """Make this memory's device context current on the calling thread (CUDA driver contexts are per thread)."""

    def stream_context(self):
        """A context making ``stream`` the current stream of the library that runs the graphs (torch), so that its
        kernels and the native ops land on the same stream; a no-op where there is only one."""
        return contextlib.nullcontext()

    def stage_clock(self) -> StageClock:
        """A clock for the pipeline's ``stage_hook`` (``stage_timing.py``): here the stream synchronised around each
        stage (a memory with timing events gives an ``EventClock``, whose marks a CUDA graph captures)."""
        return SyncClock(self)


def _same_address(a, b) -> bool:
    return getattr(a, "pointer", None) is not None and a.pointer == getattr(b, "pointer", None)


class HostMemory(Memory):
    """Buffers are NumPy arrays: the 'device' is the host (CPU execution, and recording tests)."""

    kind = "host"

    def empty(self, shape, dtype):
        return np.empty(tuple(shape), dtype=dtype)

    def _copy_up(self, host, buffer):
        np.copyto(buffer, host)

    def _copy_down(self, buffer, host):
        np.copyto(host, buffer)

    def copy_into(self, destination, offset, source):
        np.copyto(destination[offset : offset + len(source)], source)

    def stage_clock(self) -> StageClock:
        return HostClock()  # the stages run on the calling thread


class TorchMemory(Memory):
    """Buffers are torch tensors on ``device`` (CUDA or CPU); the native ops take them through DLPack and are
    enqueued on torch's current stream at the time of the call (a caller's ``with torch.cuda.stream(s):`` puts them
    on ``s``, with torch's own kernels), or on a stream of this memory's own (``own_stream``: what CUDA graphs are
    captured on; the legacy default stream cannot be captured). Host buffers are pinned when the device is CUDA."""

    kind = "torch"

    def __init__(self, device, own_stream: bool = False) -> None:
        super().__init__()
        import torch

        self.torch = torch
        self.device = torch.device(device)
        self.cuda = self.device.type == "cuda"
        self.page_locked = self.cuda
        self.torch_stream = torch.cuda.Stream(self.device) if self.cuda and own_stream else None

    @property
    def stream(self) -> int:  # type: ignore[override]  # Memory.stream is a plain attribute elsewhere
        """The stream of the next op: this memory's own, else torch's current stream of the device now (never the
        one current when the memory was made)."""
        if self.torch_stream is not None:
            return self.torch_stream.cuda_stream
        return self.torch.cuda.current_stream(self.device).cuda_stream if self.cuda else 0

    def empty(self, shape, dtype):
        return self.torch.empty(tuple(shape), dtype=_torch_dtype(self.torch, dtype), device=self.device)

    def host_buffer(self, shape, dtype):
        tensor = self.torch.empty(tuple(shape), dtype=_torch_dtype(self.torch, dtype), pin_memory=self.cuda)
        return tensor.numpy()

    def _copy_up(self, host, buffer):
        buffer.copy_(self.torch.from_numpy(host), non_blocking=self.cuda)

    def _copy_down(self, buffer, host):
        source = buffer if isinstance(buffer, self.torch.Tensor) else self.torch.from_dlpack(buffer)
        self.torch.from_numpy(host).copy_(source, non_blocking=self.cuda)

    def copy_into(self, destination, offset, source):
        source = source if isinstance(source, self.torch.Tensor) else self.torch.from_dlpack(source)
        destination[offset : offset + source.shape[0]].copy_(source, non_blocking=self.cuda)

    def synchronize(self):
        if self.cuda:
            (self.torch_stream or self.torch.cuda.current_stream(self.device)).synchronize()

    def stream_context(self):
        if self.torch_stream is None:
            return contextlib.nullcontext()
        return self.torch.cuda.stream(self.torch_stream)

    # ---- stage timing (stage_timing.EventClock): torch CUDA events on the pipeline's stream ------------------
    def stage_clock(self) -> StageClock:
        return EventClock(self) if self.cuda else HostClock()  # torch on the CPU runs each op on this thread

    def _current_stream(self):
        return self.torch_stream or self.torch.cuda.current_stream(self.device)

    def timing_event(self):
        """A timing event that becomes an event-record node when recorded in a capture (``external=True``). It is
        recorded once here, outside any capture, so that torch creates its CUDA event now and not inside one."""
        event = self.torch.cuda.Event(enable_timing=True, external=True)
        if not self.torch.cuda.is_current_stream_capturing():
            event.record(self._current_stream())
        return event

    def record_timing_event(self, event) -> None:
        event.record(self._current_stream())

    def elapsed_ms(self, start, end) -> float:
        return float(start.elapsed_time(end))

    def release_timing_event(self, event) -> None:
        """Nothing to do: torch destroys the CUDA event with the object."""


def _torch_dtype(torch, dtype):
    return {
        np.dtype(np.float32): torch.float32,
        np.dtype(np.float16): torch.float16,
        np.dtype(np.int32): torch.int32,
        np.dtype(np.uint8): torch.uint8,
    }[np.dtype(dtype)]


class Executor:
    """Runs bundle graphs on a Memory's buffers: ``run(role, inputs) -> outputs`` (names from meta.json's I/O
    table), enqueued on ``memory.stream``. Outputs are buffers the executor owns; they stay valid until the next
    ``run`` of the same role (so the image encoder's outputs are passed to the head as they are, and a caller that
    needs a head output after the next head run must copy it out first)."""

    memory: Memory
    shares_contexts = False  # True: it runs contexts another path also runs (no second executor runs beside it)

    def run(self, role: str, inputs: Dict[str, Buffer]) -> Dict[str, Buffer]:
        raise NotImplementedError

    def batch_limit(self) -> Optional[int]:
        """The most windows one ``run`` of the image encoder and head accepts (a TensorRT engine's profile), or
        None when any batch runs."""
        return None


def windows_per_call(requested: int, executor: Executor) -> int:
    """Windows per encoder call: ``requested`` (``Engine.max_batch``) capped by the executor's batch limit (the
    engine's profile), as the host path splits its batches (``WindowedGraphs.encode_image`` over a ``TrtRunner``)."""
    requested = int(requested)
    if requested < 1:
        raise ValueError(f"max_windows must be >= 1, got {requested}")
    batch_limit = getattr(executor, "batch_limit", None)  # executors written before the method existed: no limit
    limit = batch_limit() if batch_limit is not None else None
    return requested if limit is None else max(1, min(requested, int(limit)))


class DevicePipeline:
    """One frame in, labels out, with the whole computation on ``executor.memory``'s device.

    Args:
        meta: the bundle's metadata (sizes, mean/std, windows, test resize, I/O names).
        executor: runs the bundle's graphs where the buffers live.
        max_windows: windows per encoder call, capped by the executor's batch limit (a TensorRT engine's profile);
            larger frames run in chunks, each chunk's mask logits copied out before the next chunk's head run.
        graphs: a ``cuda_graphs.FrameGraphs`` to capture each kind of frame once and replay it (None: eager).
        postprocess_kernel: the CUDA post-processing's kernel (``postprocess_choice.py``): "auto" (timed on the first
            frame of each geometry), a candidate's name, or a ``PostprocessKernels`` to share (an in-flight lane
            shares its Engine's); default: the reference kernel, pinned (the Engine passes its option).
    """

    def __init__(self, meta: BundleMeta, executor: Executor, max_windows: int = 4, graphs=None, test_scale=None,
                 postprocess_kernel: Any = REFERENCE):  # fmt: skip
        activation = meta.postprocess.get("activation", "sigmoid")
        if activation != "sigmoid":
            raise ValueError(
                f"the device pipeline runs bundles whose activation is 'sigmoid'; this one uses {activation!r}"
            )
        self.meta = meta
        self.test_scale = list(meta.test_scale if test_scale is None else test_scale)  # [long_max, short]
        self.executor = executor
        self.memory = executor.memory
        self.max_windows = windows_per_call(max_windows, executor)
        size = int(meta.image_size)
        self.memory.activate()  # the calling thread may have no current CUDA context yet
        self._image = self.memory.empty((self.max_windows, 3, size, size), np.float32)
        self._frame: Optional[Buffer] = None
        self._frame_host: Optional[np.ndarray] = None
        self._text: Optional[Buffer] = None
        self._bias: Optional[Buffer] = None
        self._num_classes = 0
        self._result: Optional[Tuple[Tuple[int, int], Buffer, Buffer]] = None  # (H, W), labels, scores
        self._merged: Optional[Buffer] = None  # [windows, C, h, w] logits of a frame of several chunks
        self._staging: Dict[str, np.ndarray] = {}  # "labels"/"scores" -> host buffer (pinned on CUDA), reused
        # CUDA graphs (cuda_graphs.FrameGraphs): each kind of frame captured once, then replayed; the results
        # then always come through staging buffers that the graph writes into
        self.graphs = graphs
        self.static_outputs = graphs is not None
        self._clock: Optional[StageClock] = None  # the eager frames' stage clock (memory.stage_clock), made once
        shared = isinstance(postprocess_kernel, PostprocessKernels)
        self.kernels = postprocess_kernel if shared else PostprocessKernels(postprocess_kernel)

    # ---- vocabulary: uploaded once per set_classes ------------------------------------------------------
    def set_vocabulary(self, text: np.ndarray, class_bias: np.ndarray) -> None:
        """Upload ``text [C, D]`` and ``class_bias [C]`` (float32) for every following frame. The bias is checked
        here, on the host where it is made (finite; the ops' device-side check would report it only after a
        frame's launch)."""
        text = np.ascontiguousarray(text, dtype=np.float32)
        bias = np.ascontiguousarray(class_bias, dtype=np.float32).reshape(-1)
        if text.ndim != 2 or bias.shape != (text.shape[0],):
            raise ValueError(f"need text [C, D] and class_bias [C], got {list(text.shape)} and {list(bias.shape)}")
        bad = np.flatnonzero(~np.isfinite(bias))
        if bad.size:
            raise ValueError(
                f"class_bias must be finite, got {bias[bad[0]]} at class {int(bad[0])} (to drop a class, leave it out "
                "of the vocabulary)"
            )
        self.memory.activate()  # CUDA driver contexts are per thread: this may be another thread than the last frame's
        if self.graphs is not None:  # captured graphs read the buffers about to go: dropped first, captured again
            self.graphs.clear(self)
        self._replace("_text", self.memory.empty(text.shape, np.float32))  # the previous vocabulary's buffers go
        self._replace("_bias", self.memory.empty(bias.shape, np.float32))
        with self.memory.stream_context():
            self.memory.upload("text_embeddings", text, self._text)
            self.memory.upload("class_bias", bias, self._bias)
        self._num_classes = text.shape[0]

    # ---- one frame --------------------------------------------------------------------------------------
    def _frame_buffers(self, frame: np.ndarray) -> Tuple[np.ndarray, Buffer]:
        if self._frame_host is None or self._frame_host.shape != frame.shape:
            host = self.memory.host_buffer(frame.shape, np.uint8)
            self._replace("_frame_host", host)
            view = self.memory.device_view(host)  # zero-copy: the kernels read the host buffer
            self._replace("_frame", view if view is not None else self.memory.empty(frame.shape, np.uint8))
        return self._frame_host, self._frame  # type: ignore[return-value]  # set just above

    def _replace(self, attribute: str, buffer) -> None:
        """Set a reused buffer, releasing the one it replaces (the previous frame has been synchronised)."""
        old = getattr(self, attribute, None)
        if old is not None and old is not buffer:
            self.memory.release(old)  # a no-op for what the memory did not allocate (a zero-copy device view)
        setattr(self, attribute, buffer)

    def _host_output(self, name: str, shape: Tuple[int, int], dtype) -> np.ndarray:
        """The host buffer results are downloaded into. Page-locked memory is a staging buffer per output, reused
        while the frame size stays (allocated once, not per frame; the caller gets a copy); plain host memory is a
        new array per frame, handed to the caller as it is."""
        if not (self.memory.page_locked or self.static_outputs):
            return self.memory.host_buffer(shape, dtype)
        current = self._staging.get(name)
        if current is None or current.shape != tuple(shape) or current.dtype != np.dtype(dtype):
            if current is not None:
                self.memory.release(current)
            current = self._staging[name] = self.memory.host_buffer(shape, dtype)
        return current

    def __call__(
        self,
        frame: np.ndarray,
        color_order: str = "bgr",
        with_scores: bool = True,
        stage_hook: Optional[StageHook] = None,
    ):
        """Segment one ``[H, W, C]`` uint8 frame (C = 1, 3 or 4; ``[H, W]`` gray too).

        ``stage_hook(stage, seconds)``, when given, receives the time of each stage (see the module docstring),
        after the frame's synchronisation; "preprocess", "image_encoder" and "head" once per chunk of
        ``max_windows`` windows. With CUDA graphs a timed frame is replayed too (a graph of its own: the untimed
        graph has no timing events), unless the memory's clock cannot be captured (``SyncClock``): then eagerly.

        Returns:
            ``(labels [H, W] int32, scores [H, W] float32 or None)`` on the host.
        """
        if self._text is None:
            raise RuntimeError("no vocabulary: call set_vocabulary(text, class_bias) first")
        if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim not in (2, 3):
            raise TypeError(
                f"frame must be a uint8 numpy array [H, W, C] or [H, W], got "
                f"{type(frame).__name__} {getattr(frame, 'dtype', '')} {getattr(frame, 'shape', '')}"
            )
        if self.graphs is not None and (stage_hook is None or self.stage_clock().in_graph):
            return self.graphs.segment(self, frame, color_order, with_scores, stage_hook)  # captured once, replayed
        # eager: graphs off, or a clock that synchronises between stages (which a capture cannot contain)
        return self._segment_eagerly(frame, color_order, with_scores, stage_hook)

    def stage_clock(self) -> StageClock:
        """The clock of eager frames with a ``stage_hook`` (the memory's ``stage_clock``; its events are reused)."""
        if self._clock is None:
            self._clock = self.memory.stage_clock()
        return self._clock

    def _clock_for(self, stage_hook: Optional[StageHook]) -> Optional[StageClock]:
        return None if stage_hook is None else self.stage_clock()

    def frame_plan(self, frame: np.ndarray):
        """``(rescaled (H', W'), windows)`` of a frame at the test scale (the bundle's or the Engine's), crop and
        stride."""
        meta = self.meta
        scaled = pipeline.preprocess.rescaled_size(frame.shape[0], frame.shape[1], self.test_scale)
        return scaled, pipeline.sliding_windows(scaled[0], scaled[1], meta.crop_size, meta.stride)

    def _segment_eagerly(self, frame: np.ndarray, color_order: str, with_scores: bool, stage_hook=None):
        """Upload, enqueue every stage, download, wait: one frame without a CUDA graph (its stage times, if a hook
        is given, handed over after the one synchronisation)."""
        return self.wait_eagerly(self.start_eagerly(frame, color_order, with_scores, stage_hook))

    def start_eagerly(self, frame: np.ndarray, color_order: str, with_scores: bool, stage_hook=None):
        """The eager frame enqueued, not waited for (in_flight.py); :meth:`wait_eagerly` waits, reads it."""
        self.memory.activate()
        clock = self._clock_for(stage_hook)
        host, device_frame = self._frame_buffers(frame)
        self.memory.host_access(host, True, "frame")
        np.copyto(host, frame)
        with self.memory.stream_context():
            outputs = self.enqueue_frame(host, device_frame, frame.shape[:2], color_order, with_scores, clock)
        return outputs, clock, stage_hook

    def wait_eagerly(self, started):
        (labels_host, scores_host), clock, stage_hook = started
        self.memory.synchronize()
        if clock is not None:
            clock.report(stage_hook)  # type: ignore[arg-type]  # a clock only with a hook
        if not (self.memory.page_locked or self.static_outputs):
            return labels_host, scores_host
        # the staging buffers are reused by the next frame: the caller gets its own copies
        return self.memory.read_staging(labels_host, scores_host)

    def enqueue_frame(
        self,
        host: np.ndarray,
        device_frame: Buffer,
        out_hw,
        color_order: str,
        with_scores: bool,
        clock: Optional[StageClock] = None,
    ):
        """Everything a frame does on the device, enqueued on ``memory.stream`` without waiting for it (what a CUDA
        graph captures): upload of ``host`` into ``device_frame``, preprocess, encoder and head per chunk of
        windows, the fused post-processing, downloads into the staging buffers. Returns those host buffers
        ``(labels, scores or None)``, valid once the stream is synchronised. ``clock`` (a ``StageClock``, restarted
        here) marks the stage boundaries: in a capture its events are nodes of the graph."""
        height, width = int(out_hw[0]), int(out_hw[1])
        memory = self.memory
        if clock is not None:
            clock.restart()
        scaled, windows = self.frame_plan(host)
        with stage(clock, "upload"):
            memory.upload("frame", host, device_frame)
        logits = self._window_logits(device_frame, scaled, windows, color_order, clock)
        return self._postprocess_download(logits, windows, scaled, (height, width), with_scores, clock)

    def _postprocess_download(self, logits: Buffer, windows, scaled, out_hw, with_scores: bool, clock):
        """The fused post-processing of a frame's window logits and the downloads of its labels (and scores) into
        the host staging buffers, enqueued on ``memory.stream``; returns those buffers ``(labels, scores or None)``,
        valid once the stream is synchronised."""
        memory = self.memory
        with stage(clock, "postprocess"):
            labels, scores = self._postprocess(logits, windows, scaled, out_hw)
        with stage(clock, "download"):
            labels_host = self._host_output("labels", out_hw, np.int32)
            memory.download("labels", labels, labels_host)
            scores_host = None
            if with_scores:
                scores_host = self._host_output("scores", out_hw, np.float32)
                memory.download("scores", scores, scores_host)
        return labels_host, scores_host

    def _window_logits(self, device_frame: Buffer, scaled, windows, color_order: str, clock=None) -> Buffer:
        """Mask logits ``[n, C, h, w]`` of every window, on the device: preprocess, image encoder and head per chunk
        of ``max_windows`` windows (each chunk's logits copied into one frame-wide buffer when there are several,
        timed as part of "head": the executor reuses its output buffer on the next head run)."""
        meta, memory = self.meta, self.memory
        chunks = [windows[i : i + self.max_windows] for i in range(0, len(windows), self.max_windows)]
        logits = None
        for index, chunk in enumerate(chunks):
            batch = memory.leading(self._image, len(chunk))
            with stage(clock, "preprocess"):
                ops.preprocess(
                    device_frame,
                    scaled,
                    chunk,
                    meta.image_size,
                    meta.mean,
                    meta.std,
                    color_order=color_order,
                    out=batch,
                    stream=memory.stream,
                )
            with stage(clock, "image_encoder"):
                features = self.executor.run("image", {Names.IMAGE: batch})
            with stage(clock, "head"):
                head_inputs = dict(features, **{Names.TEXT_EMBEDDINGS: self._text})
                chunk_logits = self.executor.run("head", head_inputs)[Names.MASK_LOGITS]
                if len(chunks) == 1:
                    logits = chunk_logits
                else:
                    logits = self._merged_logits(len(windows), chunk_logits)
                    memory.copy_into(logits, index * self.max_windows, chunk_logits)
        return logits

    # ---- several frames: their windows packed into shared encoder / head calls ------------------------------
    def segment_many(
        self, frames: Sequence[np.ndarray], color_orders: Sequence[str], with_scores: bool = True, stage_hook=None
    ) -> List[Tuple[np.ndarray, Optional[np.ndarray]]]:
        """Segment several frames (checked as :meth:`__call__` checks one), eagerly (no CUDA graph): the windows of
        all frames, in order, preprocessed on the device into one batch of ``max_windows`` (a batch may hold the
        last windows of one frame and the first of the next), one image encoder and one head run per batch, each
        frame's rows copied into its own logits buffer; a frame is post-processed and downloaded as soon as its last
        window ran, and its device buffers freed, so at most the frames of one batch are held on the device.
        ``color_orders``: each frame's channel order. Returns ``[(labels, scores or None)]`` on the host, one per
        frame."""
        if self._text is None:
            raise RuntimeError("no vocabulary: call set_vocabulary(text, class_bias) first")
        for frame in frames:
            if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim not in (2, 3):
                raise TypeError(f"frames must be uint8 numpy arrays [H, W, C] or [H, W], got {type(frame).__name__}")
        memory, meta = self.memory, self.meta
        memory.activate()
        clock = self._clock_for(stage_hook)  # reported after each frame's synchronisation, then restarted
        if clock is not None:
            clock.restart()
        plans = [self.frame_plan(frame) for frame in frames]
        live: Dict[int, List[Any]] = {}  # frame -> [device frame, its window logits, windows done]
        results: List[Any] = [None] * len(frames)
        jobs = ((i, k) for i, (_, windows) in enumerate(plans) for k in range(len(windows)))
        with memory.stream_context():
            for chunk in iter(lambda: list(itertools.islice(jobs, self.max_windows)), []):
                batch = memory.leading(self._image, len(chunk))
                runs = _runs(chunk)  # (frame, its first window here, count, row in the batch)
                for i, first, count, row in runs:
                    if i not in live:
                        device_frame = memory.empty(frames[i].shape, np.uint8)
                        with stage(clock, "upload"):
                            memory.upload("frame", np.ascontiguousarray(frames[i]), device_frame)
                        live[i] = [device_frame, None, 0]
                    with stage(clock, "preprocess"):
                        ops.preprocess(
                            live[i][0],
                            plans[i][0],
                            plans[i][1][first : first + count],
                            meta.image_size,
                            meta.mean,
                            meta.std,
                            color_order=color_orders[i],
                            out=memory.rows(batch, row, count),
                            stream=memory.stream,
                        )
                with stage(clock, "image_encoder"):
                    features = self.executor.run("image", {Names.IMAGE: batch})
                with stage(clock, "head"):
                    logits = self.executor.run("head", dict(features, **{Names.TEXT_EMBEDDINGS: self._text}))
                    logits = logits[Names.MASK_LOGITS]
                    for i, first, count, row in runs:  # copied out before the next head run reuses its output
                        state = live[i]
                        if state[1] is None:
                            shape = (len(plans[i][1]),) + tuple(int(d) for d in logits.shape[1:])
                            state[1] = memory.empty(shape, np.float32)
                        memory.copy_into(state[1], first, memory.rows(logits, row, count))
                        state[2] += count
                for i, _, _, _ in runs:
                    if i in live and live[i][2] == len(plans[i][1]):
                        state = live.pop(i)
                        results[i] = self._finish_frame(frames[i], state, plans[i], with_scores, clock, stage_hook)
        return results

    def _finish_frame(self, frame: np.ndarray, state: List[Any], plan, with_scores: bool, clock, hook):
        """Post-process and download one frame of :meth:`segment_many`, then free its device buffers; the stages
        timed since the last synchronisation go to ``hook`` after this one."""
        memory = self.memory
        device_frame, logits, _ = state
        out_hw = (int(frame.shape[0]), int(frame.shape[1]))
        labels_host, scores_host = self._postprocess_download(logits, plan[1], plan[0], out_hw, with_scores, clock)
        memory.synchronize()
        if clock is not None:
            clock.report(hook)
            clock.restart()
        memory.release(device_frame)
        memory.release(logits)
        if memory.page_locked or self.static_outputs:  # staging buffers, reused by the next frame
            return memory.read_staging(labels_host, scores_host)
        return labels_host, scores_host

    # ---- the per-frame buffers, handed to a CUDA graph that keeps them (cuda_graphs.py) --------------------
    FRAME_STATE = ("_frame_host", "_frame", "_merged", "_result", "_staging")

    def take_frame_state(self) -> Dict[str, Any]:
        """Hand over the per-frame-size buffers (frame, merged logits, results, staging) and forget them here, so
        that no later frame of another size releases them."""
        state = {name: getattr(self, name) for name in self.FRAME_STATE}
        self._frame_host = self._frame = self._merged = self._result = None
        self._staging = {}
        return state

    def put_frame_state(self, state: Dict[str, Any]) -> None:
        """Make buffers handed over by ``take_frame_state`` the current ones again."""
        for name in self.FRAME_STATE:  # the staging dict copied: a buffer added here does not change ``state``
            setattr(self, name, dict(state[name]) if isinstance(state[name], dict) else state[name])

    def release_frame_state(self, state: Dict[str, Any]) -> None:
        """Free buffers handed over by ``take_frame_state`` (once nothing enqueued can still use them)."""
        for name in ("_frame_host", "_frame", "_merged"):
            if state[name] is not None:
                self.memory.release(state[name])
        if state["_result"] is not None:
            self.memory.release(state["_result"][1])
            self.memory.release(state["_result"][2])
        for buffer in state["_staging"].values():
            self.memory.release(buffer)

    def _merged_logits(self, count: int, chunk_logits: Buffer) -> Buffer:
        """A ``[count, C, h, w]`` buffer for the logits of every window of a frame, reused while its shape stays."""
        shape = (int(count),) + tuple(int(d) for d in chunk_logits.shape[1:])
        if self._merged is None or tuple(self._merged.shape) != shape:
            self._replace("_merged", self.memory.empty(shape, np.float32))
        return self._merged

    def _postprocess(self, merged: Buffer, windows, scaled_hw, out_hw):
        """The fused official post-processing of all windows (``ops.segment_windows``) where the logits are."""
        bias = self._bias
        if self.memory.kind == "host" or (self.memory.kind == "torch" and not getattr(self.memory, "cuda", False)):
            merged, bias = np.asarray(merged), np.asarray(bias)  # CPU tensors: zero-copy NumPy views
        size = (self.meta.image_size, self.meta.image_size)
        out_hw = (int(out_hw[0]), int(out_hw[1]))
        if self._result is None or self._result[0] != out_hw:  # reused while the frame size stays: no allocation
            if self._result is not None:
                self.memory.release(self._result[1])
                self.memory.release(self._result[2])
            self._result = (out_hw, self.memory.empty(out_hw, np.int32), self.memory.empty(out_hw, np.float32))
        if self.memory.kind == "host" or not getattr(self.memory, "cuda", True):  # host buffers: a call per frame
            return ops.segment_windows(
                merged,
                [tuple(w) for w in windows],
                size,
                tuple(scaled_hw),
                tuple(out_hw),
                class_bias=bias,
                sigmoid=True,
                stream=self.memory.stream,
                out=self._result[1:],
            )
        # on the device: a prepared launch per frame kind (postprocess_plans.py; the bias was checked on the
        # host by set_vocabulary), one call into the launcher per frame
        plans = self.__dict__.get("_post_plans")
        if plans is None:
            plans = self._post_plans = PostprocessPlans(ops=ops, kernels=self.kernels, memory=self.memory)
        return plans.run(merged, windows, size, tuple(scaled_hw), out_hw, bias, self._result[1:], self.memory.stream)


class OnnxRuntimeExecutor(Executor):
    """The bundle's graphs with ONNX Runtime on host buffers (``HostMemory``): the CPU form of the pipeline."""

    def __init__(self, backend, memory: Optional[HostMemory] = None):
        self.backend = backend
        self.memory = memory if memory is not None else HostMemory()

    def run(self, role, inputs):
        if role == "image":
            return self.backend.encode_image(inputs[Names.IMAGE])
        if role == "head":
            text = inputs[Names.TEXT_EMBEDDINGS]
            features = {k: v for k, v in inputs.items() if k != Names.TEXT_EMBEDDINGS}
            return {Names.MASK_LOGITS: self.backend.head(text, features)}
        raise ValueError(f"unknown graph role {role!r}")


class TorchExecutor(Executor):
    """The PyTorch graphs of a ``TorchBackend`` on tensors that stay on its device (``TorchMemory``)."""

    def __init__(self, backend):
        self.backend = backend
        # CUDA graphs are captured on a stream of the memory's own (the legacy default stream cannot be captured)
        self.memory = TorchMemory(backend.device, own_stream=bool(getattr(backend, "cuda_graphs", False)))

    def run(self, role, inputs):
        torch = self.memory.torch
        io = self.backend.io
        with torch.inference_mode():
            if role == "image":
                outs = self.backend.image_graph(inputs[Names.IMAGE])
                return dict(zip(io["image"]["outputs"], outs))
            if role == "head":
                names = io["head"]["inputs"][1:]
                out = self.backend.head_graph(inputs[Names.TEXT_EMBEDDINGS], *(inputs[n] for n in names))
                if not self.memory.cuda:
                    return {Names.MASK_LOGITS: out.float().contiguous()}
                return {Names.MASK_LOGITS: self._owned_logits(out)}
        raise ValueError(f"unknown graph role {role!r}")

    def _owned_logits(self, out):
        """The head's logits as float32 in a buffer this executor owns and reuses per shape (the Executor contract:
        valid until the next head run), so that the post-processing prepared on that buffer is launched again
        frame after frame (postprocess_plans.py); a fresh tensor per frame would need a new plan each time.
        One device copy (which is also the fp16/bf16 -> fp32 conversion); at most 4 shapes kept."""
        shape = tuple(int(d) for d in out.shape)
        owned = self.__dict__.setdefault("_logits", collections.OrderedDict())
        buffer = owned.pop(shape, None)
        if buffer is None:
            buffer = self.memory.torch.empty(shape, dtype=self.memory.torch.float32, device=out.device)
        owned[shape] = buffer
        while len(owned) > 4:
            owned.popitem(last=False)
        buffer.copy_(out)
        return buffer


def make_device_pipeline(
    meta: BundleMeta, backend, setting="auto", max_windows: int = 4, test_scale=None, postprocess_kernel="auto"
) -> Optional[DevicePipeline]:
    """The device pipeline for ``backend``, or None where the host path is used.

    ``setting``: "auto" (on where the data can stay on a GPU: a backend that ``runs_on_gpu`` and has a
    ``device_executor`` (TensorRT, torch on CUDA), with a sigmoid bundle and CUDA native ops), True (required: refuse
    with the reason when impossible; a host backend's executor runs it on host buffers), False (host path). A
    backend's ``frame_graphs(executor)`` gives the frame's CUDA graphs, or None. ``test_scale``: the frames' test
    resize (None: the bundle's; ``Engine(test_scale=...)``). ``postprocess_kernel``: ``Engine(postprocess_kernel=...)``.
    """
    ENGINE_OPTIONS["device_pipeline"].check_value(setting)  # its row's values and words
    if setting is False:
        return None
    reason = None
    executor_of = getattr(backend, "device_executor", None)  # a backend's own: TensorRT, torch, ONNX Runtime (host)
    on_gpu = bool(getattr(backend, "runs_on_gpu", False))
    if meta.postprocess.get("activation", "sigmoid") != "sigmoid":
        reason = "the bundle's post-processing is softmax (training-free family): it runs on the host"
    elif executor_of is None:
        reason = f"backend {backend.name!r} has no device executor"
    elif not on_gpu and setting == "auto":
        reason = f"the {backend.name} backend runs on the host"
    elif on_gpu and not ops.cuda_available():
        reason = "zsseg_rt's CUDA ops are not usable here (see zsseg_rt.ops.cuda_available())"
    if reason is not None:
        if setting is True:
            raise RuntimeError(f"device_pipeline=True is not possible: {reason}")
        return None
    assert executor_of is not None  # (reason above)
    executor: Executor = executor_of()
    graphs_of = getattr(backend, "frame_graphs", None)
    graphs = graphs_of(executor) if graphs_of is not None else None
    return DevicePipeline(meta, executor, max_windows, graphs, test_scale, postprocess_kernel)


def _runs(chunk: Sequence[Tuple[int, int]]) -> List[Tuple[int, int, int, int]]:
    """A batch's ``(frame, window)`` pairs as runs ``(frame, first window, count, row in the batch)``."""
    runs: List[Tuple[int, int, int, int]] = []
    for row, (frame, window) in enumerate(chunk):
        if runs and runs[-1][0] == frame:
            runs[-1] = (frame, runs[-1][1], runs[-1][2] + 1, runs[-1][3])
        else:
            runs.append((frame, window, 1, row))
    return runs
