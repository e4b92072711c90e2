"""What a demanding user of the video features is told (issue 64, defects N9, N10, N16; the probe at b991c98): a stream
that changes frame size mid-way is rescaled in the video with a warning and a count (the label maps keep each frame's
size); ``VideoSegmenter`` takes the grey and RGBA frames the Engine takes, and a bad option is one line naming it;
FFmpeg's lines about a damaged clip are warnings, counted and capped per source, with a final count."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")
from test_video_output_safety import _damaged_h264_clip  # noqa: E402

from zsseg_rt.outputs.labels import read_labels  # noqa: E402
from zsseg_rt.stream import VideoSegmenter  # noqa: E402


@pytest.fixture(scope="module")
def engine(tiny_bundle):
    from zsseg_rt import Engine

    return Engine(tiny_bundle, classes="a,b,c", mode="fast")


def test_a_frame_size_change_is_said_once_and_counted(tmp_path, tiny_bundle, capsys, caplog):
    """N9 (probe V12): 3 frames of 64x48, then 3 of 80x60. Was: the later frames rescaled in the video silently,
    while their label maps keep 80x60 (they no longer align with the video's frames, and nothing said so)."""
    from zsseg_rt import cli

    folder = tmp_path / "frames"
    folder.mkdir()
    for index, (width, height) in enumerate([(64, 48)] * 3 + [(80, 60)] * 3):
        image = np.zeros((height, width, 3), np.uint8)
        image[:, : 8 + 4 * index] = (40, 200, 90)
        cv2.imwrite(str(folder / f"{index:02d}.png"), image)
    video, labels, stats = tmp_path / "out.avi", tmp_path / "labels", tmp_path / "stats.json"
    argv = [str(folder), "--bundle", tiny_bundle, "--classes", "a,b", "-o", str(video), "--labels-out", str(labels)]
    with caplog.at_level(logging.INFO, logger="zsseg_rt.stream"):
        code = cli.main(["camera", *argv, "--stats-json", str(stats), "--no-progress"])
    assert code == 0, capsys.readouterr().err
    said = [record for record in caplog.records if "rescaled" in record.getMessage()]
    assert len(said) == 1 and said[0].levelno == logging.WARNING, [r.getMessage() for r in caplog.records]
    assert "frame 3 is 80x60, the video 64x48" in said[0].getMessage(), said[0].getMessage()
    (written,) = [output for output in json.loads(stats.read_text())["outputs"] if output["path"] == str(video)]
    assert written["rescaled_frames"] == 3 and written["size"] == [64, 48], written
    assert read_labels(str(labels), 4).shape == (60, 80) and read_labels(str(labels), 0).shape == (48, 64)
    capture = cv2.VideoCapture(str(video))
    sizes = set()
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        sizes.add(frame.shape[:2])
    capture.release()
    assert sizes == {(48, 64)}


def test_grey_and_rgba_frames_are_taken_as_the_engine_takes_them(engine):
    """N10 (probe V14): ``VideoSegmenter`` refused [H, W] grey and [H, W, 4] frames that ``Engine`` takes
    (docs/usage.md: "Grayscale and RGBA arrays are accepted too")."""
    rng = np.random.default_rng(0)
    colour = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
    grey = cv2.cvtColor(colour, cv2.COLOR_BGR2GRAY)
    rgba = np.dstack([colour, np.full((48, 64), 255, np.uint8)])
    for frame, same_as in ((grey, grey), (grey[:, :, None], grey), (rgba, colour)):
        video = VideoSegmenter(engine, keyframe_every=2)
        first, second = video(frame), video(frame)  # a keyframe, then one propagated along the flow
        assert first.keyframe and not second.keyframe and first.labels.shape == (48, 64)
        assert np.array_equal(first.labels, engine(same_as).labels)
    with pytest.raises(TypeError, match="image must have dtype uint8"):  # the Engine's own words for a float frame
        VideoSegmenter(engine, keyframe_every=2)(colour.astype(np.float32))


@pytest.mark.parametrize(
    "option, value, message",
    [
        ("keyframe_every", 2.5, "temporal option keyframe_every: expected a whole number >= 1, got 2.5 (float)"),
        ("keyframe_every", "4", "temporal option keyframe_every: expected a whole number >= 1, got '4' (str)"),
        ("flow_stride", 0, "temporal option flow_stride: expected a whole number >= 1, got 0 (int)"),
        ("blend", 2, "temporal option blend: expected a number in (0, 1], got 2 (int)"),
        ("blend", "x", "temporal option blend: expected a number in (0, 1], got 'x' (str)"),
        ("flow_preset", "ultra", "temporal option flow_preset: expected one of 'ultrafast', 'fast', 'medium', got"),
    ],
)
def test_a_bad_option_is_one_line_naming_it(engine, option, value, message):
    """N10 (probe V15): "bad temporal option keyframe_every: got {'stabilize': False, ... the whole options dict}"
    (and a str blend was a bare "could not convert string to float")."""
    with pytest.raises(ValueError) as caught:
        VideoSegmenter(engine, **{option: value})
    text = str(caught.value)
    assert text.startswith(message) and "{" not in text and "\n" not in text, text


def test_ffmpegs_lines_are_warnings_counted_and_capped_per_source(tmp_path, caplog):
    """N16 (probe U9): 86 FFmpeg lines at ERROR for 13 damaged packets in a run that exits 0. Now: WARNING, the
    first 10 of a source shown, every one counted (the source's ``ffmpeg_messages``) and the count on its last line."""
    pytest.importorskip("av")
    from zsseg_rt.stream.sources import PyAVFileSource

    clip = _damaged_h264_clip(tmp_path / "clip.mp4", frames=80, damaged=range(20, 70, 4))  # 13 damaged packets
    source = PyAVFileSource(clip)
    with caplog.at_level(logging.INFO):
        source.open()
        while source.read() is not None:
            pass
        source.close()
    ffmpeg = [record for record in caplog.records if record.name.startswith("libav")]
    assert ffmpeg and all(record.levelno == logging.WARNING for record in ffmpeg), [
        (r.levelname, r.getMessage()) for r in ffmpeg
    ]
    assert len(ffmpeg) == 10 and all(record.getMessage().startswith(f"file:{clip}: FFmpeg: ") for record in ffmpeg)
    assert "the others are counted" in ffmpeg[-1].getMessage()
    total = source.ffmpeg_messages
    assert total > 2 * 13 and source.decode_errors == 13, (total, source.decode_errors)
    last = [r.getMessage() for r in caplog.records if r.name == "zsseg_rt.stream"][-1]
    assert f"{total} FFmpeg messages (10 shown)" in last, last
