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
from zsseg_rt.console.arguments import add_engine_arguments, engine_kwargs
from zsseg_rt.console.run_arguments import add_run_arguments, in_flag_words, run_values


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
    from zsseg_rt.outputs.kinds import add_output_arguments, output_help

    p.add_argument("-o", "--output", action="append", default=[], help=output_help("-o"))  # from the kinds' rows
    add_engine_arguments(p, "camera")  # --backend, --mode (fast here), --prepare, --max-pixels, ... (zsseg_rt.options)
    p.set_defaults(mode=None)  # not given: fast where the bundle has it, else its one order (session.default_mode)
    p.add_argument("--no-progress", action="store_true", help="no progress bar for video files and folders")
    add_run_arguments(p, "camera")  # the run options from their rows (zsseg_rt.options.run_rows): --fps, --live, ...
    add_output_arguments(p, "-o")  # the kinds' own options: --frame-id, --no-overlay-topic (their rows)
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    p.set_defaults(func=run_camera_command)
    return p


def session_options(args: argparse.Namespace) -> Any:
    """The :class:`~zsseg_rt.stream.loop.session_options.SessionOptions` of the parsed flags: the run options' rows
    (``run_values``), the ``-o`` specs and the output kinds' own options."""
    from zsseg_rt.outputs.kinds import output_values
    from zsseg_rt.stream.loop.session_options import SessionOptions

    values = run_values(args, "camera")  # every run option's flag (zsseg_rt.options.run_rows)
    return SessionOptions(outputs=list(args.output), output_options=output_values(args, "-o"), **values)


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
    from zsseg_rt.console.errors import refuse_stdout

    refuse_stdout(args, "-o display:// shows the frames, --preview PORT serves them")  # -o - made a folder named -
    with in_flag_words():  # a Session's refusals said with the flags (ZssegError.cli)
        return _session(args).run()


def _session(args) -> Any:
    """The Session of the parsed flags."""
    from zsseg_rt.cli.camera_progress import camera_progress
    from zsseg_rt.stream.loop.session import Session

    return Session(
        args.sources,
        args.bundle,
        args.classes or None,
        options=session_options(args),
        engine_options=engine_kwargs(args, "camera"),  # every Engine flag (zsseg_rt.options)
        max_pixels=args.max_pixels,
        progress=camera_progress(args.no_progress),
    )


def main(argv=None) -> int:
    """Standalone entry: ``python -m zsseg_rt.cli.camera camera SOURCE ...``."""
    parser = argparse.ArgumentParser(prog="zsseg")
    add_command(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    from zsseg_rt.console.errors import run_command

    return run_command(args.func, args)


if __name__ == "__main__":
    sys.exit(main())
