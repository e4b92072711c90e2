"""Device-resident frame pipeline: the frame goes to the device once, labels (and scores if asked) come back once.

    frame (host, uint8) --upload--> ops.preprocess --> image encoder --> head --> fused post-processing
                                                        (bound buffers: no copies between graphs)
    labels [H,W] int32 (+ scores) --download--> host

Every stage runs where the buffers live, on one stream: a ``Memory`` says where that is (``HostMemory``: NumPy,
for CPU runs and tests; ``TorchMemory``: torch tensors on any torch device, exchanged with the native ops through
DLPack: both in ``memories.py``; ``CudaMemory`` in ``cuda_memory.py``: raw CUDA allocations for TensorRT), and an
``Executor`` runs the bundle graphs on those buffers (the image encoder's outputs are the head's inputs as they are).
The text embeddings and per-class bias are uploaded once per vocabulary (``set_vocabulary``). Several frames in one
call: ``frame_batches.py``.

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
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from zsseg_rt import ops, pipeline
from zsseg_rt.bundle import BundleMeta, Names
from zsseg_rt.options import ENGINE_OPTIONS

from .encoder_choice import EncoderChoice
from .frame_batches import segment_many, windows_per_call  # noqa: F401 (windows_per_call re-exported)
from .memories import Buffer, HostMemory, Memory, TorchMemory, TransferLog, _torch_dtype  # noqa: F401 (re-exported)
from .postprocess_choice import PostprocessKernels
from .postprocess_plans import REFERENCE, PostprocessPlans
from .stage_timing import StageClock, StageHook, stage


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
        encoder_variant: the image encoder (``encoder_choice.py``): "auto" (chosen on the first frame), a variant's
            name, or an ``EncoderChoice`` to share; default: the bundle's graph, pinned (the Engine passes its option).
    """

    def __init__(self, meta: BundleMeta, executor: Executor, max_windows: int = 4, graphs=None, test_scale=None,
                 postprocess_kernel: Any = REFERENCE, encoder_variant: Any = "graph"):  # fmt: skip
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
        shared = isinstance(encoder_variant, EncoderChoice)
        self.encoders = encoder_variant if shared else EncoderChoice(encoder_variant)
        self.encoders.attach(executor)  # a pinned variant built now (refused here where it cannot run)
        self.batch_windows: Optional[int] = None  # windows per encoder call of a batched graph (frame_batches.py)

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
        self.encoders.ensure(self, frame, color_order)  # "auto": the encoder chosen on the first frame
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

    # ---- several frames in one call (frame_batches.py: in batched CUDA graphs, or eagerly) --------------------
    def segment_many(
        self, frames: Sequence[np.ndarray], color_orders: Sequence[str], with_scores: bool = True, stage_hook=None
    ) -> List[Tuple[np.ndarray, Optional[np.ndarray]]]:
        """Segment several frames (each checked as :meth:`__call__` checks one) in one call: with CUDA graphs, the
        frames of one kind go through the image encoder together in a graph captured per batch size (1, 2, 4, 8:
        ``frame_batches.BatchGraphs``); otherwise (or with a ``stage_hook``) eagerly, the windows of all frames
        packed into batches of ``max_windows``. ``color_orders``: each frame's channel order. Returns ``[(labels,
        scores or None)]`` on the host, one per frame."""
        return segment_many(self, frames, color_orders, with_scores, stage_hook)

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

    def _postprocess(self, merged: Buffer, windows, scaled_hw, out_hw, result=None):
        """The fused official post-processing of all windows (``ops.segment_windows``) where the logits are, into
        ``result`` (``(out_hw, labels, scores)`` buffers: a batched graph's slot) or the pipeline's own."""
        bias = self._bias
        if self.memory.kind == "host" or (self.memory.kind == "torch" and not getattr(self.memory, "cuda", False)):
            merged, bias = np.asarray(merged), np.asarray(bias)  # CPU tensors: zero-copy NumPy views
        size = (self.meta.image_size, self.meta.image_size)
        out_hw = (int(out_hw[0]), int(out_hw[1]))
        if result is None and (self._result is None or self._result[0] != out_hw):  # reused while the size stays
            if self._result is not None:
                self.memory.release(self._result[1])
                self.memory.release(self._result[2])
            self._result = (out_hw, self.memory.empty(out_hw, np.int32), self.memory.empty(out_hw, np.float32))
        result = self._result if result is None else result
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
                out=result[1:],
            )
        # on the device: a prepared launch per frame kind (postprocess_plans.py; the bias was checked on the
        # host by set_vocabulary), one call into the launcher per frame
        plans = self.__dict__.get("_post_plans")
        if plans is None:
            plans = self._post_plans = PostprocessPlans(ops=ops, kernels=self.kernels, memory=self.memory)
        return plans.run(merged, windows, size, tuple(scaled_hw), out_hw, bias, result[1:], self.memory.stream)


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

    encoder_variant = "graph"  # the image graph run (encoder_choice.py): use_encoder switches it

    def encoder_variants(self):
        return self.backend.encoder_variants()

    def encoder_unavailable(self, name: str):
        return self.backend.encoder_unavailable(name)  # why variant ``name`` cannot run here, or None

    def use_encoder(self, name: str) -> None:
        """Run the backend's image encoder variant ``name`` from now on (built on first use; ``Unavailable``)."""
        self._encoder = self.backend.encoder_variant(name)
        self.encoder_variant = name

    def run(self, role, inputs):
        torch = self.memory.torch
        io = self.backend.io
        with torch.inference_mode():
            if role == "image":
                outs = self.__dict__.get("_encoder", self.backend.image_graph)(inputs[Names.IMAGE])
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


# The Engine options the device pipeline reads, by name (rows of ENGINE_OPTIONS; each checked by its row)
DEVICE_OPTIONS = ("device_pipeline", "postprocess_kernel", "encoder_variant")


def make_device_pipeline(meta: BundleMeta, backend, options: Optional[Mapping[str, Any]] = None, *,
                         max_windows: int = 4, test_scale=None) -> Optional[DevicePipeline]:  # fmt: skip
    """The device pipeline for ``backend``, or None where the host path is used.

    ``options``: the Engine's options by name (its ``OptionValues``; a name absent: its row's default), of which it
    reads :data:`DEVICE_OPTIONS`. ``device_pipeline``: "auto" (on where the data can stay on a GPU: a backend that
    ``runs_on_gpu`` and has a ``device_executor`` (TensorRT, torch on CUDA), with a sigmoid bundle and CUDA native
    ops), True (required: refuse with the reason when impossible; a host backend's executor runs it on host buffers),
    False (host path). ``postprocess_kernel``, ``encoder_variant``: the choices (``postprocess_choice.py``,
    ``encoder_choice.py``; an in-flight lane passes its Engine's ``PostprocessKernels`` and ``EncoderChoice`` under
    these names, to share them). A backend's ``frame_graphs(executor)`` gives the frame's CUDA graphs, or None.
    ``max_windows``: windows per encoder call; ``test_scale``: the frames' test resize (None: the bundle's; the
    pipeline's resolved ``Engine(test_scale=...)``).
    """
    given = {} if options is None else options
    chosen = {name: given[name] if name in given else ENGINE_OPTIONS[name].default for name in DEVICE_OPTIONS}
    setting = chosen["device_pipeline"]
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
    return DevicePipeline(meta, executor, max_windows, graphs, test_scale,
                          postprocess_kernel=chosen["postprocess_kernel"], encoder_variant=chosen["encoder_variant"])  # fmt: skip
