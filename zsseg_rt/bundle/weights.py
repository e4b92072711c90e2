"""Which weights a bundle holds (meta.json ``weights``), and the banner every output of a random-weight bundle carries.

A bundle exported without trained weights (no checkpoint, or a trained family with stock CLIP weights only, whose
head is untrained) runs like any other bundle, but its labels mean nothing. meta.json says so::

    "weights": {"source": "openai" | "/abs/ckpt.pth" | null,
                "kind": "checkpoint" | "clip" | "none" | "unknown",
                "random": true | false,
                "untrained": "what was never trained or loaded" (only when random)}

and :func:`weights_banner` is the one line every place that shows a result prints or draws (``zsseg export``'s final
message, ``zsseg segment`` overlays and JSON, ``Result``, the camera overlay, the server's answer). Bundles written
before this field get it from ``source_checkpoint`` (``bundle.migrate``): no recorded source means random weights.
"""

from __future__ import annotations

import os
from typing import Any, Dict, Optional

__all__ = ["WEIGHT_KINDS", "weights_record", "derive_weights", "weights_banner", "check_weights"]

WEIGHT_KINDS = ("checkpoint", "clip", "none", "unknown")
RANDOM_BANNER = "RANDOM WEIGHTS - pipeline check only, labels are meaningless"
UNTRAINED_BANNER = "UNTRAINED HEAD (stock CLIP weights only) - labels are meaningless"


def weights_record(source: Optional[str], kind: str, trainable: bool = True) -> Dict[str, Any]:
    """The ``weights`` entry of a new bundle's meta.json.

    Args:
        source: the checkpoint path, the CLIP weights (open_clip tag or file), or None when nothing was loaded.
        kind: "checkpoint" (a trained model: official or native checkpoint), "clip" (stock CLIP weights only),
            "none" (random initialisation) or "unknown" (a model handed to the exporter with no source).
        trainable: whether the model's family has trained parts (with ``kind="clip"`` those stay untrained).
    """
    if kind not in WEIGHT_KINDS:
        raise ValueError(f"weights kind must be one of {WEIGHT_KINDS}, got {kind!r}")
    if kind in ("checkpoint", "clip") and source:
        source = os.path.abspath(source) if os.path.exists(source) else str(source)  # a file path, or a tag
    record: Dict[str, Any] = {"source": source or None, "kind": kind}
    if kind == "none" or (kind == "unknown" and not source):
        record.update(random=True, untrained="every weight (random initialisation)")
    elif kind == "clip" and trainable:
        record.update(random=True, untrained="everything but the CLIP towers (the decoder head and prompts)")
    else:
        record["random"] = False
    return record


def derive_weights(raw: Dict[str, Any]) -> Dict[str, Any]:
    """``weights`` of a bundle written before meta.json recorded it: a recorded ``source_checkpoint`` means trained
    weights; none means random, except a demo bundle exported from stock CLIP weights (``demo_config`` not ending
    in ``-random``: the demo's training-free models are complete with CLIP weights)."""
    source = raw.get("source_checkpoint")
    if isinstance(source, str) and source:
        return {"source": source, "kind": "checkpoint", "random": False, "derived": True}
    demo = raw.get("demo_config")
    if isinstance(demo, str) and demo and not demo.endswith("-random"):
        return {"source": None, "kind": "clip", "random": False, "derived": True}
    return {
        "source": None,
        "kind": "unknown",
        "random": True,
        "untrained": "no weights source recorded (bundle written before meta.json named its weights)",
        "derived": True,
    }


def weights_banner(weights: Optional[Dict[str, Any]]) -> str:
    """The banner for a bundle's ``weights`` ("" when its weights are trained or complete)."""
    if not isinstance(weights, dict) or not weights.get("random"):
        return ""
    return UNTRAINED_BANNER if weights.get("kind") == "clip" else RANDOM_BANNER


def check_weights(value: Any) -> str:
    """Schema check of meta.json ``weights`` ("" when valid, else what was expected)."""
    if not isinstance(value, dict):
        return f"an object with 'random' (true/false) and 'source', got {type(value).__name__}"
    if not isinstance(value.get("random"), bool):
        return f"'random' true or false, got {value.get('random')!r}"
    if value.get("source") is not None and not isinstance(value["source"], str):
        return f"'source' a string or null, got {value['source']!r}"
    if "kind" in value and value["kind"] not in WEIGHT_KINDS:
        return f"'kind' one of {WEIGHT_KINDS}, got {value['kind']!r}"
    return ""
