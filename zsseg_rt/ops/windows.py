"""The official exact multi-window post-processing as one native op (no [C, H, W] buffer of any size)."""

from __future__ import annotations

from typing import Any, Optional, Sequence, Tuple

from ._arrays import as_native_array, check_stream
from ._loader import native_module


def segment_windows(
    logits: Any,
    windows: Sequence[Sequence[int]],
    head_size: Sequence[int],
    scaled_size: Sequence[int],
    output_size: Sequence[int],
    class_bias: Any = None,
    sigmoid: Optional[bool] = None,
    stream: int = 0,
    softmax: bool = False,
    logit_scale: float = 1.0,
    class_drop: Any = None,
) -> Tuple[Any, Any]:
    """Sliding-window scores -> labels, in the official order, fused.

    For window ``k`` at ``(y1, y2, x1, x2)`` of the rescaled image: its logits are resized bilinearly
    (``align_corners=False``) to ``head_size``, calibrated (``sigmoid`` -> minus ``class_bias``) and cut to the
    window's extent (the window's graph input was zero-padded to the head size); overlapping windows are
    averaged; the average is resized bilinearly to ``output_size``; the argmax over classes follows
    ``torch.argmax`` (lowest index on ties, the first NaN class wins with score NaN). This is exactly
    ``pipeline.calibrated_window_scores`` -> ``pipeline.merge_windows`` -> ``pipeline.finalize_scores`` (the CPU
    path uses the same per-element arithmetic, so labels and scores are the unfused path's), with memory
    O(classes x scaled width) per thread instead of O(classes x scaled height x scaled width).

    Args:
        logits: ``[n, C, h, w]`` per-window mask logits, float32 (CPU) or float32/float16 (CUDA), C-contiguous.
        windows: ``n`` placements ``(y1, y2, x1, x2)`` (``pipeline.sliding_windows``); together they must cover
            the rescaled image; each at most ``head_size``.
        head_size: ``(S, S)`` the size every window's logits are resized to (the model's image size).
        scaled_size: ``(H', W')`` the rescaled image the windows tile.
        output_size: ``(H, W)`` the original image size.
        class_bias: ``[C]`` float32 on the logits' device, finite, or None.
        sigmoid: calibrate with the logistic function (ZegCLIP family; the default unless ``softmax``); False
            averages raw values.
        stream: CUDA stream for device inputs; 0 for CPU inputs.
        softmax: the training-free family's order instead (SCLIP/MaskCLIP slide inference +
            ``pipeline.softmax_segment``): raw window logits averaged, ``* logit_scale``, resized to
            ``output_size``, softmax over classes per pixel, the probability of each ``class_drop`` class set to
            0 (SCLIP's area filter; CPU only), minus ``class_bias``, argmax. Scores are that winning value
            (probability minus bias). A pixel with a NaN logit or an infinite max gets label 0 and score NaN (the
            softmax is all NaN there; torch's argmax of all-NaN is 0). No ``[C, H, W]`` buffer either.
        logit_scale: softmax only: multiplies the averaged logits before the resize.
        class_drop: softmax only: ``C`` booleans, True = probability 0 (CPU only).
    Returns:
        ``(labels [H, W] int32, scores [H, W] float32)``: NumPy arrays, or ``DeviceArray`` for CUDA inputs.
    """
    return native_module().segment_windows(
        as_native_array(logits, "segment_windows", "logits"),
        windows.tolist() if hasattr(windows, "tolist") else windows,
        head_size,
        scaled_size,
        output_size,
        class_bias=as_native_array(class_bias, "segment_windows", "class_bias"),
        sigmoid=(not softmax) if sigmoid is None else bool(sigmoid),
        softmax=bool(softmax),
        logit_scale=float(logit_scale),
        class_drop=None
        if class_drop is None
        else (class_drop.tolist() if hasattr(class_drop, "tolist") else list(class_drop)),
        stream=check_stream(stream, "segment_windows"),
    )
