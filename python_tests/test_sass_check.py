"""The SASS check (python -m checks sass): the CUDA kernels' machine code has what BENCHMARKS.md's cost models
assume (no local memory in the hot kernels, tile loads issued as one batch, no global memory or 64-bit index math in
segment_windows' inner loops), and the check can fail (deliberately bad kernels are flagged). Needs nvcc and
cuobjdump (requirements.txt pins the PyPI wheel nvidia-cuda-cuobjdump); CI has both, so there it runs. Rule 6 (no FMA
that nvcc contracted in the bit-exact video filter kernels) is the check before a GPU lease (docs/gpu.md)."""

from __future__ import annotations

import importlib.util
import pathlib
import re
import sys

import pytest
from support import NO_BUILD, NO_BUILD_REASON

# checks/ is not a package of the install: load the module from the checkout beside this test (tools/gpu_check.sh
# runs pytest from its report folder, where `import checks` finds nothing)
_SASS = pathlib.Path(__file__).resolve().parents[1] / "checks" / "sass.py"
# one instance of the module for the SASS tests of a process (test_sass_check.py, test_sass_dense.py: one xdist
# group), so that a kernel source is compiled once per arch and flags (checks/sass.py's compile_cubin)
sass = sys.modules.get("zsseg_checks_sass")
if sass is None:
    _spec = importlib.util.spec_from_file_location("zsseg_checks_sass", _SASS)
    sass = importlib.util.module_from_spec(_spec)
    sys.modules[_spec.name] = sass  # dataclasses look the module up while the class is made
    _spec.loader.exec_module(sass)
pytestmark = pytest.mark.xdist_group("sass")


def _tools_or_skip() -> None:
    if NO_BUILD:
        pytest.skip(NO_BUILD_REASON)
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


def test_segment_windows_cost_model_reads_the_fast_path_from_the_sass():
    """BENCHMARKS.md's segment_windows model (python -m checks sass --model): its per-iteration counts come from the
    compiled kernel, one reciprocal per pair of sigmoids in the two-window loop, and pruning classes lowers it."""
    _tools_or_skip()
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        cubin, _ = sass.compile_cubin(sass.SEGMENT_WINDOWS_SOURCE, "90", pathlib.Path(tmp))
        # the default variant's fp32 sigmoid kernel (template argument 0: segment_windows_testing::Variant::kTiled)
        kernel = next(f for n, f in sass.disassemble(cubin).items() if "segment_windows_kernelIfLb1ELi0E" in n)
    costs = sass.segment_windows_fast_costs(kernel)
    assert costs["pair"]["mufu"] == 24 and costs["one"]["mufu"] == 16
    worst, pruned = sass.segment_windows_model(costs), sass.segment_windows_model(costs, 16)
    assert worst["listed"] == 171 and worst["tiles"] == 16 * 47
    assert 0 < pruned["predicted_us"] < worst["predicted_us"]
    assert worst["mufu_us"] > 40  # 89.6 M sigmoids at 1.5 MUFU each, lanes of partial warps included


def test_the_bit_exact_temporal_kernels_hold_no_fma_that_nvcc_contracted(tmp_path):
    """Rule 6, the check before a GPU lease: the video filter's kernels (blend, hold, propagate, the measured flag)
    must equal the CPU's bit for bit, so nvcc must have fused no multiply and add in them: each one's FFMA/DFMA/HFMA2
    are those of its -fmad=false build (blend and hold: IEEE division and sqrt sequences, FFMA either way; propagate
    and the flag: none). class_state (compared within 1e-6) is listed with its contractions, not failed."""
    _tools_or_skip()
    found = sass.check_contraction("90", tmp_path)
    contraction = sass.contraction()
    rows = {row["label"]: row for row in found["rows"]}
    assert found["problems"] == [], "\n".join(found["problems"])
    for name in contraction.BIT_EXACT:
        assert rows[name]["in_strict_build"] and rows[name]["contracted"] == 0, rows[name]
    assert rows["temporal_blend_kernel"]["fma"] > 0  # division and sqrt: why the rule compares with -fmad=false
    assert rows["temporal_propagate_kernel"]["fma"] == rows["temporal_measured_kernel"]["fma"] == 0
    assert any(label.startswith("class_state_kernel") for label in rows)


def test_the_contraction_rule_reports_a_kernel_that_contracts(tmp_path):
    """The control: a * b + c compiled with nvcc's default -fmad=true is one FFMA (a double one a DFMA) that the
    -fmad=false build does not have: reported with its address and text; rounded products and sums (__fmul_rn,
    __fadd_rn) and a division with a square root (FFMA in both builds) are not."""
    _tools_or_skip()
    contraction = sass.contraction()
    compiled = sass._compiler("90", tmp_path)
    names = ("contracted", "contracted_double", "rounded", "divided")
    default = compiled(contraction.SELF_TEST_SOURCE, ())
    rows = contraction.compare(default, compiled(contraction.SELF_TEST_SOURCE, contraction.STRICT_FLAGS), names)
    found = contraction.problems(rows, names)
    assert [line.split(":", 1)[0] for line in found] == ["contracted", "contracted_double"], found
    assert re.search(r"1 FMA contracted by nvcc .*first without a counterpart: 0x[0-9a-f]+: FFMA ", found[0])
    assert "DFMA" in found[1]
    assert contraction.self_test(compiled) == []
    # the same kernels with nothing compiled without contraction to compare against: every one is missing there
    assert all("not in the -fmad=false build" in line for line in contraction.problems(
        contraction.compare(default, {}, names), names))  # fmt: skip
