"""A V4L2 camera: ``0``, ``/dev/video0``, ``v4l2:///dev/video1`` (live), captured with OpenCV's V4L2 backend at the
asked size and frame rate, with a driver queue of one frame (the newest, lowest latency)."""

from __future__ import annotations

import os
import sys
from typing import Optional

from .base import SourceError, SourceKind, SourceSpec, quiet_opencv


def v4l2_device_path(target: str) -> str:
    """The device file of a V4L2 target: ``0`` -> ``/dev/video0``, a path as given."""
    return f"/dev/video{int(target)}" if target.isdigit() else target


def check_v4l2_device(target: str) -> None:
    """Refuse a camera whose device file does not exist (Linux), with the cameras that do exist.

    Raises:
        SourceError: no such device.
    """
    path = v4l2_device_path(target)
    if not sys.platform.startswith("linux") or not path.startswith("/dev/") or os.path.exists(path):
        return
    present = sorted(name for name in os.listdir("/dev") if name.startswith("video")) if os.path.isdir("/dev") else []
    found = ", ".join(f"/dev/{name}" for name in present) if present else "none"
    raise SourceError(
        f"no camera at {path}: the device does not exist (video devices on this machine: {found}). Connect the "
        "camera (or give its device, e.g. /dev/video2), or give a video file, an image folder or an rtsp:// URL"
    )


def _parse(text: str) -> Optional[SourceSpec]:
    lower = text.lower()
    if text.isdigit():
        return SourceSpec("v4l2", text, True)
    if lower.startswith("v4l2://"):
        return SourceSpec("v4l2", text[len("v4l2://") :], True)
    if lower.startswith("/dev/video"):
        return SourceSpec("v4l2", text, True)
    return None


def _capture(spec: SourceSpec, source):
    import cv2

    check_v4l2_device(spec.target)
    device = int(spec.target) if spec.target.isdigit() else spec.target
    with quiet_opencv():
        return cv2.VideoCapture(device, cv2.CAP_V4L2)


def _configure(cap, source) -> None:
    import cv2

    if source.width:
        cap.set(cv2.CAP_PROP_FRAME_WIDTH, source.width)
    if source.height:
        cap.set(cv2.CAP_PROP_FRAME_HEIGHT, source.height)
    if source.requested_fps:
        cap.set(cv2.CAP_PROP_FPS, source.requested_fps)
    cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # keep the driver queue short: newest frame, lowest latency


ROW = SourceKind(
    name="v4l2",
    example="0, /dev/video0 (a camera)",
    parse=_parse,
    label=lambda spec: os.path.basename(v4l2_device_path(spec.target)),
    capture=_capture,
    configure=_configure,
    open_failure="the camera is busy (another program uses it) or not a capture device",
)
