"""The video options of ``zsseg camera`` (``--labels-out``, ``--stabilize``, ``--stabilize-delay``,
``--keyframe-every``, ``--adaptive-keyframes``, ``--temporal-consistency``) and what they build: the
:class:`~zsseg_rt.stream.video.VideoSegmenter` around the Engine. The command's side (issue 63, item 5): here the
parsed arguments become the library's typed options (``VideoSegmenter``'s keywords); nothing under ``stream/``
reads an argparse Namespace. Light at import (the CLI's ``--help``)."""

from __future__ import annotations

import argparse
from typing import Any, Optional

from zsseg_rt.cli_types import whole_number
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
    group = parser.add_argument_group("video labels (docs/video.md)")
    group.add_argument(
        "--labels-out",
        metavar="DIR",
        help="write each frame's class-index map as a 16-bit PNG named by its frame number (DIR/000042.png), with "
        "the class list in DIR/classes.json; several sources: put {source} in DIR. Staged while the run goes on and "
        "put in place when it ends well; DIR then holds this run's maps only (--overwrite: an earlier run's are "
        "replaced; files zsseg_rt did not write are never touched)",
    )
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
    """Refuse what the video options cannot do with these sources, before the model loads: ``--stabilize-delay``
    on a live source (its frames would wait for frames not yet filmed), or with keyframes.

    Raises:
        CliError: one line naming the option, the source and why.
    """
    from zsseg_rt.cli_errors import CliError

    delay = getattr(args, "stabilize_delay", None)
    if delay and getattr(args, "live", False):
        raise CliError(
            f"--stabilize-delay {delay} waits for frames ahead, --live is for camera rate: choose one (--live "
            "--stabilize for stable live labels)"
        )
    if not delay:
        return
    live = [source for source in sources if getattr(source, "live", False)]
    if live:
        raise CliError(
            f"--stabilize-delay {delay}: {live[0].name} is live, and a frame's labels would wait for {delay} frames "
            "not yet filmed; use --stabilize (causal) on a camera, the look-ahead on a recorded file or folder"
        )
    if getattr(args, "adaptive_keyframes", False) or (getattr(args, "keyframe_every", None) or 1) != 1:
        raise CliError("--stabilize-delay runs the encoder on every frame: it does not combine with --keyframe-every")


def engine_preset(args: argparse.Namespace) -> Optional[Preset]:
    """``Engine(preset=)`` of the stream: ``zsseg_rt.options.LIVE`` with ``--live`` (the Engine's one window a frame;
    the ``VideoSegmenter`` of that Engine takes its keyframes and flow), else None."""
    return LIVE if getattr(args, "live", False) else None


def engine_test_scale(args: argparse.Namespace) -> Any:
    """``Engine(test_scale=)`` that ``--live`` means (the :data:`LIVE` preset's), else None (the bundle's resize)."""
    preset = engine_preset(args)
    return preset.engine_options()["test_scale"] if preset is not None else None


def video_segmenter(args: argparse.Namespace, engine: Any) -> Any:
    """What the stream loop segments with: the Engine itself, or a ``VideoSegmenter`` around it when
    ``--stabilize`` / ``--keyframe-every`` / ``--adaptive-keyframes`` / ``--live`` ask for one.

    Raises:
        CliError: an option the bundle cannot do (``--stabilize`` without per-class scores).
    """
    from zsseg_rt.cli_errors import CliError

    delay = int(getattr(args, "stabilize_delay", None) or 0)
    stabilize = bool(getattr(args, "stabilize", False)) or delay > 0
    adaptive = bool(getattr(args, "adaptive_keyframes", False))
    every = getattr(args, "keyframe_every", None)
    preset = getattr(engine, "preset", None)  # --live: the Engine's preset, whose keyframes the segmenter takes
    if every is None and preset is not None:
        every = preset.video_options().get("keyframe_every")
    if adaptive and every == 1:
        raise CliError(
            "--adaptive-keyframes needs --keyframe-every K >= 2 (the longest gap), or no --keyframe-every (8)"
        )
    if not stabilize and not adaptive and (every or 1) == 1 and preset is None:
        return engine  # (a preset's segmenter, even one that propagates nothing, says what the preset trades)
    from zsseg_rt.pipeline.class_scores import ClassScoresUnavailable
    from zsseg_rt.stream.video import VideoSegmenter

    try:
        return VideoSegmenter(
            engine, stabilize=stabilize, keyframe_every=every, adaptive=adaptive, stabilize_delay=delay
        )
    except ClassScoresUnavailable as exc:
        raise CliError(f"--stabilize: {exc}") from None
