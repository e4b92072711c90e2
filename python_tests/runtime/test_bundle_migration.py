"""``bundle.migrate.migrate_meta``: an older bundle's meta.json keeps meaning what its graphs compute."""

from __future__ import annotations

import copy

from zsseg_rt.bundle.migrate import migrate_meta
from zsseg_rt.models.training_free.config import TrainingFreeConfig


def _maskclip_meta(**config_extra):
    config = {"family": "training_free", "method": "maskclip", "name": "maskclip_vitb16", **config_extra}
    return {"format": 1, "architecture": {"family": "training_free", "config": config}, "postprocess": {}}


def test_an_old_maskclip_bundle_keeps_the_open_clip_tower_it_was_exported_with():
    """Bundles written before the ``tower`` key were built with stock open_clip towers (QuickGELU, eps 1e-5); since
    issue 41 MaskCLIP's default is mmseg's ViT (exact GELU, eps 1e-6). Without the migration an old MaskCLIP bundle's
    config would resolve to the mmseg tower, so a torch rebuild of it would compute another model than its graphs
    (control: delete the ``config`` entry of the training_free row in migrate.py and this fails)."""
    old = _maskclip_meta()
    before = copy.deepcopy(old)
    migrated = migrate_meta(old)
    assert old == before  # the parsed input is not changed in place
    config = migrated["architecture"]["config"]
    assert config["tower"] == "open_clip"
    assert TrainingFreeConfig(**{k: v for k, v in config.items() if k != "family"}).resolved("tower") == "open_clip"


def test_a_new_bundle_keeps_the_tower_it_records():
    for recorded in (None, "mmseg", "open_clip"):  # None: the method's default (mmseg for MaskCLIP)
        migrated = migrate_meta(_maskclip_meta(tower=recorded))
        assert migrated["architecture"]["config"]["tower"] == recorded
    other = migrate_meta({"architecture": {"family": "zegclip", "config": {"name": "x"}}})
    assert "tower" not in other["architecture"]["config"]
