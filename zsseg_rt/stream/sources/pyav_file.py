"""``PyAVFileSource``: a video file decoded with PyAV (FFmpeg), damaged packets skipped and counted."""

from __future__ import annotations

from typing import Any, Iterator, Optional

import numpy as np

from .base import FrameSource, SourceError, log
from .ffmpeg_log import FFmpegMessages

MAX_DAMAGED_IN_A_ROW = 100  # damaged packets without one good frame between them: the file is given up


def ffmpeg_logs_to_python() -> None:
    """FFmpeg's messages (PyAV) of ERROR and above to Python's logging instead of nowhere (PyAV's default) or straight
    to stderr; a level set by the application is kept. A source re-logs those its reads cause at WARNING, counted
    and capped (``zsseg_rt.stream.sources.ffmpeg_log``)."""
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
        fps: the frame rate to report instead of the container's (the output video's rate); the frames keep the
            numbers of the container's rate (``rate``).
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
        self.rate = (
            float(rate) if rate and 0 < float(rate) < 1000 else None
        )  # the file's own: frame numbers count at it
        if self.requested_fps is None and self.rate is not None:
            self.fps = self.rate
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
            self._place(self._start + number / self.number_rate, number=number)
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
