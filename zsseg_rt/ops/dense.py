"""Dense native ops: patch-text similarity and ZegCLIP's relation descriptor.

Both run on the CPU for float32 NumPy arrays (torch CPU tensors are accepted and viewed as NumPy without a
copy) and on CUDA for device arrays (torch / CuPy / ``DeviceArray``, float32 or float16) exposing
``__dlpack__`` or ``__cuda_array_interface__``. Validation and its error messages live in C++
(``csrc/bindings/array_args.h``); these wrappers only forward.

CUDA calls enqueue their kernels on ``stream`` (an integer ``cudaStream_t``; 0 = the legacy default stream; None =
torch's current stream for torch inputs) and return without synchronising. Outputs are allocated stream-ordered
(``cudaMallocAsync``) unless given with ``out=``; the returned ``DeviceArray`` orders its consumers after an event
recorded at the end of the launch (``__dlpack__(stream=s)`` makes ``s`` wait for it; ``numpy()`` waits for it
without the GIL), never through the caller's stream handle.
"""

from __future__ import annotations

from typing import Any, Optional

from ._arrays import as_native_array as _as_native_array
from ._arrays import check_scale, resolve_stream
from ._loader import native_module

__all__ = ["similarity", "relation_descriptor"]


def similarity(
    patches: Any, text: Any, normalize: bool = False, scale: float = 1.0, stream: Optional[int] = None, out: Any = None
) -> Any:
    """Patch-text similarity ``scale * <text_c, patch_n>``, optionally on L2-normalised vectors.

    Args:
        patches: ``[B, N, D]`` patch embeddings. float32 NumPy array / torch CPU tensor, or a CUDA array
            (float32 or float16).
        text: ``[C, D]`` class embeddings shared by the batch, or ``[B, C, D]``; same device and dtype as
            ``patches``.
        normalize: L2-normalise both sides over D first (divides by ``max(norm, 1e-12)``; zero vectors give 0).
        scale: multiplies the dot products (e.g. CLIP's logit scale); finite, within float32's range.
        stream: the CUDA stream of the launch (:mod:`zsseg_rt.ops`, "stream"); 0/None for CPU inputs.
        out: optional preallocated ``[B, C, N]`` result of the result's dtype (:mod:`zsseg_rt.ops`, "out").
    Returns:
        ``[B, C, N]``: float32 ``numpy.ndarray`` on the CPU; on CUDA a ``zsseg_rt._C.DeviceArray`` with the
        inputs' dtype (fp32 accumulation), usable with ``torch.from_dlpack``.
    Raises:
        TypeError: an argument is not an array or has the wrong dtype.
        ValueError: wrong rank or shape, mixed devices, non-contiguous, empty, or too large (> 2^31 - 1 elements);
            a negative ``stream``; a non-finite or out-of-range ``scale``; an unusable ``out``.
    """
    _as_native_array(out, "similarity", "out")  # the same checks; ``out`` itself is passed on (and returned)
    return native_module().similarity(
        _as_native_array(patches, "similarity", "patches"),
        _as_native_array(text, "similarity", "text"),
        bool(normalize),
        check_scale(scale, "similarity"),
        out=out,
        stream=resolve_stream(stream, "similarity", patches, text, out),
    )


def relation_descriptor(
    text: Any,
    image_global: Any,
    weight: Optional[Any] = None,
    bias: Optional[Any] = None,
    stream: Optional[int] = None,
    out: Any = None,
) -> Any:
    """ZegCLIP's relationship descriptor ``Linear(concat(text * g, text))``, fused (the concat is never built).

    Args:
        text: ``[C, D]`` class embeddings (float32 on the CPU; float32 or float16 on CUDA).
        image_global: ``[B, D]`` global image embeddings, same device and dtype.
        weight: ``[Dout, 2D]`` linear weight, or None for the bare ``concat(text * g, text)``.
        bias: ``[Dout]`` or None; only valid together with ``weight``.
        stream: the CUDA stream of the launch (:mod:`zsseg_rt.ops`, "stream"); 0/None for CPU inputs.
        out: optional preallocated ``[B, C, Dout]`` result of the result's dtype (:mod:`zsseg_rt.ops`, "out").
    Returns:
        ``[B, C, Dout]`` (``[B, C, 2D]`` without weight): float32 ``numpy.ndarray`` on the CPU, or a
        ``DeviceArray`` with the inputs' dtype on CUDA.
    Raises:
        TypeError: an argument is not an array or has the wrong dtype.
        ValueError: shape mismatch, bias without weight, mixed devices, non-contiguous, empty or too large; an
            unusable ``out``.
    """
    _as_native_array(out, "relation_descriptor", "out")
    return native_module().relation_descriptor(
        _as_native_array(text, "relation_descriptor", "text"),
        _as_native_array(image_global, "relation_descriptor", "image_global"),
        _as_native_array(weight, "relation_descriptor", "weight"),
        _as_native_array(bias, "relation_descriptor", "bias"),
        out=out,
        stream=resolve_stream(stream, "relation_descriptor", text, image_global, weight, bias, out),
    )
