"""The image twin (issue 78 item 2): CI runs what the lent GPU image runs, in the image's versions, so that whatever
the image lacks or has in another version fails here first, not in a 15-minute lease.

tools/image_twin.sh drives it: a CPython 3.12 venv holding the image's versions (``image_versions``: the latest record's pip freeze), stand-ins for what the
twin leaves out (``STAND_INS``: torch and the packages built on it, see below), the carried wheels installed by
tools/gpu_check.sh itself, and each pytest stage run by tools/gpu_check.sh (its launcher, PYTHONSAFEPATH=1, the work
folder as cwd, ``-n``/``--dist loadgroup``) on artefacts built here without CUDA; then the engine stage's programs on
the emulated CUDA build through the same launcher. This module holds the twin's tables and its verdict (standard
library only: it runs before anything is installed).

Usage:
    python -m checks image_twin requirements         # the twin venv's requirements, one per line (uv pip install -r)
    python -m checks image_twin no-deps              # what is installed without its dependencies, one per line
    python -m checks image_twin stand-ins SITE       # writes the stand-in distributions into SITE (site-packages)
    python -m checks image_twin versions             # the venv holds the image's versions? (run with its Python)
    python -m checks image_twin pytest-args STAGE [--workers N]   # --pytest-args for tools/gpu_check.sh
    python -m checks image_twin stages               # the stages the twin runs, one per line
    python -m checks image_twin python               # a CPython 3.12 to make the twin with
    python -m checks image_twin snapshot TREE DEST   # TREE's files as the device tool sends them, into DEST
    python -m checks image_twin verdict OUT STAGE... # the pytest stages' reports under OUT: exit 1 on a failure
    python -m checks image_twin program --tree T --python P --site S --work W [--emulated SO] -- ARGS...
        # ARGS through tools/gpu_check.sh's run_module (T's own), in a stage's environment (its exit code)

Why no torch: the image's torch is 2.11.0 for CUDA 13.0; PyPI's wheel of it pulls about 3 GB of nvidia-* wheels (no
CPU-only torch is on PyPI, the one registry CI reaches), to run here what CI's own pytest sessions already run on
the CPU with torch 2.14.1. The drift that cost the H200 lease of b235fde was in the test tools (pytest 9.1.1), OpenCV
(5.0.0.93) and the launcher, none of which needs torch to show. So torch, torchvision and timm are stand-ins: their
metadata at the image's versions (the acceptance run's dependency check reads it) and a package whose import raises
``ModuleNotFoundError`` naming the twin (``STAND_IN_MARK``): a test that skips without torch skips, and a test or
collection that needs it fails with that mark, which the verdict counts as "needs torch", never as a pass. What the
twin therefore does not prove: anything of torch 2.11.0 (its numerics, its CUDA, the models stage), nor CUDA itself.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

REPO = Path(__file__).resolve().parent.parent
IMAGE_PYTHON = "3.12"  # the image's CPython 3.12.3 (every record's machine.python); any 3.12 here

# What the stages import and the stage does not carry (tools/gpu_check.sh installs only what the machine lacks), each
# at the image's version: the pip freeze every record's logs carry (logs/pip_freeze.txt, since 7f842ed), of the
# latest record in docs/gpu_runs/ that has one (issue 86 item 1: the twin had tqdm, pillow, filelock, hypothesis,
# tokenizers and timm at the project's pins, not the image's; matplotlib, which zsseg profile needs, was missing). A
# package the freeze lacks (an older record): the
# project's pin (requirements.txt), said in ``image_versions``' source column.
RECORDS = REPO / "docs" / "gpu_runs"
FREEZE_MEMBER = "logs/pip_freeze.txt"
TWIN_PACKAGES = ("numpy", "opencv-python-headless", "onnxruntime", "onnx", "scipy", "pytest", "pytest-xdist",
                 "tokenizers", "pillow", "tqdm", "hypothesis", "filelock", "execnet", "safetensors", "regex",
                 "huggingface-hub", "pyyaml", "onnxscript", "matplotlib")  # fmt: skip
UNPINNED = {"regex": "regex", "huggingface-hub": "huggingface-hub", "pyyaml": "pyyaml"}  # not pinned there
# Installed without their dependencies (they would pull torch): on the image they import torch, here they fail to
NO_DEPS_PACKAGES = ("timm",)


def latest_freeze(records: Path = RECORDS) -> Tuple[Optional[str], Dict[str, str]]:
    """(the record's logs tarball name, canonical name -> version) of the newest record whose logs hold a pip freeze;
    (None, {}) when none does."""
    import tarfile

    for tarball in sorted(records.glob("*.logs.tar.gz"), reverse=True):  # names start with the date: newest first
        try:
            with tarfile.open(tarball) as archive:
                member = next((m for m in archive.getmembers() if m.name.lstrip("./") == FREEZE_MEMBER), None)
                handle = archive.extractfile(member) if member is not None else None
                text = handle.read().decode("utf-8", "replace") if handle is not None else ""
        except (OSError, tarfile.TarError):
            continue
        found = {}
        for line in text.splitlines():
            name, sep, version = line.strip().partition("==")
            if sep and name and version:
                found[canonical(name)] = version.strip()
        if found:
            return tarball.name, found
    return None, {}


def image_versions(records: Path = RECORDS) -> List[Tuple[str, str]]:
    """(requirement, where its version comes from) of every package the twin installs (TWIN_PACKAGES, then
    NO_DEPS_PACKAGES): the latest record's pip freeze, else the project's pin."""
    source, frozen = latest_freeze(records)
    pins = requirement_pins()
    found = []
    for name in TWIN_PACKAGES + NO_DEPS_PACKAGES:
        key = canonical(name)
        if key in frozen:
            found.append((f"{name}=={frozen[key]}", f"the image's pip freeze ({source})"))
        else:
            found.append((pins.get(key, UNPINNED.get(name, name)), "the project's pin (no record's freeze has it)"))
    return found


# (distribution, version, module): metadata at the image's version, a module that refuses to import
STAND_INS: Tuple[Tuple[str, str, str], ...] = (
    ("torch", "2.11.0", "torch"),
    ("torchvision", "0.26.0", "torchvision"),
)
STAND_IN_MARK = "not in the image twin"
# The pytest stages the twin runs (models: every test file there trains or builds a torch model; sanitizers: the
# CUDA tests under compute-sanitizer, which all skip without a GPU), each whole as the stage runs it (every module of
# the stage collected in every worker and every test run: 670 and 445 tests, 28 and 32 CPU-s here), and per stage
# the files of which at least one test must pass (not skip): the drift the H200 lease met, and what the twin exists
# for (a selection that silently ran nothing fails).
RUN: Dict[str, Tuple[Tuple[str, str], ...]] = {
    "ops": (
        ("ops/test_warp.py", "the warp op against NumPy and OpenCV"),
        ("ops/test_preprocess_op.py", "preprocessing against OpenCV's resize"),
        ("runtime/test_backend_table.py", "the backends' table and what ONNX Runtime offers"),
    ),
    "suite": (
        ("stream/test_video_filter.py", "the video filter: OpenCV's optical flow and remap (the H200's OpenCV 5 "
         "failure)"),
        ("test_postprocess_variants.py", "the post-processing candidates' program and its check children"),
        ("cli/test_cli_camera_output_kind.py", "tiny-bundle tests (the bundle handed in: tools/image_twin.sh), the "
         "batch test that assumed Ray among them (the image has none: the H200 run of 7f842ed)"),
    ),
}  # fmt: skip
TWIN_STAGES = tuple(RUN)


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_pins(path: Path = REPO / "requirements.txt") -> Dict[str, str]:
    pins: Dict[str, str] = {}
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            pins[canonical(re.split(r"[\s\[<>=!~;]", line, maxsplit=1)[0])] = line
    return pins


def requirements() -> List[str]:
    """The twin venv's requirements (installed with their dependencies): the image's versions."""
    no_deps = {canonical(name) for name in NO_DEPS_PACKAGES}
    return [req for req, _ in image_versions() if canonical(re.split(r"[=<>!~]", req)[0]) not in no_deps]


def no_deps() -> List[str]:
    """What is installed without its dependencies (NO_DEPS_PACKAGES), at the image's versions."""
    wanted = {canonical(name) for name in NO_DEPS_PACKAGES}
    return [req for req, _ in image_versions() if canonical(re.split(r"[=<>!~]", req)[0]) in wanted]


def python312() -> Optional[str]:
    """A CPython 3.12 (the image's minor version): $ZSSEG_TWIN_PYTHON, python3.12 on PATH, or pyenv's; None."""
    import glob
    import shutil

    candidates = [os.environ.get("ZSSEG_TWIN_PYTHON", ""), shutil.which("python3.12") or ""]
    root = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    candidates += sorted(glob.glob(f"{root}/versions/{IMAGE_PYTHON}*/bin/python{IMAGE_PYTHON}"), reverse=True)
    for candidate in filter(None, candidates):  # a pyenv shim on PATH may name a version it cannot run
        if subprocess.run([candidate, "-c", ""], capture_output=True).returncode == 0:
            return candidate
    return None


def write_stand_in(site: Path, name: str, version: str, module: str) -> None:
    """A distribution ``name`` ``version`` in ``site`` whose module ``module`` raises ModuleNotFoundError."""
    info = site / f"{name}-{version}.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    (info / "INSTALLER").write_text("image_twin\n")
    package = site / module
    package.mkdir(exist_ok=True)
    (package / "__init__.py").write_text(
        f"raise ModuleNotFoundError({module!r} + ' {version} is {STAND_IN_MARK} (a stand-in: checks/image_twin.py)', "
        f"name={module!r})\n"
    )
    (info / "RECORD").write_text(f"{module}/__init__.py,,\n{info.name}/METADATA,,\n{info.name}/RECORD,,\n")


def version_problems() -> List[str]:
    """What this interpreter's environment holds against ``image_versions`` (run with the twin's Python)."""
    import importlib.metadata as md

    found = []
    if "%d.%d" % sys.version_info[:2] != IMAGE_PYTHON:
        found.append(f"Python {sys.version.split()[0]}, the image's is {IMAGE_PYTHON}")
    for req, _ in image_versions():
        name, _, want = req.partition("==")
        if not want:
            continue
        try:
            have = md.version(name)
        except md.PackageNotFoundError:
            have = "absent"
        if have != want:
            found.append(f"{name}: {have}, the image has {want}")
    return found


def pytest_args(stage: str, workers: int) -> str:
    """tools/gpu_check.sh's --pytest-args for ``stage`` (one of ``RUN``): fewer workers than the image's 16, and
    collection errors reported per module rather than stopping the run (a module that needs torch is one error among
    the rest, counted apart by the verdict)."""
    if stage not in RUN:
        raise KeyError(f"the twin runs the stages {', '.join(RUN)}, not {stage!r}")
    return f"-n {workers} --continue-on-collection-errors"


def snapshot(tree: Path, target: Path) -> int:
    """The files of ``tree`` the device tool would send (git's tracked and untracked-not-ignored ones; no .git)
    copied into ``target`` (emptied first): the stages run on a tree nobody edits meanwhile. Returns their count."""
    import shutil

    from checks.gpu_artifacts import travelling_files

    if target.exists():
        shutil.rmtree(target)
    names = travelling_files(tree)
    for name in names:
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(tree / name, target / name)
    return len(names)


def launcher_text(gpu_check: Path) -> str:
    """tools/gpu_check.sh's ``run_module`` function, as that file defines it (the twin runs the stage's programs
    through the very launcher the stage uses, whatever it becomes)."""
    text = gpu_check.read_text(encoding="utf-8")
    found = re.search(r"^run_module\(\) \{\n.*?^\}\n", text, re.S | re.M)
    if found is None:
        raise ValueError(f"no run_module() {{ ... }} function in {gpu_check}")
    return found.group(0)


def program_env(base: Mapping[str, str], python: str, tree: Path, site: Path, emulated: Optional[str] = None,
                preload: str = "") -> Dict[str, str]:  # fmt: skip
    """The environment of a stage's program (tools/gpu_check.sh run_stage): PYTHONSAFEPATH=1, the stage's site on
    PYTHONPATH and nothing of the checkout; with ``emulated`` (a _C_emulated module) on the emulated CUDA runtime, as
    tools/run_tests.sh's emulation() runs it (``preload``: its LD_PRELOAD, ASan's runtime first)."""
    env = {k: v for k, v in base.items() if k not in ("ZSSEG_CUDA_EMULATION", "ZSSEG_NATIVE_MODULE", "LD_PRELOAD")}
    env.update(PYTHONSAFEPATH="1", PYTHONUNBUFFERED="1", PY=python, ROOT=str(tree), ZSSEG_NO_BUILD="1",
               PYTHONPATH=f"{site}/pkg{os.pathsep}{site}/deps")  # fmt: skip
    if emulated is not None:
        env.update(ZSSEG_CUDA_EMULATION="1", ZSSEG_NATIVE_MODULE=emulated, ASAN_OPTIONS="detect_leaks=0",
                   UBSAN_OPTIONS="print_stacktrace=1")  # fmt: skip
        if preload:
            env["LD_PRELOAD"] = preload
    return env


def run_program(tree: Path, python: str, site: Path, work: Path, args: Sequence[str], emulated: Optional[str] = None,
                preload: str = "", timeout: float = 600) -> subprocess.CompletedProcess:  # fmt: skip
    """``run_module ARGS`` (tools/gpu_check.sh's, of ``tree``) from ``work`` in a stage's environment: what the
    engine stage runs, as it runs it."""
    script = launcher_text(tree / "tools" / "gpu_check.sh") + 'run_module "$@"\n'
    env = program_env(os.environ, python, tree, site, emulated, preload)
    return subprocess.run(["bash", "-c", script, "bash", *args], cwd=work, env=env, capture_output=True, text=True,
                          timeout=timeout)  # fmt: skip


def _cases(xml: Path) -> List[ET.Element]:
    return list(ET.parse(xml).getroot().iter("testcase"))


def judge_stage(work: Path, stage: str) -> Tuple[List[str], Dict[str, int]]:
    """(problems, counts) of one pytest stage's work folder (tools/gpu_check.sh's OUT/STAGE): its pytest step must
    have ended (exit 0 or 1, not interrupted or an internal error), its report must exist, its failures and errors
    must all be the stand-ins' (``STAND_IN_MARK``: counted as needing torch), and a test of each ``RUN`` file must have
    passed."""
    problems: List[str] = []
    counts = {"passed": 0, "skipped": 0, "needs_torch": 0, "failed": 0}
    steps = {}
    tsv = work / "steps.tsv"
    for line in tsv.read_text().splitlines() if tsv.is_file() else []:
        name, rc, _, log = line.split("\t")
        steps[name] = (int(rc), log)
    pytest_steps = [name for name in steps if name.startswith("pytest:")]
    if not pytest_steps:
        missing = (work / "missing.txt").read_text().strip() if (work / "missing.txt").is_file() else ""
        return [f"{stage}: its pytest step never ran ({missing or 'see ' + str(work / 'logs')})"], counts
    for name in pytest_steps:
        rc, log = steps[name]
        piece = name.split(":", 1)[1].split(",")[0]
        xml = work / f"pytest_{piece}.xml"
        if rc not in (0, 1) or not xml.is_file():
            lines = (work / log).read_text(errors="replace").strip().splitlines() if (work / log).is_file() else []
            # the cause first (a worker's import error), else the last error line (xdist's own KeyError follows it)
            causes = [line for line in lines if re.search(r"(ModuleNotFound|Import)Error", line)]
            errors = [line for line in lines if "Error" in line]
            why = (causes or errors[-1:] or lines[-1:] or ["no log"])[0]
            problems.append(f"{stage}: pytest exited {rc} (not a test failure: interrupted, an internal error or a "
                            f"usage error): {why.strip()}")  # fmt: skip
            continue
        ran_files = set()
        for case in _cases(xml):
            bad = case.find("failure") if case.find("failure") is not None else case.find("error")
            ident = f"{case.get('classname')}::{case.get('name')}"
            if bad is not None:
                text = (bad.get("message") or "") + "\n" + (bad.text or "")
                if STAND_IN_MARK in text:
                    counts["needs_torch"] += 1
                else:
                    counts["failed"] += 1
                    first = next((t for t in text.splitlines() if t.strip()), "")[:200]
                    problems.append(f"{stage}: FAILED {ident}: {first}")
            elif case.find("skipped") is not None:
                counts["skipped"] += 1
            else:
                counts["passed"] += 1
                ran_files.add((case.get("classname") or "").replace(".", "/"))
        for path, _ in RUN.get(stage, ()):
            stem = "python_tests/" + path[: -len(".py")]
            if not any(f == stem or f.startswith(stem + "/") for f in ran_files) and counts["failed"] == 0:
                problems.append(f"{stage}: no test of python_tests/{path} passed (the twin's selection ran nothing)")
    return problems, counts


def verdict(out: Path, stages: Sequence[str]) -> int:
    failed = False
    for stage in stages:
        problems, counts = judge_stage(out / stage, stage)
        print(f"image twin: {stage}: {counts['passed']} passed, {counts['skipped']} skipped, {counts['needs_torch']} "
              f"need torch (not in the twin), {counts['failed']} failed")  # fmt: skip
        for line in problems:
            print(f"image twin: {line}")
        failed = failed or bool(problems)
    return 1 if failed else 0


def main(argv: Optional[List[str]] = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    command = args.pop(0) if args else ""
    if command in ("-h", "--help") and not args:
        print("usage: python -m checks image_twin COMMAND [ARGS] (tools/image_twin.sh runs them)")
        print(__doc__.split("\n\n")[2])
        return 0
    if command == "requirements" and not args:
        print("\n".join(requirements()))
    elif command == "no-deps" and not args:
        print("\n".join(no_deps()))
    elif command == "stand-ins" and len(args) == 1:
        for name, version, module in STAND_INS:
            write_stand_in(Path(args[0]), name, version, module)
    elif command == "versions" and not args:
        found = version_problems()
        for line in found:
            print(f"image twin: {line}")
        if not found:
            print("image twin: " + ", ".join(req for req, _ in image_versions()) + f", Python {sys.version.split()[0]}")
        return 1 if found else 0
    elif command == "pytest-args" and len(args) in (1, 3) and args[0] in RUN:
        workers = int(args[2]) if len(args) == 3 and args[1] == "--workers" else 2
        print(pytest_args(args[0], workers))
    elif command == "python" and not args:
        found = python312()
        if found is None:
            print(f"image_twin: no CPython {IMAGE_PYTHON} found (the image's Python): set ZSSEG_TWIN_PYTHON",
                  file=sys.stderr)  # fmt: skip
            return 1
        print(found)
    elif command == "snapshot" and len(args) == 2:
        print(f"image twin: {snapshot(Path(args[0]), Path(args[1]))} files of {args[0]} copied to {args[1]}")
    elif command == "stages" and not args:
        print("\n".join(TWIN_STAGES))
    elif command == "verdict" and len(args) >= 2:
        return verdict(Path(args[0]), args[1:])
    elif command == "program" and "--" in args:
        import argparse

        parser = argparse.ArgumentParser(prog="image_twin program")
        for option in ("--tree", "--python", "--site", "--work"):
            parser.add_argument(option, required=True)
        parser.add_argument("--emulated", default=None)
        parser.add_argument("--preload", default="")
        cut = args.index("--")
        known = parser.parse_args(args[:cut])
        done = run_program(Path(known.tree), known.python, Path(known.site), Path(known.work), args[cut + 1 :],
                           known.emulated, known.preload)  # fmt: skip
        sys.stdout.write(done.stdout + done.stderr)
        return done.returncode
    elif command == "json" and not args:  # the tables, for the docs and the tests
        print(json.dumps({"image": image_versions(), "stand_ins": STAND_INS, "run": RUN}, indent=1))
    else:
        print(__doc__.split("\n\n")[2], file=sys.stderr)
        print(f"image_twin: unknown command {' '.join([command] + args)!r}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
