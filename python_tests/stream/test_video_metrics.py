"""The video label metrics (``zsseg_rt.stream.video_metrics``) against hand-made frames whose answers are known: the
still-pixel threshold (|I_k - I_{k-1}| < 6), flicker over still pixels only, changed over all, flow-warped TC on a
translation, agreement, and the per-stream accumulator (pairs, sizes, keyframes, fps end to end from given times)."""

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")
from video_fakes import texture  # noqa: E402

from zsseg_rt.stream.video_metrics import (  # noqa: E402
    VideoMetrics,
    agreement,
    changed,
    flicker,
    grey,
    temporal_consistency,
)


def test_flicker_counts_label_changes_on_still_pixels_only():
    previous = np.full((4, 5), 100, np.uint8)
    current = previous.copy()
    current[0, :] = 105  # a change of 5 grey levels: still
    current[1, :] = 106  # 6: not still
    current[2, :] = 94  # -6: not still
    labels_before = np.zeros((4, 5), np.int32)
    labels_now = labels_before.copy()
    labels_now[0, :2] = 1  # 2 of the 10 still pixels (rows 0 and 3) change
    labels_now[1, :] = 1  # changes on moving pixels do not count
    labels_now[2, :] = 2
    assert flicker(previous, current, labels_before, labels_now) == pytest.approx(2 / 10)
    assert changed(labels_before, labels_now) == pytest.approx(12 / 20)
    moving = np.full((4, 5), 200, np.uint8)
    assert flicker(previous, moving, labels_before, labels_now) is None  # no still pixel: no value


def test_tc_follows_a_translation():
    """Labels that move with the scene are consistent (TC near 100 %); the same labels left in place are not."""
    image = texture(120, 160, seed=4)
    shifted = np.ascontiguousarray(np.roll(image, 5, axis=1))
    labels = (grey(image) > 128).astype(np.int32)
    moved = np.roll(labels, 5, axis=1)
    following = temporal_consistency(grey(image), grey(shifted), labels, moved)
    still = temporal_consistency(grey(image), grey(shifted), labels, labels)
    assert following > 0.95 and still < following - 0.05


def test_agreement_and_bad_shapes():
    a = np.zeros((3, 4), np.int32)
    b = a.copy()
    b[0, 0] = 1
    assert agreement(b, a) == pytest.approx(11 / 12)
    with pytest.raises(ValueError, match=r"agreement labels: previous \[3, 4\] and current \[4, 3\] differ in size"):
        agreement(a.T, a)
    with pytest.raises(ValueError, match=r"expected a \[H, W, 3\] \(or grey \[H, W\]\) uint8 frame, got float32"):
        grey(np.zeros((3, 4, 3), np.float32))


def test_video_metrics_accumulate_per_stream():
    frame = texture(30, 40, seed=1)
    labels = np.zeros((30, 40), np.int32)
    flipped = labels.copy()
    flipped[:3, :] = 1  # 10 % of a still frame changes label
    metrics = VideoMetrics(consistency=True)
    metrics.update(frame, labels, keyframe=True, read_at=10.0, written_at=10.5)
    metrics.update(frame, flipped, keyframe=False, read_at=10.1, written_at=11.0)
    metrics.update(frame, flipped, keyframe=False, read_at=10.2, written_at=12.0)
    other = texture(20, 20, seed=2)
    metrics.update(other, np.zeros((20, 20), np.int32), keyframe=True, read_at=10.3, written_at=12.0)  # another size
    summary = metrics.summary()
    assert summary["frames"] == 4 and summary["keyframes"] == 2 and summary["measured_pairs"] == 2
    assert summary["flicker_pct"] == pytest.approx(5.0) and summary["changed_pct"] == pytest.approx(5.0)
    assert summary["tc_pct"] == pytest.approx(95.0, abs=0.5)
    assert summary["fps_end_to_end"] == pytest.approx(4 / 2.0)  # 4 frames from the first read (10.0) to 12.0
    with pytest.raises(ValueError, match=r"labels \[2, 2\] are not the frame's size \[30, 40\]"):
        metrics.update(frame, np.zeros((2, 2), np.int32))
    assert VideoMetrics().summary()["tc_pct"] is None  # not measured without consistency
