"""`zsseg serve` refuses what it can before a request joins a batch (issue 37, defect 6): an image the Engine would
refuse (1 x 5000: 512 x 2560000 after the test rescale; a side over 262144 pixels) is answered at once, not after
the batch it would have joined (under load, bad requests waited 24.9 s at p99 while the cheap refusals took 16 ms).
The replica class runs here without Ray Serve (no cluster: a second or two), its batch held on purpose."""

from __future__ import annotations

import asyncio
import json
import os

import cv2
import numpy as np
import pytest
from support import VOCAB10 as VOCAB


@pytest.fixture(scope="module")
def replica(tiny_bundle):
    """The deployment's class, constructed as a replica would construct it (one Engine), outside Ray Serve."""
    from zsseg_rt.scale import LOOPBACK_ENV

    os.environ[LOOPBACK_ENV] = (
        "0"  # before the first import of ray (as conftest.ray_cluster): later clusters on loopback
    )
    pytest.importorskip("ray", reason="the serve tests need the 'scale' extra (ray[data,serve])")
    from zsseg_rt.scale.serve import SegmentationServer

    return SegmentationServer(tiny_bundle, VOCAB, backend="onnxruntime", max_pixels=2_000_000)


def _request(body: bytes, query: str = ""):
    """A Starlette request for ``POST /segment?query`` with ``body``, as the HTTP proxy hands it to the replica."""
    from starlette.requests import Request

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/segment",
        "root_path": "",
        "query_string": query.encode(),
        "headers": [(b"content-length", str(len(body)).encode()), (b"content-type", b"image/png")],
    }
    messages = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive():
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    return Request(scope, receive)


def _png(image: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".png", image)
    assert ok
    return data.tobytes()


def test_refusals_do_not_wait_for_a_slow_batch(replica, monkeypatch):
    """A good request is in a batch that cannot finish until the refusals are answered; then three the Engine
    refuses are sent: each gets its 4xx without joining a batch (the batch sees the good one only), and the good
    one gets 200 after. Before, each refusal came from inside a batch, after it. No clock (it was a 3 s batch and
    refusals within 1 s, which a loaded machine can miss): a refused image that joins a batch releases it and fails
    the test instead of deadlocking it."""
    seen = []
    original = replica._segment_groups
    busy, refusals_answered = asyncio.Event(), asyncio.Event()

    async def blocked_batch(item):  # one request per batch; the good one's waits for the refusals (a busy replica)
        seen.append(item[0].shape)
        busy.set()
        if len(seen) > 1:  # a refused image joined a batch (the defect): release the first (asserted below)
            refusals_answered.set()
        await refusals_answered.wait()
        return original([item])[0]

    monkeypatch.setattr(replica, "segment_batch", blocked_batch)
    # the official ZegCLIP test resize, short side 512 whatever the long side (the tiny bundle's [256, 64] shrinks an
    # elongated image instead): 1 x 5000 becomes 512 x 2560000, past the Engine's limit of rescaled pixels
    monkeypatch.setattr(replica.engine.pipeline, "test_scale", [None, 512])
    good = _png(np.full((24, 32, 3), 120, np.uint8))
    bad = {
        "thin": (_png(np.full((1, 5000, 3), 90, np.uint8)), "", 413, "is rescaled to 512x2560000 = 1310720000 pixels"),
        "long": (_png(np.full((1, 300000, 3), 90, np.uint8)), "", 413, "side longer than 262144 pixels"),
        "classes": (good, "classes=cat,cat", 400, "cat"),
    }
    before = dict(replica.stats)

    async def answer(body, query):
        response = await replica(_request(body, query))
        return response.status_code, json.loads(response.body)

    async def send_all():
        first = asyncio.ensure_future(answer(good, ""))
        await busy.wait()  # the good request is in its batch
        refused = await asyncio.gather(*(answer(body, query) for body, query, _, _ in bad.values()))
        refusals_answered.set()
        return await first, refused

    (status, answer_good), refused = asyncio.run(send_all())
    assert status == 200 and answer_good["height"] == 24, status
    assert seen == [(24, 32, 3)], f"refused images joined a batch: {seen}"
    for (name, (_, _, code, message)), (status, answer_bad) in zip(bad.items(), refused):
        assert (status, message in answer_bad["error"]) == (code, True), (name, status, answer_bad)
    assert replica.stats["bad_requests"] - before["bad_requests"] == 3
    assert replica.stats["refused_images"] == before["refused_images"]  # none from inside a batch


def test_named_vocabulary_and_synonyms_in_a_request(replica, tiny_bundle, monkeypatch):
    """`?classes=voc21` is the named vocabulary (its 21 official classes, background first), as everywhere else in
    the package; it was taken as one class called "voc21". Synonyms (`;`) stay one class."""
    from zsseg_rt.runtime import Engine
    from zsseg_rt.scale.serve import decode_labels

    async def batch_of_one(item):  # (Ray Serve's batching needs a replica context)
        return replica._segment_groups([item])[0]

    monkeypatch.setattr(replica, "segment_batch", batch_of_one)
    image = cv2.resize(cv2.imread(str(_sample()), cv2.IMREAD_COLOR), (96, 64))
    engine = Engine(tiny_bundle, classes="voc21", backend="onnxruntime")
    for query, expected_classes in (("classes=voc21", engine.class_names), ("classes=cat; kitty, dog", ["cat", "dog"])):
        response = asyncio.run(replica(_request(_png(image), query + "&labels=raw")))
        answer = json.loads(response.body)
        assert response.status_code == 200, answer
        assert answer["classes"] == list(expected_classes)
    engine.set_classes("cat; kitty, dog")
    np.testing.assert_array_equal(decode_labels(answer), engine(image).labels)


def _sample():
    from zsseg_rt.assets import sample_images

    return list(sample_images())[0]


def test_limit_refusals_tell_the_client_what_it_can_do(tmp_path):
    """A 413 tells whoever sent the request what they can do (send a smaller image), not which server flag to raise
    (`--max-pixels`, `$ZSSEG_MAX_PIXELS`): a web user cannot set those. Over the pixel limit (from the header) and
    over the byte limit (from Content-Length, and while a body streams in)."""
    from support import write_bilevel_png

    from zsseg_rt.scale.serve_http import RequestError, decode_request_image, read_body

    write_bilevel_png(tmp_path / "bomb.png", 30000, 30000)
    messages = []
    with pytest.raises(RequestError) as refused:
        decode_request_image((tmp_path / "bomb.png").read_bytes(), 2_000_000)
    assert refused.value.status == 413 and "30000x30000 = 900.0 MP, over the 2 MP limit" in str(refused.value)
    messages.append(str(refused.value))

    async def chunks():
        for _ in range(4):
            yield b"\0" * 1000

    for headers in ({"content-length": "5000"}, {}):
        with pytest.raises(RequestError) as refused:
            asyncio.run(read_body(headers, chunks(), 2500))
        assert refused.value.status == 413 and "more than the 2500" in str(refused.value)
        messages.append(str(refused.value))
    for message in messages:
        assert "send a smaller image" in message, message
        assert "--max-pixels" not in message and "ZSSEG_MAX_PIXELS" not in message, message
