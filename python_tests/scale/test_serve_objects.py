"""``POST /segment?objects=1`` (issue 81, item 2): the answer's "objects" equal the objects computed independently
(``objects_reference``: scipy.ndimage.label, 8-connectivity) on the answer's own label map, with the server's limits
(``--object-min-area``, ``--max-objects``: the replica's Engine options); each mask decoded by pycocotools equal to
its region; left out by default; the flag's value checked as ``?scores=``'s. On the replica class run without Ray
Serve (no cluster)."""

from __future__ import annotations

import asyncio
import json
import os

import cv2
import numpy as np
import pytest
from objects_reference import min_pixels, reference
from replica_requests import request

coco_mask = pytest.importorskip("pycocotools.mask")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pycocotools' decode under NumPy 2

VOCAB = "a,b,c"
MIN_AREA, CAP = 0.002, 6


@pytest.fixture(scope="module")
def replica(tiny_bundle):
    from zsseg_rt.scale import LOOPBACK_ENV

    os.environ[LOOPBACK_ENV] = "0"  # before the first import of ray (as conftest.ray_cluster)
    pytest.importorskip("ray", reason="the serve tests need the 'scale' extra (ray[data,serve])")
    from zsseg_rt.scale.serve import SegmentationServer

    return SegmentationServer(
        tiny_bundle, VOCAB, backend="onnxruntime", max_pixels=2_000_000, object_min_area=MIN_AREA, max_objects=CAP
    )


@pytest.fixture
def batch_of_one(replica, monkeypatch):
    async def one(item):  # (Ray Serve's batching needs a replica context)
        return (await replica.run_batch([item]))[0]

    monkeypatch.setattr(replica, "segment_batch", one)


def _answer(replica, body: bytes, query: str):
    response = asyncio.run(replica(request(body, query)[0]))
    return response.status_code, json.loads(response.body)


def _photo() -> bytes:
    """Blocks of noise at a few scales: regions of every class, of many sizes."""
    rng = np.random.default_rng(7)
    image = cv2.resize(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8), (96, 72), interpolation=cv2.INTER_NEAREST)
    ok, data = cv2.imencode(".png", image)
    assert ok
    return data.tobytes()


def test_objects_are_answered_when_asked(replica, batch_of_one):
    from zsseg_rt.scale.serve_http import decode_labels

    status, answer = _answer(replica, _photo(), "objects=1&scores=0")
    assert status == 200, answer
    labels = decode_labels(answer).astype(np.int32)
    want, dropped = reference(labels, answer["classes"], None, None, min_pixels(MIN_AREA, labels.size), CAP)
    got = answer["objects"]
    assert got["dropped"] == dropped
    assert [(o["class_id"], o["name"], o["box"], o["area"]) for o in got["objects"]] == [
        (w["class_id"], w["name"], list(w["box"]), w["area"]) for w in want
    ]
    assert [c for o in got["objects"] for c in o["centroid"]] == pytest.approx([c for w in want for c in w["centroid"]])
    for item, expected in zip(got["objects"], want):
        decoded = coco_mask.decode({"size": item["rle"]["size"], "counts": item["rle"]["counts"].encode()})
        assert np.array_equal(decoded.astype(bool), expected["mask"])
        assert np.isfinite(item["score"])
    assert len(got["objects"]) > 1, "control: the photo gives objects"

    status, plain = _answer(replica, _photo(), "")
    assert status == 200 and "objects" not in plain  # not asked: not computed, not sent
    status, off = _answer(replica, _photo(), "objects=0")
    assert status == 200 and "objects" not in off


@pytest.mark.parametrize(
    "query, message",
    [
        ("objects=2", "?objects= takes 1 or 0 (true/false), got '2'"),
        ("objects=1&objects=0", "?objects= is given 2 times ('1', '0'): give it once"),
        ("object=1", "unknown query parameter 'object': POST /segment reads ?classes=, ?scores=, ?labels=, ?objects="),
    ],
)
def test_a_bad_objects_flag_is_refused(replica, batch_of_one, query, message):
    status, answer = _answer(replica, _photo(), query)
    assert status == 400 and answer["error"].startswith(message), answer
