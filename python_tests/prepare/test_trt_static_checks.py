"""Static checks that hold every family's exported graphs, and zsseg_rt's TensorRT code, to TensorRT 10.3 (JetPack 6)
without TensorRT installed:

* every node of every graph against onnx-tensorrt's operator table (op, data-input types, per-op restrictions),
  opset and IR version limits, no DOUBLE/BF16 graph I/O (``trt_compat`` + ``trt_op_rules``);
* shape-profile coverage (``trt_profile_check``): ranges for every dynamic dimension, ordered ranges, the head's
  inputs = the encoder's outputs, the device pipeline's windows per call within the engines' batch maximum;
* the TensorRT Python API the package and its fakes use exists in TensorRT 10.3 with those parameters
  (``trt_api_surface``; every other 10.x the package accepts: ``test_trt_api_versions.py``).

Each check is shown to fail on a planted defect: an unsupported op, a missing profile range, a misspelt API name.
"""

from __future__ import annotations

import glob
import json
import os
import shutil

import pytest

onnx = pytest.importorskip("onnx", reason="the static TensorRT checks read graphs with onnx")
import trt_api_surface as surface  # noqa: E402
from family_bundles import VARIANTS  # noqa: E402
from onnx import TensorProto, helper  # noqa: E402

from zsseg_rt.bundle import Files, load_meta, sha256_file, write_meta  # noqa: E402
from zsseg_rt.prepare.tensorrt.compat import check_trt_compatibility  # noqa: E402
from zsseg_rt.prepare.tensorrt.op_rules import load_operator_table, table_source  # noqa: E402
from zsseg_rt.prepare.tensorrt.profile_check import check_bundle_profiles  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TRT_FAMILIES_WITHOUT_ENGINES = {"zegformer"}  # two-stage pipeline: no TensorRT engines


def test_every_registered_family_has_a_bundle_here(family_bundles):
    from zsseg_rt.contract.registry import families

    families_here = [name for name in family_bundles if name not in VARIANTS]
    assert sorted(families_here) == sorted(families())  # a new family must add its tiny bundle to these checks
    assert {load_meta(path).family for path in family_bundles.values()} == set(families())
    assert {load_meta(family_bundles[name]).family for name in VARIANTS} == {v[0] for v in VARIANTS.values()}


def test_the_operator_table_is_data_with_its_source():
    table = load_operator_table()
    assert table["source"]["repository"] == "https://github.com/onnx/onnx-tensorrt"
    assert len(table["source"]["commit"]) == 40 and table["target_tensorrt"] == "10.3"
    assert table["documented_opsets"] == [9, 20] and table["onnx_ir_version_max"] == 10
    assert table["operators"]["LayerNormalization"]["supported"] and not table["operators"]["Unique"]["supported"]
    assert "10.3" in table_source(table)


# ---------------------------------------------------------------------------------------------- graphs vs operators
def _graphs(family_bundles):
    return [
        (family, path) for family, bundle in family_bundles.items() for path in sorted(glob.glob(f"{bundle}/*.onnx"))
    ]


def test_every_graph_of_every_family_passes_the_operator_table(family_bundles):
    checked = 0
    for family, path in _graphs(family_bundles):
        report = check_trt_compatibility(path)
        assert report.ok and not report.warnings, f"{family}: {report.format()}"
        checked += len(onnx.load(path, load_external_data=False).graph.node)
    assert len(_graphs(family_bundles)) == 18 and checked > 1000  # 5 families + SC-CLIP


def _planted(path, tmp_path, mutate):
    model = onnx.load(path, load_external_data=False)
    mutate(model)
    out = str(tmp_path / os.path.basename(path))
    onnx.save(model, out)
    return out


def test_a_planted_unsupported_op_is_caught(tiny_bundle, tmp_path):
    path = os.path.join(tiny_bundle, Files.IMAGE_ENCODER)

    def plant(model):  # Unique (N in the table) on the encoder's output, feeding nothing
        model.graph.node.append(helper.make_node("Unique", [model.graph.output[0].name], ["planted"], name="planted"))

    report = check_trt_compatibility(_planted(path, tmp_path, plant))
    assert [(f.code, f.node) for f in report.errors if f.code == "unsupported_op"] == [("unsupported_op", "planted")]
    assert "onnx-tensorrt release/10.1-GA" in report.format()


@pytest.mark.parametrize(
    "mutate, code",
    [
        (
            lambda m: m.graph.node.append(  # a MatMul of int32 tensors: MatMul supports FP32/FP16/BF16 only
                helper.make_node("MatMul", ["i32", "i32"], ["p"], name="planted")
            ),
            "unsupported_type",
        ),
        (
            lambda m: m.graph.node.append(
                helper.make_node("Resize", ["x", "", "s"], ["r"], mode="cubic", name="planted")
            ),
            "op_restriction",
        ),
        (
            lambda m: m.graph.node.append(helper.make_node("TopK", ["x", "k"], ["v", "i"], sorted=0, name="planted")),
            "op_restriction",
        ),
        (lambda m: setattr(m, "ir_version", 11), "ir_version_out_of_range"),
        (lambda m: m.opset_import[0].__setattr__("version", 21), "opset_out_of_range"),
        (
            lambda m: m.graph.output[0].type.tensor_type.__setattr__("elem_type", TensorProto.DOUBLE),
            "unsupported_io_type",
        ),
    ],
)
def test_types_restrictions_and_model_limits_are_checked(tmp_path, mutate, code):
    nodes = [helper.make_node("Cast", ["x"], ["i32"], to=TensorProto.INT32)]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])],
        [helper.make_tensor_value_info("i32", TensorProto.INT32, [1, 4, 8, 8])],
        initializer=[
            helper.make_tensor("s", TensorProto.FLOAT, [4], [1, 1, 2, 2]),
            helper.make_tensor("k", TensorProto.INT64, [1], [3]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    assert check_trt_compatibility(model).ok
    mutate(model)
    report = check_trt_compatibility(model)
    assert code in {f.code for f in report.errors}, report.format()


# ---------------------------------------------------------------------------------------------- profiles
def test_every_family_with_engines_has_full_profile_coverage(family_bundles):
    for family, bundle in family_bundles.items():
        if family in TRT_FAMILIES_WITHOUT_ENGINES:
            continue
        findings = check_bundle_profiles(load_meta(bundle))
        assert findings == [], f"{family}: " + "; ".join(map(str, findings))


def _rehash(bundle, name):
    meta_path = os.path.join(bundle, Files.META)
    with open(meta_path, encoding="utf-8") as handle:
        meta = json.load(handle)
    meta["files"][name] = sha256_file(os.path.join(bundle, name))
    meta.pop("meta_sha256", None)
    write_meta(meta_path, meta)


def test_a_planted_dynamic_dimension_without_a_range_is_caught(tiny_bundle, tmp_path):
    bundle = str(shutil.copytree(tiny_bundle, tmp_path / "bundle"))
    path = os.path.join(bundle, Files.HEAD)
    model = onnx.load(path)
    dim = model.graph.input[0].type.tensor_type.shape.dim[1]  # text_embeddings [num_classes, D]: D made dynamic
    dim.Clear()
    dim.dim_param = "embed_dim"
    onnx.save(model, path)
    _rehash(bundle, Files.HEAD)
    findings = check_bundle_profiles(load_meta(bundle))
    assert {f.code for f in findings} == {"missing_profile_range"}
    assert "'text_embeddings' axis 1 (embed_dim)" in findings[0].message


def test_a_planted_head_encoder_mismatch_is_caught(tiny_bundle, tmp_path):
    bundle = str(shutil.copytree(tiny_bundle, tmp_path / "bundle"))
    path = os.path.join(bundle, Files.HEAD)
    model = onnx.load(path)
    dim = model.graph.input[2].type.tensor_type.shape.dim[1]  # patches [batch, N, D]: N off by one
    dim.dim_value += 1
    onnx.save(model, path)
    _rehash(bundle, Files.HEAD)
    assert "head_encoder_mismatch" in {f.code for f in check_bundle_profiles(load_meta(bundle))}


def test_device_windows_follow_the_engine_profile(tiny_bundle, monkeypatch):
    from zsseg_rt.runtime.device import device_pipeline

    assert check_bundle_profiles(load_meta(tiny_bundle), max_batches=[1, 2, 5]) == []
    monkeypatch.setattr(device_pipeline, "windows_per_call", lambda requested, executor: int(requested))  # the bug
    findings = check_bundle_profiles(load_meta(tiny_bundle), max_batches=[1])
    assert {f.code for f in findings} == {"device_windows_exceed_profile"}


# ---------------------------------------------------------------------------------------------- API surface
def _package_files():
    return surface.package_files(ROOT)


def test_the_api_list_is_data_with_its_source():
    data = surface.load_api()
    assert data["source"]["ref"] == "v10.3.0" and len(data["source"]["commit"]) == 40
    assert data["source"]["repository"] == "https://github.com/NVIDIA/TensorRT"
    assert data["classes"]["IBuilderConfig"]["methods"]["set_memory_pool_limit"] == [["pool", "pool_size"]]


def test_every_tensorrt_name_the_package_uses_exists_in_10_3():
    api = surface.Api(surface.load_api())
    checked = set()
    problems = [p for path in _package_files() for p in surface.check_source(path, api, checked=checked)]
    assert problems == [], "\n".join(map(str, problems))
    used = {  # the calls a review found correct, among those the check looked up
        "Builder.create_network",
        "Builder.build_serialized_network",
        "OnnxParser.parse_from_file",
        "IOptimizationProfile.set_shape",
        "IBuilderConfig.set_memory_pool_limit",
        "ICudaEngine.get_tensor_profile_shape",
        "IExecutionContext.set_input_shape",
        "IExecutionContext.set_tensor_address",
        "IExecutionContext.execute_async_v3",
        "IBuilderConfig.create_timing_cache",
        "Runtime.deserialize_cuda_engine",
        "EngineInspector.get_engine_information",
        "trt.Logger.WARNING",
        "trt.LayerType.NORMALIZATION",
        "trt.TensorIOMode.INPUT",
        "trt.nptype",
    }
    assert used <= checked, sorted(used - checked)


def test_the_fakes_use_only_tensorrt_10_3_names_and_parameters():
    """(Every other 10.x: test_trt_api_versions.py.)"""
    api = surface.Api(surface.load_api())
    modules, aliases = surface.fakes(ROOT)
    assert len(modules) == 2 and len(aliases) == 4  # fake_tensorrt, make_module(), the executor/host stand-ins
    problems = [p for module in modules for p in surface.check_fake(module, api)]
    problems += surface.check_fake(None, api, aliases)
    assert problems == [], "\n".join(map(str, problems))


PLANTED = """
import tensorrt as trt

def build(builder, network):
    config = builder.create_builder_config()
    config.set_memroy_pool_limit(trt.MemoryPoolType.WORKSPACE, 1 << 30)
    config.set_flag(trt.BuilderFlag.FP61)
    profile = builder.create_optimization_profile()
    profile.set_shape("x", (1, 3), (2, 3))
    return trt.Builer(trt.Logger(trt.Logger.WARNING))
"""


def test_planted_misspelt_api_names_are_caught(tmp_path):
    problems = [str(p) for p in surface.check_source(str(tmp_path / "planted.py"), text=PLANTED)]
    assert any("'set_memroy_pool_limit'" in p for p in problems)
    assert any("trt.BuilderFlag.FP61" in p for p in problems)
    assert any("trt.Builer" in p for p in problems)
    assert any("set_shape(...) does not fit" in p for p in problems)  # 3 shapes: min, opt, max
    assert len(problems) == 4, problems


def test_a_planted_misspelt_fake_member_is_caught():
    class IBuilderConfig:  # a fake with a typo and a wrong parameter name
        def set_memory_pool_limt(self, pool, pool_size):
            pass

        def set_flag(self, builder_flag):
            pass

    problems = [str(p) for p in surface.check_fake(None, aliases={IBuilderConfig: "IBuilderConfig"})]
    assert len(problems) == 2 and "'set_memory_pool_limt'" in problems[0] and "['builder_flag']" in problems[1]


def test_the_layer_types_named_by_string_exist():
    from zsseg_rt.prepare.tensorrt.precision import VALUE_INPUTS  # looked up with getattr(trt.LayerType, name)

    members = surface.load_api()["classes"]["LayerType"]["members"]
    assert set(VALUE_INPUTS) | {"SHAPE", "CONSTANT"} <= set(members)


# ---------------------------------------------------------------------------------------------- fp16 recipes
def _network(fake, path):
    network = fake.Builder(fake.Logger()).create_network(0)
    fake.OnnxParser(network, fake.Logger()).parse_from_file(path)
    return network


def test_the_fp16_recipes_on_every_familys_real_graphs(family_bundles):
    """Each graph lowered as TensorRT's importer does: fp16 prefers fp32 for exactly the L2 sums of squares,
    fp16-pinned pins every LayerNorm/Softmax and nothing computed from shapes."""
    from fake_onnx_importer import lower_onnx
    from fake_tensorrt import make_module

    from zsseg_rt.prepare.tensorrt import precision as trt_precision

    for family, path in _graphs(family_bundles):
        fake = make_module("10.3.0", {path: lower_onnx(path)})
        network = _network(fake, path)
        l2 = [n.name for n in onnx.load(path, load_external_data=False).graph.node if n.op_type == "ReduceL2"]
        squares = trt_precision.l2_sum_of_squares_layers(network, fake)
        assert sorted(layer.name for layer in squares) == sorted(
            name for n in l2 for name in (f"{n} [PROD]", f"{n} [REDUCE]", n)
        ), f"{family} {os.path.basename(path)}"
        pinned = set(trt_precision.keep_numerics_in_fp32(network, fake))
        shape_only = {network.get_layer(i).name for i in trt_precision.shape_only_layers(network, fake)}
        norms = {l.name for l in network.layers if l.type.name in ("NORMALIZATION", "SOFTMAX")}
        assert not pinned & shape_only and norms <= pinned, f"{family} {os.path.basename(path)}"
