"""Fakes for the stream tests: an engine-like callable and numbered frames (no camera, no model)."""

from __future__ import annotations

import contextlib
import threading
import time

import numpy as np

from zsseg_rt.runtime.result import SegmentationResult


class FakeEngine:
    """Engine-like: ``__call__(frame) -> SegmentationResult`` (a list of frames -> a list of results, as an Engine's
    batched call), ``set_classes``, ``class_names``.

    Labels are a deterministic function of the frame (column bands), so overlays differ from the input.
    ``delay``: seconds spent per call (to make the consumer slower than the source). ``batches``: the number of
    frames of each call.
    """

    def __init__(self, classes=("sky", "road"), delay: float = 0.0):
        self.class_names = list(classes)
        self.delay = delay
        self.calls = 0
        self.seen_vocab = []
        self.thread_ids = set()
        self.batches = []

    def set_classes(self, names):
        if isinstance(names, str):
            names = [n.strip() for n in names.split(",")]
        if not names or any(not n for n in names) or len(set(names)) != len(names):
            raise ValueError("empty or duplicate class name")
        self.class_names = list(names)

    def __call__(self, frame):
        self.calls += 1
        self.thread_ids.add(threading.get_ident())
        self.seen_vocab.append(tuple(self.class_names))
        self.batches.append(len(frame) if isinstance(frame, list) else 1)
        if self.delay:
            time.sleep(self.delay)
        if isinstance(frame, list):
            return [self._result(f) for f in frame]
        return self._result(frame)

    def _result(self, frame):
        h, w = frame.shape[:2]
        c = len(self.class_names)
        labels = np.broadcast_to((np.arange(w, dtype=np.int32) * c // max(w, 1))[None, :], (h, w)).copy()
        scores = np.full((h, w), 0.5, dtype=np.float32)
        return SegmentationResult(labels, scores, list(self.class_names), "bgr")


class FlakyCamera:
    """Factory for a CallableSource: 5 frames, then the camera is 'unplugged' (the generator raises), the next
    ``outage`` opens fail, then it is back (numbering continues)."""

    def __init__(self, outage: int = 2, sessions: int = 3):
        self.opens = 0
        self.failed_opens = 0
        self.outage = outage
        self.sessions = sessions
        self.next_index = 0
        self.pending_failures = 0

    def __call__(self):
        self.opens += 1
        if self.pending_failures:
            self.pending_failures -= 1
            self.failed_opens += 1
            raise OSError("No such device /dev/video0")
        if self.opens > 20:
            raise OSError("test guard: too many opens")
        return self._frames()

    def _frames(self):
        for _ in range(5):
            time.sleep(0.002)
            self.next_index += 1
            yield numbered_frame(self.next_index - 1)
        self.pending_failures = self.outage
        raise OSError("camera unplugged")


def numbered_frame(index: int, size=(48, 64)) -> np.ndarray:
    """A BGR frame whose top-left pixel block encodes ``index`` (read back with ``frame_number``)."""
    frame = np.zeros((size[0], size[1], 3), dtype=np.uint8)
    frame[:, :, 1] = 40
    frame[:8, :8, 0] = index % 256
    frame[:8, :8, 2] = (index // 256) % 256
    return frame


def frame_number(frame: np.ndarray) -> int:
    """The index written by ``numbered_frame`` (exact for uncompressed frames)."""
    block = frame[2:6, 2:6].astype(np.float32)
    return int(round(block[:, :, 0].mean())) + 256 * int(round(block[:, :, 2].mean()))


def write_test_video(path: str, count: int, size=(48, 64), fps: float = 30.0) -> str:
    """Write ``count`` numbered frames to a video file with OpenCV (MJPG in .avi: available in every build)."""
    import cv2

    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"MJPG"), fps, (size[1], size[0]))
    assert writer.isOpened(), "OpenCV cannot write MJPG video here"
    for i in range(count):
        writer.write(numbered_frame(i, size))
    writer.release()
    return path


def write_band_clip(path, frames: int = 12, fps: float = 10.0, size=(64, 48)) -> str:
    """Write a ``frames``-frame MJPG clip of ``size`` (width, height) at ``fps`` whose frames all differ (a band
    growing by 4 columns a frame); returns its path."""
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, size)
    assert writer.isOpened()
    for i in range(frames):
        frame = np.zeros((size[1], size[0], 3), np.uint8)
        frame[:, : 4 + 4 * i] = (40, 200, 90)  # every frame differs
        writer.write(frame)
    writer.release()
    return str(path)


def write_h264(path, images, gop: int, fps: int = 30) -> str:
    """Write ``images`` (BGR uint8 ``[H, W, 3]``, all one size) as an H.264 stream (libx264, yuv420p, a keyframe every
    ``gop`` frames, frame ``i`` at ``i / fps`` s) with PyAV; skips the test without PyAV. Returns the path."""
    from fractions import Fraction

    import pytest

    av = pytest.importorskip("av")
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps))
        stream.pix_fmt, stream.options = "yuv420p", {"g": str(gop)}
        for index, image in enumerate(images):
            if index == 0:
                stream.height, stream.width = image.shape[:2]
            frame = av.VideoFrame.from_ndarray(image, format="bgr24")
            frame.pts = index
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return str(path)


def count_frames(path) -> int:
    """How many frames OpenCV reads from the video at ``path`` (what a player shows: 0 for a file it cannot open)."""
    import cv2

    capture = cv2.VideoCapture(str(path))
    count = 0
    while capture.read()[0]:
        count += 1
    capture.release()
    return count


def read_frames(path) -> list:
    """Every frame OpenCV reads from the video at ``path``, in order (BGR arrays; [] for a file it cannot open)."""
    import cv2

    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    return frames


def _preview_sink(box, streams=None):
    """An MjpegSink on 127.0.0.1 (a free port) for the runner that ``box["runner"]`` will hold: its stats, and a
    class box that changes its vocabulary."""
    from zsseg_rt.stream import MjpegSink

    return MjpegSink(
        port=0,
        host="127.0.0.1",
        stats_provider=lambda: box["runner"].snapshot(),
        vocabulary=lambda names: box["runner"].request_classes(names),
        streams=streams,
    )


@contextlib.contextmanager
def running_preview(engine, frame_size=(48, 64)):
    """A StreamRunner streaming numbered frames through ``engine`` into an MjpegSink on 127.0.0.1 (a free port)
    whose page can change the vocabulary; yields the sink; stops the stream and joins its thread on exit."""
    from zsseg_rt.stream import CallableSource, StreamRunner

    box = {}
    sink = _preview_sink(box)
    source = CallableSource(lambda: (numbered_frame(i, frame_size) for i in range(1_000_000)), live=False)
    runner = box["runner"] = StreamRunner(engine, source, [sink], drop_stale=False)
    worker = threading.Thread(target=runner.run, kwargs={"handle_signals": False})
    worker.start()
    try:
        yield sink
    finally:
        runner.stop()
        worker.join(10)
    assert not worker.is_alive() and sink.closed


@contextlib.contextmanager
def running_grid_preview(engine, sizes=((120, 160), (64, 96), (96, 128)), names=("front", "back", "dock")):
    """A MultiStreamRunner streaming numbered frames of each size in ``sizes`` (one endless non-live source each)
    through ``engine`` into one MjpegSink grid on 127.0.0.1 (a free port) whose page can change the vocabulary;
    yields ``(sink, runner)``; stops the stream and joins its thread on exit."""
    from zsseg_rt.stream import CallableSource, MultiStreamRunner

    box = {}
    sink = _preview_sink(box, list(names))

    def source(size, name):
        return CallableSource(lambda: (numbered_frame(i, size) for i in range(1_000_000)), live=False, name=name)

    sources = [source(size, name) for size, name in zip(sizes, names)]
    runner = box["runner"] = MultiStreamRunner(
        engine, sources, [[] for _ in sources], shared_sinks=[sink], names=list(names), drop_stale=False
    )
    worker = threading.Thread(target=runner.run, kwargs={"handle_signals": False})
    worker.start()
    try:
        yield sink, runner
    finally:
        runner.stop()
        worker.join(10)
    assert not worker.is_alive() and sink.closed
