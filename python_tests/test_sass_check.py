"""The SASS check (python -m checks sass): the CUDA kernels' machine code has what BENCHMARKS.md's cost models
assume (no local memory in the hot kernels, tile loads issued as one batch, no global memory or 64-bit index math in
segment_windows' inner loops), and the check can fail (deliberately bad kernels are flagged). Needs nvcc and
cuobjdump (requirements.txt pins the PyPI wheel nvidia-cuda-cuobjdump); CI has both, so there it runs."""

from __future__ import annotations

import importlib.util
import pathlib
import sys

import pytest

# checks/ is not a package of the install: load the module from the checkout beside this test (tools/gpu_check.sh
# runs pytest from its report folder, where `import checks` finds nothing)
_SASS = pathlib.Path(__file__).resolve().parents[1] / "checks" / "sass.py"
_spec = importlib.util.spec_from_file_location("zsseg_checks_sass", _SASS)
sass = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = sass  # dataclasses look the module up while the class is made
_spec.loader.exec_module(sass)


def _tools_or_skip() -> None:
    try:
        sass.find_nvcc()
        sass.find_cuobjdump()
    except sass.ToolMissing as missing:
        pytest.skip(str(missing))


def test_the_check_flags_bad_kernels_and_passes_a_good_one():
    _tools_or_skip()
    assert sass.self_test("90") == []


def test_the_kernels_sass_meets_the_cost_models_assumptions():
    _tools_or_skip()
    report = sass.check_sources(sorted(sass.CUDA_DIR.glob("*.cu")), ["90"])
    assert report.kernels, "no kernel found in csrc/cuda"
    assert any(k["k_loops"] for k in report.kernels if "relation_linear_kernel" in k["kernel"])
    assert report.problems == [], "\n".join(report.problems)
