"""Native ops of zsseg_rt: the Python face of ``zsseg_rt._C``.

CPU calls take and return NumPy arrays; CUDA calls take device arrays (torch/CuPy through DLPack or
``__cuda_array_interface__``) and return ``zsseg_rt._C.DeviceArray`` (which exposes both protocols).
``reference`` holds the pure NumPy specification each op is tested against.

Two arguments mean the same in every op:

* ``stream``: the CUDA stream as an integer ``cudaStream_t`` (0 = the legacy default stream), or None (default):
  torch's current stream for torch CUDA inputs, else 0. Must be 0/None for CPU inputs. Nothing keeps the handle
  after the call (the caller may destroy the stream); inputs stay alive until the launch finishes.
* ``out``: an optional preallocated result to write into (and return), of the shape and dtype the op documents,
  on the inputs' device (a NumPy array on the CPU; a CUDA array via DLPack / ``__cuda_array_interface__``),
  C-contiguous, writable, not overlapping any input (for a ``(labels, scores)`` pair: distinct, either entry None
  to allocate that one). No allocation happens then (on CUDA: no ``cudaMalloc``, so the call can be captured in a
  CUDA graph).

A pipeline that calls one op with the same arrays frame after frame prepares it once: ``SegmentWindowsPlan``
validates the arguments when it is made, and its ``launch()`` is one call into the kernel's launcher (no argument
parsing, no completion event), with the ordering left to the caller's one stream.
"""

from . import reference
from ._loader import cuda_available, cuda_unavailable_reason, native_module
from .dense import relation_descriptor, similarity
from .image import preprocess
from .masks import segment, upsample
from .refine import pamr
from .temporal import class_state, temporal_blend, temporal_hold, temporal_propagate
from .warp import warp
from .windows import SegmentWindowsPlan, segment_windows, segment_windows_kernels

__all__ = [
    "cuda_available",
    "cuda_unavailable_reason",
    "native_module",
    "similarity",
    "relation_descriptor",
    "upsample",
    "segment",
    "preprocess",
    "segment_windows",
    "SegmentWindowsPlan",
    "segment_windows_kernels",
    "pamr",
    "warp",
    "temporal_blend",
    "temporal_hold",
    "temporal_propagate",
    "class_state",
    "reference",
]
