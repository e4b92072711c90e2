"""What preparing one path took, measured in the preparing process (``prepare/auto.py`` writes it into the path's
record, ``preparation``; ``runtime/preparation_cost.py`` reads it back): wall and CPU seconds, the disk the records
folder gained (its artefact, and a compiled cache OpenVINO made beside it), and the process's peak resident memory
during that path, beside the memory free when it started.

The peak is Linux's high-water mark of the process's resident set (``VmHWM`` of /proc/self/status), reset to the
current resident set before the path (writing 5 to /proc/self/clear_refs), so each path's peak is its own (the
process's resident memory when it starts included: that is part of what the machine must hold). Where the reset is
not possible the peak is ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` (the process's peak so far: at most the
path's, said in ``how``). Native allocations (ONNX Runtime's quantiser, OpenVINO, NNCF) count, unlike tracemalloc's.
"""

from __future__ import annotations

import contextlib
import os
import time
from typing import Any, Dict, Iterator, Optional

from zsseg_rt.runtime.preparation_cost import available_memory_mb

__all__ = ["Footprint", "folder_bytes", "measured", "peak_resident_mb", "reset_peak"]


def _status_kib(field: str) -> Optional[float]:
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith(field + ":"):
                    return float(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def reset_peak() -> bool:
    """Reset this process's resident high-water mark to its resident set now; False where it cannot be."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def peak_resident_mb() -> float:
    """This process's peak resident memory since the last :func:`reset_peak` (else since it started), in MiB."""
    high = _status_kib("VmHWM")
    if high is not None:
        return high / 1024.0
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def folder_bytes(folder: str) -> int:
    """The bytes of the files under ``folder`` (0 where there is none; a file gone meanwhile counts nothing)."""
    total = 0
    for base, _, files in os.walk(folder):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.path.getsize(os.path.join(base, name))
    return total


def _folder_mb(folder: str) -> float:
    return folder_bytes(folder) / 1e6


class Footprint:
    """The measure of one path (see the module); ``as_dict()`` is the record's ``preparation`` field."""

    def __init__(self, folder: str):
        self.folder = folder  # the records folder: what it gains is the path's disk
        self.before_mb = 0.0
        self.reset = False
        self.start_wall = self.start_cpu = 0.0
        self.free_mb: Optional[float] = None
        self.held_mb: Optional[float] = None
        self.result: Dict[str, Any] = {}

    def __enter__(self) -> "Footprint":
        self.free_mb = available_memory_mb()
        self.before_mb = _folder_mb(self.folder)
        self.reset = reset_peak()
        self.held_mb = _status_kib("VmRSS")  # what the process holds as the path begins: part of its peak
        self.start_wall, self.start_cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: Any) -> None:
        how = (
            "VmHWM of the preparing process, reset before this path"
            if self.reset
            else "ru_maxrss of the preparing process (its peak so far: the reset of VmHWM is not possible here)"
        )
        self.result = {
            "wall_s": round(time.perf_counter() - self.start_wall, 2),
            "cpu_s": round(time.process_time() - self.start_cpu, 2),
            "disk_mb": round(max(0.0, _folder_mb(self.folder) - self.before_mb), 1),
            "peak_mb": round(self.peak_mb(), 1),
            # the process's resident memory as the path began (the demo prepares in its own process,
            # torch and the export resident, and its 4.5 GiB peak was shown as the path's own, which needs 2.0 GiB)
            "held_mb": None if self.held_mb is None else round(self.held_mb / 1024.0, 1),
            "free_mb_before": None if self.free_mb is None else round(self.free_mb, 1),
            "how": how,
            "when": time.strftime("%Y-%m-%d %H:%M:%S"),
        }

    def peak_mb(self) -> float:
        """The path's peak: the high-water mark, raised to what the process held as the path began and holds now.
        VmHWM and VmRSS are two of the kernel's counters, not updated together (the per-CPU RSS counts are folded in
        lazily): a CI run recorded held 1906.0 MiB beside a peak of 1905.8, a record that said the path
        held more than its peak. Both are this process's resident memory, so the peak is at least either."""
        now = _status_kib("VmRSS")
        floor = max((kib / 1024.0 for kib in (self.held_mb, now) if kib is not None), default=0.0)
        return max(peak_resident_mb(), floor)

    def as_dict(self) -> Dict[str, Any]:
        return dict(self.result)


@contextlib.contextmanager
def measured(folder: str) -> Iterator[Footprint]:
    """``with measured(record_folder) as footprint: ...`` (:class:`Footprint`)."""
    with Footprint(folder) as footprint:
        yield footprint
