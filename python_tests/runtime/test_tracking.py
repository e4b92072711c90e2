"""``zsseg_rt.ObjectTracker`` (issue 89): ids that keep an object's identity, judged by py-motmetrics on label-map
sequences with known identities (``benchmarks/tracking.py`` draws them), with the controls that must fail; the
tracker's own rules (ids never reused, ``track_max_missed``, a class's name, bad input)."""

from __future__ import annotations

import numpy as np
import pytest

import zsseg_rt
from zsseg_rt.runtime.objects import FrameObjects, find_objects
from zsseg_rt.runtime.rle import decode_rle
from zsseg_rt.runtime.tracking import DEFAULT_MAX_MISSED, ObjectTracker, crop_mask

pytest.importorskip("scipy")

NAMES = ["floor", "person", "box"]


def _frame(*rectangles, size=(60, 80)):
    """A label map of floor with each ``(class, x, y, w, h)`` drawn."""
    labels = np.zeros(size, np.uint8)
    for kind, x, y, w, h in rectangles:
        labels[y : y + h, x : x + w] = kind
    return labels


def _ids(tracker, *rectangles):
    """The track ids of the people and boxes of a frame, in the objects' order (the floor left out)."""
    found = tracker.update(find_objects(_frame(*rectangles), NAMES))
    return [item.track_id for item in found if item.class_id]


def test_the_tracker_is_public():
    assert zsseg_rt.ObjectTracker is ObjectTracker
    assert "ObjectTracker" in zsseg_rt.__all__


def test_crop_mask_is_the_decoded_mask_in_its_box():
    rng = np.random.default_rng(3)
    for _ in range(20):
        labels = (rng.random((37, 53)) < 0.35).astype(np.uint8) + (rng.random((37, 53)) < 0.2)
        for item in find_objects(labels, ["a", "b", "c"], min_area=0):
            x, y, w, h = item.box
            expected = decode_rle(item.rle)[y : y + h, x : x + w].astype(bool)
            assert np.array_equal(crop_mask(item.rle, item.box), expected)


def test_every_object_gets_an_id_and_the_frame_keeps_its_order_and_dropped():
    labels = _frame((1, 2, 2, 10, 10), (1, 40, 2, 10, 10), (2, 20, 30, 15, 15))
    found = find_objects(labels, NAMES, max_objects=3)
    tracked = ObjectTracker().update(found)
    assert isinstance(tracked, FrameObjects)
    assert tracked.dropped == found.dropped == 1
    assert [item.box for item in tracked] == [item.box for item in found]
    assert sorted(item.track_id for item in tracked) == [1, 2, 3]  # MOTChallenge's ids: positive
    assert [item.to_dict()["track_id"] for item in tracked] == [item.track_id for item in tracked]
    assert "track_id" not in found[0].to_dict()  # untracked objects' JSON is as before


def test_an_object_keeps_its_id_and_a_new_one_gets_a_new_id():
    tracker = ObjectTracker()
    first = _ids(tracker, (1, 5, 10, 10, 20))
    assert _ids(tracker, (1, 8, 10, 10, 20)) == first
    second = _ids(tracker, (1, 11, 10, 10, 20), (1, 60, 30, 10, 20))
    assert second[0] == first[0] and second[1] not in first


def test_the_overlapping_region_wins_over_a_nearer_gated_one_that_does_not_overlap():
    # two regions within the distance gate of one track: the one its mask overlaps keeps its id, though the other's
    # distance alone would cost less (a pair within the gate is matched by distance only when it has no rival)
    tracker = ObjectTracker()
    (first,) = _ids(tracker, (1, 20, 20, 10, 20))
    overlapping, apart = _ids(tracker, (1, 22, 20, 10, 20), (1, 33, 20, 10, 20))
    assert overlapping == first and apart != first


def test_ids_are_never_given_again_after_a_track_ended():
    tracker = ObjectTracker(max_missed=0)
    given = set()
    for step in range(6):  # the person appears every other frame: each time a new track (max_missed 0)
        ids = _ids(tracker, (1, 5, 10, 10, 20)) if step % 2 == 0 else _ids(tracker)
        assert not set(ids) & given
        given |= set(ids)
    assert len(given) == 3 and tracker.started == 4  # and the floor's one track


@pytest.mark.parametrize("missed", [1, 3, DEFAULT_MAX_MISSED])
def test_a_track_survives_max_missed_frames_and_ends_after_one_more(missed):
    seen = {}
    for allowed in (missed, missed - 1):
        tracker = ObjectTracker(max_missed=allowed)
        first = _ids(tracker, (1, 5, 10, 10, 20))
        assert all(_ids(tracker) == [] for _ in range(missed))
        seen[allowed] = (first, _ids(tracker, (1, 5, 10, 10, 20)))
    assert seen[missed][1] == seen[missed][0]  # missed frames within max_missed: the same id
    assert seen[missed - 1][1] != seen[missed - 1][0]  # one more than max_missed: the track ended, a new id


def test_the_default_covers_a_three_frame_dropout():
    assert DEFAULT_MAX_MISSED >= 3
    assert ObjectTracker().max_missed == DEFAULT_MAX_MISSED


def test_objects_are_matched_within_their_class_by_name():
    tracker = ObjectTracker()
    person, box = _ids(tracker, (1, 5, 10, 10, 20), (2, 40, 10, 10, 20))
    swapped = tracker.update(find_objects(_frame((2, 5, 10, 10, 20), (1, 40, 10, 10, 20)), NAMES))
    now = {item.name: item.track_id for item in swapped if item.class_id}
    assert len(set(now.values()) | {person, box}) == 4  # a box where a person was is no person: two new tracks
    # a new vocabulary: the same names keep their tracks whatever their label ids
    renamed = tracker.update(find_objects(_frame((1, 5, 10, 10, 20), (2, 40, 10, 10, 20)), ["floor", "box", "person"]))
    assert {item.name: item.track_id for item in renamed if item.class_id} == now


@pytest.mark.parametrize("value", [-1, 1.5, True, "3", None])
def test_a_wrong_max_missed_is_refused_in_one_line(value):
    if value is None:
        assert ObjectTracker(value).max_missed == DEFAULT_MAX_MISSED
        return
    with pytest.raises(ValueError, match=r"^track_max_missed: expected a whole number >= 0, got") as caught:
        ObjectTracker(value)
    assert "\n" not in str(caught.value)


def test_update_refuses_what_is_no_object():
    with pytest.raises(TypeError, match="takes RegionObjects .*got dict"):
        ObjectTracker().update([{"box": [0, 0, 1, 1]}])


def test_update_takes_a_result_as_its_objects():
    """Review of this wave, item 9: ``update(result)`` said "'Result' object is not iterable"; a Result is taken as
    its ``objects()`` (the Engine's limits on it), frame after frame, the ids those of its objects."""
    from zsseg_rt.runtime.result import Result

    def result(*rectangles):
        labels = _frame(*rectangles).astype(np.int32)
        return Result(labels, np.ones(labels.shape, np.float32), NAMES, object_min_area=0.0)

    by_result, by_objects = ObjectTracker(), ObjectTracker()
    for step in range(3):
        shown = result((1, 2 + 6 * step, 2, 10, 10), (2, 40, 30, 15, 15))
        tracked = by_result.update(shown)
        expected = by_objects.update(shown.objects())
        assert [(o.name, o.box, o.track_id) for o in tracked] == [(o.name, o.box, o.track_id) for o in expected]
        assert [o.track_id for o in tracked] == [1, 2, 3]  # floor, person, box: the same ids each frame


# ---- judged by py-motmetrics ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def judged():
    pytest.importorskip("motmetrics")
    from benchmarks import tracking

    return tracking, tracking.sequences()


@pytest.mark.parametrize("name", ["crossing", "fast", "dropout", "speckles"])
def test_no_id_switch_and_idf1_on_the_sequences_without_merges(judged, name):
    tracking, made = judged
    result = tracking.judge(made[name], ObjectTracker())
    assert result["switches"] == 0
    assert result["idf1"] >= tracking.IDF1_LINE
    assert result["tracks"] == result["objects"]  # one track per identity (the speckles start none)


def test_after_a_merge_the_two_objects_carry_two_distinct_ids(judged):
    tracking, made = judged
    sequence = made["merge"]
    first, stop = sequence.merged
    found = tracking.track_sequence(sequence, ObjectTracker())
    assert all(len(ids) == 1 for ids in found[first:stop])  # the sequence merges them (one region)
    assert tracking.after_merge_distinct(sequence, found)


def test_control_matching_by_overlap_alone_loses_the_fast_object(judged):
    tracking, made = judged
    result = tracking.judge(made["fast"], ObjectTracker(motion=False))
    assert result["switches"] > 10 and result["idf1"] < 0.7


def test_control_max_missed_zero_breaks_the_dropout(judged):
    tracking, made = judged
    result = tracking.judge(made["dropout"], ObjectTracker(max_missed=0))
    assert result["switches"] == 1 and result["idf1"] < tracking.IDF1_LINE


def test_crop_mask_of_hand_made_objects_pads_short_runs_and_refuses_bad_ones_in_one_line():
    """Objects made by hand (``ObjectTracker.update`` is public): an RLE whose runs end before the mask does is its
    mask with zeros after them, as ``decode_rle`` reads it; a box outside the mask, a negative run or more pixels
    than the mask are refused in one line (not a NumPy reshape error)."""
    from zsseg_rt.runtime.coco import encode_rle

    mask = np.zeros((4, 5), np.uint8)
    mask[1:3, 1:4] = 1
    short = {"size": [5, 5], "counts": encode_rle(mask)["counts"]}  # 20 pixels' runs for a 25-pixel mask
    assert np.array_equal(crop_mask(short, (0, 0, 5, 5)), decode_rle(short).astype(bool))
    assert np.array_equal(crop_mask(short, (1, 1, 3, 2)), decode_rle(short)[1:3, 1:4].astype(bool))
    empty = {"size": [3, 4], "counts": ""}
    assert not crop_mask(empty, (1, 1, 2, 2)).any() and crop_mask(empty, (1, 1, 2, 2)).shape == (2, 2)
    whole = encode_rle(mask)
    for box in [(3, 0, 3, 2), (-1, 0, 2, 2), (0, 3, 2, 2)]:
        with pytest.raises(ValueError, match=r"^an object's box \(x, y, w, h\) = .* is not inside its 4x5 mask$"):
            crop_mask(whole, box)
    with pytest.raises(ValueError, match=r"^an RLE of 25 pixels for a 4x4 mask$"):
        crop_mask({"size": [4, 4], "counts": encode_rle(np.zeros((5, 5), np.uint8))["counts"]}, (0, 0, 1, 1))
