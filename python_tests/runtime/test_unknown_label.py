"""The unknown threshold (``Engine(unknown_below=P)``, ``--unknown-below P``; issue 75 item 6): a pixel whose best
class's probability is below P gets the reserved id (255; 65535 with more than 255 classes), named "unknown" in every
output; off by default, so the official outputs are unchanged. Each model family's probability (docs/usage.md,
"Unknown pixels"): ZegCLIP / CLIP-RC the calibrated sigmoid score, training-free methods the softmax probability,
ZeroSeg the segment's class probability (``Result.scores`` for these), ZegFormer the semantic score over the
proposals' mask mass (``Result.probability``)."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")

from zsseg_rt.options import ENGINE_OPTIONS  # noqa: E402
from zsseg_rt.runtime import Engine  # noqa: E402
from zsseg_rt.runtime.pipelines.two_stage import semantic_probability  # noqa: E402
from zsseg_rt.runtime.result import UNKNOWN_NAME, Result, label_image, unknown_label  # noqa: E402

CLASSES = ["cat", "dog", "sky"]
FAMILIES = ("zegclip", "cliprc", "training_free", "zeroseg", "zegformer")


def _photo():
    from zsseg_rt.assets import sample_images

    image = cv2.imread(str(sample_images()[0]), cv2.IMREAD_COLOR)
    return np.ascontiguousarray(image[:96, :128])  # small: the tiny bundles run it in a few windows


def _engine(bundle, **options):
    return Engine(bundle, CLASSES, backend="onnxruntime", device="cpu", prepare=None, **options)


@pytest.mark.host_only  # ONNX Runtime with device="cpu" on every family's bundle: CI's, not the lease's
@pytest.mark.parametrize("family", FAMILIES)
def test_each_familys_pixels_below_the_threshold_are_unknown_and_the_others_keep_their_class(family_bundles, family):
    """For every family: off (the default) the labels are the official ones (no reserved id, ``unknown_below`` None);
    with P between the family's probabilities, exactly the pixels whose probability is below P are 255 and every
    other pixel keeps its official label (control: the two sets are both non-empty, so the test could fail)."""
    bundle, photo = family_bundles[family], _photo()
    official = _engine(bundle)(photo)
    assert official.unknown_below is None and official.unknown_id is None
    assert int(official.labels.max()) < len(official.class_names)
    probe = _engine(bundle, unknown_below=0.0)(photo)  # what the threshold reads (ZegFormer: its own probability)
    probability = probe.probability if family == "zegformer" else probe.scores
    if family == "zegformer":
        assert probe.probability is not None and official.probability is None  # computed only when asked for
    else:
        assert probe.probability is None
        np.testing.assert_array_equal(probe.scores, official.scores)
    threshold = float(np.median(probability))
    below = probability < np.float32(threshold)
    assert 0 < int(below.sum()) < below.size, "control: pixels on both sides of the threshold"
    marked = _engine(bundle, unknown_below=threshold)(photo)
    assert marked.unknown_below == threshold and marked.unknown_id == 255
    np.testing.assert_array_equal(marked.labels, np.where(below, 255, official.labels))
    assert marked.class_map()["255"] == UNKNOWN_NAME
    assert marked.areas()[UNKNOWN_NAME] == pytest.approx(below.mean())


@pytest.mark.host_only  # ONNX Runtime with device="cpu" on the families' bundles: CI's, not the lease's
@pytest.mark.parametrize("family", ["training_free", "zeroseg", "zegformer"])
def test_the_probability_of_the_softmax_maps_and_two_stage_families_is_within_0_and_1(family_bundles, family):
    """The families whose probability is a probability (softmax over the vocabulary; a segment's class probability;
    ZegFormer's mask-weighted mean of the proposals' class probabilities): in [0, 1] at every pixel (the sigmoid
    families' calibrated score may go below 0 by its calibration)."""
    result = _engine(family_bundles[family], unknown_below=0.0)(_photo())
    probability = result.probability if family == "zegformer" else result.scores
    assert np.isfinite(probability).all()
    assert float(probability.min()) >= -1e-6 and float(probability.max()) <= 1.0 + 1e-5


def test_zegformers_probability_is_the_semantic_score_over_the_mask_mass():
    """ZegFormer's probability: where every proposal gives the class the same probability k, the semantic score
    sum_q k sigmoid(m_q) over the mass sum_q sigmoid(m_q) is k at every pixel, whatever the masks; a pixel no mask
    covers is 0 (control: the score alone is not k)."""
    rng = np.random.default_rng(0)
    masks = 1.0 / (1.0 + np.exp(-rng.normal(size=(5, 8, 10)).astype(np.float32)))
    k = np.float32(0.3)
    sem = k * masks.sum(axis=0)
    from zsseg_rt import ops

    best = ops.upsample(np.ascontiguousarray(sem[None, None]), (16, 20), crop=(0, 0, 6, 8))[0, 0]
    probability = semantic_probability(best, masks, (16, 20), (6, 8))
    np.testing.assert_allclose(probability, k, rtol=1e-5)
    assert not np.allclose(best, k, rtol=1e-2)
    empty = semantic_probability(np.zeros((4, 4), np.float32), np.zeros((2, 3, 3), np.float32), (4, 4), (3, 3))
    assert not empty.any()


def test_the_reserved_id_survives_8_and_16_bit_label_maps_and_the_colours():
    """255 up to 255 classes (8-bit label PNG), 65535 above (16-bit): never a class id; the label PNG's dtype holds
    it; the mask view draws it black; a vocabulary of 256 classes takes 16 bits with the threshold on."""
    assert unknown_label(1) == unknown_label(255) == 255 and unknown_label(256) == unknown_label(300) == 65535
    with pytest.raises(ValueError, match="at most 65535 classes"):
        unknown_label(70000)
    for count, dtype in ((3, np.uint8), (255, np.uint8), (256, np.uint16), (300, np.uint16)):
        names = [f"c{i}" for i in range(count)]
        labels = np.array([[0, count - 1], [unknown_label(count), 1]], dtype=np.int32)
        result = Result(labels, np.ones((2, 2), np.float32), names, unknown_below=0.5)
        written = label_image(result.labels, count, True)
        assert written.dtype == dtype and int(written[1, 0]) == unknown_label(count)
        ok, png = cv2.imencode(".png", written)
        assert ok and int(cv2.imdecode(png, cv2.IMREAD_UNCHANGED)[1, 0]) == unknown_label(count)
        assert result.to_color()[1, 0].tolist() == [0, 0, 0]
        assert result.class_map()[str(unknown_label(count))] == UNKNOWN_NAME
    assert label_image(np.zeros((1, 1), np.int32), 256).dtype == np.uint8  # off: 256 classes still fit 8 bits


def test_the_option_is_one_row_refused_out_of_range_and_in_every_commands_help(tiny_bundle):
    """``unknown_below`` is a row of the options table (default None: off), refused outside [0, 1] in one line by
    the Engine and by every command's flag (argparse: the flag and what was expected)."""
    from zsseg_rt import cli

    row = ENGINE_OPTIONS["unknown_below"]
    assert row.default is None and row.flag == "--unknown-below" and row.bounds == (0.0, 1.0)
    for bad in (1.5, -0.1, float("nan"), True, "0.5"):
        with pytest.raises(ValueError, match=r"unknown_below: expected a number in \[0, 1\] or None, got"):
            _engine(tiny_bundle, unknown_below=bad)
    parser = cli.build_parser()
    for command in ("segment", "camera", "batch", "serve"):
        with pytest.raises(SystemExit):
            parser.parse_args([command, "x", "--bundle", "b", "--classes", "a", "--unknown-below", "2"])
    args = parser.parse_args(["segment", "x", "--bundle", "b", "--classes", "a", "--unknown-below", "0.25"])
    assert args.unknown_below == 0.25


def test_a_class_named_unknown_is_refused_with_the_threshold_on(tiny_bundle):
    with pytest.raises(ValueError, match="a class is named 'unknown'"):
        Engine(tiny_bundle, ["cat", "unknown"], backend="onnxruntime", prepare=None, unknown_below=0.5)
    Engine(tiny_bundle, ["cat", "unknown"], backend="onnxruntime", prepare=None)  # off: a class like any other


@pytest.mark.parametrize("name", ["Unknown", "UNKNOWN", "unKnown"])
def test_the_reserved_name_is_refused_whatever_its_case(tiny_bundle, name):
    """F15: ``--classes Unknown,b`` (or ``"UNKNOWN ,b"``) with the threshold was accepted: a legend "unknown 70.8%,
    Unknown 18.2%". Names are compared as the duplicate check compares them (name_key): the Engine, a vocabulary
    changed later, and the rule ``zsseg serve`` checks before a batch (``check_unknown_name``) refuse it."""
    from zsseg_rt.runtime.result import check_unknown_name

    said = f"a class is named 'unknown' ('{name}' reads 'unknown': names are compared as the CLIP tokenizer reads"
    with pytest.raises(ValueError, match=re.escape(said)):
        Engine(tiny_bundle, f"{name} ,b", backend="onnxruntime", prepare=None, unknown_below=0.5)
    engine = Engine(tiny_bundle, "a,b", backend="onnxruntime", prepare=None, unknown_below=0.5)
    with pytest.raises(ValueError, match=re.escape(said)):
        engine.set_classes(["cat", name])
    assert engine.class_names == ["a", "b"]  # the vocabulary before it is kept
    with pytest.raises(ValueError, match=re.escape(said)):
        check_unknown_name(["cat", name], 0.5)
    check_unknown_name(["cat", name], None)  # off: a class like any other
    check_unknown_name(["cat", "unknowns", "an unknown"], 0.5)  # other names that contain it


def test_the_labels_folder_and_the_robot_outputs_name_the_unknown_label(tiny_bundle, tmp_path):
    """``--labels-out``'s classes.json maps 255 to "unknown"; the MCAP file's LabelInfo has the entry (255,
    "unknown") and the threshold, and its mono16 labels hold 255 (read by the MCAP project's ROS 2 reader)."""
    reader = pytest.importorskip("mcap_ros2.reader")
    from zsseg_rt.outputs.labels import LabelFolderSink
    from zsseg_rt.outputs.mcap_sink import McapSink
    from zsseg_rt.stream.loop.capture import Frame

    photo = _photo()
    result = _engine(tiny_bundle, unknown_below=0.5)(photo)
    result_off = _engine(tiny_bundle)(photo)
    result.labels[0, 0] = 255  # at least one unknown pixel, whatever the tiny model says
    folder = tmp_path / "labels"
    labels_sink = LabelFolderSink(str(folder))
    labels_sink.write_result(Frame(photo, 0, 0.0), result)
    labels_sink.close()
    document = json.loads((folder / "classes.json").read_text())
    assert document["class_map"]["255"] == UNKNOWN_NAME and document["classes"] == CLASSES
    assert int(cv2.imread(str(folder / "000000.png"), cv2.IMREAD_UNCHANGED)[0, 0]) == 255
    mcap = tmp_path / "out.mcap"
    with McapSink(str(mcap), overlay=False) as sink:
        sink.write_result(Frame(photo, 0, 0.0), result)
        sink.write_result(Frame(photo, 1, 0.04), result_off)  # the threshold off: LabelInfo again, without it
    messages = [(m.channel.topic, m.ros_msg) for m in reader.read_ros2_messages(str(mcap))]
    first, second = [msg for topic, msg in messages if topic.endswith("label_info")]
    entries = [(int(e.class_id), str(e.class_name)) for e in first.class_map]
    assert entries == [(0, "cat"), (1, "dog"), (2, "sky"), (255, UNKNOWN_NAME)]
    assert first.threshold == pytest.approx(0.5) and second.threshold == 0.0
    assert [str(e.class_name) for e in second.class_map] == CLASSES
    labels = [msg for topic, msg in messages if topic.endswith("/labels")][0]
    assert labels.encoding == "mono16" and np.frombuffer(bytes(labels.data), "<u2")[0] == 255


@pytest.mark.parametrize(
    "options", [{"stabilize": True}, {"keyframe_every": 3}, {"stabilize": True, "keyframe_every": 2}], ids=str
)
def test_the_video_filters_frames_are_unknown_where_their_own_scores_are_below(tiny_bundle, options):
    """VideoSegmenter (zsseg camera --stabilize / --keyframe-every / --live) with the threshold on: every output frame
    (a stabilised keyframe's blend, a propagated frame's warped scores) is unknown exactly where its own score is
    below P, or where unknown was propagated from its keyframe; every other pixel is the filter's label without the
    threshold (control: the same frames with it off), and the filter runs on the host."""
    from zsseg_rt.stream import VideoSegmenter

    photo = _photo()
    frames = [np.ascontiguousarray(np.roll(photo, 3 * k, axis=1)) for k in range(6)]
    plain_segmenter = VideoSegmenter(_engine(tiny_bundle), **options)
    off = [plain_segmenter(frame, 0) for frame in frames]
    threshold = float(np.median(off[0].scores))
    segmenter = VideoSegmenter(_engine(tiny_bundle, unknown_below=threshold), **options)
    assert not segmenter.on_device
    marked = 0
    for plain, frame in zip(off, frames):
        result = segmenter(frame, 0)
        below = result.scores < np.float32(threshold)
        assert result.unknown_below == threshold and (result.labels[below] == 255).all()
        kept = result.labels != 255
        np.testing.assert_array_equal(result.labels[kept], plain.labels[kept])
        np.testing.assert_array_equal(result.scores, plain.scores)
        if result.keyframe and options.get("stabilize"):
            np.testing.assert_array_equal(result.labels, np.where(below, 255, plain.labels))
        marked += int(below.sum())
    assert marked > 0  # control: the threshold marked pixels
