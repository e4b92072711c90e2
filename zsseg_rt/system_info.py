"""What machine a measurement ran on (CPU, GPU, Jetson power mode, library versions), for profiles and benchmarks.

Every probe is best effort: a missing tool or file gives None, never an error.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import sys
import time
from typing import Any, Dict, List, Optional

import numpy as np

__all__ = [
    "system_info",
    "cpu_model",
    "jetson_info",
    "cuda_version",
    "gpu_info",
    "run_quietly",
    "current_rss_bytes",
    "peak_rss_bytes",
    "process_max_rss_bytes",
    "reset_peak_rss",
]


def run_quietly(cmd: List[str], timeout: float = 5.0) -> Optional[str]:
    if shutil.which(cmd[0]) is None:
        return None
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _read(path: str) -> Optional[str]:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read().replace("\x00", "").strip()
    except OSError:
        return None


def _proc_status_bytes(key: str) -> Optional[int]:
    """A ``kB`` field of ``/proc/self/status`` (Linux) in bytes, or None."""
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def process_max_rss_bytes() -> Optional[int]:
    """The largest RSS this process ever had (``getrusage``: KiB on Linux, bytes on macOS), or None (not POSIX)."""
    try:
        import resource
    except ImportError:
        return None
    value = int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    return value if sys.platform == "darwin" else value * 1024


def current_rss_bytes() -> Optional[int]:
    """The resident set size of this process in bytes (Linux ``/proc/self/statm``), or None where unknown."""
    try:
        with open("/proc/self/statm", encoding="ascii") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) of this process to its current RSS; False where not allowed."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as handle:
            handle.write("5")  # Linux >= 4.0
        return True
    except OSError:
        return False


def peak_rss_bytes(at_least: Optional[int] = None) -> Optional[int]:
    """The peak RSS since the last :func:`reset_peak_rss` (Linux VmHWM), else the process's maximum; never below the
    resident set now nor ``at_least`` (a reading of it taken since the reset). The kernel does not update its RSS
    counters together (a resident set read as the reset was done stood above the high-water mark read
    later), and a peak is at least every resident set it spans."""
    value = _proc_status_bytes("VmHWM")
    value = value if value is not None else process_max_rss_bytes()
    floors = [v for v in (at_least, current_rss_bytes()) if v is not None]
    if value is None:
        return max(floors) if at_least is not None else None
    return max([value] + floors)


def cpu_model() -> str:
    text = _read("/proc/cpuinfo") or ""
    for key in ("model name", "Model", "Hardware", "cpu model"):
        match = re.search(rf"^{key}\s*:\s*(.+)$", text, flags=re.MULTILINE)
        if match:
            return match.group(1).strip()
    return platform.processor() or platform.machine()


def jetson_info() -> Optional[dict]:
    model = _read("/proc/device-tree/model")
    release = _read("/etc/nv_tegra_release")
    if not (release or (model and "jetson" in model.lower())):
        return None
    info: Dict[str, Any] = {"model": model, "l4t": release.splitlines()[0] if release else None}
    query = run_quietly(["nvpmodel", "-q"])
    if query:
        info["power_mode"] = " ".join(query.split())
    conf = _read("/etc/nvpmodel.conf")
    if conf:
        match = re.search(r"PM_CONFIG\s+DEFAULT\s*=\s*(\d+)", conf)
        info["nvpmodel_default_mode"] = int(match.group(1)) if match else None
    if "power_mode" not in info:
        info["power_mode"] = "unknown (nvpmodel -q not available)"
    return info


def _module_version(name: str) -> Optional[str]:
    module = sys.modules.get(name)
    if module is None:
        try:
            module = __import__(name)
        except Exception:  # noqa: BLE001 - absent or broken: reported as None
            return None
    return getattr(module, "__version__", "unknown")


def cuda_version() -> Optional[str]:
    torch = sys.modules.get("torch")
    if torch is not None and getattr(torch.version, "cuda", None):
        return f"{torch.version.cuda} (torch build)"
    text = _read("/usr/local/cuda/version.json")
    if text:
        match = re.search(r'"cuda"\s*:\s*\{[^}]*"version"\s*:\s*"([^"]+)"', text)
        if match:
            return match.group(1)
    out = run_quietly(["nvcc", "--version"])
    if out:
        match = re.search(r"release ([\d.]+)", out)
        if match:
            return match.group(1)
    return None


def gpu_info() -> Optional[List[dict]]:
    out = run_quietly(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"])
    if out:
        gpus = []
        for line in out.splitlines():
            parts = [p.strip() for p in line.split(",")]
            gpus.append(
                {
                    "name": parts[0],
                    "driver": parts[1] if len(parts) > 1 else None,
                    "memory": parts[2] if len(parts) > 2 else None,
                }
            )
        return gpus
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        return [{"name": torch.cuda.get_device_name(i)} for i in range(torch.cuda.device_count())]
    return None


def system_info() -> dict:
    ort_version = _module_version("onnxruntime")
    providers = None
    if ort_version:
        import onnxruntime

        providers = onnxruntime.get_available_providers()
    return {
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "gpu": gpu_info(),
        "jetson": jetson_info(),
        "onnxruntime": ort_version,
        "onnxruntime_providers": providers,
        "tensorrt": _module_version("tensorrt"),
        "cuda": cuda_version(),  # the torch build's CUDA, else the installed toolkit's "torch": getattr(sys.modules.get("torch"), "__version__", None),
        "opencv": _module_version("cv2"),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
