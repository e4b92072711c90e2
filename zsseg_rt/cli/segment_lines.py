"""What ``zsseg segment`` says as its Session runs: a line per image on stdout once the image's files are written
(``Session(on_written=...)``), or with ``--json`` an entry per image printed at the end in the inputs' order, the
skipped images among them; and the Session's warnings on stderr in the command's words (``zsseg segment: note:
...``)."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
from typing import Any, Dict, Iterator, List, Optional, Sequence

from zsseg_rt.cli.segment_inputs import frame_note

__all__ = ["ImageLines", "SegmentWords", "said_in_segment_words"]

MULTI_FRAME_EXTENSIONS = (".gif", ".webp", ".png", ".apng", ".tif", ".tiff")  # an image that may hold frames


class SegmentWords(logging.Formatter):
    """``zsseg segment: MESSAGE``; a warning is a note (``note: ...``) unless it says so or is a skipped image."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        plain = record.levelno > logging.WARNING or message.startswith(("note:", "skipped"))
        return f"zsseg segment: {message}" if plain else f"zsseg segment: note: {message}"


@contextlib.contextmanager
def said_in_segment_words() -> Iterator[None]:
    """The Session's warnings (a skipped image, a resized one, the bundle's weights) on stderr as segment's lines."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(logging.WARNING)
    handler.setFormatter(SegmentWords())
    handler.addFilter(lambda record: record.name != "zsseg_rt.stream.summary")  # the camera's closing lines
    logger = logging.getLogger("zsseg_rt")
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)


class ImageLines:
    """What the run says of each image once its files are written: a line on stdout, or with ``--json`` its entry
    (kept to the end, when the entries and the skipped images are printed in the inputs' order); without ``--json``
    nothing is kept per image (a run over a large folder holds nothing per image)."""

    def __init__(self, args, images: Sequence[str]) -> None:
        self.as_json, self.images = bool(args.json), images
        self.entries: List[Dict] = []
        self.session: Any = None
        self.videos: set = set()  # the videos whose note was said

    def written(self, item: Any) -> None:
        """``Session(on_written=...)``: one image (or a video's frame) whose views are written."""
        result, frame = item.result, item.frame
        files = dict(getattr(result, "view_files", None) or {})
        path = frame.path or _source_path(self.session, frame.stream)
        self._note(path, frame.path is None)
        timing = result.timing
        seconds = float(timing.get("total", sum(timing.values()))) / 1000.0
        areas = {name: round(share, 4) for name, share in result.areas().items()}
        if not self.as_json:
            shares = ", ".join(f"{name} {share:.1%}" for name, share in areas.items())
            if result.frame_objects is not None:
                shares += f"; {len(result.frame_objects.to_dict()['objects'])} objects"
            what = path if frame.path is not None else f"{path} frame {frame.index}"
            print(f"{what}: {seconds:.2f}s -> {next(iter(files.values()), '')}  {shares}", flush=True)
            return
        backend = self.session.engine.backend
        entry: Dict = {"image": path, **files, "seconds": round(seconds, 3), "backend": backend.name}
        if frame.path is None:
            entry["frame"] = frame.index
        entry["precision"] = getattr(backend, "precision", None)
        # "areas": class -> fraction of the pixels, most frequent first (Result.to_json(), the batch manifest's key)
        entry["areas"] = areas
        entry["timing_ms"] = {stage: round(ms, 2) for stage, ms in timing.items()}
        if result.inference:
            entry["inference"] = result.inference
        resized = _resized(self.session, frame)
        if resized:
            entry["resized"] = resized
        if result.banner:
            entry["banner"] = result.banner
        if result.frame_objects is not None:
            entry["objects"] = result.frame_objects.to_dict()  # {"objects": [...], "dropped": n}
        self.entries.append(entry)

    def _note(self, path: str, video: bool) -> None:
        """Said, not silent: a video's first frame says how its frames are named; an animated or multi-page image
        that only its first frame is segmented."""
        from zsseg_rt.image_io import first_frame_note

        if video and path not in self.videos:
            self.videos.add(path)
            print(frame_note(path), file=sys.stderr)
        note = first_frame_note(path) if not video and path.lower().endswith(MULTI_FRAME_EXTENSIONS) else ""
        if note:
            print(f"zsseg segment: note: {note}", file=sys.stderr)

    def print_json(self, skipped: Sequence[Any]) -> None:
        """The entries and each skipped image's ``{"image", "error"}``, in the inputs' order: the k-th time a path
        is met (written or skipped; a video's frames once, until its numbers start again) takes its k-th place."""
        places: Dict[str, List[int]] = {}
        for place, image in enumerate(self.images):
            places.setdefault(os.path.realpath(image), []).append(place)
        entries = self.entries + [{"image": path, "error": why} for path, why in skipped]
        taken: Dict[str, int] = {}  # a path's places used so far
        last_frame: Dict[str, int] = {}
        keys = []
        for entry in entries:
            real = os.path.realpath(entry["image"])
            frame = entry.get("frame")
            again = frame is None or frame <= last_frame.get(real, -1)  # a new time the path is met
            if frame is not None:
                last_frame[real] = frame
            taken[real] = taken.get(real, 0) + (1 if again or real not in taken else 0)
            own = places.get(real) or [len(self.images)]
            keys.append(own[min(taken[real], len(own)) - 1])
        ordered = [entry for _key, _index, entry in sorted(zip(keys, range(len(entries)), entries))]
        print(json.dumps(ordered, indent=1))


def _source_path(session: Any, stream: int) -> str:
    from zsseg_rt.stream.loop.session_inputs import source_path

    return source_path(session.inputs[stream].source)


def _resized(session: Any, frame: Any) -> Optional[Dict]:
    source = session.inputs[frame.stream].source
    sizes = getattr(source, "resized", {}).get(frame.path) if frame.path is not None else None
    return {"from": sizes["from"], "to": sizes["to"]} if sizes else None
