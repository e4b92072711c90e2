"""The output kinds of the commands without a frame stream: ``zsseg segment`` (each image, each frame of a video file)
and ``zsseg batch`` (each image's label map, where the driver receives it) write the kinds of the one table
(:mod:`zsseg_rt.outputs.kinds`; a row's ``commands`` names the commands that take it) through the one output
plan (:mod:`zsseg_rt.outputs.plan`), as ``zsseg camera`` does: declared, checked and claimed (an owner lock) before
the bundle loads, staged while the run goes, put in place when it has ended (its abort replaces nothing), with the
rows' sinks (``write_result``: the COCO masks are the coco row's ``CocoSink`` on every command, the one COCO writer),
the rows' own options as flags and the rows' "wrote ..." lines.

    outputs = ResultOutputs.plan_for("segment", specs, overwrite, inputs, coco_json=...)   # refuses: OutputRefused
    outputs.prepare(); outputs.open(values)
    outputs.add(result, ResultFrame(0, path="a.jpg"))   # each result, once its own files are written
    for kind, described in outputs.finish(): ...        # or outputs.abort() after a failure: nothing replaced

A result's unknown label and classes are its own (``Result.unknown_id``, ``class_names``): every sink reads them from
the result, so the unknown id is given once, where the results are made.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple

from zsseg_rt.outputs.plan import CLI_FLAG, OutputPlan, OutputRefused

from .kinds import OutputKind, SinkOptions, kinds_for, output_kind

__all__ = ["ResultFrame", "ResultOutputs", "add_result_outputs", "results_help"]

log = logging.getLogger("zsseg_rt.stream")


@dataclasses.dataclass(frozen=True)
class ResultFrame:
    """What a result sink is given beside a command's result (the stream loop gives a source's frame): ``index``, the
    image's place in the run (from 0) or the video frame's number; ``path``, the image file; ``video``, the video file
    of a frame (``path`` None); ``stream``: 0, one stream. ``file_name`` and ``details``: its name in a file of
    results (the image's path, or ``STEM/frame_000042.png``: ``zsseg_rt.runtime.coco.frame_file_name``) and what its
    entry says besides (a video frame's ``frame`` and ``video``)."""

    index: int
    path: Optional[str] = None
    video: Optional[str] = None
    stream: int = 0

    @property
    def file_name(self) -> str:
        from zsseg_rt.runtime.coco import frame_file_name

        if self.video is not None:
            return frame_file_name(os.path.splitext(self.video)[0], int(self.index))
        return str(self.path)

    @property
    def details(self) -> Dict[str, Any]:
        return {} if self.video is None else {"frame": int(self.index), "video": self.video}


def _same(path: str) -> str:
    return os.path.normcase(os.path.realpath(os.path.abspath(path)))


class ResultOutputs:
    """The table's outputs of one run of ``command`` (``segment``, ``batch``) that take its results."""

    def __init__(self, command: str, plan: OutputPlan):
        self.command = command
        self.plan = plan
        self.entries: List[Tuple[OutputKind, str, str, Any]] = []  # (row, option, spec, the plan's entry)
        self.sinks: List[Any] = []
        self.results = 0
        self._ended = False

    @classmethod
    def plan_for(
        cls,
        command: str,
        specs: Sequence[str],
        overwrite: bool,
        inputs: Sequence[str] = (),
        taken: Sequence[str] = (),
        coco_json: Optional[str] = None,
        tracks: Optional[str] = None,
    ) -> "ResultOutputs":
        """Every output of ``specs`` (``-o``), ``coco_json`` (``--save-json``) and ``tracks`` (``--tracks-out``),
        declared and checked
        (``OutputPlan.check``: an existing file without ``--overwrite``, an interrupted run's leftovers, another run
        writing it now); ``taken``: the files the command writes itself (none may be one of them).

        Raises:
            OutputRefused: one line naming the path and what to do; nothing was written.
        """
        outputs = cls(command, OutputPlan(overwrite, CLI_FLAG, inputs=inputs))
        wanted = [("-o", str(spec).strip()) for spec in specs]
        wanted += [("--save-json", str(coco_json).strip())] if coco_json else []
        wanted += [("--tracks-out", str(tracks).strip())] if tracks else []
        mine = {_same(path) for path in taken}
        for option, spec in wanted:
            kind = output_kind(spec, option)
            if kind is None or command not in kind.commands:
                known = ", ".join(row.example for row in kinds_for(option, command)) or "none"
                raise OutputRefused(f"{option} {spec!r} is none of the kinds `zsseg {command}` writes: {known}", spec)
            if _same(spec) in mine:
                raise OutputRefused(
                    f"{option} {spec!r} is a file this run writes already (-o): choose another name", spec
                )
            staged = kind.plan(outputs.plan, option, spec) if kind.plan is not None else None
            outputs.entries.append((kind, option, spec, staged))
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
    ) -> "ResultOutputs":
        """:meth:`plan_for`, :meth:`prepare` and :meth:`open` (``values``): ready for the first result.

        Raises:
            OutputRefused: one line naming the path and what to do; nothing was written.
        """
        outputs = cls.plan_for(command, specs, overwrite, inputs, taken, coco_json, tracks)
        try:
            outputs.prepare()
            outputs.open(values)
        except BaseException:
            outputs.abort()
            raise
        return outputs

    def prepare(self, say=None) -> None:
        """Remove what an interrupted run left (only with ``--overwrite``), each named (``say``, default a warning)."""
        self.plan.prepare(say=say or log.warning)

    def open(self, values: Optional[Dict[str, Any]] = None) -> None:
        """Open each output's sink from its row (``values``: the kinds' own options by name, from the flags)."""
        for kind, _, spec, staged in self.entries:
            options = SinkOptions(
                staged=staged, sources=(self.command,), values=dict(values or {}), command=self.command
            )
            sink = kind.open(spec, options)
            try:
                sink.output_kind = kind.name
            except AttributeError:
                pass
            self.sinks.append(sink)

    def add(self, result: Any, frame: ResultFrame) -> None:
        """One result, to every output."""
        for sink in self.sinks:
            sink.write_result(frame, result)
        self.results += 1

    def finish(self) -> List[Tuple[str, Dict[str, Any]]]:
        """Finish every output and put them in place together; nothing when no result came (every output is left as
        it was). Returns ``(row name, describe())`` of each output written, for its "wrote ..." line.

        Raises:
            OutputWriteError: a write or a rename failed (the outputs not yet in place keep their old content).
        """
        if self._ended:
            return []
        if not self.results:
            self.abort()
            return []
        from zsseg_rt.console.progress import signals_deferred

        try:
            for sink in self.sinks:
                sink.finish()
            with signals_deferred():  # the renames as one step
                self.plan.commit()
        except BaseException:
            self.abort()
            raise
        self._ended = True
        written = []
        for (kind, _, _, _), sink in zip(self.entries, self.sinks):
            written.append((kind.name, sink.describe()))
        return written

    def abort(self) -> None:
        """Nothing put in place, what was staged removed (a no-op once finished)."""
        if self._ended:
            return
        self._ended = True
        try:
            for sink in self.sinks:
                try:
                    sink.abort()
                except Exception:  # noqa: BLE001 - the plan's abort below removes what it staged anyway
                    log.debug("aborting %s failed", getattr(sink, "name", sink), exc_info=True)
        finally:
            self.plan.abort()


def results_help(command: str, option: str = "-o") -> str:
    """What ``option`` of ``command`` takes besides its own outputs, from the rows: "" when no row has it."""
    kinds = kinds_for(option, command)
    return "" if not kinds else "; also (repeatable): " + ", ".join(kind.words or kind.example for kind in kinds)


def add_result_outputs(parser: Any, command: str, option: str = "-o") -> Any:
    """The rows' outputs on a command whose ``option`` is its own (``zsseg segment -o DIR``) or absent (``zsseg
    batch``): a spec of a kind the command takes is gathered in ``args.outputs``; anything else is the command's
    own value (``args.output``), or refused where the command has none. The kinds' own options become flags.
    Returns the argparse action of ``option`` that gathers them."""
    from .kinds import add_output_arguments

    parser.set_defaults(outputs=None)
    add_output_arguments(parser, option, command)

    class _Gather(argparse.Action):
        def __call__(self, parser, namespace, value, option_string=None):
            kind = output_kind(value, option)
            if kind is not None and command in kind.commands:
                namespace.outputs = [*(getattr(namespace, "outputs", None) or []), value]
            elif self.dest == "outputs":
                known = ", ".join(row.example for row in kinds_for(option, command))
                parser.error(f"argument {option}: expected one of {known}, got {value!r}")
            else:
                setattr(namespace, self.dest, value)

    return _Gather
