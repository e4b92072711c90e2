"""Peak memory of an engine build and its accuracy gate, and the default builder workspace on integrated GPUs.

On a Jetson the CPU and the GPU share one DRAM: TensorRT's default workspace limit is the whole device memory, i.e.
all of it, while the accuracy gate's ONNX Runtime fp32 reference (~620 MB for ViT-B/16) lives in the same process.
``default_workspace_bytes`` caps the workspace there, and ``PeakMemory`` measures what a build + gate really took,
so ``zsseg build-engine`` can say it (and engine.json keeps it).
"""

from __future__ import annotations

import threading
from typing import Callable, Dict, Optional

from zsseg_rt.system_info import current_rss_bytes, process_max_rss_bytes

MIB = 1 << 20
GIB = 1 << 30

# Integrated GPUs: the workspace may take 1/8 of the shared memory, at most 2 GiB (Orin Nano 8 GB: ~0.93 GiB, Orin NX
# 16 GB: ~1.9 GiB, AGX Orin: 2 GiB). A workspace limit only narrows the tactics TensorRT times; ViT-B/16 builds need
# far less than 1 GiB of scratch for the attention and GEMM tactics at these batch sizes.
INTEGRATED_WORKSPACE_FRACTION = 8
INTEGRATED_WORKSPACE_MAX = 2 * GIB


def default_workspace_bytes(total_memory_mib: int, integrated: bool) -> Optional[int]:
    """The builder workspace limit when the caller gave none: None (TensorRT's default: all device memory) on a
    discrete GPU; ``min(total / 8, 2 GiB)`` on an integrated one."""
    if not integrated or total_memory_mib <= 0:
        return None
    return int(min(INTEGRATED_WORKSPACE_MAX, total_memory_mib * MIB // INTEGRATED_WORKSPACE_FRACTION))


def _system_used_bytes() -> Optional[int]:
    """MemTotal - MemAvailable (Linux): on a Jetson this includes what the GPU allocated from the shared DRAM."""
    try:
        values = {}
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                key, _, rest = line.partition(":")
                values[key] = int(rest.split()[0]) * 1024
        return values["MemTotal"] - values["MemAvailable"]
    except (OSError, ValueError, KeyError, IndexError):
        return None


class PeakMemory:
    """Samples, every ``interval`` seconds in a background thread while the ``with`` block runs: this process's
    resident memory, the system's memory in use, and ``device_used()`` (bytes of device memory in use, e.g. from
    ``cuMemGetInfo``; None or raising: not sampled). ``as_dict()`` gives the peaks in MiB (None where unavailable)."""

    def __init__(self, device_used: Optional[Callable[[], Optional[int]]] = None, interval: float = 0.05):
        self.device_used = device_used
        self.interval = float(interval)
        self.peaks: Dict[str, Optional[int]] = {"rss": None, "system": None, "device": None}
        self.baseline: Dict[str, Optional[int]] = {}
        self.samples = 0
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def _read(self) -> Dict[str, Optional[int]]:
        device = None
        if self.device_used is not None:
            try:
                device = self.device_used()
            except Exception:  # noqa: BLE001 - no context yet, no driver: the device column stays empty
                device = None
        return {"rss": current_rss_bytes(), "system": _system_used_bytes(), "device": device}

    def sample(self) -> None:
        for key, value in self._read().items():
            if value is not None:
                current = self.peaks[key]
                self.peaks[key] = value if current is None else max(current, value)
        self.samples += 1

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def __enter__(self) -> "PeakMemory":
        self.baseline = self._read()
        self.sample()
        self._thread = threading.Thread(target=self._run, name="zsseg-peak-memory", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.sample()

    def as_dict(self) -> Dict[str, object]:
        def mib(value):
            return None if value is None else round(value / MIB, 1)

        max_rss_bytes = process_max_rss_bytes()
        return {
            "peak_rss_mib": mib(self.peaks["rss"]),
            "peak_system_used_mib": mib(self.peaks["system"]),
            "peak_device_used_mib": mib(self.peaks["device"]),
            "baseline_rss_mib": mib(self.baseline.get("rss")),
            "baseline_system_used_mib": mib(self.baseline.get("system")),
            "baseline_device_used_mib": mib(self.baseline.get("device")),
            "process_max_rss_mib": mib(max_rss_bytes),
            "samples": self.samples,
            "interval_s": self.interval,
        }


def summarize_memory(memory: Optional[Dict]) -> str:
    """One line of the peaks measured: process RSS, system memory in use, device memory in use (MiB)."""
    if not memory:
        return "peak memory: not measured"
    parts = []
    for key, label in (
        ("peak_rss_mib", "process RSS"),
        ("peak_system_used_mib", "system in use"),
        ("peak_device_used_mib", "device in use"),
    ):
        if memory.get(key) is not None:
            parts.append(f"{label} {memory[key]:.0f} MiB")
    return "peak memory (build + gate): " + (", ".join(parts) if parts else "not measurable here")
