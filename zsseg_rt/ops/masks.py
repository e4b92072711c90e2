"""Mask-logit post-processing ops: bilinear ``upsample`` and the fused ``segment``.

Both accept NumPy float32 arrays on the CPU (torch CPU tensors are converted with ``np.asarray`` when torch is
already imported) and CUDA device arrays (torch / CuPy / ``DeviceArray``, float32 or float16) through DLPack or
``__cuda_array_interface__``. Validation (dtype, rank, contiguity, sizes, devices) happens once, in the native
module; the messages name the argument, what was expected and what was given. The NumPy specification of both
ops is :mod:`zsseg_rt.ops.reference`.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence, Tuple

from ._arrays import as_native_array as _as_native_input
from ._arrays import resolve_stream
from ._loader import native_module

__all__ = ["upsample", "segment"]


def upsample(
    logits: Any,
    size: Sequence[int],
    crop: Optional[Sequence[int]] = None,
    sigmoid: bool = False,
    class_bias: Any = None,
    stream: Optional[int] = None,
    out: Any = None,
) -> Any:
    """Bilinear resize exactly like ``F.interpolate(mode="bilinear", align_corners=False)`` (no antialias),
    optionally followed by a fused per-class calibration.

    Computes ``out[b, c, y, x] = f(up(logits)[b, c, y, x]) - class_bias[c]`` with ``f`` = logistic sigmoid when
    ``sigmoid`` else identity, and no bias term when ``class_bias`` is None, in ONE pass over the output (no
    intermediate ``[B, C, H, W]`` maps). ZegCLIP's per-window step "resize -> sigmoid -> minus 0.1 on seen
    classes" is ``upsample(logits, size, sigmoid=True, class_bias=bias)``. With the defaults the result is
    bit-for-bit the plain resize.

    Args:
        logits: ``[B, C, h, w]`` float32 (CPU) or float32/float16 (CUDA), C-contiguous.
        size: ``(H, W)`` output size, each >= 1 (up- or down-sampling, any aspect ratio).
        crop: optional ``(top, left, height, width)`` valid region of ``logits`` (e.g. without padding); the
            result equals ``upsample(logits[..., top:top+height, left:left+width], size)``. Must lie inside
            the ``h x w`` map.
        sigmoid: apply the logistic function to the resized values (fp32 math; NaN stays NaN). On the CPU a
            vectorised approximation with absolute error below 1e-7 is used; on CUDA ``expf``.
        class_bias: ``[C]`` float32 on the same device as ``logits`` (C-contiguous), subtracted last, or None.
            Every value must be finite (NaN and +/-inf raise ValueError naming the class, on both devices).
            On CUDA the check runs on the device without a host wait and the ValueError comes once the launch
            has finished: from ``numpy()`` of an output, from the next op call, or from
            ``native_module().check_pending_errors()``.
        stream: the CUDA stream of the launch (:mod:`zsseg_rt.ops`, "stream"); 0/None for CPU inputs.
        out: optional preallocated ``[B, C, H, W]`` result of the result's dtype (:mod:`zsseg_rt.ops`, "out").
    Returns:
        ``[B, C, H, W]``: a float32 NumPy array for CPU input, a ``zsseg_rt._C.DeviceArray`` with the input's
        dtype for CUDA input (enqueued on ``stream``, not synchronised; fp16 output is rounded once, after the
        calibration).
    """
    _as_native_input(out, "upsample", "out")  # the same checks; ``out`` itself is passed on (and returned)
    return native_module().upsample(
        _as_native_input(logits, "upsample", "logits"),
        size,
        crop=crop,
        sigmoid=bool(sigmoid),
        class_bias=_as_native_input(class_bias, "upsample", "class_bias"),
        out=out,
        stream=resolve_stream(stream, "upsample", logits, class_bias, out),
    )


def segment(
    logits: Any,
    size: Sequence[int],
    class_bias: Any = None,
    sigmoid: bool = True,
    crop: Optional[Sequence[int]] = None,
    stream: Optional[int] = None,
    out: Optional[Sequence[Any]] = None,
) -> Tuple[Any, Any]:
    """Fused upsample + optional sigmoid + per-class bias + argmax over classes.

    Computes, per output pixel, the calibrated values ``f(up(logits)[c]) - class_bias[c]`` (``f`` = sigmoid or
    identity) and their argmax with ``torch.argmax``'s rules (lowest index on ties; if any value is NaN the
    first NaN class wins and its score is NaN), without ever materialising the ``[B, C, H, W]`` map.
    ZegCLIP's inductive calibration is ``sigmoid=True`` with ``class_bias = 0.1`` on seen classes.

    Args:
        logits: ``[B, C, h, w]`` mask logits, float32 (CPU) or float32/float16 (CUDA), C-contiguous.
        size: ``(H, W)`` output size, each >= 1.
        class_bias: ``[C]`` float32 on the same device, subtracted after the sigmoid, or None. Every value must
            be finite (NaN and +/-inf raise ValueError naming the class); to drop a class, leave it out.
            On CUDA the check runs on the device without a host wait and the ValueError comes once the launch
            has finished: from ``numpy()`` of an output, from the next op call, or from
            ``native_module().check_pending_errors()``.
        sigmoid: apply the logistic function before subtracting the bias.
        crop: optional ``(top, left, height, width)`` valid region of ``logits`` (see :func:`upsample`).
        stream: the CUDA stream of the launch (:mod:`zsseg_rt.ops`, "stream"); 0/None for CPU inputs.
        out: optional preallocated ``(labels, scores)``: ``[B, H, W]`` int32 and float32 (:mod:`zsseg_rt.ops`, "out").
    Returns:
        ``(labels, scores)``: ``labels [B, H, W]`` int32 class indices and ``scores [B, H, W]`` float32 winning
        calibrated values. NumPy arrays for CPU input, ``DeviceArray`` for CUDA input (enqueued on ``stream``).
        On the CPU the winner is chosen with fp64 calibration (like the reference); on CUDA in fp32, so the
        two can differ only where two classes are within fp32 rounding of each other. Note that torch's fp32
        ``sigmoid`` saturates to exactly 1.0 above x ~ 17, where ``torch.argmax`` then picks the lowest index;
        this op (like the fp64 reference) still orders such classes by their logits.
    """
    if isinstance(out, (tuple, list)):
        for i, item in enumerate(out):
            _as_native_input(item, "segment", f"out[{i}]")
    return native_module().segment(
        _as_native_input(logits, "segment", "logits"),
        size,
        class_bias=_as_native_input(class_bias, "segment", "class_bias"),
        sigmoid=bool(sigmoid),
        crop=crop,
        out=out,
        stream=resolve_stream(stream, "segment", logits, class_bias, out),
    )
