"""``zsseg camera -o out.mcap`` and ``McapSink``: the labels of every frame as ROS 2 messages in an MCAP file, the
format ``ros2 bag record`` writes by default and Foxglove opens (topics, messages and stamps:
:mod:`zsseg_rt.outputs.robot_sinks`).

The file: profile ``ros2``; one schema per message type, its ``ros2msg`` definition embedded (``ros2 bag info /
play`` and Foxglove read the file without the ROS packages); messages in CDR; zstd-compressed chunks (the labels are
lossless; label maps of large regions shrink 20-100x), a chunk closed at least every ``FLUSH_SECONDS``; the summary
(schemas, channels, statistics, chunk indexes) and footer written when the file is finished.

It follows the output policy of :mod:`zsseg_rt.outputs.plan` as a video does: refused without ``--overwrite`` (Python:
``overwrite=True``) when it exists; written as ``out.partial.mcap`` while the run goes on and renamed onto
``out.mcap`` only when the run has ended well (its end, ``--max-frames``, Ctrl-C, SIGTERM: the file is finished
first). A run killed meanwhile (``kill -9``, a power cut) leaves ``out.partial.mcap``, readable up to its last
complete chunk (the MCAP project's non-seeking reader); a write that fails (a full disk) stops the run
with one line naming the partial file and what was written, and replaces nothing.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any, Dict, Optional, Sequence, Tuple

from zsseg_rt.io_safety import AtomicFile, OutputWriteError, write_failure
from zsseg_rt.outputs.plan import PYTHON_FLAG, OutputPlan

from . import ros_messages as ros
from .object_messages import OBJECT_SCHEMAS
from .robot_sinks import JPEG_QUALITY, TOPIC_SCHEMAS, RobotSink, _Source, require_module
from .sink_base import SinkError
from .video_writers import CheckedFile

__all__ = ["CHUNK_BYTES", "FLUSH_SECONDS", "McapSink"]

log = logging.getLogger("zsseg_rt.stream")

CHUNK_BYTES = 4 * 2**20  # a chunk is closed when its messages pass this (uncompressed) ...
FLUSH_SECONDS = 1.0  # ... or this long after the chunk's first message: what a killed run can lose at most


class McapSink(RobotSink):
    """The robot topics of every source (:mod:`zsseg_rt.outputs.robot_sinks`) in one MCAP file (see the module).

    Args:
        path: the file (``.mcap``).
        sources, frame_id, overlay, jpeg_quality, objects, min_area, max_objects: see ``RobotSink``.
        overwrite: an existing file (and what an interrupted run left, ``out.partial.mcap``) may be replaced;
            without it they are refused (``OutputRefused``; nothing written).
        output: the ``AtomicFile`` of an ``OutputPlan`` (``zsseg camera``), which checked the path and renames the
            partial file itself once every output of the run is complete: ``close()`` then only finishes the file.
        compression: of the chunks, "zstd" (default) or "lz4".
    """

    def __init__(
        self,
        path: str,
        *,
        sources: Sequence[str] = ("camera",),
        frame_id: str = "{source}",
        overlay: bool = True,
        jpeg_quality: int = JPEG_QUALITY,
        overwrite: bool = False,
        output: Optional[AtomicFile] = None,
        compression: str = "zstd",
        objects: bool = False,
        min_area: Optional[float] = None,
        max_objects: Optional[int] = None,
    ):
        writer_module = require_module("mcap.writer", "an MCAP output")
        kinds = {"zstd": writer_module.CompressionType.ZSTD, "lz4": writer_module.CompressionType.LZ4}
        if compression not in kinds:
            raise SinkError(f"MCAP chunk compression is zstd or lz4, got {compression!r}")
        self._compression = kinds[compression]
        self.compression = compression
        self._writer_class = writer_module.Writer
        self.path = str(path)
        self.name = f"mcap:{self.path}"
        self._plan: Optional[OutputPlan] = None
        if output is None:  # standing alone: its one output's policy, in Python's words
            self._plan = OutputPlan(overwrite, flag=PYTHON_FLAG)
            output = self._plan.stream("path", self.path)
            self._plan.check()
            self._plan.prepare()
        self._file: AtomicFile = output
        self._stream: Optional[CheckedFile] = None  # every failed write raises OSError, after what fitted
        self._writer: Any = None
        self._schemas: Dict[str, int] = {}
        self._channels: Dict[Tuple[str, str], int] = {}
        self._chunk_started: Optional[float] = None
        self._failed = False
        self._finished = False
        super().__init__(sources, frame_id, overlay, jpeg_quality, objects, min_area, max_objects)

    @property
    def partial(self) -> str:
        """Where the file is written until it is complete (``out.partial.mcap``)."""
        return self._file.partial

    # ---- writing --------------------------------------------------------------------------------------------
    def _open(self) -> None:
        import zsseg_rt

        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        try:
            self._stream = CheckedFile(self._file.partial)
            self._writer = self._writer_class(
                _Unbuffered(self._stream), chunk_size=CHUNK_BYTES, compression=self._compression
            )
            self._writer.start(profile="ros2", library=f"zsseg_rt {zsseg_rt.__version__}")
            schemas = {**ros.SCHEMAS, **(OBJECT_SCHEMAS if self.objects else {})}
            for name, definition in schemas.items():
                self._schemas[name] = self._writer.register_schema(name, "ros2msg", definition)
        except OSError as exc:
            self._failed = True
            raise self._failure(exc) from None
        log.info("writing %s (ROS 2 messages, %s chunks)", self._file.partial, self.compression)

    def _channel(self, source: _Source, kind: str) -> int:
        key = (source.name, kind)
        if key not in self._channels:
            schema = self._schemas[TOPIC_SCHEMAS[kind]]
            self._channels[key] = self._writer.register_channel(source.topic(kind), "cdr", schema)
        return self._channels[key]

    def _send(self, source: _Source, kind: str, stamp_ns: int, data: bytes) -> None:
        with self._lock:
            if self._failed or self._finished:
                raise SinkError(f"{self._file.partial!r} is {'failed' if self._failed else 'finished'} already")
            if self._writer is None:
                self._open()
            try:
                self._writer.add_message(self._channel(source, kind), stamp_ns, data, stamp_ns)
                now = time.monotonic()
                if self._chunk_started is None:
                    self._chunk_started = now
                elif now - self._chunk_started >= FLUSH_SECONDS:
                    self._writer.flush()  # the chunk closed and written: a killed run keeps it
                    self._chunk_started = None
            except OSError as exc:  # a full disk, an I/O error: the stream stops and says what was written
                self._failed = True
                raise self._failure(exc) from None
            self.messages += 1

    def _failure(self, exc: BaseException) -> OutputWriteError:
        return write_failure(
            self._file.partial,
            exc,
            f"after {self.frames} frames, {self._file.size()} bytes on disk; {self.path!r} was not replaced, and "
            f"{self._file.partial!r} keeps what was written up to its last complete chunk",
        )

    # ---- the end --------------------------------------------------------------------------------------------
    def finish(self) -> None:
        """Write the last chunk, the summary and the footer, and close the file (not renamed yet).

        Raises:
            OutputWriteError: the disk was full (``path`` is not replaced; the partial file is kept).
        """
        with self._lock:
            if self._finished or self._writer is None:
                self._close_stream()
                return
            if self._failed:
                self._close_stream()
                return
            try:
                self._writer.finish()
            except OSError as exc:
                self._failed = True
                self._close_stream()
                raise self._failure(exc) from None
            self._finished = True
            self._close_stream()

    def _close_stream(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.close()

    def close(self) -> None:
        """Finish the file and rename it onto ``path`` (given an ``OutputPlan``'s file, the plan renames it).

        Raises:
            OutputWriteError: finishing or renaming failed (``path`` is not replaced; the partial file is kept).
        """
        self.finish()
        if self._plan is not None and self._finished:
            self._plan.commit()
            log.info("wrote %d frames (%d messages) to %s", self.frames, self.messages, self.path)

    def abort(self) -> None:
        """After a failed run: the partial file is finished when it can be (a complete MCAP file, under its partial
        name) and kept when it holds a frame (one that holds none is removed: it would refuse the next run for
        nothing); ``path`` is not replaced."""
        try:
            self.finish()
        except OSError as exc:
            log.debug("finishing %s after a failed run: %s", self._file.partial, exc)
        finally:
            if self.frames == 0:
                self._file.discard()
            if self._plan is not None:
                self._plan.abort()  # standing alone: nothing put in place, the claim on the output ends

    def describe(self) -> Dict[str, Any]:
        """What was written (``--stats-json`` "outputs")."""
        done = os.path.isfile(self.path) and self._file.committed
        size = os.path.getsize(self.path) if done else self._file.size()
        return self.described("mcap", self.path, bytes=size, compression=self.compression)


class _Unbuffered:
    """The file as the MCAP writer sees it: each write goes to the disk at once (the writer gathers a chunk, its
    indexes, the summary in memory and writes each in one piece), so a failed write raises where it happens, and a
    run killed after a chunk was written leaves that chunk on disk. (The writer would put a ``RawIOBase`` behind a
    buffer whose failures surface later, or at ``close()``.)"""

    def __init__(self, raw: CheckedFile):
        self.raw = raw

    def write(self, data) -> int:
        return self.raw.write(data)

    def tell(self) -> int:
        return self.raw.tell()

    def flush(self) -> None:
        """Nothing is held here."""
