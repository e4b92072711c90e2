"""Label maps as COCO masks (``zsseg_rt.runtime.coco``; issue 75 item 5): the RLE strings are pycocotools' own, and
a document read back by ``pycocotools.coco.COCO`` and decoded gives every label map back, the unknown label included."""

from __future__ import annotations

import json

import numpy as np
import pytest

mask_api = pytest.importorskip("pycocotools.mask")
coco_api = pytest.importorskip("pycocotools.coco")

from zsseg_rt.runtime.coco import CocoMasks, encode_rle  # noqa: E402
from zsseg_rt.runtime.result import UNKNOWN_NAME  # noqa: E402


def _theirs(mask):
    encoded = mask_api.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": list(encoded["size"]), "counts": encoded["counts"].decode()}


def test_the_rle_of_every_kind_of_mask_is_pycocotools_own():
    """Empty, full, starting with a pixel in it, one pixel, long runs (several 5-bit groups), runs shorter than the
    one two before (negative differences), random masks of odd sizes."""
    rng = np.random.default_rng(0)
    masks = [
        np.zeros((4, 5), bool),
        np.ones((4, 5), bool),
        np.eye(6, 7, dtype=bool),
        np.pad(np.ones((1, 1), bool), ((3, 0), (0, 2))),
        np.pad(np.ones((40, 70), bool), ((5, 300), (9, 1))),
        np.tile(np.array([[1] * 50 + [0] * 3 + [1] * 2 + [0] * 90], bool).T, (1, 3)),
    ]
    masks += [rng.random((rng.integers(1, 60), rng.integers(1, 60))) < rng.random() for _ in range(40)]
    for mask in masks:
        assert encode_rle(mask) == _theirs(mask)
    with pytest.raises(ValueError, match=r"a mask is \[height, width\], got shape \[2, 2, 2\]"):
        encode_rle(np.zeros((2, 2, 2)))


def test_pycocotools_reads_the_document_back_equal_to_the_label_maps(tmp_path):
    """Two images of a vocabulary with the unknown label on: COCO() loads the file, each image's annotations decoded
    and painted with their category ids give its label map; areas and boxes are pycocotools' own; the categories
    are the classes by label id and "unknown" at 255."""
    rng = np.random.default_rng(1)
    names = ["cat", "dog", "sky"]
    maps = [rng.integers(0, 3, (30, 41)).astype(np.int32), np.full((17, 9), 2, np.int32)]
    maps[0][rng.random((30, 41)) < 0.2] = 255
    masks = CocoMasks()
    for index, labels in enumerate(maps):
        masks.add(labels, names, f"image{index}.png", unknown=True)
    path = tmp_path / "masks.json"
    path.write_text(json.dumps(masks.document()))
    coco = coco_api.COCO(str(path))
    assert [(c["id"], c["name"]) for c in coco.loadCats(coco.getCatIds())] == [
        (0, "cat"),
        (1, "dog"),
        (2, "sky"),
        (255, UNKNOWN_NAME),
    ]
    for image_id, labels in zip(sorted(coco.getImgIds()), maps):
        info = coco.loadImgs(image_id)[0]
        assert (info["height"], info["width"]) == labels.shape
        painted = np.full(labels.shape, -1, np.int32)
        for annotation in coco.loadAnns(coco.getAnnIds(imgIds=image_id)):
            decoded = coco.annToMask(annotation).astype(bool)
            assert not (painted[decoded] >= 0).any(), "one annotation per pixel"
            painted[decoded] = annotation["category_id"]
            rle = annotation["segmentation"]
            assert annotation["area"] == int(mask_api.area(rle))
            assert annotation["bbox"] == [int(v) for v in mask_api.toBbox(rle)]
        np.testing.assert_array_equal(painted, labels)


def test_one_file_holds_one_vocabulary_and_only_its_labels():
    masks = CocoMasks()
    masks.add(np.zeros((2, 2), np.int32), ["a", "b"], "x")
    with pytest.raises(ValueError, match="--save-json holds one vocabulary"):
        masks.add(np.zeros((2, 2), np.int32), ["a", "c"], "y")
    with pytest.raises(ValueError, match="label 255 of 'z' is no class of the 2"):
        masks.add(np.full((2, 2), 255, np.int32), ["a", "b"], "z")  # the threshold off: 255 is no label
    assert [c["name"] for c in masks.categories()] == ["a", "b"]  # no unknown category when it was off
