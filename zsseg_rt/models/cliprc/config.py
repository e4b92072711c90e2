"""Configuration of CLIP-RC (Zhang et al., CVPR 2024, ``uyzhang/CLIP-RC``): ZegCLIP's config plus the region
bridge, the recovery decoder, the recovery-loss weight and the official schedule.

Configs live in ``zsseg_rt/models/cliprc/configs/cliprc_*.json`` and carry ``"family": "cliprc"``
(the model registry, :mod:`zsseg_rt.contract.registry`, dispatches on it). Names: the file stem
(``"cliprc_vitb16_voc_inductive"``) or the short hyphenated form (``"cliprc-vitb16-voc"`` = inductive,
``"cliprc-vitb16-coco-transductive"``...).

Vocabulary coupling: unlike ZegCLIP, the CLIP-RC decoder updates the keys (image tokens) by attending to ALL
class queries, so a class's scores depend on the whole vocabulary given at run time (not only on its own text).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional, Union

from zsseg_rt.contract.common.config import family_config_dir, load_config_data
from zsseg_rt.models.zegclip.config import LOSS_DEFAULTS, ZegCLIPConfig

__all__ = [
    "CLIPRCConfig",
    "load_cliprc_config",
    "resolve_cliprc_name",
    "FAMILY",
    "VOCABULARY_COUPLING_NOTE",
]

FAMILY = "cliprc"

VOCABULARY_COUPLING_NOTE = (
    "CLIP-RC couples classes: the decoder's keys attend to all 16*C class queries, so each class's mask depends "
    "on the whole vocabulary. Scores for a class change when other classes are added or removed; compare "
    "results only for the same vocabulary."
)


@dataclass
class CLIPRCConfig(ZegCLIPConfig):
    """ZegCLIP's fields plus CLIP-RC's (defaults: the official VOC inductive config)."""

    name: str = "cliprc_vitb16_voc_inductive"
    family: str = FAMILY
    region_bridge_size: int = 16  # official region_level_bridge_size: a 4x4 grid of bridge tokens
    # Official: the bridge tokens are FROZEN (exclude_key='prompt' and their name lacks 'prompt'); True trains them.
    train_region_bridge: bool = False
    recovery_decoder_layers: int = 1
    loss: Dict[str, Any] = field(default_factory=lambda: {**LOSS_DEFAULTS, "recovery_weight": 2.0})
    # Official schedule (informational: consumed by training recipes, not by the model).
    schedule: Dict[str, Any] = field(default_factory=dict)
    notes: str = VOCABULARY_COUPLING_NOTE

    # ------------------------------------------------------------------ derived
    @property
    def region_grid(self) -> int:
        """Side of the square bridge-token grid (4 for 16 tokens)."""
        return int(round(math.sqrt(self.region_bridge_size)))

    @property
    def region_stride(self) -> int:
        """Patch-block side of one bridge token (official ``spatial_size // region_hw``: 8 at 512 px)."""
        return self.grid_size // self.region_grid

    def validate(self) -> "CLIPRCConfig":
        super().validate()
        if self.family != FAMILY:
            raise ValueError(f"CLIP-RC config must have family={FAMILY!r}, got {self.family!r}")
        r = self.region_grid
        if self.region_bridge_size < 1 or r * r != self.region_bridge_size:
            raise ValueError(f"region_bridge_size must be a positive square number, got {self.region_bridge_size}")
        if self.grid_size < r:
            raise ValueError(
                f"the {self.grid_size}x{self.grid_size} patch grid (image_size {self.image_size} / patch "
                f"{self.patch_size}) is smaller than the {r}x{r} region-bridge grid"
            )
        if int(self.crop_size) != int(self.image_size):
            raise ValueError(
                f"CLIP-RC's attention mask fixes the input at image_size={self.image_size}; crop_size must equal "
                f"it (got {self.crop_size})"
            )
        if self.recovery_decoder_layers < 1:
            raise ValueError(f"recovery_decoder_layers must be >= 1, got {self.recovery_decoder_layers}")
        if float(self.loss.get("recovery_weight", 0.0)) < 0:
            raise ValueError("loss.recovery_weight must be >= 0")
        return self


def resolve_cliprc_name(name: str) -> Optional[Path]:
    """Bundled CLIP-RC config path for a name (``cliprc_vitb16_voc_inductive``, ``cliprc-vitb16-voc``, ...)."""
    s = str(name)
    if s.endswith(".json"):
        s = s[: -len(".json")]
    stem = s.replace("-", "_")
    if not stem.startswith("cliprc"):
        return None
    for cand in (stem, f"{stem}_inductive"):
        p = family_config_dir(FAMILY) / f"{cand}.json"
        if p.is_file():
            return p
    return None


def load_cliprc_config(
    name_or_path: Union[str, os.PathLike, CLIPRCConfig, Dict[str, Any]], **overrides
) -> CLIPRCConfig:
    """Load a CLIP-RC config by bundled name or alias, JSON path, dict or config object (``overrides`` as in
    :func:`zsseg_rt.models.load_config`: ``clip_cfg``, ``loss`` and ``schedule`` are deep-merged)."""
    data = load_config_data(
        name_or_path,
        family=FAMILY,
        label="CLIP-RC",
        config_cls=CLIPRCConfig,
        overrides=overrides,
        merge_keys=("clip_cfg", "loss", "schedule"),
        resolve=resolve_cliprc_name,
        check_family=True,
    )
    return CLIPRCConfig.from_dict(data)
