"""The encoders behind ``VideoFileSink``: H.264 in a fragmented MP4 through PyAV, or OpenCV's ``VideoWriter``.

Both write the file they are given (the sink gives them ``out.partial.mp4``, ``zsseg_rt.io_safety.AtomicFile``) and
raise ``OSError`` when a write fails (a full disk), so that the sink stops the stream and says what was written.

PyAV writes a **fragmented MP4**: the header first (``empty_moov``), then a self-contained fragment (``moof`` +
``mdat``) every second of video and at every keyframe (``frag_duration``, ``frag_keyframe``). At any moment the file
on disk plays up to its last complete fragment, so a run killed mid-write (``kill -9``, a power cut) leaves a playable
partial file; web browsers play it from its start (the header comes first, as ``+faststart`` gave before); FFmpeg
reports a failed write at the fragment it could not write (``mux`` raises), not only at the end.

OpenCV's ``VideoWriter`` reports no failed write at all; ``OpenCVWriter.close`` reads the finished file's frame count
and last frame back and raises when they are not all there.
"""

from __future__ import annotations

import errno
import io
import logging
import os
from typing import Any, Optional, Tuple

import numpy as np

log = logging.getLogger("zsseg_rt.stream")

# Software H.264 encoders PyAV may have, in order (its PyPI wheels ship libx264); hardware ones (h264_v4l2m2m,
# h264_nvenc) are not tried: they exist in a build without a device behind them
H264_ENCODERS = ("libx264", "libopenh264")
VIDEO_EXTRA_INSTALL = 'pip install "zsseg_rt[video]"'  # pyproject.toml: PyAV
FRAGMENT_SECONDS = 1.0  # a fragment of the MP4 at least this often: what a killed run can lose at most
MP4_OPTIONS = {
    "movflags": "frag_keyframe+empty_moov+default_base_moof",
    "frag_duration": str(int(FRAGMENT_SECONDS * 1_000_000)),  # microseconds
}


def h264_encoder() -> Optional[str]:
    """The name of an H.264 encoder PyAV (``av``) has here, or None (PyAV missing, or built without one)."""
    try:
        import av
    except ImportError:
        return None
    for name in H264_ENCODERS:
        try:
            codec = av.codec.Codec(name, "w")
        except Exception:  # noqa: BLE001 - PyAV raises its own error types for an unknown encoder
            continue
        if codec.name == name:
            return name
    return None


class CheckedFile(io.RawIOBase):
    """The file PyAV writes through (``av.open(file_object)``): every byte is written with ``os.write`` and counted
    (``written``), and the first failure is kept (``error``). FFmpeg loses a write error when it meets it while
    closing the file (the last buffer flushed by ``avio_close``, after the trailer): the writer checks ``error``."""

    def __init__(self, path: str):
        super().__init__()
        self.name = path  # PyAV guesses the container from it
        self.written = 0
        self.error: Optional[OSError] = None
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_BINARY", 0), 0o666)

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def write(self, data) -> int:  # type: ignore[override]
        view = memoryview(data).cast("B")
        done = 0
        try:
            while done < len(view):
                done += os.write(self._fd, view[done:])
        except OSError as exc:
            self.error = self.error or exc
            raise
        finally:
            self.written += done
        return done

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        return os.lseek(self._fd, offset, whence)

    def tell(self) -> int:
        return os.lseek(self._fd, 0, os.SEEK_CUR)

    def close(self) -> None:
        if not self.closed:
            os.close(self._fd)
        super().close()


class PyAVWriter:
    """H.264 (yuv420p, CRF 20, every frame kept at ``fps``) in a fragmented MP4/MOV container through PyAV (see the
    module). ``write`` and ``close`` raise ``OSError`` when the file cannot be written (``CheckedFile``)."""

    def __init__(self, path: str, encoder: str, fps: float, size: Tuple[int, int]):
        from fractions import Fraction

        import av

        self.rate = Fraction(fps).limit_denominator(1001)  # 29.97 -> 30000/1001, 25.0 -> 25
        self.size = size
        self.file = CheckedFile(path)
        try:
            self._container = av.open(self.file, mode="w", options=dict(MP4_OPTIONS))
        except BaseException:
            self.file.close()
            raise
        try:
            stream = self._container.add_stream(encoder, rate=self.rate)
            stream.width, stream.height = size
            stream.pix_fmt = "yuv420p"  # 4:2:0: what browsers decode
            stream.options = {"crf": "20", "preset": "veryfast"} if encoder == "libx264" else {}
        except BaseException:
            self._container.close()
            self.file.close()
            raise
        self._stream: Any = stream  # a VideoStream (PyAV types add_stream's result as a union)
        self._count = 0

    def write(self, frame: np.ndarray) -> None:
        import av

        video_frame = av.VideoFrame.from_ndarray(frame, format="bgr24")
        video_frame.pts = self._count
        video_frame.time_base = 1 / self.rate
        self._count += 1
        for packet in self._stream.encode(video_frame):
            self._container.mux(packet)
        self._check()

    def _check(self) -> None:
        if self.file.error is not None:
            raise self.file.error

    def close(self) -> None:
        """Encode what the encoder still holds (B-frames, look-ahead), write the last fragment and the trailer."""
        try:
            for packet in self._stream.encode(None):
                self._container.mux(packet)
        finally:
            try:
                self._container.close()
            finally:
                self.file.close()
        self._check()

    def abandon(self) -> None:
        """Close the file after a failed write without writing more (the error was reported already)."""
        try:
            self._container.close()
        except Exception:  # noqa: BLE001 - the file failed already; its partial content is kept as it is
            log.debug("closing the failed video file", exc_info=True)
        finally:
            self.file.close()


class OpenCVWriter:
    """``cv2.VideoWriter`` with ``fourcc`` (mp4v, MJPG); ``close`` checks the file it finished (see the module)."""

    def __init__(self, path: str, fourcc: str, fps: float, size: Tuple[int, int]):
        import cv2

        self.path, self.size = path, size
        self.frames = 0
        self._writer = cv2.VideoWriter(path, cv2.VideoWriter.fourcc(*fourcc), fps, size)
        self.opened = bool(self._writer.isOpened())

    def write(self, frame: np.ndarray) -> None:
        self._writer.write(frame)  # returns nothing and raises nothing, even on a full disk
        self.frames += 1

    def close(self) -> None:
        """Finish the file and read back its frame count and last frame.

        Raises:
            OSError (EIO): the file does not hold every frame written (OpenCV does not say why: a full disk?).
        """
        self._writer.release()
        found = self._readable_frames()
        if found != self.frames:
            raise OSError(
                errno.EIO,
                f"the finished file holds {found} of the {self.frames} frames written (OpenCV's writer does not report "
                "failed writes: a full disk, or the file removed meanwhile?)",
            )

    def abandon(self) -> None:
        self._writer.release()

    def _readable_frames(self) -> int:
        """The frame count the file declares when its last frame can be read, else the frames before the first that
        cannot (an index lost on a full disk: the frames are counted by reading them)."""
        import cv2

        from zsseg_rt.console.opencv_build import quiet_opencv

        with quiet_opencv():
            capture = cv2.VideoCapture(self.path)
            try:
                if not capture.isOpened():
                    return 0
                declared = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
                if declared == self.frames and self.frames > 0:
                    capture.set(cv2.CAP_PROP_POS_FRAMES, self.frames - 1)
                    if capture.grab():
                        return declared
                    capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
                found = 0
                while found <= self.frames and capture.grab():
                    found += 1
                return found
            finally:
                capture.release()
