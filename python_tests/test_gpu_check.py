"""tools/gpu_check.sh without a GPU (issue 25): its plumbing (build into its own folder, the check that the build
is what gets imported, the report) with a fake ``nvidia-smi`` and ``nvcc`` on PATH; and no script of tools/ may
shadow a standard-library module (tools/profile.py shadowed ``profile``, which torch imports, and crashed the
benchmark and Engine steps of the first GPU run)."""

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


def test_no_script_in_tools_is_named_like_a_standard_library_module():
    shadowing = sorted(
        p.name for p in (REPO / "tools").iterdir() if p.suffix == ".py" and p.stem in sys.stdlib_module_names
    )
    assert shadowing == [], f"these would shadow the standard library when a script of tools/ runs: {shadowing}"


def test_gpu_check_runs_every_python_script_through_the_launcher():
    script = (REPO / "tools" / "gpu_check.sh").read_text()
    direct = [line for line in script.splitlines() if '"$PY" tools/' in line or "$PY tools/" in line]
    assert direct == []  # `python tools/x.py` puts tools/ first on sys.path


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
