"""The output kinds of the stream loop as one table: each row says how its spec is recognised (the parser), how its
sink is opened, and what the run's output plan (:mod:`zsseg_rt.outputs.plan`) holds for it. ``open_sink(spec)`` and
``zsseg camera -o`` / ``--labels-out`` go through it; a new kind is one module (its sink) and one row here.

| kind | option | spec | sink | output-plan entry |
|---|---|---|---|---|
| window | -o | ``display://`` (``window``, ``screen``) | ``WindowSink`` | none |
| mjpeg | -o | ``http://HOST:PORT`` | ``MjpegSink`` | none |
| video | -o | ``out.mp4`` (.m4v .mov .avi .mkv) | ``VideoFileSink`` | a streamed file (``out.partial.mp4``) |
| frames | -o | ``frames/`` (a folder) | ``ImageFolderSink`` | a staged folder of frame images |
| labels | --labels-out | ``labels/`` (a folder) | ``LabelFolderSink`` | a staged folder of label maps |
| mcap | -o | ``out.mcap`` | ``McapSink`` | a streamed file (``out.partial.mcap``) |
| foxglove | -o | ``foxglove://HOST:PORT`` | ``FoxgloveSink`` | none (a port, checked when opened) |
| null | -o | ``null`` | ``NullSink`` | none |

A row may need Python modules beyond the core install (``modules``, installed by the pyproject extra ``extra``):
``zsseg camera`` refuses a spec whose modules are missing in one line, before anything runs. A ``shared`` kind
writes every source into one output (topics per source) when its spec names no ``{source}``; the others need one
output per source.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable, List, Optional, Sequence, Tuple

from zsseg_rt.outputs.plan import OutputPlan

from .sink_base import FrameSink, SinkError

__all__ = ["OUTPUT_KINDS", "OutputKind", "SinkOptions", "open_output", "open_sink", "output_kind"]

_WINDOWS = ("display", "display://", "window", "screen")


@dataclasses.dataclass
class SinkOptions:
    """What opening a sink may use besides its spec: ``fps`` (a video's), ``replace`` (an image folder's earlier
    frames may be replaced, standing alone), ``staged`` (the output plan's entry of the spec: an ``AtomicFile`` or a
    ``StagedFolder``; None: the sink checks its own output), ``sources`` (the names of the sources it shows, for the
    robot outputs' topics), ``frame_id``, ``overlay`` and ``objects`` (robot outputs: ``/<source>/objects`` and
    ``/<source>/annotations`` too), ``title`` (a window's)."""

    fps: float = 30.0
    replace: bool = False
    staged: Any = None
    sources: Sequence[str] = ("camera",)
    frame_id: str = "{source}"
    overlay: bool = True
    objects: bool = False
    title: str = "zsseg"


@dataclasses.dataclass(frozen=True)
class OutputKind:
    """One row of the table (see the module)."""

    name: str
    option: str  # the command-line option its spec is given with
    example: str  # words for messages: "out.mp4 (a video file)"
    matches: Callable[[str], bool]  # the parser: whether a spec names this kind
    open: Callable[[str, SinkOptions], FrameSink]
    plan: Optional[Callable[[OutputPlan, str, str], Any]] = None  # (plan, option, path) -> the entry it declares
    modules: Tuple[str, ...] = ()  # Python modules it needs beyond the core install ...
    extra: str = ""  # ... and the extra of pyproject.toml that installs them
    shared: bool = False  # several sources in one output (topics per source) when the spec has no {source}


def _lower(spec: str) -> str:
    return str(spec).strip().lower()


def _extension(spec: str) -> str:
    return os.path.splitext(str(spec).strip())[1].lower()


def _is_video(spec: str) -> bool:
    from .sources import VIDEO_EXTENSIONS

    return _extension(spec) in VIDEO_EXTENSIONS and not _lower(spec).startswith(("http://", "foxglove://"))


def _is_folder(spec: str) -> bool:
    text = str(spec).strip()
    if "://" in text or _lower(text) in (*_WINDOWS, "null"):
        return False
    return text.endswith(("/", os.sep)) or os.path.isdir(text) or not _extension(text)


def _window(spec: str, options: SinkOptions) -> FrameSink:
    from .sinks import WindowSink

    return WindowSink(title=options.title)


def _mjpeg(spec: str, options: SinkOptions) -> FrameSink:
    from .sinks import MjpegSink

    text = str(spec).strip()
    host, _, port = text[len("http://") :].strip("/").rpartition(":")
    if not port.isdigit():
        raise SinkError(f"MJPEG sink needs http://HOST:PORT, got {spec!r}")
    return MjpegSink(int(port), host or "127.0.0.1")


def _video(spec: str, options: SinkOptions) -> FrameSink:
    from .file_sinks import VideoFileSink

    return VideoFileSink(str(spec).strip(), fps=options.fps, output=options.staged)


def _frames(spec: str, options: SinkOptions) -> FrameSink:
    from .file_sinks import ImageFolderSink

    return ImageFolderSink(str(spec).strip(), replace=options.replace, staged=options.staged)


def _labels(spec: str, options: SinkOptions) -> FrameSink:
    from .labels import LabelFolderSink

    return LabelFolderSink(str(spec).strip(), overwrite=options.replace, staged=options.staged)


def _mcap(spec: str, options: SinkOptions) -> FrameSink:
    from .mcap_sink import McapSink

    return McapSink(
        str(spec).strip(),
        sources=options.sources,
        frame_id=options.frame_id,
        overlay=options.overlay,
        overwrite=options.replace,
        output=options.staged,
        objects=options.objects,
    )


def _foxglove(spec: str, options: SinkOptions) -> FrameSink:
    from .foxglove_sink import FoxgloveSink, parse_foxglove_url

    host, port = parse_foxglove_url(spec)
    return FoxgloveSink(
        port,
        host,
        sources=options.sources,
        frame_id=options.frame_id,
        overlay=options.overlay,
        objects=options.objects,
    )


def _null(spec: str, options: SinkOptions) -> FrameSink:
    from .sinks import NullSink

    return NullSink()


def _stream_entry(plan: OutputPlan, option: str, path: str) -> Any:
    return plan.stream(option, path)


def _frames_entry(plan: OutputPlan, option: str, path: str) -> Any:
    from .file_sinks import FRAMES

    return plan.folder(option, path, FRAMES)


def _labels_entry(plan: OutputPlan, option: str, path: str) -> Any:
    from .labels import LABELS

    return plan.folder(option, path, LABELS)


ROBOT_MODULES = ("mcap", "mcap_ros2")

OUTPUT_KINDS: Tuple[OutputKind, ...] = (
    OutputKind("window", "-o", "display:// (a window)", lambda s: _lower(s) in _WINDOWS, _window),
    OutputKind(
        "mjpeg", "-o", "http://127.0.0.1:8080 (an MJPEG page)", lambda s: _lower(s).startswith("http://"), _mjpeg
    ),
    OutputKind("video", "-o", "out.mp4 (a video file)", _is_video, _video, _stream_entry),
    OutputKind(
        "mcap",
        "-o",
        "out.mcap (ROS 2 messages)",
        lambda s: _extension(s) == ".mcap",
        _mcap,
        _stream_entry,
        ROBOT_MODULES,
        "robots",
        shared=True,
    ),  # fmt: skip
    OutputKind(
        "foxglove",
        "-o",
        "foxglove://127.0.0.1:8765 (live)",
        lambda s: _lower(s).startswith("foxglove://"),
        _foxglove,
        None,
        ("foxglove",),
        "robots",
        shared=True,
    ),  # fmt: skip
    OutputKind("null", "-o", "null (nothing)", lambda s: _lower(s) == "null", _null),
    OutputKind("frames", "-o", "frames/ (a folder of images)", _is_folder, _frames, _frames_entry),
    OutputKind("labels", "--labels-out", "labels/ (a folder of label maps)", _is_folder, _labels, _labels_entry),
)


def output_kind(spec: str, option: str = "-o") -> Optional[OutputKind]:
    """The row of ``option``'s kinds whose parser takes ``spec`` (the first, in the table's order), or None."""
    for kind in OUTPUT_KINDS:
        if kind.option == option and kind.matches(str(spec)):
            return kind
    return None


def kinds_for(option: str = "-o") -> List[OutputKind]:
    return [kind for kind in OUTPUT_KINDS if kind.option == option]


def open_output(spec: str, options: Optional[SinkOptions] = None, option: str = "-o") -> FrameSink:
    """The sink of ``spec`` given with ``option`` (its row's ``open``).

    Raises:
        SinkError: no kind takes ``spec`` (one line naming every kind of ``option``), or the sink cannot be made.
    """
    kind = output_kind(spec, option)
    if kind is None:
        known = ", ".join(row.example for row in kinds_for(option))
        raise SinkError(f"output {spec!r} is none of the kinds {option} takes: {known}")
    return kind.open(str(spec), options or SinkOptions())


def open_sink(
    spec: str,
    fps: float = 30.0,
    replace: bool = False,
    output: Any = None,
    staged: Any = None,
    **options: Any,
) -> FrameSink:
    """Sink for a user string of ``-o`` (the table's kinds): ``display://``, ``http://HOST:PORT``, a video path, a
    folder, ``out.mcap``, ``foxglove://HOST:PORT``, ``null``.

    A file output follows ``zsseg_rt.outputs.plan``: ``output`` (a video's or an MCAP file's ``AtomicFile``) or
    ``staged`` (a folder's ``StagedFolder``) come from the run's ``OutputPlan``, which checked them and puts them in
    place at the end; without them the sink checks its own output (``replace``: outputs of an earlier run may be
    replaced). ``options``: the other fields of ``SinkOptions`` (``sources``, ``frame_id``, ``overlay``, ``title``)."""
    chosen = SinkOptions(fps=fps, replace=replace, staged=output if output is not None else staged, **options)
    return open_output(spec, chosen)
