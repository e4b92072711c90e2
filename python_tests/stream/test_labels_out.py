"""``zsseg camera --labels-out DIR``: a 16-bit PNG of class indices per frame named by its frame number, the class list
in classes.json (with the frame each vocabulary starts at), staged until the run ends well (a failed write leaves the
folder as it was, with no temporary behind; the camera's whole policy: test_output_policy.py), and the camera command
end to end with --stabilize / --keyframe-every and the video metrics in --stats-json."""

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

from zsseg_rt.stream import LabelFolderSink  # noqa: E402
from zsseg_rt.stream.labels import read_labels  # noqa: E402
from zsseg_rt.stream.sources import open_source  # noqa: E402
from zsseg_rt.stream.video_metrics import VideoMetrics  # noqa: E402


def _result(labels, names):
    return SimpleNamespace(labels=np.asarray(labels), class_names=list(names))


def test_label_pngs_are_16_bit_named_by_frame_with_the_classes_beside(tmp_path):
    sink = LabelFolderSink(str(tmp_path / "labels"))
    names = [f"class{i}" for i in range(301)]  # label 300 needs more than 8 bits
    first = np.arange(12, dtype=np.int32).reshape(3, 4) * 25
    sink.write_result(SimpleNamespace(index=0), _result(first, names))
    sink.write_result(SimpleNamespace(index=7), _result(first[::-1], names))  # frames 1-6 dropped (a live camera)
    sink.write_result(SimpleNamespace(index=8), _result(np.ones((3, 4), np.int32), ["wall", "floor"]))
    assert _visible(tmp_path / "labels") == []  # staged until the sink is closed (the run ended well)
    sink.close()
    assert _visible(tmp_path / "labels") == ["000000.png", "000007.png", "000008.png", "classes.json"]
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
    with pytest.raises(OSError, match=r"'.*000000.png' \(and 3 more\) exists already: pass overwrite=True"):
        LabelFolderSink(str(tmp_path / "labels"))  # Python's words for the flag


def _visible(folder) -> list:
    return sorted(name for name in os.listdir(folder) if not name.startswith(".")) if os.path.isdir(folder) else []


def test_a_failed_write_keeps_the_old_maps_and_leaves_no_temporary(tmp_path, monkeypatch):
    folder = tmp_path / "labels"
    sink = LabelFolderSink(str(folder))
    sink.write_result(SimpleNamespace(index=3), _result(np.zeros((2, 2), np.int32), ["a", "b"]))
    sink.close()
    before = {name: (folder / name).read_bytes() for name in os.listdir(folder)}
    sink = LabelFolderSink(str(folder), overwrite=True)
    sink.write_result(SimpleNamespace(index=0), _result(np.ones((2, 2), np.int32), ["a", "b", "c"]))
    real_replace = os.replace

    def disk_full(source, target):
        if str(target).endswith("000003.png"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_replace(source, target)

    monkeypatch.setattr(os, "replace", disk_full)
    message = r"cannot write '.*labels/000003.png': No space left on device \(2 files staged before it; nothing in"
    with pytest.raises(OSError, match=message):
        sink.write_result(SimpleNamespace(index=3), _result(np.ones((2, 2), np.int32), ["a", "b", "c"]))
    monkeypatch.undo()
    sink.abort()
    assert {name: (folder / name).read_bytes() for name in os.listdir(folder)} == before  # no staging folder left


def test_a_labels_folder_that_is_a_file_is_refused(tmp_path):
    target = tmp_path / "taken"
    target.write_text("x")
    with pytest.raises(OSError, match="is a file, not a folder"):
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
    from zsseg_rt.cli_errors import CliError

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
    """``--live`` (issue 65): the Engine gets ``test_scale="window"`` (one window a frame) and the filter a keyframe
    every 4 with the cheaper flow (DIS fast at 1/4); a keyframe interval given keeps its value; the look-ahead is
    refused with it in one line. Control: without ``--live`` the official resize (None) and the default flow."""
    import argparse

    from zsseg_rt.cli.camera import add_command
    from zsseg_rt.cli.camera_video import check_video_sources, engine_test_scale, video_segmenter
    from zsseg_rt.cli_errors import CliError
    from zsseg_rt.stream.temporal import TemporalOptions

    parser = argparse.ArgumentParser()
    add_command(parser.add_subparsers())

    def args(*flags):
        return parser.parse_args(["camera", "clip.avi", "--bundle", "b", "--classes", "a", *flags])

    live = video_segmenter(args("--live"), SimpleNamespace()).options
    assert engine_test_scale(args("--live")) == "window"
    assert (live.keyframe_every, live.flow_preset, live.flow_stride, live.stabilize) == (4, "fast", 4, False)
    assert video_segmenter(args("--live", "--keyframe-every", "2"), SimpleNamespace()).options.keyframe_every == 2
    adaptive = video_segmenter(args("--live", "--adaptive-keyframes"), SimpleNamespace()).options
    assert adaptive.adaptive and adaptive.keyframe_every == 8 and adaptive.flow_preset == "fast"
    stable = video_segmenter(args("--live", "--stabilize"), SimpleNamespace()).options
    assert stable.stabilize and stable.keyframe_every == 4
    with pytest.raises(CliError, match=r"--stabilize-delay 2 waits for frames ahead, --live is for camera rate"):
        check_video_sources(args("--live", "--stabilize-delay", "2"), [SimpleNamespace(live=False, name="c")])
    # the help says what the option sets (its text is not made from zsseg_rt.stream.live: --help stays light)
    from zsseg_rt.cli.camera_video import LIVE_HELP
    from zsseg_rt.stream.live import LIVE_FLOW, LIVE_KEYFRAME_EVERY

    assert (
        f"every {LIVE_KEYFRAME_EVERY}th frame" in LIVE_HELP and f"DIS '{LIVE_FLOW[0]}' at 1/{LIVE_FLOW[1]}" in LIVE_HELP
    )
    # the control
    assert engine_test_scale(args()) is None
    plain = video_segmenter(args("--keyframe-every", "4"), SimpleNamespace()).options
    defaults = TemporalOptions()
    assert (plain.flow_preset, plain.flow_stride) == (defaults.flow_preset, defaults.flow_stride) != ("fast", 4)


@pytest.mark.parametrize("live", [True, False], ids=["live", "control"])
def test_camera_live_runs_one_window_a_keyframe_every_4(tmp_path, tiny_bundle, monkeypatch, live):
    """``zsseg camera CLIP --live`` (in this process): the stream's Engine fits each frame in one window (its test
    resize is the graph's size both ways), 2 keyframes of 8 frames, the label maps at the frame's size. Control:
    without ``--live`` the bundle's resize and every frame a keyframe."""
    import zsseg_rt.runtime as runtime
    from zsseg_rt import cli

    made = []

    class Recorded(runtime.Engine):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(runtime, "Engine", Recorded)
    clip = write_band_clip(tmp_path / "clip.avi", frames=8, fps=10.0, size=(160, 120))
    labels, stats = tmp_path / "labels", tmp_path / "stats.json"
    argv = [clip, "--bundle", tiny_bundle, "--classes", "a,b,c", "--labels-out", str(labels)]
    assert cli.main(["camera", *argv, "--stats-json", str(stats), *(["--live"] if live else [])]) == 0
    size = made[0].meta.crop_size
    assert len(made) == 1 and (made[0].pipeline.test_scale == [size, size]) is live
    assert read_labels(str(labels), 7).shape == (120, 160)
    if not live:
        return
    with open(stats, encoding="utf-8") as handle:
        video = json.load(handle)["sources"][0]["video"]
    assert video["frames"] == 8 and video["keyframes"] == 2 and video["propagated"] == 6
