"""``--tracks-out FILE`` (``zsseg camera``, ``zsseg segment``; ``Session(tracks_out=...)``): a source's tracked
objects as MOTChallenge text, one line per object and frame::

    frame,id,x,y,w,h,score,-1,-1,-1

``frame``: the frame's number, as every output of the run numbers it (``Frame.index``: the label map
``000042.png`` is frame 42, a lost frame leaves a gap; ``zsseg segment``: a video's frame number, or an image's place
among the images, from 0); ``id``: the object's ``track_id`` (``zsseg_rt.ObjectTracker``, from 1); ``x, y, w, h``:
its box in pixels (COCO's ``bbox``: the leftmost column and top row from 0); ``score``: its score (the class's mean
score over the region); the last three are -1 (no 3-D position), as MOTChallenge's 2-D results. py-motmetrics
(``motmetrics.io.loadtxt(path, fmt="mot15-2D")``) and TrackEval read it; MOTChallenge's own ground truth counts
pixels and frames from 1: py-motmetrics' loader moves both files' boxes alike (IoU unchanged), and for TrackEval,
which reads frames from 1, add 1 to the frame column of a file that starts at frame 0.

Streamed as the frames come (``FILE.partial.txt``, flushed each frame) and put in place by the run's output plan
(:mod:`zsseg_rt.outputs.plan`) when it has ended well; a failed run leaves ``FILE`` as it was.
"""

from __future__ import annotations

import os
from typing import Any, Dict, Optional, Set, TextIO

from zsseg_rt.io_safety import AtomicFile, write_failure
from zsseg_rt.outputs.plan import PYTHON_FLAG, OutputPlan

from .sink_base import FrameSink, SinkError

__all__ = ["TracksSink", "add_track_arguments", "mot_lines"]


def add_track_arguments(parser: Any, sequences: str) -> None:
    """``--track`` and ``--tracks-out FILE`` (the tracks row's help) on a command's parser (``zsseg camera``,
    ``zsseg segment``); ``sequences``: the command's words for what one tracker follows."""
    from .kinds import flag_help

    parser.add_argument(
        "--track",
        action="store_true",
        help=f"give the objects (--objects) a track id that keeps an object's identity from frame to frame ({sequences}"
        "; docs/usage.md, 'For robots'), in every output that carries objects (the robot outputs' Detection2D.id and "
        "annotations, COCO instances, --json) and --tracks-out; a track survives --track-max-missed frames unseen",
    )
    parser.add_argument("--tracks-out", metavar="FILE", help=flag_help("tracks"))  # the tracks row's words


def mot_lines(frame: int, objects: Any) -> str:
    """The MOTChallenge lines of one frame's tracked ``objects`` (``RegionObject`` with ``track_id``).

    Raises:
        SinkError: an object without a track id (the objects were not tracked: ``--track``).
    """
    lines = []
    for found in objects:
        if found.track_id is None:
            raise SinkError("--tracks-out writes tracked objects: give --track (Session(track=True))")
        x, y, w, h = (int(v) for v in found.box)
        lines.append(f"{int(frame)},{int(found.track_id)},{x},{y},{w},{h},{float(found.score):.6g},-1,-1,-1\n")
    return "".join(lines)


class TracksSink(FrameSink):
    """Writes one source's tracks as MOTChallenge text (see the module).

    Args:
        path: the file.
        output: the run's ``AtomicFile`` for it (its output plan's entry); None: standing alone, the sink checks its
            one output itself (``overwrite``).
    """

    def __init__(self, path: str, output: Optional[AtomicFile] = None, overwrite: bool = False):
        self.path = str(path)
        self.name = f"tracks:{self.path}"
        self._plan: Optional[OutputPlan] = None
        if output is None:
            self._plan = OutputPlan(overwrite, flag=PYTHON_FLAG)
            output = self._plan.stream("path", self.path)
            self._plan.check()
            self._plan.prepare()
        self._file: AtomicFile = output
        self._handle: Optional[TextIO] = None
        self.frames = 0
        self.rows = 0
        self.tracks: Set[int] = set()

    def write(self, frame: Any) -> None:
        raise SinkError("--tracks-out takes results (write_result), not overlay images")

    def write_result(self, frame: Any, result: Any) -> None:
        """Frame ``frame.index``'s lines: ``result.frame_objects`` (found and tracked by the run)."""
        found = getattr(result, "frame_objects", None)
        if found is None:
            raise SinkError("--tracks-out writes tracked objects: give --track (Session(track=True))")
        text = mot_lines(int(frame.index), found)
        try:
            if self._handle is None:
                os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
                self._handle = open(self._file.partial, "w", encoding="ascii")
            self._handle.write(text)
            self._handle.flush()  # a killed run keeps every frame written
        except OSError as exc:
            raise write_failure(self.path, exc, f"{self.frames} frames written to {self._file.partial!r}") from None
        self.frames += 1
        self.rows += len(found)
        self.tracks.update(int(item.track_id) for item in found)

    def finish(self) -> None:
        """The file complete (not in place yet)."""
        if self._handle is not None:
            handle, self._handle = self._handle, None
            try:
                handle.close()
            except OSError as exc:
                raise write_failure(self.path, exc, f"{self.frames} frames written to {self._file.partial!r}") from None

    def close(self) -> None:
        self.finish()
        if self._plan is not None:
            self._plan.commit()
            self._plan = None

    def abort(self) -> None:
        """After a failed run: ``FILE`` is not replaced (standing alone, the partial file is removed)."""
        if self._handle is not None:
            self._handle.close()
            self._handle = None
        if self._plan is not None:
            self._file.discard()
            self._plan.abort()
            self._plan = None

    def describe(self) -> Dict[str, Any]:
        return {
            "path": self.path,
            "kind": "tracks",
            "frames": self.frames,
            "rows": self.rows,
            "tracks": len(self.tracks),
        }
