"""The training-free family object (registered by ``zsseg_rt.models.training_free``): stock CLIP weights only (no
native or official checkpoints, no training); its model implements the graph members (softmax post-processing), and
its bundles are evaluated with each method's official per-dataset settings (:mod:`.evaluate`)."""

from __future__ import annotations

from typing import Any, Callable, Dict, Mapping, Optional

from zsseg_rt.contract.family import ModelExportMembers, ModelFamily

__all__ = ["TrainingFreeFamily"]


class TrainingFreeFamily(ModelExportMembers, ModelFamily):
    def evaluation_settings(self, meta: Any, dataset_name: str, choice: str = "official") -> Optional[Dict[str, Any]]:
        """The method's official settings on the dataset (``settings.json``: logit scale, ``prob_thd``,
        ``area_thd``, PAMR, test short side) and what the bundle cannot follow (:func:`.evaluate.settings_record`)."""
        from .evaluate import settings_record

        return settings_record(meta, dataset_name, choice)

    def apply_evaluation_settings(self, engine: Any, record: Mapping[str, Any]) -> Callable[[], None]:
        from .evaluate import apply_record

        return apply_record(engine, dict(record))
