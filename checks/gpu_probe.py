"""A probe of everything the GPU path has never run (issue 62 item 6; the review's section 4, P1-P8), for one lease.

Usage (on the lent GPU, from the checkout, with the wheel installed):
    python -m checks gpu_probe --out DIR [--budget 280] [--parts P2,P3] [--work DIR] [--device cuda]
    python -m checks gpu_probe --out DIR --dry-run      # the plumbing only: stand-in parts, no torch, seconds

Each part runs in a child process of its own (a CUDA error in one cannot poison the next), under its own time
bound and within what is left of ``--budget`` (the parent kills the child's process group at the bound). The
parent uses the standard library only and writes ``DIR/probe.json`` after EVERY part (and before each, with the
part "running"), so a lease cut keeps what finished; a part records its measurements as it goes, so a part cut at
its bound keeps what it measured before. Besides probe.json at most two files: ``probe_log.txt`` (each part's
output tail) and ``ncu_segment_windows.txt`` (P5's text report). A part's exception is recorded (type, message,
traceback head) and the next part runs. Parts that need CUDA say "skipped: no CUDA ..." where there is none; a
part is never reported as passed: the probe measures, it does not judge (``checks/gpu_engine.py`` judges).

Parts, in the order they run (by value; ``--parts`` runs the named ones in the order given):
    P2 export   the full-size ZegCLIP ViT-B/16 bundle and the tiny one (random weights), or reuse from --work
    P3 gates    torch fp16/bf16 accuracy gates on the GPU; fp16/bf16 CUDA graphs of the full encoder (stats,
                labels against fp32)
    P4 post     post-processing inside the frame graph: stage times from in-graph events at C=20/171, fp16; the
                price of the event nodes (host time per call, timed vs untimed graph)
    P6 driver   the ctypes CudaDriver on real libcuda: CudaMemory (mapped memory off/on), driver stream capture
                (DriverCudaGraphs), timing events; replay against eager frame by frame
    P1 host     ops.segment_windows host cost on the default stream, on an own stream (as the Engine), without a
                bias; torch profiler counts of cudaEventCreate/Record/StreamWaitEvent per call
    P8 amp      CUDA AMP training: 10 iterations of tiny_test in float16 with the GradScaler
    P5 ncu      ncu of segment_windows at C=171 on i.i.d. logits and on an Engine frame's logits (text report)
    P7 batch    engine([photo] * 4) against 4 single calls; benchmarks streams (multi-source camera) if it fits
    P9 video    the video filter (--stabilize, keyframes) on the device on a synthetic clip
P0 (the machine: torch, CUDA, GPU, driver, ncu) runs first, always.
"""

from __future__ import annotations

import argparse
import json
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

from checks._gpu_probe_parts import Skip  # one class for the parts and the dry-run stand-ins (standard library only)

REPO = Path(__file__).resolve().parent.parent
DEFAULT_BUDGET_S = 280
MARGIN_S = 5  # kept for the parent's last writes
LOG_TAIL = 6000  # characters of a part's output kept (probe_log.txt, and the JSON for a part that did not finish)
UNITS = "keys end in their unit: _ms milliseconds, _us microseconds, _s seconds, _mib MiB; others are counts/ratios"


@dataclass(frozen=True)
class Part:
    id: str
    title: str
    what: str  # what is measured, with units
    bound_s: int  # the part's own time bound
    min_s: int  # not started with less budget left than this
    needs_cuda: bool
    function: str  # the function in checks/_gpu_probe_parts.py (or in this module for the dry-run parts)


PARTS = {
    p.id: p
    for p in [
        Part("P0", "machine", "torch/CUDA/GPU/driver/ncu versions and names", 90, 10, False, "part_machine"),
        Part("P2", "bundle export", "export seconds of the full-size and tiny bundles (or reused)", 150, 20, False,
             "part_export"),
        Part("P3", "fp16/bf16 gates and graphs", "gate records (agreement with ONNX Runtime fp32) and the CUDA graphs"
             " of the full encoder per precision: graph stats, labels equal to fp32, host ms per frame", 120, 40,
             True, "part_precisions"),
        Part("P4", "post-processing inside the graph", "fp16, C=20/171: device ms per stage from in-graph events "
             "(median of 30 replays), post/encoder; host ms per call with and without the event nodes", 75, 25,
             True, "part_post_in_graph"),
        Part("P6", "ctypes CudaDriver", "real libcuda: CudaMemory (mapped off/on) + DriverCudaGraphs + timing "
             "events on the CudaOpsModel stand-in: replay == eager per frame, graph stats, stage ms", 60, 10, True,
             "part_ctypes_driver"),
        Part("P1", "post-processing host cost", "ops.segment_windows C=20/171: host us per call (200 enqueued), "
             "call+sync median us, profiler CUDA API calls per call, kernel us", 60, 15, True, "part_host_cost"),
        Part("P8", "CUDA AMP training", "10 iterations of tiny_test, AMP float16 + GradScaler: losses, scale, s",
             60, 20, True, "part_amp_training"),
        Part("P5", "ncu of segment_windows", "ncu sections of the C=171 kernel on i.i.d. and Engine-frame logits "
             "(ncu_segment_windows.txt)", 110, 40, True, "part_ncu"),
        Part("P7", "batched call and streams", "engine([photo]*4) vs 4 single calls (ms, images/s); benchmarks "
             "streams (frames/s, RSS)", 100, 30, True, "part_batch_streams"),
        Part("P9", "video filter on the device", "--stabilize and keyframes on a synthetic 640x480 clip: ms per "
             "frame", 60, 20, True, "part_video"),
    ]
}  # fmt: skip
# by what is still unmeasured: the H100 lease of 2026-11-26 ran P2-P6, P1, P8 and P5 in 140 s of 150 and left P7
# and P9 out for want of budget, so they come right after the export now, and P5 (ncu, 37 s) last
ORDER = ["P2", "P7", "P9", "P4", "P3", "P1", "P6", "P8", "P5"]

# the --dry-run stand-ins: the same scheduling, time bounds and records, no torch (python_tests/test_gpu_probe.py)
DRY_PARTS = {
    p.id: p
    for p in [
        Part("P0", "machine", "stand-in", 10, 1, False, "dry_machine"),
        Part("D1", "measures", "a value in ms", 10, 1, False, "dry_measures"),
        Part("D2", "raises", "nothing: raises ValueError", 10, 1, False, "dry_raises"),
        Part("D3", "overruns", "one value, then sleeps past its 2 s bound", 2, 1, False, "dry_overruns"),
        Part("D4", "needs CUDA", "nothing without CUDA", 10, 1, True, "dry_measures"),
        Part("D5", "skips itself", "nothing: a tool it needs is absent", 10, 1, False, "dry_skips"),
    ]
}
DRY_ORDER = ["D1", "D2", "D3", "D4", "D5"]


# ---- the child: one part ------------------------------------------------------------------------------------------
class Context:
    """What a part gets: ``record(key, value)`` (written at once: kept if the part is cut), ``work`` (kept between
    parts and runs: the bundles), ``out`` (the probe's output folder), ``device``, ``deadline`` (monotonic)."""

    def __init__(self, result: Path, work: Path, out: Path, device: str, deadline: float):
        self.result, self.work, self.out, self.device, self.deadline = result, work, out, device, deadline
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
    ctx = Context(Path(args.result), Path(args.work), Path(args.out), args.device, time.monotonic() + args.bound)
    if args.dry_run:
        function: Callable[[Context], Any] = globals()[part.function]
    else:
        import importlib

        function = getattr(importlib.import_module("checks._gpu_probe_parts"), part.function)
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


def _launch(part: Part, bound: float, work: Path, out: Path, device: str, dry_run: bool, log: Path) -> dict:
    """Run ``part`` in a child process for at most ``bound`` seconds: its result record."""
    result = work / "probe_parts" / f"{part.id}.json"
    result.parent.mkdir(parents=True, exist_ok=True)
    result.unlink(missing_ok=True)
    launcher = (
        "import runpy, sys; sys.path.append(sys.argv[1]); sys.argv = ['gpu_probe'] + sys.argv[2:]; "
        "runpy.run_module('checks.gpu_probe', run_name='__main__', alter_sys=True)"
    )
    command = [sys.executable, "-c", launcher, str(REPO), "--child", part.id, "--result", str(result)]
    command += ["--work", str(work), "--out", str(out), "--device", device, "--bound", str(bound)]
    command += ["--dry-run"] if dry_run else []
    start = time.monotonic()
    with open(log, "w") as output:
        child = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, start_new_session=True,
                                 env=dict(os.environ, PYTHONUNBUFFERED="1"))  # fmt: skip
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
    machine: Optional[dict] = None,
) -> dict:  # fmt: skip
    """Run ``parts`` (after P0, the machine, unless ``machine`` is given) within ``budget`` seconds; probe.json is
    rewritten before and after every part. Returns the report."""
    table = DRY_PARTS if dry_run else PARTS
    started = time.monotonic()
    out.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    path, log_path = out / "probe.json", out / "probe_log.txt"
    log_path.write_text("")
    report: Dict[str, Any] = {"probe": "checks/gpu_probe.py", "dry_run": dry_run, "budget_s": budget,
                              "device": device, "units": UNITS, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                              "parts": [], "complete": False}  # fmt: skip

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
        record = _launch(part, min(part.bound_s, left), work, out, device, dry_run, child_log)
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
    parser.add_argument("--parts", default=None, help=f"comma-separated part ids (default {','.join(ORDER)})")
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
    parts = [p.strip() for p in args.parts.split(",") if p.strip()] if args.parts else order
    unknown = [p for p in parts if p not in table or p == "P0"]
    if unknown:
        parser.error(f"unknown part(s) {unknown}: choose among {', '.join(order)}")
    work = Path(args.work) if args.work else Path(tempfile.gettempdir()) / "zsseg_gpu_probe"
    report = run_probe(Path(args.out), work, args.budget, args.device, parts, args.dry_run)
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
