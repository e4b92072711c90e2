"""The MJPEG preview fetched over loopback (127.0.0.1 only; every request loop is bounded)."""

from __future__ import annotations

import http.client
import json
import threading
import time

import cv2
import numpy as np
import pytest
from stream_fakes import FakeEngine, numbered_frame, running_preview

from zsseg_rt.stream import CallableSource, MjpegSink, StreamRunner

HOST = "127.0.0.1"


def _get(port, path, timeout=5.0):
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.getheader("Content-Type"), response.read()
    finally:
        conn.close()


def _read_mjpeg_parts(port, parts: int, timeout=5.0):
    """Read ``parts`` JPEG parts from /stream.mjpg (bounded: stops after ``parts`` or 200 reads)."""
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request("GET", "/stream.mjpg")
        response = conn.getresponse()
        assert response.status == 200
        assert response.getheader("Content-Type") == "multipart/x-mixed-replace; boundary=frame"
        images = []
        for _ in range(200):
            if len(images) == parts:
                break
            line = response.fp.readline()
            if not line.startswith(b"Content-Length:"):
                continue
            length = int(line.split(b":")[1])
            assert response.fp.readline() == b"\r\n"
            images.append(cv2.imdecode(np.frombuffer(response.fp.read(length), np.uint8), cv2.IMREAD_COLOR))
        return images
    finally:
        conn.close()


def test_mjpeg_endpoints_over_loopback(thread_guard):
    sink = MjpegSink(port=0, host=HOST, quality=90, stats_provider=lambda: {"fps": 12.5})
    try:
        assert sink.port > 0 and sink.url == f"http://{HOST}:{sink.port}/"
        status, _, _ = _get(sink.port, "/snapshot.jpg", timeout=5.0)
        assert status == 503  # no frame yet: answered after a bounded wait, not hung

        stop = threading.Event()

        def produce():
            i = 0
            while not stop.is_set() and i < 2000:
                frame = numbered_frame(i, (120, 160))
                frame[20:100, 20:140] = (0, 0, 255)  # a red block to check the decoded content
                sink.write(frame)
                i += 1
                time.sleep(0.01)

        producer = threading.Thread(target=produce)
        producer.start()
        try:
            status, ctype, body = _get(sink.port, "/snapshot.jpg")
            assert status == 200 and ctype == "image/jpeg"
            snap = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
            assert snap.shape == (120, 160, 3)
            assert snap[60, 80, 2] > 200 and snap[60, 80, 0] < 60
            images = _read_mjpeg_parts(sink.port, 3)
            assert len(images) == 3 and all(img.shape == (120, 160, 3) for img in images)
            status, ctype, body = _get(sink.port, "/stats")
            assert status == 200 and json.loads(body) == {"fps": 12.5}
            status, ctype, body = _get(sink.port, "/")
            assert status == 200 and b"/stream.mjpg" in body
            assert _get(sink.port, "/nope")[0] == 404
        finally:
            stop.set()
            producer.join()
    finally:
        sink.close()


def test_mjpeg_close_ends_open_streams(thread_guard):
    """A client still connected to /stream.mjpg must not keep a server thread alive after close()."""
    sink = MjpegSink(port=0, host=HOST)
    sink.write(numbered_frame(1))
    conn = http.client.HTTPConnection(HOST, sink.port, timeout=5.0)
    conn.request("GET", "/stream.mjpg")
    response = conn.getresponse()
    assert response.status == 200
    sink.close()  # thread_guard checks that no server thread is left, the open client's included
    response.read()  # and the stream ended: EOF (a stream left open fails here on the connection's timeout)
    conn.close()


def test_runner_serves_overlays_and_stats(thread_guard):
    box = {}
    sink = MjpegSink(port=0, host=HOST, stats_provider=lambda: box["runner"].snapshot())
    fetched = {}

    def on_result(frame, result, stats):
        if stats.processed == 5 and "stats" not in fetched:
            fetched["stats"] = json.loads(_get(sink.port, "/stats")[2])
            fetched["snapshot"] = _get(sink.port, "/snapshot.jpg")

    source = CallableSource(lambda: (numbered_frame(i, (96, 128)) for i in range(10)), live=False)
    runner = StreamRunner(FakeEngine(["sky", "road"]), source, [sink], drop_stale=False, on_result=on_result)
    box["runner"] = runner
    stats = runner.run()
    assert stats.processed == 10 and sink.closed
    assert fetched["stats"]["processed"] == 5 and fetched["stats"]["classes"] == ["sky", "road"]
    assert fetched["snapshot"][0] == 200
    with pytest.raises(OSError):
        _get(sink.port, "/", timeout=1.0)  # the server is gone


def test_mjpeg_caps_simultaneous_clients(thread_guard, monkeypatch):
    import socket

    from zsseg_rt.outputs import sinks

    monkeypatch.setattr(sinks, "MAX_PREVIEW_CLIENTS", 2)
    sink = MjpegSink(port=0, host=HOST)
    sink.write(numbered_frame(1))
    held = []
    try:
        for _ in range(2):  # two streaming clients occupy both slots
            conn = http.client.HTTPConnection(HOST, sink.port, timeout=5)
            conn.request("GET", "/stream.mjpg")
            response = conn.getresponse()  # keep it referenced: a collected response closes its socket
            assert response.status == 200
            held.append((conn, response))
        extra = socket.create_connection((HOST, sink.port), timeout=5)
        extra.sendall(b"GET /snapshot.jpg HTTP/1.0\r\n\r\n")
        assert extra.recv(64).startswith(b"HTTP/1.0 503 ")  # refused at once: too many clients
        extra.close()
    finally:
        for conn, response in held:
            response.close()
            conn.close()
        sink.close()


def _post(port, path, body: bytes, content_type="application/json", timeout=5.0):
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request("POST", path, body=body, headers={"Content-Type": content_type} if content_type else {})
        response = conn.getresponse()
        return response.status, json.loads(response.read() or b"{}")
    finally:
        conn.close()


class _PickyEngine(FakeEngine):
    """Refuses one name when the loop applies it (as an Engine refuses what only it can check)."""

    def set_classes(self, names):
        if "forbidden" in (names if isinstance(names, list) else names.split(",")):
            raise ValueError("'forbidden' is not allowed here")
        super().set_classes(names)


def _wait_for_request(port, number, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stats = json.loads(_get(port, "/stats")[2])
        if stats["vocabulary_request"] >= number:
            return stats
        time.sleep(0.02)
    raise AssertionError(f"request {number} not handled within {timeout} s: {stats}")


def test_the_preview_page_changes_the_vocabulary_live(thread_guard):
    """NanoOWL's prompt box over a live stream: POST /classes is checked at once (400 with the reason), applied
    before the next frame, and /stats says when it was handled and whether the Engine refused it."""
    engine = _PickyEngine(["sky", "road"], delay=0.01)
    with running_preview(engine) as sink:
        status, page_type, page = _get(sink.port, "/")
        assert status == 200 and b'id="vocabulary"' in page and b"/classes" in page

        status, answer = _post(sink.port, "/classes", json.dumps({"classes": "cat, dog , grass"}).encode())
        assert (status, answer) == (202, {"classes": ["cat", "dog", "grass"], "request": 1})
        stats = _wait_for_request(sink.port, 1)
        assert stats["classes"] == ["cat", "dog", "grass"] and stats["vocabulary_error"] is None
        assert engine.class_names == ["cat", "dog", "grass"]

        status, answer = _post(sink.port, "/classes", json.dumps({"classes": ["tree", "forbidden"]}).encode())
        assert status == 202 and answer["request"] == 2
        stats = _wait_for_request(sink.port, 2)
        assert stats["vocabulary_error"] == "'forbidden' is not allowed here"
        assert stats["classes"] == ["cat", "dog", "grass"] == engine.class_names  # kept

        refused = {
            "duplicate": (json.dumps({"classes": "a, b, a"}).encode(), "application/json", 400, "duplicate class"),
            "empty": (json.dumps({"classes": " , "}).encode(), "application/json", 400, "empty"),
            "not a name": (json.dumps({"classes": ["a", 3]}).encode(), "application/json", 400, "is int"),
            "no field": (json.dumps({"names": "a"}).encode(), "application/json", 400, 'expected {"classes"'),
            "not JSON": (b"cat, dog", "application/json", 400, "not UTF-8 JSON"),
            "plain text": (b"cat, dog", "text/plain", 415, "as application/json"),
            "too long": (b"x" * 70000, "application/json", 413, "at most 65536"),
        }
        for why, (body, kind, want_status, message) in refused.items():
            status, answer = _post(sink.port, "/classes", body, kind)
            assert status == want_status and message in answer["error"], (why, status, answer)
        assert _post(sink.port, "/elsewhere", b"{}")[0] == 404
        stats = json.loads(_get(sink.port, "/stats")[2])
        assert stats["vocabulary_request"] == 2 and stats["classes"] == ["cat", "dog", "grass"]  # nothing queued


def test_a_read_only_preview_has_no_class_box(thread_guard):
    sink = MjpegSink(port=0, host=HOST)
    try:
        status, _, page = _get(sink.port, "/")
        assert status == 200 and b'id="vocabulary"' not in page and b"read-only" in page
        status, answer = _post(sink.port, "/classes", json.dumps({"classes": "cat"}).encode())
        assert status == 405 and "read-only" in answer["error"]
    finally:
        sink.close()


def test_request_classes_checks_the_bundle_class_limit():
    class Limited(FakeEngine):
        class meta:  # noqa: N801 - the Engine's meta.max_classes
            max_classes = 2

    runner = StreamRunner(Limited(["a", "b"]), CallableSource(lambda: iter(()), live=False), [])
    with pytest.raises(ValueError, match="at most 2"):
        runner.request_classes("x, y, z")
    assert runner.request_classes(["x", "y"]) == (1, ["x", "y"])


def test_every_request_gets_an_outcome_of_its_own(tmp_path):
    """A request replaced before the loop took it, a request after the stream stopped, and a class-file change
    between a refused request and the page's next look: each reports its own outcome (found in review: the watcher's
    change overwrote a refusal, set_classes() dropped a queued request and the page waited forever)."""
    engine = _PickyEngine(["sky", "road"])
    class_file = tmp_path / "classes.txt"
    class_file.write_text("sky, road\n")
    runner = StreamRunner(engine, CallableSource(lambda: iter(()), live=False), [], class_file=str(class_file))
    assert runner.request_classes("a, b") == (1, ["a", "b"])
    assert runner.request_classes("c, d") == (2, ["c", "d"])  # replaces 1 before any frame
    assert runner.snapshot()["vocabulary_request"] == 1
    assert "replaced by a newer" in runner.snapshot()["vocabulary_error"]
    runner._apply_vocabulary()
    assert (runner.snapshot()["vocabulary_request"], runner.snapshot()["vocabulary_error"]) == (2, None)

    assert runner.request_classes("x, forbidden")[0] == 3
    runner._apply_vocabulary()
    refused = runner.snapshot()
    assert refused["vocabulary_request"] == 3 and "forbidden" in refused["vocabulary_error"]
    class_file.write_text("tree, grass\n")  # a watched-file change after the refusal
    runner.watcher._last_poll = float("-inf")  # poll now, whatever the interval
    runner._apply_vocabulary()
    after = runner.snapshot()
    assert after["classes"] == ["tree", "grass"] == engine.class_names
    assert (after["vocabulary_request"], after["vocabulary_error"]) == (3, refused["vocabulary_error"])

    runner.set_classes("p, q")  # not a request: replaces nothing of the page's
    assert runner.request_classes("late, request")[0] == 4
    runner.stop()  # before the loop took request 4
    runner.run(handle_signals=False)
    final = runner.snapshot()
    assert final["vocabulary_request"] == 4 and "stopped before it applied" in final["vocabulary_error"]
    with pytest.raises(RuntimeError, match="the stream has stopped"):
        runner.request_classes("after, the end")


def _raw(port, request: bytes) -> bytes:
    import socket

    with socket.create_connection((HOST, port), timeout=5) as conn:
        conn.sendall(request)
        chunks = []
        while True:
            chunk = conn.recv(65536)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)


def test_post_classes_refuses_malformed_requests_with_a_status(thread_guard):
    calls = []
    sink = MjpegSink(port=0, host=HOST, vocabulary=lambda names: calls.append(names) or (1, ["a"]))
    try:
        nested = b"[" * 60000  # too deep for the JSON parser: RecursionError, which went unanswered
        assert _post(sink.port, "/classes", nested)[0] == 400
        head = b"POST /classes HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        assert _raw(sink.port, head + b"Content-Length: -5\r\n\r\n").startswith(b"HTTP/1.0 400")
        assert _raw(sink.port, head + b"\r\n").startswith(b"HTTP/1.0 411")
        big = b"x" * 300000  # over the limit but small enough to drain: the client reads the 413, not a reset
        answer = _raw(sink.port, head + b"Content-Length: %d\r\n\r\n" % len(big) + big)
        assert answer.startswith(b"HTTP/1.0 413") and b"at most 65536" in answer
        # DNS rebinding: a foreign page re-pointed at 127.0.0.1 sends its own host name
        body = json.dumps({"classes": "a"}).encode()
        foreign = b"POST /classes HTTP/1.0\r\nHost: evil.example:%d\r\nContent-Type: application/json\r\n" % sink.port
        assert _raw(sink.port, foreign + b"Content-Length: %d\r\n\r\n" % len(body) + body).startswith(b"HTTP/1.0 403")
        assert _raw(sink.port, b"GET /snapshot.jpg HTTP/1.0\r\nHost: evil.example\r\n\r\n").startswith(b"HTTP/1.0 403")
        for host in (b"127.0.0.1:%d" % sink.port, b"localhost:%d" % sink.port, b"[::1]:%d" % sink.port):
            ok = b"POST /classes HTTP/1.0\r\nHost: " + host + b"\r\nContent-Type: application/json\r\n"
            assert _raw(sink.port, ok + b"Content-Length: %d\r\n\r\n" % len(body) + body).startswith(b"HTTP/1.0 202")
        assert calls == ["a", "a", "a"]  # only the well-formed, loopback-addressed requests reached the stream
    finally:
        sink.close()
