"""A raw GStreamer pipeline ending in ``appsink`` (live; OpenCV must have GStreamer)."""

from __future__ import annotations

from typing import Optional

from zsseg_rt.console.opencv_build import require_gstreamer

from .base import SourceKind, SourceSpec


def _parse(text: str) -> Optional[SourceSpec]:
    return SourceSpec("gstreamer", text, True) if "!" in text and "appsink" in text else None


def _capture(spec: SourceSpec, source):
    import cv2

    return cv2.VideoCapture(spec.target, cv2.CAP_GSTREAMER)


ROW = SourceKind(
    name="gstreamer",
    example="'videotestsrc ! videoconvert ! appsink' (a GStreamer pipeline)",
    parse=_parse,
    label=lambda spec: "gstreamer",
    capture=_capture,
    check=lambda spec: require_gstreamer(f"source {spec.target!r}"),
)
