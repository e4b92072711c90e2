"""CLIP-RC (Zhang et al., "Exploring Regional Clues in CLIP for Zero-Shot Semantic Segmentation", CVPR 2024) in
plain PyTorch, computing what the official release ``uyzhang/CLIP-RC`` computes.

Built from ZegCLIP's pieces (:class:`~zsseg_rt.models.zegclip.model.ZegCLIP` is the base class: CLIP towers, prompts,
text side, input checks, calibration helpers, ``predict``, losses):

* image tower: :class:`~zsseg_rt.models.cliprc.backbone.RegionBridgeVisionTransformer` (16 region-level bridge
  tokens + the official static attention mask) -> ``image_global``, ``patches``, ``regions``;
* head: :class:`~zsseg_rt.models.cliprc.head.CLIPRCHead` (Region Alignment Module, bidirectional decoder,
  recovery decoder for training);
* loss: :class:`CLIPRCLoss` = ZegCLIP's focal + dice + the L1 recovery loss.

``forward(images [B,3,S,S], text [C,D]) -> logits [B,C,h,w]`` exactly as ZegCLIP, so ``predict``, evaluation,
export and the Engine work unchanged. In training mode ``forward`` also stores the recovery decoder's outputs
and targets in ``model.last_recovery`` (read by :class:`CLIPRCLoss` built with ``model.build_loss()``).

**Input size is fixed** at ``config.image_size`` (the attention mask is built for that grid); larger images go
through sliding windows (``predict(mode="slide")`` / the Engine).

**Classes are coupled** (unlike ZegCLIP): the decoder's keys attend to all ``16*C`` class queries, so a class's
scores depend on the WHOLE vocabulary passed at run time. Results are reproducible for the same vocabulary; the
order of the classes does not matter (up to float rounding), the set does.

**Freezing** (official ``exclude_key='prompt'``): trainable = backbone parameters whose name contains "prompt"
and the whole decode head. The bridge tokens (``backbone.region_level_bridge``) are FROZEN, as in the release;
``train_region_bridge=True`` in the config trains them (an option, not the official recipe).
"""

from __future__ import annotations

import os
from typing import Dict, Optional, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from zsseg_rt.models.cliprc.backbone import RegionBridgeVisionTransformer
from zsseg_rt.models.cliprc.config import FAMILY, CLIPRCConfig, load_cliprc_config
from zsseg_rt.models.cliprc.head import CLIPRCHead
from zsseg_rt.models.zegclip.losses import ZegCLIPLoss
from zsseg_rt.models.zegclip.model import ZegCLIP, create_prompted

__all__ = ["CLIPRC", "CLIPRCLoss", "recovery_loss", "create_cliprc", "load_clip_weights_cliprc", "CLIPRC_NATIVE_FORMAT"]

CLIPRC_NATIVE_FORMAT = "zsseg_rt.cliprc.v1"


class CLIPRC(ZegCLIP):
    """CLIP-RC: frozen CLIP towers + deep visual prompts + region-level bridge + region alignment decoder."""

    family = FAMILY
    config: CLIPRCConfig  # set by ZegCLIP.__init__ through _coerce_config
    native_format = CLIPRC_NATIVE_FORMAT

    def __init__(self, config: Union[CLIPRCConfig, str, dict], device: Optional[Union[str, torch.device]] = None):
        super().__init__(config, device)  # ZegCLIP's constructor, with the hooks below
        self.last_recovery: Optional[Dict[str, torch.Tensor]] = None

    # ------------------------------------------------------------------ construction hooks
    @classmethod
    def _coerce_config(cls, config) -> CLIPRCConfig:
        return config if isinstance(config, CLIPRCConfig) else load_cliprc_config(config)

    @staticmethod
    def _make_backbone(config, visual: nn.Module) -> nn.Module:
        return RegionBridgeVisionTransformer(
            visual, **ZegCLIP.prompt_args(config), region_bridge_size=config.region_bridge_size
        )

    @staticmethod
    def _make_head(config, dim: int) -> nn.Module:
        return CLIPRCHead(
            **ZegCLIP.decoder_args(config, dim),
            num_regions=config.region_bridge_size,
            recovery_layers=config.recovery_decoder_layers,
        )

    # ------------------------------------------------------------------ parameters
    def is_trainable_name(self, name: str) -> bool:  # type: ignore[override]  # instance: reads the config
        """Official rule (prompt params + head); the bridge tokens only with ``train_region_bridge``."""
        if name == "backbone.region_level_bridge":
            return bool(self.config.train_region_bridge)
        return ZegCLIP.is_trainable_name(name)

    def is_clip_weight(self, name: str) -> bool:
        """The bridge tokens are not CLIP weights: they are initialised from CLIP after loading (official)."""
        return name != "backbone.region_level_bridge" and not self.is_trainable_name(name)

    # ------------------------------------------------------------------ network
    def encode_image(self, images: torch.Tensor):
        """``images [B,3,S,S]`` -> (``image_global [B,D]``, ``patches [B,h*w,D]``, ``regions [B,R,D]``, ``(h,w)``).

        ``S`` must be ``config.image_size`` (fixed by the attention mask)."""
        if not torch.jit.is_tracing() and not torch.onnx.is_in_onnx_export():
            self.check_images(images)
            s = int(self.config.image_size)
            if tuple(images.shape[-2:]) != (s, s):
                raise ValueError(
                    f"CLIP-RC takes {s}x{s} inputs only (its attention mask is built for that grid), got "
                    f"{images.shape[-2]}x{images.shape[-1]}; larger images go through sliding windows "
                    "(zsseg_rt.contract.common.predict.predict(mode='slide') or the Engine)"
                )
        return self.backbone(images)

    def decode(  # type: ignore[override]  # CLIP-RC's decoder also takes the region tokens
        self,
        text: torch.Tensor,
        image_global: torch.Tensor,
        patches: torch.Tensor,
        regions: torch.Tensor,
        grid: Tuple[int, int],
        return_recovery: bool = False,
    ):
        """Mask logits ``[B, C, h, w]``; ``return_recovery`` as in the head.

        The text embeddings are used as given, like the official ``combine_token`` (they come L2-normalised from
        the text encoder or the official .npy files); ``config.renormalize_text`` re-normalises them first."""
        text = self.head_text(text, patches.dtype)
        return self.decode_head(text, image_global, patches, regions, grid, return_recovery=return_recovery)

    def forward(self, images: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        self.check_text(text, images.shape[0] if isinstance(images, torch.Tensor) and images.dim() == 4 else None)
        image_global, patches, regions, grid = self.encode_image(images)
        if self.training:
            logits, rec = self.decode(text, image_global, patches, regions, grid, return_recovery=True)
            self.last_recovery = rec
            return logits
        self.last_recovery = None
        return self.decode(text, image_global, patches, regions, grid)

    # ------------------------------------------------------------------ export hooks (zsseg_rt.export.graphs)
    @property
    def export_image_outputs(self):
        from zsseg_rt.bundle import Names

        return (Names.IMAGE_GLOBAL, Names.PATCHES, Names.REGIONS)

    def export_encode_image(self, image: torch.Tensor):
        image_global, patches, regions, _ = self.encode_image(image)
        return image_global, patches, regions

    def export_decode(self, text, image_global, patches, regions, grid):
        return self.decode(text, image_global, patches, regions, grid)

    @property
    def export_postprocess(self):
        return {"activation": "sigmoid", "classes_coupled": True}

    # ------------------------------------------------------------------ training
    def build_loss(self, **overrides) -> "CLIPRCLoss":
        """The official loss bound to this model (reads ``last_recovery`` after each training forward)."""
        return CLIPRCLoss.from_config(self.config, model=self, **overrides)

    def num_learnable_parameters(self, count_official_unused: bool = False) -> int:
        """Learnable parameters; ``count_official_unused`` adds the never-called ``self_attn``/``norm1`` of the
        official decoder layers (what a parameter count of the official module would include)."""
        return super().num_learnable_parameters(count_official_unused)

    def extra_repr(self) -> str:
        c = self.config
        return (
            f"config={c.name!r}, clip={c.clip_model}, image_size={c.image_size}, prompts={c.num_prompt_tokens}, "
            f"regions={c.region_bridge_size}, train_region_bridge={c.train_region_bridge}"
        )


# ---------------------------------------------------------------------- loss
def recovery_loss(recovery: Dict[str, torch.Tensor], weight: float = 1.0) -> Dict[str, torch.Tensor]:
    """Official recovery loss: ``L1(q, ori_q.detach()) * w`` and ``L1(lateral, ori_lateral.detach()) * w``
    (``nn.L1Loss``: mean over all elements)."""
    lq = F.l1_loss(recovery["q"].float(), recovery["ori_q"].detach().float()) * weight
    lk = F.l1_loss(recovery["lateral"].float(), recovery["ori_lateral"].detach().float()) * weight
    return {"recovery_loss_q": lq, "recovery_loss_k": lk}


class CLIPRCLoss(ZegCLIPLoss):
    """Official CLIP-RC ``SegLoss``: ZegCLIP's focal + dice (:class:`ZegCLIPLoss`) plus the recovery loss.

    ``forward(logits, labels, recovery=None)``: ``recovery`` defaults to the bound model's ``last_recovery``
    (consumed once). Without any recovery outputs (eval-mode forward) only focal + dice are returned.
    Returns ``loss`` (total), ``loss_mask``, ``loss_dice``, ``recovery_loss_q``, ``recovery_loss_k``, ``num_masks``.
    ``from_config(config, model=None, **overrides)`` as :meth:`ZegCLIPLoss.from_config`.
    """

    def __init__(self, *, recovery_weight=2.0, model: Optional[CLIPRC] = None, **focal_dice):
        """``focal_dice``: :class:`ZegCLIPLoss`'s arguments (``pred_size``, ``mask_weight``, ``dice_weight``,
        ``focal_alpha``, ``focal_gamma``, ``ignore_index``, ``mask_ignore``)."""
        super().__init__(**focal_dice)
        self.recovery_weight = float(recovery_weight)
        self._model = [model]  # a list: not registered as a submodule

    def forward(  # type: ignore[override]  # also takes the recovery outputs
        self, logits: torch.Tensor, labels: torch.Tensor, recovery: Optional[Dict[str, torch.Tensor]] = None
    ) -> Dict[str, torch.Tensor]:
        out = super().forward(logits, labels)
        model = self._model[0]
        if recovery is None and model is not None:
            recovery, model.last_recovery = model.last_recovery, None
        if recovery is not None:
            rec = recovery_loss(recovery, self.recovery_weight)
            out.update(rec)
            out["loss"] = out["loss"] + rec["recovery_loss_q"] + rec["recovery_loss_k"]
        return out


# ---------------------------------------------------------------------- construction / CLIP weights
def load_clip_weights_cliprc(model: CLIPRC, pretrained: str) -> Dict[str, object]:
    """Load CLIP tower weights (open_clip tag or local file) into a CLIP-RC model, then initialise the bridge
    tokens officially (``class_embedding + positional_embedding[0]``)."""
    from zsseg_rt.models.zegclip.weights import load_clip_weights

    report = load_clip_weights(model, pretrained)
    model.backbone.reset_region_bridge()
    return report


def create_cliprc(
    name: Union[str, os.PathLike, CLIPRCConfig, dict] = "cliprc_vitb16_voc_inductive",
    pretrained: Optional[str] = None,
    device: Optional[Union[str, torch.device]] = None,
    **overrides,
) -> CLIPRC:
    """Build a CLIP-RC (eval mode, CLIP towers frozen); ``create_model`` dispatches here for CLIP-RC configs.

    ``name``: bundled config name (``"cliprc_vitb16_voc_inductive"``) or alias (``"cliprc-vitb16-voc"``,
    ``"cliprc-vitb16-coco-transductive"``), JSON path, config, or a native CLIP-RC checkpoint directory.
    ``pretrained``: CLIP tower weights as in ``create_model`` (official CLIP-RC checkpoints go through
    :func:`zsseg_rt.models.load_official_cliprc`).
    """
    native_hint = "is a native checkpoint; use create_model({!r})"
    return create_prompted(
        CLIPRC, load_cliprc_config, load_clip_weights_cliprc, native_hint, name, pretrained, device, overrides
    )
