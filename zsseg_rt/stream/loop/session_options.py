"""The options of a :class:`~zsseg_rt.stream.loop.session.Session` (what ``zsseg camera``'s flags give) and what they
build before the model loads: the ``-o`` spec of each source, the refusal of an output whose packages are missing,
the ``SinkOptions`` an output is opened with, and the video filter (``--live``, ``--stabilize``, keyframes) around
the Engine. The core's: the command turns its flags into :class:`SessionOptions`; nothing here
reads an argparse Namespace, though the video functions take any object with the video options' attribute names
(``SessionOptions``, or the command's parsed arguments, which use the same names)."""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Dict, Iterable, List, Optional, Sequence

from zsseg_rt.options import LIVE, Preset

__all__ = [
    "PLACEHOLDERS",
    "SessionOptions",
    "check_option_names",
    "check_output_needs",
    "check_video_sources",
    "engine_preset",
    "engine_test_scale",
    "one_or_many_outputs",
    "output_names",
    "output_values",
    "shared_output",
    "sink_options",
    "video_segmenter",
]


@dataclasses.dataclass
class SessionOptions:
    """Everything a Session runs with beyond its sources, model and vocabulary. Each field is a row of the run's
    option table (``zsseg_rt.options.run_rows.RUN_OPTIONS``: what it takes, its default, its flag and help), which
    checks it here (one line, a Python caller's words, before anything opens) and generates ``zsseg camera``'s flags
    (``outputs``: ``-o``, repeatable; ``legend=False``: ``--no-legend``). None: the command's default.

    ``as_dict()`` is what ``--stats-json`` records under ``"options"``; ``SessionOptions.from_dict`` makes it again
    (a run replayed)."""

    outputs: Sequence[str] = ()  # -o: display://, out.mp4, frames/, out.mcap, foxglove://HOST:PORT (output_kinds)
    labels_out: Optional[str] = None  # a folder of 16-bit label PNGs per frame
    save_json: Optional[str] = None  # COCO masks of every frame (files and folders only)
    objects: bool = False  # each result carries its objects (Result.objects(): SessionResult.objects); COCO instances
    track: bool = False  # objects with track ids, one ObjectTracker per source (runtime.tracking); implies objects
    tracks_out: Optional[str] = None  # --tracks-out: each source's tracks as MOTChallenge text (implies track)
    stats_json: Optional[str] = None  # the final statistics
    overwrite: bool = False
    preview: Optional[int] = None  # the MJPEG preview page's port
    preview_host: str = "127.0.0.1"
    preview_readonly: bool = False
    class_file: Optional[str] = None  # watched while streaming (the vocabulary's changes)
    width: Optional[int] = None  # capture size / rate of a camera
    height: Optional[int] = None
    fps: Optional[float] = None  # also the output video's rate (default: the file's, else 30)
    loop: bool = False
    every_frame: bool = False  # live sources too: every frame instead of the newest
    max_frames: Optional[int] = None  # of each source
    max_reconnects: Optional[int] = None
    alpha: float = 0.5
    legend: bool = True
    allow_partial_images: bool = False
    fit_images: bool = False  # an image over the pixel limit: read resized to fit it (with a note) instead of skipped
    skipped_fails: bool = False  # an image skipped (unreadable): exit code 1, as a failed source (zsseg segment's)
    in_order: bool = False  # the sources one after another (zsseg segment's order); track: a tracker per sequence
    # the video filter (docs/video.md)
    live: bool = False  # the LIVE preset: one window a frame, a keyframe every 4, the cheaper flow
    stabilize: bool = False
    stabilize_delay: Optional[int] = None
    keyframe_every: Optional[int] = None
    adaptive_keyframes: bool = False
    temporal_consistency: bool = False
    in_flight: int = 2  # frames in flight on a GPU's device pipeline
    # the robot outputs (ROS 2 messages of -o out.mcap / foxglove://): their rows' options frame_id and overlay
    frame_id: str = "{source}"
    overlay_topic: bool = True
    # the output kinds' own options by name (output_kinds.KindOption: frame_id, overlay, a new kind's); a value here
    # wins over the field of the same option above
    output_options: Dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        """``outputs`` a list (a string is one output), then every field checked by its row (``RUN_OPTIONS.check``:
        the value, then an option that needs another: ``preview_readonly`` without ``preview``).

        Raises:
            OptionError: (a ValueError) ``max_frames: expected a whole number >= 1, or None, got 0``.
        """
        from zsseg_rt.options.run_rows import RUN_OPTIONS

        self.outputs = one_or_many_outputs(self.outputs)
        RUN_OPTIONS.check(dataclasses.asdict(self))

    def as_dict(self) -> Dict[str, Any]:
        """Every option's value, by name (JSON types: paths as strings): ``--stats-json``'s ``"options"``."""
        values = {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}
        values["outputs"] = list(self.outputs)
        values["output_options"] = dict(self.output_options)
        return {name: os.fspath(value) if isinstance(value, os.PathLike) else value for name, value in values.items()}

    @classmethod
    def from_dict(cls, values: Dict[str, Any]) -> "SessionOptions":
        """The options ``as_dict()`` gave (a recorded run's ``"options"``), checked as given; an unknown name is
        refused with the closest one."""
        check_option_names(values, "SessionOptions.from_dict()")
        return cls(**values)

    def describe(self) -> str:
        """The resolved options, one ``name = value`` a line, those not at their default marked ``(given)``."""
        from zsseg_rt.options.run_rows import RUN_OPTIONS

        defaults = RUN_OPTIONS.defaults()
        lines = []
        for name, value in self.as_dict().items():
            mark = "" if value == (list(defaults[name]) if name == "outputs" else defaults[name]) else "  (given)"
            lines.append(f"{name} = {value!r}{mark}")
        return "\n".join(lines)


def one_or_many_outputs(outputs: Any) -> List[str]:
    """``outputs`` as a list of specs: a string or path is one output (``outputs="o.mp4"`` wrote one
    output per character); a list (any iterable) of them, each one.

    Raises:
        OptionError: ``outputs: expected ...``, naming the item that is neither.
    """
    from zsseg_rt.errors import OptionError

    if isinstance(outputs, (str, os.PathLike)):
        outputs = [outputs]
    if isinstance(outputs, (bytes, dict)) or not isinstance(outputs, Iterable):
        raise OptionError(
            f"outputs: expected an output (a string: 'out.mp4') or a list of them, got {outputs!r}", option="outputs"
        )
    specs = []
    for spec in outputs:
        if not isinstance(spec, (str, os.PathLike)) or not os.fspath(spec):
            raise OptionError(
                f"outputs: expected each output as a string ('out.mp4', 'frames/'), got {spec!r}", option="outputs"
            )
        specs.append(os.fspath(spec))
    return specs


PLACEHOLDERS = ("{source}", "{index}")


def output_names(spec: str, names: Sequence[str], option: str = "outputs") -> List[str]:
    """The spec of each source of output ``option`` (``outputs``: an ``-o``; ``labels_out``, ``tracks_out``: their
    flags'): ``{source}`` replaced by its name and ``{index}`` by its position. With several sources a spec naming one
    file or folder is refused (they would all write into it). For ``-o`` the rule is the kind's row
    (``OutputKind.sources``): an ``EACH`` kind (a window, one per source; ``null``) needs no placeholder, nor a
    ``SHARED`` one (an ``.mcap`` file, ``foxglove://``: one output for every source, topics per source; the same spec
    for each); a ``SINGLE`` one (an MJPEG URL) is refused with several sources.

    Raises:
        OptionError: several sources and a fixed file name, or a kind that shows one source (its row says what to
            use); in a Python caller's words (``outputs 'o.mp4'``, ``tracks_out='t.txt'``), the flag's in ``cli``.
    """
    from zsseg_rt.outputs.kinds import EACH, SINGLE, output_kind

    text = str(spec)
    per_source = [text.replace("{source}", name).replace("{index}", str(i)) for i, name in enumerate(names)]
    if len(names) == 1:
        return per_source
    kind = output_kind(text) if option == "outputs" else None
    if kind is not None and kind.sources == SINGLE:
        instead = kind.several or "one -o each"
        raise _refused(
            f"outputs {text!r}: {kind.what} shows one stream; with {len(names)} sources use "
            f"{instead.replace('one -o each', 'one output each')}",
            f"-o {text}: {kind.what} shows one stream; with {len(names)} sources use {instead}",
            "outputs",
        )
    if (kind is not None and kind.sources == EACH) or (option == "outputs" and shared_output(text)):
        return [text] * len(names)
    named, flag = _output_words(option)
    if not any(placeholder in text for placeholder in PLACEHOLDERS):
        stem, ext = os.path.splitext(text.rstrip("/\\"))
        example = f"{stem}_{{source}}{ext}" if ext else os.path.join(stem, "{source}") + "/"
        said = (
            f"names one output, but {len(names)} sources are given ({', '.join(names)}): put {{source}} (each "
            "source's name) or {index} (its position) in it, e.g."
        )
        instead = repr(example) if option == "outputs" else named(example)  # outputs=[...]: the spec alone
        raise _refused(f"{named(text)} {said} {instead}", f"{flag} {text} {said} {flag} {example}", option)
    if len(set(per_source)) != len(per_source):
        said = "gives two sources the same output: use {source} or {index}"
        raise _refused(f"{named(text)} {said}", f"{flag} {text} {said}", option)
    return per_source


def _output_words(option: str) -> Any:
    """How a refusal names a value of output ``option`` to a Python caller, and the option's flag: ``outputs
    'o.mp4'`` and ``-o``; ``tracks_out='t.txt'`` and its row's flag, ``--tracks-out``."""
    if option == "outputs":
        return (lambda value: f"outputs {value!r}"), "-o"
    from zsseg_rt.options.run_rows import RUN_OPTIONS

    return (lambda value: f"{option}={value!r}"), RUN_OPTIONS[option].flag_words() or option


def shared_output(spec: str) -> bool:
    """An ``-o`` whose one output takes every source (an ``.mcap`` file, ``foxglove://``) when it names none."""
    from zsseg_rt.outputs.kinds import output_kind

    kind = output_kind(spec)
    return kind is not None and kind.shared and not any(p in str(spec) for p in PLACEHOLDERS)


def check_option_names(values: Dict[str, Any], caller: str) -> None:
    """Refuse a keyword that is not a run option, in one line (TypeError): an Engine option given as one is said to
    be the Engine's, with where it goes (``object_min_area=`` got "unknown option" and no pointer);
    another, with the closest run option's name.

    Raises:
        TypeError: ``Session got the Engine option 'object_min_area': give it in engine_options={'object_min_area':
            0.0} ...``; ``Session got an unknown option 'max_frame'; did you mean 'max_frames'?``.
    """
    from zsseg_rt.options import ENGINE_OPTIONS
    from zsseg_rt.options.run_rows import RUN_OPTIONS

    run, engine = set(RUN_OPTIONS.names()), set(ENGINE_OPTIONS.names())
    for name, value in values.items():
        if name not in run and name in engine:
            raise TypeError(
                f"{caller} got the Engine option {name!r}: give it in engine_options={{{name!r}: {value!r}}} (the "
                f"keywords of the Engine the session opens; an Engine of your own takes it: Engine(bundle, "
                f"{name}={value!r}))"
            )
    RUN_OPTIONS.check_names(values, caller)  # a misspelt one: "did you mean 'outputs'?"


def check_output_needs(specs: Sequence[str], command: str = "camera") -> None:
    """Refuse, in one line that says what to install, an ``-o`` whose kind needs Python packages this environment
    lacks (an MCAP file: mcap, mcap-ros2-support; Foxglove: foxglove-sdk), before anything runs.

    Raises:
        OptionError: ``Session needs mcap, mcap_ros2 for outputs=['out.mcap'], which this environment lacks (...): pip
            install "zsseg_rt[robots]"``; ``cli``: ``zsseg camera needs ... for -o out.mcap, ...``.
    """
    from zsseg_rt.needs import Needs
    from zsseg_rt.outputs.kinds import output_kind

    for spec in specs:
        kind = output_kind(spec)
        if kind is None or not kind.modules:
            continue
        modules = ", ".join(kind.modules)
        needs = Needs(f"{modules} for -o {spec}", kind.extra, kind.modules)
        missing = needs.missing()
        if missing:
            python = Needs(f"{modules} for outputs=[{spec!r}]", kind.extra, kind.modules)
            cli = needs.refusal(command, missing)
            raise _refused(python.refusal(command, missing, who="Session"), cli, "outputs")


def sink_options(options: Any, fps: float, names: Sequence[str], staged: Any = None, title: str = "zsseg") -> Any:
    """The ``SinkOptions`` of one ``-o`` sink: ``names``, the sources it shows (one, or every source of a shared
    robot output); the kinds' own options (``output_values``)."""
    from zsseg_rt.outputs.kinds import SinkOptions, objects_needed

    return SinkOptions(
        fps=fps,
        staged=staged,
        sources=list(names),
        objects=bool(objects_needed(options)),  # the robot outputs' objects topics
        title=title,
        values=output_values(options),
        alpha=getattr(options, "alpha", 0.5),  # the views output draws its own overlay (zsseg_rt.outputs.views)
        legend=getattr(options, "legend", True),
    )


def output_values(options: Any) -> Dict[str, Any]:
    """The value of every output kind's own option (``output_kinds.KindOption``) ``options`` gives: its
    ``output_options`` entry, else the older field that holds it (``frame_id``, ``overlay_topic``), else the row's
    default.

    Raises:
        TypeError: ``output_options`` names an option no kind has (with the closest name).
    """
    from zsseg_rt.options import did_you_mean
    from zsseg_rt.outputs.kinds import kind_options

    rows = kind_options()
    given = dict(getattr(options, "output_options", None) or {})
    unknown = sorted(set(given) - {row.name for row in rows})
    if unknown:
        hint = did_you_mean(unknown[0], sorted(row.name for row in rows))
        raise TypeError(f"no output kind has the option {unknown[0]!r}" + (f"; {hint}" if hint else ""))
    values = {}
    for row in rows:
        if row.name in given:
            values[row.name] = given[row.name]
        elif row.field is not None and hasattr(options, row.field):
            values[row.name] = getattr(options, row.field)
        else:
            values[row.name] = row.default
    return values


# ---- the video filter: any object with the video options' names (SessionOptions, the command's arguments) -------
def object_finder(options: Any, engine: Any, sources: Sequence[Any]) -> Any:
    """The runner's ``objects``: with ``track`` (or ``tracks_out``) one tracker per source (its ``track_max_missed``
    the Engine's option), with ``in_order`` one per sequence (:func:`sequence_key`); an image file's frame in its
    folder's (:class:`SequenceTrackers`); else ``options.objects``."""
    from zsseg_rt.outputs.kinds import FOUND, TRACKED, objects_needed

    need = objects_needed(options)  # objects; track, tracks_out: tracked (the output kinds' rows)
    if need != TRACKED:
        return need == FOUND
    from zsseg_rt.runtime.tracking import SourceTrackers

    trackers = SourceTrackers(getattr(getattr(engine, "options", None), "track_max_missed", None))
    if not getattr(options, "in_order", False):  # side by side: each source's frames in its own order, one tracker each
        return SequenceTrackers(trackers, list(range(len(sources))), by_source=True)
    return SequenceTrackers(trackers, [sequence_key(source, number) for number, source in enumerate(sources)])


class SequenceTrackers:
    """The runner's ``objects`` with ``track`` (a ``FrameObjectFinder``): a frame read from an image file is tracked
    in its folder's sequence (``sequence_of(frame.path)``: a glob over two folders is two sequences, as in ``zsseg
    segment``; ``by_source``: within its source's, side by side), any other frame in its source's (``keys``)."""

    def __init__(self, trackers: Any, keys: Sequence[Any], by_source: bool = False):
        self.trackers, self.keys, self.by_source = trackers, keys, by_source

    def __call__(self, stream: int, result: Any) -> Any:
        return self.trackers(self.keys[stream], result)

    def of_frame(self, stream: int, frame: Any, result: Any) -> Any:
        path = getattr(frame, "path", None)
        if path is None:
            return self(stream, result)
        from zsseg_rt.input_files import sequence_of

        key = (stream, sequence_of(path)) if self.by_source else sequence_of(path)
        return self.trackers(key, result)


def sequence_key(source: Any, number: int) -> Any:
    """The sequence a source's frames are part of (``zsseg_rt.input_files.sequence_of``): its video file's, its images'
    folder's (image files named one by one in one folder: one sequence); else (a stream, a glob over several
    folders) its own, ``number``."""
    from zsseg_rt.input_files import sequence_of
    from zsseg_rt.outputs.views import source_reads

    [(_name, _kind, paths)] = source_reads([source], [str(number)])
    found = {sequence_of(path) for path in paths}
    return found.pop() if len(found) == 1 else number


def check_video_sources(options: Any, sources: Any) -> None:
    """Refuse what the video options cannot do with these sources, before the model loads: ``--stabilize-delay``
    on a live source (its frames would wait for frames not yet filmed), or with keyframes; adaptive keyframes
    without a gap (``--keyframe-every 1``).

    Raises:
        OptionError: one line naming the option, the source and why (the flags' words in ``cli``).
    """
    if getattr(options, "adaptive_keyframes", False) and getattr(options, "keyframe_every", None) == 1:
        raise _adaptive_needs_a_gap()
    delay = getattr(options, "stabilize_delay", None)
    if delay and getattr(options, "live", False):
        raise _refused(
            f"stabilize_delay={delay} waits for frames ahead, live=True is for camera rate: choose one (live=True "
            "with stabilize=True for stable live labels)",
            f"--stabilize-delay {delay} waits for frames ahead, --live is for camera rate: choose one (--live "
            "--stabilize for stable live labels)",
            "stabilize_delay",
        )
    if not delay:
        return
    live = [source for source in sources if getattr(source, "live", False)]
    if live:
        why = f"{live[0].name} is live, and a frame's labels would wait for {delay} frames not yet filmed"
        raise _refused(
            f"stabilize_delay={delay}: {why}; use stabilize=True (causal) on a camera, the look-ahead on a recorded "
            "file or folder",
            f"--stabilize-delay {delay}: {why}; use --stabilize (causal) on a camera, the look-ahead on a recorded "
            "file or folder",
            "stabilize_delay",
        )
    if getattr(options, "adaptive_keyframes", False) or (getattr(options, "keyframe_every", None) or 1) != 1:
        raise _refused(
            "stabilize_delay runs the encoder on every frame: it does not combine with keyframe_every or "
            "adaptive_keyframes",
            "--stabilize-delay runs the encoder on every frame: it does not combine with --keyframe-every",
            "stabilize_delay",
        )


def engine_preset(options: Any) -> Optional[Preset]:
    """``Engine(preset=)`` of the stream: ``zsseg_rt.options.LIVE`` with ``--live`` (the Engine's one window a frame;
    the ``VideoSegmenter`` of that Engine takes its keyframes and flow), else None."""
    return LIVE if getattr(options, "live", False) else None


def engine_test_scale(options: Any) -> Any:
    """``Engine(test_scale=)`` that ``--live`` means (the :data:`LIVE` preset's), else None (the bundle's resize)."""
    preset = engine_preset(options)
    return preset.engine_options()["test_scale"] if preset is not None else None


def video_segmenter(options: Any, engine: Any) -> Any:
    """What the stream loop segments with: the Engine itself, or a ``VideoSegmenter`` around it when
    ``--stabilize`` / ``--keyframe-every`` / ``--adaptive-keyframes`` / ``--live`` ask for one.

    Raises:
        OptionError: an option the bundle cannot do (``stabilize`` without per-class scores), ``adaptive_keyframes``
            with ``keyframe_every=1``.
    """
    delay = int(getattr(options, "stabilize_delay", None) or 0)
    stabilize = bool(getattr(options, "stabilize", False)) or delay > 0
    adaptive = bool(getattr(options, "adaptive_keyframes", False))
    every = getattr(options, "keyframe_every", None)
    preset = getattr(engine, "preset", None)  # --live: the Engine's preset, whose keyframes the segmenter takes
    if every is None and preset is not None:
        every = preset.video_options().get("keyframe_every")
    if adaptive and every == 1:
        raise _adaptive_needs_a_gap()
    if not stabilize and not adaptive and (every or 1) == 1 and preset is None:
        return engine  # (a preset's segmenter, even one that propagates nothing, says what the preset trades)
    from zsseg_rt.pipeline.class_scores import ClassScoresUnavailable
    from zsseg_rt.stream.video_filter.video import VideoSegmenter

    try:
        return VideoSegmenter(
            engine, stabilize=stabilize, keyframe_every=every, adaptive=adaptive, stabilize_delay=delay
        )
    except ClassScoresUnavailable as exc:
        raise _refused(f"stabilize=True: {exc}", f"--stabilize: {exc}", "stabilize") from None


def _adaptive_needs_a_gap() -> Exception:
    return _refused(
        "adaptive_keyframes=True needs keyframe_every=K >= 2 (the longest gap), or keyframe_every=None (8)",
        "--adaptive-keyframes needs --keyframe-every K >= 2 (the longest gap), or no --keyframe-every (8)",
        "adaptive_keyframes",
    )


def _refused(python: str, cli: str, option: str) -> Exception:
    """The refusal of a run option, in a Python caller's words and the command line's (``cli``)."""
    from zsseg_rt.errors import OptionError

    return OptionError(python, option=option, cli=cli)
