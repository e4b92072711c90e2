"""Loads the native module once and says whether CUDA can be used."""

from __future__ import annotations

import functools


@functools.lru_cache(maxsize=None)
def native_module():
    """Return ``zsseg_rt._C`` or raise ImportError with what to do."""
    try:
        from zsseg_rt import _C
    except ImportError as exc:  # pragma: no cover - only when the package was not built
        raise ImportError(_not_built_message()) from exc
    return _C


def _not_built_message() -> str:
    """Why ``_C`` is missing. The usual cause after ``pip install .``: Python imported ``zsseg_rt`` from a source
    checkout (the current directory, or a script that put the checkout on ``sys.path``) instead of the installed
    package, and a checkout holds no built module."""
    import os

    import zsseg_rt

    where = os.path.dirname(os.path.abspath(zsseg_rt.__file__))
    checkout = os.path.isfile(os.path.join(os.path.dirname(where), "CMakeLists.txt"))
    hint = (
        f" Python imported zsseg_rt from the source checkout {where} (the current directory or PYTHONPATH comes "
        "before the installed package): run from another directory, or install the checkout itself with "
        "`pip install --no-build-isolation -e .`."
        if checkout
        else ""
    )
    return (
        f"zsseg_rt._C (the native ops) is not built in {where}.{hint} Install the package with `pip install .` "
        "(development: `pip install --no-build-isolation -e .`); see docs/setup.md."
    )


def cuda_available() -> bool:
    """True when the CUDA kernels were compiled in and at least one CUDA device is usable.

    Never raises: no driver, no GPU or a CPU-only build all give False.
    """
    try:
        mod = native_module()
    except ImportError:
        return False
    return bool(mod.cuda_available())


def cuda_unavailable_reason() -> str:
    """Why ``cuda_available()`` is False ("" when it is True): a CPU-only build, no driver, no device, or a GPU
    whose architecture this build has no code for (rebuild with ``CMAKE_CUDA_ARCHITECTURES`` including it)."""
    try:
        mod = native_module()
    except ImportError as exc:
        return str(exc).splitlines()[0]
    if not mod.cuda_compiled():
        return "zsseg_rt was built without CUDA (no nvcc at build time)"
    if mod.cuda_available():
        return ""
    return str(mod.cuda_status())
