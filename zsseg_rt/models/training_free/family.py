"""The training-free family object (registered by ``zsseg_rt.models.training_free``): stock CLIP weights only (no
native or official checkpoints, no training); its model implements the graph members (softmax post-processing)."""

from __future__ import annotations

from zsseg_rt.models.family import ModelExportMembers, ModelFamily

__all__ = ["TrainingFreeFamily"]


class TrainingFreeFamily(ModelExportMembers, ModelFamily):
    pass
