"""Configuration of ZeroSeg (Chen et al., ICCV 2023, arXiv 2306.00450): an MAE-style ViT student, its
reconstruction decoder, a GroupViT-style segmentation head and the frozen CLIP vision teacher it distils from.

No official code is public, so every choice the paper does not state is a named field whose default is the most
likely value (README "ZeroSeg: inferred options" lists them with the reasoning). ``clip_model``/``clip_cfg``
name the open_clip model whose VISION tower is the teacher and whose TEXT tower classifies segment tokens at
test time (paper: "CLIP-L"; inferred OpenAI ViT-L/14 at 224 px). The student has its own architecture fields
(``encoder_*``, ``decoder_*``, ``seg_*``); ``patch_size``/``width`` refer to the student, ``embed_dim`` to CLIP.

Configs live in ``zsseg_rt/models/zeroseg/configs/*.json`` with ``"family": "zeroseg"``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Union

from zsseg_rt.contract.common.config import (
    BaseModelConfig,
    check_choice,
    deep_merge,
    load_config_data,
)

__all__ = [
    "ZeroSegConfig",
    "load_zeroseg_config",
    "FAMILY",
    "DATASET_BACKGROUND_THRESHOLDS",
    "GROUPVIT_BACKGROUND_THRESHOLDS",
    "CLIP_MEAN",
    "CLIP_STD",
]

FAMILY = "zeroseg"
CLIP_MEAN = [122.771, 116.746, 104.094]  # OpenAI CLIP statistics on the 0-255 scale (teacher input)
CLIP_STD = [68.501, 66.632, 70.323]

# paper §4.2 (following GroupViT's configs): background threshold per evaluation dataset
DATASET_BACKGROUND_THRESHOLDS = {"voc": 0.95, "context": 0.05, "coco_object": 0.35}
# GroupViT's own dataset configs (segmentation/configs/_base_/datasets/*.py) use other values for Context and
# COCO; ``zsseg eval --thresholds groupvit`` selects them (an option: the paper's table is the default)
GROUPVIT_BACKGROUND_THRESHOLDS = {"voc": 0.95, "context": 0.35, "coco_object": 0.95}

_LOSS_DEFAULTS: Dict[str, Any] = {
    # [P] Eq. 1 sums the three terms; no weights are given (1 each; docs/zeroseg.md)
    "reconstruction_weight": 1.0,
    "distill_weight": 1.0,
    "match_weight": 1.0,
    # [P] Eq. 1 writes the L1 distance |g_i - v_j|_1: the L1 norm, a sum over the feature dims ("mean" =
    # nn.L1Loss's per-element mean, 1/768 of it: distillation then weighs 10-30x less than the MAE term)
    "l1_reduction": "sum",
    # [P] Eq. 1: sum_i over the m segment tokens; over the n views of the distillation term: inferred mean
    "view_reduction": "mean",
    "token_reduction": "sum",
    # inferred: L2-normalise student and teacher features before the L1 distance (inference uses cosine)
    "l2_normalize": True,
    # [P] Eq. 1 / Table 4 "+ multi-scale": z is distilled to EVERY view v_k; "full" = the base (z <-> v1 only)
    "distill_views": "all",
    # inferred (MAE's best setting): per-patch normalised pixel targets
    "norm_pix_loss": True,
}


@dataclass
class ZeroSegConfig(BaseModelConfig):
    """Every field that defines a ZeroSeg model, its teacher, losses and inference (defaults: paper, IN-1K)."""

    name: str = "zeroseg_vitb16_in1k"
    family: str = FAMILY
    clip_model: str = "ViT-L-14"  # teacher + text tower ([P] "CLIP-L"; exact checkpoint inferred)
    image_size: int = 224  # [P] 224x224 centre crops for training
    mean: List[float] = field(default_factory=lambda: [123.675, 116.28, 103.53])  # inferred: MAE's ImageNet stats
    std: List[float] = field(default_factory=lambda: [58.395, 57.12, 57.375])
    # ---- student encoder: MAE ViT-B ([P]); patch 16 inferred
    student_patch_size: int = 16
    encoder_width: int = 768
    encoder_layers: int = 12
    encoder_heads: int = 12
    mlp_ratio: float = 4.0
    mask_ratio: float = 0.6  # [P] Table 5 best
    # ---- MAE reconstruction decoder: 8 layers [P]; width/heads inferred (MAE's 512 / 16)
    decoder_width: int = 512
    decoder_layers: int = 8
    decoder_heads: int = 16
    # ---- segmentation head: 5 layers, grouping after layers 2 and 4 with 32 then 8 group tokens [P]
    seg_width: int = 768  # inferred: the encoder width (no reduction stated)
    seg_heads: int = 12
    seg_depths: List[int] = field(default_factory=lambda: [2, 2, 1])
    num_group_tokens: List[int] = field(default_factory=lambda: [32, 8])
    group_hard: bool = True  # inferred (GroupViT default): hard assignment with straight-through
    group_gumbel: bool = True  # inferred (GroupViT default): Gumbel noise while training
    gumbel_tau: float = 1.0
    assign_eps: float = 1.0  # GroupViT: assignment / (sum over tokens + eps)
    group_token_projector: bool = True  # GroupViT: stage-2 group tokens += MLP(stage-1 group tokens)
    seg_head_input: str = "visible"  # inferred: the encoder's visible tokens ("mask_tokens": full grid, MAE-style)
    seg_pos_embed: bool = False  # inferred: no extra positional embedding in the head (encoder tokens carry it)
    global_extra_layers: int = 0  # 0: the head's 5th layer is "the transformer over segment tokens"
    # ---- projection to CLIP space (inferred: GroupViT's img_projector MLP, shared by tokens and pooled z)
    projector_hidden: int = 4096
    projector_norm: str = "batchnorm"  # batchnorm (GroupViT ProjectMLP) | none
    # ---- teacher views [P]: 1x1+2x2+3x3+4x4 grids, each cell resized to the teacher input
    teacher_grids: List[int] = field(default_factory=lambda: [1, 2, 3, 4])
    teacher_image_size: int = 224
    # where the cells are cut ([P] §3.2: "multi-scale views of the image"; docs/zeroseg.md): "image" = the region
    # the student's centre crop shows, at the image's own resolution, each cell resized to the teacher's input with
    # PIL bicubic (CLIP's preprocessing; the 1x1 view is CLIP's own resize + centre crop); "crop" = cut from the
    # 224 px student crop and upscaled (crop_interpolation)
    teacher_view_source: str = "image"
    crop_interpolation: str = "bicubic"  # inferred (the "crop" source only)
    teacher_mean: List[float] = field(default_factory=lambda: list(CLIP_MEAN))
    teacher_std: List[float] = field(default_factory=lambda: list(CLIP_STD))
    loss: Dict[str, Any] = field(default_factory=lambda: dict(_LOSS_DEFAULTS))
    # ---- inference ([P] §4.2; GroupViT-style details inferred)
    background_threshold: float = 0.95  # [P] VOC 0.95, Context 0.05, COCO 0.35 (DATASET_BACKGROUND_THRESHOLDS)
    score_mode: str = "softmax"  # inferred (GroupViT): softmax(logit_scale * cosine) | "cosine"
    logit_scale: float = 100.0  # GroupViT's learned scale is clamped at 100; ZeroSeg has none
    topk_classes: int = 5  # inferred (GroupViT): keep the top-k classes of the pooled embedding; 0 = all
    assignment_maps: str = "soft"  # GroupViT multiplies the SOFT stage maps | "hard"
    short_side: int = 448  # [P] test images resized to short side 448
    max_long_side: int = 2048  # GroupViT configs: img_scale=(2048, 448) keep-ratio (long side bounded by 2048)
    test_mode: str = "slide"  # GroupViT configs (VOC, Context, COCO): mode='slide' | "whole" (one window)
    crop_size: int = 448  # inferred (GroupViT configs): sliding window 448 / stride 224
    stride: int = 224
    # GroupViT's encode_decode: the top-k-masked class softmax of a segment is multiplied by its unmasked softmax
    affinity_product: bool = True
    # GroupViT's encode_decode: threshold = min(background_threshold, best segment score of the window), so the
    # best segment of a window is never background
    clamp_background_threshold: bool = True
    templates: List[str] = field(default_factory=lambda: ["a photo of a {}."])

    # ------------------------------------------------------------------ derived
    @property
    def patch_size(self) -> int:  # the STUDENT's patch size (the teacher's is in open_clip_cfg())
        return int(self.student_patch_size)

    @property
    def width(self) -> int:
        return int(self.encoder_width)

    @property
    def layers(self) -> int:
        return int(self.encoder_layers)

    @property
    def num_views(self) -> int:
        """Teacher views per image: sum of g*g over the grids (30 for 1,2,3,4)."""
        return int(sum(g * g for g in self.teacher_grids))

    @property
    def num_segments(self) -> int:
        return int(self.num_group_tokens[-1])

    # ------------------------------------------------------------------ validation / io
    def validate(self) -> "ZeroSegConfig":
        self.check_family()
        if self.image_size % self.patch_size:
            raise ValueError(f"image_size {self.image_size} is not a multiple of student_patch_size {self.patch_size}")
        if not 0.0 <= self.mask_ratio < 1.0:
            raise ValueError(f"mask_ratio must be in [0, 1), got {self.mask_ratio}")
        n_vis = int(self.grid_size**2 * (1 - self.mask_ratio))
        if n_vis < 1:
            raise ValueError(f"mask_ratio {self.mask_ratio} leaves no visible patch of {self.grid_size**2}")
        for w, h, what in (
            (self.encoder_width, self.encoder_heads, "encoder"),
            (self.decoder_width, self.decoder_heads, "decoder"),
            (self.seg_width, self.seg_heads, "seg"),
        ):
            if w % h:
                raise ValueError(f"{what}_width {w} is not divisible by {what}_heads {h}")
        if len(self.seg_depths) != len(self.num_group_tokens) + 1 or min(self.seg_depths) < 1:
            raise ValueError(
                f"seg_depths {self.seg_depths} must have one entry (>= 1) per grouping stage plus the final one "
                f"(num_group_tokens {self.num_group_tokens})"
            )
        if not self.num_group_tokens or min(self.num_group_tokens) < 1:
            raise ValueError(f"num_group_tokens must be positive, got {self.num_group_tokens}")
        check_choice("seg_head_input", self.seg_head_input, ("visible", "mask_tokens"))
        check_choice("projector_norm", self.projector_norm, ("batchnorm", "none"))
        check_choice("score_mode", self.score_mode, ("softmax", "cosine"))
        check_choice("test_mode", self.test_mode, ("slide", "whole"))
        if min(self.crop_size, self.stride, self.short_side, self.max_long_side) < 1:
            raise ValueError("crop_size, stride, short_side and max_long_side must be >= 1")
        if self.crop_size % self.patch_size:
            raise ValueError(f"crop_size {self.crop_size} is not a multiple of student_patch_size {self.patch_size}")
        check_choice("assignment_maps", self.assignment_maps, ("soft", "hard"))
        if not self.teacher_grids or min(self.teacher_grids) < 1:
            raise ValueError(f"teacher_grids must be positive integers, got {self.teacher_grids}")
        check_choice("teacher_view_source", self.teacher_view_source, ("image", "crop"))
        if self.teacher_grids[0] != 1:
            raise ValueError(f"teacher_grids must start with 1 (view 0 is the full image v1), got {self.teacher_grids}")
        if self.num_views < 2:
            raise ValueError("segment matching needs at least one local crop: add a grid > 1 to teacher_grids")
        for key in ("l1_reduction", "view_reduction", "token_reduction"):
            check_choice(f"loss.{key}", self.loss.get(key), ("mean", "sum"))
        check_choice("loss.distill_views", self.loss.get("distill_views"), ("all", "full"))
        for key in ("reconstruction_weight", "distill_weight", "match_weight"):
            if float(self.loss.get(key, 0.0)) < 0:
                raise ValueError(f"loss.{key} must be >= 0, got {self.loss.get(key)}")
        if len(self.mean) != 3 or len(self.std) != 3:
            raise ValueError("mean and std must have 3 entries (RGB)")
        return self

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "ZeroSegConfig":
        data = cls.checked_data(data)
        data["loss"] = deep_merge(_LOSS_DEFAULTS, data.get("loss") or {})
        unknown = sorted(set(data["loss"]) - set(_LOSS_DEFAULTS))
        if unknown:
            raise ValueError(f"unknown ZeroSeg loss keys {unknown}; known: {sorted(_LOSS_DEFAULTS)}")
        return cls.from_checked_data(data)


def load_zeroseg_config(
    name_or_path: Union[str, os.PathLike, ZeroSegConfig, Dict[str, Any]], **overrides: Any
) -> ZeroSegConfig:
    """Load a ZeroSeg config by bundled name (``"zeroseg_vitb16_in1k"``), JSON path, dict or config object.

    ``overrides`` replace top-level keys (``clip_cfg`` and ``loss`` are deep-merged).
    """
    data = load_config_data(
        name_or_path, family=FAMILY, label="ZeroSeg", config_cls=ZeroSegConfig, overrides=overrides, check_family=True
    )
    return ZeroSegConfig.from_dict(data)
