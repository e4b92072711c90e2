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
from replica_requests import PNG, request
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


def _request(body: bytes, query: str = "", headers=(PNG,), method="POST", path="/segment"):
    """A Starlette request for ``METHOD PATH?query`` with ``body`` and ``headers`` (a ``Content-Length`` added), as the
    HTTP proxy hands it to the replica; a ``body`` of None: the client disconnects after sending half of a 1000-byte
    body it announced."""
    if body is None:
        return request(b"\0" * 1000, query, headers, method, path, mode="closed")[0]
    return request(body, query, headers, method, path)[0]


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


def _answer(replica, *args, **kwargs):
    response = asyncio.run(replica(_request(*args, **kwargs)))
    return response.status_code, (json.loads(response.body) if response.body else None)


def test_a_foreign_host_gets_403_on_a_loopback_server(replica, monkeypatch):
    """On 127.0.0.1 the server answers only requests addressed to a loopback name, on every path (the camera's
    preview answered 403, `zsseg serve` 200: a page of another site that re-points its own name at 127.0.0.1, DNS
    rebinding, could use it and read the answers). Bound elsewhere (0.0.0.0), its names are not known: every Host."""
    monkeypatch.setattr(replica, "host", "127.0.0.1", raising=False)  # (raising=False: c783dbf had no host)
    good = _png(np.full((24, 32, 3), 120, np.uint8))
    before = dict(replica.stats)
    for method, path in (("POST", "/segment"), ("GET", "/"), ("GET", "/info"), ("GET", "/stats")):
        status, answer = _answer(
            replica, good, headers=(("host", "evil.example"), ("content-type", "image/png")), method=method, path=path
        )
        assert status == 403 and "Host 'evil.example' is refused" in answer["error"], (path, status, answer)
    assert replica.stats["forbidden"] - before["forbidden"] == 4
    assert replica.stats["requests"] == before["requests"]  # refused before it counts as a segmentation request
    for host in ("127.0.0.1:8000", "localhost:8000", "[::1]:8000", "LOCALHOST"):
        status, _ = _answer(
            replica, None, headers=(("host", host), ("content-type", "image/png")), method="GET", path="/info"
        )
        assert status == 200, host
    monkeypatch.setattr(replica, "host", "0.0.0.0")
    status, _ = _answer(replica, None, headers=(("host", "evil.example"),), method="GET", path="/info")
    assert status == 200


def test_a_body_not_sent_as_an_image_gets_415(replica):
    """A web form of another site can post text/plain (and form data, or a script no type at all) to a server on
    this machine without a CORS preflight: refused with 415 and what to send; image/* and application/octet-stream
    are taken."""
    good = _png(np.full((24, 32, 3), 120, np.uint8))
    before = dict(replica.stats)
    for kind in (
        "text/plain",
        "text/plain; charset=UTF-8",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        None,
    ):
        headers = (("content-type", kind),) if kind else ()
        status, answer = _answer(replica, good, headers=headers)
        assert status == 415, (kind, status, answer)
        assert answer["error"].startswith("send the image's bytes with Content-Type image/jpeg, image/png, ..."), answer
        assert repr(kind.split(";")[0] if kind else "no Content-Type") in answer["error"], answer
    assert replica.stats["bad_requests"] - before["bad_requests"] == 5 and replica.stats["images"] == before["images"]
    for kind in ("image/png", "image/jpeg", "application/octet-stream", "IMAGE/PNG"):
        assert _refusal_before_the_batch(replica, good, headers=(("content-type", kind),)) is None, kind


def _refusal_before_the_batch(replica, body, query="", headers=(("content-type", "image/png"),)):
    """The (status, answer) of a request refused before it joins a batch, or None when it reached the batch."""
    reached = []

    async def no_batch(item):  # an empty answer: the request got this far
        reached.append(item)
        return {}, 0.0

    original = replica.segment_batch
    replica.segment_batch = no_batch
    try:
        status, answer = _answer(replica, body, query, headers=headers)
    finally:
        replica.segment_batch = original
    return None if reached else (status, answer)


def test_classes_given_empty_or_twice_are_refused(replica):
    """`?classes=` empty silently used the default vocabulary, and `?classes=a&classes=b` silently kept `b`; the
    command line and the camera's preview refuse both: 400, saying how to give classes."""
    good = _png(np.full((24, 32, 3), 120, np.uint8))
    for query, message in (
        ("classes=", "?classes= is empty: give class names separated by commas"),
        ("classes=%20", "?classes= is empty"),
        ("classes=cat&classes=dog", "?classes= is given 2 times ('cat' and 'dog'): give it once"),
        ("classes=cat&classes=", "?classes= is given 2 times"),
    ):
        status, answer = _refusal_before_the_batch(replica, good, query)
        assert status == 400 and message in answer["error"], (query, status, answer)
    assert _refusal_before_the_batch(replica, good, "classes=cat,dog") is None
    assert _refusal_before_the_batch(replica, good, "") is None  # no ?classes=: the default vocabulary


def test_an_aborted_upload_is_counted_as_aborted_not_as_a_server_error(replica):
    """A client that closes the connection mid-upload was counted in /stats as a server error (500)."""
    before = dict(replica.stats)
    status, _ = _answer(replica, None)
    assert status == 499  # nginx's "client closed request": nobody is there to get it
    stats = replica._stats()
    assert stats["aborted"] - before["aborted"] == 1 and stats["errors"] == before["errors"], stats
    assert stats["bad_requests"] == before["bad_requests"] and stats["requests"] - before["requests"] == 1


def test_unknown_or_repeated_query_parameters_are_refused(replica):
    """N15 (issue 64, probe U7): `?clases=cat,dog` and `?Classes=cat` were answered 200 with the server's default
    vocabulary, and `?scores=0&scores=1` kept one of them silently: 400 naming what POST /segment reads."""
    good = _png(np.full((24, 32, 3), 120, np.uint8))
    known = "POST /segment reads ?classes=, ?scores=, ?labels=, ?objects= (names are case-sensitive)"
    for query, message in (
        ("clases=cat,dog", f"unknown query parameter 'clases': {known}"),
        ("Classes=cat", f"unknown query parameter 'Classes': {known}"),
        ("classes=cat&Scores=0&lables=raw", f"unknown query parameters 'Scores', 'lables': {known}"),
        ("scores=0&scores=1", "?scores= is given 2 times ('0', '1'): give it once"),
        ("labels=raw&labels=png", "?labels= is given 2 times ('raw', 'png'): give it once"),
    ):
        status, answer = _refusal_before_the_batch(replica, good, query)
        assert status == 400 and answer["error"] == message, (query, status, answer)
    assert _refusal_before_the_batch(replica, good, "classes=cat&scores=0&labels=raw") is None  # the web page's
