"""A probe of what the GPU path has never run (issue 62 item 6; issue 72 item 5: a probe that fits its stage), for
one lease.

Usage (on the lent GPU, from the checkout, with the wheel installed):
    python -m checks gpu_probe --out DIR [--budget 100] [--parts P10,P9] [--work DIR] [--clip FILE] [--device cuda]
    python -m checks gpu_probe --out DIR --parts extras   # the parts measured before (EXTRA_ORDER), by hand
    python -m checks gpu_probe --out DIR --dry-run      # the plumbing only: stand-in parts, no torch, seconds

Each part runs in a child process of its own (a CUDA error in one cannot poison the next), under its own time
bound and within what is left of ``--budget`` (the parent kills the child's process group at the bound). The
parent uses the standard library only and writes ``DIR/probe.json`` after EVERY part (and before each, with the
part "running"), so a lease cut keeps what finished; a part records its measurements as it goes, so a part cut at
its bound keeps what it measured before. Besides probe.json at most two files: ``probe_log.txt`` (each part's
output tail) and ``ncu_segment_windows.txt`` (P5's text report). A part's exception is recorded (type, message,
traceback head) and the next part runs. Parts that need CUDA say "skipped: no CUDA ..." where there is none; a
part is never reported as passed: the probe measures, it does not judge (``checks/gpu_engine.py`` judges).

A part starts only with at least ``min_s`` of the budget left: its time measured on the H100 (2026-11-26, records
174613 and 174205 in docs/gpu_runs/) or the H200 (2026-11-27, record 211043) or, for a part never run whole there,
an estimate that says so ("est."), plus 20 %
(``MIN_S_FACTOR``). A part that starts therefore ends within its bound, and ``schedule`` shows before a lease
which parts the stage's budget holds (python_tests/test_gpu_plan_room.py). No part re-measures what the engine stage
measures (its frame graphs, post-processing inside them, each op's host time: P4 and P3's graphs are gone).

The acceptance's parts (``ORDER``: P2 first, whose bundle the others take; then what never ran on a GPU, the
riskiest first):
    P2  bundles     the tiny bundle (random weights), exported or reused; the full-size one reused if there
    P10 temporal    the temporal kernels' must-run tests on the GPU (their pytest run copies P2's tiny bundle), each
                    op on the device against the CPU kernel bit for bit, the first divergence where one differs
                    (checks/_gpu_probe_video.py)
    P9  video       VideoSegmenter on the torch CUDA Engine, the filter on the device against the host's (an error
                    in one mode or at one frame recorded, the rest run), and `zsseg camera --live --device cuda` on a
                    clip (carried: gpu_artifacts/clips), timed
    P7  batch       engine([photo] * n) against n single calls, n = 4, 8 (batched graphs; the device path's images/s)
    P6  driver      the ctypes CudaDriver on real libcuda: CudaMemory (mapped memory off/on), driver stream capture
                    (DriverCudaGraphs), timing events; replay against eager frame by frame
The extras (``EXTRA_ORDER``, ``--parts extras``): measured on the H100 at cf77cf4, or longer than the acceptance
has room for; run by hand or when a lease has room:
    P7S streams     benchmarks streams (multi-source camera) on the torch CUDA Engine, cut at 30 s
    P1  host        ops.segment_windows host cost per stream and bias; profiler counts of CUDA API calls per call
    P2F full        the full-size ZegCLIP ViT-B/16 bundle (random weights), exported or reused
    P3  gates       torch fp16/bf16 accuracy gates of the full encoder on the GPU
    P8  amp         CUDA AMP training: 10 iterations of tiny_test in float16 with the GradScaler
    P5  ncu         ncu of segment_windows at C=171 on i.i.d. logits (text report)
    P5E ncu engine  ncu of segment_windows within an Engine frame (never finished: cut at 27 s on the H100)
P0 (the machine: torch, CUDA, GPU, driver, ncu) runs first, always.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

from benchmarks._launch import checkout_module  # a child from any cwd, PYTHONSAFEPATH=1 (standard library only)
from checks._gpu_probe_parts import Skip  # one class for the parts and the dry-run stand-ins (standard library only)

REPO = Path(__file__).resolve().parent.parent
DEFAULT_BUDGET_S = 280
MARGIN_S = 5  # kept for the parent's last writes
LOG_TAIL = 6000  # characters of a part's output kept (probe_log.txt, and the JSON for a part that did not finish)
UNITS = "keys end in their unit: _ms milliseconds, _us microseconds, _s seconds, _mib MiB; others are counts/ratios"


MIN_S_FACTOR = 1.2  # a part starts with at least its measured (or estimated) time + 20 % left
PART_OVERHEAD_S = 1.0  # the parent per part: a child process started, probe.json written twice


@dataclass(frozen=True)
class Part:
    id: str
    title: str
    what: str  # what is measured, with units
    bound_s: int  # the part's own time bound
    seconds: float  # its time: measured on the H100, or estimated (``source`` then starts "est.")
    source: str  # where ``seconds`` comes from
    needs_cuda: bool
    function: str  # the function in ``module`` (or in this module for the dry-run parts)
    module: str = "checks._gpu_probe_parts"

    @property
    def min_s(self) -> int:
        """Not started with less budget left than this: its time + 20 %, whole seconds up."""
        return max(1, math.ceil(round(self.seconds * MIN_S_FACTOR, 6)))


_H100 = "H100 2026-11-26, record 174613 (the probe at cf77cf4)"
_H200 = "H200 2026-11-27, record 211043 (the probe at b235fde)"
_H200_7F = "H200 2026-11-28, record 171349 (the probe at 7f842ed)"
_VIDEO = "checks._gpu_probe_video"
PARTS = {
    p.id: p
    for p in [
        Part("P0", "machine", "torch/CUDA/GPU/driver/ncu versions and names", 90, 5.5, f"{_H200}: 5.48 s", False,
             "part_machine"),
        Part("P10", "temporal kernels", "the must-run tests of temporal.cu and the device filter on this GPU (JUnit "
             "outcomes); blend/hold/propagate on the device against the CPU kernels: equal, else the first "
             "divergence (index, both values and bits, count, inputs there)", 20, 6.7,
             f"{_H200_7F}: 6.70 s (its pytest run copying P2's bundle; 34.6 s at b235fde, which exported its own)",
             True, "part_temporal_kernels", _VIDEO),
        Part("P2", "bundles", "export seconds of the tiny bundle (or reused); whether the full-size one is there",
             40, 0.6, f"{_H100}: 0.57 s reused, where the engine stage ran before it in "
             "the command (checks/gpu_engine.py exports the tiny bundle into the command's shared_exports, as the "
             f"plan's first command does now); exported here: 30.4 s in the {_H200}, the export 27.87 s of it",
             False, "part_export"),
        Part("P9", "video filter on the device", "VideoSegmenter (--stabilize, keyframes) with the filter on the device "
             "and on the host: ms per frame, label agreement (an error per mode and frame recorded, the rest run); "
             "zsseg camera --live --device cuda on the clip: fps, latency", 60, 25.4,
             f"{_H200_7F}: 25.4 s (labels equal to the host's in both modes; --live 45.6 fps)", True, "part_video",
             _VIDEO),
        Part("P7", "batched call", "engine([photo]*n) vs n single calls, n = 4, 8 (batched graphs): ms, speedup, "
             "labels equal, memory", 30, 12.0,
             f"est.: 10.6 s in the {_H200_7F} (4 images in one call 13.5 ms, eager; 4 singles 3.4 ms), plus the "
             "graphs captured per batch size now (issue 86 item 3)", True, "part_batch"),
        Part("P6", "ctypes CudaDriver", "real libcuda: CudaMemory (mapped off/on) + DriverCudaGraphs + timing "
             "events on the CudaOpsModel stand-in: replay == eager per frame, graph stats, stage ms", 10, 1.17,
             f"{_H200}; 0.77 s in the {_H200_7F}",
             True, "part_ctypes_driver"),
        # the extras
        Part("P11", "compiled encoder", "encoder_variant='compiled' pinned: the first frame's seconds (the cold "
             "torch.compile), then every variant timed and gated against the fp16 graph on the photo", 150, 120.0,
             "est.: a cold torch.compile of the ViT-B/16 encoder, never run here (issue 86 item 4: auto leaves it out "
             "for that cost)", True, "part_compiled_encoder"),
        Part("P7S", "multi-source streams", "benchmarks streams on the torch CUDA Engine (frames/s, RSS), cut at "
             "30 s", 45, 33.0, "est.: its 30-s cap and the start; never run on a GPU", True, "part_streams"),
        Part("P1", "post-processing host cost", "ops.segment_windows C=20/171: host us per call (200 enqueued), "
             "call+sync median us, profiler CUDA API calls per call, kernel us", 60, 11.06, _H100, True,
             "part_host_cost"),
        Part("P2F", "full-size bundle", "export seconds of the full-size ZegCLIP ViT-B/16 (or reused)", 120, 34.34,
             "H100 2026-11-26, record 174205 (the engine stage's export)", False, "part_full_export"),
        Part("P3", "fp16/bf16 gates", "gate records of the full encoder (agreement with ONNX Runtime fp32)", 120, 42.9,
             f"{_H100}: the whole P3, its graph half (now the engine stage's) included: an upper bound", True,
             "part_precisions"),
        Part("P8", "CUDA AMP training", "10 iterations of tiny_test, AMP float16 + GradScaler: losses, scale, s",
             60, 18.95, _H100, True, "part_amp_training"),
        Part("P5", "ncu of segment_windows", "ncu sections of the C=171 kernel on i.i.d. logits "
             "(ncu_segment_windows.txt)", 45, 10.55, f"{_H100}: its i.i.d. run (9.9 s) and the part's start", True,
             "part_ncu"),
        Part("P5E", "ncu within an Engine frame", "ncu sections of the C=171 kernel on an Engine frame's logits "
             "(ncu_segment_windows.txt)", 120, 80.0, "est.: cut at 26.8 s on the H100, never finished", True,
             "part_ncu_engine"),
    ]
}  # fmt: skip
# What never ran on a GPU, the riskiest first (the H100 lease left P7 and P9 out for want of budget; P10 is new),
# after P2, whose tiny bundle they take (``NEEDS_BUNDLE``)
ORDER = ["P2", "P10", "P9", "P7", "P6"]
# The parts that take P2's bundle: P10's pytest run (the tiny one, through $ZSSEG_TEST_TINY_BUNDLE), P9 and P7 (the
# full-size one where an earlier stage of the command left it, else the tiny one). One that ran before P2 would
# export its own (27.9 s on the H200 at b235fde, where P10 ran first).
NEEDS_BUNDLE = ("P10", "P9", "P7")


def order_problems(order: List[str]) -> List[str]:
    """The parts of ``order`` that take P2's bundle but would run before P2 (empty: none)."""
    if "P2" not in order:
        return []
    early = [p for p in order[: order.index("P2")] if p in NEEDS_BUNDLE]
    return [f"{p} runs before P2, whose bundle it takes: it would export its own" for p in early]


EXTRA_ORDER = ["P11", "P7S", "P1", "P2F", "P3", "P8", "P5", "P5E"]


def schedule(order: List[str], budget: float, table: Optional[Dict[str, Part]] = None, pace: float = 1.0) -> List[dict]:
    """The parts of ``order`` as the probe would run them within ``budget`` when each takes its ``seconds`` times
    ``pace`` (after P0): each one's start, what is left then, and whether it starts (left >= min_s). The arithmetic
    of a lease (``pace`` 1.2: every part 20 % slower than its time)."""
    table = table or PARTS
    elapsed = table["P0"].seconds * pace + PART_OVERHEAD_S
    rows = []
    for name in order:
        part = table[name]
        left = budget - elapsed - MARGIN_S
        starts = left >= part.min_s
        rows.append({"id": name, "start_s": round(elapsed, 2), "left_s": round(left, 2), "min_s": part.min_s,
                     "starts": starts})  # fmt: skip
        if starts:
            elapsed += part.seconds * pace + PART_OVERHEAD_S
    return rows


def expected_seconds(order: List[str], table: Optional[Dict[str, Part]] = None) -> float:
    """What the probe takes when every part of ``order`` starts and takes its ``seconds``."""
    table = table or PARTS
    return table["P0"].seconds + sum(table[n].seconds for n in order) + PART_OVERHEAD_S * (len(order) + 1)


# the --dry-run stand-ins: the same scheduling, time bounds and records, no torch (python_tests/test_gpu_probe.py)
DRY_PARTS = {
    p.id: p
    for p in [
        Part("P0", "machine", "stand-in", 10, 0.5, "stand-in", False, "dry_machine"),
        Part("D1", "measures", "a value in ms", 10, 0.5, "stand-in", False, "dry_measures"),
        Part("D2", "raises", "nothing: raises ValueError", 10, 0.5, "stand-in", False, "dry_raises"),
        Part("D3", "overruns", "one value, then sleeps past its 2 s bound", 2, 0.5, "stand-in", False, "dry_overruns"),
        Part("D4", "needs CUDA", "nothing without CUDA", 10, 0.5, "stand-in", True, "dry_measures"),
        Part("D5", "skips itself", "nothing: a tool it needs is absent", 10, 0.5, "stand-in", False, "dry_skips"),
    ]
}
DRY_ORDER = ["D1", "D2", "D3", "D4", "D5"]


# ---- the child: one part ------------------------------------------------------------------------------------------
class Context:
    """What a part gets: ``record(key, value)`` (written at once: kept if the part is cut), ``work`` (kept between
    parts and runs: the bundles), ``out`` (the probe's output folder), ``device``, ``deadline`` (monotonic)."""

    def __init__(self, result: Path, work: Path, out: Path, device: str, deadline: float, clip: Optional[str] = None):
        self.result, self.work, self.out, self.device, self.deadline = result, work, out, device, deadline
        self.clip = clip  # the clip P9 runs --live on (gpu_artifacts/clips), or None: a synthetic one
        self.measured: Dict[str, Any] = {}

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def record(self, key: str, value: Any) -> None:
        self.measured[key] = value
        self._write({"status": "running", "measured": self.measured})

    def _write(self, data: dict) -> None:
        _write_json(self.result, data)


def error_record(exc: BaseException) -> dict:
    lines = traceback.format_exception(exc)
    head = lines if len(lines) <= 8 else lines[:3] + ["...\n"] + lines[-4:]
    return {"type": type(exc).__name__, "message": str(exc)[:1000], "traceback_head": head}


def run_child(args) -> int:
    """Run one part (``--child ID``) and write its result to ``--result``."""
    table = DRY_PARTS if args.dry_run else PARTS
    part = table[args.child]
    ctx = Context(Path(args.result), Path(args.work), Path(args.out), args.device, time.monotonic() + args.bound,
                  args.clip)  # fmt: skip
    if args.dry_run:
        function: Callable[[Context], Any] = globals()[part.function]
    else:
        import importlib

        function = getattr(importlib.import_module(part.module), part.function)
    try:
        returned = function(ctx) or {}
        ctx.measured.update(returned)
        ctx._write({"status": "ok", "measured": ctx.measured})
    except Skip as exc:
        ctx._write({"status": "skipped", "reason": str(exc), "measured": ctx.measured})
    except BaseException as exc:  # noqa: BLE001 - recorded; the parent runs the next part
        ctx._write({"status": "failed", "error": error_record(exc), "measured": ctx.measured})
        traceback.print_exc()
    sys.stdout.flush()
    return 0


# ---- the parent: schedule, bound, record ---------------------------------------------------------------------------
def _write_json(path: Path, data: dict) -> None:
    """Written whole or not at all (a temporary file renamed over it)."""
    handle, temporary = tempfile.mkstemp(dir=str(path.parent), prefix=f".{path.name}.")
    with os.fdopen(handle, "w") as stream:
        json.dump(data, stream, indent=2, default=str)
    os.replace(temporary, path)


def _launch(
    part: Part, bound: float, work: Path, out: Path, device: str, dry_run: bool, log: Path, clip: Optional[str] = None
) -> dict:
    """Run ``part`` in a child process for at most ``bound`` seconds: its result record."""
    result = work / "probe_parts" / f"{part.id}.json"
    result.parent.mkdir(parents=True, exist_ok=True)
    result.unlink(missing_ok=True)
    args = ["--child", part.id, "--result", result, "--work", work, "--out", out, "--device", device, "--bound", bound]
    args += ["--dry-run"] if dry_run else []
    args += ["--clip", clip] if clip else []
    command, env = checkout_module("checks.gpu_probe", *args, repo=REPO)  # the checkout appended to sys.path
    start = time.monotonic()
    with open(log, "w") as output:
        child = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, start_new_session=True, env=env)
        try:
            rc = child.wait(timeout=bound)
            timed_out = False
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)  # the part's own process group: its child tools (ncu) too
            rc = child.wait()
            timed_out = True
    seconds = round(time.monotonic() - start, 2)
    try:
        record = json.loads(result.read_text())
    except (OSError, ValueError):
        record = {"measured": {}}
    if timed_out:
        record["status"] = "timeout"
        record["reason"] = f"cut at its time bound of {bound:.0f} s; what it measured before is kept"
    elif record.get("status") not in ("ok", "failed", "skipped"):
        record["status"] = "crashed"
        record["reason"] = f"the part's process exited with {rc} before recording a result"
    record.update(seconds=seconds, bound_s=round(bound, 1), exit_code=rc)
    if record["status"] != "ok":
        record["output_tail"] = log.read_text(errors="replace")[-LOG_TAIL:]
    return record


def _skipped(reason: str) -> dict:
    return {"status": "skipped", "reason": reason, "measured": {}, "seconds": 0.0}


def _machine_name(machine: dict) -> str:
    return machine.get("gpu") or f"no CUDA ({machine.get('cuda_reason', 'unknown')})"


def run_probe(
    out: Path, work: Path, budget: float, device: str, parts: List[str], dry_run: bool = False,
    machine: Optional[dict] = None, clip: Optional[str] = None,
) -> dict:  # fmt: skip
    """Run ``parts`` (after P0, the machine, unless ``machine`` is given) within ``budget`` seconds; probe.json is
    rewritten before and after every part. ``clip``: P9's (the carried one). Returns the report."""
    table = DRY_PARTS if dry_run else PARTS
    started = time.monotonic()
    out.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    path, log_path = out / "probe.json", out / "probe_log.txt"
    log_path.write_text("")
    report: Dict[str, Any] = {"probe": "checks/gpu_probe.py", "dry_run": dry_run, "budget_s": budget,
                              "device": device, "units": UNITS, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                              "parts": [], "complete": False}  # fmt: skip
    if not dry_run:  # the extras this run leaves out: measured before (their source) or too long for the lease
        report["extras_not_run"] = {n: table[n].source for n in EXTRA_ORDER if n not in parts}

    def run_one(part: Part, cuda_reason: Optional[str]) -> dict:
        left = budget - (time.monotonic() - started) - MARGIN_S
        base = {"id": part.id, "title": part.title, "what": part.what}
        if part.needs_cuda and cuda_reason:
            return {**base, **_skipped(f"no CUDA: {cuda_reason}")}
        if left < part.min_s:
            return {**base, **_skipped(f"budget: {max(left, 0):.0f} s left, the part needs at least {part.min_s} s")}
        report["parts"].append({**base, "status": "running", "bound_s": round(min(part.bound_s, left), 1)})
        _write_json(path, report)
        report["parts"].pop()
        child_log = work / "probe_parts" / f"{part.id}.log"
        child_log.parent.mkdir(parents=True, exist_ok=True)
        record = _launch(part, min(part.bound_s, left), work, out, device, dry_run, child_log,
                         **({"clip": clip} if clip else {}))  # fmt: skip
        with open(log_path, "a") as stream:
            stream.write(f"==== {part.id} {part.title}: {record['status']} ({record['seconds']} s)\n")
            stream.write(child_log.read_text(errors="replace")[-LOG_TAIL:] + "\n")
        return {**base, **record}

    if machine is None:
        record = run_one(table["P0"], None)
        machine = dict(record.get("measured") or {}, status=record["status"])
    report["machine"] = machine
    cuda_reason = None if machine.get("cuda") and device.startswith("cuda") else (
        machine.get("cuda_reason") or f"--device {device}")  # fmt: skip
    _write_json(path, report)
    for name in parts:
        record = run_one(table[name], cuda_reason)
        record["machine"] = _machine_name(machine)
        report["parts"].append(record)
        _write_json(path, report)
    report["complete"] = True
    report["seconds"] = round(time.monotonic() - started, 1)
    _write_json(path, report)
    return report


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="out/gpu_probe", help="probe.json (and at most 2 other files) go here")
    parser.add_argument("--work", default=None, help="bundles and part files (default: a folder under the temp dir)")
    parser.add_argument("--budget", type=float, default=DEFAULT_BUDGET_S, help="seconds for every part together")
    parser.add_argument("--parts", default=None, help=f"comma-separated part ids (default {','.join(ORDER)}), or "
                        f"'extras' ({','.join(EXTRA_ORDER)})")  # fmt: skip
    parser.add_argument("--clip", default=None, help="P9's clip (default: a synthetic one written in --work)")
    parser.add_argument("--device", default="cuda", help="cuda (default), or cpu: every CUDA part is skipped")
    parser.add_argument("--dry-run", action="store_true", help="stand-in parts: the plumbing only, no torch")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    parser.add_argument("--bound", type=float, default=60.0, help=argparse.SUPPRESS)
    parser.add_argument("--ncu-target", choices=["iid", "engine"], help=argparse.SUPPRESS)  # what P5's ncu runs
    args = parser.parse_args(argv)
    if args.child:
        return run_child(args)
    if args.ncu_target:
        from checks._gpu_probe_parts import ncu_target

        return ncu_target(args.ncu_target, Path(args.work))
    table, order = (DRY_PARTS, DRY_ORDER) if args.dry_run else (PARTS, ORDER)
    named = (args.parts or "").replace("extras", ",".join(EXTRA_ORDER)) if not args.dry_run else (args.parts or "")
    parts = [p.strip() for p in named.split(",") if p.strip()] or order
    unknown = [p for p in parts if p not in table or p == "P0"]
    if unknown:
        known = order + ([] if args.dry_run else EXTRA_ORDER)
        parser.error(f"unknown part(s) {unknown}: choose among {', '.join(known)}")
    work = Path(args.work) if args.work else Path(tempfile.gettempdir()) / "zsseg_gpu_probe"
    report = run_probe(Path(args.out), work, args.budget, args.device, parts, args.dry_run, clip=args.clip)
    for part in report["parts"]:
        why = part.get("reason") or (part.get("error") or {}).get("message", "")
        print(f"{part['id']} {part['title']}: {part['status']} ({part['seconds']} s){': ' + why if why else ''}")
    print(f"gpu_probe: {Path(args.out) / 'probe.json'} ({report['seconds']} s of {args.budget:.0f})")
    return 0


# ---- the dry-run stand-ins ----------------------------------------------------------------------------------------
def dry_machine(ctx: Context) -> dict:
    return {"dry_run": True, "cuda": False, "cuda_reason": "dry run: no CUDA looked for", "gpu": None}


def dry_measures(ctx: Context) -> dict:
    return {"value_ms": 1.5}


def dry_raises(ctx: Context) -> dict:
    ctx.record("before_ms", 0.5)
    raise ValueError("a part that raises")


def dry_overruns(ctx: Context) -> dict:
    ctx.record("first_ms", 1.0)
    time.sleep(600)
    return {"never": True}


def dry_skips(ctx: Context) -> dict:
    raise Skip("the tool it needs is not installed")


if __name__ == "__main__":
    sys.exit(main())
