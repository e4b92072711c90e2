"""The real ``TensorRTToolchain`` on the tiny bundle's exported graphs, lowered into the fake TensorRT network the way
TensorRT's ONNX importer builds it (``fake_onnx_importer``): the fp16 recipes on real graphs (which layers are pinned,
shape-only chains skipped), the pins read back from the engine inspector into engine.json, one logger per process,
the builder released before the accuracy gate, the workspace default on integrated GPUs and the peak-memory report.
Numerics are the gate's (ONNX Runtime stands in for the engines); TensorRT itself never runs here."""

from __future__ import annotations

import json
import os
import shutil
import sys

import pytest

pytest.importorskip("onnx", reason="the fake importer reads the exported graphs with onnx")
from fake_onnx_importer import lower_bundle, lower_onnx  # noqa: E402
from fake_tensorrt import BuilderFlag, make_module  # noqa: E402
from test_accuracy_gate import PerturbedBackend  # noqa: E402

from zsseg_rt.bundle import GRAPH_FILES, Files, load_meta  # noqa: E402
from zsseg_rt.prepare.tensorrt import build as trt_build  # noqa: E402
from zsseg_rt.prepare.tensorrt.memory import default_workspace_bytes  # noqa: E402
from zsseg_rt.runtime.backends.tensorrt import engines as trt_run  # noqa: E402
from zsseg_rt.runtime.device.cuda_driver import DeviceInfo  # noqa: E402

ORIN_NANO = DeviceInfo("Orin (nvgpu)", (8, 7), multiprocessors=8, total_memory_mib=7620)
RTX = DeviceInfo("NVIDIA GeForce RTX 4090", (8, 9), multiprocessors=128, total_memory_mib=24210)


class FakeCuda:
    """The CUDA driver shim's surface the toolchain uses (``integrated``: a Jetson's shared memory)."""

    def __init__(self, device=ORIN_NANO, integrated=True):
        self.device, self.integrated, self.contexts = device, integrated, []

    def device_info(self, index=0):
        return self.device

    def use_primary_context(self, index=0):
        self.contexts.append(index)

    def device_attribute(self, attribute, index=0):
        return int(self.integrated)

    def mem_get_info(self):
        return 3 << 30, self.device.total_memory_mib << 20


class GateOnOnnxRuntime(trt_build.TensorRTToolchain):
    """The real toolchain; the engines the gate runs are ONNX Runtime (TensorRT cannot run here). It records how many
    TensorRT builders were alive when the gate started."""

    builders_alive_at_gate = None

    def backend(self, meta, engine_paths):
        self.builders_alive_at_gate = len(self.trt.live_builders)
        return PerturbedBackend(meta)


@pytest.fixture()
def bundle(tiny_bundle, tmp_path):
    return str(shutil.copytree(tiny_bundle, tmp_path / "bundle"))


@pytest.fixture(scope="module")
def lowered(tiny_bundle):
    return lower_bundle(tiny_bundle, sorted(GRAPH_FILES.values()))


def _fake(monkeypatch, bundle):
    fake = make_module("10.3.0", lower_bundle(bundle, sorted(GRAPH_FILES.values())))
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    monkeypatch.setattr(trt_run, "_LOGGERS", {})
    return fake


def _pinned(fake):
    return [args[0] for name, args in fake.calls if name == "ILayer.precision"]


def _build_one(monkeypatch, bundle, role, precision, **kwargs):
    fake = _fake(monkeypatch, bundle)
    toolchain = trt_build.TensorRTToolchain(cuda=FakeCuda())
    paths = trt_build.build_engines(
        bundle, precision=precision, graphs=[role], toolchain=toolchain, accuracy_gate=False, **kwargs
    )
    return fake, paths[role]


def _l2_names(path):
    import onnx

    return [node.name for node in onnx.load(path, load_external_data=False).graph.node if node.op_type == "ReduceL2"]


@pytest.mark.parametrize("role", ["image", "text"])
def test_fp16_prefers_fp32_for_exactly_the_l2_sums_of_squares_of_the_real_graphs(monkeypatch, bundle, role):
    fake, _ = _build_one(monkeypatch, bundle, role, "fp16")
    l2 = _l2_names(load_meta(bundle).file(GRAPH_FILES[role]))
    assert l2, "the graph normalises its output with ReduceL2"
    expected = sorted(n for name in l2 for n in (f"{name} [PROD]", f"{name} [REDUCE]", name))
    assert sorted(_pinned(fake)) == expected  # not LayerNorm, Softmax, the divide, nor a shape chain
    flags = {args[0] for name, args in fake.calls if name == "IBuilderConfig.set_flag"}
    assert flags == {BuilderFlag.FP16, BuilderFlag.PREFER_PRECISION_CONSTRAINTS}


def test_the_image_encoder_has_shape_only_sqrt_chains(lowered, tiny_bundle):
    """The attention scale 1/sqrt(head_dim) is computed from Shape: Shape -> Slice -> Cast -> Sqrt -> Div."""
    graph = lowered[os.path.join(tiny_bundle, Files.IMAGE_ENCODER)]
    assert graph.count("UNARY", "SQRT") >= 2 and graph.count("SHAPE") >= 2


def test_fp16_pinned_skips_shape_only_chains_of_the_real_image_encoder(monkeypatch, bundle):
    fake, _ = _build_one(monkeypatch, bundle, "image", "fp16-pinned")
    network, _ = fake.built[-1]
    shape_only = {network.layers[i].name for i in trt_build.shape_only_layers(network, fake)}
    sqrts = [layer.name for layer in network.layers if layer.type.name == "UNARY" and layer.op.name == "SQRT"]
    pinned = set(_pinned(fake))
    assert shape_only and not pinned & shape_only  # no pin on a value computed from shapes
    assert {s for s in sqrts if s in shape_only} and not {s for s in sqrts if s in shape_only} & pinned
    norms = {layer.name for layer in network.layers if layer.type.name in ("NORMALIZATION", "SOFTMAX")}
    assert norms and norms <= pinned  # what fp16-pinned exists for is still pinned
    scale_multiplies = {  # the data-path multiply the attention scale feeds stays fp16
        layer.name
        for layer in network.layers
        if layer.type.name == "ELEMENTWISE"
        and any(layer.get_input(k).name in _outputs(network, shape_only) for k in range(layer.num_inputs))
        and layer.name not in shape_only
    }
    assert scale_multiplies and not scale_multiplies & pinned


def _outputs(network, names):
    return {
        layer.get_output(j).name for layer in network.layers if layer.name in names for j in range(layer.num_outputs)
    }


def test_which_pins_held_is_read_back_from_the_engine_inspector(monkeypatch, bundle):
    fake = _fake(monkeypatch, bundle)
    l2 = _l2_names(load_meta(bundle).file(Files.TEXT_ENCODER))[0]
    fake.settings.ignored_pins = {f"{l2} [PROD]"}  # TensorRT fused the square into an fp16 kernel
    fake.settings.foreign_layers = {f"{l2} [REDUCE]"}  # inside a Myelin region: not visible
    toolchain = trt_build.TensorRTToolchain(cuda=FakeCuda())
    path = trt_build.build_engines(bundle, "fp16", graphs=["text"], toolchain=toolchain, accuracy_gate=False)["text"]
    record = json.load(open(os.path.join(os.path.dirname(path), "engine.json"), encoding="utf-8"))
    pins = record["precision_pins"]
    assert pins["requested"] == 3 and pins["held"] == [l2]
    assert pins["not_held"] == [f"{l2} [PROD]"] and pins["unverified"] == [f"{l2} [REDUCE]"]
    assert pins["method"].startswith("engine inspector")
    assert ("IBuilderConfig.profiling_verbosity", (fake.ProfilingVerbosity.DETAILED,)) in fake.calls
    deserialized = [args for name, args in fake.calls if name == "Runtime.deserialize_cuda_engine"]
    assert deserialized == [(b"serialized engine",)]


def test_fp32_builds_pin_nothing_and_record_no_pins(monkeypatch, bundle):
    fake, path = _build_one(monkeypatch, bundle, "head", "fp32")
    record = json.load(open(os.path.join(os.path.dirname(path), "engine.json"), encoding="utf-8"))
    assert _pinned(fake) == [] and "precision_pins" not in record
    assert not [name for name, _ in fake.calls if name.startswith("Runtime")]


def test_one_logger_per_process(monkeypatch, bundle):
    fake = _fake(monkeypatch, bundle)
    for _ in range(2):
        toolchain = trt_build.TensorRTToolchain(cuda=FakeCuda())
        trt_build.build_engines(bundle, "fp16", graphs=["text"], toolchain=toolchain, accuracy_gate=False, force=True)
    trt_build.TensorRTToolchain(cuda=FakeCuda(), verbose=True)
    assert [name for name, _ in fake.calls].count("Logger") == 1
    assert ("Logger.min_severity", ("VERBOSE",)) in fake.calls  # verbose lowers the one logger's threshold


@pytest.mark.parametrize(
    "device, integrated, workspace_gb, expected",
    [
        (ORIN_NANO, True, None, 7620 * 2**20 // 8),  # Jetson: 1/8 of the shared DRAM
        (DeviceInfo("Orin (nvgpu)", (8, 7), 16, 62800), True, None, 2 << 30),  # AGX Orin 64 GB: at most 2 GiB
        (RTX, False, None, None),  # discrete: TensorRT's default
        (ORIN_NANO, True, 0.5, 1 << 29),  # the caller's limit wins
    ],
)
def test_workspace_default_on_integrated_gpus(monkeypatch, bundle, device, integrated, workspace_gb, expected):
    _fake(monkeypatch, bundle)
    toolchain = trt_build.TensorRTToolchain(cuda=FakeCuda(device, integrated))
    jobs = []
    build = toolchain.build
    monkeypatch.setattr(toolchain, "build", lambda job: jobs.append(job) or build(job))
    trt_build.build_engines(
        bundle, "fp16", graphs=["head"], toolchain=toolchain, accuracy_gate=False, workspace_gb=workspace_gb
    )
    assert jobs[0].workspace_bytes == expected
    if workspace_gb is None:
        assert default_workspace_bytes(device.total_memory_mib, integrated) == expected


def test_builder_is_released_before_the_gate_and_peak_memory_is_reported(monkeypatch, bundle):
    fake = _fake(monkeypatch, bundle)
    toolchain = GateOnOnnxRuntime(cuda=FakeCuda())
    report = trt_build.build_engine_set(bundle, "fp16", toolchain=toolchain, opt_classes=8)
    assert [name for name, _ in fake.calls].count("Builder") == 3 and toolchain.builders_alive_at_gate == 0
    assert report.gate["passed"]
    memory = report.memory
    assert memory["peak_rss_mib"] >= memory["baseline_rss_mib"] > 0 and memory["samples"] >= 2
    assert memory["peak_device_used_mib"] == (7620 - 3 * 1024)  # the fake cuMemGetInfo: 3 GiB free of 7620 MiB
    assert memory["workspace_mib"] == 7620 // 8
    assert "peak memory (build + gate): process RSS" in report.summary()
    for path in report.paths.values():
        record = json.load(open(os.path.join(os.path.dirname(path), "engine.json"), encoding="utf-8"))
        assert record["build_memory"] == memory


def test_every_op_of_every_graph_has_a_lowering_rule(lowered):
    for path, graph in lowered.items():
        assert graph.layers and graph.onnx_nodes, path


def test_an_op_without_a_rule_is_refused(tmp_path):
    from onnx import TensorProto, helper

    node = helper.make_node("Det", ["x"], ["y"])
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [])],
    )
    import onnx

    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(tmp_path / "g.onnx"))
    with pytest.raises(NotImplementedError, match="Det"):
        lower_onnx(str(tmp_path / "g.onnx"))
