"""ROS 2 messages as bytes, without ROS: the three message types the robot outputs write (``McapSink``,
``FoxgloveSink``), encoded in ROS 2's wire format (CDR, little-endian, with its 4-byte encapsulation header) and
described by their ``ros2msg`` definitions, which the outputs embed as schemas (``ros2 bag``, Foxglove and the
readers of the MCAP project and ``rosbags`` decode the messages from them, without the ROS packages).

- ``sensor_msgs/msg/Image``: the labels, encoding ``mono16`` (one class index per pixel, little-endian) and the
  overlay as ``rgb8`` (:func:`image`);
- ``sensor_msgs/msg/CompressedImage``: the overlay as JPEG (:func:`compressed_image`);
- ``vision_msgs/msg/LabelInfo``: the vocabulary, class id -> name (:func:`label_info`);

and, with the objects on, :mod:`zsseg_rt.outputs.object_messages`'s ``vision_msgs/msg/Detection2DArray`` and
``foxglove_msgs/msg/ImageAnnotations``.

The encoders are written here (a few lines each: every field of these types is a primitive, a string or a byte
array) rather than taken from ``mcap_ros2``'s generic encoder, because the same bytes go to the file and to the live
server, and a frame's labels are one copy (``bytes``), not a Python loop. What they write is checked against two
independent decoders (``mcap_ros2.reader`` and ``rosbags``: python_tests/stream/test_robot_outputs.py).
"""

from __future__ import annotations

import re
import struct
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

__all__ = [
    "COMPRESSED_IMAGE",
    "IMAGE",
    "LABEL_INFO",
    "MAX_CLASSES",
    "SCHEMAS",
    "compressed_image",
    "image",
    "label_info",
    "ros_name",
    "split_stamp",
]

IMAGE = "sensor_msgs/msg/Image"
COMPRESSED_IMAGE = "sensor_msgs/msg/CompressedImage"
LABEL_INFO = "vision_msgs/msg/LabelInfo"
MAX_CLASSES = 65536  # mono16 labels and LabelInfo's uint16 class ids

_SEPARATOR = "\n" + "=" * 80 + "\n"
_TIME = "int32 sec\nuint32 nanosec\n"
_HEADER = "builtin_interfaces/Time stamp\nstring frame_id\n"
_DEPENDENCIES = [("std_msgs/Header", _HEADER), ("builtin_interfaces/Time", _TIME)]


def _definition(text: str, dependencies: Sequence[Tuple[str, str]]) -> bytes:
    """A ``ros2msg`` schema: the type's fields, then each type it uses after a separator line and ``MSG: name``
    (what ``ros2 bag record`` writes into an MCAP file)."""
    parts = [text] + [f"MSG: {name}\n{fields}" for name, fields in dependencies]
    return _SEPARATOR.join(parts).encode()


SCHEMAS: Dict[str, bytes] = {
    IMAGE: _definition(
        "std_msgs/Header header\nuint32 height\nuint32 width\nstring encoding\nuint8 is_bigendian\nuint32 step\n"
        "uint8[] data\n",
        _DEPENDENCIES,
    ),
    COMPRESSED_IMAGE: _definition("std_msgs/Header header\nstring format\nuint8[] data\n", _DEPENDENCIES),
    LABEL_INFO: _definition(
        "std_msgs/Header header\nVisionClass[] class_map\nfloat32 threshold\n",
        [("vision_msgs/VisionClass", "uint16 class_id\nstring class_name\n"), *_DEPENDENCIES],
    ),
}

_ENCAPSULATION = b"\x00\x01\x00\x00"  # CDR, little-endian


class _Cdr:
    """The CDR of one message, built in order: every value aligned to its size from the start of the payload
    (after the encapsulation header)."""

    def __init__(self) -> None:
        self.parts: List[bytes] = []
        self.offset = 0

    def _put(self, data: bytes) -> None:
        self.parts.append(data)
        self.offset += len(data)

    def _align(self, size: int) -> None:
        pad = -self.offset % size
        if pad:
            self._put(b"\0" * pad)

    def u8(self, value: int) -> None:
        self._put(struct.pack("<B", value))

    def u16(self, value: int) -> None:
        self._align(2)
        self._put(struct.pack("<H", value))

    def u32(self, value: int) -> None:
        self._align(4)
        self._put(struct.pack("<I", value))

    def i32(self, value: int) -> None:
        self._align(4)
        self._put(struct.pack("<i", value))

    def f32(self, value: float) -> None:
        self._align(4)
        self._put(struct.pack("<f", value))

    def f64s(self, *values: float) -> None:
        """``float64`` values in a row (fields, or a fixed-size array): aligned to 8 once, then packed together."""
        self._align(8)
        self._put(struct.pack(f"<{len(values)}d", *values))

    def string(self, text: str) -> None:
        data = text.encode() + b"\0"
        self.u32(len(data))
        self._put(data)

    def octets(self, data: bytes) -> None:
        self.u32(len(data))
        self._put(data)

    def time(self, stamp_ns: int) -> None:
        """``builtin_interfaces/Time``."""
        sec, nanosec = split_stamp(stamp_ns)
        self.i32(sec)
        self.u32(nanosec)

    def header(self, stamp_ns: int, frame_id: str) -> None:
        self.time(stamp_ns)
        self.string(frame_id)

    def bytes(self) -> bytes:
        return b"".join([_ENCAPSULATION, *self.parts])


def split_stamp(stamp_ns: int) -> Tuple[int, int]:
    """``builtin_interfaces/Time`` of a time in nanoseconds: ``(sec, nanosec)``, ``0 <= nanosec < 1e9``.

    Raises:
        ValueError: a time before 1970 or after 2038 (``sec`` is an int32).
    """
    sec, nanosec = divmod(int(stamp_ns), 1_000_000_000)
    if not 0 <= sec < 2**31:
        raise ValueError(f"a ROS 2 time stamp holds 0 <= seconds < 2**31, got {stamp_ns} ns")
    return sec, nanosec


def image(stamp_ns: int, frame_id: str, pixels: np.ndarray) -> bytes:
    """``sensor_msgs/msg/Image`` of ``pixels``: ``[H, W]`` uint16 (``mono16``) or ``[H, W, 3]`` uint8 RGB
    (``rgb8``), little-endian, rows packed (``step`` = the row's bytes)."""
    pixels = np.ascontiguousarray(pixels)
    if pixels.ndim == 2 and pixels.dtype == np.uint16:
        encoding, channels = "mono16", 1
    elif pixels.ndim == 3 and pixels.shape[2] == 3 and pixels.dtype == np.uint8:
        encoding, channels = "rgb8", 3
    else:
        raise ValueError(f"an Image takes [H, W] uint16 or [H, W, 3] uint8 pixels, got {pixels.shape} {pixels.dtype}")
    height, width = pixels.shape[:2]
    message = _Cdr()
    message.header(stamp_ns, frame_id)
    message.u32(height)
    message.u32(width)
    message.string(encoding)
    message.u8(0)  # is_bigendian
    message.u32(width * channels * pixels.itemsize)
    message.octets(pixels.astype(pixels.dtype.newbyteorder("<"), copy=False).tobytes())
    return message.bytes()


def compressed_image(stamp_ns: int, frame_id: str, data: bytes, image_format: str = "jpeg") -> bytes:
    """``sensor_msgs/msg/CompressedImage``: ``data`` encoded as ``image_format`` (jpeg, png)."""
    message = _Cdr()
    message.header(stamp_ns, frame_id)
    message.string(image_format)
    message.octets(bytes(data))
    return message.bytes()


def label_info(
    stamp_ns: int,
    frame_id: str,
    class_names: Sequence[str],
    threshold: float = 0.0,
    unknown: Optional[Tuple[int, str]] = None,
) -> bytes:
    """``vision_msgs/msg/LabelInfo``: class id ``i`` -> ``class_names[i]`` (the indices of the labels' image);
    ``threshold``: the confidence threshold of the inference (0: every pixel gets its best class; the unknown
    threshold, ``--unknown-below``, when it is on); ``unknown``: ``(its reserved id, "unknown")``, one more entry."""
    entries = list(enumerate(str(name) for name in class_names)) + ([unknown] if unknown is not None else [])
    if len(entries) > MAX_CLASSES:
        raise ValueError(f"LabelInfo holds at most {MAX_CLASSES} classes (uint16 ids), got {len(entries)}")
    message = _Cdr()
    message.header(stamp_ns, frame_id)
    message.u32(len(entries))
    for index, name in entries:
        message.u16(int(index))
        message.string(str(name))
    message.f32(threshold)
    return message.bytes()


_NOT_IN_A_NAME = re.compile(r"[^A-Za-z0-9_]")


def ros_name(name: str) -> str:
    """``name`` as one token of a ROS 2 topic name: letters, digits and ``_``, not starting with a digit
    (``my-clip.v2`` -> ``my_clip_v2``, ``0`` -> ``_0``)."""
    token = _NOT_IN_A_NAME.sub("_", str(name)) or "_"
    return f"_{token}" if token[0].isdigit() else token
