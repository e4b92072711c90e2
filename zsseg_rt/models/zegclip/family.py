"""The ZegCLIP family's capabilities (registered by ``zsseg_rt.models.zegclip``): the defaults of
:mod:`zsseg_rt.contract.family` fit ZegCLIP; it adds its training loss."""

from __future__ import annotations

from typing import Any

from zsseg_rt.contract.family import Training

__all__ = ["ZegCLIPTraining"]


class ZegCLIPTraining(Training):
    def loss(self, model: Any) -> Any:
        from .losses import ZegCLIPLoss

        return ZegCLIPLoss.from_config(model.config)
