"""The preview's HTTP server (``MjpegSink``, ``zsseg camera --preview``): one selector thread accepts every connection
and reads each request's head (the request line and headers) without a thread of its own; a request whose head is
complete gets a handler thread (at most ``max_clients`` at once). So a client that sends half a request, or
none, holds no handler thread and locks no other client out (16 half-open connections took every
slot of the threaded server until they timed out); a head not complete within ``head_timeout`` seconds is closed.
A client that leaves before its answer is one log line, never a traceback on the terminal.

    server = PreviewServer(("127.0.0.1", 0), HandlerClass)   # a BaseHTTPRequestHandler
    server.start("zsseg-mjpeg")                              # serve in a thread
    ...
    server.close()                                           # stop accepting, end every client
"""

from __future__ import annotations

import io
import logging
import selectors
import socket
import threading
import time
from typing import Any, Dict, List, Optional, Tuple

__all__ = ["HEAD_LIMIT", "PreviewServer"]

log = logging.getLogger("zsseg_rt.stream")

HEAD_LIMIT = 64 * 1024  # bytes of a request head (request line + headers); a longer one is closed
PENDING_LIMIT = 512  # connections whose head is not complete yet; past it the oldest is closed
_BUSY = b"HTTP/1.0 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 27\r\n\r\ntoo many clients: try again\n"


class _Prefixed(io.RawIOBase):
    """The bytes read ahead (the request's head) and then the socket, as one stream the handler reads."""

    def __init__(self, head: bytes, raw: Any):
        self._head = memoryview(head)
        self._raw = raw

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if len(self._head):
            count = min(len(buffer), len(self._head))
            buffer[:count] = self._head[:count]
            self._head = self._head[count:]
            return count
        return self._raw.readinto(buffer)


class _Pending:
    """A connection whose request head is being read."""

    def __init__(self, connection: socket.socket, address: Any):
        self.connection, self.address = connection, address
        self.data = bytearray()
        self.since = time.monotonic()


class PreviewServer:
    """An HTTP server for a ``BaseHTTPRequestHandler`` class (see the module).

    Args:
        address: ``(host, port)`` to listen on (port 0: a free one; ``server_address`` says which).
        handler: the request handler class; it reads ``self.server`` (this object: give it attributes, e.g. ``sink``).
        max_clients: requests served at once (one thread each); a complete request past it is answered 503.
        head_timeout: seconds a connection may take to send its request head.
        timeout: the socket timeout of a request being served (a client that stops reading).

    Raises:
        OSError: the address cannot be bound.
    """

    def __init__(
        self,
        address: Tuple[str, int],
        handler: Any,
        max_clients: int = 16,
        head_timeout: float = 10.0,
        timeout: float = 5.0,
    ):
        self.handler = handler
        self.max_clients = int(max_clients)
        self.head_timeout = float(head_timeout)
        self.timeout = float(timeout)
        family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.socket = socket.socket(family, socket.SOCK_STREAM)
        try:
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.socket.bind(address)
            self.socket.listen(128)
            self.socket.setblocking(False)
        except BaseException:
            self.socket.close()
            raise
        self.server_address = self.socket.getsockname()
        self._selector = selectors.DefaultSelector()
        self._pending: Dict[int, _Pending] = {}
        self._clients = threading.BoundedSemaphore(self.max_clients)
        self._threads: List[threading.Thread] = []
        self._threads_lock = threading.Lock()
        self._stop = threading.Event()
        self._wake_read, self._wake_write = socket.socketpair()
        self._wake_read.setblocking(False)
        self._thread: Optional[threading.Thread] = None

    # ---- the selector thread ------------------------------------------------------------------------------------
    def start(self, name: str) -> None:
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        self._selector.register(self.socket, selectors.EVENT_READ, "listen")
        self._selector.register(self._wake_read, selectors.EVENT_READ, "wake")
        try:
            while not self._stop.is_set():
                for key, _events in self._selector.select(timeout=0.5):
                    if key.data == "listen":
                        self._accept()
                    elif key.data == "wake":
                        self._drain_wake()
                    else:
                        self._read_head(key.data)
                self._expire()
        finally:
            for pending in list(self._pending.values()):
                self._drop(pending)
            self._selector.close()

    def _drain_wake(self) -> None:
        try:
            while self._wake_read.recv(512):
                pass
        except (BlockingIOError, OSError):
            pass

    def _accept(self) -> None:
        while True:
            try:
                connection, address = self.socket.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # e.g. too many open files: said, the others go on
                log.warning("preview: cannot accept a connection: %s", exc)
                return
            connection.setblocking(False)
            pending = _Pending(connection, address)
            if len(self._pending) >= PENDING_LIMIT:  # the oldest half-sent request makes room
                self._drop(min(self._pending.values(), key=lambda item: item.since))
            self._pending[connection.fileno()] = pending
            self._selector.register(connection, selectors.EVENT_READ, pending)

    def _read_head(self, pending: _Pending) -> None:
        try:
            data = pending.connection.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            log.info("preview: client %s left before its request was complete (%s)", _who(pending.address), exc)
            self._drop(pending)
            return
        if not data:  # the client closed before sending a whole request
            self._drop(pending)
            return
        pending.data += data
        if b"\r\n\r\n" not in pending.data and b"\n\n" not in pending.data:
            if len(pending.data) > HEAD_LIMIT:
                log.info(
                    "preview: client %s sent a request head over %d bytes: closed", _who(pending.address), HEAD_LIMIT
                )
                self._drop(pending)
            return
        self._unregister(pending)
        self._dispatch(pending)

    def _expire(self) -> None:
        deadline = time.monotonic() - self.head_timeout
        for pending in [item for item in self._pending.values() if item.since < deadline]:
            log.debug(
                "preview: client %s sent no whole request in %.0f s: closed", _who(pending.address), self.head_timeout
            )
            self._drop(pending)

    def _unregister(self, pending: _Pending) -> None:
        self._pending.pop(pending.connection.fileno(), None)
        try:
            self._selector.unregister(pending.connection)
        except (KeyError, ValueError):
            pass

    def _drop(self, pending: _Pending) -> None:
        self._unregister(pending)
        pending.connection.close()

    def _dispatch(self, pending: _Pending) -> None:
        connection = pending.connection
        connection.setblocking(True)
        connection.settimeout(self.timeout)
        if not self._clients.acquire(blocking=False):
            try:
                connection.sendall(_BUSY)
            except OSError:
                pass
            connection.close()
            log.info("preview: %d clients served already; %s answered 503", self.max_clients, _who(pending.address))
            return
        thread = threading.Thread(
            target=self._handle,
            args=(connection, pending.address, bytes(pending.data)),
            name=f"zsseg-preview-client[{_who(pending.address)}]",
            daemon=True,
        )
        with self._threads_lock:
            self._threads = [known for known in self._threads if known.is_alive()]
            self._threads.append(thread)
        thread.start()

    # ---- a client's thread -------------------------------------------------------------------------------------
    def _handle(self, connection: socket.socket, address: Any, head: bytes) -> None:
        try:
            self.handler(_Request(connection, head), address, self)
        except (ConnectionError, TimeoutError) as exc:  # the client went away, or stopped reading
            log.info("preview: client %s left before its answer was sent (%s)", _who(address), _reason(exc))
        except Exception as exc:  # noqa: BLE001 - one line, never a traceback on the terminal
            log.error("preview: a request of %s failed: %s: %s", _who(address), type(exc).__name__, exc)
        finally:
            try:
                connection.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            connection.close()
            self._clients.release()

    # ---- the end ------------------------------------------------------------------------------------------------
    def close(self, wait: float = 5.0) -> None:
        """Stop accepting, close the half-sent requests, and wait (up to ``wait`` seconds each) for the clients
        being served (their handlers see the sink closed)."""
        self._stop.set()
        try:
            self._wake_write.send(b"x")
        except OSError:
            pass
        if self._thread is not None:
            self._thread.join(wait)
        self.socket.close()
        self._wake_read.close()
        self._wake_write.close()
        with self._threads_lock:
            threads, self._threads = list(self._threads), []
        for thread in threads:
            thread.join(wait)


class _Request:
    """What a ``StreamRequestHandler`` takes as its request: the socket, whose reads start with the head read
    already."""

    def __init__(self, connection: socket.socket, head: bytes):
        self.connection: Any = connection
        self.head = head

    def makefile(self, mode: str, buffering: int = -1) -> Any:
        if "r" in mode:
            raw = _Prefixed(self.head, socket.SocketIO(self.connection, "rb"))
            return io.BufferedReader(raw, buffer_size=io.DEFAULT_BUFFER_SIZE)
        return self.connection.makefile(mode, buffering)

    def __getattr__(self, name: str) -> Any:  # settimeout, setsockopt, sendall, ...: the socket's own
        return getattr(self.connection, name)


def _who(address: Any) -> str:
    return f"{address[0]}:{address[1]}" if isinstance(address, tuple) and len(address) >= 2 else str(address)


def _reason(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
