"""The training-free family's capabilities (registered by ``zsseg_rt.models.training_free``): stock CLIP weights
only (no native or official checkpoints, no training); its model implements the graph members (softmax
post-processing; :class:`~zsseg_rt.contract.family.ModelExport`), and its bundles are evaluated with each method's
official per-dataset settings (:mod:`.evaluate`)."""

from __future__ import annotations

from typing import Any, Callable, Dict, Mapping, Optional

from zsseg_rt.contract.family import Evaluation

__all__ = ["TrainingFreeEvaluation"]


class TrainingFreeEvaluation(Evaluation):
    def settings(self, meta: Any, dataset_name: str, choice: str = "official") -> Optional[Dict[str, Any]]:
        """The method's official settings on the dataset (``settings.json``: logit scale, ``prob_thd``,
        ``area_thd``, PAMR, test short side) and what the bundle cannot follow (:func:`.evaluate.settings_record`)."""
        from .evaluate import settings_record

        return settings_record(meta, dataset_name, choice)

    def apply_settings(self, engine: Any, record: Mapping[str, Any]) -> Callable[[], None]:
        from .evaluate import apply_record

        return apply_record(engine, dict(record))
