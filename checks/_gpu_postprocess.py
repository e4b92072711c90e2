"""The engine check's post-processing part (issue 86 item 2): C=171 at the photo's geometry on the three kinds of
logits of ``checks/_postprocess_logits.py`` (i.i.d., dominated, the photo's label map), and ncu's report of the
chosen kernels.

``time_kinds``: every candidate (``_C._testing.segment_windows_variants()``) checked against the CPU op on each kind
(``postprocess_variants.check_variant``: scores within 2e-6, labels >= 99.9 % equal), then timed as the variants
program times them (a prepared plan on the default stream with the class bias; device time per launch between CUDA
events around ``calls`` launches behind a sleep kernel, candidates alternating within each of ``rounds`` rounds, the
median). Per kind the fastest candidate that passed is what ``postprocess_kernel="auto"`` keeps on such logits: its
time is judged against the kind's line (``_postprocess_logits.LINES``) by ``checks/gpu_engine.judge``.

``ncu_report``: Nsight Compute (``ncu``, where it is on PATH: the GPU image has it) on one launch of each kernel
named, on the label-map logits, in a child process of this module (``--launch``) bounded by ``NCU_TIMEOUT_S``: its
text report (speed of light, occupancy, launch statistics, warp states) kept in the engine record; where ncu is
absent, or fails (no permission to the GPU's counters), the record says why instead.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from typing import Any, Dict, List, Optional, Sequence

NCU_TIMEOUT_S = 60  # the ncu child at most (the review's budget: about 10 s for two kernels on an H200)
NCU_SECTIONS = ("SpeedOfLight", "Occupancy", "LaunchStats", "WarpStateStats", "SchedulerStats")
NCU_REPORT_CHARS = 20000  # the report's text kept in the record at most (its tail is the last kernel's)


def _cases(kinds: Sequence[str]) -> Dict[str, Dict[str, Any]]:
    from checks import _postprocess_logits as pl
    from checks import postprocess_variants as pv

    windows = pv._windows(1)
    bias = pl.case_bias(pl.CLASSES)
    return {kind: {"logits": pl.case_logits(kind, pl.CLASSES, windows, pv.GRID, pv.SCALED), "bias": bias}
            for kind in kinds}  # fmt: skip


def time_kinds(calls: int = 50, rounds: int = 5) -> Dict[str, Any]:
    """Every candidate on each kind of logits at C=171, checked then timed: ``{"kinds": {kind: {"chosen", "us",
    "candidates": {name: {"us", "pass", ...}}}}, "measured", "calls", "rounds", "seconds"}`` (``measured``: device
    times through torch's CUDA events; False on the emulated build, where nothing is a measurement)."""
    from checks import _postprocess_logits as pl
    from checks import postprocess_variants as pv
    from zsseg_rt import ops

    start = time.perf_counter()
    testing = ops.native_module()._testing
    variants = list(testing.segment_windows_variants())
    windows = pv._windows(1)
    cases = _cases(pl.KINDS)
    clock = pv.Clock()
    default = testing.segment_windows_variant()
    kinds: Dict[str, Any] = {}
    try:
        checks = {name: pv.check_variant(testing, name, cases, windows, 1) for name in variants}
        for kind, case in cases.items():
            rows = pv.measure_case(testing, case, windows, 1, {n: checks[n][kind] for n in variants}, clock, calls,
                                   rounds)  # fmt: skip
            timed = {n: r["us"] for n, r in rows.items() if r["pass"] and r["us"] is not None}
            chosen = min(timed, key=lambda n: timed[n]) if timed else None
            kinds[kind] = {"chosen": chosen, "us": timed.get(chosen) if chosen else None, "candidates": rows}
    finally:
        testing.segment_windows_variant(default)
    return {"classes": pl.CLASSES, "kinds": kinds, "measured": clock.real, "calls": calls, "rounds": rounds,
            "seconds": round(time.perf_counter() - start, 1),
            "how": "every candidate checked against the CPU op, then its device time per launch (CUDA events around "
                   f"{calls} launches behind a sleep kernel, median of {rounds} rounds); per kind the fastest that "
                   "passed: what postprocess_kernel='auto' keeps on such logits"}  # fmt: skip


def ncu_report(kernels: Sequence[str], kind: str = "label_map", which=shutil.which) -> Dict[str, Any]:
    """ncu's report of one launch of each of ``kernels`` on ``kind`` logits at C=171, or why there is none."""
    names = list(dict.fromkeys(k for k in kernels if k))
    if not names:
        return {"skipped": "no kernel was chosen (the timing above failed)"}
    ncu = which("ncu")
    if ncu is None:
        return {"skipped": "ncu (Nsight Compute) is not on PATH here: no report"}
    from benchmarks._launch import checkout_module

    child, env = checkout_module("checks._gpu_postprocess", "--launch", ",".join(names), "--kind", kind)
    sections = [arg for name in NCU_SECTIONS for arg in ("--section", name)]
    command = [ncu, "--target-processes", "all", "--kernel-name", "regex:segment_windows", "--launch-count",
               str(len(names)), *sections, *child]  # fmt: skip
    start = time.perf_counter()
    entry: Dict[str, Any] = {"kernels": names, "kind": kind, "sections": list(NCU_SECTIONS)}
    try:
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=NCU_TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        return {**entry, "error": f"ncu ran past its bound of {NCU_TIMEOUT_S} s and was ended",
                "report": out[-NCU_REPORT_CHARS:]}  # fmt: skip
    entry["seconds"] = round(time.perf_counter() - start, 1)
    entry["returncode"] = done.returncode
    entry["report"] = done.stdout[-NCU_REPORT_CHARS:]
    if done.returncode != 0 or "==ERROR==" in done.stdout + done.stderr:
        entry["error"] = (done.stderr.strip() or done.stdout.strip())[-500:] or f"ncu exited {done.returncode}"
    return entry


def _launch(kernels: Sequence[str], kind: str) -> int:
    """--launch: one launch of each kernel on ``kind`` logits (the ncu child), each through a prepared plan."""
    from checks import postprocess_variants as pv
    from zsseg_rt import ops

    testing = ops.native_module()._testing
    case = _cases([kind])[kind]
    head, scaled, out = pv._geometry(1)
    results = (testing.DeviceMemory(pv.np.zeros(out, pv.np.int32)), testing.DeviceMemory(pv.np.zeros(out, "f4")))
    for name in kernels:
        plan = ops.SegmentWindowsPlan(testing.DeviceMemory(case["logits"]), pv._windows(1), head, scaled, out,
                                      out=results, class_bias=testing.DeviceMemory(case["bias"]), stream=0,
                                      kernel=name)  # fmt: skip
        plan.launch()
        testing.device_synchronize()
        print(f"_gpu_postprocess: launched {name} on {kind} logits", flush=True)
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="the engine check's ncu child: one launch of each kernel")
    parser.add_argument("--launch", required=True, help="kernel names, comma-separated")
    parser.add_argument("--kind", default="label_map")
    args = parser.parse_args(argv)
    return _launch(args.launch.split(","), args.kind)


if __name__ == "__main__":
    sys.exit(main())
