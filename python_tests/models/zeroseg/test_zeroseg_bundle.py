"""ZeroSeg export bundle: meta/integrity, the Engine path (ONNX Runtime) against the PyTorch GroupViT-style
inference on the sample photos, the "maps" post-processing and the background label."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from zsseg_rt import Engine
from zsseg_rt.bundle import load_meta
from zsseg_rt.bundle.meta import check_bundle_integrity
from zsseg_rt.export.onnx_export import export_bundle
from zsseg_rt.models import create_model
from zsseg_rt.models.zeroseg.export import build_bundle_model, default_verify_images, export_zeroseg_bundle
from zsseg_rt.models.zeroseg.predict import predict_image
from zsseg_rt.pipeline.postprocessor import Postprocessor
from zsseg_rt.pipeline.preprocess import Window

TINY = "zeroseg_tiny_test"


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    torch.manual_seed(0)
    model = build_bundle_model(create_model(TINY), None, 0.3)  # random CLIP text tower (no weights offline)
    out = str(tmp_path_factory.mktemp("zb") / "bundle")
    export_bundle(model, out, max_classes=32, verify_images=default_verify_images())
    return out, model


@pytest.mark.slow  # a real export + verification of the tiny model (~15 s)
def test_bundle_meta_integrity_and_verification(bundle):
    out, _ = bundle
    meta = load_meta(out)
    check_bundle_integrity(meta)
    assert meta.family == "zeroseg"
    assert meta.postprocess["activation"] == "maps" and meta.postprocess["background_label"] == "background"
    assert meta.postprocess["background_threshold"] == 0.3 and meta.raw["architecture"]["config"]["name"] == TINY
    assert meta.image_size == 64 and meta.stride == 32 and meta.test_scale == [2048, 64]
    raw = json.load(open(os.path.join(out, "meta.json"), encoding="utf-8"))
    report = raw["verification"]
    assert report["passed"]
    engine_cases = [c for c in report["cases"] if c["graph"] == "engine"]
    assert len(engine_cases) == 1 + len(default_verify_images())
    assert all(c["label_agreement"] >= 0.999 and c["score_agreement"] >= 0.999 for c in engine_cases)
    assert max(c["labels_present"] for c in engine_cases) >= 2  # the check compares real label maps


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["exact", "fast"])
def test_engine_matches_pytorch_on_photos(bundle, mode):
    out, model = bundle
    names = ["person", "cat", "dog", "car", "sky", "grass"]
    engine = Engine(out, classes=names, backend="onnxruntime", mode=mode)
    text = model.text_embeddings(names)
    from zsseg_rt.image_io import read_image_bgr

    present = set()
    for path in default_verify_images():
        bgr = read_image_bgr(path)
        result = engine(bgr)
        labels, scores = predict_image(model.student, bgr[:, :, ::-1].copy(), text, 0.3)
        assert result.class_names == ["background"] + names
        assert result.labels.shape == bgr.shape[:2]
        assert (result.labels == labels.numpy()).mean() >= 0.999
        close = np.abs(result.scores - scores.numpy()) <= 1e-4
        assert close.mean() >= 0.999
        present |= set(np.unique(result.labels).tolist())
    assert len(present) >= 2


def test_raw_student_is_refused(tmp_path):
    with pytest.raises(ValueError, match="no text tower"):
        export_bundle(create_model(TINY), str(tmp_path / "b"))


def test_maps_postprocessor_averages_windows_and_refuses_bias():
    post = Postprocessor(head_size=(4, 4), activation="maps")
    maps = np.zeros((2, 3, 4, 4), np.float32)
    maps[0, 1] = 1.0  # window 0 says class 1
    maps[1, 2] = 1.0  # window 1 says class 2 ...
    maps[1, 2, :, 3] = 0.0
    maps[1, 0, :, 3] = 1.0  # ... except its last column: background
    windows = [Window(0, 4, 0, 4), Window(0, 4, 2, 6)]
    labels, scores = post(maps, windows, (4, 6), (4, 6))
    # columns 0-1: only window 0 (class 1); 2-3: both (tie 0.5/0.5 -> first = class 1); 4: window 1 (class 2);
    # 5: window 1's last column (background)
    assert labels[0, 0].tolist() == [1, 1, 1, 1, 2, 0]
    np.testing.assert_allclose(scores[0, 0], [1, 1, 0.5, 0.5, 1, 1])
    with pytest.raises(ValueError, match="no class bias"):
        post(maps, windows, (4, 6), (4, 6), np.ones(3, np.float32))
    with pytest.raises(ValueError, match="maps"):
        post(np.zeros((2, 3, 2, 2), np.float32), windows, (4, 6), (4, 6))


@pytest.mark.slow  # a real export (~12 s)
def test_export_zeroseg_bundle_entry_point(tmp_path):
    torch.manual_seed(1)
    student = create_model(TINY, crop_size=32, stride=16)
    out = export_zeroseg_bundle(student, str(tmp_path / "b"), None, 0.95, max_classes=4)
    meta = load_meta(out)
    assert meta.image_size == 32 and meta.postprocess["background_threshold"] == 0.95
    with pytest.raises(ValueError, match="sliding-window"):
        build_bundle_model(create_model(TINY, test_mode="whole"), None)


@pytest.mark.slow
def test_torch_backend_runs_the_exported_model(bundle):
    out, model = bundle
    names = ["person", "cat", "dog"]
    rgb = np.random.default_rng(2).integers(0, 256, (70, 100, 3), dtype=np.uint8)
    ort = Engine(out, classes=names, backend="onnxruntime")(rgb)
    torch_result = Engine(out, classes=names, backend="torch", device="cpu", model=model)(rgb)
    assert (ort.labels == torch_result.labels).mean() >= 0.999
    # this bundle records no checkpoint (exported from a model object): the Engine's own refusal comes first, in
    # words a command-line user can act on; with a model that is not the exported one the family says what it needs
    with pytest.raises(FileNotFoundError, match="records no checkpoint"):
        Engine(out, classes=names, backend="torch", device="cpu")
    with pytest.raises(ValueError, match="needs the exported model"):
        Engine(out, classes=names, backend="torch", device="cpu", model=object())


@pytest.mark.slow  # a real export (~10 s)
def test_verification_fails_for_a_different_model(tmp_path):
    """The Engine-vs-PyTorch check can fail: verify a fresh bundle against a model whose projector moved."""
    from zsseg_rt.models.zeroseg.export import verify_zeroseg_bundle

    torch.manual_seed(4)
    model = build_bundle_model(create_model(TINY, crop_size=32, stride=16), None, 0.0)
    out = export_bundle(model, str(tmp_path / "b"), max_classes=4)
    with torch.no_grad():
        model.student.projector.fc2.bias.add_(0.5)
    report = verify_zeroseg_bundle(out, model, default_verify_images()[:1])
    assert not report["passed"]
