"""The output kinds of the stream loop as one table: each row says how its spec is recognised (the parser), how its
sink is opened, and what the run's output plan (:mod:`zsseg_rt.outputs.plan`) holds for it. ``open_sink(spec)`` and
``zsseg camera -o`` / ``--labels-out`` go through it; a new kind is one module (its sink) and one row here
(:data:`OUTPUT_KINDS` is a ``zsseg_rt.options.registry.Registry``: ``names()``, ``get(name)`` with the closest name,
``adding(row, first=True)`` for a block).

| kind | option | spec | sink | output-plan entry |
|---|---|---|---|---|
| window | -o | ``display://`` (``window``, ``screen``) | ``WindowSink`` | none |
| mjpeg | -o | ``http://HOST:PORT`` | ``MjpegSink`` | none |
| video | -o | ``out.mp4`` (.m4v .mov .avi .mkv) | ``VideoFileSink`` | a streamed file (``out.partial.mp4``) |
| frames | -o | ``frames/`` (a folder) | ``ImageFolderSink`` | a staged folder of frame images |
| labels | --labels-out | ``labels/`` (a folder) | ``LabelFolderSink`` | a staged folder of label maps |
| mcap | -o | ``out.mcap`` | ``McapSink`` | a streamed file (``out.partial.mcap``) |
| foxglove | -o | ``foxglove://HOST:PORT`` | ``FoxgloveSink`` | none (a port, checked when opened) |
| views | -o | ``views:out/`` (``views:overlay,mask,labels:out/``) | ``ViewsSink`` | files in place (``zsseg segment``'s) |
| null | -o | ``null`` | ``NullSink`` | none |
| coco | --save-json | ``masks.json`` | ``CocoSink`` | a file written at the end |
| tracks | --tracks-out | ``tracks.txt`` | ``TracksSink`` (MOTChallenge text) | a streamed file (``tracks.partial.txt``) |
| stats | --stats-json | ``stats.json`` | none: the run writes its statistics at its end | a file written at the end |
| preview | --preview | ``8080`` (a port) | ``MjpegSink``, a grid of every source, the class box | none (a port, checked when opened) |

A row may need Python modules beyond the core install (``modules``, installed by the pyproject extra ``extra``):
``zsseg camera`` refuses a spec whose modules are missing in one line, before anything runs. Each row says what it
does with several sources (``sources``): ``SHARED`` writes every source into one output (topics per source) when its
spec names no ``{source}``; ``EACH`` opens one per source from the same spec (a window each, ``null``); ``SINGLE``
shows one stream (refused with several, ``several`` says what to use); ``NAMED`` (the default) needs a ``{source}`` or
``{index}`` in its name. A row's own options (``options``: :class:`KindOption`, e.g. the robot outputs'
``--frame-id``) are the command's flags and the ``SinkOptions.values`` its sink is opened with; the ``-o`` help
(:func:`output_help`), the flags (:func:`add_output_arguments`), the per-source rule
(``zsseg_rt.stream.loop.session_options.output_names``) and the "wrote ..." line (:func:`wrote_line`) are made from the rows.
Whether a run finds each result's objects is :func:`objects_needed`, from ``objects``/``track`` and the rows'
``needs_objects`` (``tracks``: tracked objects), for every command.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from zsseg_rt.options.registry import Registry
from zsseg_rt.outputs.plan import OutputPlan

from .sink_base import FrameSink, SinkError

__all__ = [
    "EACH",
    "NAMED",
    "OUTPUT_KINDS",
    "SHARED",
    "SINGLE",
    "KindOption",
    "OutputKind",
    "SinkOptions",
    "FOUND",
    "NO_OBJECTS",
    "TRACKED",
    "add_output_arguments",
    "kind_options",
    "objects_needed",
    "open_output",
    "open_sink",
    "output_help",
    "output_kind",
    "wrote_line",
    "flag_help",
]

_WINDOWS = ("display", "display://", "window", "screen")


@dataclasses.dataclass
class SinkOptions:
    """What opening a sink may use besides its spec: ``fps`` (a video's), ``replace`` (an image folder's earlier
    frames may be replaced, standing alone), ``staged`` (the output plan's entry of the spec: an ``AtomicFile`` or a
    ``StagedFolder``; None: the sink checks its own output), ``sources`` (the names of the sources it shows, for the
    robot outputs' topics), ``objects`` (robot outputs: ``/<source>/objects`` and ``/<source>/annotations`` too),
    ``title`` (a window's), and ``values``: the kinds' own options by name (:class:`KindOption`; ``value(name)``
    gives a row's default when none was given), e.g. ``frame_id`` and ``overlay`` of the robot outputs."""

    fps: float = 30.0
    replace: bool = False
    staged: Any = None
    sources: Sequence[str] = ("camera",)
    objects: bool = False
    title: str = "zsseg"
    values: Dict[str, Any] = dataclasses.field(default_factory=dict)
    command: str = "camera"  # the command that writes it (a COCO file's description: "zsseg segment label maps")
    alpha: float = 0.5  # the run's overlay (the views output draws its own)
    legend: bool = True

    def value(self, name: str) -> Any:
        """The value of a kind's option ``name``: the one given, else its row's default.

        Raises:
            KeyError: no kind has an option of that name.
        """
        if name in self.values:
            return self.values[name]
        for option in kind_options():
            if option.name == name:
                return option.default
        raise KeyError(f"no output kind has an option {name!r}; they are {[o.name for o in kind_options()]}")

    @property
    def frame_id(self) -> str:  # the robot outputs' (their rows' option, ROBOT_OPTIONS)
        return str(self.value("frame_id"))

    @property
    def overlay(self) -> bool:
        return bool(self.value("overlay"))


@dataclasses.dataclass(frozen=True)
class KindOption:
    """An option of an output kind (a row's ``options``): ``name``, its key in ``SinkOptions.values`` and the
    command's argument name; ``flag``, the command-line flag; ``default``; ``help`` (the words of the flag's help;
    the kinds that have it are added); ``type``, what turns the flag's text into the value (a ``store_false`` switch
    when ``switch_off``: the flag turns a True default off); ``metavar``; ``field``, the older ``SessionOptions``
    field that holds it (the robot outputs' ``frame_id``, ``overlay_topic``), else None."""

    name: str
    flag: str
    default: Any
    help: str
    type: Callable[[str], Any] = str
    switch_off: bool = False
    metavar: Optional[str] = None
    field: Optional[str] = None


@dataclasses.dataclass(frozen=True)
class OutputKind:
    """One row of the table (see the module)."""

    name: str
    option: str  # the command-line option its spec is given with
    example: str  # words for messages: "out.mp4 (a video file)"
    matches: Callable[[str], bool]  # the parser: whether a spec names this kind
    open: Optional[Callable[[str, SinkOptions], FrameSink]]  # None: no frame sink, the run writes it (its stats)
    plan: Optional[Callable[[OutputPlan, str, str], Any]] = None  # (plan, option, path) -> the entry it declares
    modules: Tuple[str, ...] = ()  # Python modules it needs beyond the core install ...
    extra: str = ""  # ... and the extra of pyproject.toml that installs them
    sources: str = "named"  # several sources: SHARED, EACH, SINGLE or NAMED (see the module)
    options: Tuple[KindOption, ...] = ()  # its own options: flags, SinkOptions.values
    words: str = ""  # what the -o help says of it (default: example)
    wrote: Optional[Callable[[Dict[str, Any]], Optional[str]]] = None  # the "wrote ..." line of its describe()
    several: str = ""  # SINGLE: what to use with several sources
    help: str = ""  # a kind with an option of its own (--labels-out, --save-json): that flag's help (flag_help)
    # the commands that take it: camera (the stream loop), segment and batch (their results: zsseg_rt.stream.
    # result_outputs, a kind whose sink takes results, write_result)
    commands: Tuple[str, ...] = ("camera",)
    # what its sink needs of each result's objects (objects_needed): NO_OBJECTS, FOUND (result.frame_objects) or
    # TRACKED (with track ids: --tracks-out)
    needs_objects: str = ""

    @property
    def shared(self) -> bool:
        """One output takes every source (topics per source) when the spec names none."""
        return self.sources == SHARED

    @property
    def spec(self) -> str:
        """The example spec without its words: ``out.mp4``."""
        return self.example.split(" (", 1)[0]

    @property
    def what(self) -> str:
        """The example's words without its spec: ``a video file``."""
        return self.example.split(" (", 1)[-1].rstrip(")")


SHARED, EACH, SINGLE, NAMED = "shared", "each", "single", "named"
NO_OBJECTS, FOUND, TRACKED = "", "found", "tracked"  # objects_needed's answers, least first
_OBJECT_NEEDS = (NO_OBJECTS, FOUND, TRACKED)


def _lower(spec: str) -> str:
    return str(spec).strip().lower()


def _extension(spec: str) -> str:
    return os.path.splitext(str(spec).strip())[1].lower()


def _is_video(spec: str) -> bool:
    from zsseg_rt.input_files import VIDEO_EXTENSIONS

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
        frame_id=options.value("frame_id"),
        overlay=options.value("overlay"),
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
        frame_id=options.value("frame_id"),
        overlay=options.value("overlay"),
        objects=options.objects,
    )


def _null(spec: str, options: SinkOptions) -> FrameSink:
    from .sinks import NullSink

    return NullSink()


def _views(spec: str, options: SinkOptions) -> FrameSink:
    from .views import open_views

    return open_views(spec, options)


def _views_entry(plan: OutputPlan, option: str, path: str) -> Any:
    from .views import plan_views

    return plan_views(plan, option, path)


def _stream_entry(plan: OutputPlan, option: str, path: str) -> Any:
    return plan.stream(option, path)


def _frames_entry(plan: OutputPlan, option: str, path: str) -> Any:
    from .file_sinks import FRAMES

    return plan.folder(option, path, FRAMES)


def _labels_entry(plan: OutputPlan, option: str, path: str) -> Any:
    from .labels import LABELS

    return plan.folder(option, path, LABELS)


def _video_wrote(output: Dict[str, Any]) -> str:
    browser = output.get("browser_playable") or output["codec"] == "mjpeg"
    playable = "" if browser else "; web browsers do not play it"
    return f"wrote {output['frames']} frames to {output['path']} ({output['codec']}, {output['encoder']}{playable})"


def _mcap_wrote(output: Dict[str, Any]) -> Optional[str]:
    if not output.get("frames"):
        return None
    return (
        f"wrote {output['frames']} frames to {output['path']} ({output['messages']} ROS 2 messages on "
        f"{len(output['topics'])} topics, {output['compression']} chunks)"
    )


def _images_wrote(what: str) -> Callable[[Dict[str, Any]], Optional[str]]:
    def line(output: Dict[str, Any]) -> Optional[str]:
        return f"wrote {output['frames']} {what} to {output['path']}" if output.get("frames") else None

    return line


def _preview(spec: str, options: SinkOptions) -> FrameSink:
    """The preview page on port ``spec``: one page, a grid of every source (``options.sources``) when there are
    several; its own options from the run: ``host``, ``readonly`` (no class box), and the run's ``stats`` (a callable:
    the page's numbers) and ``vocabulary`` (a callable: the class box's changes)."""
    from .sinks import MjpegSink

    text = str(spec).strip()
    if not text.isdigit() or int(text) > 65535:
        raise SinkError(f"--preview takes a port (0-65535; 0: any free one), got {spec!r}")
    values = options.values
    names = list(options.sources)
    return MjpegSink(
        int(text),
        str(values.get("host") or "127.0.0.1"),
        stats_provider=values.get("stats"),
        vocabulary=None if values.get("readonly") else values.get("vocabulary"),
        streams=names if len(names) > 1 else None,
    )


def _coco(spec: str, options: SinkOptions) -> FrameSink:
    from .coco_sink import CocoSink

    videos = options.values.get("videos") if options.command == "segment" else None  # segment names by the file
    return CocoSink(
        options.staged, list(options.sources), description=f"zsseg {options.command} label maps", videos=videos
    )


def _tracks(spec: str, options: SinkOptions) -> FrameSink:
    from .tracks_sink import TracksSink

    return TracksSink(str(spec).strip(), output=options.staged, overwrite=options.replace)


def _file_entry(plan: OutputPlan, option: str, path: str) -> Any:
    return plan.file(option, path)


ROBOT_MODULES = ("mcap", "mcap_ros2")
ROBOT_OPTIONS = (
    KindOption(
        "frame_id",
        "--frame-id",
        "{source}",
        "header.frame_id of the ROS 2 messages; {source} is the source's name (default: the source's name)",
        metavar="ID",
        field="frame_id",
    ),
    KindOption(
        "overlay",
        "--no-overlay-topic",
        True,
        "leave out /SOURCE/overlay (the overlay as JPEG): labels and label_info only",
        switch_off=True,
        field="overlay_topic",
    ),
)

# The table: a Registry (zsseg_rt.options.registry; ``OUTPUT_KINDS.adding(row, first=True)`` puts a plugin's or a
# test's kind in for a block, before the others: the first row whose parser takes a spec is its kind)
OUTPUT_KINDS: Registry[OutputKind] = Registry("output kind", (
    OutputKind(
        "window", "-o", "display:// (a window)", lambda s: _lower(s) in _WINDOWS, _window, sources=EACH,
        words="display:// (a window; one per source)",
    ),
    OutputKind(
        "mjpeg", "-o", "http://127.0.0.1:8080 (an MJPEG page)", lambda s: _lower(s).startswith("http://"), _mjpeg,
        sources=SINGLE, several="--preview PORT (one page, a grid of every source)",
    ),
    OutputKind(
        "video", "-o", "out.mp4 (a video file)", _is_video, _video, _stream_entry, wrote=_video_wrote,
        words="a video file (.mp4/.m4v/.mov: H.264, which web browsers play, when PyAV is installed; .avi/.mkv: "
        "Motion JPEG)",
    ),
    OutputKind(
        "mcap", "-o", "out.mcap (ROS 2 messages)", lambda s: _extension(s) == ".mcap", _mcap, _stream_entry,
        ROBOT_MODULES, "robots", sources=SHARED, options=ROBOT_OPTIONS, wrote=_mcap_wrote,
        words="out.mcap (ROS 2 messages: the labels as mono16 images, the overlay, the classes; what ros2 bag and "
        "Foxglove read)",
    ),
    OutputKind(
        "foxglove", "-o", "foxglove://127.0.0.1:8765 (live)", lambda s: _lower(s).startswith("foxglove://"),
        _foxglove, None, ("foxglove",), "robots", sources=SHARED, options=ROBOT_OPTIONS,
        words="foxglove://HOST:PORT (the same topics served live; HOST 127.0.0.1 unless given)",
    ),
    OutputKind(
        "views", "-o", "views:out/ (zsseg segment's files per image)", lambda s: _lower(s).startswith("views:"),
        _views, _views_entry, sources=SHARED, wrote=_images_wrote("images' views"),
        words="views:DIR or views:overlay,mask,labels:DIR (zsseg segment's files: STEM_overlay.png, STEM_mask.png, "
        "STEM_labels.png per image, NAME_000042_overlay.png per video frame, classes.json)",
    ),
    OutputKind("null", "-o", "null (nothing)", lambda s: _lower(s) == "null", _null, sources=EACH),
    OutputKind(
        "frames", "-o", "frames/ (a folder of images)", _is_folder, _frames, _frames_entry,
        wrote=_images_wrote("frame images"), words="a folder for images",
    ),
    OutputKind(
        "labels", "--labels-out", "labels/ (a folder of label maps)", _is_folder, _labels, _labels_entry,
        wrote=_images_wrote("label maps"),
        help="write each frame's class-index map as a 16-bit PNG named by its frame number (DIR/000042.png), with "
        "the class list in DIR/classes.json; several sources: put {source} in DIR. Staged while the run goes on and "
        "put in place when it ends well; DIR then holds this run's maps only (--overwrite: an earlier run's are "
        "replaced; files zsseg_rt did not write are never touched)",
    ),
    OutputKind(
        "coco", "--save-json", "masks.json (COCO masks)", lambda s: bool(str(s).strip()), _coco, _file_entry,
        sources=SHARED, commands=("camera", "segment"),
        wrote=lambda output: f"wrote the COCO masks of {output['frames']} images to {output['path']}",
        help="also write the labels as COCO masks (pycocotools' RLE format): one annotation per class and image (a "
        "video's frames: one image each, named by the video and the frame number), category ids = label ids, with "
        "the class names and each image's size; put in place when the run has ended well; with --objects also one "
        "instance annotation (iscrowd 0, bbox, area, RLE, score) per object",
    ),
    OutputKind(
        "tracks", "--tracks-out", "tracks.txt (MOTChallenge tracks)", lambda s: bool(str(s).strip()), _tracks,
        _stream_entry, commands=("camera", "segment"), needs_objects=TRACKED,
        wrote=lambda output: f"wrote {output['rows']} rows of {output['tracks']} tracks in {output['frames']} frames to {output['path']}",
        help="write the objects' tracks (implies --track) as MOTChallenge text, a line per object and frame: "
        "frame,id,x,y,w,h,score,-1,-1,-1 (frames numbered as the run's other outputs number them, from 0; the box "
        "in pixels from 0), what py-motmetrics and TrackEval read; several sources: put {source} in FILE. Put in "
        "place when the run has ended well",
    ),
    OutputKind(
        "stats", "--stats-json", "stats.json (the run's statistics)", lambda s: bool(str(s).strip()), None,
        _file_entry, sources=SHARED,
        help='write the final stream statistics to this JSON file (with "outputs": each video file\'s codec, '
        'frames and fps; "sources": per source fps, latency p50/p99, drops, reconnects, damaged packets skipped '
        '(decode_errors), state and error; "options": the run\'s resolved options, to replay it)',
    ),
    OutputKind(
        "preview", "--preview", "8080 (the preview page's port)", lambda s: str(s).strip().isdigit(), _preview,
        sources=SHARED,
        help="serve the preview page (MJPEG stream, a box to change the classes) on this port (0: any free port, "
        "printed at start)",
    ),
))  # fmt: skip


def objects_needed(options: Any = None, **given: Any) -> str:
    """Whether a run finds each result's objects (``Result.objects()``), the one answer every command asks for
    (``zsseg segment``, ``zsseg camera`` / ``Session`` and its sinks, ``zsseg batch``, ``zsseg serve``'s
    ``?objects=1``): TRACKED with ``track`` or an output whose row needs tracked objects (``needs_objects``:
    ``--tracks-out``); else FOUND with ``objects`` or an output whose row needs them; else NO_OBJECTS ("", false).

    ``options``: any object with the run's names (``SessionOptions``, a command's arguments): ``objects``,
    ``track``, the ``-o`` specs (``outputs`` or ``output``) and each kind's own option (``tracks_out``); ``given``:
    names whose values replace those of ``options``."""

    def value(name: str) -> Any:
        return given[name] if name in given else getattr(options, name, None)

    needs = [TRACKED if value("track") else FOUND if value("objects") else NO_OBJECTS]
    specs = value("outputs")  # SessionOptions, zsseg batch and segment: outputs; zsseg camera: output (-o, a list)
    if specs is None:
        specs = value("output") if isinstance(value("output"), (list, tuple)) else ()  # segment's: its folder
    specs = [specs] if isinstance(specs, str) else list(specs)
    for kind in OUTPUT_KINDS:
        if kind.needs_objects not in _OBJECT_NEEDS:
            raise ValueError(f"output kind {kind.name!r}: needs_objects must be one of {_OBJECT_NEEDS}")
        if not kind.needs_objects:
            continue
        if kind.option == "-o":
            used = any(output_kind(str(spec)) is kind for spec in specs)
        else:
            used = bool(value(kind.option.lstrip("-").replace("-", "_")))
        if used:
            needs.append(kind.needs_objects)
    return max(needs, key=_OBJECT_NEEDS.index)


def kind_options(option: str = "", command: str = "") -> List[KindOption]:
    """Every kind's own options (of ``option``'s kinds, of those ``command`` takes; all with ""), each once, in the
    table's order."""
    found: Dict[str, KindOption] = {}
    for kind in OUTPUT_KINDS:
        if (not option or kind.option == option) and (not command or command in kind.commands):
            for row in kind.options:
                found.setdefault(row.name, row)
    return list(found.values())


def _kinds_with(name: str) -> List[OutputKind]:
    return [kind for kind in OUTPUT_KINDS if any(row.name == name for row in kind.options)]


def add_output_arguments(parser: Any, option: str = "-o", command: str = "") -> None:
    """Add each kind's own options (of ``option``'s kinds; of those ``command`` takes, when given) to an argparse
    ``parser`` as flags: one group per set of kinds sharing them (``robot outputs: -o out.mcap, -o
    foxglove://HOST:PORT``); the argument name is the option's name (``args.frame_id``, ``args.overlay``)."""
    groups: Dict[Tuple[str, ...], Any] = {}
    for row in kind_options(option, command):
        kinds = tuple(kind.spec for kind in _kinds_with(row.name) if not command or command in kind.commands)
        if kinds not in groups:
            groups[kinds] = parser.add_argument_group(f"options of {', '.join(f'{option} {k}' for k in kinds)}")
        help_text = f"{row.help} ({' / '.join(kinds)})"
        if row.switch_off:
            groups[kinds].add_argument(row.flag, dest=row.name, action="store_false", help=help_text)
        else:
            groups[kinds].add_argument(
                row.flag, dest=row.name, type=row.type, default=row.default, metavar=row.metavar, help=help_text
            )


def output_values(args: Any, option: str = "-o", command: str = "") -> Dict[str, Any]:
    """The kinds' option values an argparse namespace (from ``add_output_arguments``) holds, by name."""
    return {row.name: getattr(args, row.name) for row in kind_options(option, command) if hasattr(args, row.name)}


def output_help(option: str = "-o") -> str:
    """The help of ``option`` (``-o``), from the rows: each kind's words, then what a spec does with several
    sources (``sources``)."""
    kinds = kinds_for(option)
    text = ", ".join(kind.words or kind.example for kind in kinds) + "; repeatable."
    text += (
        " With several sources the name holds {source} (the source's name) or {index} (its position, from 0): "
        f"{option} out/{{source}}.mp4"
    )
    shared = [kind.spec for kind in kinds if kind.sources == SHARED]
    if shared:
        text += f"; {' or '.join(shared)} without it takes every source, topics per source (/NAME/labels)"
    each = [kind.spec for kind in kinds if kind.sources == EACH]
    if each:
        text += f"; {' and '.join(each)} need none (one per source)"
    for kind in kinds:
        if kind.sources == SINGLE:
            text += f"; {kind.spec} shows one source (with several: {kind.several})"
    return text


def flag_help(name: str, before: str = "") -> str:
    """The help of the option of the row called ``name`` (``--labels-out``, ``--save-json``), from its row;
    ``before``: what the command says first (where it takes the kind)."""
    row = output_kind_named(name)
    if row is None or not row.help:
        raise KeyError(f"no output kind {name!r} with a flag of its own")
    return before + row.help


def output_kind_named(name: str) -> Optional[OutputKind]:
    """The row called ``name``, or None."""
    return OUTPUT_KINDS.find(name)


def wrote_line(output: Dict[str, Any], kind: Optional[str] = None) -> Optional[str]:
    """The "wrote ..." line of an output put in place (its sink's ``describe()``), by its row's ``wrote``: ``kind``
    names the row (the sink's ``output_kind``, set when the table opened it), else the description's ``kind``.
    None: nothing to say (a window, an empty output)."""
    row = output_kind_named(kind or str(output.get("kind", "")))
    if row is None and "codec" in output:  # a video sink opened outside the table (its describe() has no kind)
        row = output_kind_named("video")
    if row is None or row.wrote is None:
        return None
    return row.wrote(output)


def output_kind(spec: str, option: str = "-o") -> Optional[OutputKind]:
    """The row of ``option``'s kinds whose parser takes ``spec`` (the first, in the table's order), or None."""
    for kind in OUTPUT_KINDS:
        if kind.option == option and kind.matches(str(spec)):
            return kind
    return None


def kinds_for(option: str = "-o", command: str = "") -> List[OutputKind]:
    """The rows of ``option``'s kinds (those ``command`` takes, when given), in the table's order."""
    return [kind for kind in OUTPUT_KINDS if kind.option == option and (not command or command in kind.commands)]


def open_output(spec: str, options: Optional[SinkOptions] = None, option: str = "-o") -> FrameSink:
    """The sink of ``spec`` given with ``option`` (its row's ``open``).

    Raises:
        SinkError: no kind takes ``spec`` (one line naming every kind of ``option``), or the sink cannot be made.
    """
    kind = output_kind(spec, option)
    if kind is None:
        known = ", ".join(row.example for row in kinds_for(option))
        raise SinkError(f"output {spec!r} is none of the kinds {option} takes: {known}")
    if kind.open is None:
        raise SinkError(f"{option} {spec!r} has no frame sink: the run writes it itself ({kind.example})")
    sink = kind.open(str(spec), options or SinkOptions())
    try:
        sink.output_kind = kind.name  # the row it came from: its "wrote ..." line (wrote_line)
    except AttributeError:  # a sink with __slots__ or a read-only attribute: found by its describe()'s kind
        pass
    return sink


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
    replaced). ``options``: the other fields of ``SinkOptions`` (``sources``, ``objects``, ``title``) and the kinds'
    own options by name (``frame_id``, ``overlay``: ``SinkOptions.values``)."""
    fields = {field.name for field in dataclasses.fields(SinkOptions)}
    values = {name: value for name, value in options.items() if name not in fields}
    known = {row.name for row in kind_options()}
    unknown = sorted(set(values) - known)
    if unknown:
        raise TypeError(f"open_sink got unknown options {unknown}; the kinds' own are {sorted(known)}")
    given = {name: value for name, value in options.items() if name in fields}
    given["values"] = {**given.get("values", {}), **values}
    chosen = SinkOptions(fps=fps, replace=replace, staged=output if output is not None else staged, **given)
    return open_output(spec, chosen)
