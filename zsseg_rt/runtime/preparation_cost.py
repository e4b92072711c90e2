"""What preparing each faster CPU path of a bundle costs on this machine: CPU time, disk kept and the preparing
process's peak memory, beside the memory free here now; and whether a path fits that memory (the
ViT-B/16 bundle's preparation peaked at 5.7 GiB, said nowhere; an 8 GB Jetson would fail).

The numbers of a path are its own measurement where this machine prepared it before (the record's ``preparation``
field, written by ``zsseg_rt.prepare.auto``: wall and CPU seconds, the disk the records folder gained, the process's
peak resident memory during that path), else an estimate from the bundle's image encoder size with the ratios
measured on the tiny test bundle and the demo's ViT-B/16 bundle (BENCHMARKS.md, "Preparing the CPU paths: time,
disk, memory"; the backend rows' ``prepare_costs``). A path fits when its peak is at most the memory available now
(``MemAvailable``, and a cgroup's limit where the process has one) plus what the preparing process holds already
(its resident memory is part of its peak). ``zsseg build-engine BUNDLE --backend auto --dry-run`` prints each path's line; the Engine's announcement
(``runtime/upgrade.py``) says the total and the paths that would not fit; the preparation skips those with one line.

Standard library only, and the backend table (read by name when an estimate is asked for).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple

from zsseg_rt.bundle import Files

from .precision_records import PREPARATION_FIELD

__all__ = [
    "DEFAULT_COST",
    "PathCost",
    "available_memory_mb",
    "cost_ratios",
    "duration_words",
    "estimate",
    "path_cost",
    "resident_mb",
    "total_line",
]

MIB = 1024 * 1024
# A gated path's cost ratios are its backend row's (``BackendSpec.prepare_costs``: CPU s fixed and per MB of image
# encoder, disk kept per MB, peak MB fixed and per MB): the preparing process's numbers, measured with `python -m
# zsseg_rt.prepare.auto BUNDLE --cache-dir DIR` (the paths one after another, each one's peak read from VmHWM reset
# before it: zsseg_rt/prepare/footprint.py; a later path's peak includes the fp32 reference an earlier one opened) on
# the tiny test bundle (image encoder 0.7 MB: the fixed parts) and the demo's ViT-B/16 bundle (352 MB: the per-MB
# parts), a 2-core AMD EPYC, BENCHMARKS.md "Preparing the CPU paths: time, disk, memory". The disk is what the
# records folder gains (OpenVINO's compiled caches included). A row without them: the costliest measured.
DEFAULT_COST = (6.0, 0.30, 3.05, 840.0, 8.6)


def cost_ratios(backend: str, precision: str) -> Tuple[float, float, float, float, float]:
    """The row's ``prepare_costs`` of ``precision`` (the backend table), else :data:`DEFAULT_COST`."""
    from .backends.table import backend_row

    try:
        return dict(backend_row(backend).prepare_costs).get(precision, DEFAULT_COST)
    except (ImportError, ValueError):  # a backend not installed here, or no such row
        return DEFAULT_COST


@dataclass
class PathCost:
    """One path's cost: ``cpu_s`` (CPU seconds), ``wall_s`` (None: not measured), ``disk_mb`` (kept), ``peak_mb``
    (the preparing process's peak resident memory), ``measured`` (this machine prepared it: its record's numbers)."""

    backend: str
    precision: str
    cpu_s: float
    disk_mb: float
    peak_mb: float
    measured: bool = False
    wall_s: Optional[float] = None
    held_mb: Optional[float] = None  # measured: what the measuring process held as the path began (None: unknown)

    @property
    def own_mb(self) -> float:
        """The memory the path itself takes at its peak: the measured peak less what the measuring process held as
        the path began, where the record says (else the peak)."""
        # (never below 0: an older record, its peak not floored at the resident set, may say it held a little more
        # than its peak)
        return max(0.0, self.peak_mb - self.held_mb) if self.held_mb is not None else self.peak_mb

    @property
    def name(self) -> str:
        return f"{self.backend} {self.precision}"

    def fits(self, available: Optional[float], resident: float = 0.0) -> bool:
        """Whether the peak fits ``available`` MB free now plus ``resident`` MB the preparing process holds (None
        available: unknown here, taken as fitting). A measured peak with what its process held then known: the path's
        own memory against the memory free (the process preparing it now holds ``resident`` already)."""
        if available is None:
            return True
        return self.own_mb <= available if self.held_mb is not None else self.peak_mb <= available + resident

    def line(self, available: Optional[float] = None, resident: float = 0.0) -> str:
        """``"openvino int8: about 2.3 min of CPU, 96 MB on disk, 2.9 GiB peak memory (estimated)"`` (and, when it
        does not fit ``available``, why)."""
        how = self._how()
        wall = f" ({duration_words(self.wall_s)} wall)" if self.wall_s is not None else ""
        text = (
            f"{self.name}: {duration_words(self.cpu_s)} of CPU{wall}, {self.disk_mb:.0f} MB on disk, "
            f"{_size(self.peak_mb)} peak memory ({how})"
        )
        if not self.fits(available, resident):
            text += f": does not fit the {_size((available or 0.0) + resident)} free here, not prepared"
        return text

    def refusal(self, available: Optional[float], resident: float = 0.0) -> str:
        """The one line a preparation skips it with."""
        return (
            f"{self.name} is not prepared: it needs about {_size(self.peak_mb)} of memory at its peak "
            f"({self._how()}), and {_size((available or 0.0) + resident)} is "
            "free here; free memory, or prepare it on a larger machine and copy the records (--cache-dir)"
        )

    def _how(self) -> str:
        """Where the peak comes from; a measured one names what its process held already (a demo preparing in its own
        process holds torch and the export)."""
        if not self.measured:
            return "estimated"
        if self.held_mb is None:
            return "measured here"
        return (
            f"measured here, in a process that held {_size(self.held_mb)} as it began: "
            f"{_size(self.own_mb)} for the path itself"
        )

    def as_dict(self) -> Dict[str, Any]:
        return {
            "backend": self.backend,
            "precision": self.precision,
            "cpu_s": round(self.cpu_s, 1),
            "wall_s": None if self.wall_s is None else round(self.wall_s, 1),
            "disk_mb": round(self.disk_mb, 1),
            "peak_mb": round(self.peak_mb, 1),
            "measured": self.measured,
            "held_mb": None if self.held_mb is None else round(self.held_mb, 1),
        }


def duration_words(seconds: float) -> str:
    """``"about 3.2 min"`` / ``"about 6 s"``: a CPU time as the dry-run's lines and the Engine's note say it."""
    return f"about {seconds / 60:.1f} min" if seconds >= 90 else f"about {max(1, round(seconds))} s"


def _size(megabytes: float) -> str:
    return f"{megabytes / 1024:.1f} GiB" if megabytes >= 1024 else f"{megabytes:.0f} MiB"


def encoder_mb(meta: Any) -> float:
    """The bundle's image encoder graph, in MB (0 when it cannot be read)."""
    try:
        return os.path.getsize(meta.file(Files.IMAGE_ENCODER)) / 1e6
    except (OSError, AttributeError, KeyError):
        return 0.0


def estimate(meta: Any, backend: str, precision: str) -> PathCost:
    """The estimated cost of preparing ``backend`` ``precision`` for ``meta``'s bundle (:func:`cost_ratios`)."""
    cpu_fixed, cpu_per_mb, disk_per_mb, peak_fixed, peak_per_mb = cost_ratios(backend, precision)
    size = encoder_mb(meta)
    return PathCost(
        backend,
        precision,
        cpu_fixed + cpu_per_mb * size,
        disk_per_mb * size,
        peak_fixed + peak_per_mb * size,
    )


def path_cost(meta: Any, backend: str, precision: str, record: Optional[Mapping[str, Any]] = None) -> PathCost:
    """The path's measured cost from its ``record`` (its ``preparation`` field), else :func:`estimate`."""
    measured = (record or {}).get(PREPARATION_FIELD)
    if isinstance(measured, Mapping) and measured.get("peak_mb") is not None:
        try:
            return PathCost(
                backend,
                precision,
                float(measured.get("cpu_s") or 0.0),
                float(measured.get("disk_mb") or 0.0),
                float(measured["peak_mb"]),
                True,
                float(measured["wall_s"]) if measured.get("wall_s") is not None else None,
                float(measured["held_mb"]) if measured.get("held_mb") is not None else None,
            )
        except (TypeError, ValueError):
            pass
    return estimate(meta, backend, precision)


def _read_number(path: str) -> Optional[float]:
    try:
        with open(path, encoding="ascii") as handle:
            text = handle.read().strip()
    except OSError:
        return None
    try:
        return float(text)
    except ValueError:  # "max": no limit
        return None


def available_memory_mb() -> Optional[float]:
    """MiB of memory a new allocation can have now: ``MemAvailable`` of /proc/meminfo, lowered to the room under
    this process's cgroup limit (v2 ``memory.max`` - ``memory.current``, v1 ``limit_in_bytes`` - ``usage_in_bytes``)
    where it has one; None where neither can be read (not Linux)."""
    found: List[float] = []
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    found.append(float(line.split()[1]) / 1024.0)
                    break
    except (OSError, ValueError, IndexError):
        pass
    for limit, usage in (
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
        ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"),
    ):
        most, used = _read_number(limit), _read_number(usage)
        if most is not None and used is not None and most < 2**60:
            found.append(max(0.0, most - used) / MIB)
            break
    return min(found) if found else None


def resident_mb() -> float:
    """This process's resident memory now, in MiB (0 where /proc cannot be read)."""
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return float(line.split()[1]) / 1024.0
    except (OSError, ValueError, IndexError):
        pass
    return 0.0


def total_line(costs: Iterable[PathCost], available: Optional[float]) -> str:
    """The announcement's words: the paths' CPU time in all, the disk of the largest (only the fastest is kept), the
    highest peak (one path at a time), the memory free here, and the paths that would not fit."""
    costs = list(costs)
    if not costs:
        return ""
    cpu = sum(cost.cpu_s for cost in costs)
    peak = max(costs, key=lambda cost: cost.peak_mb)
    free = f"{_size(available)} free here" if available is not None else "free memory unknown here"
    text = (
        f"{duration_words(cpu)} of CPU time, at most {max(cost.disk_mb for cost in costs):.0f} MB kept on disk (the "
        f"fastest path only), a peak of {_size(peak.peak_mb)} memory ({peak.name}; {free})"
    )
    too_big = [cost.name for cost in costs if not cost.fits(available)]
    if too_big:
        text += f"; {', '.join(too_big)} would not fit and would not be prepared"
    return text
