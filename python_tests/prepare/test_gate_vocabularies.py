"""The accuracy gate judges several vocabularies and keeps the worst (issue 75 item 7: an OpenVINO int8 path that
agreed >= 99.5 % with the VOC names agreed 98.2 % with other spellings): the 20 VOC names, the 171 COCO-Stuff classes
and the names given to ``zsseg build-engine --classes``, each capped at the bundle's ``max_classes``; the record says
which were judged. The candidate here is ONNX Runtime whose head is perturbed for one vocabulary only (by its class
count), so only that vocabulary can fail the gate."""

from __future__ import annotations

import numpy as np
import pytest

from zsseg_rt.bundle import load_meta
from zsseg_rt.prepare.gate import gate_classes, gate_vocabularies, run_accuracy_gate
from zsseg_rt.runtime.backends import Backend, open_reference
from zsseg_rt.runtime.precision_records import VOCABULARIES_FIELD


class OneVocabularyOff(Backend):
    """ONNX Runtime, its head's class 0 boosted where the vocabulary has ``classes`` classes (None: exact)."""

    name = "fake-int8"

    def __init__(self, meta, classes=None):
        self.inner, self.classes = open_reference(meta), classes
        self.encoded = 0

    def encode_image(self, images):
        self.encoded += 1
        return self.inner.encode_image(images)

    def head(self, text, features):
        logits = np.array(self.inner.head(text, features), copy=True)
        if self.classes is not None and text.shape[0] == self.classes:
            logits[:, 0] += np.float32(50.0)
        return logits

    def encode_text(self, tokens):
        return self.inner.encode_text(tokens)


def _photo():
    import cv2

    from zsseg_rt.assets import sample_images

    return cv2.imread(str(sample_images()[0]), cv2.IMREAD_COLOR)[:120, :160]


def test_the_vocabularies_judged_are_voc_coco_stuff_and_the_given_names_capped_at_max_classes(tiny_bundle):
    meta = load_meta(tiny_bundle)
    assert [(name, len(names), total) for name, names, total in gate_vocabularies(meta)] == [
        ("voc20", 20, 20),
        ("coco_stuff", 32, 171),  # the tiny bundle takes 32 classes
    ]
    with gate_classes(["table", "monitor", "plant"]):
        judged = gate_vocabularies(meta)
    assert judged[-1] == ("given", ["table", "monitor", "plant"], 3)
    assert len(gate_vocabularies(meta)) == 2  # the block ended


@pytest.mark.parametrize(
    "off, given, worst",
    [(32, None, "coco_stuff"), (3, ["table", "monitor", "plant"], "given")],
    ids=["coco_stuff", "given"],
)
def test_a_path_that_agrees_on_voc_but_not_on_another_vocabulary_fails(tiny_bundle, off, given, worst):
    """The candidate agrees exactly with the VOC names and differs with one other vocabulary: the gate fails, on
    that vocabulary's agreement, and the record names every vocabulary judged; control: the same candidate without
    that vocabulary's perturbation passes. The image encoder runs once per window whatever the vocabularies."""
    meta = load_meta(tiny_bundle)
    reference = open_reference(meta)
    with gate_classes(given):
        failing = run_accuracy_gate(meta, OneVocabularyOff(meta, off), reference, "int8", images=[_photo()])
        exact = OneVocabularyOff(meta, None)
        passing = run_accuracy_gate(meta, exact, reference, "int8", images=[_photo()])
    assert not failing.passed and failing.worst_vocabulary == worst
    by_name = {v["name"]: v for v in failing.vocabularies}
    assert by_name["voc20"]["worst_photo"] == 1.0 and by_name[worst]["worst_photo"] < 0.995
    assert failing.worst_photo_agreement == by_name[worst]["worst_photo"]
    assert (
        "vocabularies judged: voc20 20, coco_stuff 32" in failing.summary
        and f"(the worst kept: {worst})" in failing.summary
    )
    record = failing.as_dict()
    assert [v["name"] for v in record[VOCABULARIES_FIELD]] == ["voc20", "coco_stuff"] + (["given"] if given else [])
    assert passing.passed and passing.worst_photo_agreement == 1.0  # control
    from zsseg_rt.runtime import Engine

    counter = OneVocabularyOff(meta)
    Engine(tiny_bundle, ["a"], backend=counter, verify=False, max_batch=1, prepare=None)(_photo())
    assert exact.encoded == 1 + counter.encoded  # the random batch, then each window once for every vocabulary
