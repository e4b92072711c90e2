"""meta.json ``weights``: which weights a bundle holds, written by the exporter, derived for bundles written before the
field existed (no recorded source = random weights), checked by the schema, and the banner it implies."""

import json
import os

import pytest
from test_bundle_meta import _write_bundle

from zsseg_rt.bundle import BundleError, load_meta, weights_banner, weights_record


def test_records_of_each_kind():
    assert weights_record("x.pth", "checkpoint")["random"] is False
    assert weights_record("openai", "clip", trainable=False) == {"source": "openai", "kind": "clip", "random": False}
    untrained = weights_record("openai", "clip", trainable=True)  # a trained family's head stays random
    assert untrained["random"] is True and "UNTRAINED HEAD" in weights_banner(untrained)
    random = weights_record(None, "none")
    assert random["random"] is True and weights_banner(random).startswith("RANDOM WEIGHTS")
    assert weights_record(None, "unknown")["random"] is True
    assert weights_banner(weights_record("x.pth", "checkpoint")) == "" and weights_banner(None) == ""
    with pytest.raises(ValueError, match="kind"):
        weights_record("x", "pretrained")


@pytest.mark.parametrize(
    "recorded, random",
    [
        ({"source_checkpoint": None}, True),  # an old bundle exported without weights
        ({}, True),
        ({"source_checkpoint": "/models/voc.pth"}, False),
        ({"source_checkpoint": None, "demo_config": "sclip-vitb16-openai"}, False),  # the demo on stock CLIP
        ({"source_checkpoint": None, "demo_config": "zegclip_vitb16_voc_inductive-random"}, True),
    ],
)
def test_old_bundles_get_weights_from_their_source(tmp_path, recorded, random):
    meta = load_meta(_write_bundle(tmp_path, **recorded))
    assert meta.weights["random"] is random and meta.random_weights is random
    assert meta.weights.get("derived") is True
    assert bool(meta.weights_banner) is random
    with open(os.path.join(meta.path, "meta.json"), encoding="utf-8") as handle:
        assert "weights" not in json.load(handle)  # derived when read; the file (and its hash) stay as written


def test_recorded_weights_win_and_are_checked(tmp_path):
    meta = load_meta(_write_bundle(tmp_path, source_checkpoint=None, weights=weights_record("ckpt", "checkpoint")))
    assert meta.random_weights is False and meta.weights_banner == ""
    for bad, match in (
        ({"source": None}, "random"),
        ({"random": "yes"}, "random"),
        ({"random": True, "kind": "?"}, "kind"),
    ):
        with pytest.raises(BundleError, match=match):
            load_meta(_write_bundle(tmp_path, weights=bad))


def test_exported_bundle_records_its_weights(tiny_bundle, random_bundle):
    assert load_meta(tiny_bundle).weights["kind"] == "checkpoint" and not load_meta(tiny_bundle).random_weights
    assert load_meta(random_bundle).random_weights
