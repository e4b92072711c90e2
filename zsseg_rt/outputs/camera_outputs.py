"""The file outputs of ``zsseg camera`` under the output policy of :mod:`zsseg_rt.outputs.plan`: every ``-o`` file
or folder (each kind's entry: :mod:`zsseg_rt.outputs.kinds`), every ``--labels-out`` folder and ``--stats-json``
declared and checked before the model loads (the first frame), staged while the stream runs, and put in place
together when it has ended well.

    outputs = CameraOutputs.plan_for(specs, label_folders, stats_json, overwrite, inputs)   # refuses: OutputRefused
    outputs.prepare()                                                   # leftovers --overwrite allows, named
    sink = open_sink(spec, staged=outputs.staged(spec))
    ...
    outputs.commit(summary)   # or outputs.abort() after a failure: nothing replaced
"""

from __future__ import annotations

import logging
import os
from typing import Any, Dict, Iterable, List, Optional, Sequence

from zsseg_rt.io_safety import AtomicFile
from zsseg_rt.outputs.plan import CLI_FLAG, PYTHON_FLAG, OutputPlan, OutputRefused, StagedFile, StagedFolder

from .kinds import output_kind, wrote_line

__all__ = ["CameraOutputs", "input_paths"]

log = logging.getLogger("zsseg_rt.stream")

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
            continue
        spec = getattr(source, "spec", None)
        path = getattr(source, "path", None) or getattr(source, "folder", None)
        path = path or (spec.target if spec is not None and spec.kind == "file" else None)
        if path:
            paths.append(str(path))
    return paths


class CameraOutputs:
    """The ``OutputPlan`` of one ``zsseg camera`` run and what each sink writes into."""

    def __init__(self, plan: OutputPlan):
        self.plan = plan
        self._staged: Dict[str, Any] = {}  # an -o spec -> its kind's entry (AtomicFile, StagedFolder)
        self._labels: Dict[str, StagedFolder] = {}
        self.stats: Optional[StagedFile] = None
        self.coco: Optional[StagedFile] = None  # --save-json FILE (zsseg_rt.outputs.coco_sink writes it)

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
    ) -> "CameraOutputs":
        """Every file output of the run, checked (see ``OutputPlan.check``): ``specs``, the ``-o`` of every source
        (placeholders expanded); ``label_folders``, the ``--labels-out`` of every source; ``coco_json``, the COCO
        masks (``--save-json``); ``tracks``, the ``--tracks-out`` of every source (``staged(path)``: its entry).
        ``python``: the refusals in a Python caller's words (``outputs``, ``labels_out``, ``overwrite=True``: a
        ``Session``'s), the command line's in their ``cli``. ``names``: the name of each source of ``inputs`` (the
        views output names a stream's frames by it).

        Raises:
            OutputRefused: one line naming the path and what to do; nothing was written.
        """
        given = (specs, label_folders, stats_json, overwrite, inputs, coco_json, tracks, names)
        if not python:
            return cls._checked(*given)
        try:
            return cls._checked(*given, words=PYTHON_WORDS)
        except OutputRefused as refused:
            try:  # the same checks in the command line's words, for its cli (they claim nothing they keep)
                cls._checked(*given).plan.release()
            except OutputRefused as said:
                refused.cli = str(said)
            raise

    @classmethod
    def _checked(cls, specs, label_folders, stats_json, overwrite, inputs, coco_json, tracks, names, words=None):
        from .views import source_reads

        word = (lambda option: words.get(option, option)) if words else (lambda option: option)
        flag, reads = PYTHON_FLAG if words else CLI_FLAG, source_reads(inputs, names) if names else []
        outputs = cls(OutputPlan(overwrite, flag, inputs=input_paths(inputs), sources=reads))
        for spec in specs:
            text = str(spec).strip()
            kind = output_kind(text)
            if kind is not None and kind.plan is not None:
                outputs._staged[text] = kind.plan(outputs.plan, word(kind.option), text)
        labels = output_kind("labels/", "--labels-out")
        assert labels is not None and labels.plan is not None
        for folder in label_folders:
            outputs._labels[folder] = labels.plan(outputs.plan, word(labels.option), folder)
        if stats_json:
            outputs.stats = outputs.plan.file(word("--stats-json"), stats_json)
        if coco_json:
            coco = output_kind(coco_json, "--save-json")
            assert coco is not None and coco.plan is not None
            outputs.coco = coco.plan(outputs.plan, word(coco.option), coco_json)
        for path in tracks:  # the tracks row's entry (a streamed file), found by staged(path) as an -o's
            row = output_kind(path, "--tracks-out")
            assert row is not None and row.plan is not None
            outputs._staged[str(path).strip()] = row.plan(outputs.plan, word(row.option), path)
        outputs.plan.check()
        return outputs

    def prepare(self) -> None:
        """Remove what an interrupted run left (only with ``--overwrite``; ``check`` refused it otherwise), each named
        in a warning."""
        self.plan.prepare(say=log.warning)

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

    def commit(self, summary: Optional[dict] = None, written: Optional[Sequence[Any]] = None) -> None:
        """Write ``--stats-json`` (``summary``) and put every output in place, then say what was written: ``written``,
        ``(the row's name or None, describe())`` of each sink (the session's), else ``summary["outputs"]``.

        Raises:
            OutputWriteError: a write or a rename failed (the outputs not yet in place keep their old content).
        """
        from zsseg_rt.console.progress import signals_deferred

        if self.stats is not None and summary is not None:
            self.stats.write_json(summary)
        with signals_deferred():  # the renames as one step: a Ctrl-C meanwhile is acted on after the last
            self.plan.commit()
        if written is None:
            written = [(None, output) for output in (summary or {}).get("outputs", [])]
        for kind, output in written:
            _say_written(output, kind)

    def abort(self) -> List[str]:
        """After a failure: nothing is put in place; the staged files are removed (a partial video that holds frames
        is kept: it plays; its sink removed one that holds none). Returns the partial files kept."""
        self.plan.abort()
        kept = []
        for output in self._staged.values():
            if isinstance(output, AtomicFile) and os.path.lexists(output.partial):
                log.info("%s was not replaced; %s keeps what was written", output.path, output.partial)
                kept.append(output.partial)
        return kept


def _say_written(output: Dict[str, Any], kind: Optional[str] = None) -> None:
    """The log line of an output put in place (``describe()`` of its sink): its row's ``wrote`` (``wrote_line``)."""
    line = wrote_line(output, kind)
    if line:
        log.info("%s", line)
