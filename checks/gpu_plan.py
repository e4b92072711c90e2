"""The next lease's calls to the device tool: the plan of ``checks/gpu_stages.py`` less the stages whose latest record
is a pass that still counts at this tree (``checks/gpu_record.py``: the same coverage hash). Its own module because it
reads both the table and the records (the records import the table; the table imports nothing of the records).

Usage:
    python -m checks gpu_plan [--all] [--json]   # the device tool's calls (--all: current passes not skipped)
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Dict, List, Optional

from . import gpu_record
from .gpu_stages import (
    COMMAND_GAP_S,
    LEASE_S,
    PLAN,
    PLAN_LIMIT_S,
    START_ALLOWANCE_S,
    command_timeout,
    files_of,
    plan_seconds,
    stage,
)


def current_passes() -> Dict[str, str]:
    """Stage -> the record whose pass counts at this tree (gpu_record: same coverage hash)."""
    return gpu_record.current_passes()


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
            }
        )
    return calls


def plan_text(calls: List[dict], skip: Dict[str, str]) -> str:
    total = plan_seconds([c["stages"] for c in calls])
    lines = [
        f"# {len(calls)} command(s), expected {total} s of the plan's {PLAN_LIMIT_S} s with the start "
        f"({START_ALLOWANCE_S} s, then {COMMAND_GAP_S} s per later command) in a {LEASE_S} s lease; issue each call "
        "within 30 s of the last one's reply, then give_back"
    ]
    lines += [f"# skipped: {name} ({why})" for name, why in skip.items()]
    for number, call in enumerate(calls, 1):
        lines.append(f"# command {number}: " + ", ".join(
            f"{n} {s} s ({stage(n).expected_from.split(':')[0]})" for n, s in call["expected_s"].items())
            + f"; up to {call['files']} files back")  # fmt: skip
        lines.append(f"run  carry: {json.dumps(call['carry'])}   timeout_s: {call['timeout_s']}")
        lines.append(f"     command: {call['command']}")
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m checks gpu_plan", description=__doc__.split("\n\n")[0])
    parser.add_argument("--all", action="store_true", help="every stage, current passes included")
    parser.add_argument("--json", action="store_true", help="the calls as JSON")
    options = parser.parse_args(argv)
    skip = {} if options.all else {
        name: f"its latest record {record} passed with the same coverage hash: unchanged since"
        for name, record in current_passes().items()
    }  # fmt: skip
    calls = lease_plan(skip)
    if options.json:
        print(json.dumps({"calls": calls, "skipped": skip, "expected_s": plan_seconds([c["stages"] for c in calls])}))
    else:
        print(plan_text(calls, skip))
    return 0


if __name__ == "__main__":
    sys.exit(main())
