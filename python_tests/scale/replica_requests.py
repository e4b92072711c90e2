"""Requests for ``zsseg serve``'s replica class run without Ray Serve: a Starlette request as the HTTP proxy hands it
over, whose client sends its whole body, closes mid-upload, or stalls mid-upload (until the test cancels it, as Ray
Serve's proxy cancels a request whose client disconnected)."""

from __future__ import annotations

import asyncio
from typing import Sequence, Tuple

import cv2
import numpy as np

PNG = ("content-type", "image/png")


def png_bytes(height: int = 24, width: int = 32, value: int = 120) -> bytes:
    ok, data = cv2.imencode(".png", np.full((height, width, 3), value, np.uint8))
    assert ok
    return data.tobytes()


class Upload:
    """The client side of one request: ``mode`` "complete" (the body, then nothing more), "closed" (half the body,
    then the connection closes: ``http.disconnect``), "dropped" (half the body, then the receive call fails as Ray
    Serve's does when its proxy dropped the request of a client that disconnected: TaskCancelledError) or "stalled"
    (half the body, then nothing until cancelled; ``reading`` is set once the handler waits for the rest)."""

    def __init__(self, body: bytes, mode: str = "complete"):
        self.body, self.mode = body, mode
        self.reading = asyncio.Event()  # (bound to the loop that first waits on it)
        self._sent = False

    async def receive(self):
        if not self._sent:
            self._sent = True
            if self.mode == "complete":
                return {"type": "http.request", "body": self.body, "more_body": False}
            return {"type": "http.request", "body": self.body[: len(self.body) // 2], "more_body": True}
        if self.mode == "dropped":
            from ray.exceptions import TaskCancelledError

            raise TaskCancelledError()
        if self.mode == "stalled":
            self.reading.set()
            await asyncio.Event().wait()  # the rest never comes: only a cancellation ends this
        return {"type": "http.disconnect"}


def request(
    body: bytes = b"",
    query: str = "",
    headers: Sequence[Tuple[str, str]] = (PNG,),
    method: str = "POST",
    path: str = "/segment",
    mode: str = "complete",
):
    """``(Starlette request, its Upload)`` for ``METHOD PATH?query`` with ``body`` (a Content-Length of its size)."""
    from starlette.requests import Request

    upload = Upload(body, mode)
    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "root_path": "",
        "query_string": query.encode(),
        "headers": [(b"content-length", str(len(body)).encode())] + [(k.encode(), v.encode()) for k, v in headers],
    }
    return Request(scope, upload.receive), upload
