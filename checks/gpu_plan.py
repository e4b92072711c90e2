"""The next lease's calls to the device tool: the plan of ``checks/gpu_stages.py`` less the stages whose latest record
is a pass that still counts at this tree (``checks/gpu_record.py``: the same coverage hash) and less the DEFERRED
stages that are not due, with the lease's arithmetic (issue 72 item 5: the acceptance within 11 minutes with a 120-s
start, the rest of the 15 minutes the room to rerun one stage). Its own module because it reads both the table and
the records (the records import the table; the table imports nothing of the records).

No stage is deferred now (gpu_stages.DEFERRED is empty: every stage, the engine's included, is in the plan; issue 78
item 6). The rule is kept for a stage the acceptance cannot hold: the engine, deferred, is due only when a file of
what it failed on changed since the commit its latest record ran (ENGINE_TRIGGERS: post-processing, the kernels
slower than torch eager, the check and the benchmark themselves; git, working tree against that commit), or when no
record of it can be compared. Due, it runs last, in the rerun room.

Usage:
    python -m checks gpu_plan [--all] [--json] [--sass]   # the device tool's calls (--all: nothing skipped or
                                                          # deferred; --sass: run the pre-lease SASS check first)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from benchmarks._launch import checkout_module

from . import gpu_record
from .gpu_stages import (
    COMMAND_GAP_S,
    DEFERRED,
    LEASE_S,
    PLAN,
    PLAN_LIMIT_S,
    REPO,
    RUNS,
    START_ALLOWANCE_S,
    command_timeout,
    files_of,
    lease_arithmetic,
    stage,
)

# What the engine stage failed on in its latest record (174205: post-processing 8.69 % of the encoder; similarity
# and upsample slower than torch eager), and what makes its verdict: a change to any of these makes it due. Paths,
# or prefixes ending in "*".
ENGINE_TRIGGERS = (
    "csrc/cuda/segment_windows*",
    "csrc/include/zsseg/segment_windows*",
    "csrc/bindings/segment_windows.cpp",  # a prepared plan's scratch (ordered_prebound's bounds)
    "zsseg_rt/runtime/device/postprocess_plans.py",
    "zsseg_rt/runtime/device/device_pipeline.py",
    "zsseg_rt/runtime/device/frame_batches.py",
    "zsseg_rt/runtime/device/encoder_choice.py",
    "zsseg_rt/export/torch_encoders.py",
    "checks/_gpu_engine_batch.py",
    "checks/_gpu_bundles.py",
    "checks/_gpu_postprocess.py",
    "checks/_postprocess_logits.py",
    "csrc/cuda/similarity.cu",
    "csrc/include/zsseg/similarity.h",
    "csrc/cuda/upsample.cu",
    "csrc/include/zsseg/upsample.h",
    "csrc/cuda/tile_gemm.cuh",
    "csrc/cuda/resize_common.cuh",
    "checks/gpu_engine.py",
    "benchmarks/cuda.py",
    "benchmarks/_cuda_timing.py",
)
# The check before a lease: the bit-exact temporal kernels' SASS (sm_90) holds no FMA that nvcc contracted
SASS_CHECK = "python -m checks sass --contraction"


def current_passes(gpu: Optional[str] = None) -> Dict[str, str]:
    """Stage -> the record whose pass counts at this tree (gpu_record: same coverage hash; a timing stage's only
    when measured on ``gpu``'s kind, the machine the lease will get)."""
    return gpu_record.current_passes(gpu=gpu)


def _triggered(path: str) -> bool:
    return any(path.startswith(t[:-1]) if t.endswith("*") else path == t for t in ENGINE_TRIGGERS)


def latest_record(name: str, runs: Path = RUNS) -> Optional[Tuple[str, dict]]:
    """The latest record of stage ``name`` in docs/gpu_runs/ (by ``finished``): (file name, record)."""
    found = []
    for path in sorted(runs.glob("*.json")):
        try:
            record = json.loads(path.read_text())
        except ValueError:
            continue
        if isinstance(record, dict) and record.get("stage") == name:
            found.append((str(record.get("finished", "")), path.name, record))
    if not found:
        return None
    _, file_name, record = max(found, key=lambda item: item[:2])
    return file_name, record


def changed_since(commit: str, root: Path = REPO) -> List[str]:
    """The files that differ between ``commit`` and the working tree (committed or not), and the untracked ones."""

    def run(*args: str) -> List[str]:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True).stdout.split()

    return sorted(set(run("diff", "--name-only", commit, "--") + run("ls-files", "--others", "--exclude-standard")))


def engine_due(runs: Path = RUNS, root: Path = REPO) -> Tuple[bool, str]:
    """Whether the deferred engine stage is due at this tree, and why (or why not)."""
    latest = latest_record("engine", runs)
    if latest is None:
        return True, "no record of it: it never ran"
    name, record = latest
    commit = (record.get("artifacts") or {}).get("commit")
    if not commit:
        return True, f"its latest record {name} names no commit to compare with"
    try:
        changed = [p for p in changed_since(commit, root) if _triggered(p)]
    except (OSError, subprocess.CalledProcessError) as exc:
        return True, f"what changed since {commit[:7]} cannot be told here ({type(exc).__name__}): run it"
    if changed:
        more = f" and {len(changed) - 4} more" if len(changed) > 4 else ""
        return True, f"changed since its latest record {name} (at {commit[:7]}): {', '.join(changed[:4])}{more}"
    why = DEFERRED.get("engine", "not deferred")
    return False, f"{why}; nothing of it changed since its latest record {name} (at {commit[:7]})"


def deferred_due(runs: Path = RUNS, root: Path = REPO) -> Dict[str, Tuple[bool, str]]:
    """Each DEFERRED stage: (due, why)."""
    checks = {"engine": engine_due}
    return {name: checks[name](runs, root) for name in DEFERRED}


def lease_plan(skip: Optional[Dict[str, str]] = None) -> List[dict]:
    """The device tool's calls: the plan's commands less the stages in ``skip`` (stage -> why), empty ones dropped."""
    skip = skip or {}
    calls = []
    for command in PLAN:
        stages = [stage(n) for n in command if n not in skip]
        if not stages:
            continue
        calls.append(
            {
                "stages": [s.name for s in stages],
                "command": f'bash tools/gpu_check.sh --stage {",".join(s.name for s in stages)} --record-dir "$OUT"',
                "carry": ["gpu_artifacts"],
                "timeout_s": command_timeout(stages),
                "files": sum(files_of(s) for s in stages),
                "expected_s": {s.name: s.expected_s for s in stages},
                "in_room": all(s.name in DEFERRED for s in stages),
            }
        )
    return calls


def arithmetic(calls: List[dict]) -> dict:
    """The lease's arithmetic of these calls: the acceptance (the calls outside the rerun room) and, with the
    deferred stages among the calls, the whole."""
    due = [n for call in calls for n in call["stages"] if n in DEFERRED]
    plan = [tuple(call["stages"]) for call in calls]
    return {"acceptance": lease_arithmetic(plan), "with_due": lease_arithmetic(plan, due) if due else None}


def plan_text(calls: List[dict], skip: Dict[str, str], due: Optional[Dict[str, str]] = None) -> str:
    sums = arithmetic(calls)
    first = sums["acceptance"]
    fits = ", ".join(first["rerun_fits_at_budget"]) or "none"
    lines = [
        f"# before the lease: {SASS_CHECK} (the temporal kernels' SASS for sm_90: no FMA that nvcc contracted; CI "
        "runs it too), bash tools/gpu_artifacts.sh, python -m checks gpu_stages check",
        f"# the acceptance: {len(first['commands'])} command(s), expected {first['seconds']} s of the plan's "
        f"{PLAN_LIMIT_S} s with the start ({START_ALLOWANCE_S} s, then {COMMAND_GAP_S} s per later command) in a "
        f"{LEASE_S} s lease; {first['room_s']} s of room: a rerun of one stage (at its full budget: {fits}); issue "
        "each call within 30 s of the last one's reply, then give_back",
    ]
    lines += [f"# skipped: {name} ({why})" for name, why in skip.items()]
    if sums["with_due"]:
        whole = sums["with_due"]
        room_fits = ", ".join(whole["rerun_fits"]) or "none"
        lines.append(f"# due, run in the rerun room: {', '.join((due or {}).keys()) or 'a deferred stage'}; then "
                     f"{whole['seconds']} s in all, {whole['room_s']} s left: a rerun of one of {room_fits} at its "
                     "expected time")  # fmt: skip
        lines += [f"#   {name}: {why}" for name, why in (due or {}).items()]
    for number, call in enumerate(calls, 1):
        where = " (the rerun room)" if call["in_room"] else ""
        lines.append(f"# command {number}{where}: " + ", ".join(
            f"{n} {s} s ({stage(n).expected_from.split(':')[0]})" for n, s in call["expected_s"].items())
            + f"; up to {call['files']} files back")  # fmt: skip
        lines.append(f"run  carry: {json.dumps(call['carry'])}   timeout_s: {call['timeout_s']}")
        lines.append(f"     command: {call['command']}")
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m checks gpu_plan", description=__doc__.split("\n\n")[0])
    parser.add_argument("--all", action="store_true", help="every stage: current passes and deferred ones included")
    parser.add_argument("--json", action="store_true", help="the calls as JSON")
    parser.add_argument("--sass", action="store_true", help=f"first run the pre-lease check ({SASS_CHECK})")
    parser.add_argument("--gpu", default=None, help="the kind the lease will get (nvidia-h100-x1, nvidia-h200: the "
                        "device tool's status): a timing stage's pass on that kind can be skipped (default: none is)")  # fmt: skip
    options = parser.parse_args(argv)
    if options.sass:
        command, env = checkout_module("checks", "sass", "--contraction")  # from any cwd, PYTHONSAFEPATH=1 too
        done = subprocess.run(command, env=env, cwd=REPO)
        if done.returncode != 0:
            print(f"gpu_plan: {SASS_CHECK} failed (exit {done.returncode}): fix the kernels before a lease",
                  file=sys.stderr)  # fmt: skip
            return 1
    skip: Dict[str, str] = {}
    due: Dict[str, str] = {}
    if not options.all:
        for name, record in current_passes(options.gpu).items():
            skip[name] = f"its latest record {record} passed with the same coverage hash: unchanged since"
        for name, (is_due, why) in deferred_due().items():
            if name in skip:
                continue
            if is_due:
                due[name] = why
            else:
                skip[name] = f"deferred: {why}"
    calls = lease_plan(skip)
    if options.json:
        print(json.dumps({"calls": calls, "skipped": skip, "due": due, "arithmetic": arithmetic(calls),
                          "expected_s": arithmetic(calls)["acceptance"]["seconds"]}))  # fmt: skip
    else:
        print(plan_text(calls, skip, due if not options.all else {n: "--all" for n in DEFERRED}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
