"""The loose top-level modules that moved into rooms (issue 80, item 4): their old import paths
(``zsseg_rt.output_plan``, ``zsseg_rt.cli_errors``, ...) still work for one release, as the very modules of the new
paths with a DeprecationWarning naming the new path; no alias file is left at the top of the package."""

from __future__ import annotations

from pathlib import Path

import pytest
from moved_modules import assert_moved

import zsseg_rt

NEW = {
    "zsseg_rt.output_plan": "zsseg_rt.outputs.plan",
    "zsseg_rt.output_owner": "zsseg_rt.outputs.owner",
    "zsseg_rt.cli_errors": "zsseg_rt.console.errors",
    "zsseg_rt.cli_types": "zsseg_rt.console.arguments",
    "zsseg_rt.progress": "zsseg_rt.console.progress",
    "zsseg_rt.speed": "zsseg_rt.console.speed",
    "zsseg_rt.signal_phases": "zsseg_rt.console.signal_phases",
}
# the output kinds and their sinks: out of zsseg_rt/stream/ into the outputs room (issue 80, item 2)
OUTPUTS_ROOM = {
    "zsseg_rt.stream.output_kinds": "zsseg_rt.outputs.kinds",
    **{
        f"zsseg_rt.stream.{name}": f"zsseg_rt.outputs.{name}"
        for name in (
            "sink_base",
            "sinks",
            "file_sinks",
            "video_writers",
            "mcap_sink",
            "foxglove_sink",
            "coco_sink",
            "robot_sinks",
            "ros_messages",
            "object_messages",
            "labels",
            "result_outputs",
            "loopback",
        )
    },
    # CameraOutputs and ResultOutputs merged into RunOutputs (issue 88 item 3): its module is the old paths' module
    "zsseg_rt.stream.camera_outputs": "zsseg_rt.outputs.run_outputs",
}
# the one front end of every command's outputs (2026-11-29): the stream's former module is RunOutputs' module
MERGED = {"zsseg_rt.outputs.camera_outputs": "zsseg_rt.outputs.run_outputs"}


def test_the_package_installs_these_moves():
    """One deprecation map and one finder for the whole package (issue 88 item 4: five finders before)."""
    from zsseg_rt import aliases

    every = {**NEW, **OUTPUTS_ROOM, **MERGED}
    assert {old: aliases.MOVED[old][0] for old in every} == every
    assert [type(f).__name__ for f in __import__("sys").meta_path].count("MovedModules") == 1


def test_every_old_path_is_the_new_module_and_warns():
    assert_moved(NEW)


@pytest.mark.parametrize(
    "moved",
    [{"zsseg_rt.console.speed": "zsseg_rt.console.progress"}, {"zsseg_rt.console.speed": "zsseg_rt.console.speed"}],
    ids=["another-module", "no-warning"],
)
def test_the_check_can_fail(moved):
    """Controls: an old path that is another module object, and one that imports without a DeprecationWarning,
    each fail the check."""
    with pytest.raises(AssertionError):
        assert_moved(moved)


def test_at_most_ten_loose_modules_and_no_alias_files():
    top = Path(zsseg_rt.__file__).parent
    loose = sorted(p.stem for p in top.glob("*.py") if p.stem != "__init__")
    assert len(loose) <= 10, loose
    assert not set(loose) & {old.rpartition(".")[2] for old in NEW}, loose


def test_the_merged_front_ends_old_path_and_names_are_run_outputs():
    """``zsseg_rt.outputs.camera_outputs`` (2026-11-28 to -29) is RunOutputs' module with the warning; the two names
    of the stream's front end is the one class."""
    assert_moved(MERGED)
    from zsseg_rt.outputs import run_outputs

    assert run_outputs.CameraOutputs is run_outputs.RunOutputs
    assert not hasattr(run_outputs, "ResultOutputs")  # its plan_for took another order: no silent alias


def test_the_outputs_old_paths_are_its_room():
    """The outputs room (issue 80, item 2): every output kind and sink under zsseg_rt/outputs/, their old paths under
    zsseg_rt.stream the very modules with the warning; no module file is left at an old path, and the room's
    ``__init__`` imports none of them (the output plan and the owner lock stay in the foundation's reach)."""
    assert_moved(OUTPUTS_ROOM)
    stream = Path(zsseg_rt.__file__).parent / "stream"
    assert [old for old in OUTPUTS_ROOM if (stream / f"{old.rsplit('.', 1)[1]}.py").exists()] == []
    outputs = Path(zsseg_rt.__file__).parent / "outputs"
    assert all((outputs / f"{new.rsplit('.', 1)[1]}.py").is_file() for new in OUTPUTS_ROOM.values())
    assert "import" not in (outputs / "__init__.py").read_text(encoding="utf-8").split('"""')[-1]


STREAM_ROOMS = {
    **{
        f"zsseg_rt.stream.{name}": f"zsseg_rt.stream.video_filter.{name}"
        for name in ("temporal", "video", "video_metrics", "lookahead", "filter_arrays")
    },
    "zsseg_rt.stream.ffmpeg_log": "zsseg_rt.stream.sources.ffmpeg_log",
    "zsseg_rt.stream.capabilities": "zsseg_rt.console.opencv_build",
    **{
        f"zsseg_rt.stream.{name}": f"zsseg_rt.stream.loop.{name}"
        for name in (
            "runner",
            "flight",
            "live",
            "session",
            "session_options",
            "session_summary",
            "protocols",
            "capture",
            "vocabulary",
        )
    },
}


def test_the_video_filters_old_paths_are_its_room(tmp_path):
    """stream/'s rooms (issue 80, item 1): the video filter's modules under zsseg_rt/stream/video_filter/, the loop's
    (the Session, the runner, the capture threads) under stream/loop/, FFmpeg's messages of a source under
    stream/sources/, OpenCV's capabilities (shared with the outputs' window sink) in zsseg_rt/console/; their old
    paths the very modules with the warning; no module file is left at an old path, and none stands loose beside the
    rooms."""
    import zsseg_rt.stream
    from zsseg_rt import aliases

    assert {old: aliases.MOVED[old][0] for old in STREAM_ROOMS} == STREAM_ROOMS
    assert_moved(STREAM_ROOMS)
    stream = Path(zsseg_rt.stream.__file__).parent
    assert [old for old in STREAM_ROOMS if (stream / f"{old.rsplit('.', 1)[1]}.py").exists()] == []
    rooms = {p.name for p in stream.iterdir() if p.is_dir() and (p / "__init__.py").is_file()}
    assert {"sources", "video_filter", "loop"} <= rooms
    assert sorted(p.stem for p in stream.glob("*.py")) == ["__init__"]


def test_the_stream_package_keeps_its_public_names():
    """``zsseg_rt.stream`` exports what it did before the rooms (``Session``, the sinks, the sources, ...), each the
    object of its module in the room; the outputs' names on first use."""
    import zsseg_rt.stream
    from zsseg_rt.outputs.sinks import MjpegSink
    from zsseg_rt.stream.loop.session import Session

    assert zsseg_rt.stream.Session is Session and zsseg_rt.stream.MjpegSink is MjpegSink
    assert [name for name in zsseg_rt.stream.__all__ if not hasattr(zsseg_rt.stream, name)] == []
    assert {"Session", "SessionOptions", "StreamRunner", "McapSink", "OUTPUT_KINDS", "open_source"} <= set(
        zsseg_rt.stream.__all__
    )
    with pytest.raises(AttributeError, match="no attribute 'NoSuchName'"):
        zsseg_rt.stream.NoSuchName  # noqa: B018 (the attribute lookup is what fails)
