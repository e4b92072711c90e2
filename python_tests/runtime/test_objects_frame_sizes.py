"""Objects on any frame size (issue 87, M3): ``find_objects`` crashed in ``cv2.compare`` ("Sizes of input arguments do
not match") on a one-pixel crop: a 1x1 image, a one-pixel region in the bottom-right corner of a 17x17 frame (default
``min_area``) or of a 1921x1041 frame (``min_area=0``), whose sides are 16k+1 (the last 16 px tile one pixel wide).
``zsseg segment --objects one.png`` stopped the run with OpenCV's message.

Every map here is compared with the objects computed independently (``objects_reference``: ``scipy.ndimage.label``
with 8-connectivity, per class): the report's probes, then hypothesis over frame sizes (1 to 70 px a side, 16k+1
among them) and region positions (corners and borders included)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from objects_reference import min_pixels, reference

cv2 = pytest.importorskip("cv2")

NAMES = ["floor", "door", "person"]


def _equal_to_reference(labels, min_area):
    """``find_objects`` of ``labels`` equal to the reference: class, area, box, centroid, mask of every object, in
    order; returns the objects."""
    from zsseg_rt.runtime.objects import find_objects

    got = find_objects(labels, NAMES, min_area=min_area, max_objects=10_000)
    want, dropped = reference(labels, NAMES, None, None, min_pixels(min_area, labels.size), 10_000)
    assert got.dropped == dropped == 0
    assert [(o.class_id, o.area, o.box) for o in got] == [(w["class_id"], w["area"], w["box"]) for w in want]
    for item, expected in zip(got, want):
        assert item.centroid == pytest.approx(expected["centroid"], abs=1e-9)
        assert np.array_equal(item.mask().astype(bool), expected["mask"])
    return got


@pytest.mark.parametrize("dtype", [np.uint8, np.int32])
def test_the_reports_probes(dtype):
    """G43: a 1x1 image; 17x17 with its bottom-right pixel another class (default min_area); 1921x1041 likewise
    with min_area=0: each object is there, the corner pixel's box (x, y, 1, 1)."""
    from zsseg_rt.runtime.objects import DEFAULT_MIN_AREA

    for class_id in (0, 2):
        (only,) = _equal_to_reference(np.full((1, 1), class_id, dtype), DEFAULT_MIN_AREA)
        assert (only.name, only.box, only.area) == (NAMES[class_id], (0, 0, 1, 1), 1)
    for (height, width), min_area in (((17, 17), DEFAULT_MIN_AREA), ((1041, 1921), 0.0)):
        labels = np.zeros((height, width), dtype)
        labels[-1, -1] = 1
        got = _equal_to_reference(labels, min_area)
        assert [(o.name, o.box, o.area) for o in got] == [
            ("floor", (0, 0, width, height), height * width - 1),
            ("door", (width - 1, height - 1, 1, 1), 1),
        ]


# sides around the 16 px tiles: 1, 15-17, 31-33, 48, 49, and anything up to 70
SIDES = st.one_of(st.sampled_from([1, 2, 15, 16, 17, 31, 32, 33, 48, 49]), st.integers(1, 70))


@st.composite
def label_maps(draw):
    """A frame of a drawn size holding a background class, drawn rectangles (1x1 ones included) and single pixels
    of the classes, some pinned to the corners and the borders."""
    height, width = draw(SIDES), draw(SIDES)
    labels = np.full((height, width), draw(st.integers(0, 2)), np.int32)
    for _ in range(draw(st.integers(0, 6))):
        y, x = draw(st.integers(0, height - 1)), draw(st.integers(0, width - 1))
        h, w = draw(st.integers(1, height - y)), draw(st.integers(1, width - x))
        labels[y : y + h, x : x + w] = draw(st.integers(0, 2))
    corners = [(0, 0), (0, width - 1), (height - 1, 0), (height - 1, width - 1)]
    for y, x in draw(st.lists(st.sampled_from(corners), max_size=4)):
        labels[y, x] = draw(st.integers(0, 2))
    for _ in range(draw(st.integers(0, 4))):
        labels[draw(st.integers(0, height - 1)), draw(st.integers(0, width - 1))] = draw(st.integers(0, 2))
    return labels


@settings(max_examples=300, deadline=None)
@given(labels=label_maps(), min_area=st.sampled_from([0.0, 0.001, 0.01, 0.05]), as_uint8=st.booleans())
def test_any_frame_size_and_position_equals_the_reference(labels, min_area, as_uint8):
    _equal_to_reference(labels.astype(np.uint8) if as_uint8 else labels, min_area)


def test_segment_objects_on_a_one_pixel_image(tmp_path, tiny_bundle, capsys):
    """``zsseg segment one.png --objects --json --save-json``: exit 0, and the image's one object (its one pixel)
    in the printed objects and among the COCO instances (the run stopped with OpenCV's message before)."""
    from zsseg_rt import cli

    one = tmp_path / "one.png"
    cv2.imwrite(str(one), np.full((1, 1, 3), 128, np.uint8))
    masks = tmp_path / "masks.json"
    argv = [str(one), "--bundle", tiny_bundle, "--classes", "a,b", "--objects", "--json", "--save-json", str(masks)]
    assert cli.main(["segment", *argv, "-o", str(tmp_path / "out"), "--backend", "onnxruntime"]) == 0
    (printed,) = json.loads(capsys.readouterr().out)
    (item,) = printed["objects"]["objects"]
    assert (item["box"], item["area"]) == ([0, 0, 1, 1], 1) and item["name"] in ("a", "b")
    instances = [a for a in json.loads(masks.read_text())["annotations"] if a["iscrowd"] == 0]
    assert [(a["bbox"], a["area"]) for a in instances] == [([0, 0, 1, 1], 1)]
