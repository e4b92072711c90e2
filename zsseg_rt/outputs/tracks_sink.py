"""``--tracks-out FILE`` (``zsseg camera``, ``zsseg segment``; ``Session(tracks_out=...)``): a source's tracked
objects as MOTChallenge text, one line per object and frame::

    frame,id,x,y,w,h,score,-1,-1,-1

MOTChallenge counts frames and pixels from 1, and its readers rely on it (TrackEval refuses a frame 0;
py-motmetrics' loader moves boxes back by one pixel), so the file does too: ``frame`` is the frame's number as every
other output of the run numbers it, plus 1 (``Frame.index``: the label map ``000041.png`` is the file's frame 42; a
lost frame leaves a gap; ``zsseg segment``: a video's frame number, or an image's place among the images); ``x, y``:
the box's leftmost column and top row plus 1 (COCO's ``bbox`` and ``RegionObject.box`` count from 0), ``w, h`` its
size in pixels; ``id``: the object's ``track_id`` (``zsseg_rt.ObjectTracker``, from 1); ``score``: its score (the
class's mean score over the region); the last three are -1 (no 3-D position), as MOTChallenge's 2-D results.
py-motmetrics (``motmetrics.io.loadtxt(path, fmt="mot15-2D")``) and TrackEval read it beside MOTChallenge ground
truth. :func:`read_tracks` reads it back in the run's own numbering (frames and pixels from 0).

Streamed as the frames come (``FILE.partial.txt``, flushed each frame) and put in place by the run's output plan
(:mod:`zsseg_rt.outputs.plan`) when it has ended well; a failed run leaves ``FILE`` as it was.
"""

from __future__ import annotations

import os
from typing import Any, Dict, List, Optional, Set, TextIO, Tuple

from zsseg_rt.io_safety import AtomicFile, write_failure
from zsseg_rt.outputs.plan import PYTHON_FLAG, OutputPlan

from .sink_base import FrameSink, SinkError

__all__ = ["TracksSink", "mot_lines", "read_tracks"]


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
        lines.append(
            f"{int(frame) + 1},{int(found.track_id)},{x + 1},{y + 1},{w},{h},{float(found.score):.6g},-1,-1,-1\n"
        )
    return "".join(lines)


def read_tracks(path: str) -> Dict[int, List[Tuple[int, Tuple[int, int, int, int]]]]:
    """A ``--tracks-out`` file in the run's own numbering: frame (as the label maps number it, from 0) ->
    ``[(track_id, (x, y, w, h))]`` with the box as ``RegionObject.box`` (from 0), in the file's order."""
    found: Dict[int, List[Tuple[int, Tuple[int, int, int, int]]]] = {}
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            values = line.strip().split(",")
            if len(values) < 6:
                continue
            frame, track, x, y, w, h = (int(float(v)) for v in values[:6])
            found.setdefault(frame - 1, []).append((track, (x - 1, y - 1, w, h)))
    return found


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
