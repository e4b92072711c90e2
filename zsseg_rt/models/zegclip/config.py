"""ZegCLIP's configuration: ``ZegCLIPConfig`` (the shared fields of ``BaseModelConfig`` plus the prompt, decoder,
calibration and loss settings of the official code) and its loader. Bundled configs: ``zsseg_rt/models/zegclip/configs``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Type, TypeVar, Union

from zsseg_rt.contract.common.config import (
    BaseModelConfig,
    check_choice,
    deep_merge,
    load_config_data,
)

__all__ = ["ZegCLIPConfig", "load_zegclip_config", "FAMILY"]

FAMILY = "zegclip"
_Config = TypeVar("_Config", bound="ZegCLIPConfig")

# official focal + dice loss settings (CLIP-RC's config adds its recovery weight)
LOSS_DEFAULTS: Dict[str, Any] = {
    "mask_weight": 100.0,
    "dice_weight": 1.0,
    "focal_alpha": 0.25,
    "focal_gamma": 2.0,
    "mask_ignore": False,
}


@dataclass
class ZegCLIPConfig(BaseModelConfig):
    """Everything that defines a ZegCLIP model and its official inference/training settings."""

    name: str = "zegclip_vitb16_voc_inductive"
    family: str = "zegclip"  # registry key (zsseg_rt.contract.registry); subclasses set their own
    num_prompt_tokens: int = 10
    deep_prompt_layers: Optional[int] = None  # None -> layers - 1 (official total_d_layer=11 for 12 layers)
    prompt_dropout: float = 0.1
    fix_double_class_embedding: bool = False  # official quirk: CLS = 2*class_embedding + pos[0]
    # Official: the head uses the class embeddings exactly as given (the .npy rows are fp16-normalised; the text
    # encoder path normalises). True re-normalises them inside decode (an option for unnormalised inputs).
    renormalize_text: bool = False
    decoder_layers: int = 3
    decoder_heads: int = 8
    decoder_ffn_dim: Optional[int] = 2048  # None -> 4 * embed_dim
    decoder_dropout: float = 0.1
    decoder_attn_dropout: float = 0.1
    text_embeddings_file: Optional[str] = None  # name of the official precomputed .npy (informational)
    setting: str = "inductive"  # inductive | transductive | fully
    # official test resize: [long_max, short]; long_max None = mmseg Resize(keep_ratio=True, min_size=512)
    test_scale: List[Optional[int]] = field(default_factory=lambda: [None, 512])
    loss: Dict[str, Any] = field(default_factory=lambda: dict(LOSS_DEFAULTS))
    ignore_index: int = 255

    @property
    def num_deep_prompt_layers(self) -> int:
        return self.layers - 1 if self.deep_prompt_layers is None else int(self.deep_prompt_layers)

    @property
    def ffn_dim(self) -> int:
        return 4 * self.embed_dim if self.decoder_ffn_dim is None else int(self.decoder_ffn_dim)

    # ------------------------------------------------------------------ validation / io
    def validate(self) -> "ZegCLIPConfig":
        self.check_family()
        check_choice("setting", self.setting, ("inductive", "transductive", "fully"))
        if self.num_prompt_tokens < 0:
            raise ValueError(f"num_prompt_tokens must be >= 0, got {self.num_prompt_tokens}")
        if self.image_size % self.patch_size != 0:
            raise ValueError(f"image_size {self.image_size} is not a multiple of the patch size {self.patch_size}")
        if self.embed_dim % self.decoder_heads != 0:
            raise ValueError(f"embed_dim {self.embed_dim} is not divisible by decoder_heads {self.decoder_heads}")
        if not (0 <= self.num_deep_prompt_layers <= self.layers - 1):
            raise ValueError(f"deep_prompt_layers must be in [0, {self.layers - 1}], got {self.deep_prompt_layers}")
        n = len(self.class_names)
        bad = [i for i in self.seen_classes if not (0 <= int(i) < n)]
        if bad:
            raise ValueError(f"seen_classes {bad} out of range for {n} class names")
        if len(self.mean) != 3 or len(self.std) != 3:
            raise ValueError("mean and std must have 3 entries (RGB)")
        return self

    @classmethod
    def from_dict(cls: Type[_Config], data: Dict[str, Any]) -> _Config:
        data = cls.checked_data(data)
        if "loss" in data:
            data["loss"] = deep_merge(cls().loss, data["loss"] or {})
        return cls.from_checked_data(data)


def load_zegclip_config(
    name_or_path: Union[str, os.PathLike, ZegCLIPConfig, Dict[str, Any]], **overrides
) -> ZegCLIPConfig:
    """Load a ZegCLIP config by bundled name (``"zegclip_vitb16_voc_inductive"``), JSON path, dict or config object.

    ``overrides`` replace top-level keys (``clip_cfg`` and ``loss`` are deep-merged).
    """
    data = load_config_data(name_or_path, family=FAMILY, label="ZegCLIP", config_cls=ZegCLIPConfig, overrides=overrides)
    return ZegCLIPConfig.from_dict(data)
