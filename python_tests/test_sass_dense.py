"""Rules 7 and 8 of the SASS check (checks/_sass_dense.py, issue 72 item 2): the tensor-core similarity kernels
multiply with HMMA of their dtype from global loads on sm_80 and sm_90 and are empty on sm_75; upsample's packed
variant stores 16 / 8 bytes at a time with 32-bit taps; the cost models read from the SASS predict each kernel below
0.9x of torch eager's time as the H100 measured it on 2026-11-26 (a model, not a measurement: the next GPU lease
measures, `python -m benchmarks cuda`). Needs nvcc and cuobjdump, as test_sass_check.py."""

from __future__ import annotations

import importlib.util
import pathlib
import sys
import tempfile

import pytest
from support import NO_BUILD, NO_BUILD_REASON

_CHECKS = pathlib.Path(__file__).resolve().parents[1] / "checks"
# one instance of the module for the SASS tests of a process (test_sass_check.py, test_sass_dense.py: one xdist
# group), so that a kernel source is compiled once per arch and flags (checks/sass.py's compile_cubin)
sass = sys.modules.get("zsseg_checks_sass")
if sass is None:
    _spec = importlib.util.spec_from_file_location("zsseg_checks_sass", _CHECKS / "sass.py")
    sass = importlib.util.module_from_spec(_spec)
    sys.modules[_spec.name] = sass  # dataclasses look the module up while the class is made
    _spec.loader.exec_module(sass)
pytestmark = pytest.mark.xdist_group("sass")
dense = sass._DENSE

# torch eager's kernel time per call on the H100 (bench_cuda of 2026-11-26, docs/gpu_runs/...174205_..._engine.json)
TORCH_EAGER_US = {"similarity_norm": 33.8, "similarity_scale": 16.1, "upsample_c171": 160.2}


def _tools_or_skip() -> None:
    if NO_BUILD:
        pytest.skip(NO_BUILD_REASON)
    try:
        sass.find_nvcc()
        sass.find_cuobjdump()
    except sass.ToolMissing as missing:
        pytest.skip(str(missing))


def _functions(source: str, arch: str) -> dict:
    with tempfile.TemporaryDirectory(prefix="zs_sass_dense_test_") as tmp:
        cubin, _ = sass.compile_cubin(sass.CUDA_DIR / source, arch, pathlib.Path(tmp))
        return sass.disassemble(cubin)


@pytest.mark.parametrize("arch", ["75", "80", "90"])
def test_the_tensor_core_kernels_meet_rule_7(arch):
    _tools_or_skip()
    functions = _functions("similarity.cu", arch)
    mma = {name: fn for name, fn in functions.items() if dense.MMA_KERNEL in name}
    assert len(mma) == 4  # float and half, vector and scalar loads
    for name, fn in mma.items():
        assert dense.check_kernel(name, fn, f"similarity.cu sm_{arch}") == [], name
        hmma = sum(1 for i in fn.instructions if i.base == "HMMA")
        assert (hmma > 0) == (arch != "75"), (name, hmma)


def test_upsample_meets_rule_8_and_the_models_predict_the_targets():
    _tools_or_skip()
    functions = {**_functions("similarity.cu", "90"), **_functions("upsample.cu", "90")}
    assert all(dense.check_kernel(n, f, "sm_90") == [] for n, f in functions.items())
    packed = {n: f for n, f in functions.items() if dense.UPSAMPLE_KERNEL in n and "Li4E" in n}
    assert len(packed) == 2
    for name, fn in packed.items():
        costs = dense.upsample_costs(fn)
        assert costs["instructions"] <= 4 * dense.UPSAMPLE_MAX_PER_OUTPUT
        if dense._dtype(name, dense.UPSAMPLE_KERNEL) == "f":
            model = dense.upsample_model(costs, "f")
            assert model["issue_us"] < model["write_us"]  # bound by the 179 MB output write, not by instructions
            assert model["predicted_us"] < 0.9 * TORCH_EAGER_US["upsample_c171"]
    vector_fp32 = next(f for n, f in functions.items() if dense.MMA_KERNEL + "IfLb1E" in n)
    costs = dense.mma_costs(vector_fp32)
    for case, normalize in (("similarity_scale", False), ("similarity_norm", True)):
        model = dense.similarity_model(costs, "f", normalize)
        assert model["blocks"] <= dense.H100["sms"]  # one wave
        assert model["predicted_us"] < 0.5 * TORCH_EAGER_US[case], (case, model)
    table = dense.render(functions)
    assert "similarity fp32 3xTF32 scale" in table and "upsample fp32 4 columns" in table


def test_the_self_test_flags_the_bad_kernels():
    _tools_or_skip()
    with tempfile.TemporaryDirectory(prefix="zs_sass_dense_self_") as tmp:
        failures = dense.self_test(sass._compiler("90", pathlib.Path(tmp)), _CHECKS / "sass_dense_self_test.cu", "90")
    assert failures == []
