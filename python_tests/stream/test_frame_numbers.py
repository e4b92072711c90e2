"""Every output of one run names a frame by the same number, from its presentation time (issue 79, F3): a frame lost
to a damaged packet leaves a gap in the names, said once in the summary, instead of shifting every frame after it
(``bad_000149_*`` and ``L/000149.png`` held frame 150 while the MCAP stamps said 6.00 s). The clip: H.264 with three
damaged packets, decoded deterministically by PyAV as frames 0-23, 25, 28-59 (the band of frame N is 4 + N columns
wide, so a frame's content tells its true number). And a video frame's COCO ``file_name`` (F18): CVAT's name of a
video's frame, ``STEM/frame_000042.png``, with ``video`` and ``frame`` beside it."""

from __future__ import annotations

import json
import logging
import os

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")
pytest.importorskip("av")
from test_video_output_safety import _damaged_h264_clip  # noqa: E402

LOST = [24, 26, 27]  # the presentation numbers of the frames the damaged packets held (B-frames: not 25-27)
KEPT = [n for n in range(60) if n not in LOST]


def _clip(tmp_path) -> str:
    return _damaged_h264_clip(tmp_path / "bad.mp4", frames=60, damaged=(25, 26, 27))


def _number_shown(image: np.ndarray) -> int:
    """The frame number a frame of ``_damaged_h264_clip`` shows: its band is 4 + N columns wide."""
    return int((image[image.shape[0] // 2, :, 1] > 120).sum()) - 4


def test_a_files_frames_are_numbered_by_presentation_time_with_the_lost_ones_missing(tmp_path):
    """The source's numbers, and the capture thread's (``Frame.index``, which the label folder, the COCO file and the
    robot outputs name frames by), skip the lost frames; each numbered frame shows that number; a loop counts on."""
    from zsseg_rt.stream.loop.capture import FrameGrabber
    from zsseg_rt.stream.sources import PyAVFileSource, missing_note

    clip = _clip(tmp_path)
    source = PyAVFileSource(clip)
    source.open()
    numbers = []
    while (image := source.read()) is not None:
        numbers.append(source.last_number)
        assert _number_shown(image) == source.last_number, (source.last_number, _number_shown(image))
    source.close()
    assert numbers == KEPT  # was 0..56: decode order
    assert (source.missing_count, source.missing) == (3, LOST)
    note = missing_note(source.missing_count, source.missing)
    assert note.startswith("3 frames missing by presentation time (000024, 000026, 000027: lost to damaged data")

    grabber = FrameGrabber(PyAVFileSource(clip), drop_stale=False, loop=True).start()
    seen = []
    try:
        while len(seen) < 2 * len(KEPT):
            frame = grabber.get(timeout=30)
            assert frame is not None, "the capture thread gave no frame within 30 s"
            seen.append(frame.index)
    finally:
        grabber.stop()
    assert seen[: len(KEPT)] == KEPT and seen[len(KEPT) :] == [60 + n for n in KEPT]  # the loop goes on after 59


@pytest.mark.time_bound(300)
def test_segment_names_a_videos_frames_and_coco_images_by_presentation_time(tmp_path, tiny_bundle, capsys):
    """``zsseg segment bad.mp4 --save-labels --save-json``: the files, the JSON's "frame" and the COCO entries name
    the frames 0-23, 25, 28-59 (each label map is the Engine's on the frame of that number); the gap is said once.
    The COCO ``file_name`` is ``DIR/bad/frame_000025.png`` (was ``DIR/bad_000024``: no file, and the wrong frame)."""
    from zsseg_rt import Engine, cli
    from zsseg_rt.stream.sources import PyAVFileSource

    clip = _clip(tmp_path)
    out, masks = tmp_path / "out", tmp_path / "masks.json"
    argv = [clip, "--bundle", tiny_bundle, "--classes", "a,b", "-o", str(out), "--save-labels", "--json"]
    code = cli.main(["segment", *argv, "--save-json", str(masks), "--backend", "onnxruntime"])
    said = capsys.readouterr()
    assert code == 0, said.err
    labels = sorted(name for name in os.listdir(out) if name.endswith("_labels.png"))
    assert labels == [f"bad_{n:06d}_labels.png" for n in KEPT], labels
    assert [entry["frame"] for entry in json.loads(said.out)] == KEPT
    notes = [line for line in said.err.splitlines() if "missing by presentation time" in line]
    assert notes == [
        f"zsseg segment: note: {clip}: 3 frames missing by presentation time (000024, 000026, 000027: lost to "
        "damaged data, or a variable frame rate); the outputs are named by presentation time, so the names skip them"
    ], said.err
    images = json.loads(masks.read_text())["images"]
    stem = os.path.splitext(clip)[0]
    assert [(i["file_name"], i["frame"], i["video"]) for i in images] == [
        (f"{stem}/frame_{n:06d}.png", n, clip) for n in KEPT
    ]
    engine = Engine(tiny_bundle, classes="a,b", backend="onnxruntime")
    source = PyAVFileSource(clip)
    source.open()
    while (image := source.read()) is not None:
        if source.last_number in (23, 25, 28):  # around the gap: the map named N is the frame that shows N
            written = cv2.imread(str(out / f"bad_{source.last_number:06d}_labels.png"), cv2.IMREAD_UNCHANGED)
            assert np.array_equal(written, engine(image).labels), source.last_number
    source.close()


@pytest.mark.time_bound(300)
def test_camera_names_label_maps_coco_images_and_mcap_stamps_by_the_same_number(tmp_path, tiny_bundle, capsys, caplog):
    """``zsseg camera bad.mp4 --labels-out L -o b.mcap -o frames/ --save-json``: L's names, the overlay images', the
    COCO frames and the MCAP stamps x 30 fps are the same numbers, the lost frames missing from each (was: L 000000-000056 while the stamps skipped);
    the summary names the missing frames once."""
    pytest.importorskip("mcap_ros2")
    from robot_readers import read_mcap_ros2

    from zsseg_rt import cli

    clip = _clip(tmp_path)
    folder, mcap, masks = tmp_path / "L", tmp_path / "b.mcap", tmp_path / "masks.json"
    argv = [clip, "--bundle", tiny_bundle, "--classes", "a,b", "--no-progress", "--backend", "onnxruntime"]
    with caplog.at_level(logging.INFO, logger="zsseg_rt"):
        outputs = [
            "--labels-out",
            str(folder),
            "-o",
            str(mcap),
            "-o",
            str(tmp_path / "frames"),
            "--save-json",
            str(masks),
        ]
        code = cli.main(["camera", *argv, *outputs])
    err = capsys.readouterr().err
    assert code == 0, err
    names = sorted(name for name in os.listdir(folder) if name.endswith(".png"))
    assert names == [f"{n:06d}.png" for n in KEPT], names
    overlays = sorted(name for name in os.listdir(tmp_path / "frames") if name.endswith(".jpg"))
    assert overlays == [f"frame_{n:06d}.jpg" for n in KEPT], overlays  # -o frames/: the same numbers
    stamps = [m.stamp for m in read_mcap_ros2(mcap) if m.topic.endswith("/labels")]
    assert [round(stamp * 30 / 1e9) for stamp in stamps] == KEPT
    images = json.loads(masks.read_text())["images"]
    assert [(i["file_name"], i["frame"]) for i in images] == [(f"bad/frame_{n:06d}.png", n) for n in KEPT]
    said = [r.getMessage() for r in caplog.records if "missing by presentation time" in r.getMessage()]
    assert len(said) == 1 and "3 frames missing by presentation time (000024, 000026, 000027" in said[0], said


@pytest.mark.time_bound(300)
def test_an_image_folders_frames_keep_their_place_and_their_files_name(tmp_path, tiny_bundle, capsys, caplog):
    """An image folder with a damaged image (the third of five): the label maps are 000000, 000001, 000003, 000004
    (the skipped image's place is a gap, said once), and each COCO image is the file it was read from (a file
    annotation tools open), its "frame" that place."""
    from zsseg_rt import cli

    folder = tmp_path / "shots"
    folder.mkdir()
    for index in range(5):
        cv2.imwrite(str(folder / f"s{index}.png"), np.full((24, 32, 3), 40 * index, np.uint8))
    (folder / "s2.png").write_bytes(b"not a png")
    labels, masks = tmp_path / "L", tmp_path / "masks.json"
    argv = [str(folder), "--bundle", tiny_bundle, "--classes", "a,b", "--no-progress", "--backend", "onnxruntime"]
    with caplog.at_level(logging.INFO, logger="zsseg_rt"):
        code = cli.main(["camera", *argv, "--labels-out", str(labels), "--save-json", str(masks)])
    assert code == 0, capsys.readouterr().err
    maps = sorted(name for name in os.listdir(labels) if name.endswith(".png"))
    assert maps == ["000000.png", "000001.png", "000003.png", "000004.png"], maps
    images = json.loads(masks.read_text())["images"]
    assert [(i["file_name"], i["frame"]) for i in images] == [(str(folder / f"s{n}.png"), n) for n in (0, 1, 3, 4)]
    said = [r.getMessage() for r in caplog.records if "missing by presentation time" in r.getMessage()]
    assert len(said) == 1 and "1 frame missing by presentation time (000002:" in said[0], said
