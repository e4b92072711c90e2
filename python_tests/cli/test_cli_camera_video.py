"""``zsseg camera``'s video options (``zsseg_rt/cli/camera_video.py``): ``--labels-out``, ``--stabilize``,
``--keyframe-every``, ``--adaptive-keyframes``, ``--stabilize-delay``, ``--live`` and the video metrics in
``--stats-json``, end to end and as the options that reach the ``VideoSegmenter`` and the Engine. The label folder
itself: python_tests/stream/test_labels_out.py."""

import importlib.util
import json
import os
import subprocess
import sys
from types import SimpleNamespace

import pytest

cv2 = pytest.importorskip("cv2")
from stream_fakes import write_band_clip  # noqa: E402
from support import record_made  # noqa: E402

from zsseg_rt.outputs.labels import read_labels  # noqa: E402
from zsseg_rt.stream.sources import open_source  # noqa: E402
from zsseg_rt.stream.video_filter.video_metrics import VideoMetrics  # noqa: E402


def _visible(folder) -> list:
    return sorted(name for name in os.listdir(folder) if not name.startswith(".")) if os.path.isdir(folder) else []


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
    assert _visible(labels) == [f"{i:06d}.png" for i in range(8)] + ["classes.json"]
    assert read_labels(str(labels), 5).shape == (120, 160)
    with open(stats, encoding="utf-8") as handle:
        video = json.load(handle)["sources"][0]["video"]
    assert video["frames"] == 8 and video["keyframes"] == 4 and video["propagated"] == 4
    assert video["measured_pairs"] == 7 and video["fps_end_to_end"] > 0
    # the metrics are those of the maps it wrote: recomputed here from the clip's frames (decoded as the camera
    # decodes them) and the label PNGs (a constant, or the metric of other maps, would differ)
    metrics = VideoMetrics(consistency=True)
    with open_source(str(clip)) as source:
        for index in range(8):
            metrics.update(source.read(), read_labels(str(labels), index), keyframe=index % 2 == 0)
    expected = metrics.summary()
    for key in ("flicker_pct", "changed_pct", "tc_pct"):
        assert video[key] == pytest.approx(expected[key], abs=1e-3), (key, video[key], expected[key])
    assert expected["changed_pct"] > 0  # the band moves: the maps change, so the comparison is not 0 == 0
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


def test_camera_video_options_reach_the_video_segmenter():
    """What ``zsseg camera``'s video options build (``video_segmenter``): --adaptive-keyframes alone is the adaptive
    mode with the longest gap 8; with --keyframe-every K that gap; --stabilize the blend; none of them the Engine
    itself (the control). The adaptive mode's behaviour: test_video_filter.py::
    test_adaptive_keyframes_follow_the_flows_confidence."""
    import argparse

    from zsseg_rt.cli.camera import add_command
    from zsseg_rt.cli.camera_video import video_segmenter

    parser = argparse.ArgumentParser()
    add_command(parser.add_subparsers())
    engine = SimpleNamespace()  # no pipeline: no --stabilize class-scores check needed for the keyframe modes

    def options(*flags):
        args = parser.parse_args(["camera", "clip.avi", "--bundle", "b", "--classes", "a", *flags])
        made = video_segmenter(args, engine)
        return None if made is engine else made.options

    assert options() is None
    adaptive = options("--adaptive-keyframes")
    assert adaptive.adaptive and adaptive.keyframe_every == 8 and not adaptive.stabilize
    adaptive = options("--adaptive-keyframes", "--keyframe-every", "4")
    assert adaptive.adaptive and adaptive.keyframe_every == 4
    fixed = options("--keyframe-every", "4")
    assert not fixed.adaptive and fixed.keyframe_every == 4


def test_camera_stabilize_delay_is_for_recorded_video():
    """``--stabilize-delay N`` (issue 65, item 4) builds the look-ahead VideoSegmenter (the blend on, N frames of
    delay) for recorded sources; a live source and keyframes are refused before the model loads, each in one line
    naming the option. Control: the same options without the delay build no look-ahead and refuse nothing."""
    import argparse

    from zsseg_rt.cli.camera import add_command
    from zsseg_rt.cli.camera_video import check_video_sources, video_segmenter
    from zsseg_rt.console.errors import CliError

    parser = argparse.ArgumentParser()
    add_command(parser.add_subparsers())

    def args(*flags):
        return parser.parse_args(["camera", "clip.avi", "--bundle", "b", "--classes", "a", *flags])

    recorded, live = SimpleNamespace(live=False, name="clip.avi"), SimpleNamespace(live=True, name="camera 0")
    made = video_segmenter(args("--stabilize-delay", "3"), SimpleNamespace())
    assert made.delay == 3 and made.options.stabilize and made.options.keyframe_every == 1
    check_video_sources(args("--stabilize-delay", "3"), [recorded])  # a file: accepted
    with pytest.raises(CliError, match=r"--stabilize-delay 3: camera 0 is live"):
        check_video_sources(args("--stabilize-delay", "3"), [recorded, live])
    with pytest.raises(CliError, match="does not combine with --keyframe-every"):
        check_video_sources(args("--stabilize-delay", "3", "--keyframe-every", "4"), [recorded])
    check_video_sources(args("--stabilize"), [live])  # control: the causal filter on a camera
    assert video_segmenter(args("--stabilize"), SimpleNamespace()).delay == 0


def test_camera_live_option_is_one_window_keyframes_and_a_cheaper_flow():
    """``--live`` (issues 65, 73): the Engine gets the preset ``LIVE`` (its ``test_scale="window"``: one window a
    frame) and the filter, from that Engine, a keyframe every 4 with the cheaper flow (DIS fast at 1/4); a keyframe
    interval given keeps its value; the look-ahead is refused with it in one line. Control: without ``--live`` no
    preset, the official resize (None) and the default flow."""
    import argparse

    from zsseg_rt.cli.camera import add_command
    from zsseg_rt.cli.camera_video import check_video_sources, engine_preset, engine_test_scale, video_segmenter
    from zsseg_rt.console.errors import CliError
    from zsseg_rt.options import LIVE
    from zsseg_rt.stream.video_filter.temporal import TemporalOptions

    parser = argparse.ArgumentParser()
    add_command(parser.add_subparsers())

    def args(*flags):
        return parser.parse_args(["camera", "clip.avi", "--bundle", "b", "--classes", "a", *flags])

    def segmenter(*flags):  # the VideoSegmenter of the Engine the camera opens (its preset: --live's)
        return video_segmenter(args(*flags), SimpleNamespace(preset=engine_preset(args(*flags))))

    live = segmenter("--live").options
    assert engine_preset(args("--live")) is LIVE and engine_test_scale(args("--live")) == "window"
    assert (live.keyframe_every, live.flow_preset, live.flow_stride, live.stabilize) == (4, "fast", 4, False)
    assert segmenter("--live", "--keyframe-every", "2").options.keyframe_every == 2
    adaptive = segmenter("--live", "--adaptive-keyframes").options
    assert adaptive.adaptive and adaptive.keyframe_every == 4 and adaptive.flow_preset == "fast"  # the longest gap
    stable = segmenter("--live", "--stabilize").options
    assert stable.stabilize and stable.keyframe_every == 4
    with pytest.raises(CliError, match=r"--stabilize-delay 2 waits for frames ahead, --live is for camera rate"):
        check_video_sources(args("--live", "--stabilize-delay", "2"), [SimpleNamespace(live=False, name="c")])
    # the help says what the option sets (the preset's summary: zsseg_rt.options is standard library only)
    from zsseg_rt.cli.camera_video import LIVE_HELP
    from zsseg_rt.stream.loop.live import LIVE_FLOW, LIVE_KEYFRAME_EVERY

    assert (
        f"every {LIVE_KEYFRAME_EVERY}th frame" in LIVE_HELP and f"DIS '{LIVE_FLOW[0]}' at 1/{LIVE_FLOW[1]}" in LIVE_HELP
    )
    # the control
    assert engine_test_scale(args()) is None and engine_preset(args()) is None
    plain = segmenter("--keyframe-every", "4").options
    defaults = TemporalOptions()
    assert (plain.flow_preset, plain.flow_stride) == (defaults.flow_preset, defaults.flow_stride) != ("fast", 4)


@pytest.mark.parametrize("live", [True, False], ids=["live", "control"])
def test_camera_live_runs_one_window_a_keyframe_every_4(tmp_path, tiny_bundle, monkeypatch, caplog, live):
    """``zsseg camera CLIP --live`` (in this process): the stream's Engine fits each frame in one window (its test
    resize is the graph's size both ways), 2 keyframes of 8 frames, the label maps at the frame's size; the run says
    at its start what the preset trades (one window of WxH, a keyframe every 4 frames, the flow's preset) and writes
    it into --stats-json ("preset"). Control: without ``--live`` the bundle's resize, every frame a keyframe and no
    preset said or written."""
    import itertools

    import zsseg_rt.runtime as runtime
    from zsseg_rt import cli
    from zsseg_rt.stream.video_filter import live_window

    made = record_made(monkeypatch, runtime, "Engine")
    ticks = itertools.count()  # the live window's warm-up clock: every span 0.01 s, so the full window is kept
    monkeypatch.setattr(live_window, "CLOCK", lambda: next(ticks) * 0.01)
    clip = write_band_clip(tmp_path / "clip.avi", frames=8, fps=10.0, size=(160, 120))
    labels, stats = tmp_path / "labels", tmp_path / "stats.json"
    argv = [clip, "--bundle", tiny_bundle, "--classes", "a,b,c", "--labels-out", str(labels)]
    with caplog.at_level("INFO", logger="zsseg_rt"):
        assert cli.main(["camera", *argv, "--stats-json", str(stats), *(["--live"] if live else [])]) == 0
    size = made[0].meta.crop_size
    assert len(made) == 1 and (made[0].pipeline.test_scale == [size, size]) is live
    assert read_labels(str(labels), 7).shape == (120, 160)
    with open(stats, encoding="utf-8") as handle:
        summary = json.load(handle)
    if not live:
        assert "preset" not in summary and "trades" not in caplog.text
        return
    video = summary["sources"][0]["video"]
    assert video["frames"] == 8 and video["keyframes"] == 2 and video["propagated"] == 6
    preset = summary["preset"]
    assert preset["name"] == "live" and preset["window"] == [size, size] and preset["keyframe_every"] == 4
    assert (preset["flow_preset"], preset["flow_stride"]) == ("fast", 4) and preset["line"] in caplog.text
    assert f"one window of {size}x{size}" in preset["line"] and "a keyframe every 4 frames" in preset["line"]
    # the exact CPU path (ONNX Runtime fp32): the window measured on the first frame, said in one line (issue 90)
    choice = preset["window_choice"]
    assert choice["size"] == size and choice["met"] and list(choice["measured"]) == [str(size)]
    assert (
        choice["line"].startswith(f"live window: the full {size}x{size}: expected ") and choice["line"] in caplog.text
    )


@pytest.mark.skipif(
    importlib.util.find_spec("onnx") is None, reason='a smaller window needs onnx: pip install "zsseg_rt[window]"'
)
def test_camera_live_window_size_pins_the_window(tmp_path, tiny_bundle, monkeypatch):
    """``--live --window-size 32``: each frame in one window of 32 (the tiny graph's 64 rewritten), nothing measured
    (a clock that fails if read), the label maps at the frame's size, --stats-json's window 32; ``--window-size 40``
    is refused in one line (exit 1, when the Engine opens: the bundle says which sizes), nothing written."""
    from zsseg_rt import cli
    from zsseg_rt.stream.video_filter import live_window

    monkeypatch.setattr(live_window, "CLOCK", lambda: pytest.fail("a pinned window is not measured"))
    clip = write_band_clip(tmp_path / "clip.avi", frames=4, fps=10.0, size=(160, 120))
    labels, stats = tmp_path / "labels", tmp_path / "stats.json"
    argv = ["camera", clip, "--bundle", tiny_bundle, "--classes", "a,b,c", "--labels-out", str(labels), "--live"]
    assert cli.main([*argv, "--window-size", "32", "--stats-json", str(stats)]) == 0
    assert read_labels(str(labels), 3).shape == (120, 160)
    with open(stats, encoding="utf-8") as handle:
        preset = json.load(handle)["preset"]
    assert preset["window"] == [32, 32] and "window_choice" not in preset
    refused = _camera([*argv[1:-2], str(tmp_path / "l2"), "--live", "--window-size", "40"])
    assert refused.returncode == 1, refused.stderr  # (refused when the Engine opens: the bundle says the sizes)
    assert refused.stderr.strip().splitlines()[-1] == (
        "zsseg camera: error: --window-size: expected a multiple of 16 in [16, 64] (this bundle's patch and graph "
        "window), got 40"
    ), refused.stderr
    assert not (tmp_path / "l2").exists() or _visible(tmp_path / "l2") == []
