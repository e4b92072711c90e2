"""``zsseg serve --max-batch-size N``: the requests Ray Serve gathers into one batch go through one batched
``Engine([...])`` call per vocabulary (``runtime/pipelines``: their windows packed into shared encoder calls), and
every client gets the answer it gets alone. Tested on the replica class outside Ray Serve (as
test_serve_refusals.py; the Ray Serve round trip with batching is test_serve.py's load test)."""

from __future__ import annotations

import os

import numpy as np
import pytest
from support import VOCAB10 as VOCAB


@pytest.fixture(scope="module")
def replica(tiny_bundle):
    from zsseg_rt.scale import LOOPBACK_ENV

    os.environ[LOOPBACK_ENV] = "0"  # before the first import of ray (as conftest.ray_cluster)
    pytest.importorskip("ray", reason="the serve tests need the 'scale' extra (ray[data,serve])")
    from zsseg_rt.scale.serve import SegmentationServer

    return SegmentationServer(tiny_bundle, VOCAB, backend="onnxruntime", max_batch_size=8, max_pixels=2_000_000)


def test_a_batch_of_requests_gets_the_answers_of_single_requests(replica):
    from zsseg_rt.scale.serve import decode_labels, decode_scores

    rng = np.random.default_rng(7)
    sizes = [(64, 64), (40, 150), (90, 70), (20, 20), (120, 64)]  # one and several windows
    other = ("cat", "sofa", "floor")
    items = [(rng.integers(0, 255, (*hw, 3), dtype=np.uint8), tuple(VOCAB), True, False) for hw in sizes]
    items.insert(2, (items[0][0], other, True, True))  # a second vocabulary in the same batch
    calls = []
    segment_many = replica.engine.pipeline.segment_many
    replica.engine.pipeline.segment_many = lambda images, *a: calls.append(len(images)) or segment_many(images, *a)
    try:
        batched = replica._segment_groups(items)
        assert sorted(calls) == [1, len(sizes)], "one batched Engine call per vocabulary"
        singles = [replica._segment_groups([item])[0] for item in items]
    finally:
        replica.engine.pipeline.segment_many = segment_many
    for index, ((many, _), (one, _)) in enumerate(zip(batched, singles)):
        np.testing.assert_array_equal(decode_labels(many), decode_labels(one), err_msg=f"request {index}")
        # scores travel as a 16-bit quantisation of their range; batching moves them by at most the fp32 bound
        # of test_batched_call.py (1e-5), so at most one quantisation step apart
        low, high = one["scores_range"]
        np.testing.assert_allclose(decode_scores(many), decode_scores(one), rtol=0, atol=(high - low) / 65535 + 1e-5)
        drop = {"scores_png", "scores_range"}
        assert {k: v for k, v in many.items() if k not in drop} == {k: v for k, v in one.items() if k not in drop}
