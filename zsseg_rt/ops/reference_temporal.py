"""NumPy specifications of the video filter's ops (:mod:`zsseg_rt.ops.temporal`): the code the filter ran before
the ops (``zsseg_rt.stream.video_filter.temporal``), kept as it was, float32 operation for operation; the native
kernels are tested to give its values exactly (python_tests/ops/test_temporal_ops.py)."""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from .reference import warp

__all__ = ["temporal_blend", "temporal_hold", "temporal_propagate", "class_state", "margin_change"]


def margin_change(current: np.ndarray, previous: np.ndarray) -> np.ndarray:
    """``[h, w]`` float32: ``|(S_a - S_b) - (P_a - P_b)|`` with ``a, b`` the two best classes of ``current``."""
    if current.shape[0] < 2:
        return np.zeros(current.shape[1:], np.float32)
    first = np.argmax(current, axis=0)[None]
    others = current.copy()
    np.put_along_axis(others, first, -np.inf, 0)
    second = np.argmax(others, axis=0)[None]
    now = np.take_along_axis(current, first, 0) - np.take_along_axis(current, second, 0)
    before = np.take_along_axis(previous, first, 0) - np.take_along_axis(previous, second, 0)
    return np.abs(now - before)[0].astype(np.float32)


def temporal_blend(current, previous, previous_jitter, doubt, valid, blend: float, hold_doubt: float):
    """See :func:`zsseg_rt.ops.temporal_blend`: ``(state, jitter, noise, measured)``."""
    valid = np.asarray(valid).astype(bool)
    weight = (blend + (1.0 - blend) * doubt).astype(np.float32)
    blended = previous + weight * (current - previous)
    state = np.ascontiguousarray(np.where(valid[None], blended, current), dtype=np.float32)
    before = np.where(valid, previous_jitter, 0.0).astype(np.float32)
    noise = np.sqrt(before * (weight / 2.0)) * np.clip((1.0 - doubt) / (1.0 - hold_doubt), 0.0, 1.0)
    change = np.square(margin_change(current, previous))
    jitter = np.ascontiguousarray(np.where(valid, before + weight * (change - before), 0.0), dtype=np.float32)
    return state, jitter, noise.astype(np.float32), np.array([int(before.any())], np.int32)


def _bilinear_at(state: np.ndarray, classes: np.ndarray, rows: np.ndarray, cols: np.ndarray, size) -> np.ndarray:
    _, height, width = state.shape
    y = np.maximum((rows + 0.5) * (height / size[0]) - 0.5, 0.0)
    x = np.maximum((cols + 0.5) * (width / size[1]) - 0.5, 0.0)
    y0, x0 = np.minimum(y.astype(np.intp), height - 1), np.minimum(x.astype(np.intp), width - 1)
    y1, x1 = np.minimum(y0 + 1, height - 1), np.minimum(x0 + 1, width - 1)
    wy, wx = (y - y0).astype(np.float32), (x - x0).astype(np.float32)
    top = state[classes, y0, x0] * (1 - wx) + state[classes, y0, x1] * wx
    bottom = state[classes, y1, x0] * (1 - wx) + state[classes, y1, x1] * wx
    return (top * (1 - wy) + bottom * wy).astype(np.float32)


def temporal_hold(labels, scores, state, noise, anchor_labels, flow, valid, hysteresis: float, measured=None):
    """See :func:`zsseg_rt.ops.temporal_hold`: ``(labels, scores)`` held (new arrays)."""
    labels, scores = np.array(labels, np.int32), np.array(scores, np.float32)
    if hysteresis <= 0 or (measured is not None and not np.asarray(measured)[0]):
        return labels, scores
    held = warp(np.asarray(anchor_labels, np.float32)[None, None], np.asarray(flow)[None], nearest=True)[0, 0]
    held = held.astype(np.int64)
    valid = np.asarray(valid).astype(bool)
    rows, cols = np.nonzero((held != labels) & valid & (held >= 0) & (held < state.shape[0]))
    if not len(rows):
        return labels, scores
    classes = held[rows, cols].astype(np.intp)
    kept_score = _bilinear_at(state, classes, rows, cols, labels.shape)
    margin = np.float32(hysteresis) * _bilinear_at(noise[None], np.zeros_like(classes), rows, cols, labels.shape)
    keep = scores[rows, cols] - kept_score < margin
    labels[rows[keep], cols[keep]] = classes[keep]
    scores[rows[keep], cols[keep]] = kept_score[keep]
    return labels, scores


def temporal_propagate(anchor_labels, anchor_scores, flow, fill: Optional[Sequence[np.ndarray]] = None):
    """See :func:`zsseg_rt.ops.temporal_propagate`: ``(labels, scores)``."""
    flow = np.asarray(flow, np.float32)[None]
    labels = warp(np.asarray(anchor_labels, np.float32)[None, None], flow, nearest=True)[0, 0].astype(np.int32)
    scores = warp(np.asarray(anchor_scores, np.float32)[None, None], flow)[0, 0]
    if fill is None:
        return labels, scores
    index, rows_down, cols_down, rows_up, cols_up = (np.asarray(a) for a in fill)
    k = index[rows_down[:, None], cols_down[None, :]]  # the nearest valid pixel (flow resolution), -1: valid
    width = index.shape[1]
    source = labels[rows_up[np.maximum(k, 0) // width], cols_up[np.maximum(k, 0) % width]]
    return np.where(k >= 0, source, labels).astype(np.int32), scores


def class_state(logits, windows, head_size, scaled_size, state_size, class_bias=None, sigmoid: bool = True):
    """See :func:`zsseg_rt.ops.class_state` (float64 here): ``[C, h, w]``."""
    from .reference import upsample

    logits = np.asarray(logits, np.float32)
    classes = logits.shape[1]
    total = np.zeros((classes,) + tuple(scaled_size), np.float64)
    count = np.zeros(tuple(scaled_size), np.float64)
    for k, (y1, y2, x1, x2) in enumerate(windows):
        up = np.asarray(upsample(logits[k : k + 1].astype(np.float64), tuple(head_size)), np.float64)[0]
        if sigmoid:
            up = 1.0 / (1.0 + np.exp(-up))
        if class_bias is not None:
            up = up - np.asarray(class_bias, np.float64)[:, None, None]
        total[:, y1:y2, x1:x2] += up[:, : y2 - y1, : x2 - x1]
        count[y1:y2, x1:x2] += 1.0
    merged = total / count
    linear = state_size[0] > scaled_size[0] or state_size[1] > scaled_size[1]  # cv::resize enlarging either axis
    if linear:
        rows = _linear_matrix(scaled_size[0], state_size[0], columns=False)
        cols = _linear_matrix(scaled_size[1], state_size[1], columns=True)
    else:
        rows, cols = _area_matrix(scaled_size[0], state_size[0]), _area_matrix(scaled_size[1], state_size[1])
    return np.einsum("iy,cyx,jx->cij", rows, merged, cols).astype(np.float32)


def _area_matrix(src: int, dst: int) -> np.ndarray:
    """OpenCV INTER_AREA's weights ``[dst, src]`` of a downscale (computeResizeAreaTab)."""
    scale = 1.0 / (dst / src)
    out = np.zeros((dst, src), np.float64)
    for d in range(dst):
        start, end = d * scale, d * scale + scale
        cell = min(scale, src - start)
        first, last = int(np.ceil(start)), min(int(np.floor(end)), src - 1)
        first = min(first, last)
        if first - start > 1e-3:
            out[d, first - 1] = (first - start) / cell
        out[d, first:last] = 1.0 / cell
        if end - last > 1e-3:
            out[d, last] = min(min(end - last, 1.0), cell) / cell
    return out


def _linear_matrix(src: int, dst: int, columns: bool) -> np.ndarray:
    """OpenCV INTER_AREA's weights ``[dst, src]`` where cv::resize enlarges either axis (resizeGeneric's
    ``area_mode``, for both axes): ``sx = floor(d * scale)``, ``f = float32((d + 1) - (sx + 1) * inv_scale)`` (0 where
    <= 0, else its fractional part), weights ``float32(1 - f)`` and ``f`` at ``sx`` and ``sx + 1``; along the columns
    a destination whose ``sx + 1`` is past the source reads ``src - 1`` alone (weight 1), along the rows ``sx + 1``
    is clamped to ``src - 1``."""
    inv_scale = dst / src
    scale = 1.0 / inv_scale
    out = np.zeros((dst, src), np.float64)
    for d in range(dst):
        sx = int(np.floor(d * scale))
        f = np.float32((d + 1) - (sx + 1) * inv_scale)
        f = np.float32(0) if f <= 0 else np.float32(f - np.float32(np.floor(f)))
        if columns and sx + 1 >= src:
            out[d, src - 1] = 1.0
            continue
        out[d, min(sx, src - 1)] += float(np.float32(1) - f)
        out[d, min(sx + 1, src - 1)] += float(f)
    return out
