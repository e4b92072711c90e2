"""The outputs of one run, whatever the command, under the output policy of :mod:`zsseg_rt.outputs.plan`: every ``-o``
spec (each kind's entry: :mod:`zsseg_rt.outputs.kinds`), every ``--labels-out`` folder, ``--stats-json``,
``--save-json`` (the COCO masks) and ``--tracks-out`` declared and checked before the model loads, staged while the
run goes, and put in place together when it has ended well (an abort replaces nothing). One front end for the two
ways results reach the outputs:

- a frame stream (``zsseg camera``, ``zsseg segment``, a ``Session``): :meth:`RunOutputs.plan_for`, then the session
  opens each output's sink on the entry :meth:`~RunOutputs.staged` gives and ends with :meth:`~RunOutputs.commit`;

      outputs = RunOutputs.plan_for(specs, label_folders, stats_json, overwrite, inputs)   # refuses: OutputRefused
      outputs.prepare()                                     # leftovers --overwrite allows, named
      sink = open_sink(spec, staged=outputs.staged(spec))
      outputs.commit(summary)                               # or outputs.abort() after a failure: nothing replaced

- a command that hands its results over one by one (``zsseg batch``: each label map where the driver receives it):
  :meth:`RunOutputs.opened` opens the rows' sinks (``write_result``) itself;

      outputs = RunOutputs.opened("batch", specs, overwrite, values, inputs)
      outputs.add(result, ResultFrame(0, path="a.jpg"))    # each result, once its own files are written
      for kind, described in outputs.finish(): ...         # or outputs.abort()

A result's unknown label and classes are its own (``Result.unknown_id``, ``class_names``): every sink reads them from
the result, so the unknown id is given once, where the results are made.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from zsseg_rt.io_safety import AtomicFile
from zsseg_rt.outputs.plan import CLI_FLAG, PYTHON_FLAG, OutputPlan, OutputRefused, StagedFile, StagedFolder

from .kinds import OutputKind, SinkOptions, kinds_for, output_kind, wrote_line

__all__ = ["CameraOutputs", "RunOutputs", "input_paths"]

log = logging.getLogger("zsseg_rt.stream")

STREAM = "camera"  # the command of a frame stream's outputs: every kind a source's frames go to (their own rules)
# a Session's words for the outputs its keywords give (the command line's flags -> the keywords)
PYTHON_WORDS = {
    "-o": "outputs",
    "--labels-out": "labels_out",
    "--stats-json": "stats_json",
    "--save-json": "save_json",
    "--tracks-out": "tracks_out",
}


def input_paths(sources: Iterable[Any]) -> List[str]:
    """The files and folders the run reads (a video file's path, an image folder's): no output may be one."""
    paths: List[str] = []
    for source in sources:
        listed = getattr(source, "image_paths", None)  # image files (a glob's): each one an input
        if listed is not None:
            paths += [str(path) for path in listed]
            paths += [str(path) for path in getattr(source, "input_folders", ())]  # the folders they were listed from
            continue
        spec = getattr(source, "spec", None)
        path = getattr(source, "path", None) or getattr(source, "folder", None)
        path = path or (spec.target if spec is not None and spec.kind == "file" else None)
        if path:
            paths.append(str(path))
    return paths


def _same(path: str) -> str:
    return os.path.normcase(os.path.realpath(os.path.abspath(path)))


class RunOutputs:
    """The ``OutputPlan`` of one run of ``command`` and each output's entry in it (module docstring)."""

    def __init__(self, plan: OutputPlan, command: str = STREAM):
        self.plan = plan
        self.command = command
        self.entries: List[Tuple[OutputKind, str, str, Any]] = []  # (row, option, spec, the plan's entry), in order
        self._staged: Dict[str, Any] = {}  # a spec -> its kind's entry (AtomicFile, StagedFolder, ...)
        self._labels: Dict[str, StagedFolder] = {}
        self.stats: Optional[StagedFile] = None  # --stats-json (the stats row's entry): commit writes the summary
        self.coco: Optional[Any] = None  # --save-json FILE of a stream (zsseg_rt.outputs.coco_sink writes it)
        self.sinks: List[Any] = []  # the sinks opened here (open(): a command handing results over)
        self._sink_rows: List[str] = []  # the row of each
        self.results = 0
        self._ended = False

    # ---- declared and checked ---------------------------------------------------------------------------------------
    def _declare(self, option: str, spec: str, word: str = "", taken: Sequence[str] = (), row: Any = None) -> Any:
        """One output of ``option`` (``-o``, ``--save-json``, ``--tracks-out``, ``--labels-out``): its row's entry in
        the plan (None for a kind with nothing on disk: a window, a server). ``row``: the output's row when the
        option has one only (``--labels-out``, whatever the folder is called). A command handing results over takes
        only the rows that name it; a stream's ``-o`` specs of no row are its sources' to refuse, by their rules."""
        kind = row or output_kind(spec, option)
        if self.command != STREAM:
            if kind is None or self.command not in kind.commands:
                known = ", ".join(row.example for row in kinds_for(option, self.command)) or "none"
                raise OutputRefused(
                    f"{option} {spec!r} is none of the kinds `zsseg {self.command}` writes: {known}", spec
                )
            if _same(spec) in {_same(path) for path in taken}:
                raise OutputRefused(
                    f"{option} {spec!r} is a file this run writes already (-o): choose another name", spec
                )
        elif kind is None and option != "-o":
            raise AssertionError(f"no output row takes {option} {spec!r}")  # the table lost a row the run needs
        if kind is None:
            return None
        staged = kind.plan(self.plan, word or option, spec) if kind.plan is not None else None
        self.entries.append((kind, option, spec, staged))
        return staged

    @classmethod
    def plan_for(
        cls,
        specs: Sequence[str],
        label_folders: Sequence[str],
        stats_json: Optional[str],
        overwrite: bool,
        inputs,
        coco_json: Optional[str] = None,
        tracks: Sequence[str] = (),
        python: bool = False,
        names: Sequence[str] = (),
    ) -> "RunOutputs":
        """Every file output of a frame stream, checked (see ``OutputPlan.check``): ``specs``, the ``-o`` of every
        source (placeholders expanded); ``label_folders``, the ``--labels-out`` of every source; ``coco_json``, the
        COCO masks (``--save-json``); ``tracks``, the ``--tracks-out`` of every source (``staged(path)``: its entry).
        ``python``: the refusals in a Python caller's words (``outputs``, ``labels_out``, ``overwrite=True``: a
        ``Session``'s), the command line's in their ``cli``. ``names``: the name of each source of ``inputs`` (the
        views output names a stream's frames by it).

        Raises:
            OutputRefused: one line naming the path and what to do; nothing was written.
        """
        given = (specs, label_folders, stats_json, overwrite, inputs, coco_json, tracks, names)
        if not python:
            return cls._stream(*given)
        try:
            return cls._stream(*given, words=PYTHON_WORDS)
        except OutputRefused as refused:
            try:  # the same checks in the command line's words, for its cli (they claim nothing they keep)
                cls._stream(*given).plan.release()
            except OutputRefused as said:
                refused.cli = str(said)
            raise

    @classmethod
    def _stream(cls, specs, label_folders, stats_json, overwrite, inputs, coco_json, tracks, names, words=None):
        from .views import source_reads

        word = (lambda option: words.get(option, option)) if words else (lambda option: option)
        flag, reads = PYTHON_FLAG if words else CLI_FLAG, source_reads(inputs, names) if names else []
        outputs = cls(OutputPlan(overwrite, flag, inputs=input_paths(inputs), sources=reads))
        for spec in specs:
            text = str(spec).strip()
            outputs._staged[text] = outputs._declare("-o", text, word("-o"))
        labels = output_kind("labels/", "--labels-out")  # the labels row, whatever a folder is called
        for folder in label_folders:
            outputs._labels[folder] = outputs._declare("--labels-out", folder, word("--labels-out"), row=labels)
        if stats_json:
            outputs.stats = outputs._declare("--stats-json", stats_json, word("--stats-json"))
        if coco_json:
            outputs.coco = outputs._declare("--save-json", coco_json, word("--save-json"))
        for path in tracks:  # the tracks row's entry (a streamed file), found by staged(path) as an -o's
            outputs._staged[str(path).strip()] = outputs._declare("--tracks-out", path, word("--tracks-out"))
        outputs.plan.check()
        return outputs

    @classmethod
    def for_results(
        cls,
        command: str,
        specs: Sequence[str],
        overwrite: bool,
        inputs: Sequence[str] = (),
        taken: Sequence[str] = (),
        coco_json: Optional[str] = None,
        tracks: Optional[str] = None,
    ) -> "RunOutputs":
        """Every output of ``specs`` (``-o``), ``coco_json`` (``--save-json``) and ``tracks`` (``--tracks-out``) of a
        command that hands its results over (the rows that name ``command``), declared and checked
        (``OutputPlan.check``: an existing file without ``--overwrite``, an interrupted run's leftovers, another run
        writing it now); ``taken``: the files the command writes itself (none may be one of them).

        Raises:
            OutputRefused: one line naming the path and what to do; nothing was written.
        """
        outputs = cls(OutputPlan(overwrite, CLI_FLAG, inputs=inputs), command)
        wanted = [("-o", str(spec).strip()) for spec in specs]
        wanted += [("--save-json", str(coco_json).strip())] if coco_json else []
        wanted += [("--tracks-out", str(tracks).strip())] if tracks else []
        for option, spec in wanted:
            outputs._declare(option, spec, taken=taken)
        outputs.plan.check()
        return outputs

    @classmethod
    def opened(
        cls,
        command: str,
        specs: Sequence[str],
        overwrite: bool,
        values: Optional[Dict[str, Any]] = None,
        inputs: Sequence[str] = (),
        taken: Sequence[str] = (),
        coco_json: Optional[str] = None,
        tracks: Optional[str] = None,
    ) -> "RunOutputs":
        """:meth:`for_results`, :meth:`prepare` and :meth:`open` (``values``): ready for the first result.

        Raises:
            OutputRefused: one line naming the path and what to do; nothing was written.
        """
        outputs = cls.for_results(command, specs, overwrite, inputs, taken, coco_json, tracks)
        try:
            outputs.prepare()
            outputs.open(values)
        except BaseException:
            outputs.abort()
            raise
        return outputs

    def prepare(self, say=None) -> None:
        """Remove what an interrupted run left (only with ``--overwrite``; ``check`` refused it otherwise), each named
        (``say``, default a warning)."""
        self.plan.prepare(say=say or log.warning)

    # ---- a stream's sinks take their entries ------------------------------------------------------------------------
    def staged(self, spec: str) -> Any:
        """The plan's entry of an ``-o`` spec (a video's or an MCAP file's ``AtomicFile``, a folder's
        ``StagedFolder``); None for a kind with nothing on disk (a window, a server)."""
        return self._staged.get(str(spec).strip())

    def video(self, spec: str) -> Optional[AtomicFile]:
        found = self.staged(spec)
        return found if isinstance(found, AtomicFile) else None

    def frames(self, spec: str) -> Optional[StagedFolder]:
        found = self.staged(spec)
        return found if isinstance(found, StagedFolder) else None

    def labels(self, folder: str) -> StagedFolder:
        return self._labels[folder]

    # ---- results handed over ----------------------------------------------------------------------------------------
    def open(self, values: Optional[Dict[str, Any]] = None) -> None:
        """Open each output's sink from its row (``values``: the kinds' own options by name, from the flags)."""
        for kind, _, spec, staged in self.entries:
            if kind.open is None:  # no frame sink: the run writes it itself
                continue
            options = SinkOptions(
                staged=staged, sources=(self.command,), values=dict(values or {}), command=self.command
            )
            sink = kind.open(spec, options)
            try:
                sink.output_kind = kind.name
            except AttributeError:
                pass
            self.sinks.append(sink)
            self._sink_rows.append(kind.name)

    def add(self, result: Any, frame: Any) -> None:
        """One result (``frame``: its :class:`~zsseg_rt.outputs.result_outputs.ResultFrame`), to every output."""
        for sink in self.sinks:
            sink.write_result(frame, result)
        self.results += 1

    def finish(self) -> List[Tuple[str, Dict[str, Any]]]:
        """Finish every sink opened here and put the outputs in place together; nothing when no result came (every
        output is left as it was). Returns ``(row name, describe())`` of each output written, for its "wrote ..."
        line.

        Raises:
            OutputWriteError: a write or a rename failed (the outputs not yet in place keep their old content).
        """
        if self._ended:
            return []
        if not self.results:
            self.abort()
            return []
        try:
            for sink in self.sinks:
                sink.finish()
            self._put_in_place()
        except BaseException:
            self.abort()
            raise
        return [(name, sink.describe()) for name, sink in zip(self._sink_rows, self.sinks)]

    # ---- the end ------------------------------------------------------------------------------------------------------
    def commit(self, summary: Optional[dict] = None, written: Optional[Sequence[Any]] = None) -> None:
        """A stream's end: write ``--stats-json`` (``summary``) and put every output in place, then say what was
        written: ``written``, ``(the row's name or None, describe())`` of each sink (the session's), else
        ``summary["outputs"]``.

        Raises:
            OutputWriteError: a write or a rename failed (the outputs not yet in place keep their old content).
        """
        if self.stats is not None and summary is not None:
            self.stats.write_json(summary)
        self._put_in_place()
        if written is None:
            written = [(None, output) for output in (summary or {}).get("outputs", [])]
        for kind, output in written:
            line = wrote_line(output, kind)
            if line:
                log.info("%s", line)

    def _put_in_place(self) -> None:
        from zsseg_rt.console.progress import signals_deferred

        with signals_deferred():  # the renames as one step: a Ctrl-C meanwhile is acted on after the last
            self.plan.commit()
        self._ended = True

    def abort(self) -> List[str]:
        """After a failure: nothing is put in place, what was staged removed (a no-op once ended); the sinks opened
        here aborted. A partial video that holds frames is kept: it plays (its sink removed one that holds none).
        Returns the partial files kept."""
        if self._ended:
            return []
        self._ended = True
        try:
            for sink in self.sinks:
                try:
                    sink.abort()
                except Exception:  # noqa: BLE001 - the plan's abort below removes what it staged anyway
                    log.debug("aborting %s failed", getattr(sink, "name", sink), exc_info=True)
        finally:
            self.plan.abort()
        kept = []
        for output in self._staged.values():
            if isinstance(output, AtomicFile) and os.path.lexists(output.partial):
                log.info("%s was not replaced; %s keeps what was written", output.path, output.partial)
                kept.append(output.partial)
        return kept


# the name of the stream's front end before the two were merged (2026-11-29; ``plan_for`` takes what it took):
# deprecated, as its module path (zsseg_rt.aliases). ResultOutputs has no alias: its plan_for took a command first,
# which RunOutputs.for_results takes now (an old call would bind its arguments to other parameters, silently)
CameraOutputs = RunOutputs
