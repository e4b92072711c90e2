"""ZegFormer through the evaluation machinery: native checkpoint -> ``evaluate`` (official whole-image test
resize, padding, CLIP branch, fusion), and the detectron2 test-resize rule."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from zsseg_rt.data import SyntheticDataset  # noqa: E402
from zsseg_rt.eval import evaluate  # noqa: E402
from zsseg_rt.models import create_model, save_native  # noqa: E402
from zsseg_rt.models.zegformer.predict import predict_zegformer, shortest_edge_shape  # noqa: E402

pytestmark = pytest.mark.single_torch_thread  # one torch thread, as the tests under eval/ and train/


def test_shortest_edge_shape_is_detectron2s():
    assert shortest_edge_shape(375, 500, 512, 2048) == (512, 683)
    assert shortest_edge_shape(500, 375, 512, 2048) == (683, 512)
    assert shortest_edge_shape(100, 1000, 512, 2048) == (205, 2048)  # long side capped, then rounded
    assert shortest_edge_shape(640, 480, 640, 2560) == (853, 640)


def test_native_zegformer_evaluates_and_matches_predict(tmp_path):
    torch.manual_seed(0)
    model = create_model("zegformer_tiny_test")
    out = save_native(model, tmp_path / "native")
    ds = SyntheticDataset(length=2, size=(48, 80), num_classes=4, seed=3, unseen=["blue water"])
    metrics = evaluate(str(out), ds, mode="whole", progress=False)
    assert metrics["images"] == 2 and "mIoU" in metrics and metrics["source"] == "native"
    rgb, _ = ds.load(0)
    labels, scores = predict_zegformer(model, rgb, list(ds.class_names))
    assert labels.shape == (48, 80) and scores.shape == (4, 48, 80)
    np.testing.assert_array_equal(labels, scores.argmax(0))
    with pytest.raises(ValueError, match="uint8"):
        predict_zegformer(model, rgb.astype(np.float32))


def test_evaluation_uses_the_models_own_spelling_of_the_dataset_classes(monkeypatch):
    """ZegFormer's official VOC list says "potted plant" (the dataset's says "pottedplant"): evaluation embeds the
    model's own names; a model whose classes differ keeps the dataset's names."""
    import importlib
    from types import SimpleNamespace

    from zsseg_rt.vocabulary import load_class_names

    ev = importlib.import_module("zsseg_rt.eval.evaluate")  # the module (the package exports the function)

    voc = load_class_names("voc20")
    model = SimpleNamespace(config=load_config_for("zegformer_tiny_test"))
    assert "potted plant" in model.config.class_names and "pottedplant" in voc
    assert ev.own_spelling("torch", model, voc) == list(model.config.class_names)
    bundle = SimpleNamespace(meta=SimpleNamespace(training_class_names=list(model.config.class_names)))
    assert ev.own_spelling("bundle", bundle, voc)[15] == "potted plant"
    other = SimpleNamespace(config=SimpleNamespace(class_names=["cat", "dog"]))
    assert ev.own_spelling("torch", other, voc) == voc
    zegclip = SimpleNamespace(config=load_config_for("zegclip_tiny_test"))
    assert ev.own_spelling("torch", zegclip, voc) == voc  # ZegCLIP's official list is the dataset's

    # through evaluate() on the VOC sample photos: the text embeddings are computed from the model's names
    import zsseg_rt.models.zegformer.predict as predict_module
    from zsseg_rt.assets import SAMPLES_DIR
    from zsseg_rt.data import build_dataset

    torch.manual_seed(0)
    net = create_model("zegformer_tiny_test").eval()
    embedded = []
    original = net.text_embeddings
    monkeypatch.setattr(net, "text_embeddings", lambda names, *a: embedded.append(list(names)) or original(names, *a))
    calls = []

    def fake_predict(model, rgb, names, **kw):
        calls.append(list(names))
        return np.zeros(rgb.shape[:2], np.int64), None

    monkeypatch.setattr(predict_module, "predict_zegformer", fake_predict)
    data = build_dataset({"type": "voc", "root": str(SAMPLES_DIR), "split": "val"})
    evaluate(net, data, limit=1, progress=False)
    assert embedded[0][15] == "potted plant" and calls[0][15] == "potted plant"


def load_config_for(name):
    from zsseg_rt.models import load_config

    return load_config(name)
