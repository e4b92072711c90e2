"""The acceptance run's stages on a lent GPU machine: the one table of them.

``tools/gpu_check.sh --stage NAME`` runs one stage's steps from this table, ``checks/gpu_record.py`` lists every
stage in BENCHMARKS.md (those never run on a GPU as "never run"), ``tools/gpu_artifacts.sh`` downloads the Python
wheels named here, and python_tests/test_gpu_check.py checks the budgets and that the pytest pieces cover every test
file. Standard library only: it runs on a bare machine before anything is installed.

Usage:
    python -m checks gpu_stages list                  # name, budget, what: one stage per line, in order
    python -m checks gpu_stages steps NAME            # the stage's steps, one per line ("KIND ARG...")
    python -m checks gpu_stages budget NAME           # its budget in seconds
    python -m checks gpu_stages pytest-targets PIECE...   # pytest's arguments for those pieces (top: python_tests/test_*.py)
    python -m checks gpu_stages workers [--sanitized] # pytest-xdist workers (under compute-sanitizer: fewer)
    python -m checks gpu_stages carried-python        # the requirements of the carried wheels, one per line
    python -m checks gpu_stages check                 # what is wrong with the table (budgets, pieces), if anything

The machine (docs/gpu.md, "On a lent GPU machine"): 10 minutes per command, bare again after each, about 30 minutes
of device time per session, of which a cold start takes "a minute or more" per command. So a stage is one command,
each stage's budget (its time bound: a step still running then is stopped) is at most ``STAGE_LIMIT_S``, leaving
the command time for the set-up (artefacts checked, wheels installed, the import check) and the record; and the
budgets plus one start allowance per stage fit ``ACCEPTANCE_S``. Stages are ordered by what they tell: a lease cut
short still has the Engine and the CUDA ops. The budgets come from the H200 records of 2026-11-26 (docs/gpu_runs/,
``seconds`` per stage, with a thread per core among the pytest workers): engine 57 and 66 s, ops 99 s, models 220 s
(the ZegFormer learning test alone 153 s), suite 199 s, sanitizers 130 and 137 s; each with room to spare.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

REPO = Path(__file__).resolve().parent.parent
TESTS = REPO / "python_tests"

COMMAND_LIMIT_S = 600  # the device tool: one command at most 10 minutes
STAGE_LIMIT_S = 480  # a stage's budget at most 8 minutes: set-up, record and transfers fit in the rest
START_ALLOWANCE_S = 60  # a cold machine's start, counted per command (the device README: "a minute or more")
ACCEPTANCE_S = 25 * 60  # every stage, one command each, starts included
PYTEST_WORKERS = 16  # pytest-xdist workers: the GPU machine's 16 cores
SANITIZED_PYTEST_WORKERS = 8  # under compute-sanitizer each worker is an instrumented process on the one GPU

# What the GPU image lacks of the acceptance run's Python requirements (the device's KINDS.md lists the image:
# torch 2.11, numpy, onnx, onnxruntime, opencv-python-headless, pytest, pytest-xdist, hypothesis, timm, regex,
# huggingface-hub, safetensors, ... but not these): tools/gpu_artifacts.sh downloads them for CPython 3.12 and the
# acceptance run installs from them only what the machine lacks. Pins: requirements.txt where it pins them.
CARRIED_PYTHON = ("open_clip_torch==3.3.0", "ftfy==6.3.1", "wcwidth==0.9.4")


@dataclass(frozen=True)
class Stage:
    """One command on the lent machine. ``steps``: "engine", "cpp", "bench", "pytest PIECE...",
    "sanitizer TOOL cpp|pytest" (tools/gpu_check.sh's step kinds); every stage first checks the carried artefacts,
    installs the carried wheel and runs the import check."""

    name: str
    budget_s: int
    steps: Tuple[str, ...]
    what: str


STAGES: Tuple[Stage, ...] = (
    Stage(
        "engine",
        150,
        ("engine", "cpp", "bench"),
        "the Engine end to end (torch on CUDA vs ONNX Runtime on the CPU: labels; the full-size ViT-B/16's "
        "per-stage times, post-processing <= 3 % of the encoder), the C++ tests (every CUDA kernel against the CPU "
        "op), every CUDA op against torch eager on the same GPU (within 2x)",
    ),
    Stage(
        "ops",
        180,
        ("pytest ops runtime pipeline",),
        "the CUDA ops and their bindings, the device pipeline, the Engine and its backends (CUDA graphs) in pytest",
    ),
    Stage(
        "models",
        330,
        ("pytest models train contract eval data vocabulary",),
        "the model families, training and evaluation in pytest (on a GPU the models go to CUDA)",
    ),
    Stage(
        "suite",
        300,
        ("pytest export stream scale top",),
        "the rest of pytest: export (full-size ViT-B/16 too), streams, scale-out, the command line and the docs",
    ),
    Stage(
        "sanitizers",
        240,
        (
            "sanitizer memcheck cpp",
            "sanitizer racecheck cpp",
            "sanitizer synccheck cpp",
            "sanitizer memcheck pytest",
        ),
        "compute-sanitizer memcheck, racecheck and synccheck over the C++ CUDA tests, memcheck over the Python CUDA "
        "tests",
    ),
)

STEP_KINDS = ("engine", "cpp", "bench", "pytest", "sanitizer")
SANITIZER_TOOLS = ("memcheck", "racecheck", "synccheck")


def stage(name: str) -> Stage:
    for found in STAGES:
        if found.name == name:
            return found
    raise KeyError(f"unknown stage {name!r}; stages: {', '.join(s.name for s in STAGES)}")


def test_pieces() -> List[str]:
    """The pytest pieces of python_tests: each folder holding tests, and ``top`` (the files directly in it)."""
    pieces = sorted(
        p.name for p in TESTS.iterdir() if p.is_dir() and (any(p.glob("test_*.py")) or any(p.glob("*/test_*.py")))
    )
    return pieces + ["top"]


def pieces_of(found: Stage) -> List[str]:
    return [piece for step in found.steps if step.split()[0] == "pytest" for piece in step.split()[1:]]


def pytest_targets(pieces: List[str], root: Optional[Path] = None) -> List[str]:
    """pytest's arguments for ``pieces`` of the checkout at ``root``: the python_tests folder and an ``--ignore`` for
    each piece left out (top: the test files directly in it). Ignoring what is left out, rather than naming what is
    wanted, keeps pytest's --ignore working below (it does not apply to paths named on the command line)."""
    tests = (root or REPO) / "python_tests"
    known = test_pieces()
    unknown = [p for p in pieces if p not in known]
    if unknown:
        raise KeyError(f"no pytest piece {unknown[0]!r} (pieces: {', '.join(known)})")
    args = [str(tests)] + [f"--ignore={tests / p}" for p in known if p != "top" and p not in pieces]
    if "top" not in pieces:
        args.append(f"--ignore-glob={tests}/test_*.py")
    return args


def problems() -> List[str]:
    """What is wrong with the table: unknown step kinds, budgets over the limits, pytest pieces missing or twice."""
    found: List[str] = []
    names = [s.name for s in STAGES]
    if len(set(names)) != len(names):
        found.append(f"a stage name twice: {names}")
    for s in STAGES:
        if not 0 < s.budget_s <= STAGE_LIMIT_S:
            found.append(f"{s.name}: budget {s.budget_s} s, not within 1..{STAGE_LIMIT_S} s")
        for step in s.steps:
            kind, *args = step.split()
            if kind not in STEP_KINDS:
                found.append(f"{s.name}: unknown step kind {kind!r} ({', '.join(STEP_KINDS)})")
            if kind == "sanitizer" and (
                len(args) != 2 or args[0] not in SANITIZER_TOOLS or args[1] not in ("cpp", "pytest")
            ):
                found.append(f"{s.name}: bad sanitizer step {step!r} (sanitizer TOOL cpp|pytest)")
    total = sum(s.budget_s for s in STAGES) + START_ALLOWANCE_S * len(STAGES)
    if total > ACCEPTANCE_S:
        found.append(f"budgets plus one start each: {total} s, over the acceptance's {ACCEPTANCE_S} s")
    counted: Dict[str, int] = {}
    for s in STAGES:
        for piece in pieces_of(s):
            counted[piece] = counted.get(piece, 0) + 1
    for piece in test_pieces():
        if counted.get(piece, 0) != 1:
            found.append(f"pytest piece {piece!r} is in {counted.get(piece, 0)} stages (every piece in exactly one)")
    found += [f"pytest piece {p!r} of a stage is no folder of python_tests" for p in counted if p not in test_pieces()]
    return found


def main(argv: Optional[List[str]] = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    command = args.pop(0) if args else ""
    try:
        if command in ("-h", "--help") and not args:
            print(
                "usage: python -m checks gpu_stages {list | steps STAGE | budget STAGE | pytest-targets STAGE... | "
                "workers [--sanitized] | carried-python | check}"
            )
            print(__doc__.split("\n\n")[1])
        elif command == "list" and not args:
            for s in STAGES:
                print(f"{s.name}\t{s.budget_s}\t{s.what}")
        elif command == "steps" and len(args) == 1:
            print("\n".join(stage(args[0]).steps))
        elif command == "budget" and len(args) == 1:
            print(stage(args[0]).budget_s)
        elif command == "pytest-targets" and args:
            print("\n".join(pytest_targets(args)))
        elif command == "workers" and args in ([], ["--sanitized"]):
            print(SANITIZED_PYTEST_WORKERS if args else PYTEST_WORKERS)
        elif command == "carried-python" and not args:
            print("\n".join(CARRIED_PYTHON))
        elif command == "check" and not args:
            for line in problems():
                print(line)
            return 1 if problems() else 0
        else:
            print(__doc__.split("\n\n")[1], file=sys.stderr)
            print(f"gpu_stages: unknown command {' '.join([command] + args)!r} (--help lists them)", file=sys.stderr)
            return 2
    except KeyError as exc:
        print(f"gpu_stages: {exc.args[0]}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
