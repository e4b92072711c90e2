"""``OpenCVSource``: ``cv2.VideoCapture`` over what a source row captures with OpenCV (a V4L2 camera, a CSI or
GStreamer pipeline, a network stream, a video file without PyAV). The row's ``capture`` opens the capture and its
``configure`` sets it up; this class reads frames, checks the frame size and places file frames in time."""

from __future__ import annotations

from typing import Optional

import numpy as np

from .base import FrameSource, SourceError, SourceKind, SourceSpec, log


class OpenCVSource(FrameSource):
    """``cv2.VideoCapture`` over a V4L2 device, a CSI/GStreamer pipeline, a network stream or a video file.

    Args:
        spec: a ``SourceSpec`` (kind v4l2, csi, gstreamer, network or file).
        width, height, fps: requested capture format for cameras (None: the device's default). CSI needs them;
            defaults 1280x720 at 30 fps.
        timeout_s: open/read timeout for network streams (FFmpeg backend), so a dead RTSP server is noticed.
        max_pixels: refuse a stream whose frame size (from the container / device, before any frame is read)
            exceeds this (None: ``$ZSSEG_MAX_PIXELS`` or 40 MP; 0: no limit; see ``zsseg_rt.image_io``).
        row: the spec's row of ``SOURCE_KINDS`` (None: the one ``parse_source`` put on the spec).
    """

    def __init__(
        self,
        spec: SourceSpec,
        width: Optional[int] = None,
        height: Optional[int] = None,
        fps: Optional[float] = None,
        timeout_s: float = 5.0,
        max_pixels: Optional[int] = None,
        row: Optional[SourceKind] = None,
    ):
        super().__init__()
        row = row or spec.row
        if row is None or row.name != spec.kind:
            raise SourceError(f"OpenCVSource needs the row of its {spec.kind!r} spec: give parse_source's spec")
        if row.capture is None:
            raise SourceError(f"OpenCVSource cannot open a {spec.kind!r} source")
        if row.check is not None:
            row.check(spec)
        self.row = row
        self.spec = spec
        self.live = spec.live
        self.name = f"{spec.kind}:{spec.target}"
        self.width, self.height, self.requested_fps = width, height, fps
        self.timeout_s = float(timeout_s)
        self.max_pixels = max_pixels
        self.fps = fps
        self._cap = None
        self._read = 0  # frames read since the last open()

    def _capture(self):
        return self.row.capture(self.spec, self)

    def open(self) -> None:
        import cv2

        self.close()
        self.ended = False
        cap = self._capture()
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"cannot open {self.name}: {self.row.open_failure}")
        if self.row.configure is not None:
            self.row.configure(cap, self)
        self._check_frame_size(cap)
        reported = cap.get(cv2.CAP_PROP_FPS)
        known = bool(reported and 0 < reported < 1000)
        self.rate = float(reported) if known and self.spec.kind == "file" else None  # a file's frames count at its own
        if self.requested_fps is None and known:
            self.fps = float(reported)
        count = cap.get(cv2.CAP_PROP_FRAME_COUNT) if self.spec.kind == "file" else 0
        self.frame_count = int(count) if count and 0 < count < 1e9 else None  # containers may not say, or guess
        self.frames_declared = self.frame_count  # OpenCV does not tell a declared count from an estimate
        self._read = 0
        self._restart_numbers()
        self._cap = cap

    def _check_frame_size(self, cap) -> None:
        """Refuse (release + SourceError) a stream whose reported frame size is over the pixel limit."""
        import cv2

        from zsseg_rt.image_io import ImageTooLargeError, check_frame_size

        width, height = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH) or 0), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT) or 0)
        try:
            check_frame_size(width, height, self.max_pixels, what=f"{self.name}'s frame")
        except ImageTooLargeError as exc:
            cap.release()
            raise SourceError(str(exc)) from None

    def read(self) -> Optional[np.ndarray]:
        if self._cap is None:
            return None
        ok, frame = self._cap.read()
        if not ok or frame is None:
            if not self.live:
                self.ended = True
                if self.frames_declared and self._read < self.frames_declared:  # OpenCV stops at the first bad packet
                    log.warning(
                        "%s ended at frame %d of the %d it declares: OpenCV stops at a damaged packet it cannot decode "
                        "(with PyAV installed, %s, damaged packets are skipped and counted)",
                        self.name,
                        self._read,
                        self.frames_declared,
                        'pip install "zsseg_rt[video]"',
                    )
            return None
        self._read += 1
        if self.spec.kind == "file":  # the decoder's time of the frame just read (ms); the frame count's otherwise
            import cv2

            msec = self._cap.get(cv2.CAP_PROP_POS_MSEC)
            self._place(msec / 1000.0 if msec and msec > 0 else (self._read - 1) / self.number_rate)
        if frame.ndim == 2:
            frame = np.repeat(frame[:, :, None], 3, axis=2)
        return frame

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None
