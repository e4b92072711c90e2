"""`zsseg serve` stopping (issue 79, F7: on SIGTERM with requests queued, 23 of 100 clients got Ray's plain-text 404
"Path '/segment' not found"): every request after the stop gets a JSON 503 with Retry-After, the admitted ones are
answered, the driver waits for them and never deletes the application (the route) while the proxy listens. On the
replica class run without Ray Serve, with the stop flag run in-process (no cluster: a second or two); no clock: the
batch is held on an event."""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import os
import sys
import types

import pytest
from replica_requests import png_bytes, request
from support import VOCAB10 as VOCAB


class _InProcess:
    """A Ray actor handle's shape (``handle.method.remote(*args)`` gives an awaitable) over a local object."""

    def __init__(self, target):
        self._target = target

    def __getattr__(self, name):
        method = getattr(self._target, name)

        async def call(*args):
            result = method(*args)
            return await result if inspect.isawaitable(result) else result

        return types.SimpleNamespace(remote=call)


@pytest.fixture(scope="module")
def replica(tiny_bundle):
    from zsseg_rt.scale import LOOPBACK_ENV

    os.environ[LOOPBACK_ENV] = "0"  # before the first import of ray (as conftest.ray_cluster)
    pytest.importorskip("ray", reason="the serve tests need the 'scale' extra (ray[data,serve])")
    from zsseg_rt.scale.serve import SegmentationServer

    return SegmentationServer(
        tiny_bundle, VOCAB, backend="onnxruntime", max_pixels=2_000_000, max_batch_size=2, max_queued=1,
        stop_flag="a-flag",
    )  # fmt: skip


async def _answer(replica, *args, **kwargs):
    response = await replica(request(*args, **kwargs)[0])
    return response.status_code, json.loads(response.body), response.headers


def test_a_stopping_replica_answers_503_with_retry_after_and_finishes_what_it_admitted(replica, monkeypatch):
    from zsseg_rt.scale.serve_stop import STOPPING_RETRY_S, StopFlag, StopWatch

    flag, held, release = StopFlag(), [], asyncio.Event()

    async def batch(item):  # a replica busy with a long batch
        held.append(item)
        await release.wait()
        return (await replica.run_batch([item]))[0]

    monkeypatch.setattr(replica, "segment_batch", batch)

    async def scenario():
        # the replica's first request makes its watch (here on the in-process flag, as _stopping does on the actor)
        replica.stop_watch = StopWatch(_InProcess(flag), "r1")
        await replica.stop_watch.start(lambda: replica.in_flight)
        admitted = [asyncio.ensure_future(_answer(replica, png_bytes())) for _ in range(2)]
        while len(held) < 2:
            await asyncio.sleep(0)
        flag.stop()  # the driver, on SIGTERM
        for _ in range(20):
            await asyncio.sleep(0)
        after_stop = [await _answer(replica, png_bytes()), await _answer(replica, b"", method="GET", path="/info")]
        busy = flag.pending()  # the driver waits: the admitted requests are not answered yet
        release.set()
        answers = await asyncio.gather(*admitted)
        for _ in range(20):
            await asyncio.sleep(0)
        return after_stop, busy, answers, flag.pending()

    before = replica._stats()
    after_stop, busy, answers, pending = asyncio.run(asyncio.wait_for(scenario(), 30))
    after = replica._stats()
    for status, answer, headers in after_stop:
        assert status == 503 and headers["retry-after"] == str(STOPPING_RETRY_S), (status, answer)
        assert answer["error"].startswith("the server is stopping: this request was not processed"), answer
    assert [status for status, _, _ in answers] == [200, 200]  # what it admitted is answered
    assert busy == ["r1"] and pending == []  # drained only once they were
    assert len(held) == 2  # the requests after the stop never reached a batch
    counted = {k: after[k] - before[k] for k in ("requests", "ok", "overloaded", "pages")}
    assert counted == {"requests": 3, "ok": 2, "overloaded": 1, "pages": 1}, counted


def test_a_replica_first_asked_after_the_stop_admits_nothing(tiny_bundle, replica):
    from zsseg_rt.scale.serve_stop import StopFlag, StopWatch

    flag = StopFlag()
    flag.stop()

    async def scenario():
        replica.stop_watch = StopWatch(_InProcess(flag), "r2")
        await replica.stop_watch.start(lambda: replica.in_flight)
        answer = await _answer(replica, png_bytes())
        for _ in range(20):
            await asyncio.sleep(0)
        return answer, flag.pending()

    (status, _, _), pending = asyncio.run(asyncio.wait_for(scenario(), 30))
    assert status == 503 and pending == []


def test_shut_down_drains_and_never_deletes_the_route_while_the_proxy_listens(monkeypatch):
    """The 404 is Ray's proxy answering a path no application's route matches (ray/serve/_private/proxy.py,
    not_found_response): serve.delete took the route off while the proxy still listened. Now the replicas are drained
    and the cluster ends as a whole, the proxy with it."""
    from zsseg_rt.scale import LOOPBACK_ENV

    os.environ[LOOPBACK_ENV] = "0"  # before the first import of ray (as conftest.ray_cluster)
    pytest.importorskip("ray", reason="the serve tests need the 'scale' extra (ray[data,serve])")
    import zsseg_rt.scale.serve  # noqa: F401 - imported with the real Ray, as it is by the time serve stops
    from zsseg_rt.cli import serve as serve_cli
    from zsseg_rt.scale import serve_stop

    calls = []
    fake_serve = types.SimpleNamespace(
        delete=lambda name: calls.append(("serve.delete", name)), shutdown=lambda: calls.append(("serve.shutdown",))
    )
    fake_ray = types.SimpleNamespace(
        is_initialized=lambda: True, shutdown=lambda: calls.append(("ray.shutdown",)), serve=fake_serve
    )
    exceptions = types.SimpleNamespace(RayServeException=RuntimeError)
    monkeypatch.setitem(sys.modules, "ray", fake_ray)
    monkeypatch.setitem(sys.modules, "ray.serve", fake_serve)
    monkeypatch.setitem(sys.modules, "ray.serve.exceptions", exceptions)
    monkeypatch.setattr(serve_stop, "stop_accepting", lambda: calls.append(("stop_accepting",)) or [])
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    serve_cli._shut_down(argparse.Namespace(address=None), {"serve": True})
    assert calls == [("stop_accepting",), ("ray.shutdown",)], calls


def test_shut_down_on_the_callers_ray_ends_only_the_serve_it_started(monkeypatch):
    """``cli.main(["serve", ...])`` in a process connected to Ray before the command (``started["ray_before"]``): the
    Serve it started is shut down, the caller's Ray is left running (neither drained as the private cluster's whole
    nor ray.shutdown())."""
    from zsseg_rt.scale import LOOPBACK_ENV

    os.environ[LOOPBACK_ENV] = "0"  # before the first import of ray (as conftest.ray_cluster)
    pytest.importorskip("ray", reason="the serve tests need the 'scale' extra (ray[data,serve])")
    import zsseg_rt.scale.serve  # noqa: F401 - imported with the real Ray, as it is by the time serve stops
    from zsseg_rt.cli import serve as serve_cli
    from zsseg_rt.scale import serve_stop

    calls = []
    fake_serve = types.SimpleNamespace(shutdown=lambda: calls.append(("serve.shutdown",)))
    fake_ray = types.SimpleNamespace(
        is_initialized=lambda: True, shutdown=lambda: calls.append(("ray.shutdown",)), serve=fake_serve
    )
    monkeypatch.setitem(sys.modules, "ray", fake_ray)
    monkeypatch.setitem(sys.modules, "ray.serve", fake_serve)
    monkeypatch.setattr(serve_stop, "stop_accepting", lambda: calls.append(("stop_accepting",)) or [])
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    serve_cli._shut_down(argparse.Namespace(address=None), {"serve": True, "ray_before": True})
    assert calls == [("serve.shutdown",)], calls
    calls.clear()
    serve_cli._shut_down(argparse.Namespace(address=None), {"ray_before": True})  # refused before Serve started
    assert calls == [], calls
