"""How far an fp32 result of ONNX Runtime (or any other fp32 implementation) may be from PyTorch's, on any CPU.

Error model. Every fp32 graph output is a chain of reductions (dot products, convolutions, softmax and norm sums);
each reduction ``sum_i a_i b_i`` computed in fp32 carries an error of order ``eps32 * sum_i |a_i b_i|`` - the size of
the TERMS, not of the result (a logit that is a near-cancellation of large terms is small, its error is not), and
the errors of earlier layers propagate through later ones. Kernels for different instruction sets (AVX-512,
AVX2, SSE, NEON) and libraries (ONNX Runtime's MLAS, PyTorch's oneDNN/MKL) sum in different orders and blocks:
that changes the error's value, never its scale, which is a property of the computation and its input. So the
scale is MEASURED per case, on the same inputs: PyTorch's own fp32 result against the same module run in
float64 (exact to ~1e-16 relative, far below fp32 rounding)::

    torch_error = max |torch_fp32 - torch_fp64|
    error       = max |candidate  - torch_fp64|
    bound       = ERROR_RATIO * torch_error + FLOOR_ULPS * eps32 * max |torch_fp64|

and the candidate passes when ``error <= bound``. ``ERROR_RATIO`` is the factor by which two sound fp32
implementations may differ in error on the same input; measured on the golden ZegCLIP / CLIP-RC bundles (image
encoder, head at C = 1, 7, 32, text encoder; random and real inputs) with ONNX Runtime 1.2x on AVX-512 (native),
AVX2 (``qemu-x86_64 -cpu Haswell``) and SSE4.2 (``-cpu Nehalem``): ratios 0.37 to 3.0 (CLIP-RC head errors up to
6.6e-4 at logit scale 6, i.e. ~1000 ulps of the output: a bound relative to the output's scale alone cannot
hold). 8 leaves a margin of 2.6x over the worst measured ratio, while a real export defect (a wrong op, a
dropped term, an fp16 cast) moves outputs by 1e-3 relative or more, orders of magnitude above fp32 rounding.
The floor (16 ulps of the output's scale) covers outputs that PyTorch happens to compute exactly.

NumPy only: callers compute the three arrays (``export.verify`` builds the float64 twin of the model).
"""

from __future__ import annotations

from typing import Any, Dict

import numpy as np

__all__ = ["EPS32", "ERROR_RATIO", "FLOOR_ULPS", "BOUND_MODEL", "fp32_error_case", "within_fp32_bound"]

EPS32 = float(np.finfo(np.float32).eps)  # 1.19e-7
ERROR_RATIO = 8.0
FLOOR_ULPS = 16.0
BOUND_MODEL = (
    f"max|candidate - torch_fp64| <= {ERROR_RATIO:g} x max|torch_fp32 - torch_fp64| "
    f"+ {FLOOR_ULPS:g} x eps32 x max|torch_fp64|"
)


def _max_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    a64, b64 = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a64.shape != b64.shape:
        raise ValueError(f"shapes differ: {a64.shape} vs {b64.shape}")
    return float(np.max(np.abs(a64 - b64))) if a64.size else 0.0


def fp32_error_case(candidate: np.ndarray, torch_fp32: np.ndarray, torch_fp64: np.ndarray) -> Dict[str, Any]:
    """The measurements of one output under the error model (JSON-able).

    Args:
        candidate: the fp32 result under test (e.g. ONNX Runtime), any shape.
        torch_fp32: PyTorch's fp32 result on the same inputs.
        torch_fp64: the same PyTorch module in float64 on the same inputs (cast to float64).

    Returns:
        ``max_abs`` (candidate vs the float64 value: the candidate's error), ``atol`` (the bound it is held to),
        ``torch_error`` (PyTorch fp32 vs float64), ``scale`` (max |float64 value|), ``vs_torch_fp32`` (candidate vs
        PyTorch fp32, for reference), ``error_ratio`` (max_abs / torch_error) and ``passed``.
    """
    error = _max_abs_diff(candidate, torch_fp64)
    torch_error = _max_abs_diff(torch_fp32, torch_fp64)
    arr = np.asarray(torch_fp64, dtype=np.float64)
    scale = float(np.max(np.abs(arr))) if arr.size else 0.0
    bound = ERROR_RATIO * torch_error + FLOOR_ULPS * EPS32 * scale
    finite = bool(np.all(np.isfinite(candidate)))
    return {
        "max_abs": error,
        "atol": bound,
        "torch_error": torch_error,
        "scale": scale,
        "vs_torch_fp32": _max_abs_diff(candidate, torch_fp32),
        "error_ratio": error / torch_error if torch_error > 0 else None,
        "passed": bool(finite and error <= bound),
    }


def within_fp32_bound(candidate: np.ndarray, torch_fp32: np.ndarray, torch_fp64: np.ndarray) -> bool:
    """True when ``candidate`` is within the error model's bound (see the module docstring)."""
    return bool(fp32_error_case(candidate, torch_fp32, torch_fp64)["passed"])
