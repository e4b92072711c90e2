"""Source parsing, capability detection and the file / folder sources and sinks (no camera needed)."""

from __future__ import annotations

import os

import cv2
import numpy as np
import pytest
from stream_fakes import FakeEngine, numbered_frame, read_frames, write_test_video

from zsseg_rt.stream import (
    ImageFolderSink,
    ImageFolderSource,
    SinkError,
    SourceError,
    StreamCapabilityError,
    StreamRunner,
    VideoFileSink,
    open_sink,
    open_source,
    opencv_has_gstreamer,
    opencv_has_gui,
    parse_source,
    require_gstreamer,
    require_window,
)

HEADLESS_INFO = "  GUI:                           NONE\n  Video I/O:\n    GStreamer:                   NO\n"
FULL_INFO = "  GUI:                           GTK3\n  Video I/O:\n    GStreamer:                   YES (1.20.3)\n"


@pytest.mark.parametrize(
    "text, kind, target, live",
    [
        ("0", "v4l2", "0", True),
        ("/dev/video2", "v4l2", "/dev/video2", True),
        ("v4l2:///dev/video1", "v4l2", "/dev/video1", True),
        ("csi://1", "csi", "1", True),
        ("csi://", "csi", "0", True),
        ("rtsp://10.0.0.2:8554/cam", "network", "rtsp://10.0.0.2:8554/cam", True),
        ("http://cam.local/video.mjpg", "network", "http://cam.local/video.mjpg", True),
        ("videotestsrc ! videoconvert ! appsink", "gstreamer", "videotestsrc ! videoconvert ! appsink", True),
    ],
)
def test_parse_live_sources(text, kind, target, live):
    spec = parse_source(text)
    assert (spec.kind, spec.target, spec.live) == (kind, target, live)


def test_parse_file_and_folder(tmp_path):
    video = write_test_video(str(tmp_path / "clip.avi"), 3)
    assert parse_source(video).kind == "file"
    assert parse_source("file://" + video).kind == "file"
    assert parse_source(str(tmp_path)).kind == "folder"
    assert parse_source(str(tmp_path)).live is False
    with pytest.raises(SourceError, match="neither a camera"):
        parse_source(str(tmp_path / "missing.mp4"))
    with pytest.raises(SourceError, match="sensor id"):
        parse_source("csi://left")


def test_build_info_parsing():
    assert not opencv_has_gstreamer(HEADLESS_INFO) and opencv_has_gstreamer(FULL_INFO)
    assert not opencv_has_gui(HEADLESS_INFO) and opencv_has_gui(FULL_INFO)


def test_csi_without_gstreamer_explains_the_fix():
    with pytest.raises(StreamCapabilityError, match="JetPack") as info:
        require_gstreamer("csi://0", HEADLESS_INFO)
    assert "GStreamer" in str(info.value) and "pip" in str(info.value)
    require_gstreamer("csi://0", FULL_INFO)  # no error when GStreamer is there
    if not opencv_has_gstreamer():  # this machine: pip wheel -> the real open path must refuse the same way
        with pytest.raises(StreamCapabilityError, match="GStreamer"):
            open_source("csi://0")


def test_window_on_headless_opencv_suggests_the_mjpeg_preview(monkeypatch):
    with pytest.raises(StreamCapabilityError, match="--preview"):
        require_window(HEADLESS_INFO)
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    with pytest.raises(StreamCapabilityError, match="no display"):
        require_window(FULL_INFO)
    if not opencv_has_gui():
        with pytest.raises(StreamCapabilityError, match="MJPEG"):
            open_sink("display://")


def test_open_sink_kinds(tmp_path):
    assert isinstance(open_sink(str(tmp_path / "out.mp4")), VideoFileSink)
    assert isinstance(open_sink(str(tmp_path / "frames") + "/"), ImageFolderSink)
    with pytest.raises(SinkError):
        open_sink(str(tmp_path / "out.xyz"))
    with pytest.raises(SinkError, match="HOST:PORT"):
        open_sink("http://127.0.0.1:notaport")


def test_video_file_through_the_stream_every_frame(tmp_path, thread_guard):
    src = write_test_video(str(tmp_path / "in.avi"), 25)
    out = str(tmp_path / "out.avi")
    engine = FakeEngine(["a", "b", "c"])
    stats = StreamRunner(engine, open_source(src), [open_sink(out)], drop_stale=False).run()
    assert stats.processed == 25 and stats.captured == 25 and stats.dropped == 0
    frames = read_frames(out)
    assert len(frames) == 25
    assert frames[0].shape == (48, 64, 3)
    # the overlay is not the input: the right third is blended with class c's colour
    assert np.abs(frames[0].astype(int) - numbered_frame(0).astype(int)).mean() > 5


def test_looping_file_restarts_at_the_end(tmp_path, caplog):
    src = write_test_video(str(tmp_path / "in.avi"), 5)
    engine = FakeEngine()
    with caplog.at_level("INFO", logger="zsseg_rt.stream"):
        stats = StreamRunner(engine, open_source(src), [], drop_stale=False, loop=True, max_frames=13).run()
    assert stats.processed == 13 and engine.calls == 13
    assert "looping" in caplog.text


def test_image_folder_source_to_image_folder_sink(tmp_path):
    src_dir, out_dir = tmp_path / "in", tmp_path / "out"
    src_dir.mkdir()
    for i in range(4):
        cv2.imwrite(str(src_dir / f"img_{i}.png"), numbered_frame(i))
    (src_dir / "notes.txt").write_text("not an image")
    stats = StreamRunner(
        FakeEngine(), ImageFolderSource(str(src_dir)), [ImageFolderSink(str(out_dir))], drop_stale=False
    ).run()
    assert stats.processed == 4
    assert sorted(os.listdir(out_dir)) == [".zsseg-outputs.json"] + [f"frame_{i:06d}.jpg" for i in range(4)]
    with pytest.raises(SourceError, match="no images"):
        ImageFolderSource(str(tmp_path)).open()  # holds only sub-folders
