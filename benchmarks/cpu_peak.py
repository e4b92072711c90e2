"""The theoretical peak per precision (issue 54 item 3), for
``python -m benchmarks cpu`` (``benchmarks/cpu.py``; not a program of its own).

**Theoretical peak** = cores x clock x operations per cycle per core (one multiply-add counted as 2):

* cores: the threads the benchmark runs, at most the CPUs of this process's affinity (``os.sched_getaffinity``);
  where /proc/cpuinfo shows SMT (``siblings`` > ``cpu cores``) two threads may share one core's pipes, said so;
* clock: ``/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq`` where present (the highest clock: AVX-512 and
  AMX code may run at a lower licence clock, so the peak is an upper bound), else the first ``cpu MHz`` of
  /proc/cpuinfo (the clock the kernel reports: in a VM (``hypervisor`` flag) usually the TSC / base clock, not the
  turbo or the AVX-512 / AMX clock); the source is printed;
* operations per cycle per core: ``PER_CYCLE``, the first row of the precision whose flags (``cpu_features()``)
  the CPU has. The number of FMA pipes is not readable from the kernel, so every row states its assumption:

  ========= =============== ====================================================== ======
  precision flag            per cycle per core                                      ops
  ========= =============== ====================================================== ======
  fp32      avx512f         2 pipes x 16 fp32 lanes x 2 (FMA)                          64
  fp32      avx2 + fma      2 pipes x 8 fp32 lanes x 2 (FMA)                           32
  fp32      asimd (arm64)   2 pipes x 4 fp32 lanes x 2 (FMA)                           16
  bf16      amx_bf16        AMX-BF16 TMUL (Intel's figure)                           1024
  bf16      avx512_bf16     2 pipes x 32 bf16 products x 2 (vdpbf16ps)                128
  bf16      bf16 (arm64)    unknown (BFDOT / BFMMLA rates differ between cores)
  int8      amx_int8        AMX-INT8 TMUL (Intel's figure)                           2048
  int8      avx512_vnni     2 pipes x 64 u8 x s8 products x 2 (vpdpbusd)              256
  int8      avx_vnni        2 pipes x 32 u8 x s8 products x 2 (256-bit vpdpbusd)      128
  int8      avx512bw        2 pipes x 64 u8 x s8 products x 2 (vpmaddubsw)            256
  int8      avx2            2 pipes x 32 u8 x s8 products x 2 (vpmaddubsw)            128
  int8      i8mm (arm64)    unknown (SMMLA rates differ between cores)
  int8      asimddp (arm64) 2 pipes x 16 int8 products x 2 (SDOT / UDOT)               64
  ========= =============== ====================================================== ======

  Two 512-bit FMA pipes: server Intel Xeon (Skylake-SP Gold / Platinum and later) and AMD Zen 5; Zen 4 runs 512-bit
  instructions as 2 x 256 (half: fp32 32, bf16 64, VNNI 128) and some Xeon Silver / Bronze have one 512-bit pipe.
  Two 256-bit pipes: Intel since Haswell, AMD since Zen 2. Two 128-bit NEON pipes: Cortex-A78AE (Jetson Orin),
  A78, A76 (Neoverse V1 / V2 and Cortex-X have four). AMX: one tile multiply (16 x 16 x 32 bf16 or 16 x 16 x 64
  int8 multiply-adds) per 16 cycles and core, Intel's 1024 bf16 / 2048 int8 operations per cycle and core.
  ``vpmaddubsw`` without VNNI: an upper bound (the ``vpmaddwd`` + ``vpaddd`` that widen its int16 pair sums share
  those pipes, and the pair sums saturate: zsseg_rt quantises 7-bit weights there).

``use_theory`` then makes each precision's peak the larger of the measured best (``cpu.honest_peaks``) and the
theory: no row exceeds 100 %, and the table names the peak used.
"""

from __future__ import annotations

import os
from typing import Dict, List, Optional, Tuple

PRECISIONS = ("fp32", "bf16", "int8")
CPUFREQ = "/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq"
CPUINFO = "/proc/cpuinfo"
TWO_512 = (
    "2 x 512-bit pipes per core: server Xeon (Skylake-SP Gold/Platinum and later), AMD Zen 5; Zen 4 (2 x 256 per "
    "512-bit op) and 1-pipe Xeon Silver/Bronze: half"
)
TWO_256 = "2 x 256-bit pipes per core: Intel since Haswell, AMD since Zen 2"
TWO_NEON = "2 x 128-bit NEON pipes per core: Cortex-A78AE (Jetson Orin), A78, A76; Neoverse V1/V2, Cortex-X: 4"
AMX = "Intel's figure: one 16-cycle tile multiply per core (16 x 16 x {k} multiply-adds), tiles fed from cache"
SATURATES = "an upper bound: the vpmaddwd + vpaddd widening its int16 sums share those pipes; the sums saturate"

# (precision, architecture, flags all required, operations per cycle per core or None = unknown, how, assumption)
PER_CYCLE: Tuple[Tuple[str, str, Tuple[str, ...], Optional[int], str, str], ...] = (
    ("fp32", "x86", ("avx512f",), 64, "2 pipes x 16 fp32 lanes x 2 (FMA)", TWO_512),
    ("fp32", "x86", ("avx2", "fma"), 32, "2 pipes x 8 fp32 lanes x 2 (FMA)", TWO_256),
    ("fp32", "arm64", ("asimd",), 16, "2 pipes x 4 fp32 lanes x 2 (FMA)", TWO_NEON),
    ("bf16", "x86", ("amx_bf16",), 1024, "AMX-BF16 TMUL", AMX.format(k=32)),
    ("bf16", "x86", ("avx512_bf16",), 128, "2 pipes x 32 bf16 products x 2 (vdpbf16ps)", TWO_512),
    ("bf16", "arm64", ("bf16",), None, "", "BFDOT / BFMMLA rates differ between Arm cores: not in the table"),
    ("int8", "x86", ("amx_int8",), 2048, "AMX-INT8 TMUL", AMX.format(k=64)),
    ("int8", "x86", ("avx512_vnni",), 256, "2 pipes x 64 u8 x s8 products x 2 (vpdpbusd)", TWO_512),
    ("int8", "x86", ("avx_vnni",), 128, "2 pipes x 32 u8 x s8 products x 2 (256-bit vpdpbusd)", TWO_256),
    ("int8", "x86", ("avx512bw",), 256, "2 pipes x 64 u8 x s8 products x 2 (vpmaddubsw)", f"{TWO_512}; {SATURATES}"),
    ("int8", "x86", ("avx2",), 128, "2 pipes x 32 u8 x s8 products x 2 (vpmaddubsw)", f"{TWO_256}; {SATURATES}"),
    ("int8", "arm64", ("i8mm",), None, "", "SMMLA rates differ between Arm cores: not in the table"),
    ("int8", "arm64", ("asimddp",), 64, "2 pipes x 16 int8 products x 2 (SDOT/UDOT)", TWO_NEON),
)


# ---- the theoretical peak ----------------------------------------------------------------------------------------
def read_clock(cpufreq: str = CPUFREQ, cpuinfo: str = CPUINFO, vm: bool = False) -> Tuple[Optional[float], str]:
    """``(GHz or None, where it was read and what it is)``: cpufreq's maximum, else /proc/cpuinfo's ``cpu MHz``."""
    try:
        with open(cpufreq, encoding="utf-8") as handle:
            khz = float(handle.read().strip())
        return khz / 1e6, f"{cpufreq} (the highest clock; AVX-512 / AMX code may run slower: an upper bound)"
    except (OSError, ValueError):
        pass
    try:
        with open(cpuinfo, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                if key.strip() == "cpu MHz":
                    where = "a VM (hypervisor flag): " if vm else ""
                    return float(value) / 1e3, (
                        f"/proc/cpuinfo `cpu MHz` (no cpufreq; {where}often the TSC / base clock, not the turbo or "
                        "the AVX-512 / AMX clock)"
                    )
    except (OSError, ValueError):
        pass
    return None, f"no clock readable (no {cpufreq}, no `cpu MHz` in {cpuinfo})"


def cores_used(threads: int, cpuinfo: str = CPUINFO) -> Tuple[int, str]:
    """``(cores counted, how)``: the benchmark's threads, at most this process's CPUs; an SMT note where present."""
    try:
        available = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        available = os.cpu_count() or 1
    cores = max(1, min(threads, available))
    text = f"{cores} (the benchmark's threads: {threads}; CPUs in this process's affinity: {available})"
    fields: Dict[str, str] = {}
    try:
        with open(cpuinfo, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    siblings, physical = fields.get("siblings", ""), fields.get("cpu cores", "")
    if siblings.isdigit() and physical.isdigit() and int(siblings) > int(physical):
        text += f"; SMT ({siblings} threads on {physical} cores): two threads may share one core's pipes"
    return cores, text


def theoretical_peaks(features, ghz: Optional[float], cores: int) -> Dict[str, dict]:
    """Per precision: ``{"gflops": float or None, "formula", "assumption", "reason"}`` (``reason``: why None).

    ``features``: a ``zsseg_rt.runtime.cpu_features.CpuFeatures`` (``.flags``, ``.x86``, ``.arm64``); ``ghz``: the
    clock (None: unknown); ``cores``: the cores counted. GFLOP/s = cores x GHz x ``PER_CYCLE`` operations."""
    arch = "x86" if features.x86 else "arm64" if features.arm64 else features.machine
    out: Dict[str, dict] = {}
    for precision in PRECISIONS:
        rows = [row for row in PER_CYCLE if row[0] == precision and row[1] == arch]
        row = next((row for row in rows if set(row[2]) <= features.flags), None)
        entry: dict = {"gflops": None, "formula": "", "assumption": "", "reason": ""}
        if not features.flags:
            entry["reason"] = "no CPU flags readable (/proc/cpuinfo)"
        elif row is None:
            wanted = "; ".join("+".join(r[2]) for r in rows) or f"none for {arch}"
            entry["reason"] = f"no row of the table matches this CPU's flags (rows: {wanted})"
        elif row[3] is None:
            entry.update(assumption=row[5], reason=f"{'+'.join(row[2])}: {row[5]}")
        elif ghz is None:
            entry.update(assumption=row[5], reason="the clock is not readable")
        else:
            entry.update(
                gflops=cores * ghz * row[3],
                formula=f"{cores} {'core' if cores == 1 else 'cores'} x {ghz:.2f} GHz x {row[3]} per cycle "
                f"({'+'.join(row[2])}: {row[4]})",
                assumption=row[5],
            )
        out[precision] = entry
    return out


def theory_of_this_machine(features, threads: int) -> dict:
    """``r["theory"]`` of a run: the clock and cores read here and ``theoretical_peaks`` per precision."""
    ghz, clock = read_clock(vm="hypervisor" in features.flags)
    cores, how = cores_used(threads)
    return {"peaks": theoretical_peaks(features, ghz, cores), "clock": clock, "ghz": ghz, "cores": how}


def use_theory(r: dict) -> None:
    """After ``honest_peaks``: keep the measured peaks as ``r["peak_measured"]`` / ``r["peak_measured_from"]`` and
    make ``r["peak"][p]`` the larger of the measured best and the theory (``r["theory"]``), ``r["peak_from"][p]``
    the measured path's name or ``"theoretical: <formula>"``."""
    r["peak_measured"], r["peak_measured_from"] = dict(r["peak"]), dict(r["peak_from"])
    for precision, entry in (r.get("theory") or {}).get("peaks", {}).items():
        theory = entry.get("gflops")
        measured = r["peak"].get(precision, float("nan"))
        if theory is not None and precision in r["peak"] and not measured >= theory:  # NaN: the theory
            r["peak"][precision], r["peak_from"][precision] = theory, f"theoretical: {entry['formula']}"


def theory_cell(r: dict, precision: str, gflops: float) -> str:
    """The encoder table's "% of the theoretical peak" cell: blank where the theory is unknown, never above 100 %
    (a rate above the theory says its assumptions do not hold here)."""
    theory = ((r.get("theory") or {}).get("peaks", {}).get(precision) or {}).get("gflops")
    if not theory:
        return ""
    if gflops > theory:
        return "above it (assumption wrong here)"
    return f"{100 * gflops / theory:.1f} %"


def render_peaks(r: dict) -> List[str]:
    """The "### Peak per precision" subsection: theory and measured side by side, and the peak used."""
    theory = r.get("theory") or {}
    measured = r.get("peak_measured", r["peak"])
    measured_from = r.get("peak_measured_from", r.get("peak_from", {}))
    lines = ["### Peak per precision: the measured best, the theoretical, and the one used (the larger)", ""]
    if not theory:
        lines += ["Theoretical peak: not recorded in this run (it predates it); the peaks are the measured ones.", ""]
    else:
        lines += [
            f"Theoretical peak = cores x clock x operations per cycle per core (`benchmarks/cpu_peak.py`, `PER_CYCLE`; "
            f"a multiply-add counts 2). Cores counted: {theory['cores']}. Clock: "
            + (f"{theory['ghz']:.2f} GHz from {theory['clock']}." if theory.get("ghz") else f"{theory['clock']}.")
            + " The FMA-pipe count is not readable from the kernel: each row's assumption is printed.",
            "",
        ]
    lines += [
        "| precision | measured best GFLOP/s (path) | theoretical GFLOP/s | formula, assumption | peak used |",
        "|---|---:|---:|---|---|",
    ]
    for precision in PRECISIONS:
        if precision not in r["peak"]:
            continue
        entry = (theory.get("peaks") or {}).get(precision) or {}
        value = measured.get(precision, float("nan"))
        best = f"{value:.0f} ({measured_from.get(precision)})" if measured_from.get(precision) else "none measured"
        gflops = entry.get("gflops")
        cell = f"{gflops:.0f}" if gflops else "unknown"
        how = f"{entry['formula']}; {entry['assumption']}" if gflops else entry.get("reason", "not recorded")
        used = r.get("peak_from", {}).get(precision) or ""
        if not used:
            used = "none (nothing measured, no theory)"
        elif used.startswith("theoretical"):
            used = f"theoretical ({r['peak'][precision]:.0f})"
        else:
            below = " (the theory is below it: its assumption does not hold here)" if gflops else ""
            used = f"measured: {used} ({r['peak'][precision]:.0f}){below}"
        lines.append(f"| {precision} | {best} | {cell} | {how} | {used} |")
    return lines + [""]
