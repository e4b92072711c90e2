"""``zsseg_rt.stream.Session``: what ``zsseg camera`` runs, for a Python app that wants the camera command in its own
process. Sources (the command's URIs and files), a model (an Engine, or a bundle the Session opens),
the vocabulary, and :class:`~zsseg_rt.stream.loop.session_options.SessionOptions` (the command's outputs and video
options); then either every frame's result in a loop of the app's own, or the run to the end::

    from zsseg_rt.stream import Session

    with Session(["clip.mp4"], "bundle", classes="person,floor", outputs=["out.mcap"]) as session:
        for item in session:          # the results, as the loop makes them (item.source, item.frame, item.result)
            print(item.source, item.frame.index, item.result.class_names[item.result.labels[0, 0]])
    session.summary                   # the statistics --stats-json writes; session.exit_code: the command's

    Session(["0"], engine, classes="person", outputs=["out.mp4"], options=SessionOptions(live=True)).run()

The same files, statistics and signal behaviour as the command: every output is checked before anything opens
(``zsseg_rt.outputs.plan``), staged while the run goes on and put in place only when it ended well (a failed run
replaces nothing); SIGINT / SIGTERM stop the stream cleanly, its outputs finalised (in the main thread, while
:meth:`Session.run` or the loop runs); so do :meth:`Session.close` and a ``break`` inside ``with Session(...)``. An
exception out of the app's loop, or a loop left unfinished without ``close()``, is a failed run (nothing put in place,
``exit_code`` 1, the partial files named). Progress is the caller's
(``progress=``: the command's bar); the command's flags become :class:`SessionOptions` in ``zsseg_rt.cli.camera``.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import logging
import os
import queue
import threading
import weakref
from typing import Any, Callable, ContextManager, Generator, Iterator, List, Optional, Sequence, Union

from zsseg_rt.errors import OptionError
from zsseg_rt.stream.loop.session_inputs import SessionInput, open_inputs, source_path
from zsseg_rt.stream.loop.session_left import LeftOpen, LoopLeft, left_line
from zsseg_rt.stream.loop.session_options import (
    SessionOptions,
    check_option_names,
    check_output_needs,
    check_video_sources,
    engine_preset,
    object_finder,
    output_names,
    shared_output,
    video_segmenter,
)
from zsseg_rt.stream.loop.session_record import model_name, record_options, replay_arguments
from zsseg_rt.stream.loop.session_sinks import build_sinks
from zsseg_rt.stream.loop.vocabulary import lend_vocabulary
from zsseg_rt.stream.sources.base import FrameSource

__all__ = ["NO_OUTPUT_MESSAGE", "Session", "SessionInput", "SessionResult", "open_inputs", "replay_arguments"]

log = logging.getLogger("zsseg_rt.stream")

NO_OUTPUT_MESSAGE = (
    "no output given and no window possible here (headless OpenCV or no display): give -o out.mp4 (a video file), "
    "-o frames/ (a folder of images), --preview 8080 (watch it in a browser: MJPEG on http://127.0.0.1:8080/), or "
    "-o null (nothing written: the run's statistics only)"
)
NO_OUTPUT_WORDS = (  # the same, to a Python caller
    "no output given and no window possible here (headless OpenCV or no display): give outputs=['out.mp4'] (a "
    "video file), outputs=['frames/'] (a folder of images), preview=8080 (watch it in a browser: MJPEG on "
    "http://127.0.0.1:8080/), or outputs=['null'] (nothing written: the results in your own loop only)"
)
_RESULTS_QUEUE = 4  # results waiting for the app's loop; then the stream loop waits (the app sets the pace)


@dataclasses.dataclass
class SessionResult:
    """One frame's result, as the loop made it: the source's name, the ``Frame`` (``.image``, ``.index``: its number,
    the name its outputs give it) and the result (``.labels``, ``.class_names``; a ``VideoResult`` with the filter);
    with ``objects=True``, ``objects``: its regions as objects (``zsseg_rt.runtime.objects.FrameObjects``, what
    ``result.objects()`` gives; with ``track=True`` each with its ``track_id``, one tracker per source), else None."""

    source: str
    frame: Any
    result: Any
    objects: Any = None


# a progress display: called with the started Session, it gives a context manager around the run whose value is
# None or a callback (frame, result, stats) called after each frame (zsseg_rt.cli.camera_progress: the bar)
Progress = Callable[["Session"], ContextManager[Optional[Callable[..., None]]]]


class Session:
    """The camera pipeline: see the module's docstring.

    Args:
        sources: what ``zsseg camera`` takes: ``0``, ``/dev/video0``, ``csi://0``, ``rtsp://...``, a video file, an
            image folder; ``NAME=SOURCE`` names one; or a ``FrameSource`` (kept as it is; recorded by its ``name``).
        model: an ``Engine`` (the app's; its own classes unless ``classes`` is given, and left open), or a bundle
            directory (opened with ``engine_options``, closed at the end).
        classes: the vocabulary (``"a,b,c"`` or a list); None: the Engine's, or ``options.class_file``'s.
        options: a :class:`SessionOptions`; or its fields as keywords (``outputs=["out.mcap"]``).
        engine_options: the Engine's keywords when ``model`` is a bundle (``backend``, ``mode``, ...; ``mode``: fast
            where the bundle's pipeline has it, else its one order).
        max_pixels: the frames' pixel limit (None: ``$ZSSEG_MAX_PIXELS``, else 40 MP; 0: none).
        progress: a :data:`Progress` (the command's bar); None: nothing shown.
        on_written: called with each frame's :class:`SessionResult` (the one the app's loop gets) once the frame's
            outputs hold it (its files written: ``zsseg segment``'s line per image), in the source's writer thread,
            in :meth:`run` and in a loop; an exception out of it fails the run as a failed write does.
        command: how refusals name the program (``zsseg camera``'s "camera").

    Raises:
        OptionError: (a ValueError) an option refused, in one line and a Python caller's words (``cli``: the
            command line's), before anything is opened or loaded; OutputRefused: an output refused.
    """

    def __init__(
        self,
        sources: Union[str, "os.PathLike[str]", FrameSource, Sequence[Union[str, "os.PathLike[str]", FrameSource]]],
        model: Any,
        classes: Union[None, str, Sequence[str]] = None,
        *,
        options: Optional[SessionOptions] = None,
        engine_options: Optional[dict] = None,
        max_pixels: Optional[int] = None,
        progress: Optional[Progress] = None,
        on_written: Optional[Callable[[SessionResult], None]] = None,
        command: str = "camera",
        **option_values: Any,
    ):
        if options is not None and option_values:
            raise TypeError(f"give the options as options= or as keywords, not both: {sorted(option_values)}")
        self.options = options if options is not None else _options(option_values)
        given = [sources] if isinstance(sources, (str, os.PathLike, FrameSource)) else list(sources)  # one, or a list
        # a path or a source string; a FrameSource as it is (zsseg segment's image files: ImageFilesSource(paths=))
        self.sources: List[Any] = [s if isinstance(s, FrameSource) else os.fspath(s) for s in given]
        if not self.sources:
            raise OptionError("a session needs at least one source (a camera, a stream URL, a video file, a folder)")
        self.model, self.classes, self.command = model, classes, command
        self.engine_options = dict(engine_options or {})
        if isinstance(model, (str, os.PathLike)):  # the Engine the session opens: an option no run option uses
            from zsseg_rt.options.run_rows import RUN_OPTIONS

            RUN_OPTIONS.check_engine_options(dataclasses.asdict(self.options), self.engine_options)
        self.progress, self.on_written = progress, on_written
        self._max_pixels = max_pixels
        self.inputs: List[SessionInput] = []
        self.runner: Any = None
        self.engine: Any = None
        self.summary: Optional[dict] = None  # the --stats-json statistics, once the run ended
        self.written: List[Any] = []  # (the output kind, describe()) of each sink, once the run ended: "wrote ..."
        self.exit_code: Optional[int] = None  # the command's: 0, 1 (a source failed), 128 + a signal
        self.skipped: List[Any] = []  # (path, why) of each image skipped, once the run ended (summary "skipped")
        self._unopened: List[Any] = []  # (path, why) of each source skipped_fails skipped: it could not be opened
        self._given: List[SessionInput] = []  # every source in the order given, those not opened too (the summary)
        self._used = False  # run() or a loop began (_claim): a Session runs once
        self._closed = False  # close() was called: nothing runs after it
        self._generator: Optional["weakref.ref[Generator[SessionResult, None, None]]"] = None
        self._held: Optional[Generator[SessionResult, None, None]] = None  # inside ``with``: kept until __exit__
        self._entered = False
        self._closing = False  # close(): the app ends its loop (a good end)
        self._left: Optional[str] = None  # why the app's loop was left without close(): a failed run
        self._give_back: Callable[[], None] = lambda: None  # an app's Engine: gives it its vocabulary back

    # ---- the two ways to run -----------------------------------------------------------------------------------
    def run(self) -> int:
        """Run to the end (every source done, ``max_frames``, a window's q, or SIGINT / SIGTERM); returns the
        command's exit code. The outputs are put in place when it ended well, else none is (the error raised)."""
        self._claim()
        for _ in self._session(iterate=False):
            pass
        assert self.exit_code is not None
        return self.exit_code

    def __iter__(self) -> Iterator[SessionResult]:
        """Every frame's result as the loop makes it (each frame is drawn and written as well). The stream loop runs
        in a thread of its own while the app's loop takes the results (when a few wait, the stream waits for the
        app). The run ends well, its outputs finalised and put in place, when the loop runs to its end, at SIGINT /
        SIGTERM, or at :meth:`close` (a ``break`` inside ``with Session(...)`` closes it at the block's end). An
        exception out of the app's loop, or the loop dropped unfinished without ``close()`` (a ``break`` outside a
        ``with`` block, an iterator left open when the interpreter exits), is a failed run:
        nothing is put in place, ``exit_code`` is 1, and a warning names what was kept or removed. A second loop
        (or :meth:`run`) is refused here, the first left as it was (its stream, :meth:`close`, the exit hook)."""
        self._claim()
        generator = self._session(iterate=True)
        self._generator = weakref.ref(generator)  # dropped unfinished: the generator closes, a failed run
        if self._entered:
            self._held = generator  # a break inside ``with``: __exit__ decides how the run ended
        return generator

    def __enter__(self) -> "Session":
        self._entered = True
        return self

    def __exit__(self, kind: Any, value: Any, _traceback: Any) -> None:
        try:
            if kind is None:
                self.close()
            else:  # the app's loop raised: a failed run, whose outputs replace nothing
                self._abandon(f"{kind.__name__}: {value}" if str(value) else kind.__name__)
        finally:
            self._entered, self._held = False, None

    def close(self) -> None:
        """End a loop left early as a good end (the stream stopped, its outputs finalised and put in place); nothing
        to do after a run. A closed Session runs nothing more (:meth:`run` and a loop are refused)."""
        generator = self._generator() if self._generator is not None else None
        if generator is not None:
            self._closing = True
            generator.close()
        self._held, self._closed = None, True

    def _claim(self) -> None:
        """The one run of this Session: refused after :meth:`close`, and a second one before anything of the first
        changes."""
        if self._closed:
            raise RuntimeError("this Session was closed: make a new one")
        if self._used:
            raise RuntimeError("a Session runs once: make a new one to run again")
        self._used = True

    def _abandon(self, why: str) -> None:
        """End a loop left unfinished as a failed run (see :meth:`__iter__`)."""
        generator = self._generator() if self._generator is not None else None
        if generator is not None:
            self._left = self._left or why
            generator.close()
        self._held = None

    def resolved_options(self) -> dict:
        """What this run runs with, resolved, as JSON types (``--stats-json``'s ``"options"``): its ``sources``,
        ``model`` (the bundle; "the Engine" for an app's own), the vocabulary given (``classes``; None: the class
        file's or the Engine's) and, once the model is open, the names its labels index (``class_names``), every run
        option (``run``: :meth:`SessionOptions.as_dict`), every Engine option (``engine``: the open Engine's
        resolved values, else the keywords given) and ``max_pixels``; every path absolute (an app's Engine: its
        ``bundle``, said). :func:`replay_arguments` makes a Session's arguments of it (``session_record.py``)."""
        return record_options(self)

    # ---- the run ----------------------------------------------------------------------------------------------
    def _session(self, iterate: bool) -> Generator[SessionResult, None, None]:
        """Sources opened, every output planned and claimed, the stream run, and the outputs put in place only when
        it ended well (a failed run replaces nothing: ``zsseg_rt.outputs.plan``); the sources closed in any case. A
        loop the app left unfinished ends as a failed run, said in a warning, never as an exception out of an iterator
        being collected. (One generator: a GeneratorExit through ``yield from`` would end the outer one too.)"""
        from zsseg_rt.console.signal_phases import phase
        from zsseg_rt.image_io import max_pixels_limit

        left_open = LeftOpen(weakref.ref(self))  # at interpreter exit, a loop still open is ended
        atexit.register(left_open)
        try:
            classes = self._initial_classes()
            max_pixels = max_pixels_limit(self._max_pixels)
            self.inputs = self._open(max_pixels)
            try:
                outputs, label_folders = self._plan()
                outputs.prepare()  # claims every output (owner locks: zsseg_rt.outputs.owner): an abort releases
                try:
                    phase(f"{self.command}:outputs-planned")  # (test hooks: python_tests/test_signal_phases.py)
                    sinks, shared = self._start(classes, max_pixels, outputs, label_folders)
                    try:
                        with self._progress() as shown:
                            if not iterate:
                                self._chain(shown, None)
                                self.runner.run()
                            else:
                                results: "queue.Queue[SessionResult]" = queue.Queue(maxsize=_RESULTS_QUEUE)
                                self._chain(shown, results)
                                stream = self._stream_in_thread(results)
                                for item in stream:
                                    try:
                                        yield item
                                    except GeneratorExit:  # the app left its loop: close() is a good end, else failed
                                        self._left_loop()
                                        for _ in stream:  # the results still on their way, dropped
                                            pass
                                        break
                    finally:
                        if self.segment is not self.engine:
                            self.segment.close()  # the video filter's buffers (device ones on a device pipeline)
                    self._finish(sinks, shared)
                    if self._left is not None:
                        raise LoopLeft(self._left)
                    if self.options.skipped_fails and self.skipped and not self.speed.images:
                        outputs.abort()  # every image failed: nothing to put in place (no empty COCO file)
                    else:
                        outputs.commit(self.summary, self.written)
                except BaseException as exc:
                    kept = outputs.abort()
                    if isinstance(exc, LoopLeft):
                        self.exit_code = 1
                        log.warning("%s", left_line(self._left, kept))
                    raise
            finally:
                for opened in self.inputs:
                    opened.source.close()
        except LoopLeft:
            pass  # said above
        except Exception as exc:  # noqa: BLE001 - the app's loop is gone: said, not raised out of a collection
            if self._left is None:
                raise
            self.exit_code = 1
            log.error("the stream failed after its loop was left (%s): %s", self._left, exc)
        finally:
            atexit.unregister(left_open)
            self._give_back()  # an app's Engine: its own vocabulary again

    def _left_loop(self) -> None:
        """The app's loop ended before the stream: by close() (a good end: the stream stopped, outputs finalised), or
        else as a failed run (the runner aborts its sinks: nothing put in place)."""
        if not self._closing:
            self._left = self._left or "the loop was left unfinished without close()"
            self.runner.abandon()
        self.runner.stop()

    def _stream_in_thread(self, results: "queue.Queue[SessionResult]") -> Iterator[SessionResult]:
        """The stream loop in a thread, its results handed to the caller's loop; the signals handled in the main
        thread as the loop handles them (a flag it stops at)."""
        runner, box = self.runner, {}
        main = threading.current_thread() is threading.main_thread()
        previous = runner._install_signals() if main else {}

        def work() -> None:
            try:
                runner.run(handle_signals=False)
            except BaseException as exc:  # noqa: BLE001 - raised in the caller's thread below
                box["error"] = exc

        worker = threading.Thread(target=work, name="zsseg-session", daemon=True)
        worker.start()
        try:
            while True:
                try:
                    item = results.get(timeout=0.1)
                except queue.Empty:
                    if worker.is_alive() or not results.empty():
                        continue
                    break
                yield item
        finally:
            if worker.is_alive():
                runner.stop()  # an error in the caller's thread (the stream's own end is waited for above)
                while worker.is_alive():
                    with contextlib.suppress(queue.Empty):
                        results.get(timeout=0.05)
            worker.join()
            import signal

            for sig, handler in previous.items():
                signal.signal(sig, handler)
        if "error" in box:
            raise box["error"]

    def _chain(self, shown: Optional[Callable[..., None]], results: Optional["queue.Queue[SessionResult]"]) -> None:
        """The runner's ``on_result`` (the speed meter's, the progress display's, the caller's loop's queue) and
        ``on_written`` (the caller's, with the SessionResult)."""
        runner, speed, names = self.runner, self.speed, [item.name for item in self.inputs]

        def on_result(frame: Any, result: Any, stats: Any) -> None:
            speed.add(result.timing, result.labels.shape)
            if shown is not None:
                shown(frame, result, stats)
            if results is None:
                return
            item = SessionResult(names[frame.stream], frame, result, getattr(result, "frame_objects", None))
            while not runner._stopping():  # the caller's loop sets the pace; a stop never waits for it
                try:
                    results.put(item, timeout=0.1)
                    return
                except queue.Full:
                    continue

        runner.on_result = on_result
        told = self.on_written
        if told is not None:  # once the frame's outputs hold it (the runner's writer thread)
            runner.on_written = lambda frame, result: told(
                SessionResult(names[frame.stream], frame, result, getattr(result, "frame_objects", None))
            )

    @contextlib.contextmanager
    def _progress(self) -> Iterator[Optional[Callable[..., None]]]:
        if self.progress is None:
            yield None
            return
        with self.progress(self) as shown:
            yield shown

    def _initial_classes(self) -> Any:
        from zsseg_rt.stream.loop.vocabulary import ClassFileWatcher

        class_file = self.options.class_file
        if self.classes is not None and class_file:
            raise OptionError(
                f"give the vocabulary once: classes={self.classes!r} or class_file={class_file!r} (a watched file, to "
                "change it while streaming), not both",
                "class_file",
                cli=f"give the vocabulary once: --classes {self.classes!r} or --class-file {class_file!r} (a watched "
                "file, to change it while streaming), not both",
            )
        if self.classes is not None:
            return self.classes
        if class_file:
            names = ClassFileWatcher(class_file).read()
            if names:
                return names
            raise OptionError(f"class file {class_file!r} is empty: put one class name per line", "class_file")
        if not isinstance(self.model, (str, bytes)) and getattr(self.model, "class_names", None):
            return None  # an Engine of the app's: its own vocabulary
        raise OptionError(
            "give the vocabulary: classes='a,b,c' (or a list of names), or class_file='classes.txt'",
            "classes",
            cli='give the vocabulary with --classes "a,b,c" or --class-file classes.txt',
        )

    def _open(self, max_pixels: int) -> List[SessionInput]:
        """The sources opened (:func:`open_inputs`); those skipped_fails skips (they could not be opened) kept in
        ``self._unopened`` as ``(path, why)`` for ``skipped``; every one of them failing: the first one's error."""
        inputs = self._given = open_inputs(self.sources, self.options, max_pixels)
        failed = [item for item in inputs if item.failed is not None]
        for item in failed:
            log.error("skipped %s: %s", source_path(item.source), item.failed)  # zsseg segment: "skipped PATH: why"
        self._unopened = [(source_path(item.source), item.failed) for item in failed]
        if failed and len(failed) == len(inputs):
            from zsseg_rt.stream.sources import SourceError

            raise SourceError(f"every source failed to open: {'; '.join(why for _, why in self._unopened)}")
        return [item for item in inputs if item.failed is None]

    def _plan(self) -> Any:
        """Every refusal before anything is opened or loaded, and every file output (``-o`` videos and folders,
        ``--labels-out``, ``--stats-json``, ``--save-json``) checked (``zsseg_rt.outputs.plan``): no two name the
        same file, none is an input, none replaces an existing file without ``overwrite`` nor a file zsseg_rt did
        not write, an interrupted run's leftovers are refused without ``overwrite``, the disk is not full. Returns
        ``(the RunOutputs, the label folders)``.

        Raises:
            OptionError, OutputRefused: one line naming the path and what to do.
        """
        from zsseg_rt.console.opencv_build import display_available, opencv_has_gui
        from zsseg_rt.console.run_arguments import flag_words
        from zsseg_rt.outputs.run_outputs import RunOutputs

        options, names = self.options, [item.name for item in self.inputs]
        given = options.labels_out or options.save_json or options.tracks_out  # outputs without -o
        if not options.outputs and options.preview is None and not given:
            if not (opencv_has_gui() and display_available()):
                raise OptionError(NO_OUTPUT_WORDS, "outputs", cli=NO_OUTPUT_MESSAGE)
        check_video_sources(options, [item.source for item in self.inputs])  # --stabilize-delay: recorded video
        live_names = [item.name for item in self.inputs if item.source.live]
        if options.in_order and live_names:
            raise OptionError(
                f"in_order=True runs the sources one after another, and {live_names[0]} is a live source, whose frames never "
                "end: leave in_order out, or give video files and image folders only",
                "in_order",
            )
        if options.in_order and options.loop and options.max_frames is None and len(names) > 1:
            raise OptionError(
                f"in_order=True runs the sources one after another, and loop=True restarts {names[0]} at its end for "
                f"ever: {names[1]} would never start: give max_frames (each source's frames, then the next), or leave "
                "loop or in_order out",
                "in_order",
            )
        specs = [output_names(spec, names) for spec in options.outputs]  # every refusal before anything opens
        check_output_needs(options.outputs, self.command)  # a kind whose packages are missing: what to install
        label_folders = output_names(options.labels_out, names, "labels_out") if options.labels_out else []
        every: List[str] = []
        for given_spec, expanded in zip(options.outputs, specs):
            every += [given_spec] if shared_output(given_spec) else list(expanded)  # a shared output: once
        coco = options.save_json
        if coco and any(item.source.live for item in self.inputs):
            live = next(item.name for item in self.inputs if item.source.live)
            said = f"the COCO masks of video files and image folders; {live} is a live source, whose frames never end"
            raise OptionError(
                f"save_json={coco!r}: {said}: record it first (outputs=['clip.mp4']), or use labels_out='DIR'",
                "save_json",
                cli=f"--save-json {coco}: {said}: record it first (-o clip.mp4), or use --labels-out DIR",
            )
        sources = [item.source for item in self.inputs]
        tracks = output_names(options.tracks_out, names, "tracks_out") if options.tracks_out else []  # per source
        declared = (every, label_folders, options.stats_json, options.overwrite, sources, coco, tracks)
        # the flags' words inside in_flag_words(); each source's name: the views name its frames by it
        plan = RunOutputs.plan_for(*declared, python=not flag_words(), names=names)
        return plan, label_folders

    def _start(self, classes: Any, max_pixels: int, outputs: Any, label_folders: Sequence[str]) -> Any:
        """The sinks, the model and the stream loop (``self.runner``); returns ``(sinks per source, shared)``."""
        from zsseg_rt.console.signal_phases import phase
        from zsseg_rt.console.speed import SpeedMeter
        from zsseg_rt.stream.loop.runner import MultiStreamRunner

        self.speed = SpeedMeter()  # the "Speed: ..." line at the end, and --stats-json's "speed" (console.speed)

        def request_classes(names: Any) -> Any:  # the preview page's class box (POST /classes)
            if self.runner is None:
                raise RuntimeError("the stream is still starting (loading the model); try again in a moment")
            return self.runner.request_classes(names)

        snapshot = lambda: self.runner.snapshot() if self.runner is not None else {}  # noqa: E731
        given = (self.options, self.inputs, snapshot, outputs, label_folders, request_classes, self.command)
        sinks, shared = build_sinks(*given)
        try:
            phase("camera:model-load")
            self.engine = self._engine(classes, max_pixels)
        except BaseException:
            for sink in [sink for own in sinks for sink in own] + shared:
                sink.abort()
            raise
        engine, options = self.engine, self.options
        for sink in [sink for own in sinks for sink in own] + shared:  # a sink that records the model (the views)
            if callable(getattr(sink, "model_opened", None)):
                sink.model_opened(engine)
            if callable(getattr(sink, "reads_from", None)):  # the views: an image's place in the run (image N of M)
                sink.reads_from([item.source for item in self.inputs], options.in_order)
        if engine.weights_banner:
            log.warning("%s: %s (the overlay says so too)", model_name(self.model), engine.weights_banner)
        # a file or folder is not a live camera: nothing is dropped; every_frame: live sources neither
        every_frame = [options.every_frame or not item.source.live for item in self.inputs]
        for item, own, every in zip(self.inputs, sinks, every_frame):
            log.info(
                "streaming %s%s with %s (%s) -> %s%s",
                "" if len(self.inputs) == 1 else f"{item.name} = ",
                item.source.name,
                engine.backend.name,
                ", ".join(engine.class_names),
                ", ".join(sink.name for sink in own + shared),
                " (every frame)" if every else " (newest frame; stale frames dropped)",
            )
        self.segment = video_segmenter(options, engine)  # the Engine itself without the video filter's options
        trades = getattr(self.segment, "trades", None)  # --live: what its preset trades
        self.trades = trades() if callable(trades) else None
        if self.trades is not None:
            log.info("%s", self.trades["line"])
        self.runner = MultiStreamRunner(
            self.segment,
            [item.source for item in self.inputs],
            sinks,
            shared_sinks=shared,
            names=[item.name for item in self.inputs],
            class_file=options.class_file,
            drop_stale=[not every for every in every_frame],
            loop=options.loop,
            max_reconnects=options.max_reconnects,
            alpha=options.alpha,
            legend=options.legend,
            max_frames=options.max_frames,
            opened=[item.opened for item in self.inputs],
            temporal_consistency=options.temporal_consistency,
            in_flight=options.in_flight,
            objects=object_finder(options, engine, [item.source for item in self.inputs]),
            in_order=options.in_order,
        )
        if options.skipped_fails:  # an image whose segmentation fails (out of memory, a bad value): skipped too
            self.runner.skip_errors = (ValueError, OSError, MemoryError)
        log.debug("the run's options:\n%s", options.describe())  # (-v: every option, resolved)
        phase("camera:stream-start")
        return sinks, shared

    def _engine(self, classes: Any, max_pixels: int) -> Any:
        """The app's Engine (its vocabulary set when ``classes`` is given), or the bundle's, opened here."""
        if not isinstance(self.model, (str, bytes)) and not hasattr(self.model, "__fspath__"):
            if engine_preset(self.options) is not None and getattr(self.model, "preset", None) is None:
                raise OptionError("live=True sets the Engine's preset: open it with Engine(bundle, preset='live')")
            self._give_back = lend_vocabulary(self.model, classes)  # the app's vocabulary back at the run's end
            self._owns_engine = False
            return self.model
        from zsseg_rt.runtime import Engine

        options = dict(self.engine_options)
        options["max_pixels"] = max_pixels  # the frames' limit (0: none), as the source checks it
        options["mode"] = options.get("mode") or default_mode(str(self.model))
        self._owns_engine = True
        return Engine(str(self.model), classes=classes, preset=engine_preset(self.options), **options)

    def _finish(self, sinks: Sequence[Sequence[Any]], shared: Sequence[Any]) -> None:
        """The summary (``self.summary``: what --stats-json writes), its closing lines, and ``self.exit_code``."""
        from zsseg_rt.stream.loop.session_summary import kernel_line, log_summary

        engine, runner, speed = self.engine, self.runner, self.speed
        if self._owns_engine:
            engine.close()  # a background preparation (--prepare background) ends with the stream
        summary = runner.snapshot()
        summary["backend"] = engine.backend.name
        precision = getattr(engine.backend, "precision", None)
        summary["speed"] = speed.as_dict(engine.backend.name, precision)  # ms per frame per stage (the line below)
        if self.trades is not None:  # again: --live's window is chosen on the first frame (live_window.py)
            self.trades = self.segment.trades()
            summary["preset"] = self.trades
        summary["options"] = self.resolved_options()  # what the run ran with: replayable (replay_arguments)
        # the device pipeline's post-processing kernel per geometry, chosen by timing or pinned (None: the host path)
        summary["postprocess_kernel"] = (engine.device_stats or {}).get("postprocess_kernel")
        every_sink = [sink for own in sinks for sink in own] + list(shared)  # shared: an MCAP file of every source
        described = [(getattr(sink, "output_kind", None), _describe(sink)) for sink in every_sink]
        self.written = [(kind, output) for kind, output in described if output is not None]  # the "wrote" lines
        summary["outputs"] = [output for _kind, output in self.written]
        for entry, own in zip(summary["sources"], sinks):
            entry["outputs"] = [_describe(sink) for sink in own if _describe(sink) is not None]  # video files: codec
        opened = iter(summary["sources"])  # a source that could not be opened (skipped_fails) in its place, failed
        summary["sources"] = [next(opened) if item.failed is None else _unopened_entry(item) for item in self._given]
        failed = [stream for stream in runner.streams if stream.grabber.error is not None]
        self.skipped = list(self._unopened) + [
            skip for item in self.inputs for skip in getattr(item.source, "skipped", ())
        ]
        if self.options.skipped_fails:  # a video file that failed part-way: skipped, its frames so far kept
            self.skipped += [(source_path(s.source), str(s.grabber.error)) for s in failed if not s.source.live]
        self.skipped += [  # a frame whose segmentation failed (skip_errors)
            (frame.path or source_path(self.inputs[frame.stream].source), why) for frame, why in runner.skipped_frames
        ]
        summary["skipped"] = [{"image": path, "error": why} for path, why in self.skipped]  # the images not read
        resized = [item for each in self.inputs for item in getattr(each.source, "resized", {}).items()]
        summary["resized"] = [{"image": path, **sizes} for path, sizes in resized]  # fit_images: read resized
        log_summary(runner, summary, len(failed) + len(self._unopened))
        if speed.images:
            log.info("%s", speed.line(engine.backend.name, precision, unit="frame"))
        line = kernel_line(summary["postprocess_kernel"])
        if line:
            log.info("%s", line)
        self.summary = summary
        if runner.signalled is not None:  # stopped by Ctrl-C / SIGTERM, outputs finalised: console.errors' rule
            from zsseg_rt.console.errors import exit_code_for_signal

            self.exit_code = exit_code_for_signal(runner.signalled)
        else:
            self.exit_code = 1 if failed or (self.options.skipped_fails and self.skipped) else 0


def _describe(sink: Any) -> Optional[dict]:
    describe = getattr(sink, "describe", None)  # a file sink says what it wrote (a video's codec, frames, fps)
    return describe() if callable(describe) else None


def _unopened_entry(item: SessionInput) -> dict:
    """The summary's entry of a source that could not be opened: a source's keys (``SourceStats``), failed, with why
    and no frames."""
    from zsseg_rt.stream.loop.stream_stats import SourceStats

    stats = SourceStats(item.name, item.source.name, bool(item.source.live), "failed", item.failed, failed_opens=1)
    return {**stats.as_dict(), "outputs": []}


def _options(values: dict) -> SessionOptions:
    check_option_names(values, "Session")  # an Engine option: where it goes; a misspelt one: the closest name
    return SessionOptions(**values)


def default_mode(bundle: str) -> str:
    """The camera's post-processing when no mode is given: fast (less latency) where the bundle's pipeline has it,
    else the pipeline's one order (a ZegFormer bundle: exact; it was refused, "mode must be 'exact',
    got 'fast'", at the camera's defaults). A bundle that cannot be read: fast (the Engine then says what is wrong)."""
    from zsseg_rt.bundle import load_meta
    from zsseg_rt.runtime.pipelines import pipeline_class

    try:
        modes = pipeline_class(load_meta(bundle).pipeline).modes
    except Exception:  # noqa: BLE001 - the Engine's own load reports it, in its words
        return "fast"
    return "fast" if "fast" in modes else modes[0]
