"""Triton model repository text: parsed back with a small protobuf-text reader and checked field by field."""

from __future__ import annotations

import json
import os
import re

import pytest

from zsseg_rt.bundle import BUNDLE_FORMAT_VERSION, Files, Names, sha256_file
from zsseg_rt.export.triton import write_triton_repository

_TOKEN = re.compile(r'"[^"]*"|[{}\[\]:,]|[^\s{}\[\]:,"]+')


def parse_pbtxt(text):
    """Protobuf text format -> dict; repeated fields become lists (enough for config.pbtxt)."""
    tokens = _TOKEN.findall(text)
    position = 0

    def value():
        nonlocal position
        token = tokens[position]
        position += 1
        if token == "{":
            return message("}")
        if token == "[":
            items = []
            while tokens[position] != "]":
                items.append(value())
                if tokens[position] == ",":
                    position += 1
            position += 1
            return items
        if token.startswith('"'):
            return token[1:-1]
        return int(token) if re.fullmatch(r"-?\d+", token) else token

    def message(end):
        nonlocal position
        fields = {}
        while position < len(tokens) and tokens[position] != end:
            key = tokens[position]
            position += 1
            if tokens[position] == ":":
                position += 1
            item = value()
            if key in fields:
                fields[key] = (fields[key] if isinstance(fields[key], list) else [fields[key]]) + [item]
            else:
                fields[key] = item
            if position < len(tokens) and tokens[position] == ",":
                position += 1
        position += 1
        return fields

    return message(None)


@pytest.fixture()
def bundle(tmp_path):
    path = tmp_path / "bundle"
    path.mkdir()
    hashes = {}
    for name in (Files.IMAGE_ENCODER, Files.HEAD, Files.TEXT_ENCODER):
        (path / name).write_bytes(name.encode())
        hashes[name] = sha256_file(str(path / name))
    meta = {
        "format_version": BUNDLE_FORMAT_VERSION,
        "architecture": {},
        "image_size": 64,
        "patch_size": 16,
        "embed_dim": 8,
        "context_length": 77,
        "mean": [0, 0, 0],
        "std": [1, 1, 1],
        "templates": ["{}"],
        "calibration_bias": 0.0,
        "seen_class_names": [],
        "training_class_names": [],
        "max_classes": 256,
        "crop_size": 64,
        "stride": 64,
        "opset": 18,
        "files": hashes,
    }
    (path / Files.META).write_text(json.dumps(meta))
    return str(path)


def _config(model_dir):
    with open(os.path.join(model_dir, "config.pbtxt"), encoding="utf-8") as handle:
        return parse_pbtxt(handle.read())


def test_onnx_repository_configs(bundle, tmp_path):
    models = write_triton_repository(bundle, str(tmp_path / "repo"), max_batch=4)
    assert sorted(models) == ["zsseg_head", "zsseg_image_encoder", "zsseg_segment", "zsseg_text_encoder"]
    image = _config(models["zsseg_image_encoder"])
    assert image["platform"] == "onnxruntime_onnx" and image["max_batch_size"] == 4
    assert image["input"][0] == {"name": Names.IMAGE, "data_type": "TYPE_FP32", "dims": [3, 64, 64]}
    assert {o["name"]: o["dims"] for o in image["output"]} == {Names.IMAGE_GLOBAL: [8], Names.PATCHES: [16, 8]}
    assert "dynamic_batching" in image
    assert os.path.isfile(os.path.join(models["zsseg_image_encoder"], "1", "model.onnx"))

    head = _config(models["zsseg_head"])
    assert head["max_batch_size"] == 0 and "dynamic_batching" not in head
    assert {i["name"]: i["dims"] for i in head["input"]} == {
        Names.TEXT_EMBEDDINGS: [-1, 8],
        Names.IMAGE_GLOBAL: [-1, 8],
        Names.PATCHES: [-1, 16, 8],
    }
    assert head["output"][0]["dims"] == [-1, -1, 4, 4]

    text = _config(models["zsseg_text_encoder"])
    assert text["input"][0] == {"name": Names.TOKENS, "data_type": "TYPE_INT32", "dims": [77]}


def test_ensemble_chains_encoder_into_head(bundle, tmp_path):
    models = write_triton_repository(bundle, str(tmp_path / "repo"))
    ensemble = _config(models["zsseg_segment"])
    assert ensemble["platform"] == "ensemble"
    steps = ensemble["ensemble_scheduling"]["step"]
    assert [s["model_name"] for s in steps] == ["zsseg_image_encoder", "zsseg_head"]
    produced = {m["value"] for m in steps[0]["output_map"]}
    consumed = {m["value"] for m in steps[1]["input_map"]}
    assert produced <= consumed  # the head reads what the encoder writes
    assert {i["name"] for i in ensemble["input"]} == {Names.IMAGE, Names.TEXT_EMBEDDINGS}


def _fake_engine(directory, role, batch_max):
    from zsseg_rt.runtime.engine_cache import EngineKey, write_engine_record

    os.makedirs(directory, exist_ok=True)
    path = os.path.join(str(directory), f"{role}.engine")
    with open(path, "wb") as handle:
        handle.write(b"plan")
    key = EngineKey(
        graph=f"{role}.onnx",
        onnx_sha256="0" * 64,
        precision="fp16",
        profile=(("batch", (1, batch_max, batch_max)),),
        tensorrt_version="10.3.0",
        gpu_name="Orin",
        compute_capability="8.7",
    )
    write_engine_record(path, key)
    return path


def test_engines_are_served_as_tensorrt_plans(bundle, tmp_path):
    engines = {role: _fake_engine(tmp_path / role, role, batch_max=8) for role in ("image", "head")}
    models = write_triton_repository(bundle, str(tmp_path / "repo"), engines=engines)
    assert sorted(models) == ["zsseg_head", "zsseg_image_encoder", "zsseg_segment"]  # no text engine given
    assert _config(models["zsseg_head"])["platform"] == "tensorrt_plan"
    assert os.path.isfile(os.path.join(models["zsseg_head"], "1", "model.plan"))
    with pytest.raises(ValueError, match="max_batch"):
        write_triton_repository(bundle, str(tmp_path / "repo2"), max_batch=0)


def test_engine_batch_profile_must_cover_max_batch(bundle, tmp_path):
    engines = {"image": _fake_engine(tmp_path / "image", "image", batch_max=1)}
    with pytest.raises(ValueError, match=r"accepts at most 1 on its 'batch' axis but max_batch=8.*--max-batch 8"):
        write_triton_repository(bundle, str(tmp_path / "repo"), engines=engines, max_batch=8)
    assert write_triton_repository(bundle, str(tmp_path / "repo"), engines=engines, max_batch=1)
