"""The architecture review's Python app (issue 88, "Done when"): a ``Session`` over a photo folder writing an MP4 and
an MCAP file writes what ``zsseg camera FOLDER -o out.mp4 -o out.mcap`` writes: the same frames in the video, the same
ROS 2 label messages, byte for byte (the legend, which draws the measured FPS, is off on both)."""

from __future__ import annotations

import os

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")
pytest.importorskip("mcap_ros2")

from robot_readers import read_mcap_ros2  # noqa: E402
from stream_fakes import read_frames  # noqa: E402

from zsseg_rt import cli  # noqa: E402


def _photos(folder, count=3):
    os.makedirs(folder)
    rng = np.random.default_rng(11)
    for index in range(count):
        cv2.imwrite(str(folder / f"p{index}.png"), rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
    return str(folder)


def _labels(path):
    """The (topic, data) of the label messages (``labels``, ``label_info``): what a robot reads of the run."""
    found = []
    for message in read_mcap_ros2(path):
        if message.topic.endswith(("/labels", "/label_info")):
            found.append((message.topic, message.encoding, message.data, message.classes))
    return found


def test_a_python_app_writes_what_zsseg_camera_writes(tmp_path, tiny_bundle, capsys):
    from zsseg_rt.stream import Session

    photos = _photos(tmp_path / "photos")
    cli_mp4, cli_mcap = tmp_path / "cli.mp4", tmp_path / "cli.mcap"
    argv = ["camera", photos, "--bundle", tiny_bundle, "--classes", "cat,dog,sky", "--no-progress", "--no-legend"]
    assert cli.main([*argv, "--backend", "onnxruntime", "-o", str(cli_mp4), "-o", str(cli_mcap)]) == 0
    capsys.readouterr()
    py_mp4, py_mcap = tmp_path / "py.mp4", tmp_path / "py.mcap"
    session = Session(
        photos,
        tiny_bundle,
        "cat,dog,sky",
        outputs=[str(py_mp4), str(py_mcap)],
        legend=False,
        engine_options={"backend": "onnxruntime"},
    )
    assert session.run() == 0

    ours, theirs = read_frames(py_mp4), read_frames(cli_mp4)
    assert len(ours) == len(theirs) == 3
    for mine, cli_frame in zip(ours, theirs):
        np.testing.assert_array_equal(mine, cli_frame)
    mine_labels, cli_labels = _labels(py_mcap), _labels(cli_mcap)
    topics = [topic.rsplit("/", 1)[1] for topic, *_ in mine_labels]
    assert topics.count("labels") == 3 and topics.count("label_info") >= 1  # every frame's label map, the classes
    assert mine_labels == cli_labels
