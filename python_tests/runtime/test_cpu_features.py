"""What the CPU offers for int8 / bf16 (runtime/cpu_features.py) and what the ONNX Runtime backend makes of it
(runtime/backends/onnxruntime/precision.py): read from cpuinfo files written here, so every CPU kind is covered on any machine."""

import pytest

from zsseg_rt.runtime.backends.onnxruntime.precision import int8_recipe, validate_ort_precision
from zsseg_rt.runtime.cpu_features import cpu_features

HASWELL = "fpu sse2 avx avx2 fma"
SKYLAKE_X = HASWELL + " avx512f avx512dq avx512bw avx512vl"
CASCADE_LAKE = SKYLAKE_X + " avx512_vnni"
COOPER_LAKE = CASCADE_LAKE + " avx512_bf16"
SAPPHIRE_RAPIDS = COOPER_LAKE + " amx_bf16 amx_int8 amx_tile"
ALDER_LAKE = HASWELL + " avx_vnni"


def _features(tmp_path, flags, machine="x86_64"):
    key = "flags" if machine == "x86_64" else "Features"
    path = tmp_path / "cpuinfo"
    path.write_text(f"processor\t: 0\nmodel name\t: test\n{key}\t\t: {flags}\n\nprocessor\t: 1\n{key}\t: ignored\n")
    return cpu_features(str(path), machine)


@pytest.mark.parametrize(
    "flags, machine, int8, saturates, bf16",
    [
        (HASWELL, "x86_64", "avx2", True, "none"),
        (SKYLAKE_X, "x86_64", "avx512-core", True, "none"),
        (CASCADE_LAKE, "x86_64", "avx512-vnni", False, "none"),
        (COOPER_LAKE, "x86_64", "avx512-vnni", False, "avx512-bf16"),
        (SAPPHIRE_RAPIDS, "x86_64", "amx-int8", False, "amx-bf16"),
        (ALDER_LAKE, "x86_64", "avx-vnni", False, "none"),
        ("fp asimd", "aarch64", "neon", False, "none"),
        ("fp asimd asimddp", "aarch64", "arm-sdot", False, "none"),  # Cortex-A78AE (Jetson Orin)
        ("fp asimd asimddp i8mm bf16", "aarch64", "arm-i8mm", False, "arm-bf16"),  # Neoverse V1/V2
    ],
)
def test_int8_and_bf16_instructions_of_each_cpu_kind(tmp_path, flags, machine, int8, saturates, bf16):
    features = _features(tmp_path, flags, machine)
    assert (features.int8_dot_product, features.int8_saturates, features.bf16) == (int8, saturates, bf16)
    # 7-bit weights exactly where u8 x s8 pairs are summed in int16 (vpmaddubsw): x86 without VNNI / AMX
    assert int8_recipe(features)["reduce_range"] is saturates
    assert int8 in features.summary() and bf16 in features.summary()


def test_a_missing_cpuinfo_reads_as_no_features(tmp_path):
    features = cpu_features(str(tmp_path / "absent"), "x86_64")
    assert features.flags == frozenset() and features.int8_dot_product == "none" and features.int8_saturates


def test_bf16_on_onnx_runtime_is_refused_on_x86_even_with_avx512_bf16(tmp_path):
    with pytest.raises(ValueError, match="needs an Arm64 CPU with bf16.*has no bf16 arithmetic.*precision='int8'"):
        validate_ort_precision("bf16", _features(tmp_path, SAPPHIRE_RAPIDS))
    with pytest.raises(ValueError, match="Arm64 CPU with bf16"):
        validate_ort_precision("bf16", _features(tmp_path, "fp asimd asimddp", "aarch64"))
    validate_ort_precision("bf16", _features(tmp_path, "fp asimd bf16", "aarch64"))  # accepted there
    for precision in ("fp32", "int8"):
        validate_ort_precision(precision, _features(tmp_path, HASWELL))


def test_an_unknown_precision_names_the_known_ones(tmp_path):
    with pytest.raises(ValueError, match=r"one of \('fp32', 'int8', 'bf16', 'auto'\), got 'fp16'"):
        validate_ort_precision("fp16", _features(tmp_path, HASWELL))
