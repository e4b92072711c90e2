"""Views of a device pipeline's buffers (``Memory.empty``: NumPy arrays, torch tensors, ``CudaBuffer``) without a copy:
a shape at an element offset, or a typed view at a byte offset of a packed uint8 buffer (the video filter's one
upload a frame, ``stream.filter_arrays``)."""

from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np

from .device_pipeline import _torch_dtype

__all__ = ["buffer_view", "has_dtype"]


def _is_tensor(buffer: Any) -> bool:
    """A ``TorchMemory`` tensor: neither a NumPy array nor a ``CudaBuffer`` (the other kinds of buffer)."""
    from .cuda_memory import CudaBuffer

    return not isinstance(buffer, (np.ndarray, CudaBuffer))


def has_dtype(memory: Any, buffer: Any, dtype: Any) -> bool:
    """Whether ``buffer`` holds elements of NumPy ``dtype``."""
    if _is_tensor(buffer):
        return buffer.dtype == _torch_dtype(memory.torch, np.dtype(dtype))
    return np.dtype(buffer.dtype) == np.dtype(dtype)


def buffer_view(memory: Any, buffer: Any, shape: Sequence[int], offset: int = 0, dtype: Optional[Any] = None) -> Any:
    """``shape`` elements of ``buffer`` from element ``offset`` on; with ``dtype``: ``offset`` counts bytes of a
    uint8 ``buffer`` and the view has that element type."""
    shape = tuple(int(d) for d in shape)
    count = int(np.prod(shape))
    if isinstance(buffer, np.ndarray):
        flat = buffer.reshape(-1)
        if dtype is None:
            return flat[offset : offset + count].reshape(shape)
        return flat[offset : offset + count * np.dtype(dtype).itemsize].view(dtype).reshape(shape)
    if _is_tensor(buffer):
        flat = buffer.reshape(-1)
        if dtype is None:
            return flat[offset : offset + count].view(shape)
        size = count * np.dtype(dtype).itemsize
        return flat[offset : offset + size].view(_torch_dtype(memory.torch, np.dtype(dtype))).view(shape)
    from .cuda_memory import CudaBuffer

    step = buffer.dtype.itemsize if dtype is None else 1
    return CudaBuffer(buffer.pointer + offset * step, shape, buffer.dtype if dtype is None else dtype, buffer.stream)
