"""The video filter's per-frame arithmetic as native ops (``zsseg_rt.stream.video_filter.temporal``; docs/video.md "The method"),
on the CPU (NumPy arrays) and on CUDA (device arrays: the filter's state never leaves the device). Each is the NumPy
code the filter ran before, element for element (csrc/include/zsseg/temporal.h): the CPU kernels give its values bit
for bit, the CUDA kernels the CPU kernels'. NumPy specifications: :mod:`zsseg_rt.ops.reference`
(``temporal_blend``, ``temporal_hold``, ``temporal_propagate``, ``class_state``)."""

from __future__ import annotations

from typing import Any, Optional, Sequence, Tuple

from ._arrays import as_native_array, resolve_stream
from ._loader import native_module

__all__ = ["temporal_blend", "temporal_hold", "temporal_propagate", "class_state"]


def _native(values: Sequence[Any], op: str, names: Sequence[str]) -> list:
    return [as_native_array(value, op, name) for value, name in zip(values, names)]


def temporal_blend(
    current: Any,
    previous: Any,
    previous_jitter: Any,
    doubt: Any,
    valid: Any,
    blend: float,
    hold_doubt: float,
    out: Optional[Sequence[Any]] = None,
    stream: Optional[int] = None,
) -> Tuple[Any, Any, Any, Any]:
    """A stabilised keyframe's state: per state pixel ``w = blend + (1 - blend) doubt``, ``F = P + w (S - P)`` where
    ``valid`` (``S`` elsewhere), the jitter ``before = valid ? J : 0`` moved on to ``valid ? before + w (m^2 - before)
    : 0`` with ``m`` the change of the top-2 margin of ``S`` against ``P``'s, and the hysteresis' noise
    ``sqrt(before w / 2) clip((1 - doubt) / (1 - hold_doubt), 0, 1)``.

    Args:
        current: ``S [C, h, w]`` float32, the keyframe's class scores. previous: ``P [C, h, w]`` float32, the
            anchor's state warped along the flow. previous_jitter: ``J [h, w]`` float32, the anchor's jitter warped.
        doubt: ``[h, w]`` float32 in [0, 1]. valid: ``[h, w]`` uint8 (0 / 1): where the flow is valid.
        blend: in (0, 1]. hold_doubt: in [0, 1).
        out: optional ``(state [C, h, w], jitter [h, w], noise [h, w], measured [1] int32)``.
    Returns:
        ``(state, jitter, noise, measured)``; ``measured[0]`` is 1 when some valid pixel has ``J != 0`` (the
        hysteresis has something to work with), else 0.
    """
    arrays = _native((current, previous, previous_jitter, doubt, valid), "temporal_blend",
                     ("current", "previous", "previous_jitter", "doubt", "valid"))  # fmt: skip
    return native_module().temporal_blend(
        *arrays,
        blend=float(blend),
        hold_doubt=float(hold_doubt),
        out=out,
        stream=resolve_stream(stream, "temporal_blend", current, previous),
    )


def temporal_hold(
    labels: Any,
    scores: Any,
    state: Any,
    noise: Any,
    anchor_labels: Any,
    flow: Any,
    valid: Any,
    hysteresis: float,
    measured: Any = None,
    stream: Optional[int] = None,
) -> None:
    """The hysteresis, in place on ``labels [H, W]`` int32 and ``scores [H, W]`` float32 (the argmax of ``state``
    resized to the frame): where ``valid`` and the anchor's label read at ``x + flow(x)`` (nearest, ``ops.warp``'s
    rule) differs from the label and is a class of ``state``, the anchor's label and its score (``state`` read
    bilinearly at the pixel) stay unless ``scores - kept < hysteresis * noise`` fails (``noise [h, w]`` read
    bilinearly). Nothing happens when ``hysteresis`` is 0 or ``measured[0]`` (``temporal_blend``'s) is 0."""
    arrays = _native((labels, scores, state, noise, anchor_labels, flow, valid, measured), "temporal_hold",
                     ("labels", "scores", "state", "noise", "anchor_labels", "flow", "valid", "measured"))  # fmt: skip
    native_module().temporal_hold(
        *arrays, hysteresis=float(hysteresis), stream=resolve_stream(stream, "temporal_hold", state, labels)
    )


def temporal_propagate(
    anchor_labels: Any,
    anchor_scores: Any,
    flow: Any,
    fill: Optional[Sequence[Any]] = None,
    out: Optional[Sequence[Any]] = None,
    stream: Optional[int] = None,
) -> Tuple[Any, Any]:
    """A frame between keyframes: ``scores = warp(anchor_scores, flow)`` (bilinear), ``labels`` the anchor's labels
    warped (nearest), where the flow is not valid those of the nearest valid pixel.

    Args:
        anchor_labels: ``[H, W]`` int32; anchor_scores: ``[H, W]`` float32; flow: ``[H, W, 2]`` float32.
        fill: None (no fill) or ``(fill [h, w], rows_down [H], cols_down [W], rows_up [h], cols_up [w])`` int32:
            ``fill`` at the flow's resolution, -1 where the flow is valid, else the flat index of the nearest valid
            pixel; the index maps of OpenCV's nearest resize between the frame and the flow's resolution.
        out: optional ``(labels, scores)``.
    """
    maps = [None] * 5 if fill is None else list(fill)
    if len(maps) != 5:
        raise ValueError(
            f"temporal_propagate: fill must be (fill, rows_down, cols_down, rows_up, cols_up), got {len(maps)}"
        )
    arrays = _native([anchor_labels, anchor_scores, flow, *maps], "temporal_propagate",
                     ("anchor_labels", "anchor_scores", "flow", "fill", "rows_down", "cols_down", "rows_up", "cols_up"))  # fmt: skip
    return native_module().temporal_propagate(
        *arrays, out=out, stream=resolve_stream(stream, "temporal_propagate", anchor_labels, flow)
    )


# twin (by shape): windows.py segment_windows - class_state takes segment_windows' window geometry (logits, windows,
# head_size, scaled_size, its own size, class_bias), whose merge it computes
def class_state(
    logits: Any,
    windows: Sequence[Sequence[int]],
    head_size: Sequence[int],
    scaled_size: Sequence[int],
    state_size: Sequence[int],
    class_bias: Any = None,
    sigmoid: bool = True,
    out: Any = None,
    stream: Optional[int] = None,
) -> Any:
    """A frame's per-class state from its window logits (``pipeline.class_scores.window_class_scores`` of a sigmoid
    bundle with padded windows, where the logits are): each window's logits bilinear to ``head_size``, calibrated
    (sigmoid, minus ``class_bias``) and cut to the window, averaged where windows overlap (``segment_windows``'
    merge), then resized to ``state_size`` as ``cv2.resize(INTER_AREA)`` resizes (the host path's
    ``_area_resize``): an area average where the state is no larger than ``scaled_size`` on both axes, else
    OpenCV's linear coefficients on both axes (a small-input bundle's frame at a small stride). ``[C, h, w]``
    float32; the host path's values within float rounding (its sigmoid, its summation order)."""
    return native_module().class_state(
        as_native_array(logits, "class_state", "logits"),
        windows.tolist() if hasattr(windows, "tolist") else [tuple(w) for w in windows],
        tuple(head_size),
        tuple(scaled_size),
        tuple(state_size),
        class_bias=as_native_array(class_bias, "class_state", "class_bias"),
        sigmoid=bool(sigmoid),
        out=out,
        stream=resolve_stream(stream, "class_state", logits, class_bias),
    )
