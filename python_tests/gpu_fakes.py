"""A fake bare GPU machine for the tests of tools/gpu_check.sh and tools/gpu_artifacts.sh: a fake ``nvidia-smi``
and ``compute-sanitizer``, build tools that refuse and log every call (the acceptance run builds nothing), a Python
with this environment's packages but not its editable zsseg_rt (and without the distributions the GPU image lacks),
wheels repacked from installed distributions, and the copy of the checkout the device tool sends (tracked and
untracked-not-ignored files, no .git)."""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
REHEARSAL = "fake bare machine (python_tests/test_gpu_rehearsal.py)"

FAKE_NVIDIA_SMI = """#!/bin/sh
case "$*" in
  *name,compute_cap,driver_version*) echo "Fake GPU (python_tests/gpu_fakes.py), {cc}, 000.00 (fake), 1 MiB" ;;
  *compute_cap*) echo "{cc}" ;;
  *driver_version*) echo "000.00 (fake)" ;;
  *) echo "fake nvidia-smi: no GPU here (python_tests/gpu_fakes.py)" ;;
esac
"""
# Runs the program it is given (after its own options) and reports a clean summary, as compute-sanitizer does
FAKE_SANITIZER = """#!/bin/sh
while [ $# -gt 0 ]; do
  case "$1" in --tool|--error-exitcode|--target-processes) shift 2 ;; *) break ;; esac
done
echo "========= COMPUTE-SANITIZER (fake: python_tests/gpu_fakes.py)"
"$@"
rc=$?
echo "========= ERROR SUMMARY: 0 errors"
exit $rc
"""
# Every build tool of the fake machine: logs the call and fails (the acceptance run must not build)
GUARD = """#!/bin/sh
echo "$(basename "$0") $*" >>"{log}"
echo "fake bare machine: $(basename "$0") called, but the acceptance run builds nothing" >&2
exit 97
"""
BUILD_TOOLS = ("cmake", "nvcc", "ninja", "make", "cc", "gcc", "g++", "c++", "ptxas")


def fake_tools(folder: Path, cc: str = "9.0") -> Path:
    """nvidia-smi, compute-sanitizer and the refusing build tools in ``folder`` (put first on PATH)."""
    folder.mkdir(parents=True)
    scripts = {"nvidia-smi": FAKE_NVIDIA_SMI.format(cc=cc), "compute-sanitizer": FAKE_SANITIZER}
    scripts.update({name: GUARD.format(log=folder / "build_calls.log") for name in BUILD_TOOLS})
    for name, text in scripts.items():
        (folder / name).write_text(text)
        (folder / name).chmod(0o755)
    return folder


def build_calls(folder: Path) -> list:
    log = folder / "build_calls.log"
    return log.read_text().splitlines() if log.exists() else []


def _site_packages() -> list:
    return [p for p in sys.path if p.endswith("site-packages") and Path(p).is_dir()]


def bare_python(root: Path, hide=(), other=None) -> Path:
    """A Python with this environment's dependencies but not its editable zsseg_rt (whose import hook would win over
    any install): what a bare GPU machine looks like. ``hide``: distributions it lacks (their packages and metadata
    left out of a mirror of the site-packages). ``other``: {distribution: version} it has in another version than
    this environment's, as its package of the same name that refuses to be imported (the image's pytest 9.1.1
    lacked what CI's 9.2.0 has: only what the stage carries may run)."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True, timeout=120)
    site = next((root / "lib").glob("python3*/site-packages"))
    deps = _site_packages()
    hidden = {"zsseg_rt", "_editable_skbc_zsseg_rt"}
    for name in [*hide, *(other or {})]:
        dist = importlib.metadata.distribution(name)
        hidden.update(str(f).split("/")[0] for f in dist.files or [] if not str(f).startswith(".."))
    mirror = root / "mirror"
    mirror.mkdir()
    for folder in deps:
        for entry in Path(folder).iterdir():
            stem = entry.name.split(".", 1)[0].split("-", 1)[0]
            if entry.name in hidden or stem in hidden or (mirror / entry.name).exists() or entry.suffix == ".pth":
                continue
            (mirror / entry.name).symlink_to(entry)
    for name, version in (other or {}).items():
        module = mirror / name.replace("-", "_")  # its package of the same name
        module.mkdir()
        (module / "__init__.py").write_text(f'raise ImportError("the image\'s {name} {version} (a fake)")\n')
        info = mirror / f"{name.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    (site / "zsseg_test_deps.pth").write_text(str(mirror) + "\n")  # paths only: their .pth hooks do not run
    return root / "bin" / "python"


def package_site(folder: Path) -> Path:
    """A folder holding this environment's zsseg_rt and nothing else, as the stage's ``$SITE/pkg`` holds the wheel:
    ``folder/zsseg_rt`` links each entry of the imported package (with an editable install, the checkout's sources)
    and its native module. With :func:`bare_python` and this folder as PYTHONPATH a child imports zsseg_rt but not
    the checkout's ``checks``/``benchmarks`` (the editable install's .pth puts the checkout on every path here)."""
    import importlib.util

    import zsseg_rt

    source = Path(zsseg_rt.__file__).resolve().parent
    native = Path(importlib.util.find_spec("zsseg_rt._C").origin)
    package = folder / "zsseg_rt"
    package.mkdir(parents=True)
    for entry in [*source.iterdir(), native]:
        if entry.name != "__pycache__" and not (package / entry.name).exists():
            (package / entry.name).symlink_to(entry)
    return folder


def stage_env(sites, **extra: str) -> dict:
    """The environment tools/gpu_check.sh gives a stage's programs (run_stage): PYTHONSAFEPATH=1 and a PYTHONPATH of
    the stage's sites only (its $SITE/pkg and $SITE/deps: never the checkout, never the caller's entries: that is
    the point here), without the emulated build or pytest's worker variables; ``extra``: more variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    for var in ("ZSSEG_CUDA_EMULATION", "ZSSEG_NATIVE_MODULE", "LD_PRELOAD", "PYTHONHOME"):
        env.pop(var, None)
    env.update(PYTHONSAFEPATH="1", PYTHONUNBUFFERED="1", **extra)
    env["PYTHONPATH"] = os.pathsep.join(map(str, sites))
    return env


def repack(name: str, folder: Path) -> Path:
    """A wheel of an installed distribution (its files and metadata as installed)."""
    dist = importlib.metadata.distribution(name)
    base = Path(str(dist.locate_file("")))
    wheel = folder / f"{dist.metadata['Name'].replace('-', '_')}-{dist.version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for file in dist.files or []:
            text = str(file)
            if text.startswith("..") or "__pycache__" in text or text.endswith(("INSTALLER", "REQUESTED")):
                continue
            archive.write(base / text, text)
    return wheel


def fake_wheel(folder: Path, name: str, version: str, requires=()) -> Path:
    """A wheel whose module refuses to import: installing it where the system has the real one would break it."""
    info = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": f"raise ImportError('the fake {name} wheel of python_tests/gpu_fakes.py')\n",
        f"{info}/METADATA": "Metadata-Version: 2.1\nName: {}\nVersion: {}\n{}".format(
            name, version, "".join(f"Requires-Dist: {r}\n" for r in requires)
        ),
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    files[f"{info}/RECORD"] = "".join(f"{path},,\n" for path in files) + f"{info}/RECORD,,\n"
    wheel = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, text in files.items():
            archive.writestr(path, text)
    return wheel


def device_copy(target: Path, carried: Path = None) -> Path:
    """What the device tool sends: the tracked and untracked-not-ignored files (no .git), and ``carried``."""
    names = subprocess.run(
        ["git", "ls-files", "-z", "-c", "-o", "--exclude-standard"], cwd=REPO, capture_output=True, check=True
    ).stdout.decode()
    for name in filter(None, names.split("\0")):
        source = REPO / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    if carried is not None:
        shutil.copytree(carried, target / "gpu_artifacts")
    return target


def machine_env(tools: Path, python: Path, **extra) -> dict:
    env = dict(os.environ, PATH=f"{tools}:{os.environ['PATH']}", PYTHON=str(python), **extra)
    for var in ("ZSSEG_CUDA_EMULATION", "ZSSEG_NATIVE_MODULE", "LD_PRELOAD", "PYTHONPATH", "ZSSEG_NO_BUILD"):
        env.pop(var, None)
    return env


def env_wheel(folder: Path) -> Path:
    """A wheel of this environment's zsseg_rt without building one: the checkout's package files (as git tracks
    them) and the native module this process imports (CI's build of it, with CUDA where CI's nvcc made one)."""
    import importlib.util

    native = Path(importlib.util.find_spec("zsseg_rt._C").origin)
    version = importlib.metadata.version("zsseg_rt")
    tag = f"cp{sys.version_info[0]}{sys.version_info[1]}"
    wheel = folder / f"zsseg_rt-{version}-{tag}-{tag}-linux_x86_64.whl"
    names = subprocess.run(["git", "ls-files", "-z", "zsseg_rt"], cwd=REPO, capture_output=True, check=True).stdout
    info = f"zsseg_rt-{version}.dist-info"
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as archive:
        members = [name for name in names.decode().split("\0") if name and (REPO / name).is_file()]
        for name in members:
            archive.write(REPO / name, name)
        archive.write(native, f"zsseg_rt/{native.name}")
        meta = {
            f"{info}/METADATA": f"Metadata-Version: 2.1\nName: zsseg_rt\nVersion: {version}\n",
            f"{info}/WHEEL": f"Wheel-Version: 1.0\nGenerator: gpu_fakes\nRoot-Is-Purelib: false\nTag: {tag}-{tag}-linux_x86_64\n",
        }
        for name, text in meta.items():
            archive.writestr(name, text)
        listed = [*members, f"zsseg_rt/{native.name}", *meta, f"{info}/RECORD"]
        archive.writestr(f"{info}/RECORD", "".join(f"{name},,\n" for name in listed))
    return wheel


# A stand-in for the C++ tests (the project's are built by CI's ctest step): CPU tests that pass and a CUDA suite
# whose tests skip without a device, as cpp_tests/test_*.cpp do; GoogleTest linked statically (Debian's libgtest.a)
STANDIN_TESTS = """#include <gtest/gtest.h>
TEST(StandInCpu, Adds) { EXPECT_EQ(1 + 1, 2); }
TEST(StandInCpu, Multiplies) { EXPECT_EQ(2 * 3, 6); }
TEST(StandInCuda, MatchesCpu) { GTEST_SKIP() << "no CUDA device: fake bare machine (python_tests/gpu_fakes.py)"; }
"""


def standin_cpp_tests(folder: Path) -> Path:
    source, binary = folder / "standin_tests.cpp", folder / "zsseg_cpp_tests"
    source.write_text(STANDIN_TESTS)
    command = ["g++", "-O0", str(source), "-o", str(binary), "-lgtest", "-lgtest_main", "-pthread"]
    subprocess.run(command, check=True, capture_output=True, timeout=600)
    return binary


# ---- run records without a GPU: a stage's work folder as tools/gpu_check.sh leaves it ------------------------------------
def load_check(name: str):
    """checks/NAME.py as the package module checks.NAME, the checkout at the END of sys.path while importing (as the
    launcher of tools/gpu_check.sh has it: nothing of the checkout may shadow the installed zsseg_rt)."""
    import importlib

    added = str(REPO) not in sys.path
    if added:
        sys.path.append(str(REPO))
    try:
        return importlib.import_module(f"checks.{name}")
    finally:
        if added:
            sys.path.remove(str(REPO))


def junit(cases) -> str:
    """A pytest JUnit report of ``cases``: (node id, outcome[, text]) with outcome passed, failed, error or skipped (text:
    the failure's traceback or the skip's reason); a node id without "::" is a module skipped at collection."""
    from xml.sax.saxutils import escape, quoteattr

    rows = []
    for node, outcome, *text in cases:
        body = text[0] if text else ""
        if "::" not in node:  # pytest's form of a module skipped at collection
            module = node[: -len(".py")].replace("/", ".")
            detail = escape(f"('/machine/{node}', 2, 'Skipped: {body}')")
            rows.append(f'<testcase classname="" name="{module}"><skipped message="collection skipped">{detail}'
                        "</skipped></testcase>")  # fmt: skip
            continue
        path, name = node.split("::", 1)
        head = f'<testcase classname="{path[: -len(".py")].replace("/", ".")}" name={quoteattr(name)}'
        if outcome == "passed":
            rows.append(head + "/>")
        elif outcome in ("failed", "error"):  # error: pytest's <error> of a fixture or set-up that raised
            first = body.splitlines()[-1] if body else "AssertionError"
            tag = "failure" if outcome == "failed" else "error"
            rows.append(f"{head}><{tag} message={quoteattr(first)}>{escape(body)}</{tag}></testcase>")
        else:
            rows.append(f'{head}><skipped type="pytest.skip" message={quoteattr(body)}>/machine/{path}:9: '
                        f"{escape(body)}</skipped></testcase>")  # fmt: skip
    return ('<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest">'
            + "".join(rows) + "</testsuite></testsuites>")  # fmt: skip


def must_run_cases(stage: str) -> list:
    """Each must-run test of ``stage`` as a passed case (a parametrised id stands for its cases)."""
    stages = load_check("gpu_stages")
    return [(test if "[" in test else f"{test}[x]", "passed") for test, _ in stages.stage(stage).must_run]


def stage_work(folder: Path, stage: str = "ops", cases=None, rc: int = 0, missing: str = "", log: str = "") -> Path:
    """A work folder of ``stage`` (a pytest stage) as its steps leave it: the set-up steps, one pytest step with
    ``rc`` and a report of ``cases`` (default: the must-run tests and two more, all passed), what it lacked."""
    stages = load_check("gpu_stages")
    work = folder / "work"
    (work / "logs").mkdir(parents=True)
    pieces = stages.pieces_of(stages.stage(stage))
    steps = ["artifacts\t0\t1\tlogs/artifacts.log", "install\t0\t3\tlogs/install.log"]
    steps.append(f"pytest:{','.join(pieces)}\t{rc}\t90\tlogs/pytest_{pieces[0]}.log")
    (work / "steps.tsv").write_text("\n".join(steps) + "\n")
    if cases is None:
        cases = must_run_cases(stage) + [
            (f"python_tests/{pieces[0]}/test_a.py::test_one", "passed"),
            (f"python_tests/{pieces[0]}/test_b.py::test_two", "skipped", "needs TensorRT"),
        ]
    (work / f"pytest_{pieces[0]}.xml").write_text(junit(cases))
    (work / "logs" / f"pytest_{pieces[0]}.log").write_text(log or "....s\nSKIPPED [1] x.py:3: needs TensorRT\n"
                                                            "1 passed, 1 skipped, 5 deselected in 9.0s\n")  # fmt: skip
    (work / "missing.txt").write_text(missing)
    facts = {"artifacts": {"commit": "c0ffee" * 7, "dirty": [], "manifest_sha256": "ab" * 32}, "tree": None}
    (work / "artifacts.json").write_text(json.dumps(facts))
    return work
