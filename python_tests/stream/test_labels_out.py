"""``zsseg camera --labels-out DIR``: a 16-bit PNG of class indices per frame named by its frame number, the class list
in classes.json (with the frame each vocabulary starts at), every file replaced whole (a failed write leaves the old
file and no temporary behind), and the camera command end to end with --stabilize / --keyframe-every and the video
metrics in --stats-json."""

import errno
import json
import os
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")
from stream_fakes import write_band_clip  # noqa: E402

from zsseg_rt.stream import LabelFolderSink, SinkError  # noqa: E402
from zsseg_rt.stream.labels import read_labels  # noqa: E402


def _result(labels, names):
    return SimpleNamespace(labels=np.asarray(labels), class_names=list(names))


def test_label_pngs_are_16_bit_named_by_frame_with_the_classes_beside(tmp_path):
    sink = LabelFolderSink(str(tmp_path / "labels"))
    names = [f"class{i}" for i in range(301)]  # label 300 needs more than 8 bits
    first = np.arange(12, dtype=np.int32).reshape(3, 4) * 25
    sink.write_result(SimpleNamespace(index=0), _result(first, names))
    sink.write_result(SimpleNamespace(index=7), _result(first[::-1], names))  # frames 1-6 dropped (a live camera)
    sink.write_result(SimpleNamespace(index=8), _result(np.ones((3, 4), np.int32), ["wall", "floor"]))
    assert sorted(os.listdir(tmp_path / "labels")) == ["000000.png", "000007.png", "000008.png", "classes.json"]
    raw = cv2.imread(str(tmp_path / "labels" / "000000.png"), cv2.IMREAD_UNCHANGED)
    assert raw.dtype == np.uint16 and np.array_equal(raw, first) and raw.max() == 275
    assert (
        np.array_equal(read_labels(str(tmp_path / "labels"), 7), first[::-1]) and read_labels(str(tmp_path), 3) is None
    )
    with open(tmp_path / "labels" / "classes.json", encoding="utf-8") as handle:
        classes = json.load(handle)
    assert classes["classes"] == ["wall", "floor"] and classes["class_map"] == {"0": "wall", "1": "floor"}
    assert [(v["first_frame"], len(v["classes"])) for v in classes["vocabularies"]] == [(0, 301), (8, 2)]
    assert sink.describe() == {"path": str(tmp_path / "labels"), "kind": "labels", "frames": 3, "format": "16-bit PNG"}


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    folder = tmp_path / "labels"
    sink = LabelFolderSink(str(folder))
    sink.write_result(SimpleNamespace(index=3), _result(np.zeros((2, 2), np.int32), ["a", "b"]))
    before = (folder / "000003.png").read_bytes()

    def disk_full(source, target):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", disk_full)
    with pytest.raises(SinkError, match=r"cannot write '.*000003.png': No space left on device"):
        sink.write_result(SimpleNamespace(index=3), _result(np.ones((2, 2), np.int32), ["a", "b"]))
    monkeypatch.undo()
    assert (folder / "000003.png").read_bytes() == before
    assert sorted(os.listdir(folder)) == ["000003.png", "classes.json"]


def test_a_labels_folder_that_is_a_file_is_refused(tmp_path):
    target = tmp_path / "taken"
    target.write_text("x")
    with pytest.raises(SinkError, match="cannot create the labels folder"):
        LabelFolderSink(str(target))


def _camera(argv, timeout=300):
    return subprocess.run(
        [sys.executable, "-m", "zsseg_rt.cli", "camera", *argv], capture_output=True, text=True, timeout=timeout
    )


def test_camera_writes_labels_and_video_metrics(tmp_path, tiny_bundle):
    clip = write_band_clip(tmp_path / "clip.avi", frames=8, fps=10.0, size=(160, 120))
    labels, stats = tmp_path / "labels", tmp_path / "stats.json"
    out = _camera(
        [clip, "--bundle", tiny_bundle, "--classes", "a,b,c", "--labels-out", str(labels), "--stats-json", str(stats)]
        + ["--stabilize", "--keyframe-every", "2", "--temporal-consistency"]
    )
    assert out.returncode == 0, out.stderr
    assert sorted(os.listdir(labels)) == [f"{i:06d}.png" for i in range(8)] + ["classes.json"]
    assert read_labels(str(labels), 5).shape == (120, 160)
    with open(stats, encoding="utf-8") as handle:
        video = json.load(handle)["sources"][0]["video"]
    assert video["frames"] == 8 and video["keyframes"] == 4 and video["propagated"] == 4
    assert video["measured_pairs"] == 7 and video["fps_end_to_end"] > 0
    assert 0.0 <= video["flicker_pct"] <= 100.0 and 0.0 <= video["tc_pct"] <= 100.0
    assert video["keyframe_reasons"] == {"first": 1, "interval": 3}
    assert "fps" in out.stderr  # the progress line shows the frame rate


def test_camera_video_options_are_checked(tmp_path, tiny_bundle):
    clip = write_band_clip(tmp_path / "clip.avi", frames=2)
    out = _camera(
        [clip, "--bundle", tiny_bundle, "--classes", "a,b", "--labels-out", str(tmp_path / "l")]
        + ["--adaptive-keyframes", "--keyframe-every", "1"]
    )
    assert out.returncode != 0 and "--adaptive-keyframes needs --keyframe-every K >= 2" in out.stderr
    out = _camera([clip, clip, "--bundle", tiny_bundle, "--classes", "a,b", "--labels-out", str(tmp_path / "l")])
    assert out.returncode != 0 and "put {source}" in out.stderr, out.stderr
