"""``zsseg camera SOURCE [SOURCE ...]``: live segmentation of cameras / streams / video files / image folders, all
sources through one Engine (one model in memory), their frames batched into one call per step.

Registered by its row in ``zsseg_rt.cli.COMMANDS`` (``add_command``). Here the flags become a
:class:`zsseg_rt.stream.Session` (``zsseg_rt/stream/loop/session.py``: the sources, outputs, video filter, stream loop and
summary, which a Python app runs the same way) and its progress bar (``zsseg_rt.cli.camera_progress``).
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any, List, Sequence

from zsseg_rt.cli import command_parser
from zsseg_rt.cli.camera_video import add_video_arguments
from zsseg_rt.console.arguments import add_engine_arguments, engine_kwargs, port_number, real_number, whole_number


def add_command(subparsers) -> argparse.ArgumentParser:
    """Add the ``camera`` subcommand to an ``argparse`` subparsers object; returns its parser."""
    p = command_parser(
        subparsers,
        "camera",
        description="Segment a live camera or stream (the newest frame is always processed, stale frames dropped) "
        "or a video file / image folder (every frame processed, with a progress bar; the output video keeps the "
        "file's frame rate). Sources: 0 or /dev/video0 (V4L2), csi://0 (Jetson CSI via GStreamer), rtsp://... / "
        "http://..., a video file, an image folder; several of them share one model, their frames segmented "
        "together in one batched call per step (NAME=SOURCE names one). Outputs: display:// (window), out.mp4 / "
        "out.avi, a folder/ (with several sources: a name with {source}, e.g. out/{source}.mp4), and --preview "
        "PORT (MJPEG in a browser, for headless devices, with a box to change the classes live; a grid of all "
        "sources). Ctrl-C / SIGTERM stop cleanly.",
    )
    p.add_argument(
        "sources",
        nargs="+",
        metavar="SOURCE",
        help="0, /dev/video0, csi://0, rtsp://host/stream, http://..., clip.mp4 or a folder; several: one model, "
        "their frames batched; NAME=SOURCE names one (front=/dev/video0) for {source} in -o and the statistics",
    )
    p.add_argument("--bundle", required=True, help="bundle directory written by `zsseg export`")
    p.add_argument("--classes", help='comma-separated class names, e.g. "person,floor,wall"')
    p.add_argument(
        "--class-file",
        help="text file of class names (one per line or comma-separated), watched: "
        "edit it while streaming to change the vocabulary",
    )
    from zsseg_rt.outputs.kinds import add_output_arguments, flag_help, output_help

    p.add_argument("-o", "--output", action="append", default=[], help=output_help("-o"))  # from the kinds' rows
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace existing outputs (a video file, an image folder's frames, a --labels-out folder's maps, "
        "--stats-json) and remove what an interrupted run left (NAME.partial.EXT, a staging folder); without it "
        "they are refused before anything runs. Every output is staged (a video as NAME.partial.EXT) and put in "
        "place only when the run has ended well: a failed run replaces nothing",
    )
    p.add_argument(
        "--preview",
        type=port_number(free_port=True),
        metavar="PORT",
        help="serve the preview page (MJPEG stream, a box to change the classes) on this port (0: any free port, "
        "printed at start)",
    )
    p.add_argument(
        "--preview-host",
        default="127.0.0.1",
        help="interface for --preview (default 127.0.0.1; 0.0.0.0 serves the network, no auth)",
    )
    p.add_argument(
        "--preview-readonly",
        action="store_true",
        help="the --preview page shows the stream only (by default it has a box to change the classes live)",
    )
    add_engine_arguments(p, "camera")  # --backend, --mode (fast here), --prepare, --max-pixels, ... (zsseg_rt.options)
    p.set_defaults(mode=None)  # not given: fast where the bundle has it, else its one order (session.default_mode: E2)
    p.add_argument("--width", type=whole_number(1), help="requested capture width (V4L2 / CSI)")
    p.add_argument("--height", type=whole_number(1), help="requested capture height (V4L2 / CSI)")
    p.add_argument(
        "--fps",
        type=real_number(above=0),
        help="requested capture fps of a camera; the output video's fps (default: the input file's, else 30)",
    )
    p.add_argument("--loop", action="store_true", help="restart a video file / folder at its end")
    p.add_argument(
        "--every-frame",
        action="store_true",
        help="live sources too: process every frame instead of the newest (files and folders always are)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar for video files and folders")
    p.add_argument("--max-frames", type=whole_number(1), help="stop after this many processed frames (of each source)")
    p.add_argument(
        "--max-reconnects",
        type=whole_number(0),
        help="give up on a source after this many failed reconnects (default: never); the others go on",
    )
    p.add_argument("--alpha", type=float, default=0.5, help="overlay opacity in [0, 1]")
    p.add_argument("--no-legend", action="store_true", help="no legend / FPS text on the overlay")
    add_video_arguments(p)  # --labels-out, --stabilize, --keyframe-every, ... (zsseg_rt.cli.camera_video)
    add_output_arguments(p, "-o")  # the kinds' own options: --frame-id, --no-overlay-topic (their rows)
    p.add_argument(
        "--stats-json",
        help='write the final stream statistics to this JSON file (with "outputs": each video file\'s codec, '
        'frames and fps; "sources": per source fps, latency p50/p99, drops, reconnects, damaged packets skipped '
        "(decode_errors), state and error)",
    )
    p.add_argument(
        "--save-json",
        metavar="FILE",
        help=flag_help("coco", before="(video files and image folders) "),  # the coco row's
    )
    p.add_argument(
        "--objects",
        action="store_true",
        help="find each frame's objects: each class's connected regions (box, centroid, area, score, mask; "
        "--object-min-area, --max-objects), written as COCO instances into --save-json",
    )
    from zsseg_rt.outputs.tracks_sink import add_track_arguments

    add_track_arguments(p, "one tracker per source")  # --track, --tracks-out
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    p.set_defaults(func=run_camera_command)
    return p


# the Session's options that are the command's flags of the same name (the others: run_camera_command)
_SAME_NAMES = (
    "labels_out", "save_json", "stats_json", "overwrite", "preview", "preview_host", "preview_readonly", "class_file",
    "width", "height", "fps", "loop", "every_frame", "max_frames", "max_reconnects", "alpha", "allow_partial_images",
    "live", "stabilize", "stabilize_delay", "keyframe_every", "adaptive_keyframes", "temporal_consistency", "objects",
    "track", "tracks_out",
)  # fmt: skip


def session_options(args: argparse.Namespace) -> Any:
    """The :class:`~zsseg_rt.stream.loop.session_options.SessionOptions` of the parsed flags."""
    from zsseg_rt.outputs.kinds import output_values
    from zsseg_rt.stream.loop.session_options import SessionOptions

    values = {name: getattr(args, name) for name in _SAME_NAMES if hasattr(args, name)}
    return SessionOptions(
        outputs=list(args.output), legend=not args.no_legend, output_options=output_values(args, "-o"), **values
    )


def output_names(spec: str, names: Sequence[str]) -> List[str]:
    """The ``-o`` spec of each source (``zsseg_rt.stream.loop.session_options.output_names``)."""
    from zsseg_rt.stream.loop.session_options import output_names as expand

    return expand(spec, names)


def _kernel_line(report) -> str:
    """The summary's post-processing kernel line (``zsseg_rt.stream.loop.session_summary.kernel_line``)."""
    from zsseg_rt.stream.loop.session_summary import kernel_line

    return kernel_line(report)


def run_camera_command(args) -> int:
    """Entry point of ``zsseg camera`` (argparse namespace from ``add_command``): the flags as a Session, run."""
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(levelname)s %(message)s"
    )
    from zsseg_rt.cli.camera_progress import camera_progress
    from zsseg_rt.console.errors import refuse_stdout
    from zsseg_rt.stream.loop.session import Session

    refuse_stdout(args, "-o display:// shows the frames, --preview PORT serves them")  # -o -: F18
    session = Session(
        args.sources,
        args.bundle,
        args.classes or None,
        options=session_options(args),
        engine_options=engine_kwargs(args, "camera"),  # every Engine flag (zsseg_rt.options)
        max_pixels=args.max_pixels,
        progress=camera_progress(args.no_progress),
    )
    return session.run()


def main(argv=None) -> int:
    """Standalone entry: ``python -m zsseg_rt.cli.camera camera SOURCE ...``."""
    parser = argparse.ArgumentParser(prog="zsseg")
    add_command(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    from zsseg_rt.console.errors import run_command

    return run_command(args.func, args)


if __name__ == "__main__":
    sys.exit(main())
