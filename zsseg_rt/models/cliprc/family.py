"""The CLIP-RC family's capabilities (registered by ``zsseg_rt.models.cliprc``): its model implements the graph
members (a third image output, the region tokens; :class:`~zsseg_rt.contract.family.ModelExport`), and builds its
own loss (mask + dice + recovery)."""

from __future__ import annotations

from typing import Any, List

from zsseg_rt.contract.family import Training

__all__ = ["CLIPRCTraining", "cliprc_aliases"]


def cliprc_aliases(stem: str) -> List[str]:
    """``cliprc_vitb16_voc`` -> the inductive setting (``cliprc_vitb16_voc_inductive``)."""
    return [f"{stem}_inductive"] if stem.startswith("cliprc") else []


class CLIPRCTraining(Training):
    def loss(self, model: Any) -> Any:
        return model.build_loss()
