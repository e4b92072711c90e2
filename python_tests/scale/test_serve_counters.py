"""`zsseg serve`'s counters and its bounded queue (issue 64: D10 and item 4), on the replica class run without Ray
Serve (no cluster: a second or two): every request lands in exactly one outcome counter, whatever becomes of it (an
upload closed or cancelled mid-body, a refusal, a failure of the Engine, a foreign Host, a page, a wrong path, an
overload), and more requests than the replica's bound get 503 with Retry-After at once. No clock: the batch is held
on an event and the uploads stall on one (the through-the-proxy cases are in test_serve.py)."""

from __future__ import annotations

import asyncio
import json
import os

import pytest
from replica_requests import PNG, png_bytes, request
from support import VOCAB10 as VOCAB

BATCH, QUEUED = 2, 1  # this replica's bound: 3 POST /segment requests at once


@pytest.fixture(scope="module")
def replica(tiny_bundle):
    """The deployment's class as a replica constructs it (one Engine), outside Ray Serve, with a bound of 3."""
    from zsseg_rt.scale import LOOPBACK_ENV

    os.environ[LOOPBACK_ENV] = "0"  # before the first import of ray (as conftest.ray_cluster)
    pytest.importorskip("ray", reason="the serve tests need the 'scale' extra (ray[data,serve])")
    from zsseg_rt.scale.serve import SegmentationServer

    server = SegmentationServer(
        tiny_bundle, VOCAB, backend="onnxruntime", max_pixels=2_000_000, max_batch_size=BATCH, max_queued=QUEUED
    )
    assert server.in_flight_limit == BATCH + QUEUED
    return server


@pytest.fixture
def batch_of_one(replica, monkeypatch):
    """Each request its own batch (Ray Serve's batching needs a replica context), counted as a batch is."""

    async def one(item):
        return (await replica.run_batch([item]))[0]

    monkeypatch.setattr(replica, "segment_batch", one)


class _FailingEngine:
    """The replica's Engine, failing every call as a broken accelerator would (a failure of the server: 500)."""

    def __init__(self, engine):
        self._engine = engine

    def __getattr__(self, name):
        return getattr(self._engine, name)

    def __call__(self, *args, **kwargs):
        raise RuntimeError("the accelerator fell over")


async def _answer(replica, *args, **kwargs):
    response = await replica(request(*args, **kwargs)[0])
    is_json = response.headers.get("content-type") == "application/json"
    return response.status_code, (json.loads(response.body) if is_json else None), response.headers


async def _cancelled_mid_upload(replica):
    """A client that stalls mid-upload and goes away: Ray Serve's proxy then cancels its request (CancelledError)."""
    req, upload = request(png_bytes(), mode="stalled")
    task = asyncio.ensure_future(replica(req))
    await upload.reading.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def _bounded(scenario, what: str, seconds: float = 30.0):
    """``asyncio.run`` of ``scenario`` (a coroutine), failing with ``what`` past ``seconds`` (issue 75, item 8: a
    request admitted past the bound waited on the held batch forever; the test hung instead of failing)."""

    async def within():
        try:
            return await asyncio.wait_for(scenario, seconds)
        except asyncio.TimeoutError:
            raise AssertionError(f"{what} within {seconds:g} s (a request past the bound admitted and held?)") from None

    return asyncio.run(within())


def _delta(after, before):
    from zsseg_rt.scale.records import OUTCOME_COUNTERS

    return {name: after[name] - before[name] for name in OUTCOME_COUNTERS + ("requests", "refused_images")}


@pytest.mark.parametrize("way", ["cancelled", "dropped", "closed"])
def test_an_upload_its_client_left_is_counted_as_aborted(replica, way):
    """D10 (probe: of 12 stalled uploads closed by their clients 6 were counted as aborted, 1 as a server error and 5
    nowhere). Under Ray Serve a client that disconnects mid-upload reaches the replica in one of three ways (12 such
    uploads through the proxy: 5, 2 and 5): the proxy cancels the request (a CancelledError, which passed every
    handler uncounted), the replica's call fetching the next chunk from the proxy is cancelled (TaskCancelledError:
    counted as a server error, 500), or the disconnect arrives (ClientDisconnect: aborted). Each is aborted now, and
    its place in the queue given back."""
    from zsseg_rt.scale.records import counted_requests

    before = replica._stats()
    if way == "cancelled":
        asyncio.run(_cancelled_mid_upload(replica))
    else:
        assert asyncio.run(_answer(replica, png_bytes(), mode=way))[0] == 499
    after = replica._stats()
    assert _delta(after, before) == {**dict.fromkeys(_delta(after, before), 0), "aborted": 1, "requests": 1}, after
    assert after["in_flight"] == 0 and counted_requests(after) - counted_requests(before) == 1


def test_every_request_lands_in_exactly_one_counter(replica, batch_of_one, monkeypatch):
    """One request of every kind, each counted once by what became of it; their sum is the number sent (an Engine
    failure inside a batch was counted twice as an error, a page or a wrong path nowhere)."""
    from zsseg_rt.scale.records import counted_requests

    good = png_bytes()

    async def send_all():
        statuses = []
        for args, kwargs in (
            ((good,), {}),  # ok
            ((good,), {"headers": (("content-type", "text/plain"),)}),  # 415
            ((good, "clases=cat"), {}),  # 400: unknown query key
            ((b"not an image",), {}),  # 400
            ((good,), {"mode": "closed"}),  # the client closed mid-upload: 499
            ((b"",), {"method": "GET", "path": "/info"}),
            ((b"",), {"method": "GET", "path": "/stats"}),
            ((b"",), {"method": "GET", "path": "/"}),
            ((b"",), {"method": "GET", "path": "/nowhere"}),  # 404
        ):
            statuses.append((await _answer(replica, *args, **kwargs))[0])
        await _cancelled_mid_upload(replica)
        with monkeypatch.context() as patch:
            patch.setattr(replica, "host", "127.0.0.1")
            statuses.append((await _answer(replica, good, headers=(("host", "evil.example"), PNG)))[0])
            patch.setattr(replica, "engine", _FailingEngine(replica.engine))
            statuses.append((await _answer(replica, good, headers=(("host", "127.0.0.1"), PNG)))[0])
        return statuses

    before = replica._stats()
    statuses = asyncio.run(send_all())
    after = replica._stats()
    assert statuses == [200, 415, 400, 400, 499, 200, 200, 200, 404, 403, 500], statuses
    expected = {"ok": 1, "bad_requests": 3, "aborted": 2, "errors": 1, "forbidden": 1, "pages": 3, "not_found": 1}
    assert _delta(after, before) == {"overloaded": 0, "refused_images": 0, "requests": 7, **expected}, after
    by_status = {
        code: after["bad_by_status"].get(code, 0) - before["bad_by_status"].get(code, 0) for code in ("400", "415")
    }
    assert by_status == {"400": 2, "415": 1}
    assert after["in_flight"] == 0 and counted_requests(after) - counted_requests(before) == 12 == len(statuses) + 1


def test_more_requests_than_the_bound_get_503_with_retry_after_at_once(replica, monkeypatch):
    """The bound (one batch + max_queued) admitted and held in the batch: /stats still answers (in_flight at the
    bound), and the next requests get 503 with Retry-After at once, without joining a batch; once the batch is let go
    the held ones get 200. Counters: ok + overloaded + pages = the requests sent."""
    from zsseg_rt.scale.records import counted_requests

    limit, arrived = replica.in_flight_limit, []
    all_in, release = asyncio.Event(), asyncio.Event()

    async def held(item):  # a replica busy with a long batch
        arrived.append(item)
        if len(arrived) == limit:
            all_in.set()
        await release.wait()
        return (await replica.run_batch([item]))[0]

    monkeypatch.setattr(replica, "segment_batch", held)

    async def scenario():
        holding = [asyncio.ensure_future(_answer(replica, png_bytes())) for _ in range(limit)]
        await all_in.wait()
        stats = await _answer(replica, b"", method="GET", path="/stats")
        refused = [await _answer(replica, png_bytes()) for _ in range(2)]
        release.set()
        return stats, refused, await asyncio.gather(*holding)

    before = replica._stats()
    (status, stats, _), refused, held_answers = _bounded(scenario(), "the requests past the bound were not refused")
    after = replica._stats()
    assert status == 200 and (stats["in_flight"], stats["in_flight_limit"]) == (limit, 3), stats
    for status, answer, headers in refused:
        assert status == 503 and int(headers["retry-after"]) >= 1, (status, answer, dict(headers))
        assert answer["error"].startswith("the server is busy: 3 requests are being segmented or waiting"), answer
        assert f"send it again after {headers['retry-after']} s (Retry-After)" in answer["error"], answer
    assert len(arrived) == limit  # the refused ones never reached a batch
    assert [answer[0] for answer in held_answers] == [200] * limit
    assert {k: v for k, v in _delta(after, before).items() if v} == {
        "ok": 3,
        "overloaded": 2,
        "pages": 1,
        "requests": 5,
    }
    assert after["in_flight"] == 0 and counted_requests(after) - counted_requests(before) == limit + 2 + 1


def test_uploads_hold_their_place_until_they_end(replica, batch_of_one):
    """Stalled uploads count against the bound (their bodies are being read): a request beyond it gets 503; once
    they are cancelled (their clients gone) the places are free again and a request gets 200."""
    limit = replica.in_flight_limit

    async def scenario():
        stalled = [request(png_bytes(), mode="stalled") for _ in range(limit)]
        tasks = [asyncio.ensure_future(replica(req)) for req, _ in stalled]
        for _, upload in stalled:
            await upload.reading.wait()
        busy = (await _answer(replica, png_bytes()))[0]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        return busy, (await _answer(replica, png_bytes()))[0]

    before = replica._stats()
    assert _bounded(scenario(), "the stalled uploads did not hold their places") == (503, 200)
    after = replica._stats()
    assert {k: v for k, v in _delta(after, before).items() if v} == {
        "aborted": limit,
        "overloaded": 1,
        "ok": 1,
        "requests": limit + 2,
    }
    assert after["in_flight"] == 0


def test_ray_serve_bounds_the_queue_in_front_of_the_replica(tiny_bundle):
    """In front of the replica's own bound, Ray Serve's: at most the bound plus a headroom for pages and refusals
    routed to a replica at once, as many waiting at each proxy, and its own 503 with Retry-After past that (it queued
    without a bound before); the bound follows --max-batch-size and --max-queued (default: twice the batch)."""
    pytest.importorskip("ray", reason="the serve tests need the 'scale' extra (ray[data,serve])")
    from zsseg_rt.scale.serve import RAY_HEADROOM, build_app, in_flight_limit

    assert in_flight_limit(8) == 24 and in_flight_limit(4, 0) == 4
    with pytest.raises(ValueError, match="max_queued >= 0"):
        in_flight_limit(8, -1)
    for batch, queued, limit in ((8, None, 24), (2, 5, 7)):
        deployment = build_app(tiny_bundle, VOCAB, max_batch_size=batch, max_queued=queued)._bound_deployment
        assert deployment.max_ongoing_requests == deployment.max_queued_requests == limit + RAY_HEADROOM
        assert (deployment.backpressure_config.status_code, deployment.backpressure_config.retry_after_s) == (503, 1)
        assert deployment.init_kwargs["max_queued"] == queued  # the replica gets the same bound
