"""What the robot outputs (an MCAP file, ``McapSink``; a live Foxglove server, ``FoxgloveSink``) share: per frame
of each source, its labels as ROS 2 messages on that source's topics, with time stamps a robot can use.

Topics, for a source named ``front`` (its name as a ROS 2 name token: ``ros_messages.ros_name``):

- ``/front/labels``: ``sensor_msgs/msg/Image``, ``mono16``, the class index of every pixel: exactly the Engine's
  labels (the maps ``--labels-out`` writes as 16-bit PNGs);
- ``/front/overlay``: ``sensor_msgs/msg/CompressedImage``, JPEG, the overlay a window or a video shows (left out
  with ``overlay=False``): JPEG because the overlay is for people to look at, and 30-60 KB a frame instead of an
  ``rgb8`` Image's 1.3 MB at 768x576 (in a file: 20-40x less disk; live: what a Wi-Fi link to a viewer carries); the
  labels, which a robot computes with, are the lossless ``Image``;
- ``/front/label_info``: ``vision_msgs/msg/LabelInfo``, class id -> class name (the ROS 2 convention for a label
  image's classes), before the first frame's labels and again before the first labels of every new vocabulary (and,
  live, to a viewer that subscribes to it later);
- with ``objects=True`` (``--objects``), the frame's objects (``Result.objects()``: each class's connected regions):
  ``/front/objects``, ``vision_msgs/msg/Detection2DArray``, and ``/front/annotations``,
  ``foxglove_msgs/msg/ImageAnnotations`` (their boxes and class names, drawn by Foxglove over the overlay), every
  frame, an empty array when it has none (:mod:`zsseg_rt.outputs.object_messages`).

``header.stamp``: the frame's time. A video file's (or an image folder's at ``fps``) presentation time: seconds
from the file's start, as in the file; a live source's time of capture (the wall clock, ``time.time()``). Per source
the stamps strictly increase: a file read again (``--loop``) goes on after its last frame's time, a wall clock that
steps back goes on after the last stamp, one frame interval later. ``header.frame_id``: ``frame_id`` with
``{source}`` replaced by the source's name (default: the source's name).

In a loop of your own (``VideoSegmenter``, or the Engine per frame)::

    with McapSink("out.mcap", sources=["front"]) as sink:
        for image in frames:
            sink.write_result(image, video(image))   # stamped now; stamp=seconds to give the capture time
"""

from __future__ import annotations

import dataclasses
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from zsseg_rt.runtime.result import UNKNOWN_NAME, palette

from . import object_messages
from . import ros_messages as ros
from .sink_base import FrameSink, SinkError

__all__ = ["ROBOTS_INSTALL", "TOPIC_SCHEMAS", "RobotSink", "require_module"]

ROBOTS_INSTALL = 'pip install "zsseg_rt[robots]"'  # pyproject.toml's extra: mcap, mcap-ros2-support, foxglove-sdk
JPEG_QUALITY = 80
# the ROS 2 message type of each kind of topic a robot output writes (MCAP) or serves (Foxglove)
TOPIC_SCHEMAS = {
    "labels": ros.IMAGE,
    "overlay": ros.COMPRESSED_IMAGE,
    "label_info": ros.LABEL_INFO,
    "objects": object_messages.DETECTION_2D_ARRAY,
    "annotations": object_messages.IMAGE_ANNOTATIONS,
}


def require_module(module: str, what: str) -> Any:
    """``import module``, or a ``SinkError`` in one line that says what to install."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise SinkError(
            f"{what} needs the Python package {module!r}, which is not installed: {ROBOTS_INSTALL}"
        ) from None


@dataclasses.dataclass
class _Source:
    """One source's topics and the state of its stamps and vocabulary."""

    name: str  # as a ROS 2 name token
    frame_id: str
    last_ns: Optional[int] = None
    step_ns: int = 0  # the last increase of its stamps
    offset_ns: int = 0  # added to its times since a file looped or a clock stepped back
    classes: Optional[List[str]] = None  # the vocabulary of its last LabelInfo
    unknown: Optional[Tuple[int, str]] = None  # and its unknown label (--unknown-below), when it had one
    frames: int = 0

    def topic(self, kind: str) -> str:
        return f"/{self.name}/{kind}"


Overlay = Union[None, np.ndarray, Callable[[], np.ndarray]]


class RobotSink(FrameSink):
    """The topics of every source and their messages (see the module); a subclass sends them (``_send``) and may say
    that nobody takes a topic (``_wanted``: a live server with no viewer encodes nothing).

    Args:
        sources: the sources' names (``write_result``'s ``source`` is one of them or its index; a name not given is
            added).
        frame_id: ``header.frame_id``; ``{source}`` is replaced by the source's name.
        overlay: also the overlay, JPEG, on ``/<source>/overlay``.
        jpeg_quality: of the overlay, 1-100.
        objects: also the frame's objects, on ``/<source>/objects`` and ``/<source>/annotations``: those of
            ``result.objects(min_area=min_area, max_objects=max_objects)``: the smallest region as a fraction of the
            frame's pixels, at most this many a frame (None: the result's own, the Engine's ``object_min_area`` and
            ``max_objects``).
    """

    takes_overlay = True  # the stream loop passes its overlay (a callable drawing it when called) to write_result

    def __init__(
        self,
        sources: Sequence[str] = ("camera",),
        frame_id: str = "{source}",
        overlay: bool = True,
        jpeg_quality: int = JPEG_QUALITY,
        objects: bool = False,
        min_area: Optional[float] = None,
        max_objects: Optional[int] = None,
    ):
        if not 1 <= int(jpeg_quality) <= 100:
            raise SinkError(f"jpeg_quality must be in 1..100, got {jpeg_quality}")
        self.frame_id = str(frame_id)
        self.overlay = bool(overlay)
        self.jpeg_quality = int(jpeg_quality)
        self.objects = bool(objects)
        self._object_options = {"min_area": min_area, "max_objects": max_objects}
        self.objects_sent = 0  # objects in the Detection2DArrays written
        self.objects_dropped = 0  # past max_objects in their frames (FrameObjects.dropped)
        self._palette: Tuple[int, np.ndarray] = (0, palette(0))
        self.sources: List[_Source] = []
        self._lock = threading.RLock()
        self.frames = 0
        self.messages = 0
        for name in sources:
            self._add_source(str(name))

    # ---- sources ----------------------------------------------------------------------------------------------
    def _add_source(self, name: str) -> _Source:
        token = ros.ros_name(name)
        taken = {source.name for source in self.sources}
        unique, count = token, 1
        while unique in taken:
            count += 1
            unique = f"{token}_{count}"
        source = _Source(unique, self.frame_id.replace("{source}", unique))
        self.sources.append(source)
        self._source_added(source)
        return source

    def _source_added(self, source: _Source) -> None:
        """A subclass's hook: a source's topics are known (a live server advertises them now)."""

    def _source(self, frame: Any, source: Union[None, int, str]) -> _Source:
        with self._lock:
            if source is None:
                source = int(getattr(frame, "stream", 0) or 0)
            if isinstance(source, str):
                found = [s for s in self.sources if s.name == ros.ros_name(source)]
                return found[0] if found else self._add_source(source)
            if not 0 <= int(source) < len(self.sources):
                raise SinkError(f"source {source} of a robot output with {len(self.sources)} sources")
            return self.sources[int(source)]

    def kinds(self) -> List[str]:
        """The topics of a source (``/<source>/<kind>``), in order: labels, overlay (when written), label_info,
        objects and annotations (when written)."""
        return ["labels", *(["overlay"] if self.overlay else []), "label_info"] + (
            ["objects", "annotations"] if self.objects else []
        )

    def topics(self) -> List[str]:
        """Every topic written: each source's ``kinds()``."""
        return [source.topic(kind) for source in self.sources for kind in self.kinds()]

    # ---- stamps -------------------------------------------------------------------------------------------------
    @staticmethod
    def _time_ns(frame: Any, stamp: Optional[float]) -> int:
        if stamp is not None:
            return int(round(float(stamp) * 1e9))
        pts = getattr(frame, "pts", None)
        if pts is not None:
            return int(round(float(pts) * 1e9))
        captured = getattr(frame, "capture_time", None)
        return int(round(float(captured) * 1e9)) if captured else time.time_ns()

    @staticmethod
    def _stamp(source: _Source, time_ns: int) -> int:
        """``time_ns`` made the source's next stamp: strictly after its last one (a loop or a clock stepping back
        moves the source's later times on by what keeps them increasing, one frame interval after the last)."""
        stamp = time_ns + source.offset_ns
        if source.last_ns is not None and stamp <= source.last_ns:
            step = max(1, source.step_ns)
            source.offset_ns += source.last_ns + step - stamp
            stamp = source.last_ns + step
        if source.last_ns is not None:
            source.step_ns = stamp - source.last_ns
        source.last_ns = stamp
        return stamp

    # ---- writing ------------------------------------------------------------------------------------------------
    def write(self, frame: np.ndarray) -> None:
        raise SinkError("a robot output takes results (write_result(frame, result)), not overlay images")

    def write_result(
        self,
        frame: Any,
        result: Any,
        overlay: Overlay = None,
        *,
        stamp: Optional[float] = None,
        source: Union[None, int, str] = None,
    ) -> None:
        """The messages of one frame: its LabelInfo when the vocabulary is new, its labels, its objects (with
        ``objects``), its overlay.

        Args:
            frame: the stream loop's ``Frame`` (its stamp, its source: ``frame.stream``), or the image segmented (a
                loop of your own: ``[H, W, 3]`` BGR; stamped now unless ``stamp`` is given).
            result: the ``Result`` (``labels``, ``class_names``; ``overlay()`` when ``overlay`` is not given;
                ``objects()`` with ``objects``).
            overlay: the overlay to send (BGR), or a callable drawing it (called only when it is sent); None: drawn
                by ``result.overlay`` on the frame's image.
            stamp: the frame's time in seconds (``time.time()`` of its capture, or its time in a video) instead of
                the frame's own.
            source: the source's name or index (default: ``frame.stream``, else 0).
        """
        labels = np.asarray(result.labels)
        names = [str(name) for name in result.class_names]
        if len(names) > ros.MAX_CLASSES:
            raise SinkError(f"{len(names)} classes do not fit a mono16 label image (at most {ros.MAX_CLASSES})")
        unknown_id = getattr(result, "unknown_id", None)  # the unknown label (--unknown-below): one more entry
        unknown = (int(unknown_id), UNKNOWN_NAME) if unknown_id is not None else None
        threshold = float(getattr(result, "unknown_below", None) or 0.0)
        target = self._source(frame, source)
        with self._lock:
            now = self._stamp(target, self._time_ns(frame, stamp))
            vocabulary = (target.classes, target.unknown) != (names, unknown) or self._resend(target)
            target.classes, target.unknown = names, unknown
        if vocabulary and self._wanted(target, "label_info"):
            info = ros.label_info(now, target.frame_id, names, threshold, unknown)
            self._send(target, "label_info", now, info)
        if self._wanted(target, "labels"):
            self._send(target, "labels", now, ros.image(now, target.frame_id, labels.astype(np.uint16)))
        if self.objects:
            self._write_objects(target, now, result, len(names))
        if self.overlay and self._wanted(target, "overlay"):
            jpeg = self._jpeg(self._overlay_image(frame, result, overlay))
            self._send(target, "overlay", now, ros.compressed_image(now, target.frame_id, jpeg))
        with self._lock:
            target.frames += 1
            self.frames += 1

    def _write_objects(self, target: _Source, now: int, result: Any, classes: int) -> None:
        """The frame's objects on ``objects`` and ``annotations`` (stamped as its labels), found only when one of the
        two is taken."""
        wanted = [kind for kind in ("objects", "annotations") if self._wanted(target, kind)]
        if not wanted:
            return
        find = getattr(result, "objects", None)
        if not callable(find):
            raise SinkError(
                f"objects=True needs results with objects() (zsseg_rt's Result), got a {type(result).__name__}"
            )
        found = find(**self._object_options)
        if "objects" in wanted:
            self._send(target, "objects", now, object_messages.detection_2d_array(now, target.frame_id, found))
        if "annotations" in wanted:
            if self._palette[0] != classes:
                self._palette = (classes, palette(classes))
            self._send(target, "annotations", now, object_messages.image_annotations(now, found, self._palette[1]))
        with self._lock:
            self.objects_sent += len(found)
            self.objects_dropped += int(getattr(found, "dropped", 0))

    def _overlay_image(self, frame: Any, result: Any, overlay: Overlay) -> np.ndarray:
        if callable(overlay):
            return overlay()
        if overlay is not None:
            return overlay
        image = getattr(frame, "image", frame)
        if not isinstance(image, np.ndarray):
            raise SinkError("the overlay needs the frame's image: pass the image (or overlay=...) to write_result")
        return result.overlay(image)

    def _jpeg(self, image: np.ndarray) -> bytes:
        import cv2

        ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality])
        if not ok:
            raise SinkError("OpenCV could not encode the overlay as JPEG")
        return encoded.tobytes()

    # ---- what a subclass does -----------------------------------------------------------------------------------
    def _wanted(self, source: _Source, kind: str) -> bool:
        """Whether a topic's message is taken now (a file: always)."""
        return True

    def _resend(self, source: _Source) -> bool:
        """Whether the source's LabelInfo is sent again with its next frame (a late viewer subscribed to it)."""
        return False

    def _send(self, source: _Source, kind: str, stamp_ns: int, data: bytes) -> None:
        raise NotImplementedError

    def describe(self) -> Dict[str, Any]:
        return self.described("robot")

    def described(self, kind: str, path: Optional[str] = None, **more: Any) -> Dict[str, Any]:
        """What a robot output says of itself (``--stats-json`` "outputs"): its path and kind, the frames and messages
        written, ``more`` (the output's own: an MCAP file's bytes), its topics and, with ``objects``, the objects."""
        where = {} if path is None else {"path": path}
        counts = {"frames": self.frames, "messages": self.messages}
        return {**where, "kind": kind, **counts, **more, "topics": self.topics(), **self.objects_described()}

    def objects_described(self) -> Dict[str, int]:
        """With ``objects``: the objects written and those left out past ``max_objects`` (``describe()``)."""
        return {"objects": self.objects_sent, "objects_dropped": self.objects_dropped} if self.objects else {}

    def __enter__(self) -> "RobotSink":
        return self

    def __exit__(self, kind, _value, _traceback) -> None:
        if kind is None:
            self.close()
        else:
            self.abort()
