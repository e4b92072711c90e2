"""The frame sources as one table: each row says how a user string is recognised (``parse``), what short name the
source gets (``label``), and how its ``FrameSource`` is built (``build``) — or, for the kinds OpenCV captures, how the
capture is opened (``capture``), checked (``check``) and set up (``configure``). ``parse_source`` tries the rows in
order; a new kind is one module (its parser and reader) and one row in ``SOURCE_KINDS`` (a
``zsseg_rt.options.registry.Registry``: ``names()``, ``get(name)`` with the closest name, ``adding(row)``).

| kind | spec | live | frames from |
|---|---|---|---|
| v4l2 | ``0``, ``/dev/video0``, ``v4l2:///dev/video1`` | yes | ``OpenCVSource`` (V4L2) |
| csi | ``csi://0`` (a Jetson CSI sensor) | yes | ``OpenCVSource`` (GStreamer ``nvarguscamerasrc``) |
| network | ``rtsp://``, ``http(s)://``, ``udp://``, ... | yes | ``OpenCVSource`` (FFmpeg, open/read timeouts) |
| gstreamer | a pipeline ending in ``appsink`` | yes | ``OpenCVSource`` (GStreamer) |
| folder | an existing folder of images (``file://`` allowed) | no | ``ImageFolderSource`` |
| images | an image file, or a quoted glob of them (``'photos/*.jpg'``) | no | ``ImageFilesSource`` |
| file | an existing video file (``file://`` allowed) | no | ``PyAVFileSource`` (with PyAV), else ``OpenCVSource`` |

A Python app may also hand in any ``FrameSource`` (``CallableSource`` wraps a generator): ``open_source`` returns it
as it is.
"""

from __future__ import annotations

import dataclasses
import os
import re
from typing import Iterable, List, Optional, Tuple

from zsseg_rt.options.registry import Registry

from . import csi, file, folder, gstreamer, images, network, v4l2
from .base import FrameSource, OpenOptions, SourceError, SourceKind, SourceSpec
from .opencv import OpenCVSource

__all__ = [
    "SOURCE_KINDS",
    "OpenOptions",
    "SourceKind",
    "open_source",
    "parse_source",
    "source_kind",
    "source_label",
    "split_source_name",
    "unique_labels",
]


# The table: a Registry (zsseg_rt.options.registry; ``SOURCE_KINDS.adding(row)`` puts a plugin's or a test's kind
# in for a block: ``first=True`` before the others, whose parsers are tried in order)
SOURCE_KINDS: Registry[SourceKind] = Registry(
    "source kind", [v4l2.ROW, csi.ROW, network.ROW, gstreamer.ROW, folder.ROW, images.ROW, file.ROW], error=SourceError
)


def source_kind(name: str) -> SourceKind:
    """The row named ``name`` (SourceError: none, with the closest name or the kinds)."""
    return SOURCE_KINDS.get(name)


def parse_source(spec) -> SourceSpec:
    """Classify a user source string: ``0``, ``/dev/video0``, ``v4l2:///dev/video1``, ``csi://0``,
    ``rtsp://...``/``http://...``, ``file://clip.mp4`` or a path to a video file / image folder, or a raw
    GStreamer pipeline ending in ``appsink`` (the first row of ``SOURCE_KINDS`` that recognises it)."""
    text = str(spec).strip()
    if not text:
        raise SourceError("the source is empty: give a camera (0, /dev/video0, csi://0), a URL, a file or a folder")
    for row in SOURCE_KINDS:
        parsed = row.parse(text)
        if parsed is not None:
            return dataclasses.replace(parsed, row=row)
    raise SourceError(
        f"source {spec!r} is neither a camera (0, /dev/video0, csi://0), a URL (rtsp://, http://), an existing video "
        "file, an existing image folder nor image files (a photo, a quoted glob: 'photos/*.jpg')"
    )


def open_source(
    spec,
    width: Optional[int] = None,
    height: Optional[int] = None,
    fps: Optional[float] = None,
    max_pixels: Optional[int] = None,
    allow_partial: bool = False,
    fit: bool = False,
) -> FrameSource:
    """Build (not yet open) the ``FrameSource`` for a user string or ``SourceSpec``; ``max_pixels`` bounds the
    size of the frames it may decode (None: ``$ZSSEG_MAX_PIXELS`` or 40 MP; 0: no limit); ``allow_partial``: an
    image folder's truncated or damaged images are decoded as far as they go instead of skipped; ``fit``: its images
    over the pixel limit are read resized to fit it, with a note, instead of skipped."""
    if isinstance(spec, FrameSource):
        return spec
    parsed = spec if isinstance(spec, SourceSpec) else parse_source(spec)
    options = OpenOptions(width, height, fps, max_pixels, allow_partial, fit)
    row = source_kind(parsed.kind)
    if row.build is not None:
        return row.build(parsed, options)
    return OpenCVSource(parsed, width=width, height=height, fps=fps, max_pixels=max_pixels, row=row)


_NAMED = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9_.-]{0,63})=(?P<source>.+)$")


def split_source_name(text: str) -> Tuple[Optional[str], str]:
    """``NAME=SOURCE`` (``front=/dev/video0``, ``dock=rtsp://...``) -> ``(NAME, SOURCE)``; anything else (an existing
    path that contains "=" included) -> ``(None, text)``. NAME: letters, digits, ``_ . -``, at most 64."""
    text = str(text).strip()
    match = _NAMED.match(text)
    if match is None or os.path.exists(text):
        return None, text
    return match.group("name"), match.group("source")


def source_label(spec: SourceSpec) -> str:
    """A short name for a source, usable in a file name: a file's or folder's base name without extension
    (``clip``), ``video0`` for /dev/video0, ``csi0``, a stream URL's host and path (``cam1.local_live``)."""
    label = source_kind(spec.kind).label(spec)
    label = re.sub(r"[^A-Za-z0-9_.-]+", "_", label).strip("._-")
    return label or spec.kind


def unique_labels(labels: Iterable[str]) -> List[str]:
    """``labels`` with repeats told apart by ``_2``, ``_3``, ... (two ``clip.mp4`` from different folders)."""
    seen: dict = {}
    out = []
    for label in labels:
        count = seen.get(label, 0) + 1
        seen[label] = count
        candidate = label if count == 1 else f"{label}_{count}"
        while candidate in seen and count > 1:
            count += 1
            candidate = f"{label}_{count}"
        seen.setdefault(candidate, 1)
        out.append(candidate)
    return out
