"""The engine inspector's JSON as NVIDIA documents it (issue 40, item 6): the fake inspector writes that layout, and
the package reads the fp32 pins of an engine from it (``trt_precision.pins_as_built``), without TensorRT.

The reference is generated data from NVIDIA's own files (``trt_inspector_format.py`` says how; its ``source`` names
the tag and commit): the layout of the engine JSON files NVIDIA publishes (top-level ``Layers``/``Bindings``, the
keys of every layer and tensor) and TREx's table of every ``Format/Datatype`` string, with its precision. Before,
the fake's JSON was invented: no ``Bindings``, layers without ``LayerType``/``Inputs``, an FP16 string
("Row major linear FP16") that TensorRT does not print, and names-only layers as objects.

Each check is shown to fail: the former fake's JSON breaks the layout check, and a classifier that reads "FLOAT"
anywhere (so "BFloat16" and "FloatComplex" count as fp32, and a pin would be counted as held) breaks the format
check. Mutations run when these tests were written, each failing a test here: the fake's FP16 string back to
"Row major linear FP16", names-only layers written as objects, no ``Bindings``, and ``trt_precision._precision_of``
matching FLOAT inside a word.
"""

from __future__ import annotations

import json
import re

import pytest
import trt_inspector_format as documented
from fake_tensorrt import BuilderFlag, encoder_layers, make_module

from zsseg_rt.prepare.tensorrt.precision import _precision_of, pins_as_built

DOC = documented.load_format()
FP32_WORDS, FP16_WORDS = {"FP32", "Float"}, {"FP16", "Half"}


def test_the_reference_is_generated_data_with_its_source():
    source = DOC["source"]
    assert source["repository"] == "https://github.com/NVIDIA/TensorRT" and re.fullmatch(
        r"[0-9a-f]{40}", source["commit"]
    )
    assert source["files"][0] == documented.FORMATS_FILE and len(source["files"]) > 5
    assert "trt_inspector_format.py" in source["generated_by"]
    assert DOC["top_level_keys"] == ["Bindings", "Layers"]
    assert {"Name", "LayerType", "Inputs", "Outputs"} <= set(DOC["layer_keys_always"])
    assert DOC["tensor_keys_always"] == ["Dimensions", "Format/Datatype", "Name"]
    assert DOC["formats"]["Row major linear FP16 format"] == "FP16 NCHW"
    assert set(DOC["example_formats"]) <= set(DOC["formats"])  # NVIDIA's examples use TREx's strings


def test_every_format_the_fake_writes_is_documented():
    import fake_tensorrt

    assert set(fake_tensorrt.FORMATS.values()) <= set(DOC["formats"])
    assert {fake_tensorrt.FORMATS[t] for t in (fake_tensorrt.DataType.FLOAT, fake_tensorrt.DataType.HALF)} <= set(
        DOC["example_formats"]
    )  # the two the pins are read from: as in NVIDIA's own engine files


def misread(classify) -> list:
    """Documented formats a classifier gets wrong: fp32/fp16 formats must be read as such, and no other format as
    fp32 or fp16 (a non-fp32 output read as fp32 would count a pin as held)."""
    wrong = []
    for text, short in DOC["formats"].items():
        word = documented.precision_word(short)
        expected = "fp32" if word in FP32_WORDS else "fp16" if word in FP16_WORDS else None
        got = classify(text)
        if (expected and got != expected) or (expected is None and got in ("fp32", "fp16")):
            wrong.append((text, got, expected))
    return wrong


def test_the_package_reads_every_documented_format():
    assert misread(_precision_of) == []
    # BF16 outputs are "not a float precision it rules on" (unverified, never held): no TensorRT build here is bf16
    assert _precision_of("Row major linear BFloat16 format") is None


def test_a_careless_classifier_fails_the_format_check():  # the control of the test above
    def naive(text: str):
        upper = text.upper()
        return "fp32" if "FLOAT" in upper or "FP32" in upper else "fp16" if "FP16" in upper or "HALF" in upper else None

    wrong = {text for text, _, _ in misread(naive)}
    assert {"BFloat16", "FloatComplex", "Row major linear BFloat16 format"} <= wrong


# ---------------------------------------------------------------------------------------------- the fake's layout
def layout_problems(info: dict, detailed: bool = True, with_formats: bool = True) -> list:
    """How ``info`` (the inspector's parsed JSON) differs from the documented layout."""
    problems = []
    if sorted(info) != DOC["top_level_keys"]:
        problems.append(f"top-level keys {sorted(info)} != {DOC['top_level_keys']}")
    if not all(isinstance(b, str) for b in info.get("Bindings", [None])):
        problems.append("Bindings must be tensor names")
    for layer in info.get("Layers", []):
        if not detailed:
            if not isinstance(layer, str):
                problems.append(f"names-only layers are strings, not {layer!r}")
            continue
        if not isinstance(layer, dict):
            problems.append(f"a detailed layer is an object: {layer!r}")
            continue
        keys = set(layer)
        if not set(DOC["layer_keys_always"]) <= keys or not keys <= set(DOC["layer_keys_seen"]):
            problems.append(f"layer {layer.get('Name')!r}: keys {sorted(keys)}")
        for tensor in layer.get("Inputs", []) + layer.get("Outputs", []):
            required = set(DOC["tensor_keys_always"]) - (set() if with_formats else {"Format/Datatype"})
            if not required <= set(tensor) or not set(tensor) <= set(DOC["tensor_keys_seen"]):
                problems.append(f"tensor of {layer.get('Name')!r}: keys {sorted(tensor)}")
            if "Format/Datatype" in tensor and not with_formats:
                problems.append(f"{layer.get('Name')!r}: a format shown without an execution context")
            if "Format/Datatype" in tensor and tensor["Format/Datatype"] not in DOC["formats"]:
                problems.append(f"{layer.get('Name')!r}: undocumented format {tensor['Format/Datatype']!r}")
    return problems


def _engine(verbosity="DETAILED", ignored=(), foreign=(), pins=("ln", "softmax"), flags=("FP16",)):
    """A fake engine of a small encoder built with ``pins`` preferred in fp32: (module, inspector)."""
    fake = make_module("10.3.0", {"m.onnx": encoder_layers("x")}, input_shapes={"x": (-1, 8)})
    fake.settings.ignored_pins, fake.settings.foreign_layers = set(ignored), set(foreign)
    logger = fake.Logger()
    builder = fake.Builder(logger)
    network = builder.create_network(0)
    fake.OnnxParser(network, logger).parse_from_file("m.onnx")
    config = builder.create_builder_config()
    for flag in flags:
        config.set_flag(BuilderFlag[flag])
    config.set_flag(BuilderFlag.PREFER_PRECISION_CONSTRAINTS)
    for layer in network.layers:
        if layer.name in pins:
            layer.precision = fake.float32
    config.profiling_verbosity = fake.ProfilingVerbosity[verbosity]
    engine = fake.Runtime(logger).deserialize_cuda_engine(builder.build_serialized_network(network, config))
    return fake, engine


def _information(fake, engine, context=True) -> dict:
    inspector = engine.create_engine_inspector()
    if context:
        ctx = engine.create_execution_context_without_device_memory()
        ctx.set_input_shape("x", (2, 8))
        inspector.execution_context = ctx
    return json.loads(inspector.get_engine_information(fake.LayerInformationFormat.JSON))


def test_the_fake_writes_the_documented_detailed_layout():
    fake, engine = _engine(ignored={"l2/square"})
    info = _information(fake, engine)
    assert layout_problems(info) == []
    names = [layer["Name"] for layer in info["Layers"]]
    assert "l2/square + l2/sum" in names  # an ignored fp32 preference: fused into the fp16 consumer ("a + b")
    assert "Reformatting CopyNode for Input Tensor 0 to ln" in names  # fp16 -> fp32 where the pinned LayerNorm reads
    assert info["Bindings"][0] == "x" and "text_embeddings" in info["Bindings"]
    first = next(layer for layer in info["Layers"] if layer["Inputs"])["Inputs"][0]
    assert first["Dimensions"] == [2, 8] and first["Format/Datatype"] == "Row major linear FP32"  # the network input


def test_names_only_and_no_context_as_documented():
    fake, engine = _engine(verbosity="LAYER_NAMES_ONLY")
    names_only = _information(fake, engine)
    assert layout_problems(names_only, detailed=False) == [] and "ln" in names_only["Layers"]
    fake, engine = _engine()
    no_context = _information(fake, engine, context=False)
    assert layout_problems(no_context, with_formats=False) == []
    first = next(layer for layer in no_context["Layers"] if layer["Inputs"])["Inputs"][0]
    assert first["Name"] == "x" and first["Dimensions"] == [-1, 8]  # shape-dependent values: -1
    fake, engine = _engine(verbosity="NONE")
    assert _information(fake, engine)["Layers"] == []


def test_the_former_fake_json_fails_the_layout_check():  # the control: the invented layout this fake replaced
    former = {"Layers": [{"Name": "ln", "Outputs": [{"Format/Datatype": "Row major linear FP16"}]}]}
    problems = layout_problems(former)
    assert any("top-level keys" in p for p in problems) and any("keys ['Name', 'Outputs']" in p for p in problems)
    assert any("undocumented format 'Row major linear FP16'" in p for p in problems)
    assert layout_problems({"Layers": [{"Name": "ln"}], "Bindings": []}, detailed=False)  # names-only as objects


# ---------------------------------------------------------------------------------------------- the package on it
@pytest.mark.parametrize(
    "ignored, foreign, held, not_held, unverified",
    [
        ((), (), ["ln", "softmax"], [], []),
        ({"ln"}, (), ["softmax"], ["ln"], []),  # fused into an fp16 kernel: its outputs are FP16
        ((), {"softmax"}, ["ln"], [], ["softmax"]),  # inside a Myelin region: not described
    ],
)
def test_pins_read_from_the_documented_layout(ignored, foreign, held, not_held, unverified):
    fake, engine = _engine(ignored=ignored, foreign=foreign)
    record = pins_as_built(json.dumps(_information(fake, engine)), ["ln", "softmax"])
    assert (record["held"], record["not_held"], record["unverified"]) == (held, not_held, unverified)


@pytest.mark.parametrize("verbosity, context", [("LAYER_NAMES_ONLY", True), ("DETAILED", False)])
def test_without_formats_no_pin_is_claimed_held(verbosity, context):
    fake, engine = _engine(verbosity=verbosity)
    record = pins_as_built(json.dumps(_information(fake, engine, context=context)), ["ln", "softmax"])
    assert record["held"] == [] and record["unverified"] == ["ln", "softmax"]
