"""What ``zsseg camera``'s video options build, kept here by these names for one release: the
:class:`~zsseg_rt.stream.video_filter.video.VideoSegmenter` around the Engine and its refusals are the core's
(``zsseg_rt.stream.loop.session_options``, which the Session runs); the flags themselves
(``--labels-out``, ``--stabilize``, ``--stabilize-delay``, ``--keyframe-every``, ``--adaptive-keyframes``,
``--live``, ``--temporal-consistency``) are rows of the run's option table (``zsseg_rt.options.run_rows``), generated
with the camera's other run options (``zsseg_rt.console.run_arguments``). Light at import (the CLI's ``--help``)."""

from __future__ import annotations

import argparse
from typing import Any, Optional

from zsseg_rt.options import LIVE, Preset
from zsseg_rt.options.run_rows import live_help

__all__ = [
    "LIVE_HELP",
    "check_video_sources",
    "engine_preset",
    "engine_test_scale",
    "video_segmenter",
]

LIVE_HELP = live_help()  # --live's help: the LIVE preset's summary first (its row's help_from)


def check_video_sources(args: argparse.Namespace, sources: Any) -> None:
    """The video options' refusals with these sources (``zsseg_rt.stream.loop.session_options.check_video_sources``)."""
    from zsseg_rt.console.run_arguments import in_flag_words
    from zsseg_rt.stream.loop.session_options import check_video_sources as check

    with in_flag_words():  # the flags' words (CliError)
        check(args, sources)


def engine_preset(args: argparse.Namespace) -> Optional[Preset]:
    """``Engine(preset=)`` of the stream: ``zsseg_rt.options.LIVE`` with ``--live`` (the Engine's one window a frame;
    the ``VideoSegmenter`` of that Engine takes its keyframes and flow), else None."""
    return LIVE if getattr(args, "live", False) else None


def engine_test_scale(args: argparse.Namespace) -> Any:
    """``Engine(test_scale=)`` that ``--live`` means (the :data:`LIVE` preset's), else None (the bundle's resize)."""
    preset = engine_preset(args)
    return preset.engine_options()["test_scale"] if preset is not None else None


def video_segmenter(args: argparse.Namespace, engine: Any) -> Any:
    """The Engine, or the ``VideoSegmenter`` the video options ask for
    (``zsseg_rt.stream.loop.session_options.video_segmenter``)."""
    from zsseg_rt.console.run_arguments import in_flag_words
    from zsseg_rt.stream.loop.session_options import video_segmenter as build

    with in_flag_words():  # the flags' words (CliError)
        return build(args, engine)
