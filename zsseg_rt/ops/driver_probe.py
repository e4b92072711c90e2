"""Why a visible GPU is not used: the CUDA driver asked directly (``libcuda`` through ctypes), for the one-line warning
``cuda_available()`` gives when this machine has an NVIDIA GPU that zsseg_rt's CUDA kernels cannot run on -- a driver
too old for the CUDA runtime they were built with (the CUDA runtime's ``cudaErrorInsufficientDriver``), a GPU whose
architecture the build has no code for -- instead of a silent CPU run. A machine without an NVIDIA driver or without
a GPU gets no warning: there is nothing to use. (``runtime/device/cuda_driver.py`` is the full binding, for TensorRT; it
loads the library with :func:`load_driver_library`.)
"""

from __future__ import annotations

import ctypes
import re
from dataclasses import dataclass
from typing import Optional, Tuple

LIBRARY_NAMES = ("libcuda.so.1", "libcuda.so", "nvcuda.dll")
# The oldest driver branch each CUDA major version runs on (minor-version compatibility: a runtime 13.x runs on any
# r580+ driver, 12.x on r525+, 11.x on r450+; the CUDA toolkit release notes' table of minimum driver versions)
MIN_DRIVER = {13: "r580", 12: "r525", 11: "r450"}
# cudaGetErrorString(cudaErrorInsufficientDriver): what cuda_status() says then (the CUDA runtime also says it when no
# driver is installed at all, hence the driver probe below)
INSUFFICIENT_DRIVER = "CUDA driver version is insufficient for CUDA runtime version"
_NVCC_RELEASE = re.compile(rb"Cuda compilation tools, release (\d+)\.(\d+)")


def load_driver_library() -> ctypes.CDLL:
    """``libcuda`` (it comes with the NVIDIA driver); OSError naming every name tried when it is not there.

    By its sonames only, through the dynamic loader (which reads the ldconfig cache): ``ctypes.util.find_library``
    would add nothing the loader does not search and runs ``gcc`` / ``ld`` when the library is missing (a bare GPU
    machine's acceptance run refuses build tools)."""
    errors = []
    for name in LIBRARY_NAMES:
        try:
            return ctypes.CDLL(name)
        except OSError as exc:
            errors.append(f"{name}: {exc}")
    raise OSError("; ".join(errors))


@dataclass(frozen=True)
class DriverInfo:
    cuda_version: int  # cuDriverGetVersion: the newest CUDA this driver runs, 1000 * major + 10 * minor
    devices: int  # cuDeviceGetCount (0 where cuInit finds no device)

    @property
    def cuda(self) -> str:
        major, minor = divmod(self.cuda_version // 10, 100)
        return f"{major}.{minor}"


def probe_driver(library=None) -> Optional[DriverInfo]:
    """The installed driver's CUDA version and device count, or None without a driver (no ``libcuda``, or one that
    does not answer). Never raises."""
    try:
        lib = library if library is not None else load_driver_library()
        version, count = ctypes.c_int(0), ctypes.c_int(0)
        if lib.cuDriverGetVersion(ctypes.byref(version)) != 0:
            return None
        devices = 0
        if lib.cuInit(0) == 0 and lib.cuDeviceGetCount(ctypes.byref(count)) == 0:
            devices = int(count.value)
        return DriverInfo(int(version.value), devices)
    except (OSError, AttributeError):
        return None


def built_cuda_version(module_path: Optional[str]) -> Optional[Tuple[int, int]]:
    """The CUDA release the native module's kernels were compiled with (nvcc stamps "Cuda compilation tools, release
    X.Y" into every fatbinary), or None when the file does not say."""
    if not module_path:
        return None
    try:
        with open(module_path, "rb") as handle:
            found = _NVCC_RELEASE.search(handle.read())
    except OSError:
        return None
    return (int(found.group(1)), int(found.group(2))) if found else None


def unusable_gpu_message(status: str, driver: Optional[DriverInfo], built: Optional[Tuple[int, int]]) -> Optional[str]:
    """The warning for a machine whose GPU zsseg_rt's CUDA ops cannot use (``status``: the module's cuda_status()),
    or None where there is no GPU to use."""
    if driver is None or driver.devices == 0:
        return None
    if status.strip() == INSUFFICIENT_DRIVER:
        runtime = f"CUDA {built[0]}.{built[1]}" if built else "a newer CUDA"
        need = MIN_DRIVER.get(built[0], f"one for CUDA {built[0]}") if built else "a newer one"
        return (
            f"zsseg_rt's CUDA kernels were built with {runtime} and need an NVIDIA driver {need} or newer, but this "
            f"machine's driver supports CUDA {driver.cuda} only: the native ops run on the CPU; update the NVIDIA "
            f"driver to {need} or newer"
        )
    return (
        f"a CUDA GPU is visible ({driver.devices} device(s), driver for CUDA {driver.cuda}) but zsseg_rt's CUDA ops "
        f"cannot use it ({status}): the native ops run on the CPU"
    )
