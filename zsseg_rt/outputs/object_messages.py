"""A frame's objects (:mod:`zsseg_rt.runtime.objects`: each class's connected regions, their boxes, scores and
centroids) as ROS 2 messages, in the wire format and with the schemas of :mod:`zsseg_rt.outputs.ros_messages`:

- ``vision_msgs/msg/Detection2DArray`` (vision_msgs 4.x: ROS 2 Humble, Jazzy and later), the robot's objects
  (:func:`detection_2d_array`): one ``Detection2D`` per object, its header the array's (the labels' stamp and
  frame_id); ``results[0].hypothesis``: ``class_id`` the class *name* (vision_msgs 4's ``class_id`` is a string:
  the name, so a subscriber needs no LabelInfo to read it), ``score`` the mean of the class's score over the region;
  ``results[0].pose.pose.position``: the region's centroid (x, y in pixels, z 0; its centre of mass, one of the
  reference points the message's comment names; orientation the identity, covariance 0: not estimated); ``bbox``:
  ``center.position`` the box's centre and ``size_x`` / ``size_y`` its width and height, in pixels, with pixel
  ``(col, row)`` covering ``[col, col + 1) x [row, row + 1)`` (the box ``x, y, w, h`` of the pixels ``x..x+w-1``
  has its centre at ``(x + w / 2, y + h / 2)``: ``center - size / 2`` is its top-left corner ``(x, y)``), ``theta``
  0; ``id``: the object's track id with tracking (``--track``: ``RegionObject.track_id``, the same for the same
  object from frame to frame), else its index in the frame ("0", "1", ...; per frame, not a track);
- ``foxglove_msgs/msg/ImageAnnotations`` (Foxglove's schema as a ROS 2 message, ``ros_foxglove_msgs``), what
  Foxglove's Image panel draws over ``/<source>/overlay`` (:func:`image_annotations`): per object a closed line
  (``PointsAnnotation``, ``LINE_LOOP``) along its box's four corners in the class's overlay colour, and a
  ``TextAnnotation`` with the class name at the box's top-left corner (tracked: coloured by track, one of
  :data:`TRACK_COLORS` colours, and its text ``person #7``, the name and the track id); every annotation stamped with the labels'
  stamp (Foxglove pairs annotations with the image of the same time). The same schema-and-CDR encoding as every
  other topic of the outputs: a ``ros2``-profile MCAP file holds ROS 2 messages only, and ``ros2 bag`` plays it.

The definitions are the packages' ``.msg`` files without their comments (vision_msgs 4.1.1, common_interfaces'
geometry_msgs, foxglove's ``ros_foxglove_msgs/ros2``), each type a message uses after a separator line and ``MSG:``,
as ``ros2 bag record`` writes them.
"""

from __future__ import annotations

import functools
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .ros_messages import _DEPENDENCIES, _Cdr, _definition

__all__ = [
    "DETECTION_2D_ARRAY",
    "FONT_SIZE",
    "IMAGE_ANNOTATIONS",
    "OBJECT_SCHEMAS",
    "TRACK_COLORS",
    "box_corners",
    "detection_2d_array",
    "image_annotations",
]

DETECTION_2D_ARRAY = "vision_msgs/msg/Detection2DArray"
IMAGE_ANNOTATIONS = "foxglove_msgs/msg/ImageAnnotations"
FONT_SIZE = 14.0  # pixels, of the class name
LINE_WIDTH = 2.0  # pixels, of the box
LINE_LOOP = 2  # foxglove_msgs/PointsAnnotation.LINE_LOOP
TRACK_COLORS = 64  # tracked objects' annotations: the overlay's palette of 64 colours, by track id modulo 64

_VISION = [
    ("vision_msgs/Detection2D", "std_msgs/Header header\nObjectHypothesisWithPose[] results\nBoundingBox2D bbox\n"
     "string id\n"),
    ("vision_msgs/ObjectHypothesisWithPose", "ObjectHypothesis hypothesis\ngeometry_msgs/PoseWithCovariance pose\n"),
    ("vision_msgs/ObjectHypothesis", "string class_id\nfloat64 score\n"),
    ("geometry_msgs/PoseWithCovariance", "Pose pose\nfloat64[36] covariance\n"),
    ("geometry_msgs/Pose", "Point position\nQuaternion orientation\n"),
    ("geometry_msgs/Point", "float64 x\nfloat64 y\nfloat64 z\n"),
    ("geometry_msgs/Quaternion", "float64 x 0\nfloat64 y 0\nfloat64 z 0\nfloat64 w 1\n"),
    ("vision_msgs/BoundingBox2D", "vision_msgs/Pose2D center\nfloat64 size_x\nfloat64 size_y\n"),
    ("vision_msgs/Pose2D", "vision_msgs/Point2D position\nfloat64 theta\n"),
    ("vision_msgs/Point2D", "float64 x\nfloat64 y\n"),
]  # fmt: skip
_FOXGLOVE = [
    ("foxglove_msgs/CircleAnnotation", "builtin_interfaces/Time timestamp\nfoxglove_msgs/Point2 position\n"
     "float64 diameter\nfloat64 thickness\nfoxglove_msgs/Color fill_color\nfoxglove_msgs/Color outline_color\n"),
    ("foxglove_msgs/PointsAnnotation", "builtin_interfaces/Time timestamp\nuint8 UNKNOWN=0\nuint8 POINTS=1\n"
     "uint8 LINE_LOOP=2\nuint8 LINE_STRIP=3\nuint8 LINE_LIST=4\nuint8 type\nfoxglove_msgs/Point2[] points\n"
     "foxglove_msgs/Color outline_color\nfoxglove_msgs/Color[] outline_colors\nfoxglove_msgs/Color fill_color\n"
     "float64 thickness\n"),
    ("foxglove_msgs/TextAnnotation", "builtin_interfaces/Time timestamp\nfoxglove_msgs/Point2 position\n"
     "string text\nfloat64 font_size\nfoxglove_msgs/Color text_color\nfoxglove_msgs/Color background_color\n"),
    ("foxglove_msgs/Point2", "float64 x\nfloat64 y\n"),
    ("foxglove_msgs/Color", "float64 r\nfloat64 g\nfloat64 b\nfloat64 a\n"),
    ("builtin_interfaces/Time", "int32 sec\nuint32 nanosec\n"),
]  # fmt: skip

OBJECT_SCHEMAS: Dict[str, bytes] = {
    DETECTION_2D_ARRAY: _definition("std_msgs/Header header\nDetection2D[] detections\n", _DEPENDENCIES + _VISION),
    IMAGE_ANNOTATIONS: _definition(
        "foxglove_msgs/CircleAnnotation[] circles\nfoxglove_msgs/PointsAnnotation[] points\n"
        "foxglove_msgs/TextAnnotation[] texts\n",
        _FOXGLOVE,
    ),
}

_POSE_REST = (0.0, 0.0, 0.0, 0.0, 1.0) + (0.0,) * 36  # z, the identity orientation, the covariance (not estimated)
_WHITE = (1.0, 1.0, 1.0, 1.0)
_CLEAR = (0.0, 0.0, 0.0, 0.0)


@functools.lru_cache(maxsize=1)
def _track_colors() -> np.ndarray:
    from zsseg_rt.runtime.result import palette

    return palette(TRACK_COLORS)


def box_corners(box: Sequence[int]) -> List[Tuple[float, float]]:
    """The four corners of the box ``x, y, w, h`` (the pixels ``x..x+w-1``, ``y..y+h-1``) in image coordinates
    whose origin is the top-left corner of the top-left pixel: top-left, top-right, bottom-right, bottom-left."""
    x, y, w, h = (float(v) for v in box)
    return [(x, y), (x + w, y), (x + w, y + h), (x, y + h)]


def detection_2d_array(stamp_ns: int, frame_id: str, objects: Sequence[Any]) -> bytes:
    """``vision_msgs/msg/Detection2DArray`` of a frame's ``objects`` (``RegionObject``: ``name``, ``score``,
    ``box``, ``centroid``), in their order (see the module for each field)."""
    message = _Cdr()
    message.header(stamp_ns, frame_id)
    message.u32(len(objects))
    for index, found in enumerate(objects):
        x, y, w, h = (float(v) for v in found.box)
        message.header(stamp_ns, frame_id)
        message.u32(1)  # results: one hypothesis
        message.string(str(found.name))
        message.f64s(float(found.score))
        message.f64s(float(found.centroid[0]), float(found.centroid[1]), *_POSE_REST)
        message.f64s(x + w / 2.0, y + h / 2.0, 0.0, w, h)  # bbox: center.position x, y; theta; size_x, size_y
        track = getattr(found, "track_id", None)
        message.string(str(index if track is None else track))
    return message.bytes()


def image_annotations(
    stamp_ns: int, objects: Sequence[Any], colors: Optional[np.ndarray] = None, font_size: float = FONT_SIZE
) -> bytes:
    """``foxglove_msgs/msg/ImageAnnotations`` of a frame's ``objects``: per object its box as a closed line and its
    class name (see the module). ``colors``: ``[classes, 3]`` uint8 RGB by class id (the overlay's palette); white
    without it. A tracked object (``track_id``) is coloured by its track and named with its id."""
    tracks = _track_colors()
    message = _Cdr()
    message.u32(0)  # circles
    message.u32(len(objects))
    outlines = []
    for found in objects:
        track = getattr(found, "track_id", None)
        color = colors[int(found.class_id)] if track is None and colors is not None else None
        color = tracks[int(track) % TRACK_COLORS] if track is not None else color
        outline = _WHITE if color is None else (*(float(c) / 255.0 for c in color), 1.0)
        outlines.append(outline)
        message.time(stamp_ns)
        message.u8(LINE_LOOP)
        message.u32(4)
        message.f64s(*(value for corner in box_corners(found.box) for value in corner))
        message.f64s(*outline)  # outline_color
        message.u32(0)  # outline_colors: one colour for the whole line
        message.f64s(*_CLEAR, LINE_WIDTH)  # fill_color (none), thickness
    message.u32(len(objects))
    for found, outline in zip(objects, outlines):
        x, y = float(found.box[0]), float(found.box[1])
        message.time(stamp_ns)
        message.f64s(x, max(y, float(font_size)))  # the text's bottom-left: on the box's top edge, inside the image
        track = getattr(found, "track_id", None)
        message.string(str(found.name) if track is None else f"{found.name} #{track}")
        message.f64s(float(font_size), *_WHITE, *outline[:3], 0.7)  # font_size, text_color, background_color
    return message.bytes()
