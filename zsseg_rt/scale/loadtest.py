"""A bounded HTTP load test of ``zsseg serve``: a fixed number of requests from a few client threads, stopped at
a deadline whatever happens, with latency percentiles, throughput, errors and the answers kept for checking."""

from __future__ import annotations

import http.client
import json
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

__all__ = ["LoadTestResult", "run_load_test", "post_image", "get_json"]


@dataclass
class LoadTestResult:
    """What :func:`run_load_test` measured. ``answers[i]`` is the JSON answer to request ``i`` (None if it failed);
    request ``i`` sent ``images[i % len(images)]``."""

    requests: int
    completed: int
    errors: List[str]
    latencies_s: List[float]
    wall_s: float
    answers: List[Optional[Dict[str, Any]]] = field(repr=False)

    def summary(self) -> Dict[str, float]:
        """``{requests, completed, errors, p50_ms, p99_ms, mean_ms, throughput_rps, wall_s}``."""
        lat = np.asarray(self.latencies_s) * 1000.0
        return {
            "requests": self.requests,
            "completed": self.completed,
            "errors": len(self.errors),
            "p50_ms": float(np.percentile(lat, 50)) if lat.size else float("nan"),
            "p99_ms": float(np.percentile(lat, 99)) if lat.size else float("nan"),
            "mean_ms": float(lat.mean()) if lat.size else float("nan"),
            "throughput_rps": self.completed / self.wall_s if self.wall_s > 0 else 0.0,
            "wall_s": self.wall_s,
        }


def _split(url: str):
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"expected an http://host:port URL, got {url!r}")
    return parts.hostname, parts.port or 80, parts.path or "/"


def post_image(url: str, data: bytes, classes: Optional[Sequence[str]] = None, timeout: float = 60.0):
    """POST one encoded image to ``url`` (``.../segment``); returns ``(HTTP status, decoded JSON answer)``."""
    host, port, path = _split(url)
    query = urllib.parse.urlsplit(url).query
    path += f"?{query}" if query else ""
    if classes:
        path += ("&" if "?" in path else "?") + urllib.parse.urlencode({"classes": ",".join(classes)})
    connection = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        connection.request("POST", path, body=data, headers={"Content-Type": "application/octet-stream"})
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def get_json(url: str, timeout: float = 30.0) -> Dict[str, Any]:
    """GET ``url`` and decode its JSON answer (e.g. ``/stats``)."""
    host, port, path = _split(url)
    connection = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        connection.request("GET", path)
        return json.loads(connection.getresponse().read())
    finally:
        connection.close()


def run_load_test(
    url: str,
    images: Sequence[bytes],
    requests: int,
    concurrency: int = 4,
    max_seconds: float = 120.0,
    classes: Optional[Sequence[str]] = None,
    timeout: float = 60.0,
) -> LoadTestResult:
    """Send ``requests`` POSTs (image ``i % len(images)``) from ``concurrency`` threads, one keep-alive connection
    each; no new request starts after ``max_seconds`` (those not sent count as errors), so it always ends.

    Args:
        url: the ``/segment`` URL.
        images: encoded images.
        requests: total requests.
        concurrency: client threads (requests in flight).
        max_seconds: deadline for starting requests.
        classes: vocabulary sent with every request (None: the server's default).
        timeout: per-request socket timeout.
    Returns:
        a :class:`LoadTestResult`.
    """
    if requests < 1 or concurrency < 1 or not images:
        raise ValueError(
            f"need requests >= 1, concurrency >= 1 and images; got {requests}, {concurrency}, {len(images)}"
        )
    host, port, path = _split(url)
    query = urllib.parse.urlsplit(url).query
    path += f"?{query}" if query else ""
    if classes:
        path += ("&" if "?" in path else "?") + urllib.parse.urlencode({"classes": ",".join(classes)})
    answers: List[Optional[Dict[str, Any]]] = [None] * requests
    latencies: List[float] = []
    errors: List[str] = []
    lock = threading.Lock()
    next_index = [0]
    start = time.perf_counter()
    deadline = start + max_seconds

    def worker() -> None:
        connection = http.client.HTTPConnection(host, port, timeout=timeout)
        while True:
            with lock:
                index = next_index[0]
                if index >= requests:
                    break
                next_index[0] += 1
            if time.perf_counter() > deadline:
                with lock:
                    errors.append(f"request {index}: not sent, deadline of {max_seconds}s passed")
                continue
            sent = time.perf_counter()
            try:
                body = images[index % len(images)]
                connection.request("POST", path, body=body, headers={"Content-Type": "application/octet-stream"})
                response = connection.getresponse()
                body = response.read()
                if response.status != 200:
                    raise RuntimeError(f"HTTP {response.status}: {body[:200]!r}")
                answer = json.loads(body)
            except Exception as exc:  # noqa: BLE001 - every failure is recorded, the test goes on
                connection.close()
                connection = http.client.HTTPConnection(host, port, timeout=timeout)
                with lock:
                    errors.append(f"request {index}: {type(exc).__name__}: {exc}")
                continue
            with lock:
                latencies.append(time.perf_counter() - sent)
                answers[index] = answer
        connection.close()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=max_seconds + timeout + 5)
    wall = time.perf_counter() - start
    return LoadTestResult(requests, sum(a is not None for a in answers), errors, latencies, wall, answers)
