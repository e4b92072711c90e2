"""The accuracy gate of a two-stage bundle's TensorRT engines (ZegFormer: mask branch, CLIP crop encoder, text
encoder), the two-stage twin of :func:`zsseg_rt.prepare.gate.run_accuracy_gate`, with the same thresholds
(``MIN_LABEL_AGREEMENT``) and the same record (``GateReport``, stored in every engine.json of the build).

The candidate is a runner of the pipeline's roles whose graphs are the built engines' where engines were built
(``roles``) and the reference's (ONNX Runtime fp32, CPU) elsewhere:

* random inputs per built graph: a random-normal image of the size a 640 x 480 photo is run at with random unit-norm
  class embeddings (mask branch: class and mask logits), random-normal crops (CLIP crop encoder) and tokenised random
  words (text encoder): max |difference| per graph;
* the sample photos segmented end to end by two ``Engine`` objects that differ only in their runner (the two-stage
  pipeline on the host path, as ``Engine(bundle, backend="tensorrt")`` runs such a bundle): the fraction of pixels
  with the same label, and the max |difference| of the mask branch's logits (class and mask logits) on the photos.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np

from zsseg_rt.bundle import BundleMeta, Files, Names
from zsseg_rt.prepare.gate import (
    RANDOM_WORDS,
    GateReport,
    _all_finite,
    _inputs_key,
    _max_abs,
    _read_photos,
    decide,
    gate_vocabularies,
    judge_vocabularies,
)
from zsseg_rt.runtime.backends import TwoStageGraphs

__all__ = ["GateRunner", "run_two_stage_gate", "two_stage_random_errors"]

MASK_OUTPUTS = (Names.CLASS_LOGITS, Names.QUERY_MASKS)


REMEMBERED_ROLES = ("clip_image",)  # roles whose outputs a gate's side computes once per distinct input


class GateRunner:
    """A :class:`~zsseg_rt.runtime.backends.GraphRunner` running each role on the runner ``pick[role]``; it keeps
    the mask branch's outputs of every call (``masks``: ``{output name: array}`` in call order) for the gate.

    The CLIP crop encoder's outputs are remembered by their inputs (bytes, dtype and shape, as the windowed gate's
    :class:`~zsseg_rt.prepare.gate.RememberingReference` does): each vocabulary the gate judges segments the same
    photos, whose masks and so whose crops do not depend on the vocabulary, and the crop encoder is most of a
    two-stage pipeline's time (ZegFormer on the CPU: about 90 %, BENCHMARKS.md). With three vocabularies each photo's
    crops are encoded once per side instead of three times. ``computed``: the role calls that ran a graph, per role;
    ``remembered``: those answered from memory."""

    precision_record: Optional[dict] = None

    def __init__(self, pick: Mapping[str, Any], name: str):
        self._pick = dict(pick)
        self.name = name
        self.precision = self.requested_precision = "gate"
        self.masks: List[Dict[str, np.ndarray]] = []
        self._memo: Dict[str, List[np.ndarray]] = {}
        self.computed: Dict[str, int] = {}
        self.remembered: Dict[str, int] = {}

    def run(self, role: str, feeds: Mapping[str, np.ndarray], outputs: Sequence[str]) -> List[np.ndarray]:
        key = _inputs_key(f"{role}->{','.join(outputs)}", [dict(feeds)]) if role in REMEMBERED_ROLES else None
        if key is not None and key in self._memo:
            self.remembered[role] = self.remembered.get(role, 0) + 1
            return [np.array(value, copy=True) for value in self._memo[key]]
        result = self._pick[role].run(role, feeds, outputs)
        self.computed[role] = self.computed.get(role, 0) + 1
        if key is not None:
            self._memo[key] = [np.array(value, copy=True) for value in result]
        if role == "mask":
            self.masks.append({name: np.array(value) for name, value in zip(outputs, result)})
        return result

    def batch_limit(self, role: str, input: str) -> Optional[int]:
        return self._pick[role].batch_limit(role, input)


def _mask_input_shape(meta: BundleMeta) -> tuple:
    """``(height, width)`` the two-stage pipeline runs a 640 x 480 photo at (resized, padded)."""
    from zsseg_rt.runtime.pipelines.two_stage import network_input_shape

    params = meta.section("two_stage")
    nh, nw = network_input_shape(480, 640, int(params["test_short_side"]), int(params["test_max_size"]))
    div = max(1, int(params["size_divisibility"]))
    return -(-nh // div) * div, -(-nw // div) * div


def two_stage_random_errors(
    meta: BundleMeta, candidate: Any, reference: Any, roles: Sequence[str], seed: int = 0
) -> Dict[str, object]:
    """Max |candidate - reference| per graph in ``roles`` on random inputs (runners of the two-stage roles), and
    whether all the candidate's outputs were finite."""
    from zsseg_rt.vocabulary import ClipTokenizer

    rng = np.random.default_rng(seed)
    feeds: Dict[str, tuple] = {}
    if "mask" in roles:
        height, width = _mask_input_shape(meta)
        text = rng.standard_normal((min(8, int(meta.max_classes)), int(meta.embed_dim))).astype(np.float32)
        text /= np.linalg.norm(text, axis=1, keepdims=True)
        image = rng.standard_normal((1, 3, height, width)).astype(np.float32)
        feeds["mask"] = ({Names.IMAGE: image, Names.TEXT_EMBEDDINGS: text}, list(MASK_OUTPUTS))
    if "clip_image" in roles:
        size = int(meta.section("two_stage")["clip_image_size"])
        crops = rng.standard_normal((3, 3, size, size)).astype(np.float32)
        feeds["clip_image"] = ({Names.CROPS: crops}, [Names.CROP_EMBEDDINGS])
    if "text" in roles:
        tokenizer = ClipTokenizer(meta.file(Files.TOKENIZER), meta.context_length)
        tokens = tokenizer([f"a photo of a {word}." for word in RANDOM_WORDS])  # [P, L] int32
        feeds["text"] = ({Names.TOKENS: tokens}, [Names.TEXT_EMBEDDINGS])
    errors: Dict[str, float] = {}
    finite = True
    for role, (inputs, outputs) in feeds.items():
        got = candidate.run(role, inputs, outputs)
        want = reference.run(role, inputs, outputs)
        errors[role] = max(_max_abs(g, w) for g, w in zip(got, want))
        finite &= _all_finite(*got)
    return {"errors": errors, "finite": bool(finite)}


def run_two_stage_gate(
    meta: BundleMeta,
    candidate: Any,
    reference: Any,
    precision: str,
    roles: Sequence[str] = TwoStageGraphs.roles,
    images: Optional[Sequence] = None,
    classes: Optional[Sequence[str]] = None,
    max_batch: int = 32,
    accept_below_gate: bool = False,
) -> GateReport:
    """Compare the runner ``candidate`` (its graphs for ``roles``, ``reference``'s elsewhere) with ``reference``
    (ONNX Runtime fp32) on random inputs and photos and decide (arguments: ``run_accuracy_gate``'s; ``max_batch``:
    crops per CLIP encoder call)."""
    from zsseg_rt.runtime.engine import Engine

    reference_side = GateRunner({role: reference for role in TwoStageGraphs.roles}, str(reference.name))
    candidate_side = GateRunner(
        {role: candidate if role in roles else reference for role in TwoStageGraphs.roles},
        str(getattr(candidate, "name", "candidate")),
    )
    random = two_stage_random_errors(meta, candidate_side, reference_side, roles)
    candidate_side.masks.clear()
    reference_side.masks.clear()
    vocabularies = gate_vocabularies(meta, classes)  # VOC, COCO-Stuff, the given names: the worst is kept
    engines = [
        Engine(meta.path, vocabularies[0][1], backend=TwoStageGraphs(side, meta), verify=False, max_batch=max_batch)
        for side in (candidate_side, reference_side)
    ]
    tally, judged = judge_vocabularies(_read_photos(images), engines[0], engines[1], precision, vocabularies)
    pairs = list(zip(candidate_side.masks, reference_side.masks))
    logit_error = max((_max_abs(c[k], r[k]) for c, r in pairs for k in r), default=0.0)
    finite = bool(random["finite"]) and all(_all_finite(*c.values()) for c, _ in pairs)
    notes = ["two-stage pipeline (host path): max |logit error| is the mask branch's class and mask logits"]
    return decide(precision, tally, random, logit_error, finite, accept_below_gate, notes=notes, vocabularies=judged)
