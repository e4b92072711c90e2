"""Frame sources: V4L2 cameras, Jetson CSI cameras (GStreamer), RTSP/HTTP streams, video files, image folders.

Every source yields BGR uint8 ``[H, W, 3]`` frames through ``read() -> Optional[np.ndarray]`` (None: no frame:
the source is lost or, for finite sources, ended; ``ended`` tells which) and is (re)opened with ``open()``.
Use ``open_source("csi://0")`` / ``parse_source(spec)`` to go from a user string to a source.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import re
import sys
import urllib.parse
from typing import Any, Callable, Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from .capabilities import require_gstreamer
from .ffmpeg_log import FFmpegMessages

log = logging.getLogger("zsseg_rt.stream")

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".ts", ".flv", ".wmv")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm")
NETWORK_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://", "srt://")


class SourceError(RuntimeError):
    """A source could not be opened or read."""


@dataclasses.dataclass(frozen=True)
class SourceSpec:
    """A parsed source string.

    Attributes:
        kind: "v4l2", "csi", "network", "file", "folder" or "gstreamer".
        target: the device path / index, sensor id, URL, file path, folder path or pipeline.
        live: True for cameras and network streams (frames arrive in real time; losing them means reconnect).
    """

    kind: str
    target: str
    live: bool


def parse_source(spec) -> SourceSpec:
    """Classify a user source string: ``0``, ``/dev/video0``, ``v4l2:///dev/video1``, ``csi://0``,
    ``rtsp://...``/``http://...``, ``file://clip.mp4`` or a path to a video file / image folder, or a raw
    GStreamer pipeline ending in ``appsink``."""
    text = str(spec).strip()
    if not text:
        raise SourceError("the source is empty: give a camera (0, /dev/video0, csi://0), a URL, a file or a folder")
    if text.isdigit():
        return SourceSpec("v4l2", text, True)
    lower = text.lower()
    if lower.startswith("v4l2://"):
        return SourceSpec("v4l2", text[len("v4l2://") :], True)
    if lower.startswith("/dev/video"):
        return SourceSpec("v4l2", text, True)
    if lower.startswith("csi://"):
        sensor = text[len("csi://") :] or "0"
        if not sensor.isdigit():
            raise SourceError(f"csi:// takes a sensor id such as csi://0, got {text!r}")
        return SourceSpec("csi", sensor, True)
    if lower.startswith(NETWORK_SCHEMES):
        return SourceSpec("network", text, True)
    if "!" in text and "appsink" in text:
        return SourceSpec("gstreamer", text, True)
    if lower.startswith("file://"):
        text = text[len("file://") :]
    if os.path.isdir(text):
        return SourceSpec("folder", text, False)
    if os.path.isfile(text):
        return SourceSpec("file", text, False)
    raise SourceError(
        f"source {spec!r} is neither a camera (0, /dev/video0, csi://0), a URL (rtsp://, http://), an existing video "
        "file nor an existing image folder"
    )


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
    if spec.kind in ("file", "folder"):
        base = os.path.basename(os.path.normpath(spec.target))
        label = os.path.splitext(base)[0] if spec.kind == "file" else base
    elif spec.kind == "v4l2":
        label = os.path.basename(v4l2_device_path(spec.target))
    elif spec.kind == "csi":
        label = f"csi{spec.target}"
    elif spec.kind == "network":
        parts = urllib.parse.urlsplit(spec.target)
        label = "_".join(p for p in [parts.hostname or "", *parts.path.split("/")] if p)
    else:
        label = "gstreamer"
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


@contextlib.contextmanager
def quiet_opencv():
    """OpenCV's own log silenced while it tries a device (its "[ WARN:0] can't open camera by index" lines repeat on
    every attempt; our error says the same once). Restored afterwards; ``-v`` on ``zsseg camera`` keeps them."""
    import cv2

    logging_module = getattr(getattr(cv2, "utils", None), "logging", None)
    if logging_module is None or log.isEnabledFor(logging.DEBUG):
        yield
        return
    previous = logging_module.getLogLevel()
    logging_module.setLogLevel(logging_module.LOG_LEVEL_SILENT)
    try:
        yield
    finally:
        logging_module.setLogLevel(previous)


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


def csi_pipeline(sensor_id: int = 0, width: int = 1280, height: int = 720, fps: int = 30, flip: int = 0) -> str:
    """GStreamer pipeline for a Jetson CSI camera (nvarguscamerasrc -> BGR appsink, newest buffer only)."""
    return (
        f"nvarguscamerasrc sensor-id={int(sensor_id)} ! "
        f"video/x-raw(memory:NVMM), width=(int){int(width)}, height=(int){int(height)}, "
        f"framerate=(fraction){int(fps)}/1, format=(string)NV12 ! "
        f"nvvidconv flip-method={int(flip)} ! video/x-raw, format=(string)BGRx ! "
        "videoconvert ! video/x-raw, format=(string)BGR ! appsink drop=true max-buffers=1 sync=false"
    )


MISSING_KEPT = 20  # missing frame numbers a source remembers (the summary names the first ones; all are counted)


def missing_note(count: int, numbers: Sequence[int]) -> str:
    """The note "3 frames missing by presentation time (000024, ...): ..." for a source whose frame numbers
    skipped ``count`` (the first of them: ``numbers``), else ""; said once, in a run's summary."""
    if not count:
        return ""
    named = [f"{int(number):06d}" for number in list(numbers)[:10]]
    shown = ", ".join(named) + (f" and {count - len(named)} more" if count > len(named) else "")
    frames = "frame" if count == 1 else "frames"
    return (
        f"{count} {frames} missing by presentation time ({shown}: lost to damaged data, or a variable frame rate); "
        "the outputs are named by presentation time, so the names skip them"
    )


class FrameSource:
    """Interface. ``open()`` (idempotent re-open), ``read()``, ``close()``; ``ended`` after a finite source's
    last frame; ``live`` for real-time sources; ``fps`` when known (used to pace non-live sources)."""

    name = "source"
    live = False
    fps: Optional[float] = None
    frame_count: Optional[int] = None  # frames of a finite source when known (progress bars), after ``open()``
    frames_declared: Optional[int] = None  # the frame count a video file's container declares (None: none declared)
    decode_errors = 0  # damaged packets / images skipped (a file or folder), over every open()
    # the presentation time (seconds) of the frame ``read()`` returned last: a video file's own, an image folder's
    # place at ``fps`` (30 when not given); None for a live source (its frames are stamped with the time of capture)
    last_pts: Optional[float] = None
    # the number of that frame from its presentation time, round((pts - start) x fps), the name every output of a run
    # gives it (a label map's 000042.png, a COCO image, a segmented video's clip_000042_*): a frame lost to damaged
    # data leaves a gap (``missing``) instead of shifting the frames after it; None for a live source (numbered by
    # capture order)
    last_number: Optional[int] = None

    def __init__(self):
        self.ended = False
        self.missing: List[int] = []  # the numbers skipped (no frame decoded there), the first MISSING_KEPT of them
        self.missing_count = 0  # all of them, over every open()

    def _place(self, pts: float, start: float = 0.0, number: Optional[int] = None) -> None:
        """``pts`` (seconds; ``start``: the stream's own start time) as the frame just read's presentation time, and
        its number (``number``: given, else from ``pts``). A number at or before the last one (a variable frame
        rate's rounding) is made the next one: two frames never share a name."""
        self.last_pts = pts
        if number is None:
            number = int(round((pts - start) * (self.fps or 30.0)))
        last = -1 if self.last_number is None else self.last_number
        if number <= last:
            number = last + 1
        elif number > last + 1:
            self._skipped(range(last + 1, number))
        self.last_number = number

    def _skipped(self, numbers: Iterable[int]) -> None:
        for number in numbers:
            self.missing_count += 1
            if len(self.missing) < MISSING_KEPT:
                self.missing.append(number)

    def _restart_numbers(self) -> None:
        """At ``open()``: the numbers start again from the file's start (``--loop``: the reader counts on)."""
        self.last_number = None

    def open(self) -> None:
        raise NotImplementedError

    def read(self) -> Optional[np.ndarray]:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self):
        self.open()
        return self

    def __exit__(self, *exc):
        self.close()


class OpenCVSource(FrameSource):
    """``cv2.VideoCapture`` over a V4L2 device, a CSI/GStreamer pipeline, a network stream or a video file.

    Args:
        spec: a ``SourceSpec`` (kind v4l2, csi, gstreamer, network or file).
        width, height, fps: requested capture format for cameras (None: the device's default). CSI needs them;
            defaults 1280x720 at 30 fps.
        timeout_s: open/read timeout for network streams (FFmpeg backend), so a dead RTSP server is noticed.
        max_pixels: refuse a stream whose frame size (from the container / device, before any frame is read)
            exceeds this (None: ``$ZSSEG_MAX_PIXELS`` or 40 MP; 0: no limit; see ``zsseg_rt.image_io``).
    """

    def __init__(
        self,
        spec: SourceSpec,
        width: Optional[int] = None,
        height: Optional[int] = None,
        fps: Optional[float] = None,
        timeout_s: float = 5.0,
        max_pixels: Optional[int] = None,
    ):
        super().__init__()
        if spec.kind not in ("v4l2", "csi", "gstreamer", "network", "file"):
            raise SourceError(f"OpenCVSource cannot open a {spec.kind!r} source")
        if spec.kind in ("csi", "gstreamer"):
            require_gstreamer(f"source {spec.target!r}" if spec.kind == "gstreamer" else f"csi://{spec.target}")
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
        import cv2

        kind, target = self.spec.kind, self.spec.target
        if kind == "csi":
            pipeline = csi_pipeline(int(target), self.width or 1280, self.height or 720, int(self.requested_fps or 30))
            return cv2.VideoCapture(pipeline, cv2.CAP_GSTREAMER)
        if kind == "gstreamer":
            return cv2.VideoCapture(target, cv2.CAP_GSTREAMER)
        if kind == "v4l2":
            check_v4l2_device(target)
            device = int(target) if target.isdigit() else target
            with quiet_opencv():
                return cv2.VideoCapture(device, cv2.CAP_V4L2)
        if kind == "network":
            ms = int(self.timeout_s * 1000)
            params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms]
            with quiet_opencv():
                return cv2.VideoCapture(target, cv2.CAP_FFMPEG, params)
        with quiet_opencv():
            return cv2.VideoCapture(target)

    def open(self) -> None:
        import cv2

        self.close()
        self.ended = False
        cap = self._capture()
        if not cap.isOpened():
            cap.release()
            what = {
                "v4l2": "the camera is busy (another program uses it) or not a capture device",
                "network": "the stream is unreachable or refused the connection",
                "file": "not a video OpenCV can decode",
            }.get(self.spec.kind, "the pipeline could not start")
            raise SourceError(f"cannot open {self.name}: {what}")
        if self.spec.kind == "v4l2":
            if self.width:
                cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
            if self.height:
                cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
            if self.requested_fps:
                cap.set(cv2.CAP_PROP_FPS, self.requested_fps)
            cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # keep the driver queue short: newest frame, lowest latency
        self._check_frame_size(cap)
        reported = cap.get(cv2.CAP_PROP_FPS)
        if self.requested_fps is None and reported and 0 < reported < 1000:
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
            self._place(msec / 1000.0 if msec and msec > 0 else (self._read - 1) / (self.fps or 30.0))
        if frame.ndim == 2:
            frame = np.repeat(frame[:, :, None], 3, axis=2)
        return frame

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


MAX_DAMAGED_IN_A_ROW = 100  # damaged packets without one good frame between them: the file is given up


def ffmpeg_logs_to_python() -> None:
    """FFmpeg's messages (PyAV) of ERROR and above to Python's logging instead of nowhere (PyAV's default) or straight
    to stderr; a level set by the application is kept. A source re-logs those its reads cause at WARNING, counted
    and capped (``zsseg_rt.stream.ffmpeg_log``)."""
    import av.logging

    if av.logging.get_level() is None:
        av.logging.set_level(av.logging.ERROR)


class PyAVFileSource(FrameSource):
    """A video file decoded with PyAV (FFmpeg), every frame in order: what ``open_source`` uses for a file when PyAV
    is installed (the ``video`` extra; else ``OpenCVSource``, which stops at the first packet it cannot decode).

    A damaged packet is skipped and counted (``decode_errors``), with a warning for the first ones, and decoding goes
    on where the decoder resynchronises (the next packet it can decode; for H.264 the frames after it may be
    concealed); after ``MAX_DAMAGED_IN_A_ROW`` damaged packets with no good frame between them the file is given up
    (``read`` raises ``SourceError``). A file that ends before the frame count its container declares
    (``frames_declared``) says so in the log. FFmpeg's own messages go to Python logging (``ffmpeg_logs_to_python``).
    A rotated video (a phone's) is turned upright, as OpenCV does.

    Args:
        path: the video file.
        max_pixels: refuse a file whose frame size (from the container, before decoding) exceeds this (None:
            ``$ZSSEG_MAX_PIXELS`` or 40 MP; 0: no limit).
        fps: the frame rate to report instead of the container's.
    """

    live = False

    def __init__(self, path: str, max_pixels: Optional[int] = None, fps: Optional[float] = None):
        super().__init__()
        self.path = path
        self.name = f"file:{path}"
        self.max_pixels = max_pixels
        self.requested_fps = fps
        self.fps = fps
        self._container: Any = None
        self._frames: Optional[Iterator[Any]] = None
        self._reformatter: Any = None
        self._read = 0  # frames delivered since the last open()
        self._damaged_in_a_row = 0
        self._start = 0.0  # the stream's start time (seconds), which frame numbers count from
        self.ffmpeg = FFmpegMessages(self.name)  # FFmpeg's own lines: WARNING, counted, capped

    @property
    def ffmpeg_messages(self) -> int:
        """FFmpeg's messages so far (``--stats-json``; the first ``MESSAGE_CAP`` were logged)."""
        return self.ffmpeg.count

    def open(self) -> None:
        import av
        from av.video.reformatter import VideoReformatter

        from zsseg_rt.image_io import ImageTooLargeError, check_frame_size

        self.close()
        self.ended = False
        ffmpeg_logs_to_python()
        try:
            with self.ffmpeg.captured():
                container = av.open(self.path)
        except (av.error.FFmpegError, OSError) as exc:
            raise SourceError(f"cannot open {self.name}: not a video FFmpeg can read ({exc})") from None
        if not container.streams.video:
            container.close()
            raise SourceError(f"cannot open {self.name}: it holds no video stream")
        # PyAV's default threads (slices): frame threads would log from threads of their own, which take the GIL in
        # PyAV's log callback and can deadlock against a close() holding it (av.logging's warning)
        stream = container.streams.video[0]
        try:
            check_frame_size(
                stream.codec_context.width, stream.codec_context.height, self.max_pixels, f"{self.name}'s frame"
            )
        except ImageTooLargeError as exc:
            container.close()
            raise SourceError(str(exc)) from None
        rate = stream.average_rate or stream.guessed_rate
        if self.requested_fps is None and rate and 0 < float(rate) < 1000:
            self.fps = float(rate)
        self.frames_declared = int(stream.frames) if stream.frames and stream.frames > 0 else None
        self.frame_count = self.frames_declared or self._estimated_frames(container, stream)
        self._container, self._read, self._damaged_in_a_row = container, 0, 0
        start = stream.start_time if stream.start_time is not None and stream.time_base is not None else 0
        self._start = float(start * stream.time_base) if start else 0.0  # numbers count from the stream's start
        self._restart_numbers()
        self._frames = self._decode(stream)
        self._reformatter = VideoReformatter()  # kept: its conversion context is built once, not per frame

    def _estimated_frames(self, container, stream) -> Optional[int]:
        """Duration x frame rate (what OpenCV reports for a container that declares no count), for progress bars."""
        if stream.duration is not None and stream.time_base is not None and self.fps:
            return max(1, int(round(float(stream.duration * stream.time_base) * self.fps)))
        if container.duration and self.fps:
            return max(1, int(round(container.duration / 1_000_000 * self.fps)))
        return None

    def _decode(self, stream) -> Iterator[Any]:
        """The decoded frames of ``stream``, damaged packets skipped (``_damaged``)."""
        import av

        packets = self._container.demux(stream)
        while True:
            try:
                packet = next(packets)
            except StopIteration:
                return
            except av.error.EOFError:
                return
            except av.error.FFmpegError as exc:  # the container itself is damaged here: read on past it
                self._damaged(exc, "reading")
                packets = self._container.demux(stream)
                continue
            try:
                frames = packet.decode()
            except av.error.FFmpegError as exc:
                self._damaged(exc, f"decoding the packet at {_seconds(packet)}")
                continue
            for frame in frames:
                self._damaged_in_a_row = 0
                yield frame

    def _damaged(self, exc: BaseException, where: str) -> None:
        self.decode_errors += 1
        self._damaged_in_a_row += 1
        if self._damaged_in_a_row > MAX_DAMAGED_IN_A_ROW:
            raise SourceError(
                f"{self.name} is unreadable after frame {self._read}: {self._damaged_in_a_row} damaged packets in a "
                f"row ({_reason(exc)})"
            )
        if self.decode_errors <= 10:
            log.warning(
                "%s: damaged data skipped, %s (%s)%s",
                self.name,
                where,
                _reason(exc),
                "; further ones are counted, not logged" if self.decode_errors == 10 else "",
            )

    def read(self) -> Optional[np.ndarray]:
        if self._frames is None:
            return None
        with self.ffmpeg.captured():  # the demuxer's and decoder's lines of this read
            frame = next(self._frames, None)
        if frame is None:
            self._frames = None
            self.ended = True
            self._say_if_short()
            return None
        self._read += 1
        if frame.time is not None:
            self._place(float(frame.time), self._start)
        else:  # no time stamp: the frame after the last one
            number = 0 if self.last_number is None else self.last_number + 1
            self._place(self._start + number / (self.fps or 30.0), number=number)
        image = self._reformatter.reformat(frame, format="bgr24").to_ndarray()
        turns = (int(getattr(frame, "rotation", 0) or 0) // 90) % 4  # counter-clockwise quarter turns to upright
        return np.ascontiguousarray(np.rot90(image, turns)) if turns else image

    def _say_if_short(self) -> None:
        declared = self.frames_declared
        said = f"; {self.ffmpeg.summary()}" if self.ffmpeg.count else ""
        if declared and self._read < declared:
            log.warning(
                "%s ended at frame %d of the %d its container declares (%d damaged packets skipped)%s",
                self.name,
                self._read,
                declared,
                self.decode_errors,
                said,
            )
        elif self.decode_errors or self.ffmpeg.count:
            log.warning("%s: %d damaged packets skipped%s", self.name, self.decode_errors, said)

    def close(self) -> None:
        self._frames = None
        if self._container is not None:
            container, self._container = self._container, None
            with self.ffmpeg.captured():
                container.close()
        self.ffmpeg.release()  # FFmpeg's lines from now on are no longer this source's


def _seconds(packet) -> str:
    if packet.pts is None or packet.time_base is None:
        return "an unknown time"
    return f"{float(packet.pts * packet.time_base):.2f} s"


def _reason(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


def pyav_available() -> bool:
    """True when PyAV (``av``) can be imported (the ``video`` extra)."""
    try:
        import av  # noqa: F401
    except ImportError:
        return False
    return True


class ImageFolderSource(FrameSource):
    """The images of a folder, in name order, as frames (unreadable files, truncated or damaged ones, and images
    over the pixel limit, ``max_pixels`` as in ``zsseg_rt.image_io.read_image_bgr``, are skipped with a warning
    giving the reason; ``allow_partial`` decodes what a truncated or damaged image holds instead)."""

    def __init__(
        self, folder: str, fps: Optional[float] = None, max_pixels: Optional[int] = None, allow_partial: bool = False
    ):
        super().__init__()
        self.max_pixels = max_pixels
        self.allow_partial = bool(allow_partial)
        self.folder = folder
        self.name = f"folder:{folder}"
        self.fps = fps
        self._paths: List[str] = []
        self._index = 0
        self.last_path: Optional[str] = None  # the file of the frame read last (COCO's file_name)

    def open(self) -> None:
        if not os.path.isdir(self.folder):
            raise SourceError(f"image folder {self.folder!r} does not exist")
        self._paths = sorted(
            os.path.join(self.folder, name)
            for name in os.listdir(self.folder)
            if name.lower().endswith(IMAGE_EXTENSIONS)
        )
        if not self._paths:
            raise SourceError(f"image folder {self.folder!r} has no images ({', '.join(IMAGE_EXTENSIONS)})")
        self.frame_count = len(self._paths)
        self._index = 0
        self._restart_numbers()
        self.ended = False

    def read(self) -> Optional[np.ndarray]:
        from zsseg_rt.image_io import ImageReadError, ImageTooLargeError, read_image_bgr

        while self._index < len(self._paths):
            path = self._paths[self._index]
            self._index += 1
            try:
                image = read_image_bgr(path, self.max_pixels, allow_partial=self.allow_partial)
            except ImageReadError as exc:
                if not isinstance(exc, ImageTooLargeError):
                    self.decode_errors += 1  # a damaged image (one over the pixel limit is not)
                log.warning("skipped %s", exc)
                continue
            # its place in the folder, at fps; its number that place (a skipped image leaves a gap)
            self._place((self._index - 1) / (self.fps or 30.0), number=self._index - 1)
            self.last_path = path
            return image
        self.ended = True
        return None


class CallableSource(FrameSource):
    """Frames from a Python callable or iterable (synthetic sources, tests, frames from another library).

    Args:
        factory: called on every ``open()``; returns an iterable of BGR uint8 frames (a generator is fine).
            Raising an exception from ``factory`` or from the iteration counts as losing the source.
        live: whether the frames are real-time (a lost live source is reconnected with backoff).
        fps: pace for non-live sources (None: as fast as they are consumed).
    """

    def __init__(
        self,
        factory: Callable[[], Iterable[np.ndarray]],
        live: bool = True,
        fps: Optional[float] = None,
        name: str = "callable",
    ):
        super().__init__()
        self.factory = factory
        self.live = live
        self.fps = fps
        self.name = name
        self._iter: Optional[Iterator[np.ndarray]] = None

    def open(self) -> None:
        self.ended = False
        try:
            self._iter = iter(self.factory())
        except Exception as exc:  # noqa: BLE001 - any failure to open is reported as a SourceError
            self._iter = None
            raise SourceError(f"cannot open {self.name}: {exc}") from exc

    def read(self) -> Optional[np.ndarray]:
        if self._iter is None:
            return None
        try:
            return next(self._iter)
        except StopIteration:
            self._iter = None
            if not self.live:
                self.ended = True
            return None
        except Exception:  # noqa: BLE001 - a failing generator is a lost source, not a crash
            self._iter = None
            return None

    def close(self) -> None:
        self._iter = None


def open_source(
    spec,
    width: Optional[int] = None,
    height: Optional[int] = None,
    fps: Optional[float] = None,
    max_pixels: Optional[int] = None,
    allow_partial: bool = False,
) -> FrameSource:
    """Build (not yet open) the ``FrameSource`` for a user string or ``SourceSpec``; ``max_pixels`` bounds the
    size of the frames it may decode (None: ``$ZSSEG_MAX_PIXELS`` or 40 MP; 0: no limit); ``allow_partial``: an
    image folder's truncated or damaged images are decoded as far as they go instead of skipped."""
    if isinstance(spec, FrameSource):
        return spec
    parsed = spec if isinstance(spec, SourceSpec) else parse_source(spec)
    if parsed.kind == "folder":
        return ImageFolderSource(parsed.target, fps=fps, max_pixels=max_pixels, allow_partial=allow_partial)
    if parsed.kind == "file" and pyav_available():  # damaged packets skipped and counted; FFmpeg's log to logging
        return PyAVFileSource(parsed.target, max_pixels=max_pixels, fps=fps)
    return OpenCVSource(parsed, width=width, height=height, fps=fps, max_pixels=max_pixels)
