"""Readers of what the robot outputs wrote, none of them zsseg_rt's: the MCAP project's ROS 2 reader
(``mcap_ros2.reader``), ``rosbags``' AnyReader (its own MCAP parser and CDR decoder, typed from the schemas the file
embeds), the MCAP project's non-seeking reader for a partial file (what a killed run left), and a client of
Foxglove's WebSocket protocol (subprotocol ``foxglove.sdk.v1``, with the ``websockets`` package)."""

from __future__ import annotations

import json
import struct
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import pytest

__all__ = ["FoxgloveClient", "Message", "read_mcap_ros2", "read_partial", "read_rosbags", "vocabulary_at"]


class Message:
    """A message read back: its topic, the log time (ns), the header's stamp (ns) and frame_id, and for an Image its
    pixels (``labels``: ``[H, W]`` uint16 of mono16), for a LabelInfo its ``classes`` (names by class id)."""

    def __init__(self, topic: str, log_time: int, msg: Any):
        self.topic = topic
        self.log_time = int(log_time)
        stamp = msg.header.stamp
        self.stamp = int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)
        self.frame_id = str(msg.header.frame_id)
        self.encoding = getattr(msg, "encoding", None) or getattr(msg, "format", None)
        self.labels: Optional[np.ndarray] = None
        self.data: bytes = b""
        self.classes: Optional[List[str]] = None
        if hasattr(msg, "class_map"):
            ids = [int(entry.class_id) for entry in msg.class_map]
            assert ids == list(range(len(ids))), f"class ids are not 0..n-1: {ids}"
            self.classes = [str(entry.class_name) for entry in msg.class_map]
        elif hasattr(msg, "data"):
            self.data = bytes(
                np.asarray(msg.data, dtype=np.uint8).tobytes() if not isinstance(msg.data, bytes) else msg.data
            )
            if self.encoding == "mono16":
                assert msg.step == 2 * msg.width and msg.is_bigendian == 0, (msg.step, msg.width, msg.is_bigendian)
                self.labels = np.frombuffer(self.data, dtype="<u2").reshape(msg.height, msg.width)


def read_mcap_ros2(path) -> List[Message]:
    """Every message of a finished MCAP file, in log-time order, by the MCAP project's ROS 2 reader."""
    reader = pytest.importorskip("mcap_ros2.reader")
    return [Message(m.channel.topic, m.log_time_ns, m.ros_msg) for m in reader.read_ros2_messages(str(path))]


def read_rosbags(path) -> List[Message]:
    """Every message of a finished MCAP file, in log-time order, by rosbags' AnyReader."""
    highlevel = pytest.importorskip("rosbags.highlevel")
    found = []
    with highlevel.AnyReader([Path(path)]) as reader:
        for connection, log_time, raw in reader.messages():
            found.append(Message(connection.topic, log_time, reader.deserialize(raw, connection.msgtype)))
    return found


def read_partial(path) -> Tuple[List[Message], Optional[str]]:
    """The messages of a partial MCAP file (no summary, no footer; maybe cut inside a chunk), in file order, read
    sequentially up to where it stops; and why it stopped (None: the file is whole)."""
    reader_module = pytest.importorskip("mcap.reader")
    decoder = pytest.importorskip("mcap_ros2.decoder")
    found: List[Message] = []
    with open(path, "rb") as handle:
        reader = reader_module.NonSeekingReader(handle, decoder_factories=[decoder.DecoderFactory()])
        try:
            for _schema, channel, message, decoded in reader.iter_decoded_messages(log_time_order=False):
                found.append(Message(channel.topic, message.log_time, decoded))
        except Exception as exc:  # noqa: BLE001 - the reader's error at the cut: EndOfFile, a short record
            return found, f"{type(exc).__name__}: {exc}"
    return found, None


def vocabulary_at(messages: List[Message], source: str) -> List[Tuple[int, List[str]]]:
    """``(labels stamp, the classes in force)`` of each labels message of ``source``: the last LabelInfo of that
    source stamped at or before it (a LabelInfo and the labels it describes share their stamp)."""
    current: Optional[List[str]] = None
    out = []
    mine = [m for m in messages if m.topic in (f"/{source}/label_info", f"/{source}/labels")]
    for message in sorted(mine, key=lambda m: (m.stamp, m.topic.endswith("/labels"))):
        if message.topic == f"/{source}/label_info":
            current = message.classes
        elif message.topic == f"/{source}/labels":
            assert current is not None, f"labels of /{source} at {message.stamp} before any LabelInfo"
            out.append((message.stamp, current))
    return out


class FoxgloveClient:
    """A viewer speaking Foxglove's WebSocket protocol: it connects (subprotocol ``foxglove.sdk.v1``), collects the
    advertised channels, subscribes, and decodes the binary message data frames (opcode 1: subscription id, log
    time, payload). Every wait is bounded and fails with a message saying what did not come."""

    def __init__(self, url: str, timeout: float = 60.0):
        client = pytest.importorskip("websockets.sync.client")
        self.timeout = timeout
        self._connection = client.connect(url, subprotocols=["foxglove.sdk.v1"], open_timeout=timeout)
        self.socket = self._connection.__enter__()
        assert self.socket.subprotocol == "foxglove.sdk.v1", self.socket.subprotocol
        self.channels: Dict[str, dict] = {}  # topic -> the advertised channel
        self.subscriptions: Dict[int, str] = {}  # subscription id -> topic
        self.received: List[Tuple[str, int, bytes]] = []  # (topic, log time, CDR payload)
        self.server_info: Optional[dict] = None

    def __enter__(self) -> "FoxgloveClient":
        return self

    def __exit__(self, *exc) -> None:
        self._connection.__exit__(*exc)

    def _take(self, deadline: float, what: str) -> None:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"no {what} from the Foxglove server within {self.timeout:.0f} s")
        try:
            frame = self.socket.recv(timeout=left)
        except TimeoutError:
            raise AssertionError(f"no {what} from the Foxglove server within {self.timeout:.0f} s") from None
        self._handle(frame)

    def _handle(self, frame) -> None:
        if isinstance(frame, str):
            message = json.loads(frame)
            if message.get("op") == "serverInfo":
                self.server_info = message
            elif message.get("op") == "advertise":
                self.channels.update({channel["topic"]: channel for channel in message["channels"]})
            return
        if frame[0] == 1:  # message data
            subscription, log_time = struct.unpack_from("<IQ", frame, 1)
            self.received.append((self.subscriptions.get(subscription, "?"), log_time, bytes(frame[13:])))

    def drain(self, seconds: float) -> None:
        """Take what arrives within ``seconds`` (none is fine): a viewer reading while frames are sent."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                frame = self.socket.recv(timeout=max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                return
            self._handle(frame)

    def count(self, topic: str) -> int:
        return sum(1 for t, _, _ in self.received if t == topic)

    def wait_for_channels(self, topics) -> Dict[str, dict]:
        deadline = time.monotonic() + self.timeout
        while not set(topics) <= set(self.channels):
            self._take(deadline, f"advertisement of {sorted(set(topics) - set(self.channels))}")
        return {topic: self.channels[topic] for topic in topics}

    def subscribe(self, topics) -> None:
        wanted = []
        for topic in topics:
            number = len(self.subscriptions) + 1
            self.subscriptions[number] = topic
            wanted.append({"id": number, "channelId": self.channels[topic]["id"]})
        self.socket.send(json.dumps({"op": "subscribe", "subscriptions": wanted}))

    def wait_for_messages(self, topic: str, count: int) -> List[Tuple[int, bytes]]:
        deadline = time.monotonic() + self.timeout
        while self.count(topic) < count:
            self._take(deadline, f"{count} messages on {topic} (got {self.count(topic)})")
        return [(log_time, data) for t, log_time, data in self.received if t == topic]


def decode_cdr(channel: dict, payload: bytes) -> Any:
    """A CDR message of an advertised channel decoded by the MCAP project's ROS 2 decoder from the channel's
    ``ros2msg`` schema."""
    decoder = pytest.importorskip("mcap_ros2.decoder")
    records = pytest.importorskip("mcap.records")
    assert (channel["encoding"], channel["schemaEncoding"]) == ("cdr", "ros2msg"), channel
    schema = records.Schema(id=1, name=channel["schemaName"], encoding="ros2msg", data=channel["schema"].encode())
    decode = decoder.DecoderFactory().decoder_for("cdr", schema)
    assert decode is not None, channel
    return decode(payload)
