"""COCO-Object (GroupViT / ZeroSeg protocol) on tiny synthetic trees in the real COCO-Stuff 164k layout: raw
stuffthingmaps converted on the fly, or GroupViT's converted ``*_instanceTrainIds.png`` read as stored."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from zsseg_rt.data import build_dataset
from zsseg_rt.data.datasets import COCO_THING_IDS, coco_object_lut
from zsseg_rt.models.zeroseg.evaluate import with_background


def _tree(root, labels, suffix=".png"):
    (root / "images" / "val2017").mkdir(parents=True)
    (root / "annotations" / "val2017").mkdir(parents=True)
    for i, lab in enumerate(labels):
        stem = f"{i:012d}"
        Image.fromarray(np.full(lab.shape + (3,), 90 + i, np.uint8)).save(root / "images" / "val2017" / f"{stem}.jpg")
        Image.fromarray(lab).save(root / "annotations" / "val2017" / f"{stem}{suffix}")
    return root


def test_thing_ids_are_the_80_coco_categories():
    assert len(COCO_THING_IDS) == 80 and len(set(COCO_THING_IDS)) == 80
    unused = sorted(set(range(1, 91)) - set(COCO_THING_IDS))
    assert unused == [12, 26, 29, 30, 45, 66, 68, 69, 71, 83]  # COCO's 10 unused thing ids


def test_raw_stuffthingmaps_are_converted(tmp_path):
    # 0-based raw values: 0 person, 12 stop sign (id 13), 89 toothbrush (id 90), 100 stuff, 255 unlabeled
    raw = np.array([[0, 12, 89], [100, 255, 181]], np.uint8)
    data = build_dataset({"type": "coco_object", "root": str(_tree(tmp_path, [raw])), "split": "val"})
    assert data.num_classes == 80 and data.class_names[0] == "person" and data.class_names[11] == "stop sign"
    assert data.name == "coco_object_val2017" and data.reduce_zero_label
    _, label = data.load(0)
    assert label.tolist() == [[0, 11, 79], [255, 255, 255]]  # background reduced to ignore, things 0..79
    _, raw_label = with_background(data).load(0)  # ZeroSeg's protocol keeps background as class 0
    assert raw_label.tolist() == [[1, 12, 80], [0, 0, 0]]


def test_converted_instance_train_ids_are_read_as_stored(tmp_path):
    conv = np.array([[0, 1, 80], [5, 0, 0]], np.uint8)
    data = build_dataset({"type": "coco_object", "root": str(_tree(tmp_path, [conv], "_instanceTrainIds.png"))})
    _, label = with_background(data).load(0)
    assert label.tolist() == conv.tolist()


def test_lut_matches_the_category_order():
    lut = coco_object_lut()
    for rank, cat in enumerate(COCO_THING_IDS):
        assert lut[cat - 1] == rank + 1
    assert lut[255] == 0 and (lut[91:182] == 0).all() and lut[11] == 255  # id 12 is unused


def test_missing_layout_is_named(tmp_path):
    with pytest.raises(Exception, match="COCO-Object"):
        build_dataset({"type": "coco_object", "root": str(tmp_path)})
