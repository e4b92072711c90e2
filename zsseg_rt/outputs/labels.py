"""``zsseg camera --labels-out DIR``: each frame's class-index map as a 16-bit PNG, for downstream code (robots do not
read overlays), with the class list beside it.

``DIR/000042.png`` holds frame 42's labels (``Frame.index``: a file's frame number from its presentation time, the
number every output of the run gives it, so a frame lost to damaged data leaves a gap; a live source's capture order,
whose dropped frames leave gaps),
uint16, one class index per pixel; ``DIR/classes.json`` the class names they index::

    {"classes": ["person", "floor", ...], "class_map": {"0": "person", ...}, "unknown_id": null, "unknown_below": null,
     "vocabularies": [{"first_frame": 0, "classes": [...]}, {"first_frame": 57, "classes": [...]}]}

``classes`` / ``class_map`` / ``unknown_id`` / ``unknown_below`` are the current meaning of a label value; ``vocabularies``
says which list each frame's labels index when the vocabulary changed while streaming (a frame uses the last entry
whose ``first_frame`` is not after it; ``unknown`` and ``unknown_below`` in an entry with the unknown label). The
record is :mod:`zsseg_rt.outputs.meaning`'s (:class:`~zsseg_rt.outputs.meaning.LabelHistory`), the one every command's
record of what a label value means is written and read by.

The folder follows the output policy of :mod:`zsseg_rt.outputs.plan`: the maps are staged in
``DIR/.zsseg-staging-XXXXXXXX`` while the run goes on and moved into ``DIR`` when it ends well, the maps of an earlier
run there are removed then (``DIR`` holds this run's maps only, with a ``classes.json`` that describes them), a failed
run leaves ``DIR`` as it was, and files zsseg_rt did not write (a user's own ``000001.png``) are refused, never
replaced. Every file gets 0666 less the umask, as the other outputs.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any, Dict, List, Optional

import numpy as np

from zsseg_rt.outputs.meaning import LabelHistory, LabelMeaning
from zsseg_rt.outputs.plan import FolderKind, OutputPlan, StagedFolder

from .sink_base import FrameSink, SinkError

__all__ = ["LABELS", "LabelFolderSink", "read_labels"]

MAX_LABEL = 65535  # uint16
LABELS = FolderKind("labels", "label maps", re.compile(r"^(\d{6,}\.png|classes\.json)$"))


class LabelFolderSink(FrameSink):
    """Writes each frame's labels as ``FOLDER/{frame:06d}.png`` (16-bit) and the classes as ``FOLDER/classes.json``,
    staged until ``close()`` (see the module).

    It takes results, not overlays: the stream loop calls ``write_result(frame, result)`` (``frame.index``: the
    frame number; ``result.labels``, ``result.class_names``).

    Args:
        folder: the label folder (created when the first map is put in place).
        overwrite: the maps of an earlier run there may be replaced; without it a folder holding label maps is
            refused (``OutputRefused``, a ``FileExistsError``-like ``OSError``; nothing written).
        staged: the ``StagedFolder`` of an ``OutputPlan`` (``zsseg camera``) that checked the folder and puts the
            maps in place itself once every output is complete; ``close()`` then only finishes.
    """

    def __init__(self, folder: str, overwrite: bool = False, staged: Optional[StagedFolder] = None):
        self._plan: Optional[OutputPlan] = None
        if staged is None:
            self._plan, staged = OutputPlan.standing_alone(overwrite, folder, LABELS)
        self.staged = staged
        self.folder = folder
        self.name = f"labels:{folder}"
        self.frames = 0
        self.history = LabelHistory()  # what the label values mean, from which frame on (classes.json)

    def write(self, frame: np.ndarray) -> None:
        raise SinkError("a label folder takes results (write_result), not overlay images")

    def write_result(self, frame: Any, result: Any) -> None:
        """Write ``result.labels`` as frame ``frame.index``'s PNG (and ``classes.json`` when the classes changed)."""
        import cv2

        labels = np.asarray(result.labels)
        names = [str(name) for name in result.class_names]
        if len(names) - 1 > MAX_LABEL:
            raise SinkError(f"{len(names)} classes do not fit a 16-bit label PNG (at most {MAX_LABEL + 1})")
        index = int(frame.index)
        if self.history.add(index, LabelMeaning.of(names, getattr(result, "unknown_below", None))):
            self._write_classes()  # the unknown label (--unknown-below) named too
        ok, encoded = cv2.imencode(".png", np.ascontiguousarray(labels, dtype=np.uint16))
        if not ok:
            raise SinkError(f"OpenCV could not encode frame {index}'s labels as a PNG")
        self.staged.write_bytes(f"{index:06d}.png", encoded.tobytes(), fsync=True)
        self.frames += 1

    @property
    def vocabularies(self) -> List[Dict[str, Any]]:
        """Which classes each frame's labels index, from which frame on (``classes.json``'s ``vocabularies``)."""
        return self.history.vocabularies()

    def _write_classes(self) -> None:
        document = self.history.document()
        self.staged.write_bytes("classes.json", (json.dumps(document, indent=1) + "\n").encode(), fsync=True)

    def close(self) -> None:
        """Put the maps in place (standing alone; given an ``OutputPlan``'s folder, the plan does)."""
        if self._plan is not None:
            self._plan.commit()

    def abort(self) -> None:
        """After a failed run: the staged maps are removed, the folder keeps what it held."""
        if self._plan is not None:
            self._plan.abort()

    def describe(self) -> Dict[str, Any]:
        """What was written (``--stats-json`` "outputs")."""
        return {"path": self.folder, "kind": "labels", "frames": self.frames, "format": "16-bit PNG"}


def read_labels(folder: str, frame: int) -> Optional[np.ndarray]:
    """Frame ``frame``'s labels ``[H, W]`` uint16 from a ``--labels-out`` folder, or None when it has none."""
    import cv2

    path = os.path.join(folder, f"{int(frame):06d}.png")
    if not os.path.isfile(path):
        return None
    labels = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if labels is None or labels.dtype != np.uint16 or labels.ndim != 2:
        raise ValueError(f"{path!r} is not a 16-bit single-channel label PNG")
    return labels
