"""tools/gpu_check.sh without a GPU: its plumbing (build into its own folder, the check that the build is what gets
imported, the report) with a fake ``nvidia-smi`` and ``nvcc`` on PATH, and the launcher of its benchmark and Engine
steps (on the first GPU run they imported the checkout instead of the build, and tools/profile.py as ``profile``).
That tools/profile.py cannot shadow the standard library: python_tests/test_entry_points.py."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

FAKE_NVIDIA_SMI = """#!/bin/sh
case "$*" in
  *compute_cap*) echo "7.5" ;;
  *driver_version*) echo "000.00 (fake)" ;;
  *) echo "fake nvidia-smi: no GPU here (python_tests/test_gpu_check.py)" ;;
esac
"""
FAKE_NVCC = """#!/bin/sh
echo "Cuda compilation tools, release 0.0 (fake nvcc: the plumbing test builds without CUDA)"
"""


def test_gpu_check_runs_the_benchmarks_and_checks_through_the_launcher():
    script = (REPO / "tools" / "gpu_check.sh").read_text()
    # `python tools/x.py` puts tools/ first on sys.path; `python -m benchmarks ...` from the checkout puts the
    # checkout (whose zsseg_rt/ has no _C) before the build: both must go through run_module
    direct = [
        line
        for line in script.splitlines()
        if any(bad in line for bad in ('"$PY" tools/', "$PY tools/", '"$PY" -m benchmarks', '"$PY" -m checks'))
    ]
    assert direct == []
    assert "run_module benchmarks cuda" in script and "run_module checks gpu_engine" in script


def test_the_launcher_imports_the_build_first_and_the_checkout_last(tmp_path):
    """run_module from tools/gpu_check.sh: zsseg_rt from the build on PYTHONPATH, benchmarks/checks from the
    checkout (appended to the end of sys.path), run from the report folder."""
    script = (REPO / "tools" / "gpu_check.sh").read_text()
    start = script.index("run_module() {")
    function = script[start : script.index("\n}\n", start) + 3]
    build = tmp_path / "build"
    (build / "zsseg_rt").mkdir(parents=True)
    (build / "zsseg_rt" / "__init__.py").write_text("")  # stands for the build (the checkout's has no _C)
    (build / "probe").mkdir()
    (build / "probe" / "__main__.py").write_text(
        "import sys, zsseg_rt, checks\nprint('zsseg_rt', zsseg_rt.__file__)\nprint('checks', checks.__file__)\n"
        "print('argv', sys.argv[1:])\n"
    )
    out = tmp_path / "report"
    out.mkdir()
    env = dict(os.environ, PYTHONPATH=str(build), PYTHONSAFEPATH="1", OUT=str(out), ROOT=str(REPO))
    env["PY"] = str(_bare_python(tmp_path / "py"))  # this venv's editable zsseg_rt would win over any path
    run = subprocess.run(
        ["bash", "-c", f'{function}\nrun_module probe --flag "two words"'],
        cwd=out,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert f"zsseg_rt {build / 'zsseg_rt' / '__init__.py'}" in run.stdout
    assert f"checks {REPO / 'checks' / '__init__.py'}" in run.stdout
    assert "argv ['--flag', 'two words']" in run.stdout


def _bare_python(root: Path) -> Path:
    """A Python with this environment's dependencies but not its editable zsseg_rt (whose import hook would win over
    any build): what a bare GPU machine with the project's wheels looks like."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True, timeout=120)
    site = next((root / "lib").glob("python3*/site-packages"))
    deps = [p for p in sys.path if p.endswith("site-packages") and Path(p).is_dir()]
    (site / "zsseg_test_deps.pth").write_text("\n".join(deps) + "\n")  # paths only: their .pth hooks do not run
    return root / "bin" / "python"


@pytest.mark.slow
def test_gpu_check_plumbing_with_a_fake_nvidia_smi(tmp_path):
    fake = tmp_path / "bin"
    fake.mkdir()
    for name, text in (("nvidia-smi", FAKE_NVIDIA_SMI), ("nvcc", FAKE_NVCC)):
        (fake / name).write_text(text)
        (fake / name).chmod(0o755)
    out = tmp_path / "report"
    env = dict(
        os.environ,
        PATH=f"{fake}:{os.environ['PATH']}",
        PYTHON=str(_bare_python(tmp_path / "py")),
        ZSSEG_GPU_CHECK_CMAKE_DEFINES="ZS_WITH_CUDA=OFF;ZS_QUICK_BUILD=ON;CMAKE_INTERPROCEDURAL_OPTIMIZATION=OFF",
        CMAKE_BUILD_PARALLEL_LEVEL="2",
    )
    for var in ("ZSSEG_CUDA_EMULATION", "ZSSEG_NATIVE_MODULE", "LD_PRELOAD", "PYTHONPATH"):
        env.pop(var, None)
    run = subprocess.run(
        ["bash", str(REPO / "tools" / "gpu_check.sh"), "--only", "build,import", "--out", str(out)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert run.returncode == 1, run.stdout[-3000:] + run.stderr[-3000:]  # no GPU: the import check must fail
    report = json.loads((out / "report.json").read_text())
    steps = {s["name"]: s["rc"] for s in report["steps"]}
    assert steps == {"build": 0, "import": 1}, steps
    assert report["pass"] is False and report["driver"] == "000.00 (fake)"
    log = (out / "import.log").read_text()
    pkg = os.path.realpath(out / "build" / "pkg")
    # the build made here is what the tests import, not the checkout's zsseg_rt/ (which has no _C) ...
    assert f"zsseg_rt from {pkg}/zsseg_rt/__init__.py" in log
    assert f"native module {pkg}/zsseg_rt/_C" in log
    # ... and a build that cannot use CUDA stops the check with the reason, before any test runs
    assert "CUDA is not usable by this build: zsseg_rt was built without CUDA" in log
    assert "| build | ok |" in (out / "report.md").read_text()
