"""Values moved along a dense flow as a native op: the temporal filter's warp (``zsseg_rt.stream.video_filter.temporal.warp``),
on the CPU and on CUDA. NumPy specification: :func:`zsseg_rt.ops.reference.warp`."""

from __future__ import annotations

from typing import Any, Optional

from ._arrays import as_native_array, resolve_stream
from ._loader import native_module

__all__ = ["warp"]


def warp(values: Any, flow: Any, nearest: bool = False, stream: Optional[int] = None, out: Any = None) -> Any:
    """``out[b, c, y, x] = values[b, c]`` sampled at ``(x + flow[b, y, x, 0], y + flow[b, y, x, 1])``: bilinear, or
    nearest (``nearest=True``: label maps), with the border replicated (csrc/include/zsseg/warp.h has the exact rule).

    Args:
        values: ``[B, C, H, W]`` float32 (C-contiguous; CPU NumPy / torch CPU, or a CUDA array).
        flow: ``[B, H, W, 2]`` float32 displacements ``(dx, dy)`` in pixels, one per output pixel, on the values'
            device. A displacement that is not finite gives NaN in every channel of that pixel.
        nearest: nearest-neighbour sampling (a half rounds up) instead of bilinear.
        stream: CUDA stream as an integer ``cudaStream_t`` (None: torch's current stream for torch CUDA inputs, else
            0); must be 0/None on the CPU.
        out: optional preallocated ``[B, C, H, W]`` float32 result on the inputs' device (not overlapping them).
    Returns:
        ``[B, C, H, W]`` float32: a NumPy array for CPU input, a ``DeviceArray`` for CUDA input (enqueued on
        ``stream``, not synchronised).
    Raises:
        TypeError: an argument is not a float32 array. ValueError: shapes that do not match, mixed devices, an
        unusable ``out``.
    """
    if isinstance(nearest, bool) is False:
        raise TypeError(f"warp: nearest must be a bool, got {type(nearest).__name__} {nearest!r}")
    as_native_array(out, "warp", "out")
    return native_module().warp(
        as_native_array(values, "warp", "values"),
        as_native_array(flow, "warp", "flow"),
        nearest=nearest,
        out=out,
        stream=resolve_stream(stream, "warp", values, flow),
    )
