"""The per-class bias of a vocabulary (the seen-class calibration, or one given by the caller)."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["validate_class_bias"]


def validate_class_bias(class_bias: Any, num_classes: int) -> np.ndarray:
    """Check a per-class calibration bias before it is used; returns it as ``[C]`` float32.

    Raises:
        TypeError: not numeric (strings, objects, booleans).
        ValueError: not one value per class (a 1-D ``[C]`` sequence), or NaN / infinite / beyond float32.
    """
    try:
        values = np.asarray(class_bias)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"class_bias must be {num_classes} numbers, got {type(class_bias).__name__} ({exc})") from None
    if values.dtype.kind not in "iuf":
        raise TypeError(
            f"class_bias must be {num_classes} numbers (one per class), got dtype {values.dtype} "
            f"from {type(class_bias).__name__}"
        )
    if values.shape != (num_classes,):
        raise ValueError(f"class_bias must have shape [{num_classes}] (one value per class), got {list(values.shape)}")
    with np.errstate(over="ignore"):
        bias = values.astype(np.float32)
    bad = np.flatnonzero(~np.isfinite(bias))
    if bad.size:
        raise ValueError(
            f"class_bias must be finite float32 values; classes {bad[:10].tolist()} have {values[bad[:10]].tolist()}"
        )
    return np.ascontiguousarray(bias)
