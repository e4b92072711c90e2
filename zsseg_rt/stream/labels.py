"""``zsseg camera --labels-out DIR``: each frame's class-index map as a 16-bit PNG, for downstream code (robots do not
read overlays), with the class list beside it.

``DIR/000042.png`` holds frame 42's labels (the source's frame number: a live source's dropped frames leave gaps),
uint16, one class index per pixel; ``DIR/classes.json`` the class names they index::

    {"classes": ["person", "floor", ...], "class_map": {"0": "person", ...},
     "vocabularies": [{"first_frame": 0, "classes": [...]}, {"first_frame": 57, "classes": [...]}]}

``classes`` / ``class_map`` are the current vocabulary; ``vocabularies`` says which list each frame's labels index when
the vocabulary changed while streaming (a frame uses the last entry whose ``first_frame`` is not after it). Every file
is written under a temporary name in ``DIR`` and renamed over its final name (``os.replace``), so a reader never
sees half a file and a failed write (disk full) leaves the previous file whole and stops the stream with an error.
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any, Dict, List, Optional

import numpy as np

from .sinks import FrameSink, SinkError

__all__ = ["LabelFolderSink", "read_labels"]

MAX_LABEL = 65535  # uint16


def _write_atomic(path: str, data: bytes) -> None:
    """``data`` into ``path`` through a temporary file in the same folder and ``os.replace`` (SinkError on failure;
    the temporary file is removed and ``path`` keeps what it held)."""
    folder = os.path.dirname(os.path.abspath(path))
    handle, temporary = tempfile.mkstemp(prefix=".tmp-", suffix=os.path.splitext(path)[1], dir=folder)
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except OSError as exc:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise SinkError(f"cannot write {path!r}: {exc.strerror or exc}") from None


class LabelFolderSink(FrameSink):
    """Writes each frame's labels as ``FOLDER/{frame:06d}.png`` (16-bit) and the classes as ``FOLDER/classes.json``.

    It takes results, not overlays: the stream loop calls ``write_result(frame, result)`` (``frame.index``: the
    frame number; ``result.labels``, ``result.class_names``).
    """

    def __init__(self, folder: str):
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError as exc:
            raise SinkError(f"cannot create the labels folder {folder!r}: {exc.strerror or exc}") from None
        if not os.path.isdir(folder):
            raise SinkError(f"--labels-out {folder!r} is not a folder")
        self.folder = folder
        self.name = f"labels:{folder}"
        self.frames = 0
        self.vocabularies: List[Dict[str, Any]] = []

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
        if not self.vocabularies or self.vocabularies[-1]["classes"] != names:
            self.vocabularies.append({"first_frame": index, "classes": names})
            self._write_classes()
        ok, encoded = cv2.imencode(".png", np.ascontiguousarray(labels, dtype=np.uint16))
        if not ok:
            raise SinkError(f"OpenCV could not encode frame {index}'s labels as a PNG")
        _write_atomic(os.path.join(self.folder, f"{index:06d}.png"), encoded.tobytes())
        self.frames += 1

    def _write_classes(self) -> None:
        names = self.vocabularies[-1]["classes"]
        document = {
            "classes": names,
            "class_map": {str(i): name for i, name in enumerate(names)},
            "vocabularies": self.vocabularies,
        }
        _write_atomic(os.path.join(self.folder, "classes.json"), (json.dumps(document, indent=1) + "\n").encode())

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
