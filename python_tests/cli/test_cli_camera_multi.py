"""``zsseg camera SRC1 SRC2 ...`` as a user runs it (issue 39 item 2): four video files and a camera that is not
there, one model: every file's frames written to its own output (``-o out/{source}.avi``), the missing camera
reported and retried with backoff, then given up (``--max-reconnects``) while the files finish, statistics per
source in the progress line and in ``--stats-json``; Ctrl-C / SIGTERM while a camera is still being retried end the
run with every output finalised; several sources and one fixed output name are refused."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request

import pytest

cv2 = pytest.importorskip("cv2")
from processes import reading_stderr  # noqa: E402
from stream_fakes import count_frames, write_band_clip  # noqa: E402
from support import subprocess_env  # noqa: E402

MISSING = "/dev/video9"
FRAMES = (12, 9, 15, 6)  # every clip its own length: the outputs cannot be swapped unnoticed


def _missing_camera():
    if not sys.platform.startswith("linux"):
        pytest.skip("V4L2 device files are a Linux thing")
    if os.path.exists(MISSING):
        pytest.skip(f"{MISSING} exists here")
    return MISSING


def _clips(tmp_path, frames=FRAMES):
    folder = tmp_path / "clips"
    folder.mkdir()
    return [write_band_clip(folder / f"clip{i}.avi", n, 10.0, (64 + 16 * i, 48)) for i, n in enumerate(frames)]


def test_four_files_and_a_missing_camera(tmp_path, tiny_bundle):
    camera = _missing_camera()
    clips = _clips(tmp_path)
    out, stats = tmp_path / "out", tmp_path / "stats.json"
    argv = [f"left={clips[0]}", *clips[1:], camera, "--bundle", tiny_bundle, "--classes", "a,b"]
    argv += ["-o", str(out / "{source}.avi"), "--stats-json", str(stats), "--max-reconnects", "2"]
    proc = subprocess.run(
        [sys.executable, "-m", "zsseg_rt.cli", "camera", *argv],
        capture_output=True,
        text=True,
        timeout=300,
        env=subprocess_env(OMP_NUM_THREADS="1"),
    )
    assert proc.returncode == 1, proc.stderr[-3000:]  # a source failed: exit 1, after the others finished
    summary = json.loads(stats.read_text())
    names = [entry["name"] for entry in summary["sources"]]
    assert names == ["left", "clip1", "clip2", "clip3", "video9"]
    for index, (name, frames, entry) in enumerate(zip(names, FRAMES, summary["sources"])):
        assert (entry["processed"], entry["captured"], entry["dropped"]) == (frames, frames, 0), entry
        assert entry["state"] == "ended" and entry["error"] is None and entry["live"] is False
        for key in ("fps", "latency_p50_ms", "latency_p99_ms", "e2e_latency_p99_ms"):
            assert entry[key] > 0, (key, entry)
        assert entry["latency_p99_ms"] >= entry["latency_p50_ms"]
        assert entry["outputs"] == [
            {
                "path": str(out / f"{name}.avi"),
                "codec": "mjpeg",
                "encoder": "OpenCV MJPG",
                "frames": frames,
                "fps": 10.0,
                "browser_playable": False,
                "size": [64 + 16 * index, 48],
                "rescaled_frames": 0,
            }
        ]
        assert count_frames(out / f"{name}.avi") == frames
    missing = summary["sources"][4]
    assert missing["state"] == "failed" and missing["live"] is True and missing["processed"] == 0
    assert missing["error"].startswith(f"no camera at {camera}") and missing["failed_opens"] == 3
    assert not (out / "video9.avi").exists()  # nothing to write: no empty file either
    assert summary["processed"] == sum(FRAMES) and summary["engine_calls"] < sum(FRAMES)  # frames batched
    assert summary["mean_batch"] > 1.5
    err = proc.stderr
    assert f"source v4l2:{camera} unavailable (no camera at {camera}" in err and "retrying in" in err
    assert f"giving up on v4l2:{camera} after 2 attempts" in err
    assert re.search(r"ERROR video9: failed, 0 frames processed", err), err[-3000:]
    assert "stopped: 5 sources (1 failed)" in err
    # the progress line carries every source's statistics
    final = [line for line in err.replace("\r", "\n").splitlines() if "5 sources:" in line][-1]
    for name in names:
        assert re.search(rf"{name} [\d.]+ fps p50/p99 \d+/\d+ ms drop \d+ rc \d+", final), final
    assert "Traceback" not in err


def _wait_for_stats(port, test, seconds=120):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats", timeout=10) as answer:
                stats = json.loads(answer.read())
            if test(stats):
                return stats
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"the stream never reached the expected state: {stats}")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_while_a_camera_is_retried_finalises_every_output(tmp_path, tiny_bundle, sig):
    """Looping files and a camera retried for ever (no --max-reconnects): the run goes on until the signal, then
    every MP4 is finalised with exactly the frames its source processed; the preview showed the grid meanwhile."""
    pytest.importorskip("av")
    camera = _missing_camera()
    clips = _clips(tmp_path, frames=(5, 4, 6, 3))
    out, stats = tmp_path / "out", tmp_path / "stats.json"
    argv = [sys.executable, "-m", "zsseg_rt.cli", "camera", *clips, camera, "--bundle", tiny_bundle]
    argv += ["--classes", "a,b", "--loop", "-o", str(out / "{index}_{source}.mp4"), "--stats-json", str(stats)]
    argv += ["--preview", "0", "--no-progress"]
    proc = subprocess.Popen(
        argv, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=subprocess_env(OMP_NUM_THREADS="1")
    )
    with reading_stderr(proc) as lines:  # read all along: a full pipe would block the camera's logging
        deadline = time.monotonic() + 120
        while not any("MJPEG preview at" in line for line in lines) and time.monotonic() < deadline:
            time.sleep(0.05)
        (found,) = [m for m in (re.search(r"MJPEG preview at http://127\.0\.0\.1:(\d+)/", x) for x in lines) if m]
        port = int(found.group(1))
        live = _wait_for_stats(
            port, lambda s: len(s.get("sources", [])) == 5 and all(e["processed"] >= 8 for e in s["sources"][:4])
        )
        assert live["sources"][4]["state"] == "reconnecting" and "no camera" in live["sources"][4]["error"]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as answer:
            page = answer.read().decode()
        assert page.count('class="tile"') == 5 and page.count('id="classes"') == 1
        proc.send_signal(sig)
        proc.wait(timeout=120)
    err = "".join(lines)
    assert proc.returncode == 128 + sig, err[-3000:]  # stopped by the signal, outputs finalised (console.errors' rule)
    summary = json.loads(stats.read_text())
    for index, entry in enumerate(summary["sources"][:4]):
        assert entry["state"] == "stopped" and entry["dropped"] == 0
        path = out / f"{index}_clip{index}.mp4"
        assert entry["outputs"][0]["path"] == str(path) and entry["outputs"][0]["codec"] == "h264"
        assert count_frames(path) == entry["processed"] == entry["outputs"][0]["frames"] >= 8  # finalised, every frame
    missing = summary["sources"][4]
    assert missing["state"] == "stopped" and missing["failed_opens"] >= 1 and "no camera" in missing["error"]


def test_several_sources_and_one_fixed_output_are_refused(tmp_path, tiny_bundle, capsys):
    from zsseg_rt import cli

    clips = _clips(tmp_path, frames=(2, 2))
    engine = ["--bundle", tiny_bundle, "--classes", "a,b"]
    cases = [
        ([*clips, "-o", str(tmp_path / "out.mp4")], "names one output, but 2 sources are given (clip0, clip1): put"),
        ([*clips, "-o", str(tmp_path / "frames") + "/"], f"e.g. -o {tmp_path / 'frames' / '{source}'}/"),
        ([*clips, "-o", "http://127.0.0.1:8099"], "with 2 sources use --preview PORT"),
        ([f"a={clips[0]}", f"a={clips[1]}", "-o", str(tmp_path / "{index}.avi")], "two sources are named 'a'"),
    ]
    for argv, message in cases:
        assert cli.main(["camera", *argv, *engine]) == 1
        err = capsys.readouterr().err
        assert err.startswith("zsseg camera: error:") and message in err, err
    assert not list(tmp_path.glob("out*")) and not (tmp_path / "frames").exists()


def test_one_source_fills_in_its_name_too(tmp_path, tiny_bundle, capsys):
    """`-o out/{source}.avi` with one source writes out/clip0.avi (before: a file literally named {source}.avi)."""
    from zsseg_rt import cli

    (clip,) = _clips(tmp_path, frames=(3,))
    argv = ["camera", clip, "--bundle", tiny_bundle, "--classes", "a,b", "--no-progress"]
    assert cli.main(argv + ["-o", str(tmp_path / "out" / "{source}.avi")]) == 0
    assert count_frames(tmp_path / "out" / "clip0.avi") == 3 and not (tmp_path / "out" / "{source}.avi").exists()
