"""Loads the native module once and says whether CUDA can be used."""
from __future__ import annotations

import functools


@functools.lru_cache(maxsize=None)
def native_module():
    """Return ``zsseg_rt._C`` or raise ImportError with what to do."""
    try:
        from zsseg_rt import _C
    except ImportError as exc:  # pragma: no cover - only when the package was not built
        raise ImportError(
            "zsseg_rt._C (the native ops) is not built. Install the package with `pip install .` "
            "(development: `pip install --no-build-isolation -e .`); see README.md."
        ) from exc
    return _C


def cuda_available() -> bool:
    """True when the CUDA kernels were compiled in and at least one CUDA device is usable.

    Never raises: no driver, no GPU or a CPU-only build all give False.
    """
    try:
        mod = native_module()
    except ImportError:
        return False
    return bool(mod.cuda_available())
