"""Static TensorRT-compatibility check on hand-built ONNX graphs (no TensorRT needed)."""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="the TensorRT compatibility check reads graphs with onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from zsseg_rt.prepare.tensorrt.compat import (  # noqa: E402
    TRT10_SUPPORTED_OPS,
    TrtCompatibilityError,
    assert_trt_compatible,
    check_trt_compatibility,
)

D = 8


def _model(nodes, inputs, outputs, initializers=(), opset=18, extra_opsets=()):
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(initializers))
    opsets = [helper.make_opsetid("", opset)] + [helper.make_opsetid(d, v) for d, v in extra_opsets]
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = 8
    return model


def _weight(name, shape, seed=0):
    return numpy_helper.from_array(np.random.default_rng(seed).standard_normal(shape).astype(np.float32), name)


def _attention_layernorm_model(opset=18):
    """x [batch, T, D] -> LayerNorm -> softmax(x W x^T) x: the clean transformer pattern."""
    nodes = [
        helper.make_node("LayerNormalization", ["x", "gamma", "beta"], ["ln"], axis=-1, name="ln"),
        helper.make_node("MatMul", ["ln", "w"], ["q"], name="proj"),
        helper.make_node("Transpose", ["ln"], ["kt"], perm=[0, 2, 1], name="kt"),
        helper.make_node("MatMul", ["q", "kt"], ["scores"], name="scores"),
        helper.make_node("Softmax", ["scores"], ["attn"], axis=-1, name="softmax"),
        helper.make_node("MatMul", ["attn", "ln"], ["y"], name="mix"),
    ]
    inits = [_weight("gamma", (D,)), _weight("beta", (D,), 1), _weight("w", (D, D), 2)]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "tokens", D])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "tokens", D])
    return _model(nodes, [x], [y], inits, opset=opset)


def test_clean_attention_layernorm_graph_passes():
    report = assert_trt_compatible(_attention_layernorm_model())
    assert report.ok and report.findings == [], report.format()
    assert report.opset == 18


def test_nonzero_is_a_data_dependent_shape_error():
    nodes = [helper.make_node("NonZero", ["x"], ["idx"], name="nz")]
    model = _model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 4])],
        [helper.make_tensor_value_info("idx", TensorProto.INT64, [2, "n"])],
    )
    report = check_trt_compatibility(model)
    assert not report.ok
    assert [(f.code, f.node) for f in report.errors] == [("data_dependent_shape", "nz")]
    with pytest.raises(TrtCompatibilityError, match="NonZero"):
        assert_trt_compatible(model)


def test_reshape_to_value_derived_shape_is_flagged_but_shape_derived_is_not():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])
    s = helper.make_tensor_value_info("s", TensorProto.INT64, [2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    from_values = _model([helper.make_node("Reshape", ["x", "s"], ["y"], name="r")], [x, s], [y])
    assert [(f.code, f.node) for f in check_trt_compatibility(from_values).errors] == [("data_dependent_shape", "r")]
    from_shape = _model(
        [
            helper.make_node("Shape", ["x"], ["xs"]),
            helper.make_node("Reshape", ["x", "xs"], ["y"], name="r"),
        ],
        [x],
        [y],
    )
    assert "data_dependent_shape" not in check_trt_compatibility(from_shape).codes()


def test_custom_domain_op_is_unsupported():
    nodes = [helper.make_node("FancyNorm", ["x"], ["y"], domain="com.example", name="fancy")]
    model = _model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, D])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, D])],
        extra_opsets=[("com.example", 1)],
    )
    report = check_trt_compatibility(model)
    assert [(f.code, f.node) for f in report.errors] == [("unsupported_op", "fancy")]
    assert "com.example::FancyNorm" in report.errors[0].message


def test_standard_op_missing_from_the_trt_list_is_unsupported():
    assert "Unique" not in TRT10_SUPPORTED_OPS and "MatMul" in TRT10_SUPPORTED_OPS
    nodes = [helper.make_node("BitShift", ["a", "b"], ["c"], direction="LEFT", name="shift")]
    io = [helper.make_tensor_value_info(n, TensorProto.UINT32, [3]) for n in "abc"]
    report = check_trt_compatibility(_model(nodes, io[:2], io[2:]))
    assert [(f.code, f.node) for f in report.errors] == [("unsupported_op", "shift")]


def test_opset_16_graph_warns_about_decomposed_layernorm():
    nodes = [
        helper.make_node("ReduceMean", ["x"], ["mu"], axes=[-1], name="mean"),
        helper.make_node("Sub", ["x", "mu"], ["y"], name="center"),
    ]
    model = _model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", D])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", D])],
        opset=16,
    )
    report = check_trt_compatibility(model)
    assert report.ok  # a warning, not an error
    assert [f.code for f in report.warnings] == ["old_opset"]
    with pytest.raises(TrtCompatibilityError, match="old_opset"):
        assert_trt_compatible(model, allow_warnings=False)


def test_int64_argmax_warns():
    nodes = [helper.make_node("ArgMax", ["tokens"], ["eot"], axis=-1, keepdims=0, name="eot_argmax")]
    model = _model(
        nodes,
        [helper.make_tensor_value_info("tokens", TensorProto.INT64, ["prompts", 77])],
        [helper.make_tensor_value_info("eot", TensorProto.INT64, ["prompts"])],
    )
    assert [(f.code, f.node) for f in check_trt_compatibility(model).warnings] == [("int64_index_op", "eot_argmax")]
    as_int32 = _model(
        nodes,
        [helper.make_tensor_value_info("tokens", TensorProto.INT32, ["prompts", 77])],
        [helper.make_tensor_value_info("eot", TensorProto.INT64, ["prompts"])],
    )
    assert check_trt_compatibility(as_int32).findings == []


def test_unnamed_dynamic_dim_warns():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, D])  # dynamic, no dim_param
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, D])
    report = check_trt_compatibility(_model([helper.make_node("Relu", ["x"], ["y"])], [x], [y]))
    assert sorted(f.code for f in report.warnings) == ["unnamed_dynamic_dim", "unnamed_dynamic_dim"]


def test_reduce_axes_from_data_need_a_constant():
    nodes = [helper.make_node("ReduceSum", ["x", "axes"], ["y"], name="sum")]
    model = _model(
        nodes,
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, D]),
            helper.make_tensor_value_info("axes", TensorProto.INT64, [1]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
    )
    assert [(f.code, f.node) for f in check_trt_compatibility(model).errors] == [("constant_input_required", "sum")]


def test_file_path_is_accepted(tmp_path):
    path = tmp_path / "clean.onnx"
    onnx.save(_attention_layernorm_model(), str(path))
    report = check_trt_compatibility(str(path))
    assert report.ok and str(path) in report.source


@pytest.mark.parametrize("dynamo", [False, True])
def test_torch_exported_module_passes(tmp_path, dynamo):
    torch = pytest.importorskip("torch", reason="exports a tiny module with torch.onnx")
    if dynamo:
        pytest.importorskip("onnxscript", reason="the dynamo exporter needs onnxscript")

    class TinyBlock(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.norm = torch.nn.LayerNorm(D)
            self.proj = torch.nn.Linear(D, D)

        def forward(self, x):  # [B, T, D]
            h = self.norm(x)
            attn = torch.softmax(self.proj(h) @ h.transpose(1, 2), dim=-1)
            out = attn @ h
            return out / out.norm(dim=-1, keepdim=True)

    path = str(tmp_path / "tiny.onnx")
    x = torch.randn(2, 5, D)
    if dynamo:
        batch = torch.export.Dim("batch", min=1, max=64)
        torch.onnx.export(
            TinyBlock().eval(),
            (x,),
            path,
            input_names=["x"],
            output_names=["y"],
            opset_version=18,
            dynamo=True,
            dynamic_shapes={"x": {0: batch}},
        )
    else:
        torch.onnx.export(
            TinyBlock().eval(),
            (x,),
            path,
            input_names=["x"],
            output_names=["y"],
            opset_version=18,
            dynamo=False,
            dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}},
        )
    report = assert_trt_compatible(path)
    assert report.errors == [], report.format()
    assert report.opset == 18
