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


def export_family_bundle(family: str, root: str) -> str:
    """Export the tiny model of ``family`` (not ZegCLIP: that is the ``tiny_bundle`` fixture) under ``root``."""
    import torch

    from zsseg_rt.export.onnx_export import export_bundle
    from zsseg_rt.models import create_model

    torch.manual_seed(0)
    model = create_model(TINY_CONFIGS[family]).eval()
    if family == "zeroseg":  # the bundle adds the teacher's text tower to the student
        from zsseg_rt.models.zeroseg.bundle import build_bundle_model

        model = build_bundle_model(model, None, 0.3).eval()
    return export_bundle(model, os.path.join(root, family), max_classes=16, verify_images=())
