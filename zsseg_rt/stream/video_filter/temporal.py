"""Labels that hold still and follow the scene: optical flow between frames, the one ``warp``, the stabilising filter
and keyframe propagation of one stream (NumPy, OpenCV for the flow, the native ops; no torch). ``zsseg_rt.stream.video_filter.video`` puts them around an
Engine (``VideoSegmenter``); docs/video.md explains the method and its numbers.

Per frame (``StreamFilter``):

1. The frame is reduced to a grey image at ``1/flow_stride`` of its size, and the dense flow from it to the *anchor*
   (the last keyframe; with ``keyframe_every=1`` the previous frame) is computed with OpenCV's DIS
   (:class:`FlowEstimator`). Where the anchor, warped along the flow, matches the frame (the flow-compensated grey
   error, averaged over 5x5 pixels, under ``photometric_tolerance``) and the flow stays inside the anchor, the flow
   is *valid*; its share of the frame is the flow's *confidence*.
2. A keyframe is due on the first frame, a frame of another size, a vocabulary change, a flow that failed, a scene
   cut (confidence under ``cut_confidence``), every ``keyframe_every``-th frame, and in the adaptive mode also when
   the confidence drops under ``min_confidence``. The encoder runs on keyframes only.
3. A keyframe's result is the Engine's own; with ``stabilize`` its per-class scores ``S`` (at ``1/score_stride``,
   ``zsseg_rt.pipeline.class_scores``) are blended with the anchor's filtered scores warped along the flow, ``P``:
   ``F = P + w * (S - P)`` where the flow is valid, ``F = S`` elsewhere (occlusions, the frame's new border) and
   after a reset (first frame, size, vocabulary, scene cut, failed flow). The weight ``w`` is each pixel's: ``blend``
   where the anchor's grey frame, warped along the flow, equals this one, rising with their difference (averaged
   over the state pixel) to 1 at ``photometric_tolerance``: the past steadies the scores where the flow explains the
   image, and gives way at once where the image changed or the flow is in doubt (a moving edge: no trail).
   Hysteresis against near-ties: the class
   the anchor gave a pixel (warped along the flow) is kept unless the new winner beats it by ``hysteresis * noise``
   (a margin that shrinks where that grey difference passes half the tolerance, to none at the tolerance: no hold
   where the image changed),
   ``noise`` being *that pixel's* jitter measured on the frames before: a running mean (weight ``w``, carried
   along the flow with the scores) of the squared change of its top-2 margin ``S_a - S_b`` against ``P``'s, as the
   deviation of the filtered margin it gives (a label that changes where the scores were quiet changes at once; one
   that oscillates is held). So the margin scales with the scores of whatever weights are loaded, and where they
   hesitate: a trained model is confident on most of the frame and jitters at its boundaries, random weights jitter
   everywhere. (A single noise figure for the frame, a median over its pixels, is 0 for a confident model: the
   hysteresis did nothing on trained scores.)
   The labels are the argmax of ``F`` with that hysteresis, bilinear to the frame's size.
4. Between keyframes, the anchor's labels (nearest) and winning scores (bilinear) are warped along the flow to the
   frame (its class scores too, for the next keyframe's blend): no encoder call.

``warp`` is the one place values are moved along a flow: the library's own op, ``zsseg_rt.ops.warp`` (OpenCV
``remap``'s sampling rule), on the CPU here and on CUDA inside the filter's ops. The filter's arithmetic (steps 3
and 4) is the native ops of ``zsseg_rt.ops.temporal`` on the arrays of ``filter_arrays``: NumPy on the CPU, the
device pipeline's buffers on a GPU (the state never leaves the device; the labels come down).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import time
from typing import Any, Dict, NamedTuple, Optional, Tuple

import numpy as np

from .video_metrics import grey

log = logging.getLogger("zsseg_rt.stream")

__all__ = ["FLOW_PRESETS", "FlowError", "FlowEstimator", "Motion", "TemporalOptions", "StreamFilter", "warp"]

FLOW_PRESETS = ("ultrafast", "fast", "medium")  # OpenCV DISOpticalFlow presets
HOLD_DOUBT = 0.5  # the hysteresis' margin is whole up to this doubt in the flow (StreamFilter._doubt), 0 at 1
REASONS = ("first", "size", "vocabulary", "flow failed", "scene cut", "low confidence", "interval")


class FlowError(RuntimeError):
    """The optical flow of a frame could not be computed (an OpenCV error, or values that are not finite)."""


@functools.lru_cache(maxsize=8)
def _grid(height: int, width: int) -> Tuple[np.ndarray, np.ndarray]:
    """The pixel coordinates ``(x [h, w], y [h, w])`` float32 of a grid (cached: read-only)."""
    grid_x, grid_y = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    grid_x.flags.writeable = grid_y.flags.writeable = False
    return grid_x, grid_y


def warp(values: np.ndarray, flow: np.ndarray, nearest: bool = False) -> np.ndarray:
    """``values`` sampled at ``x + flow(x)``: the one warp of the filter, ``zsseg_rt.ops.warp`` on the CPU (OpenCV
    ``remap``'s rule: a 1/32-pixel grid, the border replicated; the filter's ops use the same on either device).

    Args:
        values: ``[C, h, w]`` float32 (class scores), or ``[h, w]`` float32 / uint16 (winning scores, labels).
        flow: ``[h, w, 2]`` float32 displacements ``(dx, dy)`` in pixels of ``values``' grid, from each output pixel
            to where it is read.
        nearest: nearest neighbour (labels) instead of bilinear.
    Returns:
        an array of ``values``' shape and dtype.
    """
    from zsseg_rt import ops

    height, width = values.shape[-2:]
    if flow.shape != (height, width, 2):
        raise ValueError(f"the flow must be [{height}, {width}, 2] for values {list(values.shape)}, got {flow.shape}")
    planes = np.ascontiguousarray(values, dtype=np.float32).reshape(1, -1, height, width)
    moved = ops.warp(planes, np.ascontiguousarray(flow, dtype=np.float32)[None], nearest=bool(nearest))
    return moved.reshape(values.shape).astype(values.dtype, copy=False)


def resize_flow(flow: np.ndarray, size: Tuple[int, int]) -> np.ndarray:
    """A flow field ``[h, w, 2]`` resized to ``size`` (H, W), its displacements scaled with the grid."""
    import cv2

    height, width = flow.shape[:2]
    if (height, width) == tuple(size):
        return flow
    moved = cv2.resize(flow, (int(size[1]), int(size[0])), interpolation=cv2.INTER_LINEAR)
    moved[..., 0] *= size[1] / width
    moved[..., 1] *= size[0] / height
    return moved


def _resize_mask(mask: np.ndarray, size: Tuple[int, int]) -> np.ndarray:
    """A boolean mask resized to ``size``: a pixel is set where most of what it covers is."""
    import cv2

    if mask.shape == tuple(size):
        return mask
    share = cv2.resize(mask.astype(np.float32), (int(size[1]), int(size[0])), interpolation=cv2.INTER_AREA)
    return share > 0.5


def _nearest_index(source: int, target: int) -> np.ndarray:
    """``[target]`` int32: the source index OpenCV's INTER_NEAREST resize reads for each target index (cached)."""
    return _nearest_index_cached(int(source), int(target))


@functools.lru_cache(maxsize=16)
def _nearest_index_cached(source: int, target: int) -> np.ndarray:
    import cv2

    ramp = np.arange(source, dtype=np.float32)[:, None]
    index = cv2.resize(ramp, (1, target), interpolation=cv2.INTER_NEAREST)[:, 0].astype(np.int32)
    index.flags.writeable = False
    return index


def _fill_maps(valid: np.ndarray, size: Tuple[int, int]) -> Optional[Dict[str, np.ndarray]]:
    """Where the flow is not valid (``valid`` at the flow's resolution: what the anchor did not see, e.g. the
    background an object uncovered), a propagated frame takes the label of the nearest valid pixel (found at the
    flow's resolution) instead of what the flow dragged there from the anchor (a trail behind moving objects).
    The maps ``ops.temporal_propagate`` reads for it (None: nothing to fill): ``fill`` (the flat index of each
    invalid pixel's nearest valid one, -1 where valid) and the nearest-resize index maps between the frame
    (``size``) and the flow's resolution."""
    import cv2

    if valid.all() or not valid.any():
        return None
    height, width = valid.shape
    _, nearest = cv2.distanceTransformWithLabels(
        (~valid).astype(np.uint8), cv2.DIST_L2, 5, labelType=cv2.DIST_LABEL_PIXEL
    )  # the number of the nearest valid pixel, counted in raster order from 1
    source = np.flatnonzero(valid)[nearest.reshape(-1) - 1].reshape(height, width)
    return {
        "fill": np.where(valid, -1, source).astype(np.int32),
        "rows_down": _nearest_index(height, size[0]),
        "cols_down": _nearest_index(width, size[1]),
        "rows_up": _nearest_index(size[0], height),
        "cols_up": _nearest_index(size[1], width),
    }


@dataclasses.dataclass(frozen=True)
class TemporalOptions:
    """What the filter does (``VideoSegmenter`` and ``zsseg camera`` take the same; docs/video.md).

    Attributes:
        stabilize: blend each keyframe's class scores with the previous ones warped along the flow, with
            hysteresis (needs per-class scores: a windowed bundle without PAMR).
        keyframe_every: run the encoder on every K-th frame and propagate its result along the flow in between
            (1: every frame). With ``adaptive``: the longest gap between keyframes.
        adaptive: also a keyframe as soon as the flow's confidence drops under ``min_confidence``.
        blend: the weight of the current scores in the stabilised ones where the flow explains the image exactly,
            in (0, 1]; it rises with the flow-compensated grey error to 1 at ``photometric_tolerance``.
        hysteresis: the margin the previous class keeps, in units of the pixel's measured frame-to-frame jitter of its
            top-2 margin (0: none).
        score_stride: the class scores are kept at 1/score_stride of the frame (``zsseg_rt.pipeline.class_scores``).
        flow_stride: the flow is computed on the frame reduced by this factor.
        flow_preset: OpenCV DIS preset: "ultrafast", "fast" or "medium".
        photometric_tolerance: grey levels (0-255): the flow is valid where the warped anchor is within this of the
            frame (mean absolute error over 5x5 pixels); with ``stabilize`` the blend's weight reaches 1 and the
            hysteresis' margin 0 at this error (each state pixel's mean).
        min_confidence: adaptive mode: a keyframe when less of the frame than this has a valid flow.
        cut_confidence: a scene cut (the filter starts afresh, a keyframe) when less of the frame than this has one.
    """

    stabilize: bool = False
    keyframe_every: int = 1
    adaptive: bool = False
    blend: float = 0.2
    hysteresis: float = 1.5
    score_stride: int = 4
    flow_stride: int = 2
    flow_preset: str = "medium"
    photometric_tolerance: float = 12.0
    min_confidence: float = 0.85
    cut_confidence: float = 0.6

    def __post_init__(self) -> None:
        whole = lambda value: isinstance(value, int) and not isinstance(value, bool)  # noqa: E731
        number = lambda value: isinstance(value, (int, float)) and not isinstance(value, bool)  # noqa: E731
        checks = [  # (the option, passes, what it expects): one line naming the first that fails
            ("keyframe_every", whole(self.keyframe_every), "a whole number >= 1"),
            ("score_stride", whole(self.score_stride) and self.score_stride >= 1, "a whole number >= 1"),
            ("flow_stride", whole(self.flow_stride) and self.flow_stride >= 1, "a whole number >= 1"),
            ("blend", number(self.blend) and 0.0 < self.blend <= 1.0, "a number in (0, 1]"),
            ("hysteresis", number(self.hysteresis) and 0.0 <= self.hysteresis < 1e6, "a number >= 0"),
            (
                "photometric_tolerance",
                number(self.photometric_tolerance) and 0.0 < self.photometric_tolerance <= 255.0,
                "a number in (0, 255]",
            ),
            ("min_confidence", number(self.min_confidence) and 0.0 <= self.min_confidence <= 1.0, "a number in [0, 1]"),
            ("cut_confidence", number(self.cut_confidence) and 0.0 <= self.cut_confidence <= 1.0, "a number in [0, 1]"),
            ("flow_preset", self.flow_preset in FLOW_PRESETS, f"one of {', '.join(map(repr, FLOW_PRESETS))}"),
        ]
        for name, ok, expected in checks:
            if not ok:
                value = getattr(self, name)
                raise ValueError(f"temporal option {name}: expected {expected}, got {value!r} ({type(value).__name__})")
        if self.cut_confidence > self.min_confidence:
            raise ValueError(
                f"temporal options: cut_confidence ({self.cut_confidence}) must not exceed min_confidence "
                f"({self.min_confidence})"
            )
        if self.keyframe_every < 1:
            raise ValueError(f"keyframe_every must be >= 1 (1: the encoder on every frame), got {self.keyframe_every}")
        if self.adaptive and self.keyframe_every < 2:
            raise ValueError("the adaptive mode needs keyframe_every >= 2 (the longest gap between keyframes)")

    @property
    def active(self) -> bool:
        """Whether anything is filtered or propagated (else every frame is the Engine's own result)."""
        return self.stabilize or self.keyframe_every > 1


class Motion(NamedTuple):
    """The flow from a frame to its anchor: ``flow [h, w, 2]`` at the flow's resolution (the frame-to-frame flows
    since the anchor, composed), ``valid [h, w]`` where it can be trusted, ``confidence`` (the valid share),
    ``step_confidence`` (the same for the flow to the previous frame alone: what a scene cut is judged by), what it
    cost (``ms``) and each pixel's ``error [h, w]`` float32: the absolute grey difference between the frame and the
    anchor warped along the flow, the tolerance where the flow leaves the anchor (the blend's doubt in the flow)."""

    flow: np.ndarray
    valid: np.ndarray
    confidence: float
    step_confidence: float
    ms: float
    error: Optional[np.ndarray] = None


class FlowEstimator:
    """OpenCV DIS optical flow on frames reduced by ``stride``, with the photometric check of ``Motion.valid``.

    ``flow_function`` (tests): replaces ``cv2.DISOpticalFlow.calc``, ``(current, previous) -> [h, w, 2]``.
    """

    def __init__(self, preset: str = "medium", stride: int = 2, tolerance: float = 12.0, flow_function: Any = None):
        import cv2

        if preset not in FLOW_PRESETS:
            raise ValueError(f"flow preset must be one of {FLOW_PRESETS}, got {preset!r}")
        code = {
            "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
            "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
            "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
        }[preset]
        self.stride, self.tolerance = int(stride), float(tolerance)
        dis: Any = cv2.DISOpticalFlow.create(code)  # Any: OpenCV's stubs refuse calc's flow=None
        self._calc = flow_function or (lambda current, previous: dis.calc(current, previous, None))

    def prepare(self, frame: np.ndarray, color_order: str = "bgr") -> np.ndarray:
        """The grey frame the flow is computed on (``[ceil(H/stride), ceil(W/stride)]`` uint8)."""
        import cv2

        image = grey(frame, color_order)
        if self.stride == 1:
            return image
        height, width = image.shape
        size = (max(1, -(-width // self.stride)), max(1, -(-height // self.stride)))
        return cv2.resize(image, size, interpolation=cv2.INTER_AREA)

    def flow(self, current: np.ndarray, previous: np.ndarray) -> np.ndarray:
        """``[h, w, 2]`` float32: the flow from ``current`` to ``previous`` (prepared frames of one size).

        Raises:
            FlowError: OpenCV failed, or the flow is not ``[h, w, 2]`` finite values.
        """
        import cv2

        try:
            flow = self._calc(current, previous)
        except cv2.error as exc:
            raise FlowError(f"DIS optical flow failed: {str(exc).strip().splitlines()[-1]}") from None
        flow = np.asarray(flow)
        if flow.shape != current.shape + (2,) or not np.isfinite(flow).all():
            raise FlowError(
                f"the optical flow is not {list(current.shape) + [2]} finite values (got {list(flow.shape)}, "
                f"{int(np.size(flow) - np.isfinite(flow).sum())} not finite)"
            )
        return np.ascontiguousarray(flow, dtype=np.float32)

    def check(self, current: np.ndarray, target: np.ndarray, flow: np.ndarray) -> np.ndarray:
        """``[h, w]`` bool: where ``flow`` (from ``current`` to ``target``) stays inside ``target`` and ``target``,
        warped along it, is within the tolerance of ``current`` (mean absolute grey error over 5x5 pixels)."""
        return self.compare(current, target, flow)[0]

    def compare(self, current: np.ndarray, target: np.ndarray, flow: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """:meth:`check`'s mask and each pixel's own absolute grey error ``[h, w]`` float32 (``target`` warped along
        ``flow`` against ``current``; the tolerance where the flow leaves ``target``)."""
        import cv2

        height, width = current.shape
        grid_x, grid_y = _grid(height, width)
        map_x, map_y = grid_x + flow[..., 0], grid_y + flow[..., 1]
        inside = (map_x >= -0.5) & (map_x <= width - 0.5) & (map_y >= -0.5) & (map_y <= height - 0.5)
        moved = warp(target.astype(np.float32), flow)  # an 8-bit remap's value: the float one, rounded half up
        moved = np.floor(moved + np.float32(0.5)).astype(np.uint8)
        error = cv2.absdiff(moved, current).astype(np.float32)
        valid = inside & (cv2.blur(error, (5, 5)) < self.tolerance)
        return valid, np.where(inside, error, np.float32(self.tolerance)).astype(np.float32)

    def estimate(
        self, current: np.ndarray, previous: np.ndarray, anchor: np.ndarray, to_anchor: Optional[np.ndarray]
    ) -> Motion:
        """The motion from ``current`` to ``anchor`` through ``previous``: the flow to the previous frame composed
        with ``to_anchor`` (the previous frame's flow to the anchor; None when the previous frame is the anchor).
        Small steps are what DIS follows well; one flow over several frames loses small, fast objects.

        Raises:
            FlowError: see :meth:`flow`.
        """
        start = time.perf_counter()
        step = self.flow(current, previous)
        step_valid, step_error = self.compare(current, previous, step)
        if to_anchor is None:  # the previous frame is the anchor
            flow, valid, error = step, step_valid, step_error
        else:
            flow = step + warp(to_anchor.transpose(2, 0, 1).copy(), step).transpose(1, 2, 0)
            valid, error = self.compare(current, anchor, flow)
        ms = 1000.0 * (time.perf_counter() - start)
        return Motion(np.ascontiguousarray(flow), valid, float(valid.mean()), float(step_valid.mean()), ms, error)


def _same_vocabulary(before: Any, now: Any) -> bool:
    """Whether two vocabulary tokens are one vocabulary: the same snapshot object (an Engine's, new at every
    ``set_classes``), or equal tuples of class names (an engine-like object without snapshots)."""
    return before is now or (isinstance(before, tuple) and before == now)


class _Anchor(NamedTuple):
    """The last keyframe of a stream (or its last frame, when every frame is one): its prepared grey frame, output
    labels ``[H, W]`` int32 and winning scores, and with ``stabilize`` its filtered class scores ``[C, h, w]`` and each
    state pixel's mean squared margin change ``jitter [h, w]`` (the hysteresis' noise, squared). Arrays of the
    filter's ``arrays`` (NumPy, or device buffers); ``size`` is the frame's ``(H, W)``."""

    small: np.ndarray
    labels: Any
    scores: Any
    state: Any
    vocabulary: Any
    jitter: Any = None
    size: Tuple[int, int] = (0, 0)


class Plan(NamedTuple):
    """What a frame gets: ``keyframe`` (the encoder runs), ``reason`` (why a keyframe: one of ``REASONS``; "" for a
    propagated frame), the prepared grey frame and the motion to the anchor (None without one)."""

    keyframe: bool
    reason: str
    small: np.ndarray
    motion: Optional[Motion]
    error: str = ""


class StreamFilter:
    """The temporal state of one stream: :meth:`plan` a frame, then :meth:`keyframe` with the Engine's result when it
    is one, else :meth:`propagate`. Each returns ``(labels [H, W] int32, scores [H, W] float32)`` on the host; with
    device ``arrays`` (``filter_arrays.DeviceArrays``) the state stays on the device and only the labels come back
    (scores None).

    Args:
        options: what the filter does. flow: the optical flow (default: DIS as ``options`` say).
        arrays: where the state lives and the ops run (default ``HostArrays``: NumPy, the CPU kernels).
    """

    def __init__(self, options: TemporalOptions, flow: Optional[FlowEstimator] = None, arrays: Any = None):
        from .filter_arrays import HostArrays

        self.options = options
        self.arrays = arrays if arrays is not None else HostArrays()
        self.flow = flow or FlowEstimator(options.flow_preset, options.flow_stride, options.photometric_tolerance)
        self.anchor: Optional[_Anchor] = None
        self.previous: Optional[np.ndarray] = None  # the last frame, prepared
        self.to_anchor: Optional[np.ndarray] = None  # its flow to the anchor (None: it is the anchor)
        self.since_keyframe = 0
        self.counts: Dict[str, int] = {reason: 0 for reason in REASONS}
        self.counts["propagated"] = 0
        self.flow_ms = 0.0
        self.flow_calls = 0
        self.last_error = ""
        self.last_noise: Optional[Tuple[Any, Any]] = None  # the last blended keyframe's (noise, measured)

    def reset(self) -> None:
        """Forget the past: the next frame is a keyframe that starts afresh."""
        self.anchor, self.previous, self.to_anchor = None, None, None

    def plan(self, frame: np.ndarray, vocabulary: Any, color_order: str = "bgr") -> Plan:
        """Decide whether ``frame`` (``[H, W, 3]`` uint8) is a keyframe, computing its flow to the anchor when the
        decision or the blend needs it. ``vocabulary``: a token that changes when the classes change."""
        small = self.flow.prepare(frame, color_order)
        anchor = self.anchor
        if anchor is None:
            return Plan(True, "first", small, None)
        if anchor.small.shape != small.shape or tuple(anchor.size) != tuple(frame.shape[:2]):
            return Plan(True, "size", small, None)
        if not _same_vocabulary(anchor.vocabulary, vocabulary):
            return Plan(True, "vocabulary", small, None)
        options = self.options
        interval = self.since_keyframe + 1 >= options.keyframe_every
        if interval and not options.stabilize:
            return Plan(True, "interval", small, None)  # nothing needs the flow
        previous = self.previous if self.previous is not None else anchor.small
        try:
            motion = self.flow.estimate(small, previous, anchor.small, self.to_anchor)
        except FlowError as exc:
            if not self.last_error:
                log.warning("%s: this frame is a keyframe (and the filter starts afresh)", exc)
            self.last_error = str(exc)
            return Plan(True, "flow failed", small, None, str(exc))
        self.flow_ms += motion.ms
        self.flow_calls += 1
        if motion.step_confidence < options.cut_confidence:
            return Plan(True, "scene cut", small, None)
        if options.adaptive and motion.confidence < options.min_confidence:
            return Plan(True, "low confidence", small, motion)
        if interval:
            return Plan(True, "interval", small, motion)
        return Plan(False, "", small, motion)

    def keyframe(
        self, plan: Plan, labels: Any, scores: Any, class_scores: Any, vocabulary: Any
    ) -> Tuple[np.ndarray, Optional[np.ndarray]]:
        """A keyframe's output from the Engine's result (``labels``, ``scores``: arrays of ``arrays``; with
        ``stabilize`` its ``class_scores``, whose ``scores`` are too), the new anchor."""
        self.counts[plan.reason] += 1
        self.since_keyframe = 0
        self.previous, self.to_anchor = plan.small, None
        arrays = self.arrays
        if not self.options.stabilize:
            size = (int(labels.shape[0]), int(labels.shape[1]))
            if not arrays.device:
                labels = np.ascontiguousarray(labels, dtype=np.int32)
                scores = np.ascontiguousarray(scores, dtype=np.float32)
            self.anchor = _Anchor(plan.small, labels, scores, None, vocabulary, None, size)
            return arrays.to_host(labels), (scores if not arrays.device else None)
        if class_scores is None:
            raise ValueError("stabilize needs the keyframe's class scores (Engine.segment_with_class_scores)")
        current = class_scores.scores
        if not arrays.device:
            current = np.ascontiguousarray(current, dtype=np.float32)
        anchor, motion = self.anchor, plan.motion
        fresh = anchor is None or motion is None or anchor.state is None or anchor.jitter is None
        if fresh or tuple(anchor.state.shape) != tuple(current.shape):  # type: ignore[union-attr]
            state, jitter = (
                current,
                arrays.zeros("jitter", tuple(current.shape[1:])),
            )  # nothing measured yet: no hysteresis
            with arrays.context():
                out_labels, out_scores = self._finalize(class_scores, state)
            self.last_noise = None
        else:
            assert anchor is not None and motion is not None
            with arrays.context():
                out_labels, out_scores, state, jitter = self._blend(class_scores, current, anchor, motion)
        size = (int(class_scores.output_size[0]), int(class_scores.output_size[1]))
        self.anchor = _Anchor(plan.small, out_labels, out_scores, state, vocabulary, jitter, size)  # type: ignore[arg-type]
        return arrays.to_host(out_labels), (out_scores if not arrays.device else None)

    def _finalize(self, class_scores: Any, state: Any) -> Tuple[Any, Any]:
        """Labels ``[H, W]`` int32 and winning scores of a ``[C, h, w]`` state where it is: ``ClassScores.finalize``
        (bilinear to the frame fused with the argmax, ``ops.segment``; then the background threshold)."""
        from zsseg_rt import ops

        arrays = self.arrays
        classes, height, width = (int(d) for d in state.shape)
        size = (int(class_scores.output_size[0]), int(class_scores.output_size[1]))
        labels = arrays.empty("labels", (1,) + size, np.int32)
        scores = arrays.empty("scores", (1,) + size, np.float32)
        ops.segment(arrays.view(state, (1, classes, height, width)), size, None, sigmoid=False,
                    out=(labels, scores), stream=arrays.stream)  # fmt: skip
        labels, scores = arrays.view(labels, size), arrays.view(scores, size)
        threshold = class_scores.background_threshold
        if threshold is not None:
            if arrays.device:
                raise ValueError("a background threshold (softmax post-processing) is applied on the host only")
            labels[scores < np.float32(threshold)] = np.int32(class_scores.background_index)
        return labels, scores

    def _blend(self, class_scores: Any, current: Any, anchor: _Anchor, motion: Motion) -> Tuple[Any, Any, Any, Any]:
        """A keyframe blended with the anchor along the flow, with the hysteresis (steps 3 and 4 of the module
        docstring): the ops on the filter's arrays, the flow's part computed here on the host and handed over."""
        import cv2

        from zsseg_rt import ops

        arrays, options = self.arrays, self.options
        classes, height, width = (int(d) for d in current.shape)
        small = (height, width)
        size = (int(class_scores.output_size[0]), int(class_scores.output_size[1]))
        valid = cv2.resize(motion.valid.astype(np.uint8), (size[1], size[0]), interpolation=cv2.INTER_NEAREST)
        host = {
            "flow": resize_flow(motion.flow, small),
            "valid": _resize_mask(motion.valid, small).astype(np.uint8),
            "doubt": self._doubt(motion, small),
            "frame_flow": np.ascontiguousarray(resize_flow(motion.flow, size)),
            "frame_valid": valid,
        }
        given = arrays.inputs(host)
        flow = arrays.view(given["flow"], (1, height, width, 2))
        previous = arrays.empty("previous", (1, classes, height, width), np.float32)
        ops.warp(arrays.view(anchor.state, (1, classes, height, width)), flow, out=previous, stream=arrays.stream)
        previous_jitter = arrays.empty("previous_jitter", (1, 1, height, width), np.float32)
        ops.warp(arrays.view(anchor.jitter, (1, 1, height, width)), flow, out=previous_jitter, stream=arrays.stream)
        outs = (
            arrays.empty("state", (classes, height, width), np.float32),
            arrays.empty("jitter", small, np.float32),
            arrays.empty("noise", small, np.float32),
            arrays.empty("measured", (1,), np.int32),
        )
        state, jitter, noise, measured = ops.temporal_blend(
            current,
            arrays.view(previous, (classes, height, width)),
            arrays.view(previous_jitter, small),
            given["doubt"],
            given["valid"],
            options.blend,
            HOLD_DOUBT,
            out=outs,
            stream=arrays.stream,
        )
        labels, scores = self._finalize(class_scores, state)
        self.last_noise = (noise, measured)  # the hysteresis' inputs of this frame (the look-ahead's, lookahead.py)
        if options.hysteresis > 0:  # (nothing measured yet, after a reset: ``measured`` is 0 and nothing is held)
            ops.temporal_hold(labels, scores, state, noise, anchor.labels, given["frame_flow"], given["frame_valid"],
                              options.hysteresis, measured, stream=arrays.stream)  # fmt: skip
        return labels, scores, state, jitter

    def _doubt(self, motion: Motion, size: Tuple[int, int]) -> np.ndarray:
        """``[h, w]`` float32 in [0, 1] at the state's ``size``: the blend's doubt in the flow, the flow-compensated
        grey error (``motion.error`` resized to the state, an area average when it is smaller) over the photometric
        tolerance. The weight of the
        current scores is ``blend + (1 - blend) * doubt`` (``blend`` where the anchor warped along the flow matches
        the frame exactly, 1 at the tolerance: no trail where the flow may be wrong), and the hysteresis' margin is
        whole up to a doubt of ``HOLD_DOUBT`` and falls linearly to 0 at 1 (no hold where the image changed: the
        jitter measured before a real change would otherwise hold the old class)."""
        import cv2

        if motion.error is None:
            return np.zeros(size, np.float32)
        error = cv2.resize(motion.error, (int(size[1]), int(size[0])), interpolation=cv2.INTER_AREA)
        return np.clip(error / np.float32(self.flow.tolerance), 0.0, 1.0).astype(np.float32)

    def propagate(self, plan: Plan) -> Tuple[np.ndarray, Optional[np.ndarray]]:
        """A frame between keyframes: the anchor's labels and scores warped along the flow to it (the labels where the
        flow is not valid: the nearest valid pixel's)."""
        from zsseg_rt import ops

        anchor, motion = self.anchor, plan.motion
        assert anchor is not None and motion is not None
        self.counts["propagated"] += 1
        self.since_keyframe += 1
        self.previous, self.to_anchor = plan.small, motion.flow
        arrays, size = self.arrays, anchor.size
        host = {"flow": np.ascontiguousarray(resize_flow(motion.flow, size))}
        fill = _fill_maps(motion.valid, size)
        host.update(fill or {})
        given = arrays.inputs(host)
        maps = (
            None if fill is None else tuple(given[k] for k in ("fill", "rows_down", "cols_down", "rows_up", "cols_up"))
        )
        with arrays.context():
            out = (
                arrays.empty("propagated_labels", size, np.int32),
                arrays.empty("propagated_scores", size, np.float32),
            )
            labels, scores = ops.temporal_propagate(
                anchor.labels, anchor.scores, given["flow"], maps, out=out, stream=arrays.stream
            )
        return arrays.to_host(labels), (scores if not arrays.device else None)

    def stats(self) -> Dict[str, Any]:
        """Keyframes by reason, propagated frames and the flow's mean cost (ms)."""
        keyframes = sum(self.counts[reason] for reason in REASONS)
        return {
            "keyframes": keyframes,
            "propagated": self.counts["propagated"],
            "keyframe_reasons": {reason: self.counts[reason] for reason in REASONS if self.counts[reason]},
            "flow_ms_mean": round(self.flow_ms / self.flow_calls, 3) if self.flow_calls else None,
            "flow_error": self.last_error or None,
        }
