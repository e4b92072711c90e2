"""The two-stage gate (ZegFormer) judges three vocabularies at the cost of about one for its CLIP crop encoder (issue
75 item 7: the gate judges several vocabularies; on a two-stage pipeline each vocabulary re-ran the whole pipeline,
the crop encoder included, which is about 90 % of ZegFormer's time on the CPU): each side encodes a photo's crops
once, whatever the vocabularies, and the gate's report is the one it gives when every call runs its graph."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

pytest.importorskip("torch", reason="the tiny two-stage bundle is exported from its PyTorch model")

from support import record_made  # noqa: E402

from zsseg_rt.bundle import load_meta  # noqa: E402
from zsseg_rt.prepare import gate_two_stage  # noqa: E402
from zsseg_rt.runtime.backends import TwoStageGraphs, open_reference  # noqa: E402

GIVEN = ["cat", "dog", "person", "sofa", "chair"]  # build-engine --classes: the third vocabulary


class _Noisy:
    """A runner whose crop embeddings get noise drawn from their inputs' bytes (the same crops, the same noise), so
    that the gate's labels and agreement depend on every embedding: a remembered answer for other crops would show."""

    def __init__(self, inner):
        self.inner, self.name = inner, "noisy"

    def run(self, role, feeds, outputs):
        result = self.inner.run(role, feeds, outputs)
        if role != "clip_image":
            return result
        seed = int.from_bytes(hashlib.sha256(np.ascontiguousarray(next(iter(feeds.values()))).tobytes()).digest()[:8])
        rng = np.random.default_rng(seed)
        return [value + 0.5 * rng.standard_normal(value.shape).astype(value.dtype) for value in result]

    def batch_limit(self, role, input):
        return self.inner.batch_limit(role, input)


def _gate(monkeypatch, bundle, remembered):
    """The gate of a noisy fp32 ONNX Runtime runner against a plain one, with the crop encoder remembered or not;
    the two sides' runners (in the order the gate makes them) as they ran."""
    sides = record_made(monkeypatch, gate_two_stage, "GateRunner")
    monkeypatch.setattr(gate_two_stage, "REMEMBERED_ROLES", remembered)
    meta = load_meta(bundle)
    candidate, reference = (
        open_reference(meta, roles=TwoStageGraphs.roles, adapter=TwoStageGraphs).runner for _ in range(2)
    )
    candidate = _Noisy(candidate)  # its crop embeddings differ from the reference's: the report depends on them
    report = gate_two_stage.run_two_stage_gate(meta, candidate, reference, "fp16", classes=GIVEN, max_batch=4)
    return report.as_dict(), sides


@pytest.mark.time_bound(600)
def test_each_side_encodes_a_photos_crops_once_whatever_the_vocabularies(monkeypatch, family_bundles):
    bundle = family_bundles["zegformer"]
    remembering, sides = _gate(monkeypatch, bundle, ("clip_image",))
    every_call, control = _gate(monkeypatch, bundle, ())
    judged = [vocabulary["name"] for vocabulary in remembering["vocabularies"]]
    assert len(judged) == 3, remembering["vocabularies"]  # VOC, COCO-Stuff and the given names
    assert remembering == every_call  # the same report, to the last digit
    assert 0 < remembering["label_agreement"] < 1, remembering  # the noise changed labels: the report reads them
    for ran, all_ran in zip(sides, control):  # each side with its own control
        assert all_ran.remembered == {} and ran.computed["mask"] == all_ran.computed["mask"]
        random_inputs = 1  # the random crops of two_stage_random_errors, once per side
        photos_calls = all_ran.computed["clip_image"] - random_inputs
        assert photos_calls > 0 and photos_calls % 3 == 0, all_ran.computed
        assert ran.computed["clip_image"] - random_inputs == photos_calls // 3, (ran.computed, all_ran.computed)
        assert ran.remembered["clip_image"] == 2 * photos_calls // 3, ran.remembered
