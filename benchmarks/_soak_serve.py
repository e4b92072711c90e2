"""The serve half of ``python -m benchmarks soak``: rounds of mixed requests against a running ``zsseg serve`` (good
images, bodies sent as the wrong type, misspelt queries, bytes that are no image, uploads their clients close
mid-body, bursts over the replica's bound), each request's fate as its client saw it tallied per outcome counter of
the replica's ``/stats`` (zsseg_rt.scale.records.OUTCOME_COUNTERS) and compared with the counters after every round:
every request in exactly one counter. The replica's and the HTTP proxy's RSS, open files and threads are sampled
after each round. Used by the benchmark (its own Ray cluster) and by the CI test (the test session's server)."""

from __future__ import annotations

import collections
import http.client
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional

__all__ = ["Mix", "serve_soak", "proxy_pid"]

BUSY = b"the server is busy"  # the replica's own 503 (JSON); Ray Serve's proxy answers its 503 as text


@dataclass
class Mix:
    """One round's requests: ``good`` images from ``concurrency`` clients, ``wrong_type`` bodies sent as text/plain
    (415), ``bad_query`` with ``?clases=`` (400), ``garbage`` bodies that are no image (400), ``aborted`` uploads
    closed mid-body, and one ``burst``: that many good requests released at once (over the bound: 503s)."""

    good: int = 400
    wrong_type: int = 40
    bad_query: int = 20
    garbage: int = 20
    aborted: int = 10
    burst: int = 48
    concurrency: int = 4

    def per_round(self) -> int:
        return self.good + self.wrong_type + self.bad_query + self.garbage + self.aborted + self.burst


class _Client:
    """HTTP requests to one server, each tallied by the outcome counter it must land in (``tally``)."""

    def __init__(self, url: str, image: bytes):
        self.host, port = url.rsplit("//", 1)[1].rsplit(":", 1)
        self.port, self.image = int(port), image
        self.tally: collections.Counter = collections.Counter()
        self.problems: List[str] = []
        self._lock = threading.Lock()

    def _count(self, outcome: str, problem: Optional[str] = None) -> None:
        with self._lock:
            self.tally[outcome] += 1
            if problem and len(self.problems) < 20:
                self.problems.append(problem)

    def post(self, kind: str) -> None:
        """One POST /segment of ``kind`` (good, wrong_type, bad_query, garbage), tallied by its answer."""
        body = b"not an image" if kind == "garbage" else self.image
        kind_type = "text/plain" if kind == "wrong_type" else "image/png"
        path = "/segment?clases=cat" if kind == "bad_query" else "/segment"
        connection = http.client.HTTPConnection(self.host, self.port, timeout=120)
        try:
            connection.request("POST", path, body=body, headers={"Content-Type": kind_type})
            response = connection.getresponse()
            text = response.read()
        except OSError as exc:
            self._count("client_failed", f"{kind}: {type(exc).__name__}: {exc}")
            return
        finally:
            connection.close()
        self._count_answer(kind, response.status, text, response.getheader("Retry-After"))

    def _count_answer(self, kind: str, status: int, text: bytes, retry_after: Optional[str]) -> None:
        expected = {"good": 200, "wrong_type": 415, "bad_query": 400, "garbage": 400}[kind]
        if status == 503:
            retry_ok = retry_after is not None and retry_after.isdigit() and int(retry_after) >= 1
            outcome = "overloaded" if BUSY in text else "proxy_refused"
            self._count(outcome, None if retry_ok else f"503 without a Retry-After of >= 1 s: {retry_after!r}")
        elif status == 200:
            self._count("ok", None if expected == 200 else f"{kind}: 200")
        elif 400 <= status < 500:
            self._count("bad_requests", None if status == expected else f"{kind}: {status} {text[:120]!r}")
        else:
            self._count("errors", f"{kind}: {status} {text[:200]!r}")

    def stats(self) -> Dict[str, Any]:
        """GET /stats (itself a request the replica counts: tallied as a page)."""
        connection = http.client.HTTPConnection(self.host, self.port, timeout=60)
        try:
            connection.request("GET", "/stats")
            stats = json.loads(connection.getresponse().read())
        finally:
            connection.close()
        self._count("pages")
        return stats

    def until(self, condition: Callable[[Dict[str, Any]], bool], what: str, timeout_s: float = 300.0):
        deadline = time.monotonic() + timeout_s
        while True:
            stats = self.stats()
            if condition(stats):
                return stats
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what}: not reached in {timeout_s:g} s ({stats})")
            time.sleep(0.05)  # a poll interval; what is counted does not depend on it

    def aborted_uploads(self, count: int) -> None:
        """``count`` uploads that announce the whole image, send 100 bytes and are closed once all are in flight."""
        if not count:
            return
        base = self.stats()["in_flight"]
        uploads = []
        for _ in range(count):
            connection = http.client.HTTPConnection(self.host, self.port, timeout=120)
            connection.putrequest("POST", "/segment")
            connection.putheader("Content-Length", str(len(self.image)))
            connection.putheader("Content-Type", "image/png")
            connection.endheaders()
            connection.send(self.image[:100])
            uploads.append(connection)
        self.until(lambda s: s["in_flight"] >= base + count, f"{count} stalled uploads in flight")
        for connection in uploads:
            connection.close()
        self.tally["aborted"] += count

    def burst(self, count: int) -> None:
        """``count`` good requests released together (a barrier): more than the bound get 503."""
        barrier = threading.Barrier(count)

        def one() -> None:
            barrier.wait()
            self.post("good")

        threads = [threading.Thread(target=one, name=f"soak-burst-{i}") for i in range(count)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()


def proxy_pid() -> Optional[int]:
    """The pid of Ray Serve's HTTP proxy actor among this process's descendants (None: not found)."""
    import psutil

    for child in psutil.Process().children(recursive=True):
        try:
            if child.cmdline()[:1] == ["ray::ProxyActor"]:
                return child.pid
        except psutil.Error:
            continue
    return None


def _round(client: _Client, mix: Mix) -> None:
    kinds = ["good"] * mix.good + ["wrong_type"] * mix.wrong_type + ["bad_query"] * mix.bad_query
    kinds += ["garbage"] * mix.garbage
    kinds = kinds[::7] + [k for i, k in enumerate(kinds) if i % 7]  # the kinds interleaved
    with ThreadPoolExecutor(max_workers=mix.concurrency, thread_name_prefix="soak-client") as pool:
        list(pool.map(client.post, kinds))
    client.aborted_uploads(mix.aborted)
    if mix.burst:
        client.burst(mix.burst)


def serve_soak(
    url: str, image: bytes, rounds: int, mix: Mix, sample: Callable[[int], Dict[str, float]]
) -> Dict[str, Any]:
    """``rounds`` rounds of ``mix`` against the server at ``url``; after each, once nothing is in flight: the
    replica's counters against the tally, and ``sample(pid)`` of the replica and the proxy.

    Returns:
        ``{"rounds": [{"requests", "counted", "tally", "counters", "replica", "proxy"}], "sent", "counted",
        "mismatches": [per-round differences], "problems", "limit"}``.
    """
    from zsseg_rt.scale.records import OUTCOME_COUNTERS, counted_requests

    client = _Client(url, image)
    first = client.stats()
    proxy = proxy_pid()
    rows, mismatches = [], []
    for index in range(rounds):
        _round(client, mix)
        stats = client.until(lambda s: s["in_flight"] == 0, "every request of the round answered")
        counters = {name: stats[name] - first[name] for name in OUTCOME_COUNTERS}
        counters["pages"] += 1  # the first /stats read, counted by the replica before it answered it
        tally = {name: client.tally.get(name, 0) for name in (*OUTCOME_COUNTERS, "proxy_refused", "client_failed")}
        sent = sum(client.tally.values())
        if any(counters[name] != tally[name] for name in OUTCOME_COUNTERS) or tally["client_failed"]:
            mismatches.append({"round": index + 1, "counters": counters, "tally": tally})
        rows.append(
            {
                "requests": sent,
                "counted": counted_requests(stats) - counted_requests(first) + 1 + tally["proxy_refused"],
                "tally": tally,
                "counters": counters,
                "replica": sample(int(stats["pid"])),
                "proxy": sample(proxy) if proxy else None,
            }
        )
        print(f"serve soak: round {index + 1}/{rounds}: {sent} requests, {tally}", flush=True)
    return {
        "rounds": rows,
        "sent": rows[-1]["requests"] if rows else 0,
        "counted": rows[-1]["counted"] if rows else 0,
        "mismatches": mismatches,
        "problems": client.problems,
        "limit": first["in_flight_limit"],
    }
