"""``zsseg camera`` as a user runs it: a video file is processed frame by frame (nothing dropped, the output keeps its
frame rate, a progress bar counts the frames), a missing camera is one clear error (no retries, no OpenCV warnings, no
MJPEG server), no output on a headless machine is an error rather than a silent server, and a random-weight bundle's
frames carry the banner."""

import json
import socket
import subprocess
import sys
import time

import pytest

cv2 = pytest.importorskip("cv2")
from stream_fakes import write_band_clip  # noqa: E402


def _camera(argv, timeout=120):
    """Runs `zsseg camera ...` in a subprocess (the camera command installs signal handlers and logging)."""
    start = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-m", "zsseg_rt.cli", "camera", *argv], capture_output=True, text=True, timeout=timeout
    )
    return out, time.perf_counter() - start


def test_video_file_every_frame_same_fps_with_progress(tmp_path, tiny_bundle):
    clip = write_band_clip(tmp_path / "clip.avi", frames=12, fps=10.0)
    output, stats = str(tmp_path / "out.avi"), str(tmp_path / "stats.json")
    out, _ = _camera([clip, "--bundle", tiny_bundle, "--classes", "a,b", "-o", output, "--stats-json", stats])
    assert out.returncode == 0, out.stderr
    with open(stats, encoding="utf-8") as handle:
        summary = json.load(handle)
    assert summary["processed"] == 12 and summary["captured"] == 12 and summary["dropped"] == 0
    assert summary["postprocess_kernel"] is None  # the host path (a CPU): no device pipeline chose a kernel
    written = cv2.VideoCapture(output)
    assert written.get(cv2.CAP_PROP_FPS) == pytest.approx(10.0) and int(written.get(cv2.CAP_PROP_FRAME_COUNT)) == 12
    written.release()
    assert "12/12" in out.stderr  # the progress bar's frame count
    assert "Traceback" not in out.stderr and "WARN" not in out.stderr, out.stderr


@pytest.mark.parametrize("camera", ["/dev/video97", "97"])
def test_missing_camera_is_one_clear_error(tmp_path, tiny_bundle, camera):
    if not sys.platform.startswith("linux"):
        pytest.skip("V4L2 device files are a Linux thing")
    if camera.startswith("/dev/") and __import__("os").path.exists(camera):
        pytest.skip(f"{camera} exists here")
    out, seconds = _camera([camera, "--bundle", tiny_bundle, "--classes", "a,b", "--preview", "0"], timeout=60)
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert out.returncode != 0 and len(lines) == 1, out.stderr
    assert lines[0].startswith("zsseg camera: error: no camera at /dev/video97")
    assert seconds < 30 and "retry" not in out.stderr.lower() and "MJPEG" not in out.stderr


def test_no_output_on_a_headless_machine_starts_no_server(tmp_path, tiny_bundle, monkeypatch, capsys):
    from zsseg_rt import cli
    from zsseg_rt.console import opencv_build as capabilities

    monkeypatch.setattr(capabilities, "opencv_has_gui", lambda info=None: False)
    clip = write_band_clip(tmp_path / "clip.avi", frames=2)
    with socket.socket() as probe:  # the old default port stays free: nothing was started on it
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        port_was_free = probe.connect_ex(("127.0.0.1", 8080)) != 0
    assert cli.main(["camera", clip, "--bundle", tiny_bundle, "--classes", "a,b"]) == 1
    err = capsys.readouterr().err
    assert "no output given" in err and "--preview 8080" in err and "-o out.mp4" in err and "-o null" in err
    if port_was_free:
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", 8080)) != 0


def test_random_weight_bundle_frames_carry_the_banner(tmp_path, random_bundle):
    clip = write_band_clip(tmp_path / "clip.avi", frames=3, size=(160, 120))
    frames = tmp_path / "frames"
    out, _ = _camera([clip, "--bundle", random_bundle, "--classes", "a,b", "-o", str(frames) + "/", "--no-progress"])
    assert out.returncode == 0 and "RANDOM WEIGHTS" in out.stderr, out.stderr
    first = cv2.imread(str(frames / "frame_000000.jpg")).astype(int)
    assert (first[-2, :, 2] > first[-2, :, 0] + 80).mean() > 0.5  # a red strip along the bottom (JPEG-blurred)
