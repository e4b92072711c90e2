"""CLIP-RC bundles: verified ONNX export (image encoder with a "regions" output, head with dynamic C) and the
Engine (onnxruntime) reproducing the PyTorch model for the same vocabulary on a VOC photo."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from support import VOCAB10, assert_segmentations_agree, distinct_labels, golden_tiny_model, perturbed_head

from zsseg_rt.assets import SAMPLES_DIR

SAMPLES = str(SAMPLES_DIR / "JPEGImages")


def _photo_path(name="2011_000025.jpg"):
    path = os.path.join(SAMPLES, name)
    assert os.path.isfile(path), f"the sample photo {path} ships with the package"
    return path


@pytest.fixture(scope="module")
def cliprc_bundle(tmp_path_factory):
    pytest.importorskip("onnxruntime")
    from zsseg_rt.contract.common.convert import save_native
    from zsseg_rt.export.onnx_export import export_bundle

    root = tmp_path_factory.mktemp("cliprc_bundle")
    model = golden_tiny_model("cliprc")  # non-degenerate weights: scores spread, several classes win
    native = save_native(model, os.path.join(root, "native"))
    photo = _photo_path()
    bundle = export_bundle(
        model, os.path.join(root, "bundle"), max_classes=12, source=str(native), verify_images=[photo]
    )
    return bundle, model


def test_export_records_the_cliprc_io_and_passes_verification(cliprc_bundle):
    from zsseg_rt.bundle import Names

    bundle, _ = cliprc_bundle
    meta = json.load(open(os.path.join(bundle, "meta.json")))
    assert meta["architecture"]["family"] == "cliprc"
    assert meta["io"]["image"]["outputs"] == [Names.IMAGE_GLOBAL, Names.PATCHES, Names.REGIONS]
    assert meta["io"]["head"]["inputs"] == [Names.TEXT_EMBEDDINGS, Names.IMAGE_GLOBAL, Names.PATCHES, Names.REGIONS]
    assert meta["postprocess"]["activation"] == "sigmoid" and meta["postprocess"]["classes_coupled"] is True
    assert meta["verification"]["passed"] is True
    heads = [c for c in meta["verification"]["cases"] if c["graph"] == "head"]
    assert {c["classes"] for c in heads} >= {1, 12} and all(c["max_abs"] <= c["atol"] for c in heads)
    assert any(c.get("input", "").endswith(".jpg") for c in heads)


def test_engine_onnxruntime_reproduces_pytorch_labels_on_a_voc_photo(cliprc_bundle):
    cv2 = pytest.importorskip("cv2")
    from zsseg_rt.contract.common.predict import predict
    from zsseg_rt.runtime import Engine

    bundle, model = cliprc_bundle
    image = cv2.imread(_photo_path("2011_000006.jpg"), cv2.IMREAD_COLOR)
    names = VOCAB10
    engine = Engine(bundle, classes=names, backend="onnxruntime")
    result = engine(image)
    labels, scores = predict(model, image[:, :, ::-1].copy(), class_names=names, mode="slide")
    assert result.labels.shape == image.shape[:2]
    assert distinct_labels(labels) >= 3 and 0.02 < float(np.median(scores)) < 0.98  # not saturated
    assert_segmentations_agree(labels, scores, result.labels, result.scores, score_atol=1e-4, what="ort vs torch")
    # the torch backend loads the native CLIP-RC checkpoint recorded in meta.json
    torch_result = Engine(bundle, classes=names, backend="torch")(image)
    assert_segmentations_agree(
        labels, scores, torch_result.labels, torch_result.scores, score_atol=1e-4, what="torch backend vs predict"
    )
    # mutation self-check: the comparison fails when one class's logits move by 0.05 on one side
    winner = int(np.bincount(labels.reshape(-1)).argmax())
    with perturbed_head(engine, winner, 0.05):
        mutated = engine(image)
    with pytest.raises(AssertionError):
        assert_segmentations_agree(labels, scores, mutated.labels, mutated.scores, score_atol=1e-4)


def test_engine_vocabulary_coupling_is_visible(cliprc_bundle):
    cv2 = pytest.importorskip("cv2")
    from zsseg_rt.runtime import Engine

    bundle, _ = cliprc_bundle
    image = cv2.imread(_photo_path(), cv2.IMREAD_COLOR)
    engine = Engine(bundle, classes=["person", "chair"], backend="onnxruntime")
    a = engine(image)
    engine.set_classes(["person", "chair", "dog"])
    b = engine(image)
    # per-class scores of "person"/"chair" change when "dog" joins: documented CLIP-RC behaviour
    assert not np.allclose(np.where(a.labels == 0, a.scores, 0), np.where(b.labels == 0, b.scores, 0))


def test_bad_inputs_through_the_pytorch_model_are_clear(cliprc_bundle):
    _, model = cliprc_bundle
    with pytest.raises(ValueError, match="inputs only"):
        model(torch.randn(1, 3, 128, 64), torch.randn(2, 32))
