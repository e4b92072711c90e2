"""Score calibration, window merging and the final argmax, on top of the native ops (no torch)."""

from __future__ import annotations

from typing import Optional, Sequence, Tuple, Union

import numpy as np

from zsseg_rt import ops

from .preprocess import Window


def _check_logits(logits: np.ndarray) -> np.ndarray:
    if not isinstance(logits, np.ndarray) or logits.ndim != 4:
        shape = getattr(logits, "shape", None)
        raise ValueError(f"logits must be a numpy array [B, C, h, w], got {type(logits).__name__} {shape}")
    return np.ascontiguousarray(logits, dtype=np.float32)


def _bias_vector(class_bias: Optional[np.ndarray], drop_zero: bool = False) -> Optional[np.ndarray]:
    """``class_bias`` as the ops take it, contiguous float32 ``[C]``; None for None (and with ``drop_zero`` for an
    all-zero bias, which changes nothing)."""
    if class_bias is None:
        return None
    bias = np.ascontiguousarray(class_bias, dtype=np.float32).reshape(-1)
    return None if drop_zero and not bias.any() else bias


def _to_window_size(scores: np.ndarray, head_size: Tuple[int, int], window_size: Tuple[int, int]) -> np.ndarray:
    """Head-size window values bilinearly resized to the window's own size (nothing to do for a full window)."""
    if tuple(window_size) != tuple(head_size):
        scores = ops.upsample(np.ascontiguousarray(scores, dtype=np.float32), tuple(window_size))
    return scores


def _thresholded(
    labels: np.ndarray, scores: np.ndarray, background_threshold: Optional[float], background_index: int
) -> Tuple[np.ndarray, np.ndarray]:
    """Pixels whose winning score is below ``background_threshold`` labelled ``background_index``; int32 labels and
    float32 scores, contiguous."""
    if background_threshold is not None:
        labels = np.where(scores < np.float32(background_threshold), np.int32(background_index), labels)
    return np.ascontiguousarray(labels, dtype=np.int32), np.ascontiguousarray(scores, dtype=np.float32)


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
    # one native pass: bilinear resize, sigmoid and the per-class bias (no [B,C,H,W] temporaries)
    scores = ops.upsample(logits, tuple(head_size), crop=valid, sigmoid=True, class_bias=_bias_vector(class_bias))
    return _to_window_size(scores, head_size, window_size)


def merge_windows(window_scores: Sequence[np.ndarray], windows: Sequence[Window], size: Tuple[int, int]) -> np.ndarray:
    """Average overlapping window scores into one ``[B, C, H, W]`` map (mmseg ``slide_inference``)."""
    if len(window_scores) != len(windows) or not windows:
        raise ValueError(f"need one score map per window, got {len(window_scores)} maps for {len(windows)} windows")
    batch, classes = window_scores[0].shape[:2]
    if len(windows) == 1 and tuple(windows[0]) == (0, size[0], 0, size[1]):
        return window_scores[0]  # one window covering the image: the average is the window itself (no copy)
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


def segment_windows_exact(
    logits: np.ndarray,
    windows: Sequence[Window],
    head_size: Tuple[int, int],
    scaled_size: Tuple[int, int],
    output_size: Tuple[int, int],
    class_bias: Optional[np.ndarray],
) -> Tuple[np.ndarray, np.ndarray]:
    """The official exact sliding-window order for windows run at the head size (zero-padded when smaller):
    ``calibrated_window_scores`` per window, cut to the window, ``merge_windows``, ``finalize_scores`` -- fused into
    one native op (``ops.segment_windows``) with the same results and no ``[C, H, W]`` buffer.

    Returns:
        ``labels [H, W]`` int32 and ``scores [H, W]`` float32.
    """
    logits = _check_logits(logits)
    return ops.segment_windows(
        logits,
        [tuple(w) for w in windows],
        tuple(head_size),
        tuple(scaled_size),
        tuple(output_size),
        class_bias=_bias_vector(class_bias),
        sigmoid=True,
    )


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


# ---------------------------------------------------------------------------------------------------------------
# Activation-aware scoring: "sigmoid" (ZegCLIP family, per-class calibrated probabilities averaged over windows)
# and "softmax" (training-free dense CLIP: MaskCLIP / SCLIP / ClearCLIP / NACLIP). The official slide inference
# of the softmax methods averages the window *logits*, resizes them to the image, then applies softmax over
# classes (SCLIP ``forward_slide`` + ``postprocess_result``), so the softmax happens once, in ``softmax_segment``.

ACTIVATIONS = ("sigmoid", "softmax")


def window_scores(
    logits: np.ndarray,
    head_size: Tuple[int, int],
    window_size: Tuple[int, int],
    activation: str = "sigmoid",
    class_bias: Optional[np.ndarray] = None,
    valid: Optional[Tuple[int, int, int, int]] = None,
) -> np.ndarray:
    """Per-window values that are averaged over overlapping windows, for either activation.

    ``"sigmoid"``: exactly ``calibrated_window_scores`` (sigmoid, minus ``class_bias``). ``"softmax"``: the logits
    bilinearly resized to ``head_size`` then ``window_size`` (no activation yet; ``class_bias`` is applied by
    ``softmax_segment`` after the softmax).

    Returns:
        ``[B, C, Hw, Ww]`` float32.
    """
    if activation == "sigmoid":
        return calibrated_window_scores(logits, head_size, window_size, class_bias, valid)
    if activation != "softmax":
        raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
    return _to_window_size(ops.upsample(_check_logits(logits), tuple(head_size), crop=valid), head_size, window_size)


def _softmax_dense(up: np.ndarray) -> np.ndarray:
    up = up - up.max(axis=1, keepdims=True)
    np.exp(up, out=up)
    up /= up.sum(axis=1, keepdims=True)
    return up


def _area_filter(probs: np.ndarray, area_threshold: float) -> np.ndarray:
    """SCLIP ``area_thd``: classes 1.. whose argmax area is <= ``area_threshold`` of all class>0 area lose their
    probability (set to 0); class 0 (background) is never dropped."""
    batch, classes = probs.shape[:2]
    winners = probs.argmax(axis=1)
    for b in range(batch):
        area = np.bincount(winners[b].reshape(-1), minlength=classes)[1:].astype(np.float64)
        drop = ~(area > area_threshold * area.sum())
        probs[b, 1:][drop] = 0.0
    return probs


def segment_windows_softmax(
    logits: np.ndarray,
    windows: Sequence[Window],
    head_size: Tuple[int, int],
    scaled_size: Tuple[int, int],
    output_size: Tuple[int, int],
    logit_scale: float = 1.0,
    class_bias: Optional[np.ndarray] = None,
    background_threshold: Optional[float] = None,
    area_threshold: Optional[float] = None,
    background_index: int = 0,
    class_of: Optional[np.ndarray] = None,
) -> Tuple[np.ndarray, np.ndarray]:
    """The training-free methods' official slide order, fused (``ops.segment_windows(softmax=True)``): window
    logits resized to the head size and cut, averaged where windows overlap, ``* logit_scale``, resized to
    ``output_size``, softmax over classes (over names with ``class_of``, then each class's max over its names),
    (``area_threshold``), minus ``class_bias``, argmax, then ``background_threshold``. No ``[C, H, W]`` buffer of
    either size. With an area threshold the op runs twice (once for the winners whose areas decide which classes
    are dropped, once for the result).

    Returns:
        ``labels [H, W]`` int32 and ``scores [H, W]`` float32 (winning probability, minus its bias).
    """
    logits = _check_logits(logits)
    bias = _bias_vector(class_bias, drop_zero=True)
    names = _class_map(class_of, logits.shape[1])
    classes = logits.shape[1] if names is None else int(names[-1]) + 1
    args = ([tuple(w) for w in windows], tuple(head_size), tuple(scaled_size), tuple(output_size))
    drop = None
    if area_threshold is not None:
        winners, _ = ops.segment_windows(logits, *args, softmax=True, logit_scale=logit_scale, class_of=names)
        drop = _area_drop(winners, classes, float(area_threshold))
    labels, scores = ops.segment_windows(
        logits, *args, class_bias=bias, softmax=True, logit_scale=logit_scale, class_drop=drop, class_of=names
    )
    return _thresholded(labels, scores, background_threshold, background_index)


def _class_map(class_of: Optional[Union[np.ndarray, Sequence[int]]], rows: int) -> Optional[np.ndarray]:
    """``class_of`` (synonyms: the class of each of the logits' ``rows`` names) as the op takes it, or None."""
    if class_of is None:
        return None
    names = np.ascontiguousarray(class_of, dtype=np.int32).reshape(-1)
    if len(names) != rows:
        raise ValueError(f"class_of has {len(names)} entries for {rows} logit rows (one class per name)")
    return names


def _max_over_names(probs: np.ndarray, class_of: Optional[np.ndarray]) -> np.ndarray:
    """``[B, N, H, W]`` name probabilities -> ``[B, C, H, W]``: each class's max over its names (names grouped by
    class in class order; the official one-hot product + max, as ``probs >= 0``)."""
    if class_of is None:
        return probs
    starts = np.flatnonzero(np.diff(class_of, prepend=-1))
    return np.maximum.reduceat(probs, starts, axis=1)


def _area_drop(winners: np.ndarray, classes: int, area_threshold: float) -> np.ndarray:
    """SCLIP ``area_thd`` on one image's argmax map: class 0 is kept; class ``c >= 1`` is dropped when its area is
    not above ``area_threshold`` of the area of all classes >= 1 (as ``_area_filter``)."""
    area = np.bincount(winners.reshape(-1), minlength=classes)[1:].astype(np.float64)
    return np.concatenate([[False], ~(area > area_threshold * area.sum())])


# fused; its reference twin (same signature, same order unfused in NumPy) is softmax_segment_dense below
def softmax_segment(
    logits: np.ndarray,
    size: Tuple[int, int],
    logit_scale: float = 1.0,
    class_bias: Optional[np.ndarray] = None,
    background_threshold: Optional[float] = None,
    area_threshold: Optional[float] = None,
    background_index: int = 0,
    class_of: Optional[np.ndarray] = None,
) -> Tuple[np.ndarray, np.ndarray]:
    """Softmax post-processing of (window-averaged) logits, the training-free methods' official order.

    ``logits`` -> bilinear to ``size`` -> ``* logit_scale`` -> softmax over classes -> (``area_threshold``) ->
    minus ``class_bias`` -> argmax; pixels whose winning probability is below ``background_threshold`` get
    ``background_index`` (SCLIP/NACLIP ``prob_thd``: put the background class first in the vocabulary).
    Finite logits go through the fused native op (``segment_windows_softmax`` with one window covering the map,
    whose resize to its own size is exact): no ``[B, C, H, W]`` buffer. Logits holding inf/NaN take the dense
    NumPy path (``softmax_segment_dense``), which propagates them exactly as torch does.

    Args:
        logits: ``[B, C, h, w]`` float32 (the head's logits, already scaled when the bundle says so).
        size: ``(H, W)`` output size.
        logit_scale: multiplies the logits before the softmax (1.0 when the head applied it).
        class_of: synonyms: ``[N]`` the class of each of the ``N`` logit rows (names), grouped by class in class
            order; the softmax runs over the names and a class's probability is the max over its names'.
    Returns:
        ``labels [B, H, W]`` int32 and ``scores [B, H, W]`` float32 (winning probability, minus its bias).
    """
    logits = _check_logits(logits)
    if not np.isfinite(logits).all():
        return softmax_segment_dense(
            logits, size, logit_scale, class_bias, background_threshold, area_threshold, background_index, class_of
        )
    height, width = logits.shape[2:]
    size = (int(size[0]), int(size[1]))
    results = [
        segment_windows_softmax(
            logits[b : b + 1],
            [Window(0, height, 0, width)],
            (height, width),
            (height, width),
            size,
            logit_scale,
            class_bias,
            background_threshold,
            area_threshold,
            background_index,
            class_of,
        )
        for b in range(len(logits))
    ]
    return np.stack([r[0] for r in results]), np.stack([r[1] for r in results])


# the NumPy reference twin of softmax_segment / segment_windows_softmax (the fused op), kept on purpose
def softmax_segment_dense(
    logits: np.ndarray,
    size: Tuple[int, int],
    logit_scale: float = 1.0,
    class_bias: Optional[np.ndarray] = None,
    background_threshold: Optional[float] = None,
    area_threshold: Optional[float] = None,
    background_index: int = 0,
    class_of: Optional[np.ndarray] = None,
) -> Tuple[np.ndarray, np.ndarray]:
    """``softmax_segment`` written out in NumPy with a ``[B, C, H, W]`` probability map (the unfused order; the
    reference the fused path is tested against, and the path for non-finite logits)."""
    logits = _check_logits(logits)
    names = _class_map(class_of, logits.shape[1])
    if logit_scale != 1.0:
        logits = np.ascontiguousarray(logits * np.float32(logit_scale), dtype=np.float32)
    bias = _bias_vector(class_bias, drop_zero=True)
    size = (int(size[0]), int(size[1]))
    with np.errstate(invalid="ignore", over="ignore"):
        probs = _max_over_names(_softmax_dense(ops.upsample(logits, size)), names)
    if area_threshold is not None:
        probs = _area_filter(probs, float(area_threshold))
    if bias is not None:
        probs -= bias[None, :, None, None]
    labels = probs.argmax(axis=1).astype(np.int32)
    scores = np.take_along_axis(probs, labels[:, None].astype(np.int64), axis=1)[:, 0].astype(np.float32)
    return _thresholded(labels, scores, background_threshold, background_index)


# ---------------------------------------------------------------------------------------------------------------
# PAMR (NACLIP / SC-CLIP): the window-averaged logits are resized to the image size, refined by PAMR guided by the
# normalised network input resized to the same size, and only then softmaxed (NACLIP ``predict``, SC-CLIP
# ``forward_slide``). The refinement needs the whole [C, H, W] logit map, so this path is not fused.


def pamr_guide(
    scaled_rgb: np.ndarray, mean: Sequence[float], std: Sequence[float], size: Tuple[int, int]
) -> np.ndarray:
    """PAMR's guide image: the normalised rescaled image (the network input) resized bilinearly
    (``align_corners=False``) to ``size``, as NACLIP and SC-CLIP pass it.

    Args:
        scaled_rgb: ``[H', W', 3]`` uint8 RGB rescaled image; mean / std: the bundle's normalisation (0..255).
        size: ``(H, W)`` the output (original image) size.
    Returns:
        ``[1, 3, H, W]`` float32.
    """
    from .preprocess import normalize_image

    chw = normalize_image(scaled_rgb, mean, std)
    return ops.upsample(np.ascontiguousarray(chw[None], dtype=np.float32), (int(size[0]), int(size[1])))


def softmax_segment_pamr(
    logits: np.ndarray,
    guide: np.ndarray,
    iterations: int,
    dilations: Sequence[int],
    logit_scale: float = 1.0,
    class_bias: Optional[np.ndarray] = None,
    background_threshold: Optional[float] = None,
    area_threshold: Optional[float] = None,
    background_index: int = 0,
    class_of: Optional[np.ndarray] = None,
) -> Tuple[np.ndarray, np.ndarray]:
    """``softmax_segment`` after PAMR: ``logits [1, C, H, W]`` at the output size (window-averaged and resized)
    -> ``ops.pamr`` guided by ``guide [1, 3, H, W]`` -> ``* logit_scale`` -> softmax -> (area filter) -> minus
    ``class_bias`` -> argmax -> background threshold. PAMR is linear in the logits, so refining logits the head
    already scaled equals scaling the refined logits (the official order: refine, then scale).

    Returns:
        ``labels [1, H, W]`` int32 and ``scores [1, H, W]`` float32.
    """
    logits = _check_logits(logits)
    refined = ops.pamr(logits, np.ascontiguousarray(guide, dtype=np.float32), int(iterations), list(dilations))
    return softmax_segment(
        refined,
        logits.shape[2:],
        logit_scale,
        class_bias,
        background_threshold,
        area_threshold,
        background_index,
        class_of,
    )
