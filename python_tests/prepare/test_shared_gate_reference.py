"""The gates of one preparation share the fp32 reference (zsseg_rt.prepare.gate.shared_reference): the reference's
side of each gate (random inputs, the photos' windows, the vocabulary) is computed once per preparation, and each
gate decides exactly as it does with a reference of its own."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from zsseg_rt.bundle import load_meta
from zsseg_rt.prepare.gate import RememberingReference, gate_reference, run_accuracy_gate, shared_reference
from zsseg_rt.runtime.backends import Backend, open_reference


class NoisyCandidate(Backend):
    """ONNX Runtime fp32 with a little noise on the head's logits (a reduced precision's stand-in)."""

    name = "noisy"

    def __init__(self, meta, scale: float):
        self.inner, self.scale, self.rng = open_reference(meta), scale, np.random.default_rng(0)

    def encode_image(self, images):
        return self.inner.encode_image(images)

    def head(self, text, features):
        logits = np.array(self.inner.head(text, features), copy=True)
        return logits + self.scale * self.rng.standard_normal(logits.shape).astype(np.float32)

    def encode_text(self, tokens):
        return self.inner.encode_text(tokens)


@pytest.fixture()
def meta(tiny_bundle, tmp_path):
    return load_meta(str(shutil.copytree(tiny_bundle, tmp_path / "bundle")))


def _gate(meta, scale, reference):
    return run_accuracy_gate(meta, NoisyCandidate(meta, scale), reference, "int8").as_dict()


def test_a_preparations_gates_compute_the_reference_once_and_decide_as_alone(meta):
    alone = [_gate(meta, scale, open_reference(meta)) for scale in (1e-4, 1e-3)]
    with shared_reference():
        reference = gate_reference(meta)
        assert isinstance(reference, RememberingReference) and gate_reference(meta) is reference
        first = _gate(meta, 1e-4, gate_reference(meta))
        computed = reference.computed
        assert computed > 0
        second = _gate(meta, 1e-3, gate_reference(meta))
        assert reference.computed == computed, "the second gate ran the reference's graphs again"
    assert [first, second] == alone  # the same numbers and decisions as with a reference of its own
    assert alone[0]["max_abs_logit_error"] != alone[1]["max_abs_logit_error"]  # the two gates did differ
    assert not isinstance(gate_reference(meta), RememberingReference)  # outside a block: a new one each time


def test_the_remembering_reference_returns_copies_and_computes_new_inputs(meta):
    reference = RememberingReference(open_reference(meta))
    size = int(meta.image_size)
    images = np.random.default_rng(1).standard_normal((1, 3, size, size)).astype(np.float32)
    features = reference.encode_image(images)
    kept = {name: value.copy() for name, value in features.items()}
    for value in features.values():
        value[...] = 0  # a caller writing into what it got
    again = reference.encode_image(images.copy())  # equal inputs, another array
    assert reference.computed == 1
    for name, value in again.items():
        np.testing.assert_array_equal(value, kept[name])
    reference.encode_image(images + np.float32(1e-3))  # other inputs: computed
    reference.encode_image(images.astype(np.float64).astype(np.float32).reshape(1, 3, size, size))  # equal again
    assert reference.computed == 2
    assert reference.name == open_reference(meta).name and reference.precision == open_reference(meta).precision
