"""A video file: an existing file (``file://`` allowed; not live), decoded by PyAV when it is installed (damaged
packets skipped and counted), else by OpenCV (which stops at the first packet it cannot decode)."""

from __future__ import annotations

import os
from typing import Optional

from .base import FrameSource, OpenOptions, SourceKind, SourceSpec, quiet_opencv
from .folder import strip_file_scheme


def _parse(text: str) -> Optional[SourceSpec]:
    path = strip_file_scheme(text)
    return SourceSpec("file", path, False) if os.path.isfile(path) else None


def _build(spec: SourceSpec, options: OpenOptions) -> FrameSource:
    from .opencv import OpenCVSource
    from .pyav_file import PyAVFileSource, pyav_available

    if pyav_available():  # damaged packets skipped and counted; FFmpeg's log to logging
        return PyAVFileSource(spec.target, max_pixels=options.max_pixels, fps=options.fps)
    return OpenCVSource(
        spec, width=options.width, height=options.height, fps=options.fps, max_pixels=options.max_pixels, row=ROW
    )


def _capture(spec: SourceSpec, source):
    import cv2

    with quiet_opencv():
        return cv2.VideoCapture(spec.target)


ROW = SourceKind(
    name="file",
    example="clip.mp4 (a video file)",
    parse=_parse,
    label=lambda spec: os.path.splitext(os.path.basename(os.path.normpath(spec.target)))[0],
    build=_build,
    capture=_capture,
    open_failure="not a video OpenCV can decode",
)
