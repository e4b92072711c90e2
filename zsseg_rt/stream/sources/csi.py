"""A Jetson CSI camera: ``csi://0`` (live), through GStreamer's ``nvarguscamerasrc`` (OpenCV must have GStreamer)."""

from __future__ import annotations

from typing import Optional

from zsseg_rt.console.opencv_build import require_gstreamer

from .base import SourceError, SourceKind, SourceSpec


def csi_pipeline(sensor_id: int = 0, width: int = 1280, height: int = 720, fps: int = 30, flip: int = 0) -> str:
    """GStreamer pipeline for a Jetson CSI camera (nvarguscamerasrc -> BGR appsink, newest buffer only)."""
    return (
        f"nvarguscamerasrc sensor-id={int(sensor_id)} ! "
        f"video/x-raw(memory:NVMM), width=(int){int(width)}, height=(int){int(height)}, "
        f"framerate=(fraction){int(fps)}/1, format=(string)NV12 ! "
        f"nvvidconv flip-method={int(flip)} ! video/x-raw, format=(string)BGRx ! "
        "videoconvert ! video/x-raw, format=(string)BGR ! appsink drop=true max-buffers=1 sync=false"
    )


def _parse(text: str) -> Optional[SourceSpec]:
    if not text.lower().startswith("csi://"):
        return None
    sensor = text[len("csi://") :] or "0"
    if not sensor.isdigit():
        raise SourceError(f"csi:// takes a sensor id such as csi://0, got {text!r}")
    return SourceSpec("csi", sensor, True)


def _capture(spec: SourceSpec, source):
    import cv2

    fps = int(source.requested_fps or 30)
    pipeline = csi_pipeline(int(spec.target), source.width or 1280, source.height or 720, fps)
    return cv2.VideoCapture(pipeline, cv2.CAP_GSTREAMER)


ROW = SourceKind(
    name="csi",
    example="csi://0 (a Jetson CSI camera)",
    parse=_parse,
    label=lambda spec: f"csi{spec.target}",
    capture=_capture,
    check=lambda spec: require_gstreamer(f"csi://{spec.target}"),
)
