"""The one COCO writer: ``zsseg camera --save-json FILE`` on video files and image folders (every frame's labels in
one file for every source) and ``zsseg segment --save-json FILE`` (every image's and every video frame's:
:mod:`zsseg_rt.outputs.result_outputs`), as COCO masks (:class:`zsseg_rt.runtime.coco.CocoMasks`), staged by the run's
output plan (:mod:`zsseg_rt.outputs.plan`) and put in place with the other outputs when the run has ended well."""

from __future__ import annotations

import os
from typing import Any, Dict, Optional, Sequence

from zsseg_rt.runtime.coco import CocoMasks, frame_file_name

from .sink_base import FrameSink

__all__ = ["CocoSink"]


class CocoSink(FrameSink):
    """A sink of results shared by every source: frame ``N`` (its number by presentation time, as the run's other
        outputs name it) of source ``front`` is the image ``front/frame_00000N.png`` (``frame_file_name``; with ``source``
        and ``frame`` in its entry); an image folder's frame is its image file's path, a file annotation tools open; ``videos`` (``zsseg segment``'s
    names): a video file's frame is ``STEM/frame_00000N.png`` of the file's path, with ``frame`` and ``video``, and a photo's entry is its path alone. ``finish()`` writes the document into ``staged`` (a ``StagedFile``: its
        temporary name; the plan's commit puts it in place, its abort removes it)."""

    def __init__(
        self,
        staged: Any,
        names: Sequence[str],
        path: Optional[str] = None,
        description: str = "zsseg camera label maps",
        videos: Optional[Sequence[Optional[str]]] = None,
    ):
        self.staged = staged
        self.names = [str(name) for name in names]
        self.videos = list(videos or [])  # a source's video file (segment's names), else None
        self.path = path or getattr(staged, "path", "")
        self.name = f"coco:{self.path}"
        self.masks = CocoMasks(description)
        self.finished = False

    def write(self, frame: Any) -> None:  # pragma: no cover - the loop gives it results (write_result)
        raise TypeError("the COCO masks take results (write_result), not overlay images")

    def write_result(self, frame: Any, result: Any) -> None:
        unknown = getattr(result, "unknown_id", None) is not None
        found = getattr(result, "frame_objects", None)  # with --objects: the run found them (runner.objects)
        file_name = getattr(frame, "file_name", None)  # a command's image (ResultFrame): its name and details
        if file_name is not None:
            self.masks.add(result.labels, result.class_names, file_name, unknown, found, **frame.details)
            return
        stream, index = int(getattr(frame, "stream", 0)), int(frame.index)
        if self.videos and getattr(frame, "path", None) is not None:  # zsseg segment's photo: its path alone
            self.masks.add(result.labels, result.class_names, frame.path, unknown, found)
            return
        video = self.videos[stream] if stream < len(self.videos) else None
        if video is not None and getattr(frame, "path", None) is None:  # STEM/frame_000042.png of its video file
            name = frame_file_name(os.path.splitext(video)[0], index)
            self.masks.add(result.labels, result.class_names, name, unknown, found, frame=index, video=video)
            return
        source = self.names[stream] if self.names else "frames"
        name = getattr(frame, "path", None) or frame_file_name(source, index)
        self.masks.add(result.labels, result.class_names, name, unknown, found, source=source, frame=index)

    def finish(self) -> None:
        """The document written under its temporary name (not in place yet)."""
        if not self.finished:
            self.staged.write_json(self.masks.document())
            self.finished = True

    def close(self) -> None:
        self.finish()

    def abort(self) -> None:
        """After a failed run: nothing written (the plan removes what was staged)."""
        self.finished = True

    def describe(self) -> Dict[str, Any]:
        return {
            "path": self.path,
            "kind": "coco",
            "frames": len(self.masks.images),
            "annotations": len(self.masks.annotations),
            "objects": sum(1 for item in self.masks.annotations if item["iscrowd"] == 0),
        }
