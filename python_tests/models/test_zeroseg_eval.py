"""ZeroSeg evaluation protocol on the bundled VOC sample images: background kept as class 0, the background
threshold applied, mIoU from the confusion matrix matching an independent count."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

import zsseg_rt
from zsseg_rt.data import build_dataset
from zsseg_rt.models import create_model
from zsseg_rt.models.zeroseg.evaluate import PROTOCOL, evaluate_zeroseg

SAMPLES = Path(zsseg_rt.__file__).parent / "assets" / "samples"


def test_all_background_prediction_scores_background_iou_only():
    torch.manual_seed(0)
    model = create_model("zeroseg_tiny_test", short_side=64)
    data = build_dataset({"type": "voc", "root": str(SAMPLES), "split": "val"})
    assert data.reduce_zero_label  # the segmentation datasets drop background; the protocol keeps it
    text = torch.randn(20, model.config.embed_dim)
    res = evaluate_zeroseg(model, text, data, background_threshold=1.01, progress=False)  # nothing passes
    bg = valid = 0
    for i in range(len(data)):
        raw = _raw_label(data, i)
        bg += int((raw == 0).sum())
        valid += int((raw != 255).sum())
    assert len(res["IoU"]) == 21 and res["num_images"] == len(data) == 4
    assert abs(res["IoU"][0] - bg / valid) < 1e-9
    present = [c for c in range(1, 21) if any((_raw_label(data, i) == c).any() for i in range(4))]
    assert all(res["IoU"][c] == 0.0 for c in present)
    assert abs(res["mIoU"] - 100 * bg / valid / (1 + len(present))) < 1e-6
    assert data.reduce_zero_label  # the caller's dataset is left as it was


def test_protocol_and_normal_run():
    assert PROTOCOL == {"voc": ("voc", 21), "context59": ("context", 60)}
    torch.manual_seed(0)
    model = create_model("zeroseg_tiny_test", short_side=64)
    data = build_dataset({"type": "voc", "root": str(SAMPLES), "split": "val"})
    res = evaluate_zeroseg(model, torch.randn(20, model.config.embed_dim), data, 0.0, limit=2, progress=False)
    assert res["num_images"] == 2 and 0.0 <= res["mIoU"] <= 100.0 and res["threshold"] == 0.0


def _raw(data):
    import copy

    d = copy.copy(data)
    d.reduce_zero_label = False
    return d


def _raw_label(data, i) -> np.ndarray:
    return _raw(data).load(i)[1]
