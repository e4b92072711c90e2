#!/usr/bin/env python
"""Host cost of one native op call, on the CPU: what the binding layer costs per call when the kernel does next to
nothing, as the prepared launch of the device pipeline's post-processing (``ops.SegmentWindowsPlan``) against the
generic call (``ops.segment_windows``: every argument parsed and checked each call) and a PyTorch eager op call of
the same size (the peer, measured in the same run).

Inputs: ``segment_windows`` on NumPy arrays of the smallest shape (C = 1 class, 1x1 logits per window, 1x1 head,
the rescaled image 1 x n pixels tiled by n one-pixel windows, NumPy class bias and ``out=``), so the kernel is a few
multiply-adds and what is timed is the host: the Python wrapper, pybind11's argument dispatch, the validation, the
call and the return. The GPU review of b991c98 (Appendix A, a 2-core machine under load ~8, min of 5) measured on
such a call 62.7 us through the Python wrapper (2 windows), 4.8 us per window, and 0.95 us per integer argument
(``numpy.bool_`` looked up for every integer): its numbers are the baseline column. On a GPU the launch itself
(the CUDA launcher, ~3-5 us) comes on top of a plan's call; ``checks/gpu_probe.py`` (P1) measures that there.

Each row is timed as N calls back to back (per call: their time / N), in R rounds that take turns row by row (the
same load on each); the statistic is the median over rounds. Target (issue 62, item 4): a prepared op call costs at
most 15 us of host time.

    .venv/bin/python -m benchmarks host_cost --write     # updates its section of BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from typing import Callable, Dict, List

import numpy as np

from .common import section_head, show_section

# The CPU kernel on one thread: an OpenMP fork and join per call (tens of us on a busy 2-core machine) is the CPU
# kernel's cost, not the call's, and a GPU launch has none. Set before the native module (and its OpenMP) loads.
os.environ["OMP_NUM_THREADS"] = "1"

SECTION = "## Host cost of one op call (CPU): the prepared post-processing launch vs the generic call"
TARGET_US = 15.0  # a prepared op call (issue 62, item 4)
REVIEW_US = {"ops.segment_windows, 2 windows": 62.7, "per window (slope)": 4.8}  # b991c98, the review's Appendix A


def _case(windows: int):
    """The smallest segment_windows call with ``windows`` one-pixel windows: its arguments as a dict."""
    return {
        "logits": np.zeros((windows, 1, 1, 1), np.float32),
        "windows": [(0, 1, k, k + 1) for k in range(windows)],
        "head_size": (1, 1),
        "scaled_size": (1, windows),
        "output_size": (1, windows),
        "class_bias": np.zeros(1, np.float32),
        "out": (np.empty((1, windows), np.int32), np.empty((1, windows), np.float32)),
    }


def rows_to_time() -> Dict[str, Callable[[], object]]:
    """The calls compared: name -> a no-argument callable."""
    from zsseg_rt import ops

    native = ops.native_module()
    two, many = _case(2), _case(32)
    plan = ops.SegmentWindowsPlan(two["logits"], two["windows"], two["head_size"], two["scaled_size"],
                                  two["output_size"], out=two["out"], class_bias=two["class_bias"])  # fmt: skip
    launch = plan.launch
    rows: Dict[str, Callable[[], object]] = {
        "SegmentWindowsPlan.launch(), 2 windows": launch,
        "ops.segment_windows, 2 windows": lambda: ops.segment_windows(**two),
        "_C.segment_windows (no Python wrapper), 2 windows": lambda: native.segment_windows(**two),
        "ops.segment_windows, 32 windows": lambda: ops.segment_windows(**many),
    }
    try:
        import torch
        import torch.nn.functional as F

        x = torch.zeros(1, 1, 1, 2)
        rows["torch eager: F.interpolate of [1, 1, 1, 2] (the peer)"] = lambda: F.interpolate(x, size=(1, 2))
    except ImportError:  # a runtime-only venv: no peer
        pass
    return rows


def interleaved_us(rows: Dict[str, Callable[[], object]], calls: int, rounds: int) -> Dict[str, float]:
    """Median over ``rounds`` of each row's time per call (``calls`` back to back), the rows taking turns."""
    per_round: Dict[str, List[float]] = {name: [] for name in rows}
    for fn in rows.values():  # warm-up: first calls import and cache
        for _ in range(10):
            fn()
    for _ in range(rounds):
        for name, fn in rows.items():
            start = time.perf_counter()
            for _ in range(calls):
                fn()
            per_round[name].append((time.perf_counter() - start) / calls * 1e6)
    return {name: statistics.median(values) for name, values in per_round.items()}


def render(us: Dict[str, float], calls: int, rounds: int) -> str:
    plan_us = us["SegmentWindowsPlan.launch(), 2 windows"]
    generic_us = us["ops.segment_windows, 2 windows"]
    slope = (us["ops.segment_windows, 32 windows"] - generic_us) / 30
    lines = section_head(SECTION, "host_cost --write", 1)
    lines += [
        f"- {calls} calls back to back per row and round, {rounds} rounds taking turns; median over rounds (us per "
        "call). The inputs are the smallest (1 class, one-pixel windows, NumPy bias and out=): the host is timed. "
        "One OpenMP thread (OMP_NUM_THREADS=1, set by the benchmark): the CPU kernel's fork and join is not the "
        "call's cost, and a GPU launch has none.",
        "- Baseline: the GPU review of b991c98 measured the same generic call on a loaded 2-core machine (Appendix A);"
        " its numbers are quoted, not re-measured (b991c98's module is not built here).",
        "",
        "| call | us per call | vs the prepared launch | b991c98 (review) |",
        "|---|---:|---:|---:|",
    ]
    for name, value in us.items():
        lines.append(f"| {name} | {value:.2f} | {value / plan_us:.1f}x | {REVIEW_US.get(name, '')} |")
    lines.append(f"| per window of the generic call (slope 2 -> 32 windows) | {slope:.2f} | | "
                 f"{REVIEW_US['per window (slope)']} |")  # fmt: skip
    ok = plan_us <= TARGET_US
    lines += [
        "",
        f"Target: a prepared op call <= {TARGET_US:g} us of host time: **{plan_us:.2f} us, {'PASS' if ok else 'MISS'}**"
        f" (the generic call {generic_us:.2f} us, {generic_us / plan_us:.1f}x). On a GPU the CUDA launcher comes on "
        "top (measured by checks/gpu_probe.py, P1, when a GPU is lent).",
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=2000, help="calls back to back per row and round")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--write", action="store_true", help="update BENCHMARKS.md")
    args = parser.parse_args()
    if args.calls < 1 or args.rounds < 1:
        parser.error(f"--calls and --rounds must be >= 1, got {args.calls} and {args.rounds}")
    us = interleaved_us(rows_to_time(), args.calls, args.rounds)
    show_section(SECTION, render(us, args.calls, args.rounds), args.write)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
