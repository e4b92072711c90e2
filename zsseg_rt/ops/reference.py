"""Pure NumPy reference implementations of the native ops (one reference per op).

These are the specification the C++/CUDA kernels in ``csrc/`` are tested against. They are written for
clarity, not speed, compute in float64 and return float32 (labels int32). They need neither torch nor ``_C``.

Semantics shared with the kernels:

* L2 normalisation divides by ``max(||x||_2, 1e-12)`` (``torch.nn.functional.normalize``).
* Bilinear resizing is ``torch.nn.functional.interpolate(mode="bilinear", align_corners=False)`` without
  anti-aliasing, for up- and down-sampling and non-square sizes: the source coordinate of output index ``i`` is
  ``max((i + 0.5) * in / out - 0.5, 0)``; the lower neighbour is its floor, the upper one is clamped to
  ``in - 1``.
* ``crop = (top, left, height, width)`` selects the valid region of a padded logit map; the op then behaves
  exactly as if it were given ``logits[..., top:top+height, left:left+width]``.
* ``argmax`` follows ``torch.argmax``: ties resolve to the lowest class index, and a NaN wins over any number
  (the first NaN, if there are several).
"""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import numpy as np

NORM_EPS = 1e-12

__all__ = [
    "similarity",
    "relation_descriptor",
    "upsample",
    "segment",
    "bilinear_taps",
    "argmax_torch",
    "pamr",
    "warp",
]


def _l2_normalize(x: np.ndarray) -> np.ndarray:
    norm = np.sqrt((x * x).sum(axis=-1, keepdims=True))
    return x / np.maximum(norm, NORM_EPS)


def similarity(patches: np.ndarray, text: np.ndarray, normalize: bool = False, scale: float = 1.0) -> np.ndarray:
    """Patch-text similarity.

    Args:
        patches: ``[B, N, D]`` patch embeddings.
        text: ``[C, D]`` (shared by the batch) or ``[B, C, D]`` class embeddings.
        normalize: L2-normalise both sides over D first.
        scale: multiplies the dot products.
    Returns:
        ``[B, C, N]`` float32, ``scale * <text_c, patch_n>``.
    """
    p = np.asarray(patches, dtype=np.float64)
    t = np.asarray(text, dtype=np.float64)
    if normalize:
        p, t = _l2_normalize(p), _l2_normalize(t)
    if t.ndim == 2:
        out = np.einsum("cd,bnd->bcn", t, p)
    else:
        out = np.einsum("bcd,bnd->bcn", t, p)
    return (scale * out).astype(np.float32)


def relation_descriptor(
    text: np.ndarray,
    image_global: np.ndarray,
    weight: Optional[np.ndarray] = None,
    bias: Optional[np.ndarray] = None,
) -> np.ndarray:
    """ZegCLIP's relationship descriptor ``Linear(concat(text * g, text))``.

    Args:
        text: ``[C, D]`` class embeddings (ZegCLIP passes them L2-normalised).
        image_global: ``[B, D]`` global image embedding (L2-normalised in ZegCLIP).
        weight: ``[Dout, 2D]`` or None (no linear layer).
        bias: ``[Dout]`` or None.
    Returns:
        ``[B, C, Dout]`` float32, or ``[B, C, 2D]`` when ``weight`` is None.
    """
    t = np.asarray(text, dtype=np.float64)
    g = np.asarray(image_global, dtype=np.float64)
    prod = t[None, :, :] * g[:, None, :]  # [B, C, D]
    cat = np.concatenate([prod, np.broadcast_to(t[None], prod.shape)], axis=-1)  # [B, C, 2D]
    if weight is None:
        return cat.astype(np.float32)
    out = cat @ np.asarray(weight, dtype=np.float64).T
    if bias is not None:
        out = out + np.asarray(bias, dtype=np.float64)
    return out.astype(np.float32)


def bilinear_taps(in_size: int, out_size: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source indices and weights of torch's bilinear (align_corners=False) along one axis.

    Returns:
        ``(i0, i1, lam)``: int64 lower/upper source index and float64 weight of the upper one, each ``[out]``.
    """
    scale = in_size / out_size
    src = (np.arange(out_size, dtype=np.float64) + 0.5) * scale - 0.5
    src = np.maximum(src, 0.0)
    i0 = np.minimum(np.floor(src).astype(np.int64), in_size - 1)
    i1 = np.minimum(i0 + 1, in_size - 1)
    lam = src - i0
    return i0, i1, lam


def _apply_crop(logits: np.ndarray, crop: Optional[Sequence[int]]) -> np.ndarray:
    if crop is None:
        return logits
    top, left, height, width = (int(v) for v in crop)
    return logits[..., top : top + height, left : left + width]


def _calibrate(values: np.ndarray, sigmoid: bool, class_bias: Optional[np.ndarray]) -> np.ndarray:
    """``f(values) - class_bias[c]`` in float64 over ``[B, C, ...]``; ``f`` = logistic sigmoid or identity."""
    out = np.asarray(values, dtype=np.float64)
    if sigmoid:
        with np.errstate(over="ignore"):  # exp(-x) overflows to inf for x < -709: sigmoid is then exactly 0
            out = 1.0 / (1.0 + np.exp(-out))
    if class_bias is not None:
        bias = np.asarray(class_bias, dtype=np.float64)
        out = out - bias.reshape((1, -1) + (1,) * (out.ndim - 2))
    return out


def upsample(
    logits: np.ndarray,
    size: Sequence[int],
    crop: Optional[Sequence[int]] = None,
    sigmoid: bool = False,
    class_bias: Optional[np.ndarray] = None,
) -> np.ndarray:
    """Bilinear resize with torch's align_corners=False semantics, optionally calibrated.

    ``out[b, c, y, x] = f(bilinear(logits)[b, c, y, x]) - class_bias[c]`` with ``f`` = logistic sigmoid when
    ``sigmoid`` else identity, and no bias term when ``class_bias`` is None (the defaults give the plain resize).
    Everything is computed in float64 and rounded to float32 once at the end.

    Args:
        logits: ``[B, C, h, w]``.
        size: ``(H, W)`` output size.
        crop: optional ``(top, left, height, width)`` valid region of ``logits``.
        sigmoid: apply the logistic function after the resize.
        class_bias: ``[C]`` subtracted last, or None.
    Returns:
        ``[B, C, H, W]`` float32.
    """
    x = _apply_crop(np.asarray(logits, dtype=np.float64), crop)
    out_h, out_w = int(size[0]), int(size[1])
    y0, y1, ly = bilinear_taps(x.shape[-2], out_h)
    x0, x1, lx = bilinear_taps(x.shape[-1], out_w)
    ly = ly[:, None]
    lx = lx[None, :]
    top = x[..., y0[:, None], x0[None, :]] * (1 - lx) + x[..., y0[:, None], x1[None, :]] * lx
    bot = x[..., y1[:, None], x0[None, :]] * (1 - lx) + x[..., y1[:, None], x1[None, :]] * lx
    up = (1 - ly) * top + ly * bot
    if sigmoid or class_bias is not None:
        up = _calibrate(up, sigmoid, class_bias)
    return up.astype(np.float32)


def argmax_torch(x: np.ndarray, axis: int) -> np.ndarray:
    """``torch.argmax`` semantics: lowest index on ties, the first NaN wins."""
    x = np.asarray(x)
    nan = np.isnan(x)
    idx = np.argmax(x, axis=axis)  # numpy also returns the first NaN, but be explicit about it
    has_nan = nan.any(axis=axis)
    if has_nan.any():
        idx = np.where(has_nan, np.argmax(nan, axis=axis), idx)
    return idx


def segment(
    logits: np.ndarray,
    size: Sequence[int],
    class_bias: Optional[np.ndarray] = None,
    sigmoid: bool = True,
    crop: Optional[Sequence[int]] = None,
) -> Tuple[np.ndarray, np.ndarray]:
    """Upsample + optional sigmoid + per-class bias subtraction + argmax over classes.

    The calibrated value of class c at a pixel is ``f(up(logits)_c) - class_bias[c]`` with ``f`` = sigmoid or
    identity. ZegCLIP's inductive calibration is ``sigmoid=True`` and ``class_bias = 0.1`` on seen classes.

    Args:
        logits: ``[B, C, h, w]`` mask logits.
        size: ``(H, W)`` output size.
        class_bias: ``[C]`` subtracted after the sigmoid, or None.
        sigmoid: apply the logistic function before the bias.
        crop: optional ``(top, left, height, width)`` valid region of ``logits``.
    Returns:
        ``labels [B, H, W]`` int32 (argmax, torch tie/NaN rules) and ``scores [B, H, W]`` float32 (the winning
        calibrated value).
    """
    # The calibration is applied to the float32-rounded upsampled value (as the kernels do), in float64, and
    # the winner is chosen on the float64 values (not on upsample(..., sigmoid, class_bias)'s float32 output).
    up = _calibrate(upsample(logits, size, crop), sigmoid, class_bias)
    labels = argmax_torch(up, axis=1)
    scores = np.take_along_axis(up, labels[:, None], axis=1)[:, 0]
    return labels.astype(np.int32), scores.astype(np.float32)


# ---- preprocess ------------------------------------------------------------------------------------------------


def _linear_u8_taps(in_size: int, out_size: int, clamp_weights: bool):
    """OpenCV INTER_LINEAR uint8 taps: indices and 11-bit weights (columns clamp the weights, rows do not)."""
    scale = 1.0 / (out_size / in_size)
    f = ((np.arange(out_size, dtype=np.float64) + 0.5) * scale - 0.5).astype(np.float32)
    s = np.floor(f).astype(np.int64)
    f = f - s.astype(np.float32)
    if clamp_weights:
        low, high = s < 0, s >= in_size - 1
        f[low | high] = 0.0
        s = np.clip(s, 0, in_size - 1)
    w0 = np.rint((np.float32(1.0) - f) * np.float32(2048)).astype(np.int64)
    w1 = np.rint(f * np.float32(2048)).astype(np.int64)
    return np.clip(s, 0, in_size - 1), np.clip(s + 1, 0, in_size - 1), w0, w1


def resize_u8_linear(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """``cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)`` for uint8 ``[H, W, C]``, written
    out: horizontal pass in integers, vertical pass with OpenCV's SIMD rounding."""
    if image.shape[:2] == (height, width):
        return image.copy()
    xs0, xs1, xa0, xa1 = _linear_u8_taps(image.shape[1], width, True)
    ys0, ys1, yb0, yb1 = _linear_u8_taps(image.shape[0], height, False)
    img = image.astype(np.int64)
    horiz = img[:, xs0] * xa0[None, :, None] + img[:, xs1] * xa1[None, :, None]
    value = (((horiz[ys0] >> 4) * yb0[:, None, None]) >> 16) + (((horiz[ys1] >> 4) * yb1[:, None, None]) >> 16)
    return np.clip((value + 2) >> 2, 0, 255).astype(np.uint8)


# reference twin of the native ops.preprocess (ops/image.py; same arguments on purpose)
def preprocess(
    image: np.ndarray,
    scaled_size: Sequence[int],
    windows: Sequence[Sequence[int]],
    crop: int,
    mean: Sequence[float],
    std: Sequence[float],
    color_order: str = "bgr",
) -> np.ndarray:
    """Reference of ``ops.preprocess``: ``[n, 3, crop, crop]`` float32."""
    if image.ndim == 2:
        image = image[:, :, None]
    if image.shape[2] == 1:
        rgb = np.repeat(image, 3, axis=2)
    else:
        rgb = image[:, :, :3][:, :, ::-1] if color_order == "bgr" else image[:, :, :3]
    scaled = resize_u8_linear(np.ascontiguousarray(rgb), int(scaled_size[0]), int(scaled_size[1]))
    chw = (
        np.transpose(scaled, (2, 0, 1)).astype(np.float32) - np.asarray(mean, np.float32).reshape(3, 1, 1)
    ) / np.asarray(std, np.float32).reshape(3, 1, 1)
    out = np.zeros((len(windows), 3, crop, crop), dtype=np.float32)
    for k, (y1, y2, x1, x2) in enumerate(windows):
        out[k, :, : y2 - y1, : x2 - x1] = chw[:, y1:y2, x1:x2]
    return out


# ---- segment_windows ---------------------------------------------------------------------------------------


def segment_windows(
    logits: np.ndarray,
    windows: Sequence[Sequence[int]],
    head_size: Sequence[int],
    scaled_size: Sequence[int],
    output_size: Sequence[int],
    class_bias: Optional[np.ndarray] = None,
    sigmoid: bool = True,
    softmax: bool = False,
    logit_scale: float = 1.0,
    class_drop: Optional[Sequence[bool]] = None,
    class_of: Optional[Sequence[int]] = None,
) -> Tuple[np.ndarray, np.ndarray]:
    """Reference of ``ops.segment_windows`` in fp64: per window resize to the head size, calibrate, cut; average
    overlaps; resize to the output size; argmax (torch's rules). Returns ``labels [H, W]``, ``scores [H, W]``.

    ``softmax``: the raw logits are averaged, multiplied by ``logit_scale``, resized, softmaxed over classes; the
    probabilities of ``class_drop`` classes are set to 0, ``class_bias`` is subtracted, and the argmax follows
    torch's rules (a pixel with a NaN logit or a non-finite max: label 0, score NaN). ``class_of`` (synonyms): the
    softmax runs over the logits' rows (names) and a class's probability is the max over the names ``n`` with
    ``class_of[n]`` = that class (SCLIP/NACLIP/SC-CLIP ``postprocess_result``); drop, bias and argmax per class."""
    if softmax:
        return _segment_windows_softmax(
            logits, windows, head_size, scaled_size, output_size, class_bias, logit_scale, class_drop, class_of
        )
    n, classes = logits.shape[:2]
    total = np.zeros((classes,) + tuple(scaled_size))
    count = np.zeros(tuple(scaled_size))
    for k, (y1, y2, x1, x2) in enumerate(windows):
        up = upsample(logits[k : k + 1].astype(np.float64), tuple(head_size))[0]
        cal = _calibrate(up[None], sigmoid, class_bias)[0]
        total[:, y1:y2, x1:x2] += cal[:, : y2 - y1, : x2 - x1]
        count[y1:y2, x1:x2] += 1
    if (count == 0).any():
        raise ValueError("the windows do not cover the whole rescaled image")
    labels, scores = segment(total[None] / count, tuple(output_size), None, sigmoid=False)
    return labels[0], scores[0]


def _segment_windows_softmax(
    logits, windows, head_size, scaled_size, output_size, class_bias, logit_scale, class_drop, class_of=None
):
    classes = logits.shape[1]
    total = np.zeros((classes,) + tuple(scaled_size))
    count = np.zeros(tuple(scaled_size))
    for k, (y1, y2, x1, x2) in enumerate(windows):
        up = upsample(logits[k : k + 1].astype(np.float64), tuple(head_size))[0]
        total[:, y1:y2, x1:x2] += up[:, : y2 - y1, : x2 - x1]
        count[y1:y2, x1:x2] += 1
    if (count == 0).any():
        raise ValueError("the windows do not cover the whole rescaled image")
    merged = total / count * float(logit_scale)
    up = upsample(merged[None], tuple(output_size))[0].astype(np.float64)  # [C, H, W]
    with np.errstate(invalid="ignore", over="ignore"):
        top = up.max(axis=0)  # NaN when any class is NaN
        bad = ~np.isfinite(top)
        e = np.exp(up - np.where(bad, 0.0, top)[None])
        probs = e / e.sum(axis=0, keepdims=True)
        if class_of is not None:  # max over each class's names, written as the official one-hot product + max
            onehot = np.eye(int(np.max(class_of)) + 1)[np.asarray(class_of)].T  # [classes, names]
            probs = (probs[None] * onehot[:, :, None, None]).max(axis=1)
    if class_drop is not None:
        probs[np.asarray(class_drop, dtype=bool)] = 0.0
    if class_bias is not None:
        probs = probs - np.asarray(class_bias, dtype=np.float64).reshape(-1, 1, 1)
    labels = argmax_torch(probs, axis=0)
    scores = np.take_along_axis(probs, labels[None], axis=0)[0]
    labels = np.where(bad, 0, labels).astype(np.int32)
    scores = np.where(bad, np.nan, scores).astype(np.float32)
    return labels, scores


# ---- pamr ----------------------------------------------------------------------------------------------------


def pamr_offsets(dilations: Sequence[int]) -> List[Tuple[int, int]]:
    """The ``8 * len(dilations)`` neighbour offsets ``(dy, dx)`` of PAMR, in order: per dilation ``d``, the cells of
    the 3x3 grid ``{-d, 0, d}^2`` row-major without the centre."""
    return [(dy * d, dx * d) for d in dilations for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)]


def _shifted(x: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """``x[..., clamp(y + dy), clamp(x + dx)]`` over the last two axes (replicate padding)."""
    h, w = x.shape[-2:]
    rows = np.clip(np.arange(h) + dy, 0, h - 1)
    cols = np.clip(np.arange(w) + dx, 0, w - 1)
    return x[..., rows[:, None], cols[None, :]]


def pamr(mask: np.ndarray, image: np.ndarray, iterations: int = 10, dilations: Sequence[int] = (8, 16)) -> np.ndarray:
    """Pixel-adaptive mask refinement (Araslanov & Roth 2020), as NACLIP / SC-CLIP apply it, in float64.

    For every neighbour offset ``o_n`` (``pamr_offsets``; replicate padding at the border):
    ``sigma_k(p)`` is the Bessel-corrected standard deviation of image channel ``k`` over the dilated 3x3 grids
    around ``p`` (``9 * len(dilations)`` values, the centre once per dilation);
    ``a_n(p) = mean_k(-|image_k(p) - image_k(p + o_n)| / (1e-8 + 0.1 * sigma_k(p)))``;
    ``w_n(p) = softmax_n(a_n(p))``; then ``iterations`` times ``mask(p) <- sum_n w_n(p) * mask(p + o_n)`` per class.

    Args:
        mask: ``[B, C, H, W]`` the class logits (at the image size: the reference's align_corners=True resize of
            the mask to the image is then the identity).
        image: ``[B, K, H, W]`` the guide image (NACLIP / SC-CLIP: the normalised network input resized to H x W).
        iterations: >= 1 refinement steps; dilations: 1..8 dilations, each >= 1.
    Returns:
        ``[B, C, H, W]`` float32.
    """
    m = np.asarray(mask, dtype=np.float64)
    x = np.asarray(image, dtype=np.float64)
    if m.ndim != 4 or x.ndim != 4 or x.shape[0] != m.shape[0] or x.shape[2:] != m.shape[2:]:
        raise ValueError(f"need mask [B, C, H, W] and image [B, K, H, W] of one size, got {m.shape}, {x.shape}")
    if int(iterations) < 1 or not dilations or min(int(d) for d in dilations) < 1:
        raise ValueError(f"need iterations >= 1 and dilations >= 1, got {iterations}, {list(dilations)}")
    offsets = pamr_offsets([int(d) for d in dilations])
    grid = [_shifted(x, dy * d, dx * d) for d in dilations for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
    sigma = np.stack(grid, axis=2).std(axis=2, ddof=1)  # [B, K, H, W]
    with np.errstate(invalid="ignore", divide="ignore"):
        affinity = np.stack([-np.abs(x - _shifted(x, dy, dx)) for dy, dx in offsets], axis=2)  # [B, K, P, H, W]
        affinity = (affinity / (1e-8 + 0.1 * sigma[:, :, None])).mean(axis=1)  # [B, P, H, W]
        affinity = np.exp(affinity - affinity.max(axis=1, keepdims=True))
        weights = affinity / affinity.sum(axis=1, keepdims=True)
    for _ in range(int(iterations)):
        m = sum(weights[:, n : n + 1] * _shifted(m, dy, dx) for n, (dy, dx) in enumerate(offsets))
    return np.asarray(m, dtype=np.float32)


def warp(values: np.ndarray, flow: np.ndarray, nearest: bool = False) -> np.ndarray:
    """Every value plane sampled along a dense flow (the temporal filter's warp; kernels: csrc/include/zsseg/warp.h):
    ``out[b, c, y, x] = sample(values[b, c], x + flow[b, y, x, 0], y + flow[b, y, x, 1])``, with OpenCV's ``remap``
    rule (float maps, ``BORDER_REPLICATE``), which the filter was measured with.

    The source coordinate is computed in float32 as the kernels do (``x + dx``), clamped to ``[-2^20, 2^20]``;
    bilinear: on a grid of 1/32 pixel, ``X = rint(32 sx)`` (a half to even), ``x0 = floor(X / 32)``,
    ``ax = (X mod 32) / 32``, the taps ``(x0, x0 + 1) x (y0, y0 + 1)`` each clamped to the map (the border
    replicated), weights ``(1 - ay)(1 - ax), (1 - ay) ax, ay (1 - ax), ay ax`` (a NaN in any tap reaches the
    result); nearest: the tap ``rint(sx), rint(sy)`` (a half to even) clamped. A displacement that is not finite
    gives NaN in every channel of that pixel.

    Args:
        values: ``[B, C, H, W]``; flow: ``[B, H, W, 2]`` (dx, dy) in pixels.
    Returns:
        ``[B, C, H, W]`` float32 (computed in float64 from the grid coordinates).
    """
    v = np.asarray(values, dtype=np.float64)
    f = np.asarray(flow, dtype=np.float32)
    if v.ndim != 4 or f.shape != (v.shape[0], v.shape[2], v.shape[3], 2):
        raise ValueError(f"need values [B, C, H, W] and flow [B, H, W, 2] of their B, H, W, got {v.shape}, {f.shape}")
    batch, _, height, width = v.shape
    with np.errstate(invalid="ignore"):
        sx = np.arange(width, dtype=np.float32)[None, None, :] + f[..., 0]
        sy = np.arange(height, dtype=np.float32)[None, :, None] + f[..., 1]
    finite = np.isfinite(sx) & np.isfinite(sy)
    reach = np.float32(2**20)
    sx = np.clip(np.where(finite, sx, np.float32(0)), -reach, reach).astype(np.float32)
    sy = np.clip(np.where(finite, sy, np.float32(0)), -reach, reach).astype(np.float32)
    b = np.arange(batch)[:, None, None]

    def tap(yy: np.ndarray, xx: np.ndarray) -> np.ndarray:  # [B, H, W, C]
        return v[b, :, np.clip(yy, 0, height - 1).astype(np.intp), np.clip(xx, 0, width - 1).astype(np.intp)]

    if nearest:
        out = tap(np.rint(sy).astype(np.int64), np.rint(sx).astype(np.int64))
    else:
        qx, qy = np.rint(sx * np.float32(32)).astype(np.int64), np.rint(sy * np.float32(32)).astype(np.int64)
        fx, fy = np.floor_divide(qx, 32), np.floor_divide(qy, 32)
        ax = ((qx - 32 * fx) / 32.0)[..., None]
        ay = ((qy - 32 * fy) / 32.0)[..., None]
        out = (
            (1 - ay) * (1 - ax) * tap(fy, fx)
            + (1 - ay) * ax * tap(fy, fx + 1)
            + ay * (1 - ax) * tap(fy + 1, fx)
            + ay * ax * tap(fy + 1, fx + 1)
        )
    out = np.where(finite[..., None], out, np.nan)
    return np.ascontiguousarray(out.transpose(0, 3, 1, 2), dtype=np.float32)
