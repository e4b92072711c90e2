"""The video options of ``zsseg camera`` (``--labels-out``, ``--stabilize``, ``--stabilize-delay``,
``--keyframe-every``, ``--adaptive-keyframes``, ``--temporal-consistency``) and what they build: the
:class:`~zsseg_rt.stream.video_filter.video.VideoSegmenter` around the Engine. The options are the flags here; what they build
is the core's (``zsseg_rt.stream.loop.session_options``, which the Session runs; issue 80, item 1): the functions below are
that module's, kept by these names for one release. Light at import (the CLI's ``--help``)."""

from __future__ import annotations

import argparse
from typing import Any, Optional

from zsseg_rt.console.arguments import whole_number
from zsseg_rt.options import LIVE, Preset

__all__ = [
    "LIVE_HELP",
    "add_video_arguments",
    "check_video_sources",
    "engine_preset",
    "engine_test_scale",
    "video_segmenter",
]

# --live is the preset zsseg_rt.options.LIVE (the Engine and the VideoSegmenter take it; standard library only, so
# --help stays light): its help is the preset's summary
LIVE_HELP = (
    f"{LIVE.summary} (--keyframe-every K: another interval; with --adaptive-keyframes the longest gap); with the "
    "default --backend auto, the fastest precision that passed the accuracy gate on this CPU (prepare it once: zsseg "
    'build-engine BUNDLE --backend auto). The run says what it trades at its start and in --stats-json ("preset")'
)


def add_video_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the video options to the ``camera`` parser."""
    from zsseg_rt.outputs.kinds import flag_help

    group = parser.add_argument_group("video labels (docs/video.md)")
    group.add_argument("--labels-out", metavar="DIR", help=flag_help("labels"))  # the labels row's words
    group.add_argument(
        "--stabilize",
        action="store_true",
        help="stable labels: each frame's class scores blended with the previous ones warped along the optical flow, "
        "with hysteresis against near-ties, reset on a scene cut (a windowed bundle without PAMR)",
    )
    group.add_argument(
        "--stabilize-delay",
        type=whole_number(1),
        metavar="N",
        help="recorded video (a file or folder): --stabilize with N frames of look-ahead: each frame's labels also use "
        "the N frames after it and are written when those have been read (smoother labels, a second optical flow "
        "per frame, N frames of latency); refused for a live camera",
    )
    group.add_argument(
        "--keyframe-every",
        type=whole_number(1),
        metavar="K",
        help="run the encoder on every K-th frame only and propagate its labels along the optical flow in between "
        "(also a keyframe on a scene cut, a vocabulary change or a failed flow); with --adaptive-keyframes the "
        "longest gap (default 8)",
    )
    group.add_argument(
        "--adaptive-keyframes",
        action="store_true",
        help="a keyframe also as soon as the flow's confidence drops (fast motion, occlusions)",
    )
    group.add_argument(
        "--live",
        action="store_true",
        help=LIVE_HELP,
    )
    group.add_argument(
        "--temporal-consistency",
        action="store_true",
        help="also measure each source's flow-warped temporal consistency in --stats-json (a DIS flow per frame: "
        "costs CPU time; flicker and the end-to-end frame rate are always measured)",
    )


def check_video_sources(args: argparse.Namespace, sources: Any) -> None:
    """The video options' refusals with these sources (``zsseg_rt.stream.loop.session_options.check_video_sources``)."""
    from zsseg_rt.stream.loop.session_options import check_video_sources as check

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
    from zsseg_rt.stream.loop.session_options import video_segmenter as build

    return build(args, engine)
