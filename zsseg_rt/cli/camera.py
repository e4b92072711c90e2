"""``zsseg camera SOURCE [SOURCE ...]``: live segmentation of cameras / streams / video files / image folders, all
sources through one Engine (one model in memory), their frames batched into one call per step.

Registered by its row in ``zsseg_rt.cli.COMMANDS`` (``add_command``); the streaming itself is :mod:`zsseg_rt.stream`.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
import time
from typing import TYPE_CHECKING, List, Optional, Sequence

from zsseg_rt.cli import command_parser
from zsseg_rt.cli.camera_robots import add_robot_arguments, check_output_needs, sink_options
from zsseg_rt.cli.camera_video import add_video_arguments, check_video_sources, engine_preset, video_segmenter
from zsseg_rt.cli_types import add_engine_arguments, engine_kwargs, port_number, real_number, whole_number

if TYPE_CHECKING:
    from zsseg_rt.stream.sources import FrameSource

log = logging.getLogger("zsseg_rt.stream")


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
    p.add_argument(
        "-o",
        "--output",
        action="append",
        default=[],
        help="display:// (window), a video file (.mp4/.m4v/.mov: H.264, which web browsers play, when PyAV is "
        "installed; .avi/.mkv: Motion JPEG), a folder for images, out.mcap (ROS 2 messages: the labels as mono16 "
        "images, the overlay, the classes; what ros2 bag and Foxglove read) or foxglove://HOST:PORT (the same topics "
        "served live; HOST 127.0.0.1 unless given); repeatable. With several sources the name holds {source} (the "
        "source's name) or {index} (its position, from 0): -o out/{source}.mp4; an .mcap file or foxglove:// "
        "without it takes every source, topics per source (/NAME/labels)",
    )
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
    p.set_defaults(mode=None)  # not given: fast where the bundle has it, else its one order (_default_mode: E2)
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
    add_robot_arguments(p)  # --frame-id, --no-overlay-topic (zsseg_rt.cli.camera_robots)
    p.add_argument(
        "--stats-json",
        help='write the final stream statistics to this JSON file (with "outputs": each video file\'s codec, '
        'frames and fps; "sources": per source fps, latency p50/p99, drops, reconnects, damaged packets skipped '
        "(decode_errors), state and error)",
    )
    p.add_argument(
        "--save-json",
        metavar="FILE",
        help="(video files and image folders) also write every frame's labels as COCO masks (pycocotools' RLE "
        "format; category ids = label ids, image SOURCE/NNNNNN per frame), put in place when the run has ended well",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    p.set_defaults(func=run_camera_command)
    return p


def _initial_classes(args):
    from zsseg_rt.cli_errors import CliError

    if args.classes and args.class_file:
        raise CliError(
            f"give the vocabulary once: --classes {args.classes!r} or --class-file {args.class_file!r} (a watched "
            "file, to change it while streaming), not both"
        )
    if args.classes:
        return args.classes
    if args.class_file:
        from zsseg_rt.stream.vocabulary import ClassFileWatcher

        names = ClassFileWatcher(args.class_file).read()
        if names:
            return names
        raise CliError(f"class file {args.class_file!r} is empty: put one class name per line")
    raise CliError('give the vocabulary with --classes "a,b,c" or --class-file classes.txt')


NO_OUTPUT_MESSAGE = (
    "no output given and no window possible here (headless OpenCV or no display): give -o out.mp4 (a video file), "
    "-o frames/ (a folder of images), or --preview 8080 (watch it in a browser: MJPEG on http://127.0.0.1:8080/)"
)
PLACEHOLDERS = ("{source}", "{index}")
_PER_SOURCE_SPECS = ("display", "display://", "window", "screen", "null")  # one each without a name to tell apart


def output_names(spec: str, names: Sequence[str]) -> List[str]:
    """The ``-o`` spec of each source: ``{source}`` replaced by its name and ``{index}`` by its position. With several
    sources a spec naming one file or folder is refused (they would all write into it); a window (``display://``,
    one per source) and ``null`` need no placeholder, nor a shared kind (an ``.mcap`` file, ``foxglove://``: one
    output for every source, topics per source; the same spec for each).

    Raises:
        CliError: several sources and a fixed file name, or an MJPEG URL (use ``--preview``).
    """
    from zsseg_rt.cli_errors import CliError

    text = str(spec)
    per_source = [text.replace("{source}", name).replace("{index}", str(i)) for i, name in enumerate(names)]
    if len(names) == 1:
        return per_source
    lower = text.strip().lower()
    if lower.startswith("http://"):
        raise CliError(
            f"-o {text}: an MJPEG URL shows one stream; with {len(names)} sources use --preview PORT (one page, a grid "
            "of every source)"
        )
    if lower in _PER_SOURCE_SPECS or _shared(text):
        return [text] * len(names)
    if not any(placeholder in text for placeholder in PLACEHOLDERS):
        stem, ext = os.path.splitext(text.rstrip("/\\"))
        example = f"{stem}_{{source}}{ext}" if ext else os.path.join(stem, "{source}") + "/"
        raise CliError(
            f"-o {text} names one output, but {len(names)} sources are given ({', '.join(names)}): put {{source}} "
            f"(each source's name) or {{index}} (its position) in it, e.g. -o {example}"
        )
    if len(set(per_source)) != len(per_source):
        raise CliError(f"-o {text} gives two sources the same output: use {{source}} or {{index}}")
    return per_source


def _shared(spec: str) -> bool:
    """An ``-o`` whose one output takes every source (an ``.mcap`` file, ``foxglove://``) when it names none."""
    from zsseg_rt.stream.output_kinds import output_kind

    kind = output_kind(spec)
    return kind is not None and kind.shared and not any(p in str(spec) for p in PLACEHOLDERS)


def _open_output(args, spec: str, fps: float, names: Sequence[str], several: bool, outputs):
    """The sink of one ``-o`` (the table of ``zsseg_rt.stream.output_kinds``): ``names``, the sources it shows."""
    from zsseg_rt.stream.output_kinds import open_output

    title = f"zsseg {names[0]}" if several else "zsseg"  # one window per source, titled with its name
    return open_output(spec, sink_options(args, fps, names, outputs.staged(spec), title))


def _plan_outputs(args, inputs, specs: Sequence[Sequence[str]], label_folders: Sequence[str]):
    """Every file output (``-o`` videos and folders, ``--labels-out``, ``--stats-json``) checked before anything is
    opened or loaded (``zsseg_rt.output_plan``): no two name the same file, none is an input, none replaces an
    existing file without ``--overwrite`` nor a file zsseg_rt did not write, an interrupted run's leftovers are
    refused without ``--overwrite``, and the disk is not full. Returns the ``CameraOutputs``.

    Raises:
        OutputRefused: one line naming the path and what to do.
    """
    from zsseg_rt.stream.camera_outputs import CameraOutputs

    every: List[str] = []
    for given, expanded in zip(args.output, specs):
        every += [given] if _shared(given) else list(expanded)  # a shared output (every source in it): once
    coco = getattr(args, "save_json", None)
    if coco and any(item.source.live for item in inputs):
        from zsseg_rt.cli_errors import CliError

        live = next(item.name for item in inputs if item.source.live)
        raise CliError(
            f"--save-json {coco}: the COCO masks of video files and image folders; {live} is a live source, whose "
            "frames never end: record it first (-o clip.mp4), or use --labels-out DIR"
        )
    sources = [item.source for item in inputs]
    return CameraOutputs.plan_for(every, label_folders, args.stats_json, args.overwrite, sources, coco)


def _build_sinks(args, inputs, runner_stats, outputs, label_folders, vocabulary=None):
    """The sinks ``-o``, ``--labels-out`` and ``--preview`` ask for (``outputs``: the checked ``CameraOutputs``): a
    list per source and the shared ones (the preview); with none, a window per source (``_check_output_given``)."""
    from zsseg_rt.stream.labels import LabelFolderSink
    from zsseg_rt.stream.sinks import MjpegSink

    names = [item.name for item in inputs]
    specs = [output_names(spec, names) for spec in args.output]
    several = len(inputs) > 1
    per_source: List[list] = [[] for _ in inputs]
    shared: list = []
    try:
        for given, expanded in zip(args.output, specs):
            if _shared(given):  # one output, every source in it (topics per source)
                shared.append(_open_output(args, given, args.fps or 30.0, names, several, outputs))
                continue
            for index, item in enumerate(inputs):
                fps = args.fps or item.source.fps or 30.0  # a file keeps its rate; --fps overrides; else 30
                per_source[index].append(_open_output(args, expanded[index], fps, [item.name], several, outputs))
        for index, folder in enumerate(label_folders):
            per_source[index].append(LabelFolderSink(folder, staged=outputs.labels(folder)))
        if outputs.coco is not None:  # --save-json: one file, every source's frames
            from zsseg_rt.stream.coco_sink import CocoSink

            shared.append(CocoSink(outputs.coco, names))
        if args.preview is not None:
            shared.append(
                MjpegSink(
                    args.preview,
                    args.preview_host,
                    stats_provider=runner_stats,
                    vocabulary=None if args.preview_readonly else vocabulary,
                    streams=names if several else None,
                )
            )
        if not args.output and args.preview is None and not label_folders and outputs.coco is None:
            for index, item in enumerate(inputs):
                per_source[index].append(_open_output(args, "display://", 30.0, [item.name], several, outputs))
    except BaseException:  # e.g. StreamCapabilityError: close what was opened; the CLI prints one line
        for sink in [sink for sinks in per_source for sink in sinks] + shared:
            sink.abort()
        raise
    return per_source, shared


def _check_output_given(args) -> None:
    from zsseg_rt.cli_errors import CliError
    from zsseg_rt.stream.capabilities import display_available, opencv_has_gui

    given = getattr(args, "labels_out", None) or getattr(args, "save_json", None)  # outputs without -o
    if not args.output and args.preview is None and not given and not (opencv_has_gui() and display_available()):
        raise CliError(NO_OUTPUT_MESSAGE)


def _progress_bar_class():
    """tqdm that prints its last line once, however fast the frames come: the line of the full count (``total``
    known) is drawn by ``close()`` only, not also by the last update (drawn when tqdm's ``mininterval`` had passed,
    so on a slow or loaded machine) and again when a log line after it (the video file written) moves the bar down.
    Without a total, ``close()`` prints the bar once more unless the last line drawn already shows the final count."""
    from tqdm import tqdm

    class ProgressBar(tqdm):
        _shown_n = -1  # the count of the last line drawn
        _closing = False

        def display(self, msg=None, pos=None):
            if msg is None:
                if not self._closing and self.total is not None and self.n >= self.total:
                    return True  # the full count: close() draws it, once
                if self._closing and self._shown_n == self.n:
                    return True  # close(): the final count is on screen already; close() only ends the line
                self._shown_n = self.n
            return super().display(msg, pos)

        def close(self):
            self._closing = True
            super().close()

    return ProgressBar


def _frames_to_process(source, args) -> Optional[int]:
    """The frames a source will deliver (None: unknown or endless)."""
    total = None if args.loop or source.live else source.frame_count
    if args.max_frames is not None:
        total = min(total, args.max_frames) if total is not None else args.max_frames
    return total


def _progress(inputs, args):
    """A tqdm bar over the frames processed. One source: for a file or folder (every frame is processed), None for a
    live source. Several sources: always, its total the sum of the sources' frames when all are known, and each
    source's statistics (fps, latency p50/p99, drops, reconnects) after the count."""
    from zsseg_rt.progress import signals_deferred

    if args.no_progress:
        return None
    if len(inputs) == 1:
        source = inputs[0].source
        if source.live:
            return None
        name = os.path.basename(os.path.normpath(source.name.split(":", 1)[-1]))
        with signals_deferred():  # a signal meanwhile would leave a half-made bar (zsseg_rt/progress.py)
            return _progress_bar_class()(total=_frames_to_process(source, args), unit="frame", desc=name)
    totals = [_frames_to_process(item.source, args) for item in inputs]
    total = None if any(t is None for t in totals) else sum(t for t in totals if t is not None)
    with signals_deferred():
        return _progress_bar_class()(total=total, unit="frame", desc=f"{len(inputs)} sources")


class _ProgressUpdate:
    """``on_result`` of the runner: counts a frame on the bar; with several sources, the per-source statistics after
    the count, renewed at most every ``interval`` seconds."""

    def __init__(self, bar, several: bool, interval: float = 0.5):
        self.bar, self.several, self.interval = bar, several, interval
        self._last = float("-inf")

    def __call__(self, _frame, _result, stats) -> None:
        now = time.monotonic()
        if now - self._last >= self.interval:
            self._last = now
            self.show(stats, refresh=False)
        self.bar.update(1)

    def show(self, stats, refresh: bool = True) -> None:
        """Put each source's statistics after the count (several sources); one source: its frame rate (and its
        flicker once measured)."""
        if self.several:
            self.bar.set_postfix_str(" | ".join(s.line() for s in stats.sources), refresh=refresh)
        elif stats.sources:
            source = stats.sources[0]
            flicker = source.video.get("flicker_pct")
            text = f"{source.fps:.2f} fps" + (f" flicker {flicker:.2f}%" if flicker is not None else "")
            self.bar.set_postfix_str(text, refresh=refresh)


@dataclasses.dataclass
class _Input:
    """A source of the command line: its name (statistics, ``{source}``, the preview) and its ``FrameSource``."""

    name: str
    source: "FrameSource"
    opened: bool


def _open_inputs(args, max_pixels: int) -> List[_Input]:
    """Every source parsed and built first (a source string that names nothing is an error at once). One source, or
    a file / folder among several: opened here, so a missing camera or file is an error at once (reconnecting is for
    a source lost while streaming). A camera or stream among several: opened by its capture thread, which reports
    it and retries with backoff while the other sources go on."""
    from zsseg_rt.cli_errors import CliError
    from zsseg_rt.stream.sources import open_source, parse_source, source_label, split_source_name, unique_labels

    partial = bool(getattr(args, "allow_partial_images", False))
    given = [split_source_name(text) for text in args.sources]
    specs = [parse_source(text) for _, text in given]  # SourceError: one line from zsseg_rt.cli_errors
    chosen = [name for name, _ in given if name]
    for name in set(chosen):
        if chosen.count(name) > 1:
            raise CliError(f"two sources are named {name!r}: give each NAME=SOURCE its own name")
    labels = unique_labels([name or source_label(spec) for (name, _), spec in zip(given, specs)])
    inputs: List[_Input] = []
    try:
        for label, spec in zip(labels, specs):
            source = open_source(
                spec, width=args.width, height=args.height, fps=args.fps, max_pixels=max_pixels, allow_partial=partial
            )
            opened = len(specs) == 1 or not source.live
            if opened:
                source.open()
            inputs.append(_Input(label, source, opened))
    except BaseException:
        for item in inputs:
            item.source.close()
        raise
    return inputs


def run_camera_command(args) -> int:
    """Entry point of ``zsseg camera`` (argparse namespace from ``add_command``)."""
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(levelname)s %(message)s"
    )
    from zsseg_rt.cli_errors import CliError, refuse_stdout
    from zsseg_rt.image_io import max_pixels_limit

    refuse_stdout(args, "-o display:// shows the frames, --preview PORT serves them")  # -o -: F18
    if args.preview_readonly and args.preview is None:
        raise CliError("--preview-readonly applies to the --preview page: give --preview PORT too")
    if not 0.0 <= args.alpha <= 1.0:
        raise CliError(f"--alpha is the overlay opacity, between 0 and 1; got {args.alpha}")
    classes = _initial_classes(args)
    max_pixels = max_pixels_limit(args.max_pixels)
    inputs = _open_inputs(args, max_pixels)
    try:
        return _stream(args, inputs, classes, max_pixels)
    finally:
        for item in inputs:
            item.source.close()


def _stream(args, inputs: List[_Input], classes, max_pixels: int) -> int:
    """Plan and check every output, run the stream, and put the outputs in place only when it ended well (a failed
    run replaces nothing: ``zsseg_rt.output_plan``)."""
    _check_output_given(args)
    check_video_sources(args, [item.source for item in inputs])  # --stabilize-delay: recorded video only
    names = [item.name for item in inputs]
    specs = [output_names(spec, names) for spec in args.output]  # every refusal before anything is opened
    check_output_needs(args.output)  # a kind whose packages are missing: one line, what to install
    labels_out = getattr(args, "labels_out", None)
    label_folders = output_names(labels_out, names) if labels_out else []
    outputs = _plan_outputs(args, inputs, specs, label_folders)
    outputs.prepare()  # claims every output (owner locks: zsseg_rt.output_owner), so from here on an abort releases
    from zsseg_rt.signal_phases import phase

    try:
        phase("camera:outputs-planned")  # (the phases: test hooks, python_tests/test_signal_phases.py)
        code, summary = _run_stream(args, inputs, classes, max_pixels, outputs, label_folders)
        outputs.commit(summary)
    except BaseException:
        outputs.abort()
        raise
    return code


def _run_stream(args, inputs: List[_Input], classes, max_pixels: int, outputs, label_folders):
    """The model and the stream loop; returns ``(exit code, the --stats-json summary)``."""
    from zsseg_rt.runtime import Engine
    from zsseg_rt.speed import SpeedMeter
    from zsseg_rt.stream.runner import MultiStreamRunner

    holder: dict = {}
    speed = SpeedMeter()  # the "Speed: ..." line at the end, and --stats-json's "speed" (zsseg_rt.speed)

    def request_classes(names):  # the preview page's class box (POST /classes)
        if "runner" not in holder:
            raise RuntimeError("the stream is still starting (loading the model); try again in a moment")
        return holder["runner"].request_classes(names)

    snapshot = lambda: holder["runner"].snapshot() if "runner" in holder else {}  # noqa: E731
    sinks, shared = _build_sinks(args, inputs, snapshot, outputs, label_folders, vocabulary=request_classes)
    from zsseg_rt.signal_phases import phase

    try:
        phase("camera:model-load")
        options = engine_kwargs(args, "camera")  # every Engine flag (zsseg_rt.options)
        options["max_pixels"] = max_pixels  # the frames' limit (0: none), as the source checks it
        options["mode"] = options["mode"] or _default_mode(args.bundle)
        engine = Engine(args.bundle, classes=classes, preset=engine_preset(args), **options)  # --live: the preset
    except BaseException:
        for sink in [sink for own in sinks for sink in own] + shared:
            sink.abort()
        raise
    if engine.weights_banner:
        log.warning("%s: %s (the overlay says so too)", args.bundle, engine.weights_banner)
    # a file or folder is not a live camera: nothing is dropped; --every-frame: live sources neither
    every_frame = [args.every_frame or not item.source.live for item in inputs]
    for item, own, every in zip(inputs, sinks, every_frame):
        log.info(
            "streaming %s%s with %s (%s) -> %s%s",
            "" if len(inputs) == 1 else f"{item.name} = ",
            item.source.name,
            engine.backend.name,
            ", ".join(engine.class_names),
            ", ".join(sink.name for sink in own + shared),
            " (every frame)" if every else " (newest frame; stale frames dropped)",
        )
    segment = video_segmenter(args, engine)  # the Engine itself without --stabilize / --keyframe-every
    trades = segment.trades() if hasattr(segment, "trades") else None  # --live: what its preset trades
    if trades is not None:
        log.info("%s", trades["line"])
    runner = MultiStreamRunner(
        segment,
        [item.source for item in inputs],
        sinks,
        shared_sinks=shared,
        names=[item.name for item in inputs],
        class_file=args.class_file,
        drop_stale=[not every for every in every_frame],
        loop=args.loop,
        max_reconnects=args.max_reconnects,
        alpha=args.alpha,
        legend=not args.no_legend,
        max_frames=args.max_frames,
        opened=[item.opened for item in inputs],
        temporal_consistency=args.temporal_consistency,
        on_result=lambda _frame, result, _stats: speed.add(result.timing, result.labels.shape),
    )
    holder["runner"] = runner
    phase("camera:stream-start")
    try:
        _run_with_progress(runner, inputs, args)
    finally:
        if segment is not engine:
            segment.close()  # the video filter's buffers (device ones on a device pipeline)
    engine.close()  # a background preparation (--prepare background) ends with the stream; what it finished stays
    summary = runner.snapshot()
    summary["backend"] = engine.backend.name
    precision = getattr(engine.backend, "precision", None)
    summary["speed"] = speed.as_dict(engine.backend.name, precision)  # ms per frame per stage (the line below)
    if trades is not None:
        summary["preset"] = trades
    # the device pipeline's post-processing kernel per geometry, chosen by timing or pinned (None: the host path)
    summary["postprocess_kernel"] = (engine.device_stats or {}).get("postprocess_kernel")
    every_sink = [sink for own in sinks for sink in own] + shared  # shared: an MCAP file of every source
    summary["outputs"] = [sink.describe() for sink in every_sink if hasattr(sink, "describe")]
    for entry, own in zip(summary["sources"], sinks):
        entry["outputs"] = [sink.describe() for sink in own if hasattr(sink, "describe")]  # video files: codec
    failed = [stream for stream in runner.streams if stream.grabber.error is not None]
    _log_summary(runner, summary, len(failed))
    if speed.images:
        log.info("%s", speed.line(engine.backend.name, precision, unit="frame"))
    kernel_line = _kernel_line(summary["postprocess_kernel"])
    if kernel_line:
        log.info("%s", kernel_line)
    if runner.signalled is not None:  # stopped by Ctrl-C / SIGTERM, outputs finalised: the one rule (cli_errors)
        from zsseg_rt.cli_errors import exit_code_for_signal

        return exit_code_for_signal(runner.signalled), summary
    return (1 if failed else 0), summary


def _default_mode(bundle: str) -> str:
    """The camera's post-processing when --mode is not given: fast (less latency) where the bundle's pipeline has it,
    else the pipeline's one order (a ZegFormer bundle: exact; issue 75, E2: it was refused, "mode must be 'exact',
    got 'fast'", at the camera's defaults). A bundle that cannot be read: fast (the Engine then says what is wrong)."""
    from zsseg_rt.bundle import load_meta
    from zsseg_rt.runtime.pipelines import pipeline_class

    try:
        modes = pipeline_class(load_meta(bundle).pipeline).modes
    except Exception:  # noqa: BLE001 - the Engine's own load reports it, in its words
        return "fast"
    return "fast" if "fast" in modes else modes[0]


def _run_with_progress(runner, inputs: List[_Input], args) -> None:
    """``runner.run()``, with a progress bar over the frames when there is one to show."""
    bar = _progress(inputs, args)
    if bar is None:
        runner.run()
        return
    from tqdm.contrib.logging import logging_redirect_tqdm

    progress = _ProgressUpdate(bar, len(inputs) > 1)
    observe = runner.on_result  # the speed meter's

    def on_result(frame, result, stats) -> None:
        if observe is not None:
            observe(frame, result, stats)
        progress(frame, result, stats)

    runner.on_result = on_result
    with bar, logging_redirect_tqdm():  # log lines above the bar, not through it
        try:
            runner.run()
        finally:
            runner.snapshot()  # the final counters and states
            progress.show(runner.stats)


def _log_summary(runner, summary: dict, failed: int) -> None:
    """The closing lines: one source's counters, or each source's and the total."""
    if len(summary["sources"]) == 1:
        stats = runner.stats
        log.log(
            logging.WARNING if stats.decode_errors or summary["sources"][0].get("frames_missing") else logging.INFO,
            "stopped: %d frames processed, %d captured, %d dropped, %d reconnects, %.1f FPS%s",
            stats.processed,
            stats.captured,
            stats.dropped,
            stats.reconnects,
            stats.fps,
            _damage_note(summary["sources"][0]),
        )
        return
    for entry in summary["sources"]:
        log.log(
            logging.ERROR if entry["state"] == "failed" else logging.INFO,
            "%s: %s, %d frames processed, %d captured, %d dropped, %d reconnects, %.1f FPS, latency p50 %.0f ms "
            "p99 %.0f ms%s%s",
            entry["name"],
            entry["state"],
            entry["processed"],
            entry["captured"],
            entry["dropped"],
            entry["reconnects"],
            entry["fps"],
            entry["latency_p50_ms"],
            entry["latency_p99_ms"],
            _damage_note(entry),
            f" ({entry['error']})" if entry["error"] else "",
        )
    log.info(
        "stopped: %d sources (%d failed), %d frames processed in %d engine calls (%.2f frames a call)",
        len(summary["sources"]),
        failed,
        summary["processed"],
        summary["engine_calls"],
        summary["mean_batch"],
    )


def _kernel_line(report) -> str:
    """ "post-processing kernel: columns at C=3 480x640 (timed: tiled 80.1 us, ...)" of the summary, or "" (none)."""
    from zsseg_rt.runtime.device.postprocess_choice import describe

    return describe(report)


def _damage_note(entry: dict) -> str:
    """ ", 4 damaged packets skipped (296 of the 300 frames the file declares); 4 frames missing by presentation time
    (...)" for a source's stats, else ""."""
    from zsseg_rt.stream.sources import missing_note

    missing = missing_note(entry.get("frames_missing", 0), entry.get("missing_frames", []))
    missing = f"; {missing}" if missing else ""
    if not entry.get("decode_errors"):
        return missing
    declared = entry.get("frames_declared")
    ended = declared and entry.get("state") == "ended"
    of = f" ({entry['captured']} of the {declared} frames the file declares)" if ended else ""
    return f", {entry['decode_errors']} damaged packets or images skipped{of}{missing}"


def main(argv=None) -> int:
    """Standalone entry: ``python -m zsseg_rt.cli.camera camera SOURCE ...``."""
    parser = argparse.ArgumentParser(prog="zsseg")
    add_command(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    from zsseg_rt.cli_errors import run_command

    return run_command(args.func, args)


if __name__ == "__main__":
    sys.exit(main())
