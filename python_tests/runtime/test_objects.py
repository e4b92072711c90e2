"""Objects for robots (issue 81, items 1 and 3): ``find_objects`` / ``Result.objects()`` against a reference computed
here independently (``scipy.ndimage.label`` with the 8-connectivity structure, per class, on hand-made label maps),
and every instance mask decoded by pycocotools equal to its region.

Controls (each comparison can fail): OpenCV run with 4-connectivity, a box said as [y, x, w, h], the order without
the area, the cap without ``dropped`` and an RLE in row-major order each make ``_compare`` raise (the last tests)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from objects_reference import reference

pycocotools_mask = pytest.importorskip("pycocotools.mask", reason="pycocotools decodes the masks (requirements.txt)")

NAMES = ["floor", "door", "person", "chair"]


def _compare(labels, names=NAMES, scores=None, unknown_id=None, min_area=0.0, cap=100):
    """``find_objects`` equal to :func:`reference`, every field, and pycocotools' decoding of each RLE equal to its
    region; returns the objects."""
    from zsseg_rt.runtime.objects import find_objects

    labels = np.asarray(labels)
    got = find_objects(labels, names, scores=scores, unknown_id=unknown_id, min_area=min_area, max_objects=cap)
    smallest = max(1, math.ceil(min_area * labels.size - 1e-9))
    want, dropped = reference(labels, names, scores, unknown_id, smallest, cap)
    assert got.dropped == dropped, "dropped"
    assert len(got) == len(want), f"{len(got)} objects, the reference finds {len(want)}"
    for item, expected in zip(got, want):
        assert (item.class_id, item.name) == (expected["class_id"], expected["name"]), "class (or the order)"
        assert item.area == expected["area"], "area (or the order)"
        assert item.box == expected["box"], "box [x, y, w, h]"
        assert item.centroid == pytest.approx(expected["centroid"], abs=1e-9), "centroid (x, y)"
        assert item.score == pytest.approx(expected["score"], rel=1e-6, abs=1e-7), "score"
        assert item.rle["size"] == list(labels.shape)
        decoded = pycocotools_mask.decode({"size": item.rle["size"], "counts": item.rle["counts"].encode("ascii")})
        assert np.array_equal(decoded.astype(bool), expected["mask"]), "the RLE mask is not the region"
        assert np.array_equal(item.mask().astype(bool), expected["mask"])
        assert (
            int(pycocotools_mask.area({"size": item.rle["size"], "counts": item.rle["counts"].encode()})) == item.area
        )
        assert [int(v) for v in pycocotools_mask.toBbox({"size": item.rle["size"], "counts": item.rle["counts"]})] == [
            *item.box
        ]
    return got


# ---- hand-made maps --------------------------------------------------------------------------------------------
def touching_map():
    """Regions of different classes that touch (an edge, a corner), one class's two regions touching only at a
    corner (one region in 8-connectivity, two in 4), and a region of one class split by another."""
    labels = np.zeros((9, 13), np.int32)
    labels[1:4, 2:6] = 1  # a door beside a person (shared edge)
    labels[1:4, 6:9] = 2
    labels[4:6, 9:11] = 2  # the person's second block: touches the first only at the corner (3, 8)-(4, 9)
    labels[6:9, 0:13] = 3  # a chair across the bottom
    labels[7, 5] = 1  # a door pixel inside the chair: splits nothing (8-connected chair around it)
    labels[6:9, 6] = 2  # a person column cutting the chair in two
    return labels


def hole_map():
    """A ring (door) with a hole of another class (person) inside, and a ring whose hole is the floor."""
    labels = np.zeros((12, 10), np.int32)
    labels[1:8, 1:8] = 1
    labels[3:6, 3:6] = 2  # the hole: a person
    labels[9:12, 6:10] = 3
    labels[10, 7:9] = 0  # the chair's hole: floor, which joins nothing else (the chair around it)
    return labels


def border_map():
    """Regions on every border and in every corner, one-pixel regions, a one-pixel-wide line."""
    labels = np.full((7, 11), 3, np.int32)
    labels[0, 0] = 1  # corners
    labels[0, 10] = 1
    labels[6, 0] = 2
    labels[6, 10] = 2
    labels[3, 0] = 1  # on the left and right borders
    labels[3, 10] = 2
    labels[0, 4:7] = 2  # on the top border
    labels[6, 3:8] = 1  # on the bottom border
    labels[:, 5] = 0  # a one-pixel column from top to bottom
    labels[2, 2] = 2  # a one-pixel region inside
    return labels


def far_map():
    """Classes that live away from the top-left tiles (the implementation reads a class's 16 px tiles only): their
    regions at offsets, across tile borders, one touching the bottom-right corner."""
    labels = np.zeros((70, 90), np.int32)
    labels[33:50, 47:70] = 1  # a door across tile borders, far from the origin
    labels[40:44, 52:58] = 2  # a person inside it (a hole)
    labels[60:70, 75:90] = 3  # a chair in the bottom-right corner
    labels[61, 20] = 3  # and a one-pixel chair far to its left
    labels[17, 17] = 2  # a one-pixel person just past the first tile
    return labels


@pytest.mark.parametrize(
    "labels", [touching_map(), hole_map(), border_map(), far_map()], ids=["touching", "hole", "border", "far"]
)
def test_objects_equal_the_scipy_reference(labels):
    scores = np.random.default_rng(0).random(labels.shape).astype(np.float32)
    got = _compare(labels, scores=scores)
    assert got.dropped == 0


def test_touching_regions_and_the_corner_rule():
    got = _compare(touching_map())
    persons = [item for item in got if item.name == "person"]
    # the person's two blocks touch at a corner: one region (8-connectivity); the column below is a second one
    assert [item.area for item in persons] == [9 + 4, 3]
    chairs = [item for item in got if item.name == "chair"]
    assert [item.box for item in chairs] == [(7, 6, 6, 3), (0, 6, 6, 3)]  # cut in two by the column; largest first
    assert [item.area for item in chairs] == [18, 17]  # the door pixel inside the left one


def test_a_region_with_a_hole():
    got = _compare(hole_map())
    (door,) = [item for item in got if item.name == "door"]
    assert door.area == 49 - 9 and door.box == (1, 1, 7, 7)
    assert door.centroid == pytest.approx((4.0, 4.0))  # in the hole (a ring's centroid is not in it)
    assert door.mask()[4, 4] == 0 and door.mask()[1, 1] == 1
    floors = [item for item in got if item.name == "floor"]
    assert [item.area for item in floors] == [120 - 49 - 12, 2]  # the big floor, the chair's hole


def test_one_pixel_regions_on_the_border():
    got = _compare(border_map())
    corners = {(item.box, item.area) for item in got if item.area == 1}
    assert ((10, 0, 1, 1), 1) in corners and ((10, 6, 1, 1), 1) in corners and ((2, 2, 1, 1), 1) in corners
    (column,) = [item for item in got if item.name == "floor"]
    assert column.box == (5, 0, 1, 7)


def test_unknown_pixels_give_no_objects():
    from zsseg_rt.runtime.objects import find_objects

    labels = touching_map()
    labels[0, :] = 255  # a row of unknown pixels (reserved id 255)
    labels[4:6, 0:3] = 255
    got = _compare(labels, unknown_id=255)
    assert all(item.class_id < len(NAMES) for item in got)
    known = labels.copy()
    known[known == 255] = 0
    assert sum(item.area for item in got) == int(np.sum(labels != 255))  # every other pixel is in one object
    with pytest.raises(ValueError, match="label 255 is no class of the 4"):
        find_objects(labels, NAMES)  # the unknown id off: 255 is no label


def test_min_area_is_a_fraction_of_the_frame_rounded_up():
    labels = np.zeros((10, 10), np.int32)  # 100 pixels: min_area 0.05 is 5 pixels
    labels[0, 0:4] = 1  # 4 pixels: dropped by 0.05
    labels[2, 0:5] = 1  # 5 pixels: kept
    labels[4, 0:6] = 2  # 6 pixels: kept
    labels[9, 9] = 3  # 1 pixel
    got = _compare(labels, min_area=0.05)
    assert [(item.name, item.area) for item in got] == [("floor", 84), ("door", 5), ("person", 6)]
    assert got.dropped == 0  # regions under min_area are no objects, not dropped ones
    assert [item.area for item in _compare(labels, min_area=0.041)] == [84, 5, 6]  # 4.1 -> 5 pixels
    assert [item.area for item in _compare(labels, min_area=0.04)] == [84, 5, 4, 6]
    assert len(_compare(labels, min_area=0.0)) == 5  # 0: every region, the one-pixel one too
    assert len(_compare(labels, min_area=1.0)) == 0


def test_the_default_min_area_is_the_rows():
    from zsseg_rt.options import ENGINE_OPTIONS
    from zsseg_rt.runtime.objects import DEFAULT_MAX_OBJECTS, DEFAULT_MIN_AREA, find_objects, min_pixels

    assert DEFAULT_MIN_AREA == ENGINE_OPTIONS["object_min_area"].default == 0.001
    assert DEFAULT_MAX_OBJECTS == ENGINE_OPTIONS["max_objects"].default == 100
    assert min_pixels(0.001, 768 * 576) == 443 and min_pixels(0.001, 640 * 480) == 308  # as the row's help says
    labels = np.zeros((100, 100), np.int32)
    labels[0:2, 0:5] = 1  # 10 pixels: one more than 0.001 of 10000 (ceil(10) = 10)
    labels[50:53, 50:53] = 2  # 9 pixels: fewer
    assert [item.name for item in find_objects(labels, NAMES)] == ["floor", "door"]


def test_the_cap_keeps_the_first_and_counts_the_rest():
    rng = np.random.default_rng(3)
    labels = np.zeros((20, 24), np.int32)
    for row in range(0, 20, 3):  # many separate blocks of classes 1..3, of several sizes
        for column in range(0, 24, 4):
            width = 1 + int(rng.integers(0, 3))
            labels[row : row + 2, column : column + width] = 1 + int(rng.integers(0, 3))
    everything = _compare(labels)
    assert len(everything) > 30
    for cap in (1, 7, len(everything) - 1, len(everything), len(everything) + 5):
        got = _compare(labels, cap=cap)
        assert list(got) == list(everything)[:cap]
        assert got.dropped == max(0, len(everything) - cap)


def test_the_order_class_then_area_then_raster():
    labels = np.zeros((6, 12), np.int32)
    labels[0, 8:10] = 2  # person, 2 pixels, top right: first of the two equal ones in raster order
    labels[4, 1:3] = 2  # person, 2 pixels, lower left
    labels[2, 4:9] = 2  # person, 5 pixels
    labels[5, 11] = 1  # door, 1 pixel
    got = _compare(labels)
    assert [(item.name, item.area, item.box[:2]) for item in got] == [
        ("floor", 6 * 12 - 10, (0, 0)),
        ("door", 1, (11, 5)),
        ("person", 5, (4, 2)),
        ("person", 2, (8, 0)),
        ("person", 2, (1, 4)),
    ]


def test_equal_areas_go_by_their_first_pixel_not_their_box():
    """Two door regions of 8 pixels: a diagonal whose box starts at column 2 but whose first pixel (raster order) is
    (0, 9), and a block whose box starts at column 3 and first pixel at (0, 3): the block comes first."""
    labels = np.zeros((8, 12), np.int32)
    for step in range(8):
        labels[step, 9 - step] = 1
    labels[0:2, 3:6] = 1
    labels[2, 3:5] = 1
    got = _compare(labels)
    assert [(item.box, item.area) for item in got if item.name == "door"] == [((3, 0, 3, 3), 8), ((2, 0, 8, 8), 8)]


def nested_map():
    """A class read in crops of groups of 16 px tiles: a door shaped like an L (the top rows and the left columns)
    whose tiles' box holds the tiles of two other door regions apart from it and from each other; two person
    regions apart, each in one group of tiles."""
    labels = np.zeros((100, 90), np.int32)
    labels[0:5, :] = 1  # the L: its tiles' box is the whole map
    labels[:, 0:5] = 1
    labels[70:80, 70:82] = 1  # a door region inside the L's box (tiles apart from the L's)
    labels[36:40, 36:48] = 1  # another, apart from both
    labels[90:100, 50:60] = 2
    labels[20:25, 20:24] = 2
    return labels


def test_a_class_read_in_crops_of_its_tile_groups():
    """Each door region once (the L's crop masked to its own tiles), with every field equal to the reference."""
    got = _compare(nested_map(), scores=np.random.default_rng(1).random((100, 90)).astype(np.float32))
    assert [item.area for item in got if item.name == "door"] == [5 * 90 + 5 * 95, 120, 48]


def test_control_an_unmasked_group_crop_fails(monkeypatch):
    """The control: the L's crop not masked to its tiles finds the regions inside its box twice."""
    from zsseg_rt.runtime import objects

    real = objects._groups
    monkeypatch.setattr(objects, "_groups", lambda *args: (crop[:-1] + (None,) for crop in real(*args)))
    with pytest.raises(AssertionError):
        _compare(nested_map())


@pytest.mark.parametrize("seed", range(8))
def test_random_blocky_maps_equal_the_reference(seed):
    """Maps of blocks and single pixels of 4 classes and unknown pixels (nearest-neighbour upsampled noise)."""
    import cv2

    rng = np.random.default_rng(seed)
    small = rng.integers(0, 5, size=(int(rng.integers(3, 9)), int(rng.integers(3, 9)))).astype(np.uint8)
    height, width = int(rng.integers(8, 40 + 20 * seed)), int(rng.integers(8, 40 + 20 * seed))  # many 16 px tiles
    labels = cv2.resize(small, (width, height), interpolation=cv2.INTER_NEAREST).astype(np.int32)
    speckle = rng.random(labels.shape) < 0.05
    labels[speckle] = rng.integers(0, 5, size=int(speckle.sum()))
    labels[labels == 4] = 255
    scores = rng.normal(size=labels.shape).astype(np.float32)
    _compare(labels, scores=scores, unknown_id=255, min_area=float(rng.choice([0.0, 0.004, 0.02])), cap=25)


def test_a_uint8_map_gives_the_objects_of_its_int32_copy():
    """A uint8 map (as ``Result.labels`` are) is read as it is given (OpenCV compares uint8 pixels): the same
    objects as its int32 copy, and the reference's, unknown pixels (255) and several 16 px tiles included."""
    from zsseg_rt.runtime.objects import find_objects

    rng = np.random.default_rng(11)
    labels = np.kron(rng.integers(0, 4, size=(6, 7)), np.ones((9, 11), np.int64)).astype(np.uint8)
    labels[rng.random(labels.shape) < 0.03] = 255
    got = _compare(labels, unknown_id=255, min_area=0.001)
    assert list(got) == list(find_objects(labels.astype(np.int32), NAMES, unknown_id=255, min_area=0.001))


def test_result_objects_reads_its_scores_unknown_and_limits():
    from zsseg_rt.runtime.result import Result

    labels = touching_map()
    scores = np.linspace(0, 1, labels.size, dtype=np.float32).reshape(labels.shape)
    result = Result(labels.copy(), scores, list(NAMES), unknown_below=0.5)
    result.labels[0, :] = result.unknown_id
    found = result.objects(min_area=0.0)
    assert list(found) == list(_compare(result.labels, scores=scores, unknown_id=255))
    assert list(result.objects()) == list(found)  # the defaults: 0.001 of 117 pixels is 1 pixel; at most 100
    result.max_objects = 2
    assert len(result.objects(min_area=0.0)) == 2 and result.objects(min_area=0.0).dropped == len(found) - 2
    result.object_min_area = 0.1  # 12 pixels
    assert [item.area for item in result.objects()] == [item.area for item in found if item.area >= 12][:2]
    result.frame_objects = found  # found by the stream (--objects): what objects() gives without arguments
    assert result.objects() is found


def test_scores_nan_and_missing():
    from zsseg_rt.runtime.objects import find_objects

    labels = np.zeros((4, 4), np.int32)
    labels[0:2, 0:2] = 1
    scores = np.full((4, 4), 0.25, np.float32)
    scores[0, 0] = np.nan  # left out of the door's mean
    scores[2:, :] = np.nan
    scores[:2, 2:] = np.nan  # the floor: every score NaN -> 0.0
    (floor, door) = find_objects(labels, NAMES, scores=scores, min_area=0.0)
    assert door.score == 0.25 and floor.score == 0.0
    assert all(item.score == 1.0 for item in find_objects(labels, NAMES, min_area=0.0))  # no scores: 1.0
    with pytest.raises(ValueError, match=r"scores: expected the labels' shape \[4, 4\]"):
        find_objects(labels, NAMES, scores=np.zeros((2, 2), np.float32))


@pytest.mark.parametrize(
    "keywords, message",
    [
        ({"min_area": 50}, r"min_area: expected a fraction of the frame's pixels in \[0, 1\], got 50 \(50 pixels"),
        ({"min_area": float("nan")}, "min_area: expected a fraction"),
        ({"min_area": True}, "min_area: expected a fraction"),
        ({"max_objects": 0}, "max_objects: expected a whole number >= 1, got 0"),
        ({"max_objects": 2.5}, "max_objects: expected a whole number >= 1"),
    ],
)
def test_bad_limits_are_refused_in_one_line(keywords, message):
    from zsseg_rt.runtime.objects import find_objects

    with pytest.raises(ValueError, match=message):
        find_objects(np.zeros((4, 4), np.int32), NAMES, **keywords)


def test_bad_maps_are_refused_in_one_line():
    from zsseg_rt.runtime.objects import find_objects

    with pytest.raises(ValueError, match=r"labels: expected an \[H, W\] map of integer label ids, got float32"):
        find_objects(np.zeros((4, 4), np.float32), NAMES)
    with pytest.raises(ValueError, match="label -1 is no class"):
        find_objects(np.full((4, 4), -1, np.int32), NAMES)
    with pytest.raises(ValueError, match="label 4 is no class of the 4"):
        find_objects(np.full((4, 4), 4, np.int32), NAMES, unknown_id=255)
    assert len(find_objects(np.zeros((0, 5), np.int32), NAMES)) == 0


def test_the_vectorised_rle_string_is_pycocotools():
    from zsseg_rt.runtime.coco import decode_rle, rle_counts, rle_counts_array
    from zsseg_rt.runtime.rle import rle_counts_arrays

    rng = np.random.default_rng(5)
    for _ in range(200):
        runs = rng.integers(0, 3, size=int(rng.integers(1, 30))) * rng.integers(1, 200000)
        assert rle_counts_array(runs) == rle_counts(list(runs))
    for _ in range(50):  # several arrays encoded together (a frame's objects): each one's string, as if alone
        arrays = [rng.integers(0, 3, size=int(rng.integers(0, 9))) * rng.integers(1, 2**30) for _ in range(4)]
        assert rle_counts_arrays(arrays) == [rle_counts(list(runs)) for runs in arrays]
    for _ in range(50):
        mask = rng.random((int(rng.integers(1, 20)), int(rng.integers(1, 20)))) < rng.random()
        encoded = pycocotools_mask.encode(np.asfortranarray(mask.astype(np.uint8)))
        assert np.array_equal(decode_rle({"size": encoded["size"], "counts": encoded["counts"].decode()}), mask)


# ---- controls: each comparison fails on a mutant -----------------------------------------------------------------
def test_control_four_connectivity_fails(monkeypatch):
    import cv2

    real = cv2.connectedComponents  # what find_objects labels each class's pixels with
    monkeypatch.setattr(
        cv2, "connectedComponents", lambda image, connectivity=8, ltype=None: real(image, connectivity=4, ltype=ltype)
    )
    with pytest.raises(AssertionError):
        _compare(touching_map())


@pytest.mark.parametrize("mutant", ["yx_box", "no_area_order", "no_dropped", "row_major_rle"])
def test_control_mutants_fail(monkeypatch, mutant):
    import dataclasses

    from zsseg_rt.runtime import objects

    real = objects.find_objects

    def mutated(*args, **kwargs):
        found = real(*args, **kwargs)
        items = list(found.objects)
        if mutant == "yx_box":
            items = [dataclasses.replace(o, box=(o.box[1], o.box[0], o.box[2], o.box[3])) for o in items]
        elif mutant == "no_area_order":
            items.sort(key=lambda o: (o.class_id, o.box[1], o.box[0]))
        elif mutant == "row_major_rle":
            items = [dataclasses.replace(o, rle=_row_major(o.mask())) for o in items]
        else:
            return objects.FrameObjects(tuple(items), 0)
        return objects.FrameObjects(tuple(items), found.dropped)

    monkeypatch.setattr(objects, "find_objects", mutated)
    labels = touching_map() if mutant != "no_dropped" else border_map()
    with pytest.raises(AssertionError):
        _compare(labels, cap=3 if mutant == "no_dropped" else 100)


def _row_major(mask):
    from zsseg_rt.runtime.coco import encode_rle

    return {"size": list(mask.shape), "counts": encode_rle(np.ascontiguousarray(mask.T))["counts"]}  # row-major runs


def test_without_scipy_objects_are_refused_in_one_line(monkeypatch):
    """SciPy is the `objects` extra (part of `runtime`): where it is missing, Result.objects() says which extra
    installs it instead of a bare ModuleNotFoundError (the runtime-only CI venv had no SciPy)."""
    import sys

    from zsseg_rt.runtime.objects import find_objects

    labels = np.zeros((32, 32), np.int32)
    labels[4:20, 4:20] = 1
    assert len(find_objects(labels, ["a", "b"], min_area=0.01)) == 2  # the control: with SciPy
    monkeypatch.setitem(sys.modules, "scipy", None)
    monkeypatch.setitem(sys.modules, "scipy.ndimage", None)
    with pytest.raises(ImportError, match=r"needs SciPy.*zsseg_rt\[objects\]"):
        find_objects(labels, ["a", "b"], min_area=0.01)
