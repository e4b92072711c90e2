"""The ZegCLIP family object (registered by ``zsseg_rt.models.zegclip``): the defaults of
:class:`~zsseg_rt.contract.family.ModelFamily` fit ZegCLIP; it adds its training loss."""

from __future__ import annotations

from typing import Any

from zsseg_rt.contract.family import ModelFamily

__all__ = ["ZegCLIPFamily"]


class ZegCLIPFamily(ModelFamily):
    def loss(self, model: Any) -> Any:
        from .losses import ZegCLIPLoss

        return ZegCLIPLoss.from_config(model.config)
