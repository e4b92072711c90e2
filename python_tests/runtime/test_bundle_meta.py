import json
import os

import pytest

from zsseg_rt.bundle import BundleError, load_meta, sha256_file, verify_files
from zsseg_rt.bundle.spec import BUNDLE_FORMAT_VERSION

FILES = ("image_encoder.onnx", "head.onnx", "text_encoder.onnx", "tokenizer.json")


def _write_bundle(tmp_path, **over):
    for name in FILES:
        (tmp_path / name).write_bytes(b"bytes of " + name.encode())
    meta = {
        "format_version": BUNDLE_FORMAT_VERSION,
        "architecture": {},
        "image_size": 64,
        "patch_size": 16,
        "embed_dim": 8,
        "context_length": 77,
        "mean": [0, 0, 0],
        "std": [1, 1, 1],
        "templates": ["a {}"],
        "calibration_bias": 0.1,
        "seen_class_names": ["cat"],
        "training_class_names": ["cat", "dog"],
        "max_classes": 4,
        "crop_size": 64,
        "stride": 50,
        "opset": 18,
        "files": {name: sha256_file(str(tmp_path / name)) for name in FILES},
    }
    meta.update(over)
    (tmp_path / "meta.json").write_text(json.dumps(meta))
    return str(tmp_path)


def test_valid_bundle_loads_and_verifies(tmp_path):
    meta = load_meta(_write_bundle(tmp_path))
    verify_files(meta)
    assert meta.grid == (4, 4)
    assert meta.class_bias(["dog", "cat", "car"]) == [0.0, 0.1, 0.0]


def test_corrupted_file_is_refused_with_both_hashes(tmp_path):
    meta = load_meta(_write_bundle(tmp_path))
    (tmp_path / "head.onnx").write_bytes(b"bytes of head.onnz")
    with pytest.raises(BundleError, match=r"corrupted.*sha256 [0-9a-f]{64} != recorded [0-9a-f]{64}"):
        verify_files(meta)


def test_missing_file_and_missing_meta(tmp_path):
    meta = load_meta(_write_bundle(tmp_path))
    os.remove(tmp_path / "head.onnx")
    with pytest.raises(BundleError, match="head.onnx.*missing"):
        verify_files(meta)
    os.remove(tmp_path / "meta.json")
    with pytest.raises(BundleError, match="meta.json.*missing"):
        load_meta(str(tmp_path))
    with pytest.raises(BundleError, match="not found"):
        load_meta(str(tmp_path / "nope"))


def test_wrong_format_and_missing_fields(tmp_path):
    with pytest.raises(BundleError, match="format 999 is not supported"):
        load_meta(_write_bundle(tmp_path, format_version=999))
    (tmp_path / "meta.json").write_text(json.dumps({"format_version": BUNDLE_FORMAT_VERSION}))
    with pytest.raises(BundleError, match="lacks required fields"):
        load_meta(str(tmp_path))
    (tmp_path / "meta.json").write_text("{not json")
    with pytest.raises(BundleError, match="cannot read"):
        load_meta(str(tmp_path))


def test_a_graph_missing_from_meta_files_is_refused(tmp_path):
    # otherwise a corrupted file that meta.json does not list would load unchecked
    bundle = _write_bundle(tmp_path)
    meta = load_meta(bundle)
    del meta.files["text_encoder.onnx"]
    with pytest.raises(BundleError, match=r"records no sha256 for \['text_encoder.onnx'\]"):
        verify_files(meta)
