"""Objects for robots on the robot outputs (issue 81, item 2): with ``objects=True`` an MCAP file and a live Foxglove
server carry ``vision_msgs/msg/Detection2DArray`` on ``/<source>/objects`` and ``foxglove_msgs/msg/ImageAnnotations``
on ``/<source>/annotations``. Read back by readers that are not zsseg_rt's, each typing the messages from the schema
text the output carries: the MCAP project's ROS 2 decoder (``mcap_ros2.decoder``), rosbags (its own MCAP parser, a
type store built from the schema text with ``rosbags.typesys.get_types_from_msg``, its CDR deserializer), and a
client of Foxglove's WebSocket protocol (python_tests/robot_readers.py). Every decoded message must equal
``find_objects`` on the label map written; the controls (a box's corner written as its centre, a stamp one
nanosecond off, x and y swapped in the annotations) show each comparison failing."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple

import numpy as np
import pytest

pytest.importorskip("cv2")
pytest.importorskip("mcap")
pytest.importorskip("mcap_ros2")
from robot_readers import FoxgloveClient, decode_cdr  # noqa: E402

from zsseg_rt.outputs import object_messages  # noqa: E402
from zsseg_rt.outputs.object_messages import DETECTION_2D_ARRAY, IMAGE_ANNOTATIONS, OBJECT_SCHEMAS  # noqa: E402
from zsseg_rt.runtime.objects import find_objects  # noqa: E402
from zsseg_rt.runtime.result import Result, palette  # noqa: E402
from zsseg_rt.stream import McapSink  # noqa: E402

NAMES = ["floor", "door", "person", "cup"]
UNKNOWN = 255  # the unknown label's id with 4 classes (Result.unknown_id when unknown_below is set)
STAMP = 1_700_000_000.25  # the first frame's time (s); frame k at STAMP + k / 30
# The ROS 2 type hashes (RIHS01, what Iron and later record beside a topic's type) of the two types, computed by
# rosbags from the packages' own .msg files (vision_msgs 4.1.1; foxglove's ros_foxglove_msgs/ros2) with the
# geometry_msgs, std_msgs and builtin_interfaces of its ROS 2 Humble and Jazzy type stores (equal for both).
TYPE_HASHES = {
    DETECTION_2D_ARRAY: "RIHS01_214274120007f4a683866481336b70310268cfa107aebe9d594a6acf75bda968",
    IMAGE_ANNOTATIONS: "RIHS01_47c6c0891ba263ec1b20d9b785c4261d4bc41051cbcc01668130e36aa2dcaee3",
}


def _maps() -> List[np.ndarray]:
    """Hand-made 40x56 label maps: regions of one class touching diagonally (one object, 8-connectivity) and apart
    (two), regions of two classes touching, a region with a hole, one-pixel regions, regions on the image's border,
    unknown pixels; and a frame of unknown pixels only (no object)."""
    first = np.zeros((40, 56), np.int32)  # floor everywhere, around the rest
    first[2:14, 40:56] = 1  # a door on the right border
    first[5:9, 44:48] = 0  # with a hole of floor (a floor region of its own)
    first[20:26, 5:11] = 2  # a person ...
    first[26:30, 11:15] = 2  # ... touching itself at a corner: one region
    first[20:26, 15:21] = 3  # a cup touching the person's side
    first[0, 0] = 3  # a one-pixel cup in the corner
    first[39, 55] = 2  # a one-pixel person in the opposite corner
    first[33:37, 25:40] = UNKNOWN  # unknown pixels: no object
    second = first.copy()
    second[10:30, 25:30] = 2  # another person
    second[0:40, 52:56] = 1  # the door cut down the border
    third = np.full((40, 56), UNKNOWN, np.int32)
    return [first, second, third]


def _results() -> List[Result]:
    rng = np.random.default_rng(7)
    results = []
    for labels in _maps():
        scores = rng.random(labels.shape, dtype=np.float32)
        results.append(Result(labels=labels, scores=scores, class_names=list(NAMES), unknown_below=0.5))
    return results


def _expected(result: Result):
    return find_objects(result.labels, NAMES, scores=result.scores, unknown_id=UNKNOWN, min_area=0.0)


# ---- the readers ------------------------------------------------------------------------------------------------
def read_mcap_ros2_decoder(path: Path) -> List[Tuple[str, int, Any]]:
    """``(topic, log time, message)`` of every message, decoded by the MCAP project's ROS 2 decoder."""
    reader_module = pytest.importorskip("mcap.reader")
    decoder = pytest.importorskip("mcap_ros2.decoder")
    with open(path, "rb") as handle:
        reader = reader_module.make_reader(handle, decoder_factories=[decoder.DecoderFactory()])
        return [(c.topic, m.log_time, d) for _s, c, m, d in reader.iter_decoded_messages(log_time_order=True)]


def read_rosbags_typestore(path: Path) -> List[Tuple[str, int, Any]]:
    """The same by rosbags: its MCAP parser gives each connection's raw messages and schema text; a type store of
    its own per type (``get_types_from_msg`` on that text, nothing from rosbags' ROS distribution stores) and its CDR
    deserializer decode them."""
    highlevel = pytest.importorskip("rosbags.highlevel")
    typesys = pytest.importorskip("rosbags.typesys")
    found = []
    stores: Dict[str, Any] = {}
    with highlevel.AnyReader([Path(path)]) as reader:
        for connection, log_time, raw in reader.messages():
            if connection.msgtype not in stores:
                store = typesys.get_typestore(typesys.Stores.EMPTY)
                store.register(typesys.get_types_from_msg(connection.msgdef.data, connection.msgtype))
                stores[connection.msgtype] = store
            found.append(
                (connection.topic, log_time, stores[connection.msgtype].deserialize_cdr(raw, connection.msgtype))
            )
    return found


READERS = [read_mcap_ros2_decoder, read_rosbags_typestore]


def _stamp(time_msg: Any) -> int:
    return int(time_msg.sec) * 1_000_000_000 + int(time_msg.nanosec)


# ---- the comparisons ----------------------------------------------------------------------------------------------
def check_detections(message: Any, expected, stamp_ns: int, frame_id: str) -> None:
    """A decoded Detection2DArray against the objects found: header, then per detection its header, the class name
    and score, the box (``center - size / 2`` is the top-left corner x, y), the centroid in the pose, the index."""
    assert (_stamp(message.header.stamp), message.header.frame_id) == (stamp_ns, frame_id)
    assert len(message.detections) == len(expected)
    for index, (detection, found) in enumerate(zip(message.detections, expected)):
        assert (_stamp(detection.header.stamp), detection.header.frame_id) == (stamp_ns, frame_id)
        assert len(detection.results) == 1
        hypothesis, pose = detection.results[0].hypothesis, detection.results[0].pose.pose
        assert (hypothesis.class_id, hypothesis.score) == (found.name, found.score)
        box = detection.bbox
        corner = (box.center.position.x - box.size_x / 2, box.center.position.y - box.size_y / 2)
        assert (*corner, box.size_x, box.size_y) == found.box, (index, box, found.box)
        assert box.center.theta == 0.0
        assert (pose.position.x, pose.position.y, pose.position.z) == (*found.centroid, 0.0)
        assert (pose.orientation.x, pose.orientation.y, pose.orientation.z, pose.orientation.w) == (0, 0, 0, 1)
        assert not np.any(np.asarray(detection.results[0].pose.covariance))
        assert detection.id == str(index)


def check_annotations(message: Any, expected, stamp_ns: int, classes: int = len(NAMES)) -> None:
    """A decoded ImageAnnotations against the objects found: per object a closed line along its box's corners in
    its class's overlay colour, and its class name at the box's top-left corner (kept 14 px from the top edge); every
    timestamp the labels'."""
    colors = palette(classes)
    assert list(message.circles) == []
    assert len(message.points) == len(expected) and len(message.texts) == len(expected)
    for line, text, found in zip(message.points, message.texts, expected):
        x, y, w, h = found.box
        assert _stamp(line.timestamp) == stamp_ns and _stamp(text.timestamp) == stamp_ns
        assert line.type == object_messages.LINE_LOOP
        assert [(p.x, p.y) for p in line.points] == [(x, y), (x + w, y), (x + w, y + h), (x, y + h)]
        color = line.outline_color
        assert (color.r, color.g, color.b, color.a) == (*(colors[found.class_id] / 255.0), 1.0)
        assert line.thickness > 0 and line.fill_color.a == 0
        assert text.text == found.name
        assert (text.position.x, text.position.y) == (x, max(y, object_messages.FONT_SIZE))


def _write_mcap(path: Path, **options) -> List[Result]:
    results = _results()
    with McapSink(str(path), sources=["front cam"], frame_id="base_{source}", **options) as sink:
        for k, result in enumerate(results):
            sink.write_result(np.zeros((40, 56, 3), np.uint8), result, stamp=STAMP + k / 30)
    assert sink.objects_sent == sum(len(_expected(r)) for r in results)
    return results


def _check_file(path: Path, reader: Callable, results: List[Result]) -> None:
    messages = reader(path)
    topics = {topic for topic, _, _ in messages}
    assert topics == {f"/front_cam/{kind}" for kind in ("labels", "overlay", "label_info", "objects", "annotations")}
    labels = [(t, m) for topic, t, m in messages if topic == "/front_cam/labels"]
    objects = [(t, m) for topic, t, m in messages if topic == "/front_cam/objects"]
    annotations = [(t, m) for topic, t, m in messages if topic == "/front_cam/annotations"]
    assert len(labels) == len(objects) == len(annotations) == len(results)
    for (t_labels, image), (t_objects, array), (t_notes, notes), result in zip(labels, objects, annotations, results):
        stamp = _stamp(image.header.stamp)
        assert stamp == t_labels == t_objects == t_notes, "objects and annotations not at their labels' time"
        decoded = np.frombuffer(bytes(image.data), "<u2").reshape(image.height, image.width)
        assert np.array_equal(decoded, result.labels), "the labels differ from the map the objects come from"
        expected = _expected(result)
        check_detections(array, expected, stamp, image.header.frame_id)
        check_annotations(notes, expected, stamp)


@pytest.mark.parametrize("reader", READERS, ids=["mcap_ros2", "rosbags"])
def test_an_mcap_file_with_objects_decodes_to_find_objects(tmp_path, reader):
    """Three frames (touching regions, holes, one-pixel regions, the border, unknown pixels; a frame with nothing
    but unknown pixels: an empty array) decoded by each reader equal find_objects on the label map each frame's
    labels message holds, at the labels' stamp and frame_id."""
    path = tmp_path / "out.mcap"
    results = _write_mcap(path, objects=True, min_area=0.0)
    names = [[o.name for o in _expected(r)] for r in results]  # the maps' regions (a test of the maps themselves)
    assert names == [["floor"] * 2 + ["door"] + ["person"] * 2 + ["cup"] * 2] * 2 + [[]]
    _check_file(path, reader, results)


def _corner_as_center(original):
    def mutant(stamp_ns, frame_id, objects):  # the box's top-left corner written as its centre
        moved = [
            dataclasses.replace(o, box=(o.box[0] - o.box[2] / 2, o.box[1] - o.box[3] / 2, *o.box[2:])) for o in objects
        ]
        return original(stamp_ns, frame_id, moved)

    return mutant


def _stamp_off(original):
    def mutant(stamp_ns, *rest):  # one nanosecond after the labels
        return original(stamp_ns + 1, *rest)

    return mutant


def _x_y_swapped(original):
    def mutant(stamp_ns, objects, *rest):
        swapped = [dataclasses.replace(o, box=(o.box[1], o.box[0], o.box[3], o.box[2])) for o in objects]
        return original(stamp_ns, swapped, *rest)

    return mutant


@pytest.mark.parametrize(
    "encoder, mutant",
    [
        ("detection_2d_array", _corner_as_center),
        ("detection_2d_array", _stamp_off),
        ("image_annotations", _stamp_off),
        ("image_annotations", _x_y_swapped),
    ],
    ids=["corner-as-center", "objects-stamp-off", "annotations-stamp-off", "annotations-x-y-swapped"],
)
@pytest.mark.parametrize("reader", READERS, ids=["mcap_ros2", "rosbags"])
def test_controls_a_wrong_box_or_stamp_is_caught(tmp_path, monkeypatch, reader, encoder, mutant):
    """The test above fails on a writer whose boxes or stamps are wrong (the sink's encoder replaced by a mutant)."""
    monkeypatch.setattr(object_messages, encoder, mutant(getattr(object_messages, encoder)))
    path = tmp_path / "out.mcap"
    results = _write_mcap(path, objects=True, min_area=0.0)
    with pytest.raises(AssertionError):
        _check_file(path, reader, results)


def test_without_objects_nothing_changes(tmp_path):
    """objects off (the default): the same three topics and schemas as before, nothing of the objects'; on: the two
    schemas are the packages' types (their ROS 2 type hashes from the official .msg files)."""
    summary_reader = pytest.importorskip("mcap.reader")
    typesys = pytest.importorskip("rosbags.typesys")
    path = tmp_path / "off.mcap"
    results = _results()
    with McapSink(str(path), sources=["front"]) as sink:
        for k, result in enumerate(results):
            sink.write_result(np.zeros((40, 56, 3), np.uint8), result, stamp=STAMP + k / 30)
    assert sink.topics() == ["/front/labels", "/front/overlay", "/front/label_info"]
    assert "objects" not in sink.describe()
    with open(path, "rb") as handle:
        summary = summary_reader.make_reader(handle).get_summary()
    assert sorted(s.name for s in summary.schemas.values()) == sorted(
        ["sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage", "vision_msgs/msg/LabelInfo"]
    )
    assert sorted(c.topic for c in summary.channels.values()) == sorted(sink.topics())
    for name, definition in OBJECT_SCHEMAS.items():
        store = typesys.get_typestore(typesys.Stores.EMPTY)
        store.register(typesys.get_types_from_msg(definition.decode(), name))
        assert store.hash_rihs01(name) == TYPE_HASHES[name], name


def test_foxglove_advertises_the_object_schemas_and_a_viewer_decodes_them():
    """The live server advertises /<source>/objects and /<source>/annotations with the types' ros2msg schemas; a
    viewer subscribed to them decodes each frame's ImageAnnotations and Detection2DArray equal to find_objects, at
    the labels' stamp (the control: the same comparison on annotations with x and y swapped fails)."""
    pytest.importorskip("foxglove")
    from zsseg_rt.stream import FoxgloveSink

    results = _results()
    sink = FoxgloveSink(0, sources=["front"], frame_id="cam", objects=True, min_area=0.0)
    topics = ["/front/labels", "/front/objects", "/front/annotations"]
    image = np.zeros((40, 56, 3), np.uint8)
    try:
        with FoxgloveClient(sink.url) as viewer:
            channels = viewer.wait_for_channels([*topics, "/front/overlay", "/front/label_info"])
            for topic, name in (("/front/objects", DETECTION_2D_ARRAY), ("/front/annotations", IMAGE_ANNOTATIONS)):
                channel = channels[topic]
                assert channel["schemaName"] == name
                assert (channel["schemaEncoding"], channel["encoding"]) == ("ros2msg", "cdr")
                assert channel["schema"].encode() == OBJECT_SCHEMAS[name]
            viewer.subscribe(topics)
            deadline = time.monotonic() + 60
            while not all(sink.subscribed(topic) for topic in topics):
                assert time.monotonic() < deadline, "the viewer's subscriptions did not arrive within 60 s"
                viewer.drain(0.05)
            for k, result in enumerate(results):
                sink.write_result(image, result, stamp=STAMP + k / 30)
            received = {topic: viewer.wait_for_messages(topic, len(results)) for topic in topics}
    finally:
        sink.close()
    for k, result in enumerate(results):
        log_time, payload = received["/front/labels"][k]
        stamp = _stamp(decode_cdr(channels["/front/labels"], payload).header.stamp)
        assert stamp == log_time == int(round((STAMP + k / 30) * 1e9))
        expected = _expected(result)
        notes_time, notes = received["/front/annotations"][k]
        objects_time, objects = received["/front/objects"][k]
        assert notes_time == objects_time == stamp
        check_annotations(decode_cdr(channels["/front/annotations"], notes), expected, stamp)
        check_detections(decode_cdr(channels["/front/objects"], objects), expected, stamp, "cam")
    mutant = _x_y_swapped(object_messages.image_annotations)(stamp, _expected(results[0]), palette(len(NAMES)))
    with pytest.raises(AssertionError):
        check_annotations(decode_cdr(channels["/front/annotations"], mutant), _expected(results[0]), stamp)


def test_a_session_with_objects_publishes_the_objects_its_loop_hands_out(tmp_path, tiny_bundle):
    """``Session(..., objects=True, outputs=[out.mcap])`` (``zsseg camera --objects -o out.mcap``): each frame's
    Detection2DArray and ImageAnnotations equal the objects the app's loop receives (``item.objects``), whose boxes
    and areas are find_objects' on the label map the file's labels message holds; objects off: no such topic."""
    from stream_fakes import write_band_clip

    from zsseg_rt.stream import Session

    clip = write_band_clip(tmp_path / "clip.avi", frames=3, fps=10.0, size=(64, 48))
    handed = []
    with Session([f"front={clip}"], tiny_bundle, "a,b", outputs=[str(tmp_path / "on.mcap")], objects=True) as session:
        for item in session:
            handed.append(item.objects)
    assert session.exit_code == 0 and len(handed) == 3 and all(found is not None for found in handed)
    assert sum(len(found) for found in handed) > 0, "the clip's frames gave no object: nothing to compare"
    messages = read_mcap_ros2_decoder(tmp_path / "on.mcap")
    labels = [m for topic, _, m in messages if topic == "/front/labels"]
    arrays = [m for topic, _, m in messages if topic == "/front/objects"]
    notes = [m for topic, _, m in messages if topic == "/front/annotations"]
    assert len(labels) == len(arrays) == len(notes) == 3
    for image, array, note, found in zip(labels, arrays, notes, handed):
        stamp, frame_labels = _stamp(image.header.stamp), np.frombuffer(bytes(image.data), "<u2")
        reference = find_objects(frame_labels.reshape(image.height, image.width), ["a", "b"])
        assert [(o.box, o.area, o.centroid) for o in found] == [(o.box, o.area, o.centroid) for o in reference]
        check_detections(array, found, stamp, "front")
        check_annotations(note, found, stamp, classes=2)
    Session([f"front={clip}"], tiny_bundle, "a,b", outputs=[str(tmp_path / "off.mcap")]).run()
    assert {topic for topic, _, _ in read_mcap_ros2_decoder(tmp_path / "off.mcap")} == {
        "/front/labels",
        "/front/overlay",
        "/front/label_info",
    }
