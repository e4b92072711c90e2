"""The preview's server under clients that misbehave (issue 87, M7): a client that leaves before its answer is one
log line, never a traceback on the camera's terminal (at 7f842ed socketserver printed "Exception occurred during
processing of request" with a BrokenPipeError traceback per client); half-open requests hold no client slot, so the
page and /stats are answered while 50 of them are held (at 7f842ed 16 of them locked every other client out)."""

from __future__ import annotations

import http.client
import logging
import socket
import struct

import numpy as np
import pytest

pytest.importorskip("cv2")
from zsseg_rt.outputs.sinks import MjpegSink  # noqa: E402

HOST = "127.0.0.1"


def _stats(port: int):
    connection = http.client.HTTPConnection(HOST, port, timeout=10)
    try:
        connection.request("GET", "/stats")
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def test_half_open_requests_lock_no_client_out(thread_guard):
    sink = MjpegSink(port=0, host=HOST, stats_provider=lambda: {"processed": 7})
    held = []
    try:
        for _ in range(50):  # a request line, never the blank line that ends the head
            client = socket.create_connection((HOST, sink.port), timeout=10)
            client.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            held.append(client)
        assert _stats(sink.port) == (200, b'{"processed": 7}')  # was: closed unanswered
    finally:
        for client in held:
            client.close()
        sink.close()


def test_a_client_that_leaves_early_is_one_line_not_a_traceback(capsys, caplog, thread_guard):
    """5 clients ask for a large snapshot and reset their connection at once: each is one INFO line naming it,
    nothing on stderr, and the server answers the next client."""
    sink = MjpegSink(port=0, host=HOST)
    noise = np.random.default_rng(0).integers(0, 256, (1500, 2000, 3), dtype=np.uint8)  # a JPEG of megabytes
    sink.write(noise)
    with caplog.at_level(logging.INFO, logger="zsseg_rt.stream"):
        try:
            for _ in range(5):
                client = socket.create_connection((HOST, sink.port), timeout=10)
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close: a reset
                client.sendall(b"GET /snapshot.jpg HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                client.close()
            assert _stats(sink.port)[0] == 200
        finally:
            sink.close()  # every client thread joined: what they logged is in
    err = capsys.readouterr().err
    assert "Traceback" not in err and "Exception occurred" not in err, err
    left = [r for r in caplog.records if r.getMessage().startswith("preview: client 127.0.0.1:")]
    assert len(left) == 5 and all(" left before " in r.getMessage() for r in left), [r.getMessage() for r in left]
    assert all(r.levelno == logging.INFO and r.exc_info is None for r in left)
