"""Native ops of zsseg_rt: the Python face of ``zsseg_rt._C``.

CPU calls take and return NumPy arrays; CUDA calls take device arrays (torch/CuPy through DLPack or
``__cuda_array_interface__``) and return ``zsseg_rt._C.DeviceArray`` (which exposes both protocols).
``reference`` holds the pure NumPy specification each op is tested against.
"""

from . import reference
from ._loader import cuda_available, cuda_unavailable_reason, native_module
from .dense import relation_descriptor, similarity
from .image import preprocess
from .masks import segment, upsample
from .refine import pamr
from .windows import segment_windows

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
    "pamr",
    "reference",
]
