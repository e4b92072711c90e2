"""The sigmoid post-processing's kernel candidates timed against each other on a GPU (issue 72 item 1): which one
becomes the default of ``ops.segment_windows`` (and of the Engine's frame graph, which launches it through
``ops.SegmentWindowsPlan``).

Usage (on a CUDA machine; the engine stage of the acceptance run, after ``checks/gpu_engine.py`` with the same
``--work``, whose full-size bundle it reuses):
    python -m checks postprocess_variants --out out/gpu_check/variants --work out/gpu_work \
        --engine-check out/gpu_check/engine_check.json     # the target: 3 % of the encoder floor measured there
    python -m checks postprocess_variants --out DIR --no-engine-logits      # without the Engine's logits (faster)
On the emulated build (``ZSSEG_CUDA_EMULATION=1``, a smoke test of this program: CI runs it at a small scale, the
numbers mean nothing there) ``--scale 8`` divides the geometry by 8.

The Engine check's geometry (the photo 2011_000006.jpg: two windows of 32x32 logits, a 16x head upsampling to 512,
the 512x683 rescaled image, a 375x500 output), C=20 and C=171, on four kinds of logits:

* ``iid``: standard normal x 3 (what ``benchmarks cuda`` and ``checks/postprocess_cuda.py`` time): nothing to prune;
* ``engine``: the full-size ZegCLIP ViT-B/16 bundle of ``checks/gpu_engine.py`` (random weights) on the photo,
  recorded from the CPU Engine's ``ops.segment_windows`` call (onnxruntime, exact mode; 171 names ``class i``):
  what the deployed frame post-processes today (its bound pass prunes about 20 % of the classes);
* ``dominated``: one class per 2x4 region of logit cells at +3, the others in [-9, -4]: a trained model's shape,
  pruning's best case;
* ``label_map``: the photo's own VOC label map read at each logit cell (object-sized regions, four classes; issue 86
  item 2, ``checks/_postprocess_logits.py``).

The lines (issue 86 item 2): at C=171 each of ``iid``, ``dominated``, ``label_map`` within its share of the encoder
floor (``_postprocess_logits.LINES``: 6 %, 3 %, 3 %); the report's ``lines`` gives, per kind, the fastest candidate
that passed, its share and whether it is within the line (what ``checks/gpu_engine.py`` judges in the same stage).

Each candidate (``_C._testing.segment_windows_variants()``) runs as the Engine runs it: a prepared plan on the
default stream with a class bias, its output checked against the CPU op first (scores within 2e-6, labels >= 99.9 %
equal; a candidate that fails is reported and not timed), then timed: the device time per launch between two CUDA
events around ``--calls`` launches enqueued behind a sleep kernel (``benchmarks/_cuda_timing.py``: the host's cost
hidden), candidates alternating within each of ``--rounds`` rounds, the median over the rounds.

Writes ``postprocess_variants.json`` into ``--out`` and prints a table and the recommendation: the fastest candidate
(by its slower time of ``iid`` and ``engine`` at C=171) that passed every check, and whether it meets the target:
<= 3 % of the bare fp16 encoder graph that the engine check of the same stage measured (``--engine-check``: its
``engine_check.json``, the floor's ``median_ms``; 56.1 us on the H200's 1.871 ms), else the documented fallback
``TARGET_US`` (59 us, the H100's 3 % of 1.976 ms), which the report and the table then name. The recommendation is
information: the default
changes in a commit that cites the record. Exit code 0 when every case ran and the default (``tiled``, what the
library runs) passed its check; a candidate that fails its check is reported (FAILED) and not recommended, and does
not fail the run; 1 when the default failed its check or a case could not run; 2 without a CUDA device.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np

TARGET_SHARE = 0.03  # post-processing <= 3 % of the bare fp16 encoder graph at C=171 (checks/gpu_engine.POST_TARGET)
TARGET_US = 59.0  # the fallback without a floor: 3 % of the H100's bare fp16 encoder graph (1.976 ms, 2026-11-26)
GRID, HEAD, SCALED, OUT = 32, 512, (512, 683), (375, 500)
KINDS = ("iid", "engine", "dominated", "label_map")
SCORE_TOL, LABELS_MIN = 2e-6, 0.999


def _windows(scale: int):
    from zsseg_rt import pipeline

    head = HEAD // scale
    return [
        tuple(int(v) for v in w)
        for w in pipeline.sliding_windows(SCALED[0] // scale, SCALED[1] // scale, head, head * 2 // 3)
    ]


def synthetic_logits(kind: str, classes: int, windows: int, grid: int, seed: int = 0) -> np.ndarray:
    """``iid`` or ``dominated`` logits [windows, classes, grid, grid] (float32)."""
    from checks import _postprocess_logits

    return _postprocess_logits.random_logits(kind, classes, windows, grid, seed)


def engine_logits(work: Path, classes: int) -> Dict[str, Any]:
    """The logits the CPU Engine post-processes for the photo at ``classes`` names (cached in ``work``)."""
    cache = work / f"engine_logits_c{classes}.npz"
    if cache.is_file():
        with np.load(cache) as saved:
            return {"logits": saved["logits"], "bias": saved["bias"], "seconds": 0.0, "cached": True}
    import cv2

    from checks._gpu_bundles import PHOTO, export_full, sample_images
    from zsseg_rt import Engine, ops

    start = time.perf_counter()
    bundle = export_full(work)["bundle"]
    engine = Engine(bundle, classes=[f"class {i}" for i in range(classes)], backend="onnxruntime", device="cpu")
    seen: List[np.ndarray] = []
    biases: List[np.ndarray] = []  # the Engine's class bias (its seen/unseen calibration decides what is pruned)
    real = ops.segment_windows

    def recording(logits, *args, **kwargs):
        seen.append(np.array(logits, dtype=np.float32, copy=True))
        bias = kwargs.get("class_bias")
        biases.append(np.zeros(logits.shape[1], np.float32) if bias is None else np.array(bias, np.float32))
        return real(logits, *args, **kwargs)

    image = cv2.imread(str(next(p for p in sample_images() if p.name == PHOTO)), cv2.IMREAD_COLOR)
    ops.segment_windows = recording
    try:
        engine(image)
    finally:
        ops.segment_windows = real
    if len(seen) != 1 or seen[0].shape != (2, classes, GRID, GRID):
        raise RuntimeError(f"expected one segment_windows call on [2, {classes}, 32, 32] logits, got "
                           f"{[s.shape for s in seen]}")  # fmt: skip
    work.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(cache, logits=seen[0], bias=biases[0])
    return {"logits": seen[0], "bias": biases[0], "seconds": round(time.perf_counter() - start, 1), "cached": False}


class Clock:
    """CUDA events and a sleep kernel through torch on the default stream; the host's clock without torch CUDA
    (the emulated smoke test: nothing there is a measurement)."""

    def __init__(self) -> None:
        self.torch = None
        try:
            import torch

            if torch.cuda.is_available():
                self.torch = torch
        except ImportError:
            pass
        if self.torch is not None:
            from benchmarks._cuda_timing import CudaClock

            self.clock: Any = CudaClock()
        else:
            from benchmarks._cuda_timing import CpuClock

            self.clock = CpuClock()

    @property
    def real(self) -> bool:
        return self.torch is not None

    def time_us(self, launch: Callable[[], None], calls: int, host_us: float) -> float:
        from benchmarks._cuda_timing import kernel_sample

        return kernel_sample(launch, calls, self.clock, host_us).kernel_ms * 1e3


def check(got, want) -> Dict[str, Any]:
    """Scores within SCORE_TOL where both are numbers, NaN exactly where the CPU's is, labels >= LABELS_MIN equal."""
    labels, scores = got
    nan_agree = bool(np.array_equal(np.isnan(scores), np.isnan(want[1])))
    both = ~np.isnan(want[1]) & ~np.isnan(scores)
    diff = float(np.abs(scores[both] - want[1][both]).max()) if both.any() else 0.0
    equal = float((labels == want[0]).mean())
    ok = nan_agree and diff <= SCORE_TOL and equal >= LABELS_MIN
    return {"max_score_diff": diff, "labels_equal": equal, "nan_agree": nan_agree, "pass": bool(ok)}


def _geometry(scale: int):
    return (HEAD // scale,) * 2, (SCALED[0] // scale, SCALED[1] // scale), (OUT[0] // scale, OUT[1] // scale)


def check_variant(testing, name: str, cases: Dict[str, Any], windows, scale: int) -> Dict[str, Dict[str, Any]]:
    """One variant against the CPU op on every case (case key -> its check), each launch into fresh outputs filled
    with a sentinel (a kernel that skips a pixel cannot inherit another's answer)."""
    from zsseg_rt import ops

    head, scaled, out = _geometry(scale)
    testing.segment_windows_variant(name)
    found = {}
    for key, case in cases.items():
        want = ops.segment_windows(case["logits"], windows, head, scaled, out, class_bias=case["bias"])
        results = (
            testing.DeviceMemory(np.full(out, -7, np.int32)),
            testing.DeviceMemory(np.full(out, -7.0, np.float32)),
        )
        plan = ops.SegmentWindowsPlan(testing.DeviceMemory(case["logits"]), windows, head, scaled, out, out=results,
                                      class_bias=testing.DeviceMemory(case["bias"]), stream=0)  # fmt: skip
        plan.launch()
        testing.device_synchronize()
        found[key] = check((np.asarray(results[0].numpy()), np.asarray(results[1].numpy())), want)
    return found


# A candidate's check in its process of its own (checked_apart): at most this long. On the H200 one takes a few
# seconds (the CUDA context, the cases at the Engine's geometry, the CPU op's reference); the emulated build at 1/8 of
# it about as long (issue 86 item 1: no child had a bound, so a hung one stalled the engine stage and the sanitizers')
CHECK_TIMEOUT_S = 120


def checked_apart(names: Sequence[str], cases: Dict[str, Any], scale: int, folder: Path) -> Dict[str, Dict[str, Any]]:
    """check_variant for each variant in a process of its own (variant -> case key -> check): a kernel that faults
    takes its process, not this one (a CUDA context that faulted serves nothing more), and is reported as failed."""
    import subprocess

    from benchmarks._launch import checkout_module

    folder.mkdir(parents=True, exist_ok=True)
    np.savez(folder / "cases.npz", **{f"{k}/{part}": v[part] for k, v in cases.items() for part in ("logits", "bias")})
    found: Dict[str, Dict[str, Any]] = {}
    for name in names:
        result = folder / f"check_{name}.json"
        result.unlink(missing_ok=True)
        print(f"postprocess_variants: checking {name} against the CPU op", flush=True)
        # the checkout's launcher, not `python -m checks`: on the GPU image the cwd is a work folder, PYTHONSAFEPATH=1
        # and the checkout is on no path (the H200 run of b235fde: every child died "No module named checks")
        command, env = checkout_module("checks", "postprocess_variants", "--check-one", name, "--cases",
                                       folder / "cases.npz", "--scale", scale, "--out", result)  # fmt: skip
        try:  # bounded: a hung child (a kernel that never ends, or one slowed past use) is named, not waited for
            done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=CHECK_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            why = f"the check's process ran past its bound of {CHECK_TIMEOUT_S} s and was ended"
            found[name] = {k: {"pass": False, "error": why} for k in cases}
            continue
        if done.returncode == 0 and result.is_file():
            found[name] = json.loads(result.read_text())
        else:
            why = f"the check's process ended with {done.returncode}: {(done.stderr or done.stdout).strip()[-300:]}"
            found[name] = {k: {"pass": False, "error": why} for k in cases}
    return found


def _check_one(args) -> int:
    """--check-one NAME: check_variant in this process, its JSON to --out (run by checked_apart)."""
    from zsseg_rt import ops

    with np.load(args.cases) as saved:
        keys = sorted({k.rsplit("/", 1)[0] for k in saved.files})
        cases = {k: {"logits": saved[f"{k}/logits"], "bias": saved[f"{k}/bias"]} for k in keys}
    found = check_variant(ops.native_module()._testing, args.check_one, cases, _windows(args.scale), args.scale)
    args.out.write_text(json.dumps(found))
    return 0


def target(engine_check: Optional[Path]) -> Dict[str, Any]:
    """The target in us and where it comes from: TARGET_SHARE of the encoder floor that the engine check of the
    same stage measured (its report's ``floor.median_ms``), else TARGET_US, the H100's, with the reason (printed:
    a stage whose engine check measured no floor still times its candidates, against the documented line)."""
    if engine_check is None:
        return {"us": TARGET_US, "from": "the H100's 3 % (1.976 ms): no --engine-check given"}
    try:
        floor_ms = json.loads(engine_check.read_text())["floor"]["median_ms"]
        if not (isinstance(floor_ms, (int, float)) and floor_ms > 0):
            raise ValueError(f"its floor's median_ms is {floor_ms!r}, not a positive number")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        why = f"no encoder floor in {engine_check} ({type(exc).__name__}: {exc})"
        print(f"postprocess_variants: {why}: the target is the H100's {TARGET_US} us", file=sys.stderr)
        return {"us": TARGET_US, "from": f"the H100's 3 % (1.976 ms): {why}"}
    return {"us": round(TARGET_SHARE * floor_ms * 1e3, 2), "floor_ms": floor_ms,
            "from": f"3 % of the encoder floor {floor_ms:.4f} ms measured by the engine check ({engine_check.name})"}  # fmt: skip


def measure_case(testing, case: Dict[str, Any], windows, scale: int, checks: Dict[str, Dict[str, Any]],
                 clock: Clock, calls: int, rounds: int) -> Dict[str, Dict[str, Any]]:  # fmt: skip
    """Per variant: its check (done apart) and, where it passed, the median device time per launch (us)."""
    from zsseg_rt import ops

    head, scaled, out = _geometry(scale)
    results = (testing.DeviceMemory(np.zeros(out, np.int32)), testing.DeviceMemory(np.zeros(out, np.float32)))
    plan = ops.SegmentWindowsPlan(testing.DeviceMemory(case["logits"]), windows, head, scaled, out, out=results,
                                  class_bias=testing.DeviceMemory(case["bias"]), stream=0)  # fmt: skip
    rows: Dict[str, Dict[str, Any]] = {name: {**check_found, "us": []} for name, check_found in checks.items()}
    timed = [name for name in rows if rows[name]["pass"]]
    for _ in range(rounds):
        for name in timed:  # candidates alternate within a round
            testing.segment_windows_variant(name)
            start = time.perf_counter()
            plan.launch()
            testing.device_synchronize()
            host_us = (time.perf_counter() - start) * 1e6
            rows[name]["us"].append(clock.time_us(plan.launch, calls, host_us))
    for name in rows:
        samples = rows[name].pop("us")
        rows[name]["us"] = round(statistics.median(samples), 2) if samples else None
    return rows


MARGIN = 0.05  # a candidate is recommended over the default only when this much faster (rounds' noise)


def recommend(report: Dict[str, Any]) -> Dict[str, Any]:
    """The fastest variant that passed every check, by its slower time of iid and engine at the largest C; a
    candidate other than the default only when at least MARGIN faster than it there. ``slower_somewhere``: the
    passing candidates slower than the default on some case (dominated logits included: what trained weights give)."""
    table = report["cases"]
    classes = max(int(c) for c in table)
    judged = [k for k in ("iid", "engine") if k in table[str(classes)]]
    default = report["variants"][0]
    passed = {}
    for name in report["variants"]:
        rows = [table[c][k][name] for c in table for k in table[c]]
        if all(r["pass"] and r["us"] is not None for r in rows):
            passed[name] = max(table[str(classes)][k][name]["us"] for k in judged)
    best: Optional[str] = None
    if passed:
        best = min(passed, key=lambda n: passed[n])
        if best != default and default in passed and passed[best] > passed[default] * (1 - MARGIN):
            best = default  # not clearly faster: the default stays
    slower = sorted({n for n in passed if n != default and default in passed for c in table for k in table[c]
                     if table[c][k][n]["us"] > table[c][k][default]["us"]})  # fmt: skip
    return {"variant": best, "us": None if best is None else passed[best], "classes": classes, "judged_on": judged,
            "meets_target": best is not None and passed[best] <= report["target"]["us"],
            "slower_somewhere": slower}  # fmt: skip


def kind_lines(report: Dict[str, Any]) -> Dict[str, Any]:
    """At the largest C, per kind of ``_postprocess_logits.KINDS``: the fastest candidate that passed its check (what
    ``postprocess_kernel="auto"`` keeps on such logits) against its line of the encoder floor (``--engine-check``'s;
    without one, nothing is judged: ``encoder_ms`` None)."""
    from checks import _postprocess_logits as pl

    table = report["cases"]
    classes = str(max(int(c) for c in table))
    fastest: Dict[str, Optional[float]] = {}
    chosen: Dict[str, Optional[str]] = {}
    for kind in pl.KINDS:
        rows = {n: r for n, r in (table[classes].get(kind) or {}).items() if r["pass"] and r["us"] is not None}
        chosen[kind] = min(rows, key=lambda n: rows[n]["us"]) if rows else None
        fastest[kind] = rows[chosen[kind]]["us"] if chosen[kind] else None
    verdict = pl.judge_kinds(fastest if report.get("measured") else {}, report["target"].get("floor_ms"))
    for kind, row in verdict["kinds"].items():
        row["chosen"] = chosen[kind]
    return {"classes": int(classes), **verdict}


def print_table(report: Dict[str, Any]) -> None:
    names = report["variants"]
    print(f"{'C':>4} {'logits':<10}" + "".join(f"{n:>16}" for n in names))
    for classes, kinds in report["cases"].items():
        for kind, rows in kinds.items():
            cells = []
            for n in names:
                r = rows[n]
                cells.append(f"{r['us']:>10.1f} us" if r["pass"] and r["us"] is not None else f"{'FAILED':>13}")
                cells[-1] = f"{cells[-1]:>16}"
            print(f"{classes:>4} {kind:<10}" + "".join(cells))
    rec = report["recommendation"]
    print(f"recommendation: {rec['variant']} ({rec['us']} us at C={rec['classes']}, worst of {rec['judged_on']}; "
          f"target {report['target']['us']} us ({report['target']['from']}): {'met' if rec['meets_target'] else 'not met'}; "
          f"slower than the default somewhere: {rec['slower_somewhere'] or 'none'})")  # fmt: skip
    for kind, row in (report.get("lines") or {}).get("kinds", {}).items():
        where = (
            f"{row['us']:.1f} us ({row['chosen']}), {100 * row['share']:.2f} %" if row.get("us") is not None else "-"
        )
        verdict = {True: "met", False: "MISSED", None: "not judged"}[row["pass"]]
        print(f"line C={report['lines']['classes']} {kind}: {where} (line {100 * row['line']:.0f} %): {verdict}")


def _why(row: Dict[str, Any]) -> str:
    if "error" in row:
        return row["error"]
    return (f"scores within {row['max_score_diff']:.2e}, labels {row['labels_equal']:.4f}, NaN where the CPU's: "
            f"{row['nan_agree']}")  # fmt: skip


def _cases(args, grid: int, windows) -> Dict[str, Dict[str, Any]]:
    """Every case's logits and class bias, by key "C/kind" (the Engine's logits need --work and the full scale)."""
    cases: Dict[str, Dict[str, Any]] = {}
    for classes in (int(c) for c in args.classes.split(",")):
        for kind in KINDS:
            if kind == "engine":
                if args.no_engine_logits or args.scale != 1 or args.work is None:
                    continue
                got = engine_logits(args.work, classes)
                cases[f"{classes}/{kind}"] = {"logits": got["logits"], "bias": got["bias"], "seconds": got["seconds"],
                                              "cached": got["cached"]}  # fmt: skip
            else:
                from checks import _postprocess_logits as pl

                logits = pl.case_logits(kind, classes, windows, grid, _geometry(args.scale)[1])
                cases[f"{classes}/{kind}"] = {"logits": logits, "bias": pl.case_bias(classes)}  # seen/unseen's shape
    return cases


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder of postprocess_variants.json")
    parser.add_argument("--work", type=Path, default=None, help="checks/gpu_engine.py's work folder (its bundle)")
    parser.add_argument("--no-engine-logits", action="store_true", help="skip the Engine's logits (no export)")
    parser.add_argument("--engine-check", type=Path, default=None, help="the same stage's engine_check.json: the "
                        f"target is 3 %% of its encoder floor (default: the H100's {TARGET_US} us)")  # fmt: skip
    parser.add_argument("--classes", default="20,171", help="vocabulary sizes (default 20,171)")
    parser.add_argument("--calls", type=int, default=50, help="launches per timed sample (default 50)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of samples; the median is kept (default 5)")
    parser.add_argument("--scale", type=int, default=1, help="divide the geometry by this (1; 8 for a smoke test)")
    parser.add_argument("--check-one", default=None, help=argparse.SUPPRESS)  # a process of checked_apart
    parser.add_argument("--cases", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    from zsseg_rt import ops

    if not ops.cuda_available():
        print("postprocess_variants: needs a CUDA device (or ZSSEG_CUDA_EMULATION=1): nothing measured",
              file=sys.stderr)  # fmt: skip
        return 2
    if args.check_one is not None:
        return _check_one(args)
    testing = ops.native_module()._testing
    variants = list(testing.segment_windows_variants())
    windows = _windows(args.scale)
    cases = _cases(args, GRID // args.scale, windows)
    args.out.mkdir(parents=True, exist_ok=True)
    checks = checked_apart(variants, cases, args.scale, args.out / "postprocess_variants_cases")
    clock = Clock()
    report: Dict[str, Any] = {"variants": variants, "measured": clock.real, "scale": args.scale, "cases": {},
                              "calls": args.calls, "rounds": args.rounds, "target": target(args.engine_check)}  # fmt: skip
    if clock.real:
        report["gpu"] = clock.torch.cuda.get_device_name()
    default = testing.segment_windows_variant()
    written = args.out / "postprocess_variants.json"
    try:
        for key, case in cases.items():
            classes, kind = key.split("/")
            if "seconds" in case:
                report.setdefault("engine_logits", {})[classes] = {"seconds": case["seconds"], "cached": case["cached"]}
            print(f"postprocess_variants: timing C={classes} on {kind} logits", flush=True)
            found = {name: checks[name][key] for name in variants}
            report["cases"].setdefault(classes, {})[kind] = measure_case(testing, case, windows, args.scale, found,
                                                                         clock, args.calls, args.rounds)  # fmt: skip
            written.write_text(json.dumps(report, indent=1))  # what is measured so far survives a fault later
    finally:
        testing.segment_windows_variant(default)
    report["recommendation"] = recommend(report)
    report["lines"] = kind_lines(report)
    written.write_text(json.dumps(report, indent=1))
    print_table(report)
    failed = [(c, k, n) for c, ks in report["cases"].items() for k, rows in ks.items() for n, r in rows.items()
              if not r["pass"]]  # fmt: skip
    for c, k, n in failed:
        print(f"FAILED: {n} at C={c} on {k}: {_why(report['cases'][c][k][n])}")
    if not clock.real:
        print("(no CUDA device through torch: host times of the emulated runtime, not a measurement)")
    return 1 if any(n == default for _, _, n in failed) else 0


if __name__ == "__main__":
    sys.exit(main())
