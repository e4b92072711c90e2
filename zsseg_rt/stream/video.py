"""Frames one by one through an Engine with stable labels: ``VideoSegmenter`` (the stabilising filter and keyframe
propagation of ``temporal``), usable with or without the camera loop. No torch.

An application that owns its capture calls it per frame::

    from zsseg_rt import Engine
    from zsseg_rt.stream import VideoSegmenter

    video = VideoSegmenter(Engine("bundle", classes="person,floor,wall"), stabilize=True, keyframe_every=4)
    for frame in frames:                 # [H, W, 3] uint8 BGR, e.g. from cv2.VideoCapture
        result = video(frame)            # a Result (labels, scores, overlay(), ...) with .keyframe and .reason
    video.set_classes("person,chair")    # the next frame is a keyframe

The Engine's own call is unchanged (``engine(image)``); ``VideoSegmenter`` with neither option returns its results as
they are. Several streams share one segmenter (one model): ``video(frame, stream=i)``, or ``segment_streams`` (the
camera loop: the keyframes of all streams in one batched Engine call).
"""

from __future__ import annotations

import dataclasses
import threading
import time
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from zsseg_rt.runtime.result import Result

from .temporal import FlowEstimator, StreamFilter, TemporalOptions

__all__ = ["VideoResult", "VideoSegmenter"]


@dataclasses.dataclass(repr=False)
class VideoResult(Result):
    """A :class:`~zsseg_rt.Result` of a video frame: ``keyframe`` (the encoder ran on it), ``reason`` (why it is a
    keyframe: "first", "size", "vocabulary", "flow failed", "scene cut", "low confidence", "interval"; "" for a
    frame propagated from the last keyframe), ``confidence`` (the share of the frame whose flow to the anchor is
    valid; None when no flow was computed) and ``stream``. Propagated frames carry the keyframe's ``banner``,
    ``backend`` and ``inference``; their ``timing`` has "flow", "propagate" and "total"."""

    keyframe: bool = True
    reason: str = "first"
    confidence: Optional[float] = None
    stream: int = 0

    @classmethod
    def from_result(cls, result: Result, **fields: Any) -> "VideoResult":
        values = {field.name: getattr(result, field.name) for field in dataclasses.fields(Result)}
        values.update(fields)
        return cls(**values)


class _Stream:
    def __init__(self, options: TemporalOptions, flow_function: Any):
        flow = FlowEstimator(options.flow_preset, options.flow_stride, options.photometric_tolerance, flow_function)
        self.filter = StreamFilter(options, flow)
        self.template: Optional[Result] = None  # the last keyframe's result (class names, banner, backend)


class VideoSegmenter:
    """Segment video frames one by one with an Engine, stabilised and/or propagated between keyframes.

    Args:
        engine: a ``zsseg_rt.Engine`` (or an object with ``__call__(list of frames)`` and, for ``stabilize``,
            ``segment_with_class_scores(frames, stride)``).
        stabilize: blend each keyframe's class scores with the previous ones warped along the optical flow, with
            hysteresis against near-ties; reset on a scene cut (docs/video.md). Needs a windowed bundle without PAMR.
        keyframe_every: run the encoder on every K-th frame, propagating its labels along the flow in between (1:
            every frame). With ``adaptive``: the longest gap (default then 8).
        adaptive: a keyframe also as soon as the flow's confidence drops.
        color_order: the frames' channel order, "bgr" (default, OpenCV) or "rgb".
        options: the other :class:`~zsseg_rt.stream.temporal.TemporalOptions` (``blend``, ``hysteresis``,
            ``score_stride``, ``flow_stride``, ``flow_preset``, ``photometric_tolerance``, ``min_confidence``,
            ``cut_confidence``), and ``flow_function`` (tests: replaces the DIS flow).

    A scene cut, a frame of another size, a vocabulary change (``set_classes`` here or on the Engine) and a flow
    that fails each make the frame a keyframe that starts afresh. Thread-safe (one call at a time).
    """

    def __init__(
        self,
        engine: Any,
        stabilize: bool = False,
        keyframe_every: Optional[int] = None,
        adaptive: bool = False,
        color_order: str = "bgr",
        flow_function: Any = None,
        **options: Any,
    ):
        if color_order not in ("bgr", "rgb"):
            raise ValueError(f"color_order must be 'bgr' or 'rgb', got {color_order!r}")
        every = keyframe_every if keyframe_every is not None else (8 if adaptive else 1)
        self.options = TemporalOptions(
            stabilize=bool(stabilize), keyframe_every=every, adaptive=bool(adaptive), **options
        )
        if self.options.stabilize and hasattr(engine, "pipeline"):
            _check_class_scores(engine.pipeline)
        self.engine = engine
        self.color_order = color_order
        self._flow_function = flow_function
        self._streams: Dict[int, _Stream] = {}
        self._lock = threading.Lock()

    # ---- the Engine's face (the camera loop applies vocabularies through it) --------------------------------------
    @property
    def class_names(self) -> List[str]:
        return list(getattr(self.engine, "class_names", []))

    def set_classes(self, names, *args: Any, **kwargs: Any) -> None:
        """``engine.set_classes``; the next frame of every stream is a keyframe that starts afresh."""
        self.engine.set_classes(names, *args, **kwargs)

    def reset(self, stream: Optional[int] = None) -> None:
        """Forget the past of one stream (or of all): its next frame is a keyframe that starts afresh."""
        with self._lock:
            for index, state in self._streams.items():
                if stream is None or index == stream:
                    state.filter.reset()

    def stats(self, stream: int = 0) -> Dict[str, Any]:
        """A stream's keyframes (by reason), propagated frames and the flow's mean cost in ms. Does not wait for a
        frame being segmented (the camera loop's writer threads read it while inference runs)."""
        state = self._streams.get(stream)
        return state.filter.stats() if state is not None else {}

    # ---- frames ---------------------------------------------------------------------------------------------------
    def __call__(self, frame: np.ndarray, stream: int = 0) -> VideoResult:
        """One frame (``[H, W, 3]`` uint8 in ``color_order``; grey ``[H, W]`` and ``[H, W, 4]`` with alpha are taken
        as the Engine takes them) of ``stream``: a :class:`VideoResult`."""
        return self.segment_streams([stream], [frame])[0]

    def segment_streams(self, streams: Sequence[int], frames: Sequence[np.ndarray]) -> List[VideoResult]:
        """One frame of each of ``streams`` (distinct indices): the keyframes among them go through the Engine in one
        batched call, the others are propagated. Returns one result per frame, in order."""
        if len(streams) != len(frames) or len(set(streams)) != len(streams):
            raise ValueError(
                f"need one frame per distinct stream, got streams {list(streams)} for {len(frames)} frames"
            )
        with self._lock:
            return self._segment(list(streams), list(frames))

    def _vocabulary(self) -> Any:
        """A token that changes whenever the Engine's vocabulary does (a new snapshot per ``set_classes``)."""
        return getattr(self.engine, "vocabulary", None) or tuple(self.class_names)

    def _segment(self, streams: List[int], frames: List[np.ndarray]) -> List[VideoResult]:
        start = time.perf_counter()
        if not self.options.active:
            results = self._engine_call(frames, scores=False)
            return [
                VideoResult.from_result(r, keyframe=True, reason="interval", stream=s) for r, s in zip(results, streams)
            ]
        frames = [self._checked(frame) for frame in frames]
        vocabulary = self._vocabulary()
        states = [self._streams.setdefault(s, _Stream(self.options, self._flow_function)) for s in streams]
        plans = [state.filter.plan(frame, vocabulary, self.color_order) for state, frame in zip(states, frames)]
        planned = time.perf_counter()
        keys = [i for i, plan in enumerate(plans) if plan.keyframe]
        encoded = self._engine_call([frames[i] for i in keys], scores=self.options.stabilize) if keys else []
        vocabulary = self._vocabulary()  # the call used the vocabulary of now
        out: List[Optional[VideoResult]] = [None] * len(frames)
        for i, result in zip(keys, encoded):
            state, plan = states[i], plans[i]
            filtered = time.perf_counter()
            labels, scores = state.filter.keyframe(plan, result.labels, result.scores, result.class_scores, vocabulary)
            timing = dict(result.timing)
            timing["filter"] = 1000.0 * (time.perf_counter() - filtered)
            state.template = result
            out[i] = VideoResult.from_result(
                result,
                labels=labels,
                scores=scores,
                timing=timing,
                keyframe=True,
                reason=plan.reason,
                confidence=None if plan.motion is None else plan.motion.confidence,
                stream=streams[i],
                class_scores=None,
            )
        share = (planned - start) / max(1, len(frames))
        for i, plan in enumerate(plans):
            if plan.keyframe:
                continue
            state = states[i]
            moved = time.perf_counter()
            labels, scores = state.filter.propagate(plan)
            template = state.template
            assert template is not None and plan.motion is not None
            flow_ms = plan.motion.ms
            propagate_ms = 1000.0 * (time.perf_counter() - moved)
            out[i] = VideoResult(
                labels,
                scores,
                list(template.class_names),
                self.color_order,
                image=frames[i],
                timing={"flow": flow_ms, "propagate": propagate_ms, "total": 1000.0 * share + propagate_ms},
                banner=template.banner,
                backend=template.backend,
                inference=template.inference,
                keyframe=False,
                reason="",
                confidence=plan.motion.confidence,
                stream=streams[i],
            )
        return [result for result in out if result is not None]

    @staticmethod
    def _checked(frame: Any) -> np.ndarray:
        """A frame as the Engine takes it (``[H, W, 3]`` uint8; a grey ``[H, W]`` / ``[H, W, 1]`` frame expanded to 3
        channels, an alpha channel dropped), refused with the Engine's own one-line reason otherwise."""
        from zsseg_rt.pipeline.preprocess import check_image

        _, _, channels = check_image(frame)  # TypeError / ValueError: what was expected, what was given
        if frame.ndim == 2:
            frame = frame[:, :, None]
        if channels == 1:
            frame = np.repeat(frame, 3, axis=2)
        elif channels == 4:
            frame = frame[:, :, :3]  # the colour channels, in the frame's own order (color_order)
        return np.ascontiguousarray(frame)  # a crop of a larger image is a view: OpenCV wants rows in one block

    def _engine_call(self, frames: List[np.ndarray], scores: bool) -> List[Result]:
        order = {} if self.color_order == "bgr" else {"color_order": self.color_order}  # an engine-like callable
        if scores:
            return list(self.engine.segment_with_class_scores(frames, self.options.score_stride, **order))
        return list(self.engine(frames, **order))


def _check_class_scores(pipeline: Any) -> None:
    """Refuse ``stabilize`` up front for an Engine pipeline without per-class scores (ClassScoresUnavailable)."""
    from zsseg_rt.pipeline.class_scores import ClassScoresUnavailable, check_available

    if not getattr(pipeline, "class_scores", False):
        raise ClassScoresUnavailable(
            f"stabilize needs per-class scores, which the {pipeline.kind} pipeline does not give: use keyframes "
            "without stabilize, or a windowed bundle"
        )
    if getattr(pipeline, "postprocessor", None) is not None:
        check_available(pipeline.postprocessor)
