"""``zsseg camera -o foxglove://HOST:PORT`` and ``FoxgloveSink``: the robot topics of every source
(:mod:`zsseg_rt.outputs.robot_sinks`) served live over Foxglove's WebSocket protocol (``foxglove-sdk``), for any number
of viewers (Foxglove's app: "Open connection", ``ws://HOST:PORT``; or any client of the protocol, subprotocol
``foxglove.sdk.v1``).

Each source's channels (three; five with ``objects=True``: its objects and their annotations) are advertised at once,
with their ``ros2msg`` schemas and CDR messages: the same bytes an MCAP file holds. A message is encoded only when a viewer subscribes to its channel (``Channel.has_sinks``), so with
nobody watching the output costs a few checks per frame; a viewer that subscribes to ``/<source>/label_info`` later
gets the current vocabulary with the source's next frame. The server listens on 127.0.0.1 unless another host is
given (it has no authentication: on a shared network, an SSH tunnel), and a port in use is refused when the sink is
made, before ``zsseg camera`` loads the model. ``close()`` stops the server (its threads end with it).
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from typing import Any, Dict, Optional, Sequence, Set, Tuple

from . import ros_messages as ros
from .loopback import LOOPBACK_HOSTS
from .object_messages import OBJECT_SCHEMAS
from .robot_sinks import JPEG_QUALITY, TOPIC_SCHEMAS, RobotSink, _Source, require_module
from .sink_base import SinkError

__all__ = ["DEFAULT_PORT", "FoxgloveSink", "parse_foxglove_url"]

log = logging.getLogger("zsseg_rt.stream")

DEFAULT_PORT = 8765  # Foxglove's own default
STOP_SECONDS = 5.0  # close(): the longest wait for the server's listener to be gone
SCHEME = "foxglove://"
_DEFINITIONS = {**ros.SCHEMAS, **OBJECT_SCHEMAS}


def parse_foxglove_url(spec: str) -> Tuple[str, int]:
    """``(host, port)`` of ``foxglove://HOST:PORT``, ``foxglove://PORT`` or ``foxglove://`` (host 127.0.0.1, port
    8765 unless given; port 0: any free one).

    Raises:
        SinkError: not such a URL (one line: what was expected, what was given).
    """
    text = str(spec).strip()
    if not text.lower().startswith(SCHEME):
        raise SinkError(f"a Foxglove output is foxglove://HOST:PORT, got {spec!r}")
    rest = text[len(SCHEME) :].strip("/")
    host, _, port = rest.rpartition(":") if ":" in rest else ("", "", rest)
    host = host.strip("[]") or "127.0.0.1"
    if port == "":
        return host, DEFAULT_PORT
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise SinkError(f"a Foxglove output is foxglove://HOST:PORT with a port in 0..65535, got {spec!r}")
    return host, int(port)


SUBPROTOCOL = "foxglove.sdk.v1"  # the one WebSocket subprotocol foxglove-sdk's server speaks
_SDK_SERVER_LOG = "foxglove.websocket.server"  # the SDK's logger of the server (its Rust log, through Python's)


def url_host(host: str) -> str:
    """``host`` as the host part of a URL: an IPv6 address in brackets (``ws://[::1]:8765``)."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


class _RefusedHandshakes(logging.Filter):
    """On the SDK server's logger while a sink serves: its "Dropping client ADDR: handshake failed" (an ERROR line
    per try, with no reason: a viewer of the legacy subprotocol ``foxglove.websocket.v1`` retried 50 times in a
    probe) is said once, as a warning naming the subprotocol this server speaks; the rest are dropped."""

    def __init__(self) -> None:
        super().__init__()
        self.said = False

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "handshake failed" not in message:
            return True
        if self.said:
            return False
        self.said = True
        client = message.split("Dropping client ", 1)[-1].split(": handshake failed", 1)[0]
        record.msg = (
            "Foxglove: the WebSocket handshake of a viewer at %s was refused: this server speaks the subprotocol %s "
            "only (a client of the legacy foxglove.websocket.v1 needs a newer Foxglove app or client); further "
            "refused handshakes are not logged"
        )
        record.args = (client, SUBPROTOCOL)
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def _check_resolvable(host: str, port: int) -> None:
    """Refuse a host name that does not resolve (it was answered "choose another port")."""
    try:
        socket.getaddrinfo(host, None)
    except socket.gaierror as exc:
        said = f"cannot serve Foxglove on {host}:{port}: the host {host!r} cannot be resolved ({exc.strerror}); give "
        said += "an address or name of this machine: "
        url = f"foxglove://127.0.0.1:{port}"
        raise SinkError(f"{said}outputs=[{url!r}]", cli=f"{said}-o {url}") from None


def _bindable(host: str, port: int) -> bool:
    """Whether nothing listens on ``host:port`` any more (a socket can bind it, the closed connections' TIME_WAIT
    aside)."""
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
    except OSError:
        return False
    return True


class _Subscriptions:
    """The server's listener (with ``foxglove.websocket.ServerListener``'s other callbacks, which do nothing): a
    viewer that subscribes to a label_info channel gets the vocabulary again."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.label_info: Set[str] = set()  # topics to send LabelInfo on again

    def on_subscribe(self, client: Any, channel: Any) -> None:  # called from the server's threads
        topic = str(getattr(channel, "topic", ""))
        if topic.endswith("/label_info"):
            with self.lock:
                self.label_info.add(topic)


class FoxgloveSink(RobotSink):
    """The robot topics served live (see the module).

    Args:
        port: TCP port (0: any free one; read ``port`` afterwards).
        host: interface to bind: 127.0.0.1 (default, this machine only); "0.0.0.0" serves the network (no
            authentication: a warning says so).
        sources, frame_id, overlay, jpeg_quality, objects, min_area, max_objects: see ``RobotSink``.
        name: the server's name shown to viewers.

    Raises:
        SinkError: foxglove-sdk is not installed, or the port cannot be bound (in use): one line.
    """

    def __init__(
        self,
        port: int = DEFAULT_PORT,
        host: str = "127.0.0.1",
        *,
        sources: Sequence[str] = ("camera",),
        frame_id: str = "{source}",
        overlay: bool = True,
        jpeg_quality: int = JPEG_QUALITY,
        name: str = "zsseg",
        objects: bool = False,
        min_area: Optional[float] = None,
        max_objects: Optional[int] = None,
    ):
        foxglove = require_module("foxglove", "a Foxglove output")
        self._foxglove = foxglove
        self._context = foxglove.Context()
        listener = type("Listener", (_Subscriptions, foxglove.websocket.ServerListener), {})
        self._listener = listener()
        self._channels: Dict[Tuple[str, str], Any] = {}
        _check_resolvable(host, int(port))
        try:
            self._server = foxglove.start_server(
                name=name, host=host, port=int(port), context=self._context, server_listener=self._listener
            )
        except (RuntimeError, OSError, ValueError) as exc:
            reason = str(exc).split(": ", 1)[-1] if "FoxgloveError" in str(exc) else str(exc)
            said = f"cannot serve Foxglove on {url_host(host)}:{port} ({reason}); choose another port: "
            url = f"foxglove://{url_host(host)}:PORT"
            raise SinkError(f"{said}outputs=[{url!r}]", cli=f"{said}-o {url}") from None
        self.host, self.port = host, int(self._server.port)
        self.name = f"foxglove:{self.url}"
        self.closed = False
        self._refused = _RefusedHandshakes()
        logging.getLogger(_SDK_SERVER_LOG).addFilter(self._refused)
        super().__init__(sources, frame_id, overlay, jpeg_quality, objects, min_area, max_objects)
        if host not in LOOPBACK_HOSTS:
            log.warning("Foxglove server on %s:%d serves without authentication", host, self.port)
        log.info("Foxglove server at %s (%s)", self.url, ", ".join(self.topics()))

    @property
    def url(self) -> str:
        """The address a viewer connects to: ``ws://HOST:PORT`` (an IPv6 host in brackets: ``ws://[::1]:PORT``)."""
        return f"ws://{url_host(self.host)}:{self.port}"

    def _source_added(self, source: _Source) -> None:
        for kind in self.kinds():  # advertised now: a viewer sees the topics before the first frame
            schema = self._foxglove.Schema(
                name=TOPIC_SCHEMAS[kind], encoding="ros2msg", data=_DEFINITIONS[TOPIC_SCHEMAS[kind]]
            )
            self._channels[(source.name, kind)] = self._foxglove.Channel(
                source.topic(kind), schema=schema, message_encoding="cdr", context=self._context
            )

    def subscribed(self, topic: str) -> bool:
        """Whether a viewer subscribes to ``topic`` now (its messages are encoded and sent)."""
        channel = next((c for (name, kind), c in self._channels.items() if f"/{name}/{kind}" == topic), None)
        if channel is None:
            raise SinkError(f"{topic!r} is not a topic of this server: {', '.join(self.topics())}")
        return not self.closed and channel.has_sinks()

    def _wanted(self, source: _Source, kind: str) -> bool:
        channel = self._channels.get((source.name, kind))
        return channel is not None and not self.closed and channel.has_sinks()

    def _resend(self, source: _Source) -> bool:
        topic = source.topic("label_info")
        with self._listener.lock:
            if topic in self._listener.label_info:
                self._listener.label_info.discard(topic)
                return True
        return False

    def _send(self, source: _Source, kind: str, stamp_ns: int, data: bytes) -> None:
        self._channels[(source.name, kind)].log(data, log_time=stamp_ns)
        with self._lock:
            self.messages += 1

    def close(self) -> None:
        """Stop the server: viewers are disconnected, and the port is free again when this returns (the SDK stops its
        listener asynchronously: waited for, at most ``STOP_SECONDS``)."""
        if self.closed:
            return
        self.closed = True
        # The server first, its channels after: foxglove-sdk's Channel.close() holds the GIL while it waits for the
        # context's lock, and a server thread that holds that lock to call Python (the listener, a log line through
        # Python's logging) waits for the GIL: closing the channels of a running server deadlocked once in CI (a viewer
        # leaving as the sink closed). Stopped and waited for here (the sleeps release the GIL, so a call in flight
        # ends), the server holds the lock no more when the channels close.
        self._server.stop()
        deadline = time.monotonic() + STOP_SECONDS
        while not _bindable(self.host, self.port) and time.monotonic() < deadline:
            time.sleep(0.01)
        for channel in self._channels.values():
            channel.close()
        logging.getLogger(_SDK_SERVER_LOG).removeFilter(self._refused)

    def describe(self) -> Dict[str, Any]:
        """What was served (``--stats-json`` "outputs")."""
        return self.described("foxglove", self.url)

    def __del__(self) -> None:  # a sink dropped without close(): its server must not outlive it
        try:
            if not getattr(self, "closed", True):
                self.close()
        except Exception:  # noqa: BLE001 - at interpreter exit foxglove may be gone already
            pass
