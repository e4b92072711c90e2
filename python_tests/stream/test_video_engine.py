"""``VideoSegmenter`` on a real Engine (the tiny test bundle): the per-class scores the filter blends are the
post-processing's own, the Engine's single-image call is unchanged, the synthetic pan of the bundled photo (whose exact
answer is the first frame's labels shifted by the pan) is followed at least as well as per frame, and a vocabulary
changed on the Engine is a keyframe at once."""

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")

from zsseg_rt.pipeline.class_scores import ClassScoresUnavailable, check_available, state_size  # noqa: E402
from zsseg_rt.stream import VideoSegmenter  # noqa: E402

CLASSES = "person,cat,dog,car,chair,sofa,table,plant,bottle"
PAN = (120, 160, 3)  # frame height, width, pan in px a frame


@pytest.fixture(scope="module")
def engine(tiny_bundle):
    from zsseg_rt import Engine

    return Engine(tiny_bundle, classes=CLASSES, mode="fast")


def _photo():
    from zsseg_rt.assets import sample_images

    return cv2.imread(str(sorted(sample_images())[1]), cv2.IMREAD_COLOR)


def _pan(frames: int):
    height, width, step = PAN
    photo = _photo()
    return [
        np.ascontiguousarray(photo[100 : 100 + height, 50 + step * k : 50 + step * k + width]) for k in range(frames)
    ]


def _boundary_distance(labels: np.ndarray) -> np.ndarray:
    edge = cv2.morphologyEx(labels.astype(np.uint8), cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)) > 0
    return cv2.distanceTransform((~edge).astype(np.uint8), cv2.DIST_L2, 5)


def test_class_scores_are_the_post_processings_own(engine):
    """``segment_with_class_scores``: the same labels and scores as the plain call, plus every class's scores at 1/4
    of the frame whose argmax, resized, gives the same labels away from class boundaries: a pixel may differ only
    within two state pixels (8 px) of a boundary of the exact labels, where the area average over a state pixel and
    the bilinear resize of the state move the boundary."""
    photo = _photo()
    plain = engine(photo)
    scored = engine.segment_with_class_scores([photo], stride=4)[0]
    assert plain.class_scores is None  # the single-image call is unchanged
    assert np.array_equal(plain.labels, scored.labels) and np.array_equal(plain.scores, scored.scores)
    class_scores = scored.class_scores
    assert class_scores.scores.shape == (len(CLASSES.split(",")),) + state_size(photo.shape[:2], 4)
    labels, _ = class_scores.finalize()
    differ = labels != plain.labels
    assert differ.mean() < 0.02
    assert (_boundary_distance(plain.labels)[differ] <= 8.0).all()
    with pytest.raises(ValueError, match="stride must be an integer >= 1, got 0"):
        engine.segment_with_class_scores([photo], stride=0)


@pytest.mark.parametrize("options", [dict(stabilize=True), dict(stabilize=True, keyframe_every=4)])
def test_the_pan_of_the_photo_is_followed_no_worse_than_per_frame(engine, options):
    """A camera panning over the bundled photo by 3 px a frame: the exact answer for frame k is frame 0's per-frame
    labels shifted by 3k px (the scene did not change, only the view). Per frame, the ViT's patch grid slides under
    the image and the labels change; the stabilised (and the propagated) labels must agree with the exact answer on
    the overlapping part at least as well as the per-frame labels do."""
    frames = _pan(12)
    step = PAN[2]
    per_frame = [engine(frame) for frame in frames]
    video = VideoSegmenter(engine, **options)
    filtered = [video(frame) for frame in frames]
    width = PAN[1]

    def agreement(results):
        exact = per_frame[0].labels
        return np.mean(
            [(r.labels[:, : width - step * k] == exact[:, step * k :]).mean() for k, r in enumerate(results) if k]
        )

    assert agreement(filtered) >= agreement(per_frame)
    assert all(r.class_names == engine.class_names and r.labels.shape == PAN[:2] for r in filtered)


def test_a_vocabulary_set_on_the_engine_is_a_keyframe_at_once(engine):
    frames = _pan(4)
    video = VideoSegmenter(engine, keyframe_every=8)
    try:
        assert [video(frame).keyframe for frame in frames[:2]] == [True, False]
        engine.set_classes("person,wall,floor")
        result = video(frames[2])
        assert result.keyframe and result.reason == "vocabulary" and result.class_names == ["person", "wall", "floor"]
        assert np.array_equal(result.labels, engine(frames[2]).labels)
    finally:
        engine.set_classes(CLASSES)


def test_stabilize_needs_per_class_scores(engine, monkeypatch):
    """A pipeline without per-class scores, or post-processing that needs the full-resolution map, is refused when
    the segmenter is made (not at the first frame)."""
    import dataclasses

    with monkeypatch.context() as patch:
        patch.setattr(type(engine.pipeline), "class_scores", False)
        with pytest.raises(ClassScoresUnavailable, match="pipeline does not give"):
            VideoSegmenter(engine, stabilize=True)
        VideoSegmenter(engine, keyframe_every=4)  # propagation needs no class scores
    with pytest.raises(ClassScoresUnavailable, match="PAMR"):
        check_available(dataclasses.replace(engine.pipeline.postprocessor, activation="softmax", pamr_iterations=2))
