"""The robot outputs (issue 74): ROS 2 messages in an MCAP file (``McapSink``) and served live over Foxglove's
WebSocket protocol (``FoxgloveSink``), read back by readers that are not zsseg_rt's (python_tests/robot_readers.py:
the MCAP project's ROS 2 reader, rosbags' AnyReader, a WebSocket client of the protocol). The command line's side
(``zsseg camera -o out.mcap / foxglove://``, signals, kill -9, a full disk): python_tests/cli/test_cli_camera_robots.py.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")
pytest.importorskip("mcap")
pytest.importorskip("mcap_ros2")
from disk_faults import FullDiskOs  # noqa: E402
from net_support import listening_addresses  # noqa: E402
from robot_readers import FoxgloveClient, decode_cdr, read_mcap_ros2, read_partial, read_rosbags, vocabulary_at  # noqa: E402
from stream_fakes import FakeEngine, numbered_frame  # noqa: E402

from zsseg_rt.io_safety import OutputWriteError  # noqa: E402
from zsseg_rt.outputs.labels import read_labels  # noqa: E402
from zsseg_rt.outputs.ros_messages import ros_name  # noqa: E402
from zsseg_rt.stream import (  # noqa: E402
    CallableSource,
    LabelFolderSink,
    McapSink,
    MultiStreamRunner,
    SinkError,
    open_sink,
    output_kind,
)
from zsseg_rt.stream.loop.capture import Frame  # noqa: E402

READERS = [read_mcap_ros2, read_rosbags]


def _result(labels, names):
    labels = np.asarray(labels, dtype=np.int32)
    return SimpleNamespace(
        labels=labels,
        class_names=list(names),
        overlay=lambda image: np.ascontiguousarray(image[:, ::-1]),  # an overlay the test can recognise
    )


def _by_topic(messages, topic):
    return [m for m in messages if m.topic == topic]


@pytest.mark.parametrize("reader", READERS, ids=["mcap_ros2", "rosbags"])
def test_a_loop_of_ones_own_writes_messages_both_readers_decode(tmp_path, reader):
    """A user's loop (frames and results, stamps given): labels bit for bit (values past 8 bits included), stamps,
    frame_id, the overlay as a JPEG of the frame's size, LabelInfo at the start and at the vocabulary change only."""
    path = tmp_path / "out.mcap"
    rng = np.random.default_rng(0)
    written = []
    with McapSink(str(path), sources=["front cam"], frame_id="base_{source}") as sink:
        for k in range(5):
            names = [f"c{i}" for i in range(700)] if k < 3 else ["wall", "floor"]
            labels = rng.integers(0, len(names), (37, 53))
            image = np.full((37, 53, 3), 10 * k, np.uint8)
            sink.write_result(image, _result(labels, names), stamp=1_700_000_000.25 + k / 30)
            written.append((labels, names))
    assert not (tmp_path / "out.partial.mcap").exists()
    messages = reader(path)
    topics = {m.topic for m in messages}
    assert topics == {"/front_cam/labels", "/front_cam/overlay", "/front_cam/label_info"}, topics
    labels = _by_topic(messages, "/front_cam/labels")
    assert len(labels) == 5
    for message, (expected, _) in zip(labels, written):
        assert message.encoding == "mono16" and message.labels.dtype == np.uint16
        assert np.array_equal(message.labels, expected), "the labels differ from what was written"
        assert message.frame_id == "base_front_cam" and message.log_time == message.stamp
    stamps = [m.stamp for m in labels]
    assert stamps == [int(round((1_700_000_000.25 + k / 30) * 1e9)) for k in range(5)]
    infos = _by_topic(messages, "/front_cam/label_info")
    assert [len(m.classes) for m in infos] == [700, 2] and infos[1].classes == ["wall", "floor"]
    assert [m.stamp for m in infos] == [stamps[0], stamps[3]]  # with the first labels of each vocabulary
    overlays = _by_topic(messages, "/front_cam/overlay")
    assert [m.encoding for m in overlays] == ["jpeg"] * 5
    decoded = cv2.imdecode(np.frombuffer(overlays[4].data, np.uint8), cv2.IMREAD_COLOR)
    assert decoded.shape == (37, 53, 3) and abs(int(decoded.mean()) - 40) <= 2


def test_the_loop_writes_the_maps_of_labels_out_topics_per_source_and_the_vocabulary_change(tmp_path):
    """Two sources through the stream loop into one MCAP file and a --labels-out folder each; the vocabulary changes
    once both sources have had a result and before either yields its fourth frame (an event, not thread timing, fixes
    the point): every frame's labels equal its 16-bit PNG map bit for bit, the LabelInfo in force at each frame names
    the classes classes.json says its map indexes, and the stamps strictly increase, with both readers."""
    engine = FakeEngine(("sky", "road"))
    sizes = {"front": (48, 64), "back": (30, 40)}
    changed = threading.Event()

    def frames(size):
        for i in range(7):
            if i == 3:  # each source holds its fourth frame until the change is made (a hang guard, not a timing)
                assert changed.wait(120), "the vocabulary change was never made"
            yield numbered_frame(i, size)

    sources = [CallableSource(lambda size=size: frames(size), live=False, name=name) for name, size in sizes.items()]
    mcap = McapSink(str(tmp_path / "out.mcap"), sources=list(sizes))
    folders = {name: tmp_path / f"labels_{name}" for name in sizes}
    box = {}
    seen = set()

    def change_after_the_third(frame, _result, _stats):
        seen.add(frame.stream)
        if seen == {0, 1} and not changed.is_set():  # both sources have a frame under the first vocabulary
            box["runner"].set_classes(["sky", "road", "tree"])  # applied before the next step
            changed.set()

    runner = box["runner"] = MultiStreamRunner(
        engine,
        sources,
        [[LabelFolderSink(str(folders[name]))] for name in sizes],
        shared_sinks=[mcap],
        names=list(sizes),
        drop_stale=False,
        on_result=change_after_the_third,
    )
    runner.run(handle_signals=False)
    for reader in READERS:
        messages = reader(tmp_path / "out.mcap")
        for name in sizes:
            labels = _by_topic(messages, f"/{name}/labels")
            assert len(labels) == 7, (reader.__name__, name, len(labels))
            with open(folders[name] / "classes.json", encoding="utf-8") as handle:
                vocabularies = json.load(handle)["vocabularies"]
            assert len(vocabularies) == 2, vocabularies  # the change reached this source too
            in_force = vocabulary_at(messages, name)
            for index, message in enumerate(labels):
                assert np.array_equal(message.labels, read_labels(str(folders[name]), index)), (name, index)
                expected = [v for v in vocabularies if v["first_frame"] <= index][-1]["classes"]
                assert in_force[index] == (message.stamp, expected), (reader.__name__, name, index)
            stamps = [m.stamp for m in labels]
            assert all(a < b for a, b in zip(stamps, stamps[1:])), stamps
            assert len(_by_topic(messages, f"/{name}/label_info")) == 2


def _frame(index, pts=None, captured=0.0):
    return Frame(np.zeros((8, 8, 3), np.uint8), index, 0.0, capture_time=captured, pts=pts)


def test_stamps_follow_the_presentation_time_and_always_increase(tmp_path):
    """A file's frames are stamped with their presentation time; read again (--loop) the stamps go on after the last
    one, a frame interval later; a live frame's stamp is its time of capture, and a clock stepping back does not
    make a stamp repeat or go back."""
    path = tmp_path / "out.mcap"
    result = _result(np.zeros((8, 8)), ["a", "b"])
    with McapSink(str(path), overlay=False) as sink:
        for index, pts in enumerate([0.0, 0.1, 0.2, 0.0, 0.1]):  # the file, then its start again
            sink.write_result(_frame(index, pts=pts), result)
        for index, captured in enumerate([1000.0, 1000.5, 999.0, 1001.0]):  # a wall clock stepping back once
            sink.write_result(_frame(index, captured=captured), result, source="live")
    messages = read_mcap_ros2(path)
    file_stamps = [m.stamp for m in _by_topic(messages, "/camera/labels")]
    assert file_stamps == [0, 100_000_000, 200_000_000, 300_000_000, 400_000_000]
    live = [m.stamp for m in _by_topic(messages, "/live/labels")]
    assert live == [1000_000_000_000, 1000_500_000_000, 1001_000_000_000, 1003_000_000_000], live


def test_ros_names_and_the_output_table():
    assert [ros_name(n) for n in ("clip", "my-clip.v2", "0", "front cam")] == ["clip", "my_clip_v2", "_0", "front_cam"]
    assert [output_kind(s).name for s in ("out.mcap", "foxglove://127.0.0.1:8765", "out.mp4", "frames/", "null")] == [
        "mcap",
        "foxglove",
        "video",
        "frames",
        "null",
    ]
    assert output_kind("labels/", "--labels-out").name == "labels" and output_kind("out.xyz") is None
    with pytest.raises(SinkError, match=r"foxglove://HOST:PORT with a port in 0..65535, got 'foxglove://h:99999'"):
        open_sink("foxglove://h:99999")


def test_an_existing_file_is_refused_in_pythons_words_and_replaced_with_overwrite(tmp_path):
    path = tmp_path / "out.mcap"
    path.write_bytes(b"old")
    with pytest.raises(OSError, match=r"'.*out.mcap' exists already: pass overwrite=True to replace it"):
        McapSink(str(path))
    with McapSink(str(path), overwrite=True) as sink:
        sink.write_result(np.zeros((4, 4, 3), np.uint8), _result(np.ones((4, 4)), ["a", "b"]), stamp=1.0)
        assert path.read_bytes() == b"old"  # replaced only when complete
    assert len(read_mcap_ros2(path)) == 3


@pytest.mark.parametrize("budget", [None, 60_000], ids=["control", "full_disk"])
def test_a_full_disk_stops_with_one_line_and_keeps_the_complete_chunks(tmp_path, monkeypatch, budget):
    """The disk fills up mid-file: the write raises OutputWriteError naming the partial file, the old file is not
    replaced, and the partial file reads up to its last complete chunk (every message there decodes: labels bit for
    bit). The control: the same writes with room finish a whole file."""
    from zsseg_rt.outputs import mcap_sink, video_writers

    disk = FullDiskOs(budget=budget or 10**12, matches=lambda p: p.endswith(".partial.mcap"))
    monkeypatch.setattr(video_writers, "os", disk)
    monkeypatch.setattr(mcap_sink, "CHUNK_BYTES", 1)  # a chunk per message: the cut falls between complete chunks
    path, partial = tmp_path / "out.mcap", tmp_path / "out.partial.mcap"
    path.write_bytes(b"the old file")
    rng = np.random.default_rng(1)
    written = []
    sink = McapSink(str(path), overwrite=True, overlay=False)
    try:
        for k in range(40):
            labels = rng.integers(0, 250, (60, 80))  # noise: zstd cannot shrink it much
            sink.write_result(np.zeros((60, 80, 3), np.uint8), _result(labels, ["x"] * 250), stamp=float(k))
            written.append(labels)
        sink.close()
    except OutputWriteError as exc:
        assert budget is not None, exc
        sink.abort()
        text = str(exc)
        assert "\n" not in text and exc.errno == errno.ENOSPC
        assert text.startswith(f"cannot write {str(partial)!r}: No space left on device (after "), text
        assert f"{str(path)!r} was not replaced" in text and "up to its last complete chunk" in text, text
        assert path.read_bytes() == b"the old file"
        found, stopped = read_partial(partial)
        labels = _by_topic(found, "/camera/labels")
        assert stopped is not None and 1 <= len(labels) < len(written) + 1, (len(labels), stopped)
        assert all(np.array_equal(m.labels, written[i]) for i, m in enumerate(labels))
        return
    assert budget is None, "the disk never filled up"
    assert not partial.exists() and len(_by_topic(read_mcap_ros2(path), "/camera/labels")) == 40


def test_without_an_overlay_topic_the_loop_draws_no_overlay(tmp_path):
    """Labels only (overlay=False): the stream loop never draws an overlay (it is drawn only for a sink that takes it)."""
    engine = FakeEngine()
    source = CallableSource(lambda: (numbered_frame(i) for i in range(4)), live=False)
    sink = McapSink(str(tmp_path / "out.mcap"), overlay=False)
    runner = MultiStreamRunner(engine, [source], [[sink]], drop_stale=False)
    drawn = []
    runner.render = lambda *args: drawn.append(1)  # type: ignore[method-assign]
    runner.run(handle_signals=False)
    assert drawn == [] and sink.frames == 4
    assert {m.topic for m in read_mcap_ros2(tmp_path / "out.mcap")} == {"/camera/labels", "/camera/label_info"}


def test_foxglove_serves_every_viewer_and_encodes_nothing_for_none():
    """Two viewers connect with the protocol's subprotocol: each source's channels are advertised with their ros2msg
    schemas; frames written while nobody subscribes are not encoded (no message sent); after subscribing, each viewer
    receives the labels (decoded: bit for bit) and the vocabulary (LabelInfo sent again to a late subscriber); after
    close() the port is free (the server stopped; its threads are the SDK's runtime's, not Python's)."""
    pytest.importorskip("foxglove")
    from zsseg_rt.stream import FoxgloveSink

    sink = FoxgloveSink(0, sources=["front", "back"], frame_id="cam")
    labels = (np.arange(12 * 9).reshape(9, 12) % 300).astype(np.int32)
    result = _result(labels, [f"k{i}" for i in range(300)])
    image = np.zeros((9, 12, 3), np.uint8)
    try:
        with FoxgloveClient(sink.url) as first, FoxgloveClient(sink.url) as second:
            topics = ["/front/labels", "/front/overlay", "/front/label_info", "/back/labels", "/back/label_info"]
            channels = first.wait_for_channels(topics)
            second.wait_for_channels(topics)
            assert channels["/front/labels"]["schemaName"] == "sensor_msgs/msg/Image"
            assert channels["/front/label_info"]["schemaName"] == "vision_msgs/msg/LabelInfo"
            for k in range(3):
                sink.write_result(image, result, source="front")
            assert sink.frames == 3 and sink.messages == 0  # nobody subscribed: nothing encoded
            for viewer in (first, second):
                viewer.subscribe(["/front/labels", "/front/label_info"])
            deadline = time.monotonic() + 60
            while not all(v.count("/front/labels") and v.count("/front/label_info") for v in (first, second)):
                assert time.monotonic() < deadline, "the viewers received no labels within 60 s of subscribing"
                sink.write_result(image, result, source="front")  # until both subscriptions have arrived
                for viewer in (first, second):
                    viewer.drain(0.05)
            for viewer in (first, second):
                (log_time, payload), *_ = viewer.wait_for_messages("/front/labels", 1)
                message = decode_cdr(channels["/front/labels"], payload)
                assert message.encoding == "mono16" and message.header.frame_id == "cam"
                assert np.array_equal(np.frombuffer(message.data, "<u2").reshape(9, 12), labels)
                assert log_time == message.header.stamp.sec * 10**9 + message.header.stamp.nanosec
                (_, info), *_ = viewer.wait_for_messages("/front/label_info", 1)
                assert [c.class_name for c in decode_cdr(channels["/front/label_info"], info).class_map][:2] == [
                    "k0",
                    "k1",
                ]
    finally:
        sink.close()
    # nothing of this process listens there any more (read from the kernel: binding the port again to show it free
    # could meet another process of the run that took it meanwhile; issue 91)
    assert not [a for a in listening_addresses(os.getpid()) if a[1] == sink.port]


def test_a_port_in_use_is_refused_in_one_line():
    pytest.importorskip("foxglove")
    from zsseg_rt.stream import FoxgloveSink

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(SinkError) as refused:
            FoxgloveSink(port)
    text = str(refused.value)
    said = f"cannot serve Foxglove on 127.0.0.1:{port} (Failed to bind port: Address already in use (os error 98)); "
    assert text == said + "choose another port: outputs=['foxglove://127.0.0.1:PORT']", text  # a script's words
    assert refused.value.cli == said + "choose another port: -o foxglove://127.0.0.1:PORT"  # the command line's
    free = FoxgloveSink(0)  # the control: a free port (the kernel's choice, never one probed earlier) is served
    assert ("127.0.0.1", free.port) in listening_addresses(os.getpid())
    free.close()
