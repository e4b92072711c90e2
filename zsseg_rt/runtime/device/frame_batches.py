"""Several frames in one call of the device pipeline (``DevicePipeline.segment_many``, ``engine([...])``):
with CUDA graphs, the frames of one kind go through the image encoder TOGETHER inside a graph captured per
batch size, so a batched call costs one replay where it cost a few hundred eager launches (the H200 lease of
2026-11-28, probe P7: four images in one eager call 13.5 ms, four single replays 3.4 ms).

**Batched graphs** (:class:`BatchGraphs`, the ``batches`` of a pipeline's ``FrameGraphs``):

* a call's frames are grouped by kind (size, channels, colour order), in order; a group runs in batches of at most
  ``BATCH_SIZES[-1]`` frames, and a batch of ``n`` frames takes the graph of the smallest batch size in
  :data:`BATCH_SIZES` (1, 2, 4, 8) that holds it: a partial batch is padded (its extra slots run on the last
  frame's copy at capture, on whatever they held before at a replay; their results are never read). One frame is
  the single-frame graph (``FrameGraphs.segment``), so at most 3 batched graphs a frame kind, and at most
  ``max_graphs`` (default 4) are kept (least recently used dropped first);
* a batched graph owns its slots (each a page-locked frame buffer and its device twin, result buffers, staging
  buffers: what a single frame's graph owns, ``size`` times), the encoder's input ``[size * windows, 3, S, S]`` and,
  where the windows take more than one encoder call, the merged logits. One batch runs: every slot's upload, every
  slot's windows pre-processed into the one input, the image encoder and head over all of them in calls of at most
  ``batch_windows`` windows (default :data:`BATCH_WINDOWS`, capped by the executor's batch limit: a TensorRT
  profile), each slot's fused post-processing on its rows of the logits, each slot's downloads;
* as for one frame (``cuda_graphs.py``): the first batch of a key runs eagerly (which also chooses the
  post-processing kernel for its geometry), is captured over the same buffers, and its first replay, with every
  slot's buffers overwritten first, must equal the eager run slot by slot (``replay_mismatch``), else graphs are off
  for the pipeline (one warning; that call's results are the eager ones); a capture that fails turns graphs off too;
  ``set_vocabulary`` drops them with the single-frame graphs (``FrameGraphs.clear``);
* memory: each graph holds the buffers above (:meth:`BatchGraphs.report`: their bytes per graph) plus, on torch,
  the pool of the encoder's activations at ``size * windows`` windows (measured on a GPU by
  ``checks/gpu_engine.py``).

Without graphs (the host, TensorRT without ``cuda_graphs``, graphs turned off) or with a ``stage_hook`` (a timed call,
whose stages are reported per frame), :func:`segment_many_eagerly` runs the call as before: the windows of all frames
packed into batches of ``max_windows``, each frame post-processed as soon as its last window ran.

Tested on the emulated CUDA runtime (python_tests/runtime/test_batched_graphs_cuda.py: the labels and scores of a
batched call equal single calls', replays, padding, the first-replay check, the bound on kept graphs); timed only on
a GPU (``checks/gpu_probe.py`` P7 and ``checks/gpu_engine.py``: 8 images per call against 8 single calls).
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import logging
import warnings
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from zsseg_rt import ops
from zsseg_rt.bundle import Names

from .cuda_graphs import replay_mismatch
from .stage_timing import stage

LOG = logging.getLogger("zsseg_rt.cuda_graphs")

__all__ = [
    "BATCH_SIZES",
    "BATCH_WINDOWS",
    "BatchGraphs",
    "batch_size_for",
    "segment_many",
    "segment_many_eagerly",
    "windows_per_call",
]

BATCH_SIZES: Tuple[int, ...] = (1, 2, 4, 8)  # frames per graph: 1 is the single-frame graph (FrameGraphs)
BATCH_WINDOWS = 16  # windows per encoder call in a batched graph (8 two-window frames: one call), unless capped
Results = List[Tuple[np.ndarray, Optional[np.ndarray]]]


def batch_size_for(count: int) -> int:
    """The graph's batch size for ``count`` frames of one kind (``1 <= count <= BATCH_SIZES[-1]``): the smallest of
    :data:`BATCH_SIZES` that holds them."""
    if not 1 <= int(count) <= BATCH_SIZES[-1]:
        raise ValueError(f"a batch holds 1 to {BATCH_SIZES[-1]} frames, got {count}")
    return next(size for size in BATCH_SIZES if size >= int(count))


def _check_frames(pipe, frames: Sequence[np.ndarray], color_orders: Sequence[str]) -> None:
    if pipe._text is None:
        raise RuntimeError("no vocabulary: call set_vocabulary(text, class_bias) first")
    if len(color_orders) != len(frames):
        raise ValueError(f"need one colour order per frame: {len(frames)} frames, {len(color_orders)} orders")
    for frame in frames:
        if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim not in (2, 3):
            raise TypeError(f"frames must be uint8 numpy arrays [H, W, C] or [H, W], got {type(frame).__name__}")


def segment_many(pipe, frames: Sequence[np.ndarray], color_orders: Sequence[str], with_scores: bool = True,
                 stage_hook=None) -> Results:  # fmt: skip
    """``DevicePipeline.segment_many`` (see the module docstring): batched graphs where the pipeline has graphs and
    the call is not timed, else :func:`segment_many_eagerly`."""
    _check_frames(pipe, frames, color_orders)
    if frames:  # "auto": the encoder chosen on the first frame, before any batch runs
        pipe.encoders.ensure(pipe, np.ascontiguousarray(frames[0]), color_orders[0])
    graphs = pipe.graphs
    if graphs is None or not graphs.enabled or stage_hook is not None:
        return segment_many_eagerly(pipe, frames, color_orders, with_scores, stage_hook)
    groups: Dict[tuple, List[int]] = collections.defaultdict(list)
    for index, (frame, order) in enumerate(zip(frames, color_orders)):
        groups[(frame.shape, order)].append(index)
    results: List[Any] = [None] * len(frames)
    for (_, order), indexes in groups.items():
        for start in range(0, len(indexes), BATCH_SIZES[-1]):
            part = indexes[start : start + BATCH_SIZES[-1]]
            if len(part) == 1 or not graphs.enabled:  # one frame (or graphs went off): the single-frame path
                for index in part:
                    results[index] = pipe(np.ascontiguousarray(frames[index]), order, with_scores)
                continue
            outs = batches_of(graphs).run(pipe, [frames[i] for i in part], order, with_scores)
            for index, out in zip(part, outs):
                results[index] = out
    return results


def windows_per_call(requested: int, executor: Any) -> int:
    """Windows per encoder call: ``requested`` (``Engine.max_batch``) capped by the executor's batch limit (the
    engine's profile), as the host path splits its batches (``WindowedGraphs.encode_image`` over a ``TrtRunner``)."""
    requested = int(requested)
    if requested < 1:
        raise ValueError(f"max_windows must be >= 1, got {requested}")
    batch_limit = getattr(executor, "batch_limit", None)  # executors written before the method existed: no limit
    limit = batch_limit() if batch_limit is not None else None
    return requested if limit is None else max(1, min(requested, int(limit)))


def batches_of(graphs) -> "BatchGraphs":
    """The batched graphs of a pipeline's ``FrameGraphs`` (its ``batches``), made on first use."""
    if graphs.batches is None:
        graphs.batches = BatchGraphs(graphs)
    return graphs.batches


# ---- batched CUDA graphs ------------------------------------------------------------------------------------------
@dataclasses.dataclass
class _Slot:
    host: np.ndarray  # the page-locked frame buffer
    frame: Any  # its device twin (or the host buffer's zero-copy view)
    result: Tuple[Tuple[int, int], Any, Any]  # (out_hw, labels, scores) on the device
    staging: Tuple[np.ndarray, Optional[np.ndarray]]  # the host buffers the downloads go to


@dataclasses.dataclass
class _Batch:
    size: int
    windows: int  # per frame
    per_call: int  # windows per encoder call
    slots: List[_Slot]
    image: Any  # [size * windows, 3, S, S] float32
    merged: Any = None  # [size * windows, C, h, w] when the windows take several encoder calls
    held: List[Any] = dataclasses.field(default_factory=list)  # the executor's logits the graph reads (kept alive)
    handle: Any = None
    transfers: List[Tuple[str, str, int]] = dataclasses.field(default_factory=list)
    nbytes: int = 0  # the buffers above, allocated for this graph
    replays: int = 0


class BatchGraphs:
    """The batched graphs of one pipeline (see the module docstring); the ``batches`` of its ``FrameGraphs``, whose
    capture backend, precision, ``enabled`` switch and ``stats`` it shares ("batch_captured", "batch_replayed",
    "batch_checked", "batch_padded": the padded slots replayed)."""

    def __init__(self, graphs, max_graphs: int = 4):
        if int(max_graphs) < 1:
            raise ValueError(f"max_graphs must be >= 1, got {max_graphs}")
        self.graphs = graphs
        self.max_graphs = int(max_graphs)
        self._entries: "collections.OrderedDict[tuple, _Batch]" = collections.OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def key(self, pipe, frame: np.ndarray, color_order: str, with_scores: bool, size: int) -> tuple:
        graphs = self.graphs
        return (tuple(frame.shape), color_order, bool(with_scores), int(pipe._num_classes), graphs.vocabulary_version,
                graphs.precision, int(size))  # fmt: skip

    def report(self) -> List[Dict[str, Any]]:
        """Each kept graph: its frames' shape, batch size, windows per frame and per encoder call, the bytes of the
        buffers it owns (the encoder's activation pool of a torch graph not included), replays."""
        return [{"frame": list(key[0]), "size": b.size, "windows_per_frame": b.windows, "windows_per_call": b.per_call,
                 "buffer_bytes": b.nbytes, "replays": b.replays} for key, b in self._entries.items()]  # fmt: skip

    def run(self, pipe, frames: Sequence[np.ndarray], color_order: str, with_scores: bool) -> Results:
        """``frames`` (2 to ``BATCH_SIZES[-1]``, one kind) through the graph of their batch size: replayed, or run
        eagerly, captured and checked when the key is new. Returns each frame's ``(labels, scores or None)``."""
        size = batch_size_for(len(frames))
        key = self.key(pipe, frames[0], color_order, with_scores, size)
        stats = self.graphs.stats
        batch = self._entries.get(key)
        if batch is not None:
            self._entries.move_to_end(key)
            outs = self._launch(pipe, batch, frames)
            stats["batch_replayed"] += 1
            stats["batch_padded"] += size - len(frames)
            return outs[: len(frames)]
        scaled, windows = pipe.frame_plan(frames[0])
        batch = self._allocate(pipe, frames[0], size, len(windows), with_scores)
        filled = list(frames) + [frames[-1]] * (size - len(frames))  # padded with the last frame at capture
        self._fill(pipe, batch, filled)
        out_hw = (int(frames[0].shape[0]), int(frames[0].shape[1]))
        memory = pipe.memory
        memory.activate()
        with memory.stream_context():
            self._enqueue(pipe, batch, scaled, windows, out_hw, color_order, with_scores)
        memory.synchronize()
        eager = [memory.read_staging(*slot.staging) for slot in batch.slots]
        stats["eager"] += 1
        if self._capture(pipe, key, batch, scaled, windows, out_hw, color_order, with_scores):
            self._check_first_replay(pipe, key, batch, filled, eager)
        return eager[: len(frames)]

    # ---- the buffers ----------------------------------------------------------------------------------------------
    def _allocate(self, pipe, frame: np.ndarray, size: int, windows: int, with_scores: bool) -> _Batch:
        memory, meta = pipe.memory, pipe.meta
        memory.activate()
        out_hw = (int(frame.shape[0]), int(frame.shape[1]))
        slots, nbytes = [], 0
        for _ in range(size):
            host = memory.host_buffer(frame.shape, np.uint8)
            view = memory.device_view(host)
            device = view if view is not None else memory.empty(frame.shape, np.uint8)
            result = (out_hw, memory.empty(out_hw, np.int32), memory.empty(out_hw, np.float32))
            labels = memory.host_buffer(out_hw, np.int32)
            scores = memory.host_buffer(out_hw, np.float32) if with_scores else None
            slots.append(_Slot(host, device, result, (labels, scores)))
            nbytes += host.nbytes * (1 if view is not None else 2) + labels.nbytes * (4 if with_scores else 3)
        per_call = _windows_per_call(pipe)
        image = memory.empty((size * windows, 3, int(meta.image_size), int(meta.image_size)), np.float32)
        nbytes += size * windows * 3 * int(meta.image_size) ** 2 * 4
        return _Batch(size, windows, per_call, slots, image, nbytes=nbytes)

    def _release(self, pipe, batch: _Batch) -> None:
        memory = pipe.memory
        for slot in batch.slots:
            for buffer in (slot.host, slot.frame, slot.result[1], slot.result[2]) + slot.staging:
                if buffer is not None:
                    memory.release(buffer)  # a no-op for a zero-copy view
        memory.release(batch.image)
        if batch.merged is not None:
            memory.release(batch.merged)
        batch.held.clear()

    @staticmethod
    def _fill(pipe, batch: _Batch, frames: Sequence[np.ndarray]) -> None:
        """Copy ``frames`` into the first slots' frame buffers (the rest keep what they held)."""
        for slot, frame in zip(batch.slots, frames):
            pipe.memory.host_access(slot.host, True, "frame")
            np.copyto(slot.host, frame)

    # ---- the work a batched graph captures ----------------------------------------------------------------------
    def _enqueue(self, pipe, batch: _Batch, scaled, windows, out_hw, color_order: str, with_scores: bool) -> None:
        """Every slot's upload and pre-processing, the encoder and head over all slots' windows in calls of
        ``batch.per_call``, each slot's post-processing and downloads, enqueued on the pipeline's stream."""
        memory, meta, executor = pipe.memory, pipe.meta, pipe.executor
        count = len(windows)
        for slot in batch.slots:
            memory.upload("frame", slot.host, slot.frame)
        for index, slot in enumerate(batch.slots):
            ops.preprocess(slot.frame, scaled, windows, meta.image_size, meta.mean, meta.std, color_order=color_order,
                           out=memory.rows(batch.image, index * count, count), stream=memory.stream)  # fmt: skip
        total = batch.size * count
        logits = None
        for start in range(0, total, batch.per_call):
            taken = min(batch.per_call, total - start)
            features = executor.run("image", {Names.IMAGE: memory.rows(batch.image, start, taken)})
            head = executor.run("head", dict(features, **{Names.TEXT_EMBEDDINGS: pipe._text}))[Names.MASK_LOGITS]
            if taken == total:
                logits = head
                continue
            if batch.merged is None:  # allocated on the eager run, never while capturing
                batch.merged = memory.empty((total,) + tuple(int(d) for d in head.shape[1:]), np.float32)
            memory.copy_into(batch.merged, start, head)
            logits = batch.merged
        batch.held[:] = [logits]  # the executor's output buffer the graph reads: alive while the graph is
        for index, slot in enumerate(batch.slots):
            rows = memory.rows(logits, index * count, count)
            labels, scores = pipe._postprocess(rows, windows, scaled, out_hw, result=slot.result)
            memory.download("labels", labels, slot.staging[0])
            if with_scores:
                memory.download("scores", scores, slot.staging[1])

    def _capture(self, pipe, key: tuple, batch: _Batch, scaled, windows, out_hw, color_order, with_scores) -> bool:
        memory, graphs = pipe.memory, self.graphs
        start = len(memory.transfers.entries)
        try:
            memory.activate()
            memory.capturing = True
            try:
                batch.handle = graphs.backend.capture(
                    lambda: self._enqueue(pipe, batch, scaled, windows, out_hw, color_order, with_scores)
                )
            finally:
                memory.capturing = False
        except Exception as exc:  # noqa: BLE001 - the batch's results are computed eagerly already: say it, go eager
            graphs.enabled = False
            graphs.stats["capture_failed"] += 1
            warnings.warn(f"CUDA graph capture of a batch of {batch.size} frames failed ({type(exc).__name__}: "
                          f"{exc}); this pipeline runs eagerly from now on (same results, more launch overhead)",
                          RuntimeWarning, stacklevel=4)  # fmt: skip
            del memory.transfers.entries[start:]
            memory.synchronize()
            self._release(pipe, batch)
            return False
        batch.transfers = list(memory.transfers.entries[start:])
        del memory.transfers.entries[start:]
        self._entries[key] = batch
        graphs.stats["batch_captured"] += 1
        LOG.info("captured a CUDA graph for batches of %d frames %s (%d kept)", batch.size, key[:4], len(self))
        while len(self._entries) > self.max_graphs:
            self._drop(pipe, self._entries.popitem(last=False)[1])
        return True

    def _check_first_replay(self, pipe, key: tuple, batch: _Batch, frames, eager: Results) -> None:
        self._poison(pipe, batch)
        replayed = self._launch(pipe, batch, frames)
        graphs = self.graphs
        for index, (want, got) in enumerate(zip(eager, replayed)):
            why = replay_mismatch(want, got, graphs.precision)
            if why is not None:
                graphs.enabled = False
                graphs.stats["check_failed"] += 1
                self._entries.pop(key, None)
                self._drop(pipe, batch)
                warnings.warn(f"the first replay of a CUDA graph of {batch.size} frames {list(frames[0].shape)} "
                              f"differs from its eager run at frame {index} ({why}): CUDA graphs are off for this "
                              "pipeline from now on (this call's results are the eager ones)", RuntimeWarning,
                              stacklevel=4)  # fmt: skip
                return
        graphs.stats["batch_checked"] += 1

    @staticmethod
    def _poison(pipe, batch: _Batch) -> None:
        """What a replay must write, overwritten first (``FrameGraphs._poison``, slot by slot)."""
        memory = pipe.memory
        memory.activate()
        temporaries = []  # the host arrays uploaded, alive until the synchronize below
        with memory.stream_context():
            for slot in batch.slots:
                hw = slot.result[0]
                uploads = [("graph_check_labels", np.full(hw, -1, np.int32), slot.result[1]),
                           ("graph_check_scores", np.full(hw, np.nan, np.float32), slot.result[2])]  # fmt: skip
                if memory.device_view(slot.host) is None:
                    uploads.append(("graph_check_frame", 255 - slot.host, slot.frame))
                for name, host, buffer in uploads:
                    memory.upload(name, host, buffer)
                temporaries += uploads
        memory.synchronize()
        for slot in batch.slots:
            memory.host_access(slot.staging[0], True, "labels staging buffer")
            slot.staging[0].fill(-1)
            if slot.staging[1] is not None:
                memory.host_access(slot.staging[1], True, "scores staging buffer")
                slot.staging[1].fill(np.nan)

    def _launch(self, pipe, batch: _Batch, frames: Sequence[np.ndarray]) -> Results:
        """Copy ``frames`` into the first slots, replay the graph, wait: every slot's ``(labels, scores)``."""
        memory = pipe.memory
        self._fill(pipe, batch, frames)
        memory.activate()
        memory.transfers.paused = True  # logged at capture: added once per replay below
        try:
            with memory.stream_context():
                self.graphs.backend.replay(batch.handle)
        finally:
            memory.transfers.paused = False
        memory.transfers.entries.extend(batch.transfers)
        memory.synchronize()
        batch.replays += 1
        return [memory.read_staging(*slot.staging) for slot in batch.slots[: len(frames)]]

    def _drop(self, pipe, batch: _Batch) -> None:
        pipe.memory.synchronize()
        if batch.handle is not None:
            self.graphs.backend.release(batch.handle)
        self._release(pipe, batch)
        self.graphs.stats["dropped"] += 1

    def clear(self, pipe) -> None:
        """Drop every batched graph (``FrameGraphs.clear``: a new vocabulary, a lane closed)."""
        while self._entries:
            self._drop(pipe, self._entries.popitem(last=False)[1])


def _windows_per_call(pipe) -> int:
    """Windows per encoder call in a batched graph: the pipeline's ``batch_windows`` (the Engine's ``max_batch``
    when given), else :data:`BATCH_WINDOWS` and at least ``max_windows``, capped by the executor's batch limit."""
    wanted = getattr(pipe, "batch_windows", None) or max(BATCH_WINDOWS, pipe.max_windows)
    return windows_per_call(wanted, pipe.executor)


# ---- without graphs: the windows of all frames packed into eager encoder / head calls ----------------------------
def segment_many_eagerly(pipe, frames: Sequence[np.ndarray], color_orders: Sequence[str], with_scores: bool = True,
                         stage_hook=None) -> Results:  # fmt: skip
    """Segment several frames eagerly (no CUDA graph): the windows of all frames, in order, preprocessed on the device
    into one batch of ``max_windows`` (a batch may hold the last windows of one frame and the first of the next), one
    image encoder and one head run per batch, each frame's rows copied into its own logits buffer; a frame is
    post-processed and downloaded as soon as its last window ran, and its device buffers freed, so at most the frames
    of one batch are held on the device. ``stage_hook``: each frame's stages after its synchronisation."""
    _check_frames(pipe, frames, color_orders)
    memory, meta = pipe.memory, pipe.meta
    memory.activate()
    clock = pipe._clock_for(stage_hook)  # reported after each frame's synchronisation, then restarted
    if clock is not None:
        clock.restart()
    plans = [pipe.frame_plan(frame) for frame in frames]
    live: Dict[int, List[Any]] = {}  # frame -> [device frame, its window logits, windows done]
    results: List[Any] = [None] * len(frames)
    jobs = ((i, k) for i, (_, windows) in enumerate(plans) for k in range(len(windows)))
    with memory.stream_context():
        for chunk in iter(lambda: list(itertools.islice(jobs, pipe.max_windows)), []):
            batch = memory.leading(pipe._image, len(chunk))
            runs = _runs(chunk)  # (frame, its first window here, count, row in the batch)
            for i, first, count, row in runs:
                if i not in live:
                    device_frame = memory.empty(frames[i].shape, np.uint8)
                    with stage(clock, "upload"):
                        memory.upload("frame", np.ascontiguousarray(frames[i]), device_frame)
                    live[i] = [device_frame, None, 0]
                with stage(clock, "preprocess"):
                    ops.preprocess(live[i][0], plans[i][0], plans[i][1][first : first + count], meta.image_size,
                                   meta.mean, meta.std, color_order=color_orders[i],
                                   out=memory.rows(batch, row, count), stream=memory.stream)  # fmt: skip
            with stage(clock, "image_encoder"):
                features = pipe.executor.run("image", {Names.IMAGE: batch})
            with stage(clock, "head"):
                logits = pipe.executor.run("head", dict(features, **{Names.TEXT_EMBEDDINGS: pipe._text}))
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
                    results[i] = _finish_frame(pipe, frames[i], live.pop(i), plans[i], with_scores, clock, stage_hook)
    return results


def _finish_frame(pipe, frame: np.ndarray, state: List[Any], plan, with_scores: bool, clock, hook):
    """Post-process and download one frame of :func:`segment_many_eagerly`, then free its device buffers; the stages
    timed since the last synchronisation go to ``hook`` after this one."""
    memory = pipe.memory
    device_frame, logits, _ = state
    out_hw = (int(frame.shape[0]), int(frame.shape[1]))
    labels_host, scores_host = pipe._postprocess_download(logits, plan[1], plan[0], out_hw, with_scores, clock)
    memory.synchronize()
    if clock is not None:
        clock.report(hook)
        clock.restart()
    memory.release(device_frame)
    memory.release(logits)
    if memory.page_locked or pipe.static_outputs:  # staging buffers, reused by the next frame
        return memory.read_staging(labels_host, scores_host)
    return labels_host, scores_host


def _runs(chunk: Sequence[Tuple[int, int]]) -> List[Tuple[int, int, int, int]]:
    """A batch's ``(frame, window)`` pairs as runs ``(frame, first window, count, row in the batch)``."""
    runs: List[Tuple[int, int, int, int]] = []
    for row, (frame, window) in enumerate(chunk):
        if runs and runs[-1][0] == frame:
            runs[-1] = (frame, runs[-1][1], runs[-1][2] + 1, runs[-1][3])
        else:
            runs.append((frame, window, 1, row))
    return runs
