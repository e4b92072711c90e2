"""Score calibration, window merging and the final argmax, on top of the native ops (no torch)."""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import numpy as np

from zsseg_rt import ops

from .preprocess import Window


def _check_logits(logits: np.ndarray) -> np.ndarray:
    if not isinstance(logits, np.ndarray) or logits.ndim != 4:
        shape = getattr(logits, "shape", None)
        raise ValueError(f"logits must be a numpy array [B, C, h, w], got {type(logits).__name__} {shape}")
    return np.ascontiguousarray(logits, dtype=np.float32)


def calibrated_window_scores(
    logits: np.ndarray,
    head_size: Tuple[int, int],
    window_size: Tuple[int, int],
    class_bias: Optional[np.ndarray],
    valid: Optional[Tuple[int, int, int, int]] = None,
) -> np.ndarray:
    """Official per-window scores: logits -> bilinear to ``head_size`` -> sigmoid -> minus bias -> window size.

    ZegCLIP's head always resizes its attention logits to ``img_size`` (512) and calibrates there; mmseg then
    resizes the calibrated scores to the window's own size (a no-op for full 512x512 windows).

    Args:
        logits: ``[B, C, h, w]`` float32 mask logits of one window.
        head_size: ``(Hh, Wh)`` the size the head upsamples to (the model's image size).
        window_size: ``(Hw, Ww)`` the window's size in the rescaled image.
        class_bias: ``[C]`` subtracted after the sigmoid (0.1 on seen classes, inductive), or None.
        valid: ``(top, left, height, width)`` valid logit region when the window was padded, or None.
    Returns:
        ``[B, C, Hw, Ww]`` float32 calibrated scores.
    """
    logits = _check_logits(logits)
    scores = ops.upsample(logits, tuple(head_size), crop=valid)
    scores = 1.0 / (1.0 + np.exp(-scores, dtype=np.float32))
    if class_bias is not None:
        scores -= np.asarray(class_bias, dtype=np.float32)[None, :, None, None]
    if tuple(window_size) != tuple(head_size):
        scores = ops.upsample(np.ascontiguousarray(scores, dtype=np.float32), tuple(window_size))
    return scores


def merge_windows(
    window_scores: Sequence[np.ndarray], windows: Sequence[Window], size: Tuple[int, int]
) -> np.ndarray:
    """Average overlapping window scores into one ``[B, C, H, W]`` map (mmseg ``slide_inference``)."""
    if len(window_scores) != len(windows) or not windows:
        raise ValueError(f"need one score map per window, got {len(window_scores)} maps for {len(windows)} windows")
    batch, classes = window_scores[0].shape[:2]
    total = np.zeros((batch, classes, size[0], size[1]), dtype=np.float32)
    count = np.zeros((size[0], size[1]), dtype=np.float32)
    for scores, win in zip(window_scores, windows):
        total[:, :, win.y1 : win.y2, win.x1 : win.x2] += scores
        count[win.y1 : win.y2, win.x1 : win.x2] += 1.0
    if (count == 0).any():
        raise ValueError("the windows do not cover the whole image")
    total /= count
    return total


def finalize_scores(scores: np.ndarray, size: Tuple[int, int]) -> Tuple[np.ndarray, np.ndarray]:
    """Bilinear resize of calibrated scores to the original ``size`` fused with the argmax over classes.

    Returns:
        ``labels [B, H, W]`` int32 and ``scores [B, H, W]`` float32 (the winning calibrated score).
    """
    return ops.segment(np.ascontiguousarray(scores, dtype=np.float32), tuple(size), None, sigmoid=False)


def segment_fast(
    logits: np.ndarray,
    size: Tuple[int, int],
    class_bias: Optional[np.ndarray],
    valid: Optional[Tuple[int, int, int, int]] = None,
) -> Tuple[np.ndarray, np.ndarray]:
    """Fused fast path: logits straight to ``size``, sigmoid, bias, argmax, with no ``[B, C, H, W]`` buffer.

    Not the official order (which calibrates at 512 and resizes the scores), so labels can differ at a few
    boundary pixels; use it when speed/memory matter more than bit-parity with the official code.
    """
    logits = _check_logits(logits)
    return ops.segment(logits, tuple(size), class_bias, sigmoid=True, crop=valid)
