"""The file sinks of the stream loop: a video file (``VideoFileSink``) and a folder of frame images
(``ImageFolderSink``), both under the output policy of :mod:`zsseg_rt.outputs.plan` (a video is written as
``out.partial.mp4`` and renamed when complete; a folder's images are staged and moved in at the end); a failed write
raises ``OutputWriteError`` naming the path and what was written."""

from __future__ import annotations

import logging
import os
import re
from typing import Any, List, Optional, Tuple

import numpy as np

from zsseg_rt.input_files import IMAGE_EXTENSIONS
from zsseg_rt.io_safety import AtomicFile, OutputWriteError, write_failure
from zsseg_rt.outputs.plan import FolderKind, OutputPlan, StagedFolder

from .sink_base import FrameSink, SinkError
from .video_writers import VIDEO_EXTRA_INSTALL, OpenCVWriter, PyAVWriter, h264_encoder

__all__ = ["BROWSER_EXTENSIONS", "FRAMES", "ImageFolderSink", "VideoFileSink", "existing_frames", "h264_encoder"]

log = logging.getLogger("zsseg_rt.stream")

# Extensions written by OpenCV's VideoWriter, with its codec. .mp4/.m4v/.mov are written as H.264 through PyAV when
# it is installed (BROWSER_EXTENSIONS), else with this OpenCV fallback (MPEG-4 Part 2, which browsers do not play).
_FOURCC = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG", ".mkv": "MJPG"}
BROWSER_EXTENSIONS = (".mp4", ".m4v", ".mov")


class VideoFileSink(FrameSink):
    """A video file, opened at the first frame's size (later frames of another size are resized to it).

    Codec: ``.mp4`` / ``.m4v`` / ``.mov`` are H.264 (libx264 through PyAV, the ``video`` extra) in a fragmented MP4,
    which web browsers play; without PyAV they are MPEG-4 Part 2 (OpenCV's mp4v), which browsers do not play (a warning
    says so when the sink is created). ``.avi`` / ``.mkv`` are Motion JPEG (OpenCV). ``codec`` (e.g. "h264") and
    ``encoder`` (e.g. "libx264 via PyAV") say what is written. Every frame is written, at ``fps``. H.264 needs even
    sizes: an odd width or height gets one replicated column or row (a log line names both sizes).

    The file is written as ``partial`` (``out.partial.mp4``) and renamed onto ``path`` by ``close()`` once finalised:
    until then ``path`` keeps what it held. A killed run leaves ``out.partial.mp4``, which plays up to its last
    fragment (H.264 through PyAV; MJPEG ``.avi`` / ``.mkv`` play as far as written too; OpenCV's mp4v MP4 does not).
    A failed write (a full disk) raises ``OutputWriteError`` naming the partial file, the frames and bytes written;
    the partial file is kept and ``path`` is not replaced. A frame of another size than the first (a stream that
    changes resolution) is rescaled to the video's size: a warning says so once, and ``describe()`` counts them
    (``rescaled_frames``); the frames' own sizes are what label maps keep.

    Args:
        path: the video file.
        fps: frames per second written in the file.
        fourcc: an OpenCV codec to use instead (e.g. "mp4v"), which also skips PyAV.
        output: the ``AtomicFile`` of an ``OutputPlan`` (``zsseg_rt.outputs.plan``), which checked the path and
            renames the partial file itself once every output of the run is complete: ``close()`` then only
            finishes the file. None: ``close()`` renames it (a partial file an earlier run left is replaced).
    """

    def __init__(self, path: str, fps: float = 30.0, fourcc: Optional[str] = None, output: Optional[AtomicFile] = None):
        ext = os.path.splitext(path)[1].lower()
        if fourcc is None and ext not in _FOURCC:
            raise SinkError(f"unknown video extension {ext!r} for {path!r}: use one of {sorted(_FOURCC)}")
        self.path = path
        self.fps = float(fps)
        self.fourcc = fourcc or _FOURCC[ext]
        self.name = f"file:{path}"
        self.frames = 0
        self._writer: Any = None  # PyAVWriter or OpenCVWriter, from the first frame
        self._file: Optional[AtomicFile] = None
        self._given = output  # an OutputPlan's: it commits
        self._failed = False
        self._finished = False
        self._size: Optional[Tuple[int, int]] = None
        self._frame_size: Optional[Tuple[int, int]] = None  # the first frame's (before even-size padding)
        self.rescaled_frames = 0
        self._pyav_encoder = h264_encoder() if fourcc is None and ext in BROWSER_EXTENSIONS else None
        if self._pyav_encoder is not None:
            self.codec, self.encoder = "h264", f"{self._pyav_encoder} via PyAV"
        else:
            self.codec = {"mp4v": "mpeg4", "MJPG": "mjpeg"}.get(self.fourcc, self.fourcc)
            self.encoder = f"OpenCV {self.fourcc}"
        self.browser_playable = self.codec == "h264"
        if fourcc is None and ext in BROWSER_EXTENSIONS and self._pyav_encoder is None:
            log.warning(
                "%s will be MPEG-4 Part 2 (OpenCV mp4v), which web browsers do not play: PyAV with an H.264 encoder "
                "is not installed (%s writes H.264)",
                path,
                VIDEO_EXTRA_INSTALL,
            )

    @property
    def partial(self) -> str:
        """Where the video is written until it is complete (``out.partial.mp4``)."""
        if self._file is not None:
            return self._file.partial
        return self._given.partial if self._given is not None else AtomicFile(self.path).partial

    def describe(self) -> dict:
        """What was written: ``{"path", "codec", "encoder", "frames", "fps", "browser_playable"}`` (stats JSON)."""
        return {
            "path": self.path,
            "codec": self.codec,
            "encoder": self.encoder,
            "frames": self.frames,
            "fps": self.fps,
            "browser_playable": self.browser_playable,
            "size": list(self._size) if self._size is not None else None,
            "rescaled_frames": self.rescaled_frames,
        }

    def _open(self, width: int, height: int) -> None:
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        self._file = self._given if self._given is not None else AtomicFile(self.path)
        if self._given is None and self._file.leftover:
            log.info("replacing %s, left by an interrupted run", self._file.partial)
        self._frame_size = (width, height)
        target = self._file.partial
        if self._pyav_encoder is not None:
            size = (width + width % 2, height + height % 2)  # yuv420p: even sizes
            try:
                self._writer = PyAVWriter(target, self._pyav_encoder, self.fps, size)
            except Exception as exc:  # noqa: BLE001 - PyAV / FFmpeg raise their own error types
                raise SinkError(f"cannot write video {target!r} with {self.encoder}: {exc}") from None
            self._size = size
            if size != (width, height):
                log.info(
                    "%s: the frames are %dx%d; H.264 (4:2:0) needs even sizes, so they are written as %dx%d (the last "
                    "column/row repeated)",
                    self.path,
                    width,
                    height,
                    *size,
                )
            log.info("writing %s as H.264 (%s), %g fps: plays in web browsers", target, self.encoder, self.fps)
            return
        writer = OpenCVWriter(target, self.fourcc, self.fps, (width, height))
        if not writer.opened:
            raise SinkError(
                f"cannot write video {target!r} with codec {self.fourcc} (OpenCV has no encoder "
                "for it; try an .avi path, which uses MJPG)"
            )
        self._writer = writer
        self._size = (width, height)
        log.info("writing %s (%s, %s), %g fps", target, self.codec, self.encoder, self.fps)

    def _failure(self, exc: BaseException) -> OutputWriteError:
        assert self._file is not None
        return write_failure(
            self._file.partial,
            exc,
            f"after {self.frames} frames, {self._file.size()} bytes on disk; {self.path!r} was not replaced, and "
            f"{self._file.partial!r} keeps what was written",
        )

    def write(self, frame):
        import cv2

        if self._failed:
            raise SinkError(f"{self.partial!r} failed already; nothing more is written to it")
        height, width = frame.shape[:2]
        if self._size is None:
            self._open(width, height)
        assert self._size is not None
        if (width, height) != self._frame_size:
            self._note_rescaled(width, height)
        frame = np.ascontiguousarray(frame, dtype=np.uint8)
        if self._pyav_encoder is not None and (width, height) != self._size:
            if (width + width % 2, height + height % 2) != self._size:
                frame = cv2.resize(frame, self._size, interpolation=cv2.INTER_AREA)
            else:  # one replicated column / row: H.264 (4:2:0) needs even sizes
                frame = cv2.copyMakeBorder(frame, 0, height % 2, 0, width % 2, cv2.BORDER_REPLICATE)
        elif (width, height) != self._size:
            frame = cv2.resize(frame, self._size, interpolation=cv2.INTER_AREA)
        try:
            self._writer.write(frame)
        except OSError as exc:  # a full disk, an I/O error: the stream stops and says what was written
            self._failed = True
            raise self._failure(exc) from None
        self.frames += 1

    def _note_rescaled(self, width: int, height: int) -> None:
        """A frame of another size than the first: counted; the first one of a run says so in a warning."""
        self.rescaled_frames += 1
        if self.rescaled_frames == 1:
            assert self._frame_size is not None and self._size is not None
            log.warning(
                "%s: frame %d is %dx%d, the video %dx%d (its first frame's size): such frames are rescaled to fit the "
                "video (counted as rescaled_frames in --stats-json); label maps keep each frame's own size",
                self.path,
                self.frames,
                width,
                height,
                *self._size,
            )

    def finish(self) -> None:
        """Finalise the file (the last fragment, the trailer) without renaming it; after a failed write, only close
        it (the partial file is kept; the failure was raised by ``write``).

        Raises:
            OutputWriteError: finalising failed (``path`` is not replaced; the partial file is kept).
        """
        writer, self._writer = self._writer, None
        if writer is None or self._file is None:
            return
        if self._failed:
            writer.abandon()
            return
        try:
            writer.close()
        except OSError as exc:
            self._failed = True
            raise self._failure(exc) from None
        self._finished = True

    def close(self):
        """Finish the file and rename it onto ``path`` (given an ``OutputPlan``'s file, the plan renames it).

        Raises:
            OutputWriteError: finalising or renaming failed (``path`` is not replaced; the partial file is kept).
        """
        self.finish()
        if not self._finished or self._file is None:
            return
        self._finished = False
        playable = "" if self.browser_playable or self.codec == "mjpeg" else "; web browsers do not play it"
        if self._given is None:
            self._file.commit()
            log.info("wrote %d frames to %s (%s, %s%s)", self.frames, self.path, self.codec, self.encoder, playable)
        else:  # the OutputPlan renames it with the run's other outputs, and says so
            log.debug("finished %s: %d frames", self._file.partial, self.frames)

    def abort(self) -> None:
        """After a failed run: the file is finished without renaming (``path`` keeps its old content): the partial
        file is kept when it holds a frame (every frame written when this file did not fail itself, else up to its
        last fragment); one that holds none is removed, so that it refuses no later run."""
        writer, self._writer = self._writer, None
        self._finished = False
        if writer is not None and self._failed:
            writer.abandon()
        elif writer is not None:  # the run failed elsewhere (an app's error): the frames written are finalised
            try:
                writer.close()
            except Exception as exc:  # noqa: BLE001 - kept as far as it was written; the run's failure is said
                log.debug("finishing %s after a failed run: %s", self.partial, exc)
        if self._file is not None and (self.frames == 0 or self._file.size() == 0):
            self._file.discard()


FRAME_NAME = "frame_{index:06d}{extension}"
_FRAME_PATTERN = re.compile(r"^frame_(\d{6,})(\.[A-Za-z0-9]+)$")
FRAMES = FolderKind(
    "frames",
    "frame images",
    re.compile(r"^frame_\d{6,}(" + "|".join(re.escape(ext) for ext in IMAGE_EXTENSIONS) + r")$", re.IGNORECASE),
)


def existing_frames(folder: str, extension: str = ".jpg") -> List[Tuple[int, str]]:
    """``(index, path)`` of the frame files ``ImageFolderSink`` writes (``frame_000000.jpg``, ...) that ``folder``
    holds already, in order."""
    if not os.path.isdir(folder):
        return []
    found = []
    for name in os.listdir(folder):
        match = _FRAME_PATTERN.match(name)
        if match and match.group(2).lower() == extension.lower():
            found.append((int(match.group(1)), os.path.join(folder, name)))
    return sorted(found)


class ImageFolderSink(FrameSink):
    """One image per frame, ``frame_000000.jpg`` ... in ``folder`` (created), under the output policy of
    ``zsseg_rt.outputs.plan``: the images are staged in ``folder/.zsseg-staging-XXXXXXXX`` and moved into ``folder``
    by ``close()``, which also removes the frames an earlier run wrote there beyond this run's (the folder then holds
    this run's frames only; files zsseg_rt did not write stay). Not fsynced: a stream at camera rate.

    ``replace``: frames an earlier run wrote may be replaced (``zsseg camera --overwrite``); without it a folder that
    holds frames already is refused (``OutputRefused``, nothing written). ``staged``: the ``StagedFolder`` of an
    ``OutputPlan`` that checked the folder and moves the frames itself (``close()`` then only finishes). A failed
    write raises ``OutputWriteError`` naming the file and the frames written before it.
    """

    def __init__(
        self, folder: str, extension: str = ".jpg", replace: bool = False, staged: Optional[StagedFolder] = None
    ):
        if not extension.startswith("."):
            extension = "." + extension
        if extension.lower() not in IMAGE_EXTENSIONS:
            raise SinkError(f"image extension {extension!r} is not one of {IMAGE_EXTENSIONS}")
        self._plan: Optional[OutputPlan] = None
        if staged is None:
            self._plan, staged = OutputPlan.standing_alone(replace, folder, FRAMES)
        self.staged = staged
        self.folder = folder
        self.extension = extension
        self.name = f"folder:{folder}"
        self.frames = 0

    takes_number = True  # the stream loop gives each overlay with its frame's number (write_numbered)

    def write(self, frame):
        """The next image, named by how many were written before it (a loop of one's own)."""
        self.write_numbered(frame, self.frames)

    def write_numbered(self, frame, number: int) -> None:
        """The overlay of frame ``number`` (``Frame.index``: the name every output of the run gives it, so a frame
        lost to damaged data leaves a gap here too)."""
        import cv2

        name = FRAME_NAME.format(index=int(number), extension=self.extension)
        ok, encoded = cv2.imencode(self.extension, frame)
        if not ok:
            raise SinkError(f"OpenCV could not encode frame {number} as {self.extension} for {name!r}")
        self.staged.write_bytes(name, encoded.tobytes(), fsync=False)
        self.frames += 1

    def close(self):
        if self._plan is not None:
            self._plan.commit()

    def abort(self):
        if self._plan is not None:
            self._plan.abort()

    def describe(self) -> dict:
        """What was written (``--stats-json`` "outputs")."""
        return {"path": self.folder, "kind": "frames", "frames": self.frames, "format": self.extension.lstrip(".")}
