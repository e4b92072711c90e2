"""``zsseg serve`` on Ray Serve, on the shared local Ray cluster, HTTP on 127.0.0.1 only: answers equal to the
local Engine (default and per-request vocabularies), bad requests get HTTP 400 with a message, batching happens,
and a bounded load test ends with no errors."""

from __future__ import annotations

import socket

import cv2
import numpy as np
import pytest
from support import VOCAB10 as VOCAB

from zsseg_rt.assets import sample_images
from zsseg_rt.runtime import Engine

# Ray start-up (~15-25 s on 2 cores) and actor pools: slow, but run by CI (tools/run_tests.sh runs all).
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(ray_cluster, tiny_bundle):
    """The server on a free 127.0.0.1 port: yields its base URL; shut down after the module."""
    from ray import serve

    from zsseg_rt.scale.serve import run_server

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    run_server(
        tiny_bundle,
        VOCAB,
        host="127.0.0.1",
        port=port,
        cpus_per_replica=0.5,
        max_batch_size=4,
        batch_wait_s=0.05,
        backend="onnxruntime",
    )
    yield f"http://127.0.0.1:{port}"
    serve.shutdown()


@pytest.fixture(scope="module")
def photos():
    """(encoded bytes, decoded BGR) of the 4 packaged samples, shrunk to 160 px wide to keep the test quick."""
    out = []
    for path in sample_images():
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        image = cv2.resize(image, (160, int(round(160 * image.shape[0] / image.shape[1]))))
        ok, data = cv2.imencode(".png", image)
        assert ok
        out.append((data.tobytes(), image))
    return out


def test_answers_equal_local_engine(server, tiny_bundle, photos):
    from zsseg_rt.scale.loadtest import post_image
    from zsseg_rt.scale.serve import decode_labels

    engine = Engine(tiny_bundle, classes=VOCAB, backend="onnxruntime")
    other = ["cat", "sofa", "floor", "wall"]
    seen_labels = set()
    for data, image in photos:
        status, answer = post_image(server + "/segment", data)
        assert status == 200 and answer["class_names"] == VOCAB
        expected = engine(image).labels
        np.testing.assert_array_equal(decode_labels(answer), expected)
        seen_labels |= set(np.unique(expected).tolist())
        status, answer = post_image(server + "/segment", data, classes=other)
        engine.set_classes(other)
        np.testing.assert_array_equal(decode_labels(answer), engine(image).labels)
        assert status == 200 and answer["class_names"] == other
        engine.set_classes(VOCAB)
    assert len(seen_labels) >= 3  # a comparison that can fail: several classes win


def test_bad_requests_get_400(server):
    from zsseg_rt.scale.loadtest import post_image

    status, answer = post_image(server + "/segment", b"definitely not a picture")
    assert status == 400 and "not an image" in answer["error"]
    status, answer = post_image(server + "/segment", b"")
    assert status == 400 and "empty request body" in answer["error"]
    ok, png = cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))
    status, answer = post_image(server + "/segment", png.tobytes(), classes=["cat", "cat"])
    assert status == 400 and "cat" in answer["error"]


def test_bounded_load_test_batches_without_errors(server, tiny_bundle, photos):
    from zsseg_rt.scale.loadtest import get_json, run_load_test
    from zsseg_rt.scale.serve import decode_labels

    before = get_json(server + "/stats")
    result = run_load_test(server + "/segment", [d for d, _ in photos], requests=24, concurrency=6, max_seconds=90)
    summary = result.summary()
    assert result.errors == [] and summary["completed"] == 24
    engine = Engine(tiny_bundle, classes=VOCAB, backend="onnxruntime")
    expected = [engine(image).labels for _, image in photos]
    for index, answer in enumerate(result.answers):
        np.testing.assert_array_equal(decode_labels(answer), expected[index % len(photos)])
    after = get_json(server + "/stats")
    assert after["images"] - before["images"] == 24
    batches = after["batches"] - before["batches"]
    assert batches < 24, "6 concurrent clients never shared a batch"
    assert summary["p99_ms"] >= summary["p50_ms"] > 0
