"""The argument helpers shared by every native-op wrapper: array conversion, ``stream`` and ``scale`` checks.

Every op validates these the same way (and before the native module sees them), so a bad ``stream`` or a
masked array gets the same error from ``upsample`` as from ``similarity``.
"""

from __future__ import annotations

import math
import operator
import sys
from typing import Any

import numpy as np

__all__ = ["as_native_array", "check_stream", "check_scale", "resolve_stream"]

_MAX_STREAM = (1 << 63) - 1  # a cudaStream_t handle passed as a non-negative int64
_FLOAT32_MAX = float(np.finfo(np.float32).max)


def as_native_array(value: Any, op: str = "op", name: str = "array") -> Any:
    """A torch CPU tensor becomes a NumPy view (zero-copy, ``detach``-ed); anything else passes through unchanged
    (NumPy arrays, CUDA tensors and other ``__dlpack__``/``__cuda_array_interface__`` objects, which the native
    module validates itself).

    torch is never imported here: a tensor can only exist if the caller already imported it, and a runtime
    without torch must keep working.

    Args:
        value: the argument as given.
        op: the op's name, for error messages; name: the argument's name.
    Returns:
        what the native module is given.
    Raises:
        TypeError: a NumPy masked array (its mask would be silently ignored), or a torch tensor with the lazy
            negation / conjugation bit set (its memory does not hold its values; the same message as the native
            module's check for device tensors).
    """
    if isinstance(value, np.ma.MaskedArray):
        raise TypeError(
            f"{op}: argument '{name}' is a numpy masked array; its mask would be ignored. Pass a plain array, "
            "e.g. np.ma.filled(x, fill_value) or x.data"
        )
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(value, torch.Tensor) and value.device.type == "cpu":
        # (a CUDA tensor's lazy bits are refused by the native module, in the same words: not asked twice per call)
        for bit in ("neg", "conj"):
            if getattr(value, f"is_{bit}")():
                raise TypeError(
                    f"{op}: argument '{name}' is a torch tensor with the lazy {bit} bit set, whose memory does not "
                    f"hold its values; pass tensor.resolve_{bit}()"
                )
        return np.asarray(value.detach())
    return value


def check_stream(stream: Any, op: str) -> int:
    """A CUDA stream handle as the native ops take it: a non-negative int (``cudaStream_t``; 0 = default).

    Args:
        stream: the argument as given (``int`` or a NumPy integer; ``bool``, floats and strings are refused).
        op: the op's name, for the message.
    Returns:
        the handle as a Python int.
    Raises:
        TypeError: not an integer; ValueError: negative or larger than an int64.
    """
    if isinstance(stream, (bool, np.bool_)):
        raise TypeError(f"{op}: stream must be an int cudaStream_t handle (0 = default), got bool {stream!r}")
    try:
        handle = operator.index(stream)
    except TypeError:
        raise TypeError(
            f"{op}: stream must be an int cudaStream_t handle (0 = default), got {type(stream).__name__} {stream!r}"
        ) from None
    if not 0 <= handle <= _MAX_STREAM:
        raise ValueError(f"{op}: stream must be a cudaStream_t as a non-negative int (0 = default), got {handle}")
    return handle


def resolve_stream(stream: Any, op: str, *arrays: Any) -> int:
    """The stream an op enqueues on: ``stream`` itself (checked by :func:`check_stream`), or for ``stream=None``
    the stream the arrays' framework is working on: torch's current stream on the device of the first torch CUDA
    tensor among ``arrays`` (so ``with torch.cuda.stream(s): ops.upsample(t, ...)`` runs on ``s``, as torch's own
    ops would), else 0 (the legacy default stream; always 0 for CPU inputs). ``arrays`` are every array argument
    of the op: inputs, ``class_bias`` and ``out`` (a tuple/list of outputs is looked into), so a torch ``out=``
    orders the op on torch's stream even when the inputs come from elsewhere.

    torch is never imported here (see :func:`as_native_array`).
    """
    if stream is not None:
        return check_stream(stream, op)
    torch = sys.modules.get("torch")
    if torch is not None:
        flat = [v for a in arrays for v in (a if isinstance(a, (tuple, list)) else (a,))]
        for value in flat:
            if isinstance(value, torch.Tensor) and value.device.type == "cuda":
                return int(torch.cuda.current_stream(value.device).cuda_stream)
    return 0


def check_scale(scale: Any, op: str) -> float:
    """A finite multiplier that float32 can hold (the kernels compute in fp32).

    Raises:
        TypeError: not a real number; ValueError: NaN, infinite or beyond float32's range (|scale| > 3.4e38).
    """
    if isinstance(scale, (bool, np.bool_)) or not isinstance(scale, (int, float, np.integer, np.floating)):
        raise TypeError(f"{op}: scale must be a real number, got {type(scale).__name__} {scale!r}")
    value = float(scale)
    if not math.isfinite(value) or abs(value) > _FLOAT32_MAX:
        raise ValueError(f"{op}: scale must be finite and within float32's range (|scale| <= 3.4e38), got {value}")
    return value
