import json
import os

import pytest

from zsseg_rt.bundle import BundleError, load_meta, sha256_file, verify_files, write_meta
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
    write_meta(str(tmp_path / "meta.json"), meta)
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


# ---- issue 16 item 5: schema, meta.json's own hash, file names, external data, tokenizer -------------------
@pytest.mark.parametrize(
    "field, value, match",
    [
        ("std", [1, 0, 1], r"std: expected 3 numbers, each a finite number > 0"),
        ("std", [1, -1, 1], "std"),
        ("mean", [0, 0], r"mean: expected a list of 3 numbers"),
        ("patch_size", 0, r"patch_size: expected an integer in \[1,"),
        ("patch_size", 5, "does not divide image_size"),
        ("image_size", "64", "image_size: expected an integer"),
        ("image_size", True, "image_size: expected an integer"),
        ("context_length", 10**9, r"context_length: expected an integer in \[16, 4096\]"),
        ("context_length", 1, "context_length"),
        ("crop_size", 0, "crop_size"),
        ("crop_size", 128, "larger than the graphs' input"),
        ("stride", -3, "stride"),
        ("embed_dim", 2.5, "embed_dim"),
        ("max_classes", 0, "max_classes"),
        ("seen_class_names", "cat", r"seen_class_names: expected a list of strings"),
        ("seen_class_names", ["cat", 3], "seen_class_names"),
        ("templates", [], "templates: expected a non-empty list"),
        ("templates", ["a photo"], "templates: expected prompt templates"),
        ("calibration_bias", float("nan"), "calibration_bias: expected a finite number"),
        ("test_scale", [None, 0], "test_scale"),
        ("postprocess", {"activation": "relu"}, "activation 'sigmoid' or 'softmax'"),
        ("architecture", [], "architecture: expected an object"),
        ("files", {"head.onnx": "xyz"}, "64 lower-case hex digits"),
        # the gaps found with recomputed hashes: every field has a type and a range
        ("architecture", {"family": "../../etc/passwd"}, "architecture: expected family: a name"),
        ("architecture", {"family": {"a": 1}}, "architecture: expected family: a name"),
        ("architecture", {"config": {"num_queries": "100"}}, r"config.num_queries: an integer"),
        ("io", {}, "io: expected a non-empty object"),
        ("io", {"image": {"inputs": [], "outputs": ["x"]}}, r"'image': 'inputs' must be a non-empty list"),
        ("io", {"image": {"inputs": ["image"], "outputs": ["p"]}}, r"io: a bundle of the 'windowed' pipeline"),
        ("io", {"image": {"inputs": ["a"], "outputs": ["b"], "dynamic_axes": {"c": {"0": "n"}}}}, "neither an input"),
        ("postprocess", {"background_label": {"a": 1}}, "background_label: a non-empty string"),
        ("postprocess", {"logit_scale": 1e300}, r"logit_scale: a finite number > 0 in \[-inf, 10000\]"),
        ("postprocess", {"topk_classes": -1}, "topk_classes"),
        ("postprocess", {"logit_scale_in_head": "yes"}, "logit_scale_in_head: true or false"),
        ("stride", 1, r"stride: expected between crop_size / 4 and crop_size \(16..64"),
        ("stride", 65, "stride: expected between"),
        ("std", [1e-300, 1, 1], r"std: expected 3 numbers, each a finite number > 0 in \[0.001, 10000\]"),
        ("mean", [0, 0, 1e9], r"mean: expected 3 numbers, each a finite number in \[0, 255\]"),
        ("calibration_bias", -1e308, r"calibration_bias: expected a finite number in \[-1, 1\]"),
        ("context_length", 3, r"context_length: expected an integer in \[16, 4096\], got 3"),
        ("image_size", 8192, "patch grid side of 512, more than"),  # with patch_size 16: 512 is allowed, see below
    ],
)
def test_meta_schema_violations_are_named(tmp_path, field, value, match):
    if field == "image_size" and value == 8192:  # a 512-patch grid side loads; 8192 / 8 = 1024 does not
        load_meta(_write_bundle(tmp_path, image_size=8192, patch_size=16))
        value = {"image_size": 8192, "patch_size": 8}
        with pytest.raises(BundleError, match="patch grid side of 1024, more than 512"):
            load_meta(_write_bundle(tmp_path, **value))
        return
    with pytest.raises(BundleError, match=r"meta.json' is malformed: .*" + match):
        load_meta(_write_bundle(tmp_path, **{field: value}))


def test_graph_with_a_valid_hash_but_no_onnx_inside_is_a_bundle_error(tmp_path):
    """The files of ``_write_bundle`` are text whose sha256 meta.json records: they pass every hash check, and ONNX
    Runtime must not get to show its raw protobuf error."""
    pytest.importorskip("onnxruntime")
    from zsseg_rt.runtime import Engine

    bundle = _write_bundle(tmp_path)
    with pytest.raises(
        BundleError, match=r"image_encoder.onnx' is not an ONNX graph ONNX Runtime can load .*re-export"
    ):
        Engine(bundle, backend="onnxruntime", device="cpu")


@pytest.mark.parametrize("name", ["../outside.onnx", "/etc/passwd", "a/../../b", "sub\\x.onnx", "", "./x"])
def test_file_names_must_stay_inside_the_bundle(tmp_path, name):
    bundle = _write_bundle(tmp_path)
    meta = json.loads((tmp_path / "meta.json").read_text())
    meta["files"][name] = "0" * 64
    write_meta(str(tmp_path / "meta.json"), meta)
    with pytest.raises(BundleError, match="plain relative path|relative to the bundle|non-empty"):
        load_meta(bundle)


def test_tampered_meta_is_detected_by_its_own_hash(tmp_path):
    bundle = _write_bundle(tmp_path)
    meta = json.loads((tmp_path / "meta.json").read_text())
    meta["calibration_bias"] = 0.5  # a plausible edit the file hashes would not catch
    (tmp_path / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(BundleError, match="was modified after export.*meta_sha256"):
        load_meta(bundle)
    del meta["meta_sha256"]  # removing the hash does not help: verification requires it
    (tmp_path / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(BundleError, match="records no meta_sha256"):
        verify_files(load_meta(bundle))


def test_symlink_leaving_the_bundle_is_refused(tmp_path):
    outside = tmp_path / "secret.onnx"
    outside.write_bytes(b"bytes of head.onnx")
    bundle = tmp_path / "b"
    bundle.mkdir()
    _write_bundle(bundle)
    os.remove(bundle / "head.onnx")
    os.symlink(outside, bundle / "head.onnx")  # same bytes, same hash: only the location is wrong
    meta = load_meta(str(bundle))
    with pytest.raises(BundleError, match="outside the bundle"):
        verify_files(meta)
    with pytest.raises(BundleError, match="outside the bundle"):
        meta.file("head.onnx")


def test_fifo_is_refused_without_hanging(tmp_path):
    bundle = _write_bundle(tmp_path)
    os.remove(tmp_path / "head.onnx")
    os.mkfifo(tmp_path / "head.onnx")  # opening it for reading would block forever
    meta = load_meta(bundle)
    with pytest.raises(BundleError, match="not a regular file"):
        verify_files(meta)
    os.remove(tmp_path / "meta.json")
    os.mkfifo(tmp_path / "meta.json")
    with pytest.raises(BundleError, match="not a regular file"):
        load_meta(bundle)


def test_unhashed_files_such_as_external_data_are_refused(tmp_path):
    bundle = _write_bundle(tmp_path)
    (tmp_path / "image_encoder.onnx.data").write_bytes(b"weights")  # ONNX external data ORT would load
    with pytest.raises(BundleError, match=r"records no sha256 for: \['image_encoder.onnx.data'\]"):
        verify_files(load_meta(bundle))
    meta = json.loads((tmp_path / "meta.json").read_text())
    meta["files"]["image_encoder.onnx.data"] = sha256_file(str(tmp_path / "image_encoder.onnx.data"))
    write_meta(str(tmp_path / "meta.json"), meta)
    verify_files(load_meta(bundle))  # listed: verified like the graphs
    (tmp_path / "image_encoder.onnx.data").write_bytes(b"weightz")
    with pytest.raises(BundleError, match="image_encoder.onnx.data.*corrupted"):
        verify_files(load_meta(bundle))
    (tmp_path / "engines").mkdir()  # TensorRT engines built on the device are not part of the export
    (tmp_path / "engines" / "x.plan").write_bytes(b"plan")


def test_garbage_tokenizer_names_its_file(tmp_path):
    from zsseg_rt.vocabulary.tokenizer import ClipTokenizer

    path = tmp_path / "tokenizer.json"
    path.write_text("{garbage")
    with pytest.raises(BundleError, match="tokenizer.json' is not a valid tokenizer file"):
        ClipTokenizer(str(path))


def test_exported_bundle_is_signed_complete_and_readable_by_others(tiny_bundle):
    import stat

    meta = load_meta(tiny_bundle)
    verify_files(meta)
    assert "meta_sha256" in meta.raw and set(meta.files) >= set(FILES)
    assert stat.S_IMODE(os.stat(tiny_bundle).st_mode) == 0o755
    # engines/: what build-engine and the preparation add later (tests of this process may have made it: the export
    # writes none)
    for name in sorted(set(os.listdir(tiny_bundle)) - {"engines"}):
        assert stat.S_IMODE(os.stat(os.path.join(tiny_bundle, name)).st_mode) == 0o644, name


def test_pinned_digest_accepts_the_exported_bundle_and_refuses_a_rehashed_edit(tiny_bundle, tmp_path):
    """sha256 records show integrity only: an edit whose hashes are recomputed loads; a pinned digest refuses it."""
    import shutil

    from zsseg_rt import Engine
    from zsseg_rt.bundle import bundle_digest

    digest = bundle_digest(tiny_bundle)
    assert digest.startswith("sha256:") and len(digest) == 7 + 64
    Engine(tiny_bundle, backend="onnxruntime", expected_digest=digest)  # the exported bundle
    Engine(tiny_bundle, backend="onnxruntime", expected_digest=digest[7:].upper())  # the bare hex, any case
    with pytest.raises(ValueError, match="64 hex digits"):
        Engine(tiny_bundle, expected_digest="sha256:1234")
    with pytest.raises(ValueError, match="verify=False"):
        Engine(tiny_bundle, expected_digest=digest, verify=False)

    edited = tmp_path / "edited"
    shutil.copytree(tiny_bundle, edited)
    raw = json.loads((edited / "meta.json").read_text())
    raw["calibration_bias"] = round(float(raw.get("calibration_bias", 0.0)) / 2 + 0.25, 3)
    raw.pop("meta_sha256", None)
    write_meta(str(edited / "meta.json"), raw)  # an attacker recomputing the hashes
    assert load_meta(str(edited)).digest != digest
    Engine(str(edited), backend="onnxruntime")  # integrity holds: nothing tells the edit apart without a pin
    with pytest.raises(BundleError, match="is not the pinned one"):
        Engine(str(edited), backend="onnxruntime", expected_digest=digest)
