"""ZeroSeg evaluation protocol on the bundled VOC sample images: background kept as class 0, the background
threshold applied, mIoU from the confusion matrix matching an independent count."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

import zsseg_rt
from zsseg_rt.data import build_dataset
from zsseg_rt.models import create_model
from zsseg_rt.models.zeroseg.evaluate import PROTOCOL, evaluate_zeroseg, protocol_threshold, with_background

SAMPLES = Path(zsseg_rt.__file__).parent / "assets" / "samples"


def test_all_background_prediction_scores_background_iou_only():
    torch.manual_seed(0)
    # without GroupViT's clamp a threshold above 1 makes every segment background
    model = create_model("zeroseg_tiny_test", short_side=64, clamp_background_threshold=False)
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
    assert PROTOCOL == {"voc": ("voc", 21), "context59": ("context", 60), "coco_object": ("coco_object", 81)}
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


def test_background_split_accepts_the_last_class():
    """Raw VOC labels go up to 20 (tvmonitor): the background-kept copy has 21 classes, so label 20 is valid
    (reading raw labels against the 20-class split would refuse it)."""
    from zsseg_rt.data.labels import check_label_range

    data = build_dataset({"type": "voc", "root": str(SAMPLES), "split": "val"})
    bg = with_background(data)
    assert bg.num_classes == 21 and bg.class_names[0] == "background" and bg.class_names[1:] == data.class_names
    assert check_label_range(np.array([[0, 20, 255]], np.uint8), bg.num_classes) == 0
    assert not bg.reduce_zero_label and data.reduce_zero_label and data.num_classes == 20


def test_protocol_thresholds_by_dataset_name():
    assert protocol_threshold("voc_val") == 0.95 and protocol_threshold("context59_val") == 0.05
    assert protocol_threshold("coco_object_val2017") == 0.35
    assert protocol_threshold("context59_val", "groupvit") == 0.35
    assert protocol_threshold("coco_object_val2017", "groupvit") == 0.95
    assert protocol_threshold("ade150_validation") is None
