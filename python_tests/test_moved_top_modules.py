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


def test_the_package_installs_these_moves():
    assert zsseg_rt._MOVED == NEW


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


STREAM_ROOMS = {
    f"zsseg_rt.stream.{name}": f"zsseg_rt.stream.video_filter.{name}"
    for name in ("temporal", "video", "video_metrics", "lookahead", "filter_arrays")
}


def test_the_video_filters_old_paths_are_its_room(tmp_path):
    """stream/'s rooms (issue 80, item 1): the video filter's modules under zsseg_rt/stream/video_filter/, their old
    paths the very modules with the warning; no module file is left at an old path."""
    import zsseg_rt.stream

    assert zsseg_rt.stream._MOVED == STREAM_ROOMS
    assert_moved(STREAM_ROOMS)
    stream = Path(zsseg_rt.stream.__file__).parent
    assert [old for old in STREAM_ROOMS if (stream / f"{old.rsplit('.', 1)[1]}.py").exists()] == []
    rooms = {p.name for p in stream.iterdir() if p.is_dir() and (p / "__init__.py").is_file()}
    assert {"sources", "video_filter"} <= rooms
