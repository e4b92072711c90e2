"""``-o foxglove://`` (issue 79, F11): a viewer of the legacy subprotocol ``foxglove.websocket.v1`` was dropped with
an ERROR line per try ("Dropping client ...: handshake failed", 50 in a probe) and no reason; ``foxglove://[::1]:P``
printed ``ws://::1:P``; an unresolvable host was answered "choose another port"."""

from __future__ import annotations

import base64
import logging
import os
import socket

import pytest

from zsseg_rt.outputs.sink_base import SinkError


def _handshake(port: int, subprotocol: str) -> bytes:
    """One WebSocket opening handshake asking for ``subprotocol``: the server's answer's first bytes."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        key = base64.b64encode(os.urandom(16)).decode()
        conn.sendall(
            (
                f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: {subprotocol}\r\n\r\n"
            ).encode()
        )
        return conn.recv(200)


def test_a_legacy_viewer_is_refused_once_naming_the_subprotocol(caplog):
    pytest.importorskip("foxglove")
    from zsseg_rt.stream import FoxgloveSink

    sink = FoxgloveSink(0)
    try:
        with caplog.at_level(logging.INFO, logger="foxglove"):
            answers = [_handshake(sink.port, "foxglove.websocket.v1") for _ in range(5)]
            modern = _handshake(sink.port, "foxglove.sdk.v1")
            sink.close()  # the server's threads have logged what they log
    finally:
        sink.close()
    assert all(answer.startswith(b"HTTP/1.1 400") for answer in answers), answers
    assert modern.startswith(b"HTTP/1.1 101"), modern  # the control: the subprotocol it speaks is served
    said = [r.getMessage() for r in caplog.records]  # (the control's client leaves without a closing handshake)
    refused = [r for r in caplog.records if "handshake failed" in r.getMessage() or "was refused" in r.getMessage()]
    assert len(refused) == 1, said
    message = refused[0].getMessage()
    assert refused[0].levelno == logging.WARNING and "speaks the subprotocol foxglove.sdk.v1 only" in message, message
    assert "foxglove.websocket.v1" in message and "127.0.0.1:" in message, message
    assert not any(f for f in logging.getLogger("foxglove.websocket.server").filters)  # gone with the sink


def test_an_ipv6_host_is_printed_in_brackets():
    pytest.importorskip("foxglove")
    from zsseg_rt.outputs.foxglove_sink import parse_foxglove_url, url_host
    from zsseg_rt.stream import FoxgloveSink

    assert (url_host("::1"), url_host("127.0.0.1"), url_host("[::1]")) == ("[::1]", "127.0.0.1", "[::1]")
    host, port = parse_foxglove_url("foxglove://[::1]:0")
    try:
        sink = FoxgloveSink(port, host=host)
    except SinkError as exc:  # a machine without IPv6 on its loopback
        pytest.skip(f"no IPv6 loopback here: {exc}")
    try:
        assert sink.url == f"ws://[::1]:{sink.port}" and sink.name == f"foxglove:ws://[::1]:{sink.port}"
    finally:
        sink.close()


def test_an_unresolvable_host_is_said_so():
    pytest.importorskip("foxglove")
    from zsseg_rt.stream import FoxgloveSink

    with pytest.raises(SinkError) as refused:
        FoxgloveSink(0, host="example.invalid")  # .invalid: reserved, never resolves (RFC 2606)
    text = str(refused.value)
    assert "\n" not in text and "the host 'example.invalid' cannot be resolved" in text, text
    assert "choose another port" not in text, text
