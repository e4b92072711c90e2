"""A network stream: ``rtsp://``, ``http(s)://``, ``udp://``, ... (live), through OpenCV's FFmpeg backend with open
and read timeouts, so a dead server is noticed (and reconnected with backoff by the stream loop)."""

from __future__ import annotations

import urllib.parse
from typing import Optional

from .base import SourceKind, SourceSpec, quiet_opencv

NETWORK_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://", "srt://")


def _parse(text: str) -> Optional[SourceSpec]:
    return SourceSpec("network", text, True) if text.lower().startswith(NETWORK_SCHEMES) else None


def _label(spec: SourceSpec) -> str:
    parts = urllib.parse.urlsplit(spec.target)
    return "_".join(p for p in [parts.hostname or "", *parts.path.split("/")] if p)


def _capture(spec: SourceSpec, source):
    import cv2

    ms = int(source.timeout_s * 1000)
    params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms]
    with quiet_opencv():
        return cv2.VideoCapture(spec.target, cv2.CAP_FFMPEG, params)


ROW = SourceKind(
    name="network",
    example="rtsp://HOST/PATH (a network stream)",
    parse=_parse,
    label=_label,
    capture=_capture,
    open_failure="the stream is unreachable or refused the connection",
)
