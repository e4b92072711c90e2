"""What this OpenCV build can do (GStreamer, on-screen windows), with errors that say how to fix it, and OpenCV's own
log quieted while a device is tried. Shared by the stream's sources and loop and by the outputs' window sink and
video writers (was ``zsseg_rt.stream.capabilities``; ``quiet_opencv`` was ``zsseg_rt.stream.sources.base``'s)."""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import re
import sys


class StreamCapabilityError(RuntimeError):
    """This machine or OpenCV build cannot open the requested source or sink; the message says what to do."""


@functools.lru_cache(maxsize=1)
def _build_info() -> str:
    import cv2

    return cv2.getBuildInformation()


def _build_value(key: str, info: str) -> str:
    match = re.search(rf"^\s*{re.escape(key)}:\s*(.*)$", info, flags=re.MULTILINE)
    return match.group(1).strip() if match else ""


def opencv_has_gstreamer(info: str = None) -> bool:
    """True when ``cv2`` was built with GStreamer (``GStreamer: YES`` in ``cv2.getBuildInformation()``)."""
    return _build_value("GStreamer", info if info is not None else _build_info()).upper().startswith("YES")


def opencv_has_gui(info: str = None) -> bool:
    """True when ``cv2`` was built with a window backend (GTK/Qt/Win32/Cocoa); headless wheels say ``NONE``."""
    value = _build_value("GUI", info if info is not None else _build_info()).upper()
    return bool(value) and not value.startswith("NONE")


def display_available() -> bool:
    """True when there is a display to open a window on (always on Windows/macOS; $DISPLAY/$WAYLAND_DISPLAY else)."""
    if sys.platform in ("win32", "darwin"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def require_gstreamer(what: str, info: str = None) -> None:
    """Raise ``StreamCapabilityError`` with the fix when ``cv2`` has no GStreamer (needed for ``csi://``)."""
    if opencv_has_gstreamer(info):
        return
    import cv2

    raise StreamCapabilityError(
        f"{what} needs OpenCV built with GStreamer, but this cv2 ({cv2.__version__}, {cv2.__file__}) reports "
        "'GStreamer: NO' in cv2.getBuildInformation(). pip's opencv-python wheels never include GStreamer. On a "
        "Jetson use JetPack's system OpenCV: `pip uninstall opencv-python opencv-python-headless` inside the "
        "environment, then create it with `python3 -m venv --system-site-packages` (or `sudo apt install "
        "python3-opencv`) so that `import cv2` finds /usr/lib/python3/dist-packages/cv2. Alternatively read the "
        "camera through V4L2 (e.g. /dev/video0) if its driver exposes one."
    )


def require_window(info: str = None) -> None:
    """Raise ``StreamCapabilityError`` when an on-screen window cannot be opened, suggesting the MJPEG preview."""
    if not opencv_has_gui(info):
        raise StreamCapabilityError(
            "an on-screen window was requested but this OpenCV build has no GUI support ('GUI: NONE' in "
            "cv2.getBuildInformation(); the opencv-python-headless wheel never has one). Watch the stream in a "
            "browser instead with the MJPEG preview (`zsseg camera SOURCE --preview 8080`, then open "
            "http://127.0.0.1:8080/), write it to a file (`-o out.mp4`), or install opencv-python (with GUI) "
            "instead of the headless wheel."
        )
    if not display_available():
        raise StreamCapabilityError(
            "an on-screen window was requested but no display is available ($DISPLAY and $WAYLAND_DISPLAY are "
            "unset, e.g. over SSH). Use the MJPEG preview (`--preview 8080`, then browse to the device's port "
            "8080 through an SSH tunnel: `ssh -L 8080:127.0.0.1:8080 device`) or write a file (`-o out.mp4`)."
        )


@contextlib.contextmanager
def quiet_opencv():
    """OpenCV's own log silenced while it tries a device (its "[ WARN:0] can't open camera by index" lines repeat on
    every attempt; our error says the same once). Restored afterwards; ``-v`` on ``zsseg camera`` (the
    ``zsseg_rt.stream`` logger at DEBUG) keeps them."""
    import cv2

    logging_module = getattr(getattr(cv2, "utils", None), "logging", None)
    if logging_module is None or logging.getLogger("zsseg_rt.stream").isEnabledFor(logging.DEBUG):
        yield
        return
    previous = logging_module.getLogLevel()
    logging_module.setLogLevel(logging_module.LOG_LEVEL_SILENT)
    try:
        yield
    finally:
        logging_module.setLogLevel(previous)
