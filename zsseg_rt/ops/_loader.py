"""Loads the native module once and says whether CUDA can be used.

Which build is loaded:
    * ``zsseg_rt._C`` (default): the module ``pip install`` built.
    * ``ZSSEG_CUDA_EMULATION=1``: ``zsseg_rt._C_emulated``, the binding layer and CUDA kernels built against the
      host emulation of the CUDA runtime (``tools/build_emulated.sh``; CI runs the Python CUDA tests on it).
    * ``ZSSEG_NATIVE_MODULE=/path/to/_C*.so`` (or ``_C_emulated*.so`` with the variable above): that file, e.g. a
      build made with another toolchain (CI's static-libstdc++ job).
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import os

EMULATION_ENV = "ZSSEG_CUDA_EMULATION"
MODULE_ENV = "ZSSEG_NATIVE_MODULE"


def emulated() -> bool:
    """True when ``ZSSEG_CUDA_EMULATION=1`` asks for the emulated build."""
    return os.environ.get(EMULATION_ENV, "") == "1"


def _load_from_path(name: str, path: str):
    spec = importlib.util.spec_from_file_location(f"zsseg_rt.{name}", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"${MODULE_ENV}={path!r} is not a loadable extension module")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@functools.lru_cache(maxsize=None)
def native_module():
    """Return the native module (``zsseg_rt._C``, or the build named by the variables above) or raise
    ImportError with what to do."""
    name = "_C_emulated" if emulated() else "_C"
    path = os.environ.get(MODULE_ENV, "")
    if path:
        return _load_from_path(name, path)
    try:
        return importlib.import_module(f"zsseg_rt.{name}")
    except ImportError as exc:  # pragma: no cover - only when the package was not built
        if name == "_C_emulated":
            raise ImportError(
                f"{EMULATION_ENV}=1 needs zsseg_rt._C_emulated (the build on the emulated CUDA runtime); build it "
                "with `bash tools/build_emulated.sh`"
            ) from exc
        raise ImportError(_not_built_message()) from exc


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

    Never raises: no driver, no GPU or a CPU-only build all give False. Where a GPU is visible but the CUDA build
    cannot use it (a driver too old for the CUDA runtime it was built with: the warning names the driver it needs;
    a GPU architecture the build has no code for), the first call warns once (RuntimeWarning), instead of a silent
    CPU run.
    """
    try:
        mod = native_module()
    except ImportError:
        return False
    available = bool(mod.cuda_available())
    if not available and mod.cuda_compiled():
        _warn_unusable_gpu(mod)
    return available


_WARNED_UNUSABLE: list = []  # the warning below, once per process


def _warn_unusable_gpu(mod) -> None:
    """Warn (once) when a GPU is visible that ``mod``'s CUDA kernels cannot run on (``ops/driver_probe.py``)."""
    if _WARNED_UNUSABLE:
        return
    import warnings

    from . import driver_probe

    _WARNED_UNUSABLE.append(True)
    path = getattr(mod, "__file__", None)
    message = driver_probe.unusable_gpu_message(
        str(mod.cuda_status()), driver_probe.probe_driver(), driver_probe.built_cuda_version(path)
    )
    if message:
        warnings.warn(message, RuntimeWarning, stacklevel=3)


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
