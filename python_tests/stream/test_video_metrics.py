"""The video label metrics (``zsseg_rt.stream.video_filter.video_metrics``) against hand-made frames whose answers are known: the
still-pixel threshold (|I_k - I_{k-1}| < 6), flicker over still pixels only, changed over all, flow-warped TC on a
translation, agreement, still pixels that move, the vote over frames and the keyframe oracle (the benchmark's
oracles), and the per-stream accumulator (pairs, sizes, keyframes, fps end to end from given times)."""

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")
from video_fakes import texture  # noqa: E402

from zsseg_rt.stream.video_filter.video_metrics import (  # noqa: E402
    VideoMetrics,
    agreement,
    carried,
    changed,
    flicker,
    grey,
    moved,
    temporal_consistency,
    voted,
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


def test_the_vote_removes_short_changes_and_keeps_lasting_ones():
    """``voted`` (the benchmark's oracle): each pixel's most frequent label over the 2r+1 frames around, ties to the
    frame's own label, then to the smallest. A one-frame blip goes, a change that lasts stays where it happened."""
    columns = [
        [0, 0, 0, 1, 0, 0, 0],  # a blip of one frame
        [0, 0, 0, 1, 1, 1, 1],  # a change that lasts
        [5, 2, 2, 2, 2, 2, 2],  # the first frame's window (5, 2) is a tie: its own label stays
        [4, 6, 9, 6, 4, 4, 4],
    ]
    sequence = [np.array([[column[k] for column in columns]], np.int32) for k in range(7)]
    out = voted(sequence, 1)
    assert [[int(m[0, i]) for m in out] for i in range(4)] == [
        [0] * 7,
        [0, 0, 0, 1, 1, 1, 1],
        [5, 2, 2, 2, 2, 2, 2],
        [4, 6, 6, 6, 4, 4, 4],  # frames 1 and 3: three labels once each, the frame's own wins
    ]
    assert int(voted(sequence, 2)[2][0, 3]) == 4  # window 4 6 9 6 4: 4 and 6 twice each, the smallest wins
    assert all(np.array_equal(a, b) for a, b in zip(voted(sequence, 0), sequence))
    still = [np.full((1, 4), 100, np.uint8)] * 7
    per_frame = [flicker(a, b, x, y) for a, b, x, y in zip(still, still[1:], sequence, sequence[1:])]
    oracle = [flicker(a, b, x, y) for a, b, x, y in zip(still, still[1:], out, out[1:])]
    assert sum(per_frame) == pytest.approx(8 / 4) and sum(oracle) == pytest.approx(4 / 4)  # changes over 4 pixels
    with pytest.raises(ValueError, match="radius must be >= 0"):
        voted(sequence, -1)
    with pytest.raises(ValueError, match="voted labels"):
        voted([sequence[0], np.zeros((2, 4), np.int32)], 1)


def test_still_pixels_that_move_are_found_and_can_be_left_out():
    """A smoothly shaded square (1.2 grey levels a pixel) sliding 4 px over a static texture: its pixels change by
    less than 6 grey levels, still to the flicker metric, but the flow moves them by about 4 px (``moved``); flicker
    ``within`` the pixels not moved leaves out a label boundary that moves with the square."""
    background = grey(texture(120, 160, seed=2))
    ramp = (60 + 1.2 * np.arange(60)).astype(np.uint8)

    def frame(left):
        image = background.copy()
        image[30:90, left : left + 60] = ramp[None]
        return image

    before, after = frame(40), frame(44)
    still = np.abs(after.astype(int) - before.astype(int)) < 6
    inside = np.zeros(still.shape, bool)
    inside[34:86, 48:96] = True  # the square's inside, away from its edges
    assert still[inside].all()  # the flicker metric takes them as still
    mask = moved(before, after)
    assert mask[inside].mean() > 0.8 and not mask[:, :24].any() and not mask[:, 120:].any()
    assert not moved(background, background).any()
    labels_before, labels_after = np.zeros(still.shape, np.int32), np.zeros(still.shape, np.int32)
    labels_before[34:86, :70], labels_after[34:86, :74] = 1, 1  # a boundary inside the square, moving with it
    assert flicker(before, after, labels_before, labels_after) > 0
    assert flicker(before, after, labels_before, labels_after, within=~mask) == 0.0
    assert flicker(before, after, labels_before, labels_after, within=np.zeros(still.shape, bool)) is None


def test_carried_moves_each_keyframes_labels_along_the_flow_to_the_frames_between():
    """``carried`` (the benchmark's keyframe oracle): on a pan of a texture by 3 px a frame, the keyframes (0 and 4 at
    an interval of 4) keep their own labels and the frames between take their keyframe's labels shifted with the
    pan, so labels that move with the texture agree with per frame everywhere but the strip the pan brings in; labels
    that change where nothing explains it (a frame's own noise) are out of its reach."""
    big = texture(60, 140, seed=3)[:, :, 0]
    stripes = (np.arange(140) // 10 % 3).astype(np.int64)[None, :].repeat(60, axis=0)  # labels fixed to the texture
    shift = 3
    greys = [np.ascontiguousarray(big[:, 20 - shift * k : 20 - shift * k + 100]) for k in range(6)]
    labels = [np.ascontiguousarray(stripes[:, 20 - shift * k : 20 - shift * k + 100]) for k in range(6)]
    out = carried(greys, labels, 4)
    assert all(np.array_equal(out[k], labels[k]) for k in (0, 4))  # keyframes: their own labels
    for k in (1, 2, 3, 5):
        inner = slice(shift * (k % 4) + 2, 98)  # the strip the pan brought in since the keyframe is not in it
        assert agreement(out[k][:, inner], labels[k][:, inner]) > 0.97, k
        assert agreement(out[k][:, inner], labels[k - k % 4][:, inner]) < 0.9  # they moved: not the keyframe's
    noisy = [item.copy() for item in labels]
    noisy[2][:, ::2] = 7  # labels frame 2 alone has: no flow brings them
    assert agreement(carried(greys, noisy, 4)[2], noisy[2]) < 0.6
    assert np.array_equal(carried(greys, labels, 1)[3], labels[3])
    with pytest.raises(ValueError, match="keyframe interval must be >= 1"):
        carried(greys, labels, 0)
    with pytest.raises(ValueError, match="6 frames but 5 label maps"):
        carried(greys, labels[:5], 4)


def test_a_long_run_keeps_the_accumulator_the_same_size():
    """Issue 64 (long runs): the per-stream accumulator kept every frame's flicker and change in lists, and the
    camera loop's summary() after every frame averaged them all: memory and time per frame grew with the run (a
    camera running for a day: 2.6 million of each). Running sums now: 3,000 more frames cost it nothing, and the
    means are those of the frames (1 frame in 10 flips a row, 12.5 % of a still frame, and the next flips it back)."""
    import tracemalloc

    frame = texture(8, 10, seed=3)
    labels = np.zeros((8, 10), np.int32)
    flipped = labels.copy()
    flipped[0, :] = 1  # 10 of the 80 pixels
    metrics = VideoMetrics()

    def run(frames, start):
        for index in range(start, start + frames):
            metrics.update(frame, flipped if index % 10 == 5 else labels, read_at=float(index))
            metrics.summary()

    run(1000, 0)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        run(3000, 1000)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 16_000, f"the accumulator grew by {grown} bytes over 3000 frames"  # the lists: 6000 floats, 192 KB
    summary = metrics.summary()
    assert summary["measured_pairs"] == 3999 and summary["frames"] == 4000
    assert summary["changed_pct"] == pytest.approx(100 * 0.125 * 800 / 3999, abs=1e-3)  # 800 flips, in and out
