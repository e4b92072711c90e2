"""CLIP-RC bundles: verified ONNX export (image encoder with a "regions" output, head with dynamic C) and the
Engine (onnxruntime) reproducing the PyTorch model for the same vocabulary on a VOC photo."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from test_cliprc_helpers import make_tiny

from zsseg_rt.assets import SAMPLES_DIR

SAMPLES = str(SAMPLES_DIR / "JPEGImages")


def _photo_path(name="2011_000025.jpg"):
    path = os.path.join(SAMPLES, name)
    assert os.path.isfile(path), f"the sample photo {path} ships with the package"
    return path


@pytest.fixture(scope="module")
def cliprc_bundle(tmp_path_factory):
    pytest.importorskip("onnxruntime")
    from zsseg_rt.export.onnx_export import export_bundle
    from zsseg_rt.models.convert import save_native

    root = tmp_path_factory.mktemp("cliprc_bundle")
    model = make_tiny(seed=3)
    native = save_native(model, os.path.join(root, "native"))
    photo = _photo_path()
    bundle = export_bundle(model, os.path.join(root, "bundle"), max_classes=8, source=str(native),
                           verify_images=[photo])
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
    assert {c["classes"] for c in heads} >= {1, 8} and all(c["max_abs"] <= 1e-4 for c in heads)
    assert any(c.get("input", "").endswith(".jpg") for c in heads)


def test_engine_onnxruntime_reproduces_pytorch_labels_on_a_voc_photo(cliprc_bundle):
    cv2 = pytest.importorskip("cv2")
    from zsseg_rt.models.predict import predict
    from zsseg_rt.runtime import Engine

    bundle, model = cliprc_bundle
    image = cv2.imread(_photo_path(), cv2.IMREAD_COLOR)
    names = ["person", "bottle", "chair", "sofa", "tv monitor"]
    result = Engine(bundle, classes=names, backend="onnxruntime")(image)
    labels, scores = predict(model, image[:, :, ::-1].copy(), class_names=names, mode="slide")
    assert result.labels.shape == image.shape[:2]
    assert (labels == result.labels).mean() >= 0.999
    np.testing.assert_allclose(scores, result.scores, atol=1e-4)
    # the torch backend loads the native CLIP-RC checkpoint recorded in meta.json
    torch_result = Engine(bundle, classes=names, backend="torch")(image)
    np.testing.assert_array_equal(torch_result.labels, labels)


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
