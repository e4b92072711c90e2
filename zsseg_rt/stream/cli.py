"""``zsseg camera SOURCE``: live segmentation of a camera / stream / video file / image folder.

Wire it into the main CLI with ``add_camera_command(subparsers)``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

from zsseg_rt.cli_types import add_engine_arguments, port_number, real_number, whole_number

log = logging.getLogger("zsseg_rt.stream")


def add_camera_command(subparsers) -> argparse.ArgumentParser:
    """Add the ``camera`` subcommand to an ``argparse`` subparsers object; returns its parser."""
    p = subparsers.add_parser(
        "camera",
        help="segment a live camera, RTSP/HTTP stream, video file or image folder",
        description="Segment a live camera or stream (the newest frame is always processed, stale frames dropped) "
        "or a video file / image folder (every frame processed, with a progress bar; the output video keeps the "
        "file's frame rate). Sources: 0 or /dev/video0 (V4L2), csi://0 (Jetson CSI via GStreamer), rtsp://... / "
        "http://..., a video file, an image folder. Outputs: display:// (window), out.mp4 / out.avi, a folder/, "
        "and --preview PORT (MJPEG in a browser, for headless devices, with a box to change the classes live). "
        "Ctrl-C / SIGTERM stop cleanly.",
    )
    p.add_argument("source", help="0, /dev/video0, csi://0, rtsp://host/stream, http://..., clip.mp4 or a folder")
    p.add_argument("--bundle", required=True, help="bundle directory written by `zsseg export`")
    p.add_argument("--classes", help='comma-separated class names, e.g. "person,floor,wall"')
    p.add_argument(
        "--class-file",
        help="text file of class names (one per line or comma-separated), watched: "
        "edit it while streaming to change the vocabulary",
    )
    p.add_argument(
        "-o",
        "--output",
        action="append",
        default=[],
        help="display:// (window), a video file (.mp4/.m4v/.mov: H.264, which web browsers play, when PyAV is "
        "installed; .avi/.mkv: Motion JPEG), or a folder for images; repeatable",
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
    add_engine_arguments(
        p,
        backend_help="auto (TensorRT when engines were built, else ONNX Runtime), tensorrt, onnxruntime or torch",
        device_help="auto, cpu or cuda",
        mode_help="post-processing order: fast (default here: fused, less latency) or exact (the papers' order); "
        "see `zsseg segment --help`",
        backends=("auto", "tensorrt", "onnxruntime", "torch"),
        mode="fast",
    )
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
    p.add_argument("--max-frames", type=whole_number(1), help="stop after this many processed frames")
    p.add_argument(
        "--max-reconnects", type=whole_number(0), help="give up after this many failed reconnects (default: never)"
    )
    p.add_argument("--alpha", type=float, default=0.5, help="overlay opacity in [0, 1]")
    p.add_argument(
        "--max-pixels",
        type=int,
        default=None,
        help="refuse frames / folder images with more pixels than this, checked before decoding "
        "(default: $ZSSEG_MAX_PIXELS or 40000000; 0 = no limit)",
    )
    p.add_argument(
        "--allow-partial-images",
        action="store_true",
        help="an image folder's truncated or damaged images: segment what they hold instead of skipping them "
        "with a warning (the default)",
    )
    p.add_argument("--no-legend", action="store_true", help="no legend / FPS text on the overlay")
    p.add_argument(
        "--stats-json",
        help='write the final stream statistics to this JSON file (with "outputs": each video file\'s codec, '
        "frames and fps)",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    p.set_defaults(func=run_camera_command)
    return p


def _initial_classes(args):
    from zsseg_rt.cli_errors import CliError

    if args.classes:
        return args.classes
    if args.class_file:
        from .vocabulary import ClassFileWatcher

        names = ClassFileWatcher(args.class_file).read()
        if names:
            return names
        raise CliError(f"class file {args.class_file!r} is empty: put one class name per line")
    raise CliError('give the vocabulary with --classes "a,b,c" or --class-file classes.txt')


NO_OUTPUT_MESSAGE = (
    "no output given and no window possible here (headless OpenCV or no display): give -o out.mp4 (a video file), "
    "-o frames/ (a folder of images), or --preview 8080 (watch it in a browser: MJPEG on http://127.0.0.1:8080/)"
)


def _build_sinks(args, runner_stats, fps: float, vocabulary=None):
    """The sinks ``-o`` and ``--preview`` ask for; with neither, a window when one can open, else an error (an MJPEG
    server is started only when asked for)."""
    from zsseg_rt.cli_errors import CliError

    from .capabilities import display_available, opencv_has_gui
    from .sinks import MjpegSink, open_sink

    if not args.output and args.preview is None and not (opencv_has_gui() and display_available()):
        raise CliError(NO_OUTPUT_MESSAGE)
    sinks = []
    try:
        for spec in args.output:
            sinks.append(open_sink(spec, fps=fps))
        if args.preview is not None:
            sinks.append(
                MjpegSink(
                    args.preview,
                    args.preview_host,
                    stats_provider=runner_stats,
                    vocabulary=None if args.preview_readonly else vocabulary,
                )
            )
        if not sinks:
            sinks.append(open_sink("display://"))
    except BaseException:  # e.g. StreamCapabilityError: close what was opened; the CLI prints one line
        for sink in sinks:
            sink.close()
        raise
    return sinks


def _progress_bar_class():
    """tqdm whose closing line is not a second copy of the line already on screen: ``close()`` prints the bar once
    more unless the last line it drew (an update, or a redraw under a log line) already shows the final count."""
    from tqdm import tqdm

    class ProgressBar(tqdm):
        _shown_n = -1  # the count of the last line drawn
        _closing = False

        def display(self, msg=None, pos=None):
            if msg is None:
                if self._closing and self._shown_n == self.n:
                    return True  # close(): the final count is on screen already; close() only ends the line
                self._shown_n = self.n
            return super().display(msg, pos)

        def close(self):
            self._closing = True
            super().close()

    return ProgressBar


def _progress(source, args):
    """A tqdm bar over the frames of a file or folder (every frame is processed), None for live sources."""
    if source.live or args.no_progress:
        return None
    total = None if args.loop else source.frame_count
    if args.max_frames is not None:
        total = min(total, args.max_frames) if total is not None else args.max_frames
    name = os.path.basename(os.path.normpath(source.name.split(":", 1)[-1]))
    return _progress_bar_class()(total=total, unit="frame", desc=name)


def run_camera_command(args) -> int:
    """Entry point of ``zsseg camera`` (argparse namespace from ``add_camera_command``)."""
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(levelname)s %(message)s"
    )
    from zsseg_rt.cli_errors import CliError
    from zsseg_rt.image_io import max_pixels_limit

    from .sources import open_source

    if args.preview_readonly and args.preview is None:
        raise CliError("--preview-readonly applies to the --preview page: give --preview PORT too")
    if not 0.0 <= args.alpha <= 1.0:
        raise CliError(f"--alpha is the overlay opacity, between 0 and 1; got {args.alpha}")
    classes = _initial_classes(args)
    max_pixels = max_pixels_limit(args.max_pixels)
    # SourceError / StreamCapabilityError: one line from zsseg_rt.cli_errors. Opened here, once: a missing camera
    # or file is an error at once (reconnecting is for a source lost while streaming).
    partial = bool(getattr(args, "allow_partial_images", False))
    source = open_source(
        args.source, width=args.width, height=args.height, fps=args.fps, max_pixels=max_pixels, allow_partial=partial
    )
    source.open()
    try:
        return _stream(args, source, classes, max_pixels)
    finally:
        source.close()


def _stream(args, source, classes, max_pixels: int) -> int:
    from zsseg_rt.runtime import Engine

    from .runner import StreamRunner

    holder: dict = {}

    def request_classes(names):  # the preview page's class box (POST /classes)
        if "runner" not in holder:
            raise RuntimeError("the stream is still starting (loading the model); try again in a moment")
        return holder["runner"].request_classes(names)

    # a file keeps its frame rate in the output video; --fps overrides; a folder or unknown rate: 30
    sinks = _build_sinks(
        args,
        lambda: holder["runner"].snapshot() if "runner" in holder else {},
        args.fps or source.fps or 30.0,
        vocabulary=request_classes,
    )
    try:
        engine = Engine(
            args.bundle,
            classes=classes,
            backend=args.backend,
            device=args.device,
            mode=args.mode,
            max_pixels=max_pixels,  # the frames' limit (0: none), as the source checks it
        )
    except BaseException:
        for sink in sinks:
            sink.close()
        raise
    if engine.weights_banner:
        log.warning("%s: %s (the overlay says so too)", args.bundle, engine.weights_banner)
    every_frame = args.every_frame or not source.live  # a file or folder is not a live camera: nothing is dropped
    log.info(
        "streaming %s with %s (%s) -> %s%s",
        source.name,
        engine.backend.name,
        ", ".join(engine.class_names),
        ", ".join(sink.name for sink in sinks),
        " (every frame)" if every_frame else " (newest frame; stale frames dropped)",
    )
    bar = _progress(source, args)
    runner = StreamRunner(
        engine,
        source,
        sinks,
        class_file=args.class_file,
        drop_stale=not every_frame,
        loop=args.loop,
        max_reconnects=args.max_reconnects,
        alpha=args.alpha,
        legend=not args.no_legend,
        max_frames=args.max_frames,
        on_result=(lambda *_: bar.update(1)) if bar is not None else None,
        source_opened=True,
    )
    holder["runner"] = runner
    if bar is None:
        stats = runner.run()
    else:
        from tqdm.contrib.logging import logging_redirect_tqdm

        with bar, logging_redirect_tqdm():  # log lines above the bar, not through it
            stats = runner.run()
    summary = stats.as_dict()
    summary["backend"] = engine.backend.name
    summary["outputs"] = [sink.describe() for sink in sinks if hasattr(sink, "describe")]  # video files: codec
    log.info(
        "stopped: %d frames processed, %d captured, %d dropped, %d reconnects, %.1f FPS",
        stats.processed,
        stats.captured,
        stats.dropped,
        stats.reconnects,
        stats.fps,
    )
    if args.stats_json:
        with open(args.stats_json, "w", encoding="utf-8") as handle:
            json.dump(summary, handle, indent=1)
    return 0 if runner.grabber.error is None else 1


def main(argv=None) -> int:
    """Standalone entry: ``python -m zsseg_rt.stream.cli camera SOURCE ...``."""
    parser = argparse.ArgumentParser(prog="zsseg")
    add_camera_command(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    from zsseg_rt.cli_errors import run_command

    return run_command(args.func, args)


if __name__ == "__main__":
    sys.exit(main())
