"""Per-class scores at a low resolution, for filtering and propagating labels along a video (``zsseg_rt.stream``).

A frame's result holds only the winning class and its score per pixel; a temporal filter needs every class's score
to blend one frame with the next. Full-resolution ``[C, H, W]`` maps cost C times a frame's pixels to build, keep
and warp (27 classes at 768x576: 48 MB a frame); the scores are smooth at that size anyway, since they come from the
model's patch grid (a 512 px window has a 32x32 grid: one value per 16 px of the rescaled image), bilinearly resized.
So the per-class state is kept at ``1/stride`` of the frame (``stride`` 4: 4.5 state pixels per grid cell at 768x576,
27 x 144 x 192 floats, 3 MB), in the frame's coordinates, and turned into labels the way a frame's own scores are:
bilinear to the frame's size, argmax (:meth:`ClassScores.finalize`, the fused ``ops.segment``).

The scores are the post-processing's own, before the argmax (:func:`window_class_scores`): ``"sigmoid"``: the
calibrated window scores averaged over windows (the official order up to the last resize); ``"softmax"``: the
window-averaged logits, ``* logit_scale``, softmax (each class's max over its names with synonyms), minus the class
bias; ``"maps"``: the averaged class maps. Each is reduced to the state size with an area average (the mean of the
full-resolution values a state pixel covers). PAMR and the area filter need the full-resolution map of a frame and
are refused (:class:`ClassScoresUnavailable`).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Optional, Sequence, Tuple

import numpy as np

from zsseg_rt import ops

from . import postprocess as post
from .postprocessor import MAPS, Postprocessor
from .preprocess import Window

__all__ = [
    "ClassScores",
    "ClassScoresUnavailable",
    "check_available",
    "state_size",
    "window_class_scores",
    "whole_class_scores",
]

Size = Tuple[int, int]


class ClassScoresUnavailable(ValueError):
    """The post-processing cannot give per-class scores (PAMR, the area filter, a pipeline without them)."""


def state_size(output_size: Size, stride: int) -> Size:
    """The per-class state's ``(h, w)`` for a frame of ``output_size`` (H, W): ``ceil(H / stride), ceil(W / stride)``."""
    if int(stride) < 1:
        raise ValueError(f"the class-score stride must be >= 1, got {stride}")
    return max(1, math.ceil(int(output_size[0]) / int(stride))), max(1, math.ceil(int(output_size[1]) / int(stride)))


@dataclasses.dataclass(frozen=True)
class ClassScores:
    """A frame's per-class scores at a low resolution and how they become labels.

    Attributes:
        scores: ``[C, h, w]`` float32, the scores of every class the labels index (background label first where the
            bundle's head paints one), in the frame's coordinates at ``1/stride`` of its size.
        output_size: ``(H, W)`` of the frame.
        background_threshold: softmax post-processing: pixels whose winning score is below it get
            ``background_index`` (as the frame's own labels); None: no threshold.
        background_index: see ``background_threshold``.
    """

    scores: np.ndarray
    output_size: Size
    background_threshold: Optional[float] = None
    background_index: int = 0

    def finalize(self, scores: Optional[np.ndarray] = None) -> Tuple[np.ndarray, np.ndarray]:
        """Labels ``[H, W]`` int32 and winning scores ``[H, W]`` float32 of ``scores`` (default: the frame's own;
        a filtered or warped ``[C, h, w]`` state of the same shape otherwise): bilinear to the frame's size fused
        with the argmax (``ops.segment``), then the background threshold."""
        values = self.scores if scores is None else scores
        if values.shape != self.scores.shape:
            raise ValueError(f"class scores must have shape {list(self.scores.shape)}, got {list(values.shape)}")
        labels, winning = ops.segment(
            np.ascontiguousarray(values[None], dtype=np.float32), tuple(self.output_size), None, sigmoid=False
        )
        labels, winning = labels[0], winning[0]
        if self.background_threshold is not None:
            labels = np.where(winning < np.float32(self.background_threshold), np.int32(self.background_index), labels)
        return np.ascontiguousarray(labels, dtype=np.int32), winning


def _area_resize(maps: np.ndarray, size: Size) -> np.ndarray:
    """``[C, H, W]`` float32 -> ``[C, h, w]`` by area averaging (OpenCV ``INTER_AREA``, four channels a call: its
    limit for a scale that is not an integer); where ``size`` is larger along either axis, OpenCV's linear
    coefficients instead (what ``INTER_AREA`` does when it enlarges; ``ops.class_state`` does the same)."""
    import cv2

    channels = maps.shape[0]
    out = np.empty((channels, int(size[0]), int(size[1])), dtype=np.float32)
    for start in range(0, channels, 4):
        chunk = np.ascontiguousarray(maps[start : start + 4].transpose(1, 2, 0))
        small = cv2.resize(chunk, (int(size[1]), int(size[0])), interpolation=cv2.INTER_AREA)
        out[start : start + 4] = small.reshape(size[0], size[1], -1).transpose(2, 0, 1)
    return out


def check_available(postprocessor: Postprocessor) -> None:
    """Raise :class:`ClassScoresUnavailable` when ``postprocessor`` cannot give per-class scores (PAMR, area filter)."""
    if postprocessor.pamr_iterations:
        raise ClassScoresUnavailable(
            "this bundle's post-processing refines the full-resolution scores with PAMR, which a low-resolution "
            "per-class state cannot follow: video filtering (stabilize / keyframes) is not available for it"
        )
    if postprocessor.area_threshold is not None:
        raise ClassScoresUnavailable(
            "this bundle's post-processing drops classes by their area in the whole frame (area_threshold), which a "
            "per-pixel filter cannot follow: video filtering (stabilize / keyframes) is not available for it"
        )


def _to_state(postprocessor: Postprocessor, merged: np.ndarray, output_size: Size, stride: int, bias) -> ClassScores:
    """Window-averaged values ``[1, C', H', W']`` -> :class:`ClassScores` at ``state_size(output_size, stride)``."""
    small = _area_resize(merged[0], state_size(output_size, stride))
    threshold = None
    if postprocessor.activation == "softmax":
        small *= np.float32(postprocessor.logit_scale)
        probs = post._softmax_dense(small[None])
        class_of = None if postprocessor.class_of is None else np.asarray(postprocessor.class_of, dtype=np.int32)
        small = post._max_over_names(probs, class_of)[0]
        if bias is not None:
            small -= np.asarray(bias, dtype=np.float32).reshape(-1, 1, 1)
        threshold = postprocessor.background_threshold
    return ClassScores(
        np.ascontiguousarray(small, dtype=np.float32),
        (int(output_size[0]), int(output_size[1])),
        threshold,
        int(postprocessor.background_index),
    )


def window_class_scores(
    postprocessor: Postprocessor,
    logits: np.ndarray,
    windows: Sequence[Window],
    scaled_size: Size,
    output_size: Size,
    stride: int,
    class_bias: Optional[np.ndarray] = None,
) -> ClassScores:
    """The per-class scores of one frame from its window logits ``[n, C, h, w]`` (the arguments of
    ``Postprocessor.__call__``), at ``1/stride`` of ``output_size``. Builds the window average ``[C, H', W']`` at the
    rescaled size once (as the unfused official order does), then area-averages it to the state size.

    Raises:
        ClassScoresUnavailable: PAMR or an area threshold.
    """
    check_available(postprocessor)
    scaled = (int(scaled_size[0]), int(scaled_size[1]))
    if postprocessor.activation == MAPS:
        maps = np.ascontiguousarray(logits, dtype=np.float32)
        parts = [maps[i : i + 1, :, : w.y2 - w.y1, : w.x2 - w.x1] for i, w in enumerate(windows)]
        merged = post.merge_windows(parts, windows, scaled)
    elif postprocessor.activation == "softmax":
        merged = postprocessor._merged(logits, windows, postprocessor.head_size, "softmax", None, scaled)
    else:
        merged = postprocessor._merged(logits, windows, postprocessor.head_size, "sigmoid", class_bias, scaled)
    return _to_state(postprocessor, merged, output_size, stride, class_bias)


def whole_class_scores(
    postprocessor: Postprocessor,
    logits: np.ndarray,
    scaled_size: Size,
    output_size: Size,
    logits_to: str,
    stride: int,
    class_bias: Optional[np.ndarray] = None,
) -> ClassScores:
    """:func:`window_class_scores` of a whole-image pass (``logits [1, C, h, w]`` on the patch grid; the arguments
    of ``Postprocessor.whole``): the grid logits bilinear to the rescaled size (``logits_to="rescaled"``) or
    straight to the state size (``"original"``), then as for windows."""
    check_available(postprocessor)
    logits = np.ascontiguousarray(logits, dtype=np.float32)
    if logits_to == "original":
        merged = ops.upsample(logits, state_size(output_size, stride))
        return _to_state(postprocessor, merged, output_size, stride, class_bias)
    scaled = (int(scaled_size[0]), int(scaled_size[1]))
    merged = ops.upsample(logits, scaled)
    return _to_state(postprocessor, merged, output_size, stride, class_bias)
