"""One tiny exported bundle per registered model family, for checks that must hold on every family's graphs (the
static TensorRT checks). Random tiny weights: the graphs' structure is what matters. ZegCLIP reuses the session's
tiny bundle (the golden model)."""

from __future__ import annotations

import os

# family -> how its tiny model is made (a config name of models/<family>/configs)
TINY_CONFIGS = {
    "cliprc": "cliprc_tiny_test",
    "training_free": "training_free_tiny_test",
    "zeroseg": "zeroseg_tiny_test",
    "zegformer": "zegformer_tiny_test",
}

# Members of a family whose graphs differ from the family's tiny bundle: name -> (family, config, overrides).
# SC-CLIP's image encoder adds LOF (TopK, pairwise distances) and the multi-level fusion to the training-free graph;
# its tiny model needs >= 31 patch tokens for the official 30 LOF neighbours (128 px: 64 tokens) and 5 blocks.
VARIANTS = {
    "training_free:scclip": (
        "training_free",
        "training_free_tiny_test",
        {
            "method": "scclip",
            "image_size": 128,
            "crop_size": 128,
            "stride": 64,
            "short_side": 128,
            "clip_cfg": {"vision_cfg": {"layers": 5}},
            "scclip": {"pre_adjust_idx": 2, "post_adjust_idx": 1, "multi_start_idx": 1, "multi_end_idx": 3},
        },
    ),
}


def export_variant_bundle(name: str, root: str) -> str:
    """Export the tiny model of a :data:`VARIANTS` entry under ``root``."""
    import torch

    from zsseg_rt.export.onnx_export import export_bundle
    from zsseg_rt.models import create_model

    _, config, overrides = VARIANTS[name]
    torch.manual_seed(0)
    model = create_model(config, **overrides).eval()
    return export_bundle(model, os.path.join(root, name.replace(":", "_")), max_classes=16, verify_images=())


def export_family_bundle(family: str, root: str) -> str:
    """Export the tiny model of ``family`` (not ZegCLIP: that is the ``tiny_bundle`` fixture) under ``root``."""
    import torch

    from zsseg_rt.export.onnx_export import export_bundle
    from zsseg_rt.models import create_model

    torch.manual_seed(0)
    model = create_model(TINY_CONFIGS[family]).eval()
    if family == "zeroseg":  # the bundle adds the teacher's text tower to the student
        from zsseg_rt.models.zeroseg.export import build_bundle_model

        model = build_bundle_model(model, None, 0.3).eval()
    return export_bundle(model, os.path.join(root, family), max_classes=16, verify_images=())
