"""Frame sinks: an on-screen window, a video file, an image folder, and an MJPEG-over-HTTP preview.

Each sink has ``write(frame_bgr_uint8)`` and ``close()`` (``finish()`` / ``abort()``: ``FrameSink``);
``zsseg_rt.stream.open_sink(spec)`` builds one from a user string (``display://``, ``out.mp4``, ``frames/``,
``http://127.0.0.1:8080``, ``out.mcap``, ``foxglove://``): the table of :mod:`zsseg_rt.outputs.kinds`. The file sinks
(:mod:`zsseg_rt.outputs.file_sinks`) follow the output policy of :mod:`zsseg_rt.outputs.plan`: nothing is written under
an output's name until it is complete, and a failed write raises ``OutputWriteError`` naming the path and what was
written.
"""

from __future__ import annotations

import http.server
import json
import logging
import threading
import urllib.parse
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from zsseg_rt.console.opencv_build import require_window

from .file_sinks import BROWSER_EXTENSIONS, FRAMES, ImageFolderSink, VideoFileSink, existing_frames, h264_encoder
from .loopback import LOOPBACK_HOSTS, host_header_allowed
from .sink_base import FrameSink, SinkError

__all__ = [
    "BROWSER_EXTENSIONS",
    "FRAMES",
    "FrameSink",
    "ImageFolderSink",
    "MjpegSink",
    "NullSink",
    "SinkError",
    "VideoFileSink",
    "WindowSink",
    "existing_frames",
    "h264_encoder",
]

log = logging.getLogger("zsseg_rt.stream")


class WindowSink(FrameSink):
    """``cv2.imshow`` window; q or Esc asks the stream to stop. Refuses clearly on headless OpenCV / no display."""

    def __init__(self, title: str = "zsseg"):
        require_window()
        self.title = title
        self.name = "window"
        self.stop_requested = False

    def write(self, frame):
        import cv2

        cv2.imshow(self.title, frame)
        key = cv2.waitKey(1) & 0xFF
        if key in (ord("q"), 27):
            self.stop_requested = True

    def close(self):
        import cv2

        cv2.destroyWindow(self.title)


_PAGE_HEAD = """<!doctype html><html><head><meta charset="utf-8"><title>zsseg preview</title>
<style>body{background:#111;color:#ddd;font-family:sans-serif;margin:1em}img{max-width:100%;display:block}
a{color:#8cf}a:visited{color:#c9f}a:hover,a:focus{color:#fff}
input{width:min(40em,90%);font-size:1em;padding:.3em}button{font-size:1em;padding:.3em .8em}
#status[data-state=error]{color:#f77}#status[data-state=done]{color:#7d7}
#grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(min(100%,20em),1fr));gap:.8em}
#grid figure{margin:0}#grid img{width:100%;background:#222;min-height:4em}#grid figcaption{font-size:.9em;margin:.2em 0}
.source-state[data-state=reconnecting],.source-state[data-state=failed]{color:#f77}</style></head>
<body><h3>zsseg live segmentation</h3>
"""

_PAGE_FORM = """<form id="vocabulary"><input id="classes" autocomplete="off" placeholder="person, chair, floor"
value="{classes}" aria-label="classes to segment (comma-separated)"> <button type="submit">Segment these</button>
</form>
"""

_PAGE_READ_ONLY = """<p>This preview is read-only (zsseg camera --preview-readonly): the classes cannot be changed here.</p>
"""

_PAGE_ONE_STREAM = """<p id="status" data-state="idle"></p><img src="/stream.mjpg" alt="the segmented stream">
"""

# One tile per source. Frames are fetched one at a time (/frame/N.jpg?after=SEQ waits for a newer one), not as
# MJPEG streams: a browser opens at most 6 connections to a host, which a grid of MJPEG streams would exhaust.
_PAGE_GRID = """<p id="status" data-state="idle"></p><div id="grid">{tiles}</div>
"""

_PAGE_TILE = """<figure class="tile" data-index="{index}"><img id="stream-{index}" alt="the segmented stream of {name}">
<figcaption><b>{name}</b> <span class="source-state" id="source-{index}" data-state="starting"></span></figcaption>
</figure>"""

_PAGE_BODY = """<p id="stats"></p><p><a href="/snapshot.jpg">snapshot</a> &middot; <a href="/stats">stats (JSON)</a></p>
<script>
"use strict";
const statusLine = document.getElementById("status");
const box = document.getElementById("classes");
let shownClasses = box ? box.value : "";  // the classes the box shows (the server wrote the current ones in)
let waiting = null;  // the answer of the last POST /classes, until the stream has handled it
function say(state, text) { statusLine.dataset.state = state; statusLine.textContent = text; }
function sourceLine(s) {
  return (s.fps || 0).toFixed(1) + " FPS \\u00b7 p50 " + Math.round(s.latency_p50_ms || 0) + " / p99 " +
    Math.round(s.latency_p99_ms || 0) + " ms \\u00b7 drop " + (s.dropped || 0) + " \\u00b7 reconnects " +
    (s.reconnects || 0) + (s.state === "streaming" ? "" : " \\u00b7 " + s.state + (s.error ? ": " + s.error : ""));
}
async function poll() {
  try {
    const stats = await (await fetch("/stats", {cache: "no-store"})).json();
    const classes = stats.classes || [];
    document.body.dataset.classes = classes.join(",");
    // the box follows the stream's classes (e.g. a watched class file) unless the user is editing it
    if (box && document.activeElement !== box && box.value === shownClasses) {
      box.value = shownClasses = classes.join(", ");
    }
    document.getElementById("stats").textContent = "classes: " + classes.join(", ") + " \\u00b7 " +
      (stats.fps || 0).toFixed(1) + " FPS \\u00b7 " + Math.round(stats.latency_ms || 0) + " ms";
    (stats.sources || []).forEach((s, i) => {
      const line = document.getElementById("source-" + i);
      if (line) { line.dataset.state = s.state; line.textContent = sourceLine(s); }
    });
    if (waiting && (stats.vocabulary_request || 0) >= waiting.request) {
      if (stats.vocabulary_error) say("error", "refused: " + stats.vocabulary_error);
      else { say("done", "now segmenting: " + classes.join(", ")); if (box) shownClasses = box.value; }
      waiting = null;
    }
  } catch (err) {  // the stream stopped (the preview server went with it)
    document.getElementById("stats").textContent = "the stream has stopped (the preview server does not answer)";
    if (waiting) { say("error", "the stream has stopped before applying the classes"); waiting = null; }
  }
  setTimeout(poll, 1000);
}
const pause = (ms) => new Promise((done) => setTimeout(done, ms));
async function follow(img) {  // a grid tile: fetch each new frame of its source (long poll), show it
  let seq = 0, shown = null;
  for (;;) {
    try {
      const response = await fetch("/frame/" + img.id.slice(7) + ".jpg?after=" + seq, {cache: "no-store"});
      if (response.status !== 200) { await pause(response.status === 204 ? 0 : 1000); continue; }
      seq = Number(response.headers.get("X-Frame-Seq")) || seq + 1;
      const url = URL.createObjectURL(await response.blob());
      img.src = url;
      img.dataset.seq = seq;
      if (shown) URL.revokeObjectURL(shown);
      shown = url;
    } catch (err) { await pause(1000); }  // the stream stopped, or the network
  }
}
document.querySelectorAll("#grid img").forEach(follow);
const form = document.getElementById("vocabulary");
if (form) form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const text = document.getElementById("classes").value;
  say("busy", "applying before the next frame ...");
  try {
    const response = await fetch("/classes", {method: "POST", headers: {"Content-Type": "application/json"},
                                              body: JSON.stringify({classes: text})});
    const answer = await response.json();
    if (!response.ok) { say("error", answer.error || ("HTTP " + response.status)); return; }
    waiting = answer;
  } catch (err) { say("error", "the preview server did not answer: " + err); }
});
poll();
</script></body></html>"""

MAX_VOCABULARY_BODY = 64 * 1024  # bytes of a POST /classes body (a few thousand class names)
_LOOPBACK = LOOPBACK_HOSTS


def preview_page(editable: bool, classes: Optional[List[str]] = None, streams: Optional[Sequence[str]] = None) -> bytes:
    """The preview's HTML page: the stream, its live stats, and (``editable``) one box to change the classes (of
    every stream), which starts with the current ``classes`` (then follows the stream's classes until the user edits
    it). With several ``streams`` (their names): a grid with a tile per stream, each with its own statistics."""
    import html

    form = _PAGE_FORM.replace("{classes}", html.escape(", ".join(classes or []), quote=True))
    if streams is not None and len(streams) > 1:
        tiles = "".join(
            _PAGE_TILE.replace("{index}", str(i)).replace("{name}", html.escape(str(name), quote=True))
            for i, name in enumerate(streams)
        )
        view = _PAGE_GRID.replace("{tiles}", tiles)
    else:
        view = _PAGE_ONE_STREAM
    return (_PAGE_HEAD + (form if editable else _PAGE_READ_ONLY) + view + _PAGE_BODY).encode()


MAX_PREVIEW_CLIENTS = 16  # requests served at once (one thread each: a stream watched, a snapshot); more: 503


class _MjpegHandler(http.server.BaseHTTPRequestHandler):
    server: Any  # the PreviewServer, whose ``sink`` is the MjpegSink
    timeout = 5.0  # socket timeout: a client that stops reading cannot hold a handler thread forever
    protocol_version = "HTTP/1.0"

    def log_message(self, fmt, *args):  # noqa: D401 - quiet: route to logging at debug level
        log.debug("mjpeg %s: " + fmt, self.client_address[0], *args)

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):  # noqa: N802 - http.server naming
        sink = self.server.sink
        path, _, query = self.path.partition("?")
        params = urllib.parse.parse_qs(query)
        if not self._host_allowed():  # the camera's pictures are not for a rebound foreign page either
            self._send(403, b"this preview listens on loopback: use http://127.0.0.1:PORT/\n", "text/plain")
        elif path in ("/", "/index.html"):
            stats = sink.stats_provider() if sink.stats_provider else {}
            classes = stats.get("classes") if isinstance(stats, dict) else None
            page = preview_page(sink.vocabulary is not None, [str(c) for c in classes or []], sink.streams)
            self._send(200, page, "text/html; charset=utf-8")
        elif path == "/stats":
            stats = sink.stats_provider() if sink.stats_provider else {}
            self._send(200, json.dumps(stats).encode(), "application/json")
        elif path in ("/snapshot.jpg", "/stream.mjpg") or path.startswith("/frame/"):
            self._frames(sink, path, params)
        else:
            self._send(
                404,
                b"not found: try /, /stream.mjpg, /snapshot.jpg, /frame/N.jpg (?source=N: a stream of several) or "
                b"/stats\n",
                "text/plain",
            )

    def _frames(self, sink: "MjpegSink", path: str, params: Dict[str, List[str]]) -> None:
        """``/snapshot.jpg`` and ``/stream.mjpg`` (``?source=N``, default 0), ``/frame/N.jpg?after=SEQ`` (a frame of
        stream N newer than SEQ, waiting up to 2 s for one: 200 with ``X-Frame-Seq``, else 204)."""
        text = path[len("/frame/") : -len(".jpg")] if path.startswith("/frame/") and path.endswith(".jpg") else None
        if text is None:
            text = (params.get("source") or ["0"])[0]
        if not text.isdigit() or int(text) >= len(sink.streams):
            names = ", ".join(f"{i}: {name}" for i, name in enumerate(sink.streams))
            return self._send(404, f"no stream {text!r}; the streams are {names}\n".encode(), "text/plain")
        stream = int(text)
        if path == "/stream.mjpg":
            return self._stream(sink, stream)
        if path == "/snapshot.jpg":
            jpeg, _seq = sink.wait_frame(-1, timeout=2.0, stream=stream)
            if jpeg is None:
                return self._send(503, b"no frame yet\n", "text/plain")
            return self._send(200, jpeg, "image/jpeg")
        after = (params.get("after") or ["0"])[0]
        jpeg, seq = sink.wait_frame(int(after) if after.isdigit() else 0, timeout=2.0, stream=stream)
        if jpeg is None:
            self.send_response(204)
            self.send_header("Cache-Control", "no-store")
            return self.end_headers()
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.send_header("Content-Length", str(len(jpeg)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Frame-Seq", str(seq))
        self.end_headers()
        self.wfile.write(jpeg)

    def _json(self, status: int, answer: dict) -> None:
        self._send(status, json.dumps(answer).encode(), "application/json")

    def do_POST(self):  # noqa: N802 - http.server naming
        """``POST /classes`` with ``{"classes": "a, b, c"}`` (or a list): checked now, applied before the next frame
        (202 with the checked names and a request number ``/stats`` reports once handled). JSON only: a page of
        another site cannot send it without a CORS preflight, which this server does not grant."""
        sink = self.server.sink
        if self.path.split("?", 1)[0] != "/classes":
            return self._json(404, {"error": "not found: POST /classes changes the vocabulary"})
        if sink.vocabulary is None:
            return self._json(405, {"error": "this preview is read-only (zsseg camera --preview-readonly)"})
        kind = (self.headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
        if kind != "application/json":
            return self._json(
                415, {"error": f'send JSON {{"classes": "a, b, c"}} as application/json, got {kind or "no type"!r}'}
            )
        if not self._host_allowed():
            return self._json(403, {"error": "this preview listens on loopback: use http://127.0.0.1:PORT/"})
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            return self._json(411, {"error": "a Content-Length header with the body's size is required"})
        if length < 0:
            return self._json(400, {"error": f"Content-Length must be >= 0, got {length}"})
        if length > MAX_VOCABULARY_BODY:
            if length <= 16 * MAX_VOCABULARY_BODY:  # read and drop it, so that the client gets the answer
                self.rfile.read(length)
            return self._json(413, {"error": f"the body has {length} bytes; at most {MAX_VOCABULARY_BODY} are read"})
        try:
            request = json.loads(self.rfile.read(length).decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):  # RecursionError: "[[[[..." nested too deep
            return self._json(400, {"error": 'the body is not UTF-8 JSON; send {"classes": "a, b, c"}'})
        if not isinstance(request, dict) or not isinstance(request.get("classes"), (str, list)):
            return self._json(400, {"error": 'expected {"classes": "a, b, c"} (a string or a list of names)'})
        try:
            number, names = sink.vocabulary(request["classes"])
        except (TypeError, ValueError) as exc:
            return self._json(400, {"error": str(exc)})
        except RuntimeError as exc:  # e.g. the stream has not started yet
            return self._json(503, {"error": str(exc)})
        return self._json(202, {"classes": names, "request": number})

    def _host_allowed(self) -> bool:
        """On a loopback-bound preview, only requests addressed to a loopback name are answered: a page of another site
        that re-points its own host name at 127.0.0.1 (DNS rebinding) sends its own name as Host (.loopback's rule,
        shared with ``zsseg serve``)."""
        return host_header_allowed(self.server.sink.host, self.headers.get("Host"))

    def _stream(self, sink: "MjpegSink", stream: int = 0) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        seq = -1
        try:
            while not sink.closed:
                jpeg, new_seq = sink.wait_frame(seq, timeout=0.5, stream=stream)
                if jpeg is None:
                    continue
                seq = new_seq
                self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(jpeg))
                self.wfile.write(jpeg)
                self.wfile.write(b"\r\n")
        except (BrokenPipeError, ConnectionResetError, TimeoutError, OSError):
            pass  # the client went away


class MjpegSink(FrameSink):
    """MJPEG-over-HTTP preview for headless devices: ``http://HOST:PORT/`` (page: the stream, live stats and a box to
    change the classes), ``/stream.mjpg`` (the stream), ``/snapshot.jpg`` (newest frame), ``/stats`` (JSON from
    ``stats_provider``), ``POST /classes`` (a new vocabulary, when ``vocabulary`` is given).

    Several streams (``streams``: their names; ``write_stream(index, frame)``): the page is a grid with a tile per
    stream and one class box for all; ``/stream.mjpg?source=N`` and ``/snapshot.jpg?source=N`` serve stream N, and
    ``/frame/N.jpg?after=SEQ`` its next frame (what the grid fetches). Frames are JPEG-encoded when a client asks
    for them (once per frame, whatever the number of clients), so a preview nobody watches costs no encoding.

    Args:
        port: TCP port (0: pick a free one; read ``port`` afterwards).
        host: interface to bind: 127.0.0.1 (default, this machine only). Use "0.0.0.0" to serve the LAN
            (there is no authentication: only on a trusted network) or reach it with an SSH tunnel.
        quality: JPEG quality 1-100.
        stats_provider: optional callable returning a JSON-serialisable dict for ``/stats`` (a multi-source
            runner's ``snapshot``, whose ``sources`` list gives each tile its statistics line).
        vocabulary: optional callable ``names -> (request number, checked names)`` behind ``POST /classes`` and the
            page's class box (``StreamRunner.request_classes``); it raises TypeError / ValueError (HTTP 400) or
            RuntimeError (503). None: a read-only preview (405, and no box on the page).
        streams: the names of the streams shown (default: one).
    """

    def __init__(
        self,
        port: int = 8080,
        host: str = "127.0.0.1",
        quality: int = 80,
        stats_provider: Optional[Callable[[], dict]] = None,
        vocabulary: Optional[Callable[[object], Tuple[int, List[str]]]] = None,
        streams: Optional[Sequence[str]] = None,
    ):
        if not 1 <= int(quality) <= 100:
            raise SinkError(f"JPEG quality must be in 1..100, got {quality}")
        self.quality = int(quality)
        self.stats_provider = stats_provider
        self.vocabulary = vocabulary
        self.streams: List[str] = [str(name) for name in streams] if streams else ["stream"]
        self.closed = False
        self._cond = threading.Condition()
        count = len(self.streams)
        self._frames: List[Optional[np.ndarray]] = [None] * count  # the newest frame of each stream, not encoded
        self._seqs = [0] * count
        self._jpegs: List[Tuple[int, Optional[bytes]]] = [(0, None)] * count  # (seq, its JPEG) once encoded
        from .preview_server import PreviewServer

        try:  # a selector reads each request's head: a half-sent request holds no client thread
            self._server = PreviewServer((host, int(port)), _MjpegHandler, max_clients=MAX_PREVIEW_CLIENTS)
        except (OSError, OverflowError) as exc:
            said = f"cannot serve the MJPEG preview on {host}:{port} ({exc}); pick another"
            raise SinkError(f"{said} port: preview=PORT", cli=f"{said} --preview port") from exc
        self._server.sink = self  # type: ignore[attr-defined]
        host_port = self._server.server_address[:2]
        self.host, self.port = str(host_port[0]), int(host_port[1])
        self.name = f"mjpeg:http://{self.host}:{self.port}/"
        self._server.start(f"zsseg-mjpeg[{self.port}]")
        if host not in _LOOPBACK:
            log.warning("MJPEG preview serves %s:%d without authentication", host, self.port)
        log.info("MJPEG preview at http://%s:%d/", self.host, self.port)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    def write(self, frame):
        self.write_stream(0, frame)

    def write_stream(self, index: int, frame: np.ndarray) -> None:
        """The newest frame of stream ``index`` (kept by reference until a newer one: not modified afterwards)."""
        if not 0 <= index < len(self.streams):
            raise SinkError(f"stream {index} of a preview showing {len(self.streams)}")
        with self._cond:
            self._frames[index] = frame
            self._seqs[index] += 1
            self._cond.notify_all()

    def _encode(self, frame: np.ndarray) -> bytes:
        import cv2

        ok, buf = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        if not ok:
            raise SinkError("JPEG encoding failed")
        return buf.tobytes()

    def wait_frame(self, after_seq: int, timeout: float, stream: int = 0):
        """(jpeg bytes, sequence) of a frame of ``stream`` newer than ``after_seq``, or (None, after_seq) after
        ``timeout``."""
        with self._cond:
            if self._seqs[stream] <= after_seq or self._frames[stream] is None:
                self._cond.wait_for(
                    lambda: self.closed or (self._frames[stream] is not None and self._seqs[stream] > after_seq),
                    timeout,
                )
            frame, seq = self._frames[stream], self._seqs[stream]
            if frame is None or seq <= after_seq or self.closed:
                return None, after_seq
            cached_seq, jpeg = self._jpegs[stream]
        if cached_seq != seq or jpeg is None:  # encoded outside the lock: writers never wait for a client
            jpeg = self._encode(frame)
            with self._cond:
                if self._jpegs[stream][0] < seq:
                    self._jpegs[stream] = (seq, jpeg)
        return jpeg, seq

    def close(self):
        if self.closed:
            return
        with self._cond:
            self.closed = True
            self._cond.notify_all()
        self._server.close()  # the clients being served end (they see the sink closed), then their threads joined


class NullSink(FrameSink):
    """Discards frames (benchmarks, soak tests); counts them."""

    name = "null"

    def __init__(self):
        self.frames = 0

    def write(self, frame):
        self.frames += 1
