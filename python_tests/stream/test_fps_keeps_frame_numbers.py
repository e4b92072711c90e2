"""A frame's number is its source's own (issue 87, H1): its presentation time at the file's rate. ``--fps`` /
``Session(fps=)`` sets the output video's rate only. At 7f842ed ``zsseg camera clip.avi --fps 25`` on a 10 fps file
named the label maps, frame images and COCO frames 0, 2, 5, 8, ... (the numbers taken at the output's rate) while the
MCAP stamps stayed 0.0, 0.1, 0.2, and warned that the gaps it made were "lost to damaged data"."""

from __future__ import annotations

import json
import logging
import os

import pytest

cv2 = pytest.importorskip("cv2")
av = pytest.importorskip("av")
from stream_fakes import count_frames, write_band_clip  # noqa: E402

FRAMES = 8


@pytest.mark.time_bound(300)
@pytest.mark.parametrize("fps", ["25", "5"])
def test_fps_sets_the_videos_rate_and_keeps_the_files_frame_numbers(tmp_path, tiny_bundle, capsys, caplog, fps):
    """``zsseg camera clip.avi --fps F`` on a 10 fps clip: the label maps, the frame images and the COCO "frame"s are
    0..7, the MCAP stamps k/10 s, no frame is said missing; the output video has the 8 frames at F fps."""
    pytest.importorskip("mcap_ros2")
    from robot_readers import read_mcap_ros2

    from zsseg_rt import cli

    clip = write_band_clip(tmp_path / "clip.avi", frames=FRAMES, fps=10.0, size=(64, 48))
    labels, frames, coco, mcap, video = (tmp_path / name for name in ("L", "FR", "c.json", "c.mcap", "v.mp4"))
    argv = ["camera", clip, "--bundle", tiny_bundle, "--classes", "a,b", "--no-progress", "--fps", fps]
    argv += ["--labels-out", str(labels), "-o", f"{frames}/", "--save-json", str(coco), "-o", str(mcap)]
    with caplog.at_level(logging.INFO, logger="zsseg_rt"):
        code = cli.main([*argv, "-o", str(video), "--backend", "onnxruntime"])
    err = capsys.readouterr().err
    assert code == 0, err
    numbers = list(range(FRAMES))
    assert sorted(n for n in os.listdir(labels) if n.endswith(".png")) == [f"{n:06d}.png" for n in numbers]
    shown = sorted(n for n in os.listdir(frames) if n.endswith(".jpg"))
    assert shown == [f"frame_{n:06d}.jpg" for n in numbers]  # was 0, 2, 5, 8, ... at 25
    assert [image["frame"] for image in json.loads(coco.read_text())["images"]] == numbers
    stamps = [m.stamp for m in read_mcap_ros2(mcap) if m.topic.endswith("/labels")]
    assert [round(stamp * 10 / 1e9, 6) for stamp in stamps] == numbers  # the file's own times, as before
    said = [r.getMessage() for r in caplog.records if "missing" in r.getMessage()]
    assert said == [], said  # was "11 frames missing by presentation time (...: lost to damaged data ...)"
    assert count_frames(str(video)) == FRAMES
    with av.open(str(video)) as container:
        assert float(container.streams.video[0].average_rate) == float(fps)  # --fps: the output video's rate


@pytest.mark.time_bound(300)
def test_a_session_fps_numbers_nothing(tmp_path, tiny_bundle):
    """``Session(fps=25)`` on the 10 fps clip: the app's loop sees the frames 0..7 and the label folder holds them."""
    from zsseg_rt.stream import Session

    clip = write_band_clip(tmp_path / "clip.avi", frames=FRAMES, fps=10.0, size=(64, 48))
    labels = tmp_path / "L"
    with Session(clip, tiny_bundle, "a,b", labels_out=str(labels), fps=25) as session:
        seen = [item.frame.index for item in session]
    assert seen == list(range(FRAMES)) and session.exit_code == 0
    assert session.summary["sources"][0]["frames_missing"] == 0
    assert sorted(n for n in os.listdir(labels) if n.endswith(".png")) == [f"{n:06d}.png" for n in range(FRAMES)]
