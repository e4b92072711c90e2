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

from zsseg_rt.options import ENGINE_OPTIONS
from zsseg_rt.runtime.result import Result, mark_unknown

from .filter_arrays import DeviceArrays, HostArrays
from .live_window import LoopCheck, live_window_reason, measure_window
from .lookahead import LookAheadFilter
from .temporal import FlowEstimator, StreamFilter, TemporalOptions

__all__ = ["VideoResult", "VideoSegmenter"]
_WARM_UP = -(2**62)  # the stream of --live's warm-up (live_window.py): no caller's, forgotten after it
LOOP_CHECK_FRAMES = 8  # --live on the exact CPU path: the loop's rate judged over spans of at least this many frames
DEVICE_SETTINGS = tuple(ENGINE_OPTIONS["device_pipeline"].values() or ())  # its row's values (zsseg_rt.options)


@dataclasses.dataclass(repr=False)
class VideoResult(Result):
    """A :class:`~zsseg_rt.Result` of a video frame: ``keyframe`` (the encoder ran on it), ``reason`` (why it is a
    keyframe: "first", "size", "vocabulary", "flow failed", "scene cut", "low confidence", "interval"; "" for a
    frame propagated from the last keyframe), ``confidence`` (the share of the frame whose flow to the anchor is
    valid; None when no flow was computed) and ``stream``. Propagated frames carry the keyframe's ``banner``,
    ``backend`` and ``inference``; their ``timing`` has "flow", "propagate" and "total". ``index``: the frame's number
    in its stream, from 0 (with ``stabilize_delay`` the result of a call is an earlier frame's). On the device path
    (``device``) ``scores`` is None: the filter's scores stay on the device, the labels come down."""

    keyframe: bool = True
    reason: str = "first"
    confidence: Optional[float] = None
    stream: int = 0
    index: int = -1

    @classmethod
    def from_result(cls, result: Result, **fields: Any) -> "VideoResult":
        values = {field.name: getattr(result, field.name) for field in dataclasses.fields(Result)}
        values.update(fields)
        return cls(**values)


def _unknown_below(engine: Any) -> Optional[float]:
    """The Engine's unknown threshold (``Engine(unknown_below=P)``), or None: off (or not an Engine)."""
    value = getattr(getattr(engine, "options", None), "unknown_below", None)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _preset_of(engine: Any, preset: Any) -> Any:
    """The segmenter's preset: ``preset`` (the Engine must have been opened with it: its Engine options are set then),
    else the Engine's, else None."""
    opened = getattr(engine, "preset", None)
    if preset is None:
        return opened
    from zsseg_rt.options import preset_named

    preset = preset_named(preset)
    if opened is not preset:
        raise ValueError(
            f"VideoSegmenter(preset={preset.name!r}): the Engine was opened "
            + (f"with preset {opened.name!r}" if opened is not None else "without it")
            + f" (its Engine options are set when the Engine opens): Engine(bundle, preset={preset.name!r}), then "
            "VideoSegmenter(engine) takes it from the Engine"
        )
    return preset


class _Stream:
    def __init__(self, options: TemporalOptions, flow_function: Any, delay: int, memory: Any):
        flow = FlowEstimator(options.flow_preset, options.flow_stride, options.photometric_tolerance, flow_function)
        self.arrays = DeviceArrays(memory) if memory is not None else HostArrays()
        if delay:
            self.filter: Any = LookAheadFilter(options, delay, flow)
        else:
            self.filter = StreamFilter(options, flow, self.arrays)
        self.template: Optional[Result] = None  # the last keyframe's result (class names, banner, backend)
        self.frames = 0  # frames seen (the next frame's index)


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
        stabilize_delay: look-ahead for recorded video (implies ``stabilize``): each frame's labels use the ``N``
            frames after it and come out when they have come in (``lookahead.py``); a call then returns an earlier
            frame's result (None while the first ``N`` frames come in) and :meth:`flush` the last ones. 0: causal.
        device: where the filter runs: "auto" (default) on the Engine's device pipeline when it has one (a GPU:
            the class scores made there, the state kept there, the labels copied down; ``scores`` None), True
            (required: refused with the reason otherwise), False (the host: NumPy and the ops' CPU kernels).
            Keyframes then go through the device one frame at a time. The look-ahead runs on the host.
        options: the other :class:`~zsseg_rt.stream.video_filter.temporal.TemporalOptions` (``blend``, ``hysteresis``,
            ``score_stride``, ``flow_stride``, ``flow_preset``, ``photometric_tolerance``, ``min_confidence``,
            ``cut_confidence``), and ``flow_function`` (tests: replaces the DIS flow).
        preset: a :class:`~zsseg_rt.options.Preset` (or its name), e.g. ``zsseg_rt.options.LIVE``: its keywords
            (``keyframe_every``, ``flow_preset``, ``flow_stride``) where none is given here. None (default): the
            Engine's (``Engine(bundle, preset=LIVE)``), so one preset object sets both; a preset the Engine was not
            opened with is refused (its Engine options are set when the Engine opens). :meth:`trades` says what it
            trades.

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
        stabilize_delay: int = 0,
        device: Any = "auto",
        preset: Any = None,
        **options: Any,
    ):
        self.preset = _preset_of(engine, preset)
        if self.preset is not None:  # its keywords where none is given here
            video = self.preset.video_options()
            every = video.pop("keyframe_every", None)
            keyframe_every = every if keyframe_every is None else keyframe_every
            options = {**video, **options}
        if color_order not in ("bgr", "rgb"):
            raise ValueError(f"color_order must be 'bgr' or 'rgb', got {color_order!r}")
        if isinstance(stabilize_delay, bool) or not isinstance(stabilize_delay, int) or stabilize_delay < 0:
            raise ValueError(f"stabilize_delay: expected a whole number >= 0, got {stabilize_delay!r}")
        if stabilize_delay and (adaptive or (keyframe_every or 1) != 1):
            raise ValueError("stabilize_delay runs the encoder on every frame: it does not combine with keyframes")
        if device not in DEVICE_SETTINGS:
            raise ValueError(f"device must be 'auto', True or False, got {device!r}")
        every = keyframe_every if keyframe_every is not None else (8 if adaptive else 1)
        self.options = TemporalOptions(
            stabilize=bool(stabilize or stabilize_delay), keyframe_every=every, adaptive=bool(adaptive), **options
        )
        if self.options.stabilize and hasattr(engine, "pipeline"):
            _check_class_scores(engine.pipeline)
        self.engine = engine
        self.color_order = color_order
        self.delay = int(stabilize_delay)
        self._memory = self._device_memory(device)
        self._flow_function = flow_function
        self._streams: Dict[int, _Stream] = {}
        self._lock = threading.Lock()
        self._choose_window = self.delay == 0 and live_window_reason(engine, self.preset) is None

    def _device_memory(self, device: Any) -> Any:
        """The device pipeline's memory the filter runs on (None: the host), as ``device`` asks."""
        if device is False or not self.options.active:
            return None
        from zsseg_rt.runtime.device.device_video import device_unavailable

        reason = device_unavailable(self.engine)
        if reason is None and self.delay:
            reason = "the look-ahead (stabilize_delay) runs on the host"
        if reason is None and _unknown_below(self.engine) is not None:
            reason = "the unknown threshold (unknown_below) reads each frame's scores on the host"
        if reason is not None:
            if device is True:
                raise ValueError(f"device=True is not possible: {reason}")
            return None
        return self.engine.pipeline.device.memory

    def trades(self) -> Optional[Dict[str, Any]]:
        """What this segmenter's preset trades, as it runs (``zsseg_rt.options.Preset.trades``: the one window of WxH
        a frame is fitted in, the keyframe interval, the flow's preset and stride; ``"line"``: in one sentence), or
        None without a preset. ``zsseg camera --live`` prints the line at its start and writes the dict into
        ``--stats-json`` (``"preset"``)."""
        if self.preset is None:
            return None
        scale = getattr(getattr(self.engine, "pipeline", None), "test_scale", None)
        window = (int(scale[1]), int(scale[0])) if scale and scale[0] == scale[1] else None  # one window: WxH
        every = self.options.keyframe_every
        trades = self.preset.trades(
            window, every, self.options.flow_preset, self.options.flow_stride, self.options.adaptive
        )
        if self.window_choice is not None:  # --live's window, measured on the first frame (live_window.py)
            trades["window_choice"] = self.window_choice.as_dict()
        return trades

    @property
    def on_device(self) -> bool:
        """Whether the filter runs on the Engine's device pipeline (``device``)."""
        return self._memory is not None

    # ---- the Engine's face (the camera loop applies vocabularies through it) --------------------------------------
    @property
    def class_names(self) -> List[str]:
        return list(getattr(self.engine, "class_names", []))

    def set_classes(self, names, *args: Any, **kwargs: Any) -> None:
        """``engine.set_classes``; the next frame of every stream is a keyframe that starts afresh."""
        self.engine.set_classes(names, *args, **kwargs)

    def close(self) -> None:
        """Free what the streams hold (on a device pipeline: each stream's device and pinned host buffers, once the
        device has run what uses them); the next frame of a stream starts afresh. Also ``with VideoSegmenter(...)``."""
        with self._lock:
            streams = list(self._streams.values())
            self._streams.clear()
        for state in streams:
            close = getattr(state.arrays, "close", None)
            if close is not None:
                close()

    def __enter__(self) -> "VideoSegmenter":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def reset(self, stream: Optional[int] = None) -> None:
        """Forget the past of one stream (or of all): its next frame is a keyframe that starts afresh."""
        with self._lock:
            for index, state in self._streams.items():
                if stream is None or index == stream:
                    state.filter.reset()

    def flush(self, stream: Optional[int] = None) -> List[VideoResult]:
        """The results still held back by ``stabilize_delay`` (the end of a stream: its last frames, with the future
        there is), of one stream or of all; nothing without a delay."""
        with self._lock:
            out: List[VideoResult] = []
            for index, state in self._streams.items():
                if self.delay and (stream is None or index == stream):
                    out.extend(self._delayed_result(state, index, item) for item in state.filter.flush())
            return self._unknown(out)

    def stats(self, stream: int = 0) -> Dict[str, Any]:
        """A stream's keyframes (by reason), propagated frames and the flow's mean cost in ms. Does not wait for a
        frame being segmented (the camera loop's writer threads read it while inference runs)."""
        state = self._streams.get(stream)
        return state.filter.stats() if state is not None else {}

    # ---- frames ---------------------------------------------------------------------------------------------------
    def __call__(self, frame: np.ndarray, stream: int = 0) -> Optional[VideoResult]:
        """One frame (``[H, W, 3]`` uint8 in ``color_order``; grey ``[H, W]`` and ``[H, W, 4]`` with alpha are taken
        as the Engine takes them) of ``stream``: a :class:`VideoResult` (with ``stabilize_delay``: the frame
        ``stabilize_delay`` before it, or None while the first frames come in)."""
        return self.segment_streams([stream], [frame])[0]

    def segment_streams(self, streams: Sequence[int], frames: Sequence[np.ndarray]) -> List[Any]:
        """One frame of each of ``streams`` (distinct indices): the keyframes among them go through the Engine in one
        batched call (on the device path: one by one), the others are propagated. Returns one result per frame, in
        order (with ``stabilize_delay``: an earlier frame's, or None)."""
        if len(streams) != len(frames) or len(set(streams)) != len(streams):
            raise ValueError(
                f"need one frame per distinct stream, got streams {list(streams)} for {len(frames)} frames"
            )
        with self._lock:
            return self._unknown(self._segment(list(streams), list(frames)))

    def _unknown(self, results: List[Any]) -> List[Any]:
        """The Engine's unknown threshold (``unknown_below``) on the filter's outputs too (a stabilised keyframe's
        labels come from its blended scores, a propagated frame's are warped with its scores): a pixel whose score
        is below it is unknown, as in the Engine's own results."""
        threshold = _unknown_below(self.engine)
        if threshold is None or not self.options.active:
            return results  # the filter off: the Engine's results, marked by the Engine
        for result in results:
            if result is not None and result.scores is not None:
                result.labels = np.array(result.labels, dtype=np.int32)  # a copy: the filter's anchor stays its own
                mark_unknown(result.labels, result.scores, threshold, len(result.class_names))
                result.unknown_below = threshold
        return results

    def in_flight(self, depth: int = 2) -> Any:
        """Frames of this segmenter in flight (``Engine.in_flight``): ``submit(frame, stream=0)`` returns at once,
        ``result()`` gives the oldest frame's :class:`VideoResult`, as :meth:`segment_streams` would; the stream loop
        (``MultiStreamRunner``) uses it. None where frames cannot be in flight: an active filter (each keyframe's
        result feeds the next frame's), or an engine without ``in_flight``."""
        opener = getattr(self.engine, "in_flight", None)
        if self.options.active or not callable(opener) or self._choose_window:  # (the window's warm-up first)
            return None
        return _VideoFlight(opener(depth, self.color_order))

    def stream(self, frames: Any, stream: int = 0, in_flight: int = 2) -> Any:
        """The :class:`VideoResult` of each frame of an iterable, in order (a generator): with the filter off, up to
        ``in_flight`` frames in flight on a GPU's device pipeline (:meth:`in_flight`); with it on, one frame at a
        time (the filter is causal), then what ``stabilize_delay`` still holds (:meth:`flush`)."""
        flight = self.in_flight(in_flight)
        if flight is None:
            for frame in frames:
                result = self(frame, stream)
                if result is not None:
                    yield result
            yield from self.flush(stream)
            return
        with flight:
            for frame in frames:
                flight.submit(frame, stream=stream)
                if len(flight) >= flight.depth:
                    yield flight.result()
            while len(flight):
                yield flight.result()

    def _vocabulary(self) -> Any:
        """A token that changes whenever the Engine's vocabulary does (a new snapshot per ``set_classes``)."""
        return getattr(self.engine, "vocabulary", None) or tuple(self.class_names)

    def _segment(self, streams: List[int], frames: List[np.ndarray]) -> List[Any]:
        if self._choose_window:  # --live on the exact CPU path: the window from a warm-up on the first frame
            self._choose_window = False
            self._measure_window(self._checked(frames[0]))
        check = getattr(getattr(self.engine, "pipeline", None), "loop_check", None)
        if check is not None and streams and streams[0] != _WARM_UP:  # then the loop's own rate (LoopCheck)
            check.tick(self.engine.pipeline, streams, owner=self)
        start = time.perf_counter()
        if not self.options.active:
            results = self._engine_call(frames, scores=False)
            return [
                VideoResult.from_result(r, keyframe=True, reason="interval", stream=s) for r, s in zip(results, streams)
            ]
        frames = [self._checked(frame) for frame in frames]
        vocabulary = self._vocabulary()
        states = [self._state(s) for s in streams]
        plans = [state.filter.plan(frame, vocabulary, self.color_order) for state, frame in zip(states, frames)]
        indices = []
        for state in states:
            indices.append(state.frames)
            state.frames += 1
        planned = time.perf_counter()
        keys = [i for i, plan in enumerate(plans) if plan.keyframe]
        encoded = self._keyframes([frames[i] for i in keys], [states[i] for i in keys])
        vocabulary = self._vocabulary()  # the call used the vocabulary of now
        if self.delay:
            return [self._push(states[i], streams[i], plans[i], result, indices[i], vocabulary)
                    for i, result in zip(keys, encoded)]  # fmt: skip
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
                index=indices[i],
                class_scores=None,
            )
        share = (planned - start) / max(1, len(frames))
        for i, plan in enumerate(plans):
            if not plan.keyframe:
                out[i] = self._propagated(states[i], plan, frames[i], streams[i], indices[i], share)
        return [result for result in out if result is not None]

    def _state(self, stream: int) -> _Stream:
        state = self._streams.get(stream)
        if state is None:
            state = self._streams[stream] = _Stream(self.options, self._flow_function, self.delay, self._memory)
        return state

    def _keyframes(self, frames: List[np.ndarray], states: List[_Stream]) -> List[Result]:
        """The Engine's results of the keyframes: one batched call on the host; on the device path, each frame's
        results and class scores left in its stream's device buffers (``Engine.segment_on_device``)."""
        if not frames:
            return []
        stride = self.options.score_stride if self.options.stabilize else None
        if self._memory is None:
            return self._engine_call(frames, scores=self.options.stabilize)
        order = {} if self.color_order == "bgr" else {"color_order": self.color_order}
        return [self.engine.segment_on_device([frame], state.arrays, stride, **order)[0]
                for frame, state in zip(frames, states)]  # fmt: skip

    def _propagated(self, state: _Stream, plan: Any, frame: np.ndarray, stream: int, index: int, share: float):
        moved = time.perf_counter()
        labels, scores = state.filter.propagate(plan)
        template = state.template
        assert template is not None and plan.motion is not None
        propagate_ms = 1000.0 * (time.perf_counter() - moved)
        return VideoResult(
            labels,
            scores,
            list(template.class_names),
            self.color_order,
            image=frame,
            timing={"flow": plan.motion.ms, "propagate": propagate_ms, "total": 1000.0 * share + propagate_ms},
            banner=template.banner,
            backend=template.backend,
            inference=template.inference,
            object_min_area=template.object_min_area,
            max_objects=template.max_objects,
            keyframe=False,
            reason="",
            confidence=plan.motion.confidence,
            stream=stream,
            index=index,
        )

    def _push(self, state: _Stream, stream: int, plan: Any, result: Result, index: int, vocabulary: Any):
        """A frame into the look-ahead: the result of the frame ``delay`` before it, or None."""
        payload = (result, plan, index)
        ready = state.filter.push(plan, result.labels, result.scores, result.class_scores, vocabulary, payload)
        return self._delayed_result(state, stream, ready[0]) if ready else None

    def _delayed_result(self, state: _Stream, stream: int, item: Any) -> VideoResult:
        (result, plan, index), labels, scores = item
        return VideoResult.from_result(
            result,
            labels=labels,
            scores=scores,
            keyframe=True,
            reason=plan.reason,
            confidence=None if plan.motion is None else plan.motion.confidence,
            stream=stream,
            index=index,
            class_scores=None,
        )

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

    def _measure_window(self, frame: np.ndarray) -> None:
        """``live_window.measure_window`` on ``frame``: this segmenter's keyframe call, and the frame on a stream of
        the warm-up's own for a propagated frame (forgotten after)."""
        keyframe = lambda: self._engine_call([frame], scores=self.options.stabilize)  # noqa: E731
        try:
            choice = measure_window(
                self.engine, keyframe, lambda: self._segment([_WARM_UP], [frame]), self.options.keyframe_every
            )
        finally:
            self._streams.pop(_WARM_UP, None)
        if choice.met and not choice.unavailable:  # the loop's own rate checked over its first spans (LoopCheck)
            from zsseg_rt.runtime.pipelines.window import window_candidates

            from . import live_window

            span = max(LOOP_CHECK_FRAMES, 2 * self.options.keyframe_every)  # (kept on the pipeline, as the choice:
            # the Engine's next segmenters go on with it)
            self.engine.pipeline.loop_check = LoopCheck(
                choice, window_candidates(self.engine.pipeline.bundle_meta), span, live_window.CLOCK
            )

    @property
    def window_choice(self) -> Any:
        """``--live``'s window on the exact CPU path, chosen on the Engine's first live frame
        (``live_window.WindowChoice``), or None."""
        return getattr(getattr(self.engine, "pipeline", None), "window_choice", None)

    def _engine_call(self, frames: List[np.ndarray], scores: bool) -> List[Result]:
        order = {} if self.color_order == "bgr" else {"color_order": self.color_order}  # an engine-like callable
        if scores:
            return list(self.engine.segment_with_class_scores(frames, self.options.score_stride, **order))
        return list(self.engine(frames, **order))


class _VideoFlight:
    """``VideoSegmenter.in_flight``: the Engine's frames in flight, each result a :class:`VideoResult` of its stream
    (as the filter-off :meth:`VideoSegmenter.segment_streams` makes it)."""

    per_stream = True  # submit(frame, stream=...): the stream loop says which source a frame is of

    def __init__(self, flight: Any):
        self.flight = flight
        self.streams: List[int] = []

    depth = property(lambda self: self.flight.depth)
    lanes = property(lambda self: self.flight.lanes)
    why_synchronous = property(lambda self: self.flight.why_synchronous)

    def submit(self, frame: Any, stream: int = 0) -> int:
        number = self.flight.submit(frame)
        self.streams.append(stream)
        return number

    def result(self) -> VideoResult:
        result = self.flight.result()
        return VideoResult.from_result(result, keyframe=True, reason="interval", stream=self.streams.pop(0))

    def __len__(self) -> int:
        return len(self.flight)

    def close(self) -> None:
        self.streams.clear()
        self.flight.close()

    def __enter__(self) -> "_VideoFlight":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


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
