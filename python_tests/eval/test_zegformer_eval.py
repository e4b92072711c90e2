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
