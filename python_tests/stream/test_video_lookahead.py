"""The look-ahead for recorded video (``--stabilize-delay N``, ``VideoSegmenter(stabilize_delay=N)``): results come
out N frames behind, every frame's exactly once and in order (the end flushed), the labels steadier than the causal
filter's on near-ties, no trail ahead of or behind a moving object, nothing carried across a scene cut; refused for
live sources with one line, and written by the camera loop each with its own frame."""

from __future__ import annotations

import argparse

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")
from test_video_filter import SIDE, SIZE, STEP, _cut_scene, _mean_flicker, _worst_error_distance  # noqa: E402
from video_fakes import ScoreEngine, moving_square  # noqa: E402

from zsseg_rt.stream import VideoSegmenter  # noqa: E402


def delayed(video, frames):
    """Every frame through ``video``, then its flush: the results in order."""
    out = [video(frame) for frame in frames]
    held = [r for r in out if r is not None] + video.flush()
    return out, held


def test_results_come_out_n_frames_behind_each_once():
    frames, truths = moving_square(frames=7, size=SIZE, side=SIDE, step=STEP)
    video = VideoSegmenter(ScoreEngine(frames, truths, noise=0.15), stabilize_delay=3)
    out, held = delayed(video, frames)
    assert [r is None for r in out] == [True] * 3 + [False] * 4
    assert [r.index for r in held] == list(range(7))
    for result, frame in zip(held, frames):
        assert result.image is frame or np.array_equal(result.image, frame)
    assert video.flush() == []  # nothing twice


def _still_scene(count=14, seed=3):
    base, truths = moving_square(frames=1, size=SIZE, side=SIDE, step=0)
    rng = np.random.default_rng(seed)
    frames = [np.clip(base[0] + rng.integers(-2, 3, base[0].shape), 0, 255).astype(np.uint8) for _ in range(count)]
    return frames, truths * count


def test_the_look_ahead_removes_more_near_tie_flicker_than_the_causal_filter():
    """A still scene with near-tied scores (noise 0.3 on a gap of 0.5): the look-ahead (4 frames) keeps less of the
    per-frame flicker than the causal filter, and no more wrong labels."""
    frames, truths = _still_scene()
    per_frame = ScoreEngine(frames, truths, noise=0.3)(list(frames))
    causal = [VideoSegmenter(ScoreEngine(frames, truths, noise=0.3), stabilize=True)]
    causal_results = [causal[0](frame) for frame in frames]
    _, ahead = delayed(VideoSegmenter(ScoreEngine(frames, truths, noise=0.3), stabilize_delay=4), frames)
    base = _mean_flicker(frames, per_frame)
    assert base > 0.01
    assert _mean_flicker(frames, ahead) < _mean_flicker(frames, causal_results) <= base / 3
    wrong = lambda results: np.mean([(r.labels != t).mean() for r, t in zip(results[4:], truths[4:])])  # noqa: E731
    assert wrong(ahead) <= wrong(causal_results)


def test_the_look_ahead_does_not_trail_or_lead_a_moving_object():
    """The moving square with noisy scores: every mislabelled pixel within 2 px of the true boundary from the third
    frame on, as the causal filter's bound. A future carried back without the motion would put the square where it
    will be (labels 4 px ahead and more): the control does."""
    frames, truths = moving_square(frames=12, size=SIZE, side=SIDE, step=STEP)
    _, held = delayed(VideoSegmenter(ScoreEngine(frames, truths, noise=0.15), stabilize_delay=3), frames)
    assert _worst_error_distance(held[2:], truths[2:]) <= 2.0
    still = lambda current, previous: np.zeros(current.shape + (2,), np.float32)  # noqa: E731
    control = VideoSegmenter(ScoreEngine(frames, truths, noise=0.15), stabilize_delay=3, flow_function=still,
                             photometric_tolerance=255.0)  # fmt: skip
    _, wrong = delayed(control, frames)
    assert _worst_error_distance(wrong[2:], truths[2:]) > 2.0


def test_nothing_is_carried_across_a_scene_cut():
    """The frames before a cut get the same labels whatever comes after it (the future stops at the cut)."""
    frames, truths = _cut_scene()
    other = [np.ascontiguousarray(np.flip(frame, axis=1)) for frame in frames[4:]]
    engine = ScoreEngine(frames + other, truths + truths[4:], noise=0.1)
    _, first = delayed(VideoSegmenter(engine, stabilize_delay=2), frames)
    _, second = delayed(VideoSegmenter(ScoreEngine(frames + other, truths + truths[4:], noise=0.1),
                                       stabilize_delay=2), frames[:4] + other)  # fmt: skip
    assert first[4].reason == "scene cut"
    for a, b in zip(first[:4], second[:4]):
        assert np.array_equal(a.labels, b.labels)
    assert not np.array_equal(first[4].labels, second[4].labels)  # after the cut they differ
    # the control: a change of the future without a cut (a moving square, other scores from frame 4 on) does reach
    # the frames before it: the equality above is the cut's doing, not a look-ahead too weak to matter
    scene, labels = moving_square(frames=7, size=SIZE, side=SIDE, step=STEP, seed=0)
    flipped = labels[:4] + [1 - truth for truth in labels[4:]]
    _, kept = delayed(VideoSegmenter(ScoreEngine(scene, labels, noise=0.1), stabilize_delay=2), scene)
    _, changed = delayed(VideoSegmenter(ScoreEngine(scene, flipped, noise=0.1), stabilize_delay=2), scene)
    assert all(result.reason != "scene cut" for result in kept + changed)
    assert any(not np.array_equal(a.labels, b.labels) for a, b in zip(kept[2:4], changed[2:4]))


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(stabilize_delay=-1), "stabilize_delay: expected a whole number >= 0, got -1"),
        (dict(stabilize_delay=2, keyframe_every=4), "stabilize_delay runs the encoder on every frame"),
        (dict(stabilize_delay=1.5), "stabilize_delay: expected a whole number >= 0, got 1.5"),
    ],
)
def test_bad_delays_are_refused(options, message):
    frames, truths = moving_square(frames=1, size=SIZE, side=SIDE, step=STEP)
    with pytest.raises(ValueError, match=message):
        VideoSegmenter(ScoreEngine(frames, truths), **options)


class _Source:
    def __init__(self, name, live):
        self.name, self.live = name, live


def test_a_live_source_is_refused_in_one_line_and_a_file_is_not():
    from zsseg_rt.cli.camera_video import check_video_sources
    from zsseg_rt.console.errors import CliError

    args = argparse.Namespace(stabilize_delay=4, keyframe_every=None, adaptive_keyframes=False)
    check_video_sources(args, [_Source("clip.avi", False)])  # the control: a recorded file
    with pytest.raises(CliError) as caught:
        check_video_sources(args, [_Source("clip.avi", False), _Source("camera 0", True)])
    message = str(caught.value)
    assert "\n" not in message and message.startswith("--stabilize-delay 4: camera 0 is live")
    args.keyframe_every = 4
    with pytest.raises(CliError, match="does not combine with --keyframe-every"):
        check_video_sources(args, [_Source("clip.avi", False)])


def test_the_camera_loop_writes_every_frame_with_its_own_labels(tmp_path):
    """The camera loop over a delayed segmenter: each written label map is its own frame's (the one the look-ahead
    computed for that index), every frame written, the held-back ones at the end of the source."""
    from zsseg_rt.outputs.labels import LabelFolderSink
    from zsseg_rt.stream.loop.runner import MultiStreamRunner
    from zsseg_rt.stream.sources import CallableSource

    frames, truths = moving_square(frames=6, size=SIZE, side=SIDE, step=STEP)
    _, expected = delayed(VideoSegmenter(ScoreEngine(frames, truths, noise=0.15), stabilize_delay=2), frames)
    video = VideoSegmenter(ScoreEngine(frames, truths, noise=0.15), stabilize_delay=2)
    sink = LabelFolderSink(str(tmp_path / "labels"))
    runner = MultiStreamRunner(video, [CallableSource(lambda: iter(frames), live=False)], [[sink]], drop_stale=[False])
    runner.run(handle_signals=False)
    written = sorted((tmp_path / "labels").glob("*.png"))
    assert len(written) == 6
    for path, result in zip(written, expected):
        assert np.array_equal(cv2.imread(str(path), cv2.IMREAD_UNCHANGED).astype(np.int32), result.labels)
