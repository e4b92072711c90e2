"""The one migration of bundle meta.json files written before meta.json named its runtime pipeline, its evaluation
protocol, its weights or its synonym rule (and before it named its model family at all).

Bundles of format 1 written by zsseg_rt 0.1 record only ``architecture.family`` (or nothing, before families
existed). :func:`migrate_meta` adds what newer bundles record themselves, from the table below, so that the rest of
the package reads ``meta.pipeline`` / ``meta.evaluation_protocol`` and never a family name. This table is the only
place outside a model family's package allowed to name families (``python_tests/test_architecture.py``).
"""

from __future__ import annotations

import copy
from typing import Any, Dict

from .weights import derive_weights

__all__ = ["migrate_meta", "DEFAULT_PIPELINE", "DEFAULT_EVALUATION_PROTOCOL", "PIPELINE_SECTIONS"]

DEFAULT_PIPELINE = "windowed"  # image encoder + head per sliding window, text encoder
DEFAULT_EVALUATION_PROTOCOL = "generalized_zero_shot"  # mIoU(seen), mIoU(unseen), hIoU

# The parameter section a pipeline reads from meta.json (newer bundles name it after the pipeline).
PIPELINE_SECTIONS = {"two_stage": "two_stage"}

# Bundles written before meta.json named these: the family -> what it records since.
_LEGACY_DEFAULT_FAMILY = "zegclip"  # bundles from before architecture.family
_LEGACY: Dict[str, Dict[str, Any]] = {
    "zegformer": {"pipeline": "two_stage", "sections": {"zegformer": "two_stage"}},
    "zeroseg": {"evaluation_protocol": "background_threshold"},
    # a class with synonyms: the max over its names' probabilities (SCLIP/NACLIP/SC-CLIP postprocess_result)
    "training_free": {
        "postprocess": {"synonyms": "max"},
        # config keys that did not exist when the bundle was written, with the value its graphs were built with:
        # before ``tower`` every training-free image tower was stock open_clip (MaskCLIP's default is now mmseg's
        # ViT: an old MaskCLIP bundle's config must keep meaning what its graphs compute)
        "config": {"tower": "open_clip"},
    },
}


def migrate_meta(raw: Any) -> Any:
    """A copy of a parsed meta.json with ``architecture.family``, ``pipeline``, ``evaluation_protocol``, ``weights``
    (``bundle.weights.derive_weights``), the pipeline's parameter section, ``postprocess.synonyms`` and config keys
    added since (a training-free config's ``tower``) filled in
    where an older bundle lacks them; fields a bundle records are kept.
    Anything that is not a JSON object with an ``architecture`` object is returned unchanged (the schema check
    reports it)."""
    if not isinstance(raw, dict) or not isinstance(raw.get("architecture"), dict):
        return raw
    out = copy.copy(raw)
    architecture = dict(out["architecture"])
    family = architecture.setdefault("family", _LEGACY_DEFAULT_FAMILY)
    out["architecture"] = architecture
    legacy = _LEGACY.get(family, {}) if isinstance(family, str) else {}
    if "pipeline" not in out:
        out["pipeline"] = legacy.get("pipeline", DEFAULT_PIPELINE)
    if "evaluation_protocol" not in out:
        out["evaluation_protocol"] = legacy.get("evaluation_protocol", DEFAULT_EVALUATION_PROTOCOL)
    if "weights" not in out:
        out["weights"] = derive_weights(out)
    for old, new in legacy.get("sections", {}).items():
        if old in out and new not in out:
            out[new] = out[old]
    config = architecture.get("config")
    if legacy.get("config") and isinstance(config, dict):
        missing = {k: v for k, v in legacy["config"].items() if k not in config}
        if missing:
            architecture["config"] = dict(config, **missing)
    if legacy.get("postprocess") and isinstance(out.get("postprocess"), dict):
        missing = {k: v for k, v in legacy["postprocess"].items() if k not in out["postprocess"]}
        if missing:
            out["postprocess"] = dict(out["postprocess"], **missing)
    return out
