"""The one array-conversion helper of the native-op wrappers."""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

__all__ = ["as_native_array"]


def as_native_array(value: Any) -> Any:
    """A torch CPU tensor becomes a NumPy view (zero-copy, ``detach``-ed); anything else passes through unchanged
    (NumPy arrays, CUDA tensors and other ``__dlpack__``/``__cuda_array_interface__`` objects, which the native
    module validates itself).

    torch is never imported here: a tensor can only exist if the caller already imported it, and a runtime
    without torch must keep working.
    """
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(value, torch.Tensor) and value.device.type == "cpu":
        return np.asarray(value.detach())
    return value
