"""``zsseg camera -o out.mp4`` writes a video a web browser plays (issue 37, defect 5): H.264 through PyAV (MPEG-4
Part 2 from OpenCV's mp4v before, which Chromium's <video> refuses), every frame at the input's frame rate, and says
which codec it wrote (log line and --stats-json); without PyAV it falls back to mp4v and says that browsers will not
play the file. And the rough edges of a file source: every frame is written (a stop, e.g. --max-frames, dropped one
and counted it as dropped) and the progress bar prints its last line once."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")
from stream_fakes import write_band_clip  # noqa: E402

FRAMES, FPS, SIZE = 12, 10.0, (64, 48)


def _camera(argv, prelude="", timeout=180):
    code = prelude + "import sys\nfrom zsseg_rt.cli import main\nsys.exit(main(sys.argv[1:]))\n"
    return subprocess.run(
        [sys.executable, "-c", code, "camera", *argv], capture_output=True, text=True, timeout=timeout
    )


def _probe(path):
    """``(codec name, frames decoded, average frame rate)`` of a video file, read back with PyAV."""
    av = pytest.importorskip("av")
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        name, rate = stream.codec_context.name, float(stream.average_rate)
        frames = sum(1 for _ in container.decode(video=0))
    return name, frames, rate


def test_mp4_output_is_h264_with_every_frame_at_the_input_rate(tmp_path, tiny_bundle):
    pytest.importorskip("av")
    clip = write_band_clip(tmp_path / "clip.avi", FRAMES, FPS, SIZE)
    output, stats = tmp_path / "out.mp4", tmp_path / "stats.json"
    out = _camera([clip, "--bundle", tiny_bundle, "--classes", "a,b", "-o", str(output), "--stats-json", str(stats)])
    assert out.returncode == 0, out.stderr
    assert _probe(output) == ("h264", FRAMES, pytest.approx(FPS))  # was mpeg4 (OpenCV mp4v)
    summary = json.loads(stats.read_text())
    assert summary["outputs"] == [
        {
            "path": str(output),
            "codec": "h264",
            "encoder": "libx264 via PyAV",
            "frames": FRAMES,
            "fps": FPS,
            "browser_playable": True,
            "size": list(SIZE),
            "rescaled_frames": 0,
        }
    ]
    assert "as H.264" in out.stderr and f"wrote {FRAMES} frames to {output} (h264" in out.stderr, out.stderr
    with open(output, "rb") as handle:
        head = handle.read(4096)
    assert head[4:8] == b"ftyp" and b"moov" in head  # the index first: a browser plays before it has the whole file


def test_without_pyav_the_fallback_says_browsers_will_not_play_it(tmp_path, tiny_bundle):
    clip = write_band_clip(tmp_path / "clip.avi", FRAMES, FPS, SIZE)
    output, stats = tmp_path / "out.mp4", tmp_path / "stats.json"
    no_pyav = "import sys\nsys.modules['av'] = None  # as in the runtime-only install\n"
    argv = [clip, "--bundle", tiny_bundle, "--classes", "a,b", "-o", str(output), "--stats-json", str(stats)]
    out = _camera(argv, prelude=no_pyav)
    assert out.returncode == 0, out.stderr
    assert "web browsers do not play" in out.stderr and 'pip install "zsseg_rt[video]"' in out.stderr, out.stderr
    (written,) = json.loads(stats.read_text())["outputs"]
    assert written["codec"] == "mpeg4" and written["browser_playable"] is False and written["frames"] == FRAMES
    capture = cv2.VideoCapture(str(output))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == FRAMES
    capture.release()


def test_chromium_plays_the_mp4_and_refuses_the_old_mp4v(tmp_path, browser):
    pytest.importorskip("av")
    from zsseg_rt.outputs.sinks import VideoFileSink

    for name, fourcc in (("h264.mp4", None), ("mp4v.mp4", "mp4v")):  # the sink as zsseg camera uses it; the old codec
        sink = VideoFileSink(str(tmp_path / name), fps=FPS, fourcc=fourcc)
        for i in range(FRAMES):
            frame = np.zeros((SIZE[1] + 1, SIZE[0] + 1, 3), np.uint8)  # odd sizes: padded to even for H.264
            frame[:, : 4 + 4 * i] = (40, 200, 90)
            sink.write(frame)
        sink.close()
    (tmp_path / "page.html").write_text("<!doctype html><video id=v muted></video>")
    browser.get((tmp_path / "page.html").as_uri())
    load = """
        const done = arguments[arguments.length - 1];
        const video = document.getElementById("v");
        video.onloadeddata = () => done({ok: true, width: video.videoWidth, height: video.videoHeight,
                                         duration: video.duration});
        video.onerror = () => done({ok: false, code: video.error && video.error.code});
        video.src = arguments[0];
    """
    browser.set_script_timeout(30)
    played = browser.execute_async_script(load, (tmp_path / "h264.mp4").as_uri())
    assert played["ok"], played
    assert (played["width"], played["height"]) == (SIZE[0] + 2, SIZE[1] + 2)  # 65x49 padded to 66x50
    assert played["duration"] == pytest.approx(FRAMES / FPS, abs=0.05)
    refused = browser.execute_async_script(load, (tmp_path / "mp4v.mp4").as_uri())
    assert refused == {"ok": False, "code": 4}  # MEDIA_ERR_SRC_NOT_SUPPORTED: what the issue saw


def test_a_stopped_file_drops_nothing_and_writes_every_frame_it_processed(tmp_path, tiny_bundle):
    clip = write_band_clip(tmp_path / "clip.avi", FRAMES, FPS, SIZE)
    output, stats = tmp_path / "out.avi", tmp_path / "stats.json"
    argv = [clip, "--bundle", tiny_bundle, "--classes", "a,b", "-o", str(output), "--stats-json", str(stats)]
    out = _camera([*argv, "--max-frames", "5", "--no-progress"])
    assert out.returncode == 0, out.stderr
    summary = json.loads(stats.read_text())
    # was: 5 processed, 7 captured, 1 dropped (the frame read ahead was replaced at the stop and counted as dropped)
    assert (summary["processed"], summary["captured"], summary["dropped"]) == (5, 5, 0), summary
    capture = cv2.VideoCapture(str(output))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 5
    capture.release()


def test_every_frame_grabber_counts_nothing_dropped_when_stopped():
    from stream_fakes import numbered_frame

    from zsseg_rt.stream import CallableSource
    from zsseg_rt.stream.loop.capture import FrameGrabber

    grabber = FrameGrabber(
        CallableSource(lambda: (numbered_frame(i) for i in range(100)), live=False), drop_stale=False
    ).start()
    taken = [grabber.get(timeout=5.0) for _ in range(3)]
    assert [frame.index for frame in taken] == [0, 1, 2]
    grabber.stop()  # the thread has read frame 3 (waiting to be taken) and may be reading frame 4
    assert grabber.dropped == 0 and grabber.captured == 3 and grabber.get(timeout=0.2) is None


def test_the_progress_bar_prints_its_last_line_once(tmp_path, tiny_bundle):
    # tqdm's mininterval 0 and miniters 1 (its TQDM_ environment overrides, read when tqdm is imported): every update
    # draws, as on a slow or loaded machine, where the last update's line came out twice before (it, then again
    # under the log line after it); at the default 0.1 s a fast machine skipped that draw: the count hung on timing
    prelude = "import os\nos.environ.update(TQDM_MININTERVAL='0', TQDM_MINITERS='1')\n"
    clip = write_band_clip(tmp_path / "clip.avi", FRAMES, FPS, SIZE)
    out = _camera([clip, "--bundle", tiny_bundle, "--classes", "a,b", "-o", str(tmp_path / "out.avi")], prelude)
    assert out.returncode == 0, out.stderr
    lines = out.stderr.replace("\r", "\n").splitlines()
    assert sum(f"| {n}/{FRAMES} [" in line for line in lines for n in range(1, FRAMES)) >= FRAMES - 1, lines
    drawn = [line for line in lines if f"{FRAMES}/{FRAMES}" in line]
    assert len(drawn) == 1, drawn  # was twice: the last update, then close() (or the redraw under a log line) again
