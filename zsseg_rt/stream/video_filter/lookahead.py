"""Look-ahead for recorded video (``--stabilize-delay N``, ``VideoSegmenter(stabilize_delay=N)``): each frame's
labels come out when ``N`` more frames have come in, and use them. An option for files and folders, where nothing
waits for the labels; a live camera cannot wait, and is refused (``zsseg_rt.stream.loop.session_options``). Not the
default: the causal filter (``--stabilize``) is.

Per frame ``k`` (docs/video.md, "Look-ahead"):

1. The causal filter runs as ``--stabilize`` runs it (``temporal.StreamFilter``): its state ``F_k`` (the past
   blended into the frame's scores ``S_k``) and its hysteresis' noise.
2. When frame ``k + 1`` comes in, the flow from ``k`` to ``k + 1`` (DIS, as the causal flow, the other way) with its
   validity and the blend's doubt (a second flow per frame: the look-ahead's cost).
3. When frame ``k + N`` has come in, the future is blended backwards the way the causal filter blends the past:
   ``G = S_{k+N}``, then for ``j = k + N - 1`` down to ``k``: ``G = P + w_j (S_j - P)`` with ``P = G`` warped along
   the flow from ``j`` to ``j + 1`` and ``w_j = blend + (1 - blend) doubt_j`` where that flow is valid, ``G = S_j``
   elsewhere (``ops.temporal_blend``, the causal blend's op); never across a scene cut or a reset.
4. The frame's state is the mean of the two, ``(F_k + G_k) / 2``: the past and the future weighted alike (``S_k``
   counts in both). Labels: its argmax at the frame's size, with the causal hysteresis against the previous
   output's labels (warped along the flow, the noise measured by the causal filter).

Each frame's labels thus depend on ``N`` frames after it: a change that lasts fewer frames than the future's
weight can carry is smoothed away, a real change shows on time (not ``1/w`` frames late as a causal blend would
show it, and not early either: its frames' own scores dominate). The end of a stream emits the last ``N`` frames
with what future there is (``flush``).
"""

from __future__ import annotations

import collections
import dataclasses
from typing import Any, Deque, List, Optional, Tuple

import numpy as np

from .temporal import HOLD_DOUBT, FlowError, Motion, Plan, StreamFilter, TemporalOptions, _resize_mask, resize_flow

__all__ = ["LookAheadFilter"]


@dataclasses.dataclass
class _Entry:
    """A frame waiting for its future: what the caller hands back with its labels, its prepared grey frame, its own
    class scores ``S`` and the causal state ``F`` (``[C, h, w]``), the causal hysteresis' ``(noise, measured)``, its
    motion to the previous frame (None after a reset: nothing before it counts) and, once the next frame came in,
    the flow to it at the state's size ``(flow, valid, doubt)`` (None: not known, or it failed)."""

    payload: Any
    small: np.ndarray
    current: np.ndarray
    state: np.ndarray
    hold: Optional[Tuple[np.ndarray, np.ndarray]]
    motion: Optional[Motion]
    class_scores: Any
    forward: Optional[Tuple[np.ndarray, np.ndarray, np.ndarray]] = None


class LookAheadFilter:
    """The stabilising filter with ``delay`` frames of look-ahead, on the host (module docstring). ``plan`` a frame,
    then ``push`` the Engine's result of it (every frame is a keyframe): the frames whose future is complete come
    back, oldest first, as ``(payload, labels [H, W] int32, scores [H, W] float32)``; ``flush`` gives the rest."""

    def __init__(self, options: TemporalOptions, delay: int, flow: Any = None):
        if isinstance(delay, bool) or not isinstance(delay, int) or delay < 1:
            raise ValueError(f"temporal option stabilize_delay: expected a whole number >= 1, got {delay!r}")
        if not options.stabilize or options.keyframe_every != 1:
            raise ValueError("stabilize_delay needs stabilize on every frame (no keyframe_every, no adaptive mode)")
        self.options, self.delay = options, int(delay)
        self.inner = StreamFilter(options, flow)
        self.pending: Deque[_Entry] = collections.deque()
        self.previous_labels: Optional[np.ndarray] = None  # the last output's labels (the hysteresis' anchor)

    @property
    def flow(self):
        return self.inner.flow

    def reset(self) -> None:
        """The next frame starts afresh (the frames still waiting keep their past, and their future up to it)."""
        self.inner.reset()

    def plan(self, frame: np.ndarray, vocabulary: Any, color_order: str = "bgr") -> Plan:
        return self.inner.plan(frame, vocabulary, color_order)

    def stats(self):
        return self.inner.stats()

    def push(self, plan: Plan, labels, scores, class_scores, vocabulary, payload: Any) -> List[Tuple[Any, Any, Any]]:
        """One frame's Engine result (its ``class_scores`` needed): the frames now complete, oldest first."""
        self.inner.keyframe(plan, labels, scores, class_scores, vocabulary)
        anchor = self.inner.anchor
        assert anchor is not None and anchor.state is not None
        fresh = self.inner.last_noise is None  # the causal filter started afresh on this frame
        current = np.ascontiguousarray(class_scores.scores, dtype=np.float32)
        entry = _Entry(payload, plan.small, current, anchor.state, self.inner.last_noise,
                       None if fresh else plan.motion, class_scores)  # fmt: skip
        if self.pending and not fresh:
            self.pending[-1].forward = self._forward(self.pending[-1].small, plan.small, current.shape[1:])
        self.pending.append(entry)
        out = []
        while len(self.pending) > self.delay:
            out.append(self._emit())
        return out

    def flush(self) -> List[Tuple[Any, Any, Any]]:
        """The frames still waiting (the end of the stream), oldest first, with the future there is."""
        out = []
        while self.pending:
            out.append(self._emit())
        return out

    def _forward(self, small: np.ndarray, following: np.ndarray, size) -> Optional[Tuple[Any, Any, Any]]:
        """The flow from a frame to the next at the state's ``size``, its validity and the blend's doubt (None when
        the flow fails: the future is then not carried back across that pair)."""
        estimator = self.inner.flow
        try:
            flow = estimator.flow(small, following)
        except FlowError:
            return None
        valid, error = estimator.compare(small, following, flow)
        size = (int(size[0]), int(size[1]))
        motion = Motion(flow, valid, 0.0, 0.0, 0.0, error)
        return (
            np.ascontiguousarray(resize_flow(flow, size)),
            _resize_mask(valid, size).astype(np.uint8),
            self.inner._doubt(motion, size),
        )

    def _future(self, entry: _Entry) -> np.ndarray:
        """``G``: the frames after ``entry`` (up to the next reset) blended backwards into ``entry``'s scores."""
        from zsseg_rt import ops

        chain = [entry]
        for following in self.pending:
            if following.motion is None:  # a scene cut, a reset: the future stops before it
                break
            chain.append(following)
        future = chain[-1].current
        zeros = np.zeros(future.shape[1:], np.float32)
        for item in reversed(chain[:-1]):
            if item.forward is None:
                future = item.current
                continue
            flow, valid, doubt = item.forward
            moved = ops.warp(future[None], flow[None])[0]
            future = ops.temporal_blend(item.current, moved, zeros, doubt, valid, self.options.blend, HOLD_DOUBT)[0]
        return future

    def _emit(self) -> Tuple[Any, Any, Any]:
        from zsseg_rt import ops

        entry = self.pending.popleft()
        state = entry.state
        if self.pending and self.pending[0].motion is not None:
            state = ((entry.state + self._future(entry)) * np.float32(0.5)).astype(np.float32)
        labels, scores = self.inner._finalize(entry.class_scores, state)
        labels, scores = np.array(labels), np.array(scores)
        motion, previous = entry.motion, self.previous_labels
        hysteresis = self.options.hysteresis
        if motion is not None and previous is not None and entry.hold is not None and hysteresis > 0:
            import cv2

            size = labels.shape
            flow = np.ascontiguousarray(resize_flow(motion.flow, size))
            valid = cv2.resize(motion.valid.astype(np.uint8), (size[1], size[0]), interpolation=cv2.INTER_NEAREST)
            noise, measured = entry.hold
            ops.temporal_hold(labels, scores, state, noise, previous, flow, valid, hysteresis, measured)
        self.previous_labels = labels
        return entry.payload, labels, scores
