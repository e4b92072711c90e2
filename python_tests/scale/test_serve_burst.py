"""``zsseg serve`` under a burst and after a large body (issue 75, E9 and B69): every overload answer of a burst is
the replica's own (JSON, Retry-After, counted in /stats; a quarter were Ray's plain-text "Request dropped due to
backpressure", counted nowhere), and a large body refused leaves the replica's own memory as it was (a 50 MB body
left it ~460 MiB larger: not reproduced, see its test). Through the session's server (conftest.py: a bound of 12,
a 2 MP pixel limit)."""

from __future__ import annotations

import http.client
import json
import os
import threading

import numpy as np
import pytest
from test_serve import _outcomes, _stalled_upload, _StatsWatch

BURST = 200  # the probe's


def _post(port: int, body: bytes, start: threading.Barrier, answers: list, index: int) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        start.wait(60)  # all at once: the burst
        connection.request("POST", "/segment", body=body, headers={"Content-Type": "image/png"})
        response = connection.getresponse()
        answers[index] = (response.status, response.getheader("Content-Type"), response.read())
    except Exception as exc:  # noqa: BLE001 - reported by the test, with the others
        answers[index] = (None, None, repr(exc).encode())
    finally:
        connection.close()


@pytest.mark.time_bound(120)
def test_rays_own_bounds_leave_a_burst_to_the_replicas_bound(tiny_bundle):
    """E9 (B71): with Ray Serve's bounds at the replica's plus 32, a burst of 200 met Ray's before the replica's: 39
    of 153 503s were Ray's plain text, in no counter. Ray's bounds now admit such a burst (and five times more) to
    the replica, which answers each in JSON and counts it (the through-the-proxy test below); they stay bounds."""
    from zsseg_rt.scale import LOOPBACK_ENV

    os.environ[LOOPBACK_ENV] = "0"  # before the first import of ray (as conftest.ray_cluster)
    pytest.importorskip("ray", reason="the serve tests need the 'scale' extra (ray[data,serve])")
    from support import VOCAB10

    from zsseg_rt.scale.serve import build_app, in_flight_limit

    for batch, queued in ((8, None), (2, 5)):
        deployment = build_app(tiny_bundle, VOCAB10, max_batch_size=batch, max_queued=queued)._bound_deployment
        room = deployment.max_ongoing_requests - in_flight_limit(batch, queued)
        assert room >= 5 * BURST and deployment.max_queued_requests >= 5 * BURST, (room, deployment.max_queued_requests)
        assert deployment.max_queued_requests > 0  # still a bound


@pytest.mark.time_bound(600)
def test_every_overload_answer_of_a_burst_is_the_replicas_own_and_counted(server, photos):
    """E9 (B71): the replica's bound held by uploads in progress, then a burst of 200 POSTs at once: each is answered
    503 with Retry-After in JSON by the replica ("the server is busy") and counted as overloaded; none is Ray's plain
    text (was: 39 of 153). The held ones then end with 200; the counters add up."""
    from zsseg_rt.scale.records import counted_requests

    watch = _StatsWatch(server)
    before = watch.read()
    limit, body = before["in_flight_limit"], photos[1][0]
    held = [_stalled_upload(server, body, 100) for _ in range(limit)]
    watch.until(lambda s: s["in_flight"] == limit, f"{limit} uploads in flight")
    port = int(server.rsplit(":", 1)[1])
    answers: list = [None] * BURST
    start = threading.Barrier(BURST)
    threads = [threading.Thread(target=_post, args=(port, body, start, answers, i)) for i in range(BURST)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
        assert not thread.is_alive(), "a POST of the burst got no answer within 300 s"
    plain = [a for a in answers if a[1] != "application/json"]
    assert plain == [], f"{len(plain)} of {BURST} answers were not the replica's JSON: {plain[:3]}"
    for status, _, text in answers:
        assert status == 503 and json.loads(text)["error"].startswith("the server is busy: 12 requests"), text
    for connection in held:
        connection.send(body[100:])
    for connection in held:
        response = connection.getresponse()
        assert response.status == 200, (response.status, response.read()[:300])
        response.read()
        connection.close()
    after = watch.until(lambda s: s["in_flight"] == 0, "every request answered")
    expected = {"ok": limit, "overloaded": BURST, "requests": limit + BURST, "pages": watch.reads - 1}
    assert _outcomes(after, before) == expected, after
    assert counted_requests(after) - counted_requests(before) == limit + BURST + watch.reads - 1


def _private_mb(pid: int) -> float:
    """The replica's own memory (RssAnon), MB: without the pages of Ray's object store it maps (RssShmem), through
    which the proxy hands it a body: those belong to the store, shared and bounded by it."""
    with open(f"/proc/{pid}/status") as status:
        fields = dict(line.split(":", 1) for line in status if ":" in line)
    return int(fields["RssAnon"].split()[0]) / 1e3


@pytest.mark.time_bound(600)
def test_a_large_body_refused_leaves_the_replica_no_larger(server):
    """B69 (a 50 MB random body, refused with 400, left the replica ~460 MiB larger; not reproduced here, where the
    test server's byte limit is ~7 MB): a body just under that limit, one to warm up, then 8 more; the replica's own
    memory (RssAnon) once they are answered is within 20 MB of what it was. Its RSS does grow by each body: those are
    pages of Ray's object store (RssShmem), through which the proxy hands the replica a large body, shared and
    bounded by the store; the replica class alone, fed a 50 MB body in 64 KB chunks, keeps nothing either."""
    from zsseg_rt.scale.loadtest import get_json

    watch = _StatsWatch(server)
    pid = watch.read()["pid"]
    if not os.path.exists(f"/proc/{pid}/status"):
        pytest.skip("the replica's own memory is read from Linux's /proc")
    size = int(get_json(server + "/info")["max_bytes"]) - 4096
    body = np.random.default_rng(0).integers(0, 256, size, dtype=np.uint8).tobytes()
    port = int(server.rsplit(":", 1)[1])
    first = None
    for _ in range(9):
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        connection.request("POST", "/segment", body=body, headers={"Content-Type": "image/png"})
        response = connection.getresponse()
        text = response.read()
        connection.close()
        assert response.status == 400 and b"not an image" in text, (response.status, text[:300])
        first = _private_mb(pid) if first is None else first
    grown = _private_mb(pid) - first
    assert grown < 20, f"the replica kept {grown:.0f} MB more after 8 bodies of {size / 1e6:.0f} MB"
