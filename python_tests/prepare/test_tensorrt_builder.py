"""TensorRTToolchain against a recording fake of the TensorRT 10 Python API (python_tests/prepare/fake_tensorrt.py):
call order, builder flags and which layers are pinned to fp32, per precision. This checks calls and arguments only;
what the engines compute needs real TensorRT on a GPU (test_tensorrt.py::test_real_build_and_run_tiny_graph)."""

from __future__ import annotations

import sys

import pytest
from fake_tensorrt import BuilderFlag, MemoryPoolType, encoder_layers, make_module
from test_tensorrt import ORIN, _write_bundle

from zsseg_rt.bundle import Files, Names, load_meta
from zsseg_rt.prepare.tensorrt import build as trt_build


class FakeCuda:
    """The CUDA driver shim's surface the toolchain uses."""

    def __init__(self, device=ORIN):
        self.device, self.contexts = device, []

    def device_info(self, index=0):
        return self.device

    def use_primary_context(self, index=0):
        self.contexts.append(index)


def _toolchain(monkeypatch, tmp_path, version="10.3.0", with_qdq=False):
    bundle = _write_bundle(tmp_path / "bundle")
    onnx_path = load_meta(bundle).file(Files.TEXT_ENCODER)
    fake = make_module(version, {onnx_path: encoder_layers(Names.TOKENS, with_qdq=with_qdq)})
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    return bundle, fake, trt_build.TensorRTToolchain(cuda=FakeCuda())


def _build(bundle, toolchain, precision, **kwargs):
    # the bundle's graphs are fake bytes: the accuracy gate (test_accuracy_gate.py) cannot run on them
    return trt_build.build_engines(
        bundle, precision=precision, graphs=["text"], toolchain=toolchain, accuracy_gate=False, **kwargs
    )


def _flags(fake):
    return {args[0] for name, args in fake.calls if name == "IBuilderConfig.set_flag"}


def _pinned(fake):
    return sorted({args[0] for name, args in fake.calls if name == "ILayer.precision"})


def test_fp16_is_plain_fp16_with_only_the_l2_sum_of_squares_in_fp32(monkeypatch, tmp_path):
    bundle, fake, toolchain = _toolchain(monkeypatch, tmp_path)
    _build(bundle, toolchain, "fp16")
    assert _flags(fake) == {BuilderFlag.FP16, BuilderFlag.PREFER_PRECISION_CONSTRAINTS}
    assert BuilderFlag.OBEY_PRECISION_CONSTRAINTS not in _flags(fake)
    assert _pinned(fake) == ["l2/sqrt", "l2/square", "l2/sum"]  # not LayerNorm, Softmax or the division
    outputs = {args[0]: args[2] for name, args in fake.calls if name == "ILayer.set_output_type"}
    assert set(outputs) == {"l2/sqrt", "l2/square", "l2/sum"} and {d.value for d in outputs.values()} == {"float32"}


def test_fp16_pinned_keeps_the_former_recipe(monkeypatch, tmp_path):
    bundle, fake, toolchain = _toolchain(monkeypatch, tmp_path)
    _build(bundle, toolchain, "fp16-pinned")
    assert _flags(fake) == {BuilderFlag.FP16, BuilderFlag.OBEY_PRECISION_CONSTRAINTS}
    pinned = _pinned(fake)
    assert {"ln", "softmax", "l2/sum", "l2/sqrt", "l2/div"} <= set(pinned)
    assert "shape_mul" not in pinned and "qk" not in pinned  # int shape arithmetic and matmuls stay as they are


def test_fp32_turns_tf32_off_and_pins_nothing(monkeypatch, tmp_path):
    bundle, fake, toolchain = _toolchain(monkeypatch, tmp_path)
    _build(bundle, toolchain, "fp32")
    assert _flags(fake) == set() and _pinned(fake) == []
    assert ("IBuilderConfig.clear_flag", (BuilderFlag.TF32,)) in fake.calls


def _image_graph(fake, bundle, with_qdq):
    fake.graphs[load_meta(bundle).file(Files.IMAGE_ENCODER)] = encoder_layers(Names.IMAGE, with_qdq=with_qdq)
    fake.input_shapes[Names.IMAGE] = (-1, 3, 32, 32)


def _build_image(bundle, toolchain, precision):
    return trt_build.build_engines(
        bundle, precision=precision, graphs=["image"], toolchain=toolchain, accuracy_gate=False
    )


def test_int8_needs_explicit_quantisation(monkeypatch, tmp_path):
    bundle, fake, toolchain = _toolchain(monkeypatch, tmp_path)
    _image_graph(fake, bundle, with_qdq=False)
    with pytest.raises(trt_build.EngineBuildError, match="explicitly quantised"):
        _build_image(bundle, toolchain, "int8")
    assert not any(name == "Builder.build_serialized_network" for name, _ in fake.calls)
    assert BuilderFlag.INT8 not in _flags(fake)


def test_int8_with_qdq_nodes_sets_int8_and_fp16(monkeypatch, tmp_path):
    bundle, fake, toolchain = _toolchain(monkeypatch, tmp_path)
    _image_graph(fake, bundle, with_qdq=True)
    paths = _build_image(bundle, toolchain, "int8")
    assert _flags(fake) == {BuilderFlag.FP16, BuilderFlag.INT8, BuilderFlag.PREFER_PRECISION_CONSTRAINTS}
    assert trt_build.read_engine_record(paths["image"])[0].precision == "int8"
    shapes = [args for name, args in fake.calls if name == "IOptimizationProfile.set_shape"]
    assert shapes == [(Names.IMAGE, (1, 3, 32, 32), (1, 3, 32, 32), (1, 3, 32, 32))]


def test_call_order_profile_and_workspace_follow_the_tensorrt_10_api(monkeypatch, tmp_path):
    bundle, fake, toolchain = _toolchain(monkeypatch, tmp_path)
    paths = _build(bundle, toolchain, "fp16", workspace_gb=1.5, max_prompts=64, opt_classes=4)
    names = [name for name, _ in fake.calls]
    order = [
        "Builder",
        "Builder.create_network",
        "OnnxParser",
        "OnnxParser.parse_from_file",
        "Builder.create_builder_config",
        "IBuilderConfig.set_memory_pool_limit",
        "IOptimizationProfile.set_shape",
        "IBuilderConfig.add_optimization_profile",
        "IBuilderConfig.set_flag",
        "IBuilderConfig.create_timing_cache",
        "IBuilderConfig.set_timing_cache",
        "Builder.build_serialized_network",
    ]
    positions = [names.index(step) for step in order]
    assert positions == sorted(positions), names
    assert ("Builder.create_network", (0,)) in fake.calls  # TensorRT 10: explicit batch is the only mode
    assert ("IBuilderConfig.set_memory_pool_limit", (MemoryPoolType.WORKSPACE, int(1.5 * 2**30))) in fake.calls
    shapes = [args for name, args in fake.calls if name == "IOptimizationProfile.set_shape"]
    assert shapes == [(Names.TOKENS, (1, 1), (8, 16), (64, 77))]  # opt prompts = 4 classes x 2 templates
    with open(paths["text"], "rb") as handle:
        assert handle.read() == b"serialized engine"


def test_toolchain_refuses_tensorrt_11(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", make_module("11.4.0.106"))
    with pytest.raises(ImportError, match=r"not supported: .*tensorrt-cu12>=10,<11.*tensorrt-cu13>=10.13,<11"):
        trt_build.TensorRTToolchain(cuda=FakeCuda())
