"""ZegFormer configuration: a dataclass loaded from the bundled JSON files (``zsseg_rt/models/zegformer/configs/*.json``).

The fields mirror the official detectron2 configs of ``dingjiansw101/ZegFormer`` (``configs/*/zegformer_*.yaml``
and ``mask_former/config.py``): ResNet backbone, MaskFormer ``BasePixelDecoder`` (FPN, GN), a 6-layer post-norm
transformer decoder on res5, query classification by cosine similarity to frozen CLIP text embeddings, and at test
time the CLIP image branch on masked crops fused with the query scores.

``image_size`` (from :class:`BaseModelConfig`) is the CLIP image tower's input (224 for ViT-B/16 in the official
code); the segmentation network itself takes whole images resized to ``test_short_side`` and padded to
``size_divisibility``. ``mean``/``std`` normalise the segmentation input, ``clip_mean``/``clip_std`` the CLIP
crops (0-255 scale, RGB).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

from zsseg_rt.contract.common.config import (
    BaseModelConfig,
    deep_merge,
    load_config_data,
)

__all__ = [
    "ZegFormerConfig",
    "load_zegformer_config",
    "QUERY_TEMPLATE_SETS",
    "CLIP_BRANCH_TEMPLATES",
    "CLIP_STYLES",
    "CLIP_PRECISIONS",
    "FUSION_MODES",
]

# The family's own class lists (``class_lists/*.json``), where the official code spells a dataset's classes its own
# way (VOC: "potted plant"); a config names one as ``"class_lists/voc20.json"``.
_FAMILY_DIR = Path(__file__).resolve().parent


def _own_list(ref: Any) -> Any:
    """``ref`` as a path inside the family package when it names one of the family's own lists, else unchanged
    (the shared lists of :mod:`zsseg_rt.vocabulary`, a path, or a list of names)."""
    if isinstance(ref, str) and ref.startswith("class_lists/") and (_FAMILY_DIR / ref).is_file():
        return str(_FAMILY_DIR / ref)
    return ref


# Official ``PROMPT_ENSEMBLE_TYPE`` sets for the query classifier (transformer_zeroshot_predictor.py,
# third_party/imagenet_templates.IMAGENET_TEMPLATES_SELECT).
QUERY_TEMPLATE_SETS: Dict[str, List[str]] = {
    "single": ["A photo of a {} in the scene"],
    "imagenet_select": [
        "itap of a {}.",
        "a bad photo of the {}.",
        "a origami {}.",
        "a photo of the large {}.",
        "a {} in a video game.",
        "art of the {}.",
        "a photo of the small {}.",
        "A photo of a {} in the scene",
    ],
}

# The CLIP image branch's text templates (official IMAGENET_TEMPLATES_SELECT_CLIP, 32 entries).
CLIP_BRANCH_TEMPLATES: List[str] = [
    "a bad photo of the {}.",
    "a photo of the large {}.",
    "a photo of the small {}.",
    "a cropped photo of a {}.",
    "This is a photo of a {}",
    "This is a photo of a small {}",
    "This is a photo of a medium {}",
    "This is a photo of a large {}",
    "This is a masked photo of a {}",
    "This is a masked photo of a small {}",
    "This is a masked photo of a medium {}",
    "This is a masked photo of a large {}",
    "This is a cropped photo of a {}",
    "This is a cropped photo of a small {}",
    "This is a cropped photo of a medium {}",
    "This is a cropped photo of a large {}",
    "A photo of a {} in the scene",
    "a bad photo of the {} in the scene",
    "a photo of the large {} in the scene",
    "a photo of the small {} in the scene",
    "a cropped photo of a {} in the scene",
    "a photo of a masked {} in the scene",
    "There is a {} in the scene",
    "There is the {} in the scene",
    "This is a {} in the scene",
    "This is the {} in the scene",
    "This is one {} in the scene",
    "There is a masked {} in the scene",
    "There is the masked {} in the scene",
    "This is a masked {} in the scene",
    "This is the masked {} in the scene",
    "This is one masked {} in the scene",
]

CLIP_STYLES = ("cropmask", "crop", "mask")
CLIP_PRECISIONS = ("auto", "fp16", "fp32")
# ensemble: official ENSEMBLING (seen-class CLIP probabilities averaged, geometric mix with lambda);
# ensemble_all: official ENSEMBLING_ALL_CLS; clip_only: CLIP_CLASSIFICATION without ensembling (CLIP logits +
# ZegFormer's no-object logit); none: CLIP_CLASSIFICATION off (query classifier only).
FUSION_MODES = ("ensemble", "ensemble_all", "clip_only", "none")
BACKBONES = {"resnet50": [3, 4, 6, 3], "resnet101": [3, 4, 23, 3]}


@dataclass
class ZegFormerConfig(BaseModelConfig):
    """Everything that defines a ZegFormer model and its official inference/training settings."""

    name: str = "zegformer_r101_voc"
    family: str = "zegformer"
    image_size: int = 224  # CLIP image-branch input (roi_align output size)
    backbone: str = "resnet101"  # resnet50 | resnet101 (torchvision layout, frozen BatchNorm as detectron2)
    backbone_layers: Optional[List[int]] = None  # None -> the standard block counts of ``backbone``
    # detectron2 MODEL.RESNETS.STEM_OUT_CHANNELS / RES2_OUT_CHANNELS / WIDTH_PER_GROUP (official: the defaults);
    # smaller values only for tiny test models (each later stage doubles the widths)
    stem_channels: int = 64
    res2_channels: int = 256
    width_per_group: int = 64
    conv_dim: int = 256
    mask_dim: int = 256
    hidden_dim: int = 256
    num_queries: int = 100
    nheads: int = 8
    dim_feedforward: int = 2048
    dec_layers: int = 6
    dropout: float = 0.1
    pre_norm: bool = False
    temperature: float = 0.01  # logits = (1 / temperature) * cos; fixed (official logit_scale.requires_grad=False)
    prompt_ensemble: str = "single"  # QUERY_TEMPLATE_SETS key
    clip_cls_style: str = "cropmask"
    fusion: str = "ensemble"
    ensemble_lambda: float = 2.0 / 3.0
    clip_mean: List[float] = field(default_factory=lambda: [122.7709383, 116.7460125, 104.09373615])
    clip_std: List[float] = field(default_factory=lambda: [68.5005327, 66.6321579, 70.3231630])
    # Precision of the frozen CLIP towers (text embeddings and their template averaging, CLIP image branch):
    # "auto" = fp16 on CUDA (official: clip.load(jit=False) converts OpenAI CLIP to fp16 and never casts back) and
    # fp32 on the CPU (deviation: the official needs CUDA and never ran there); "fp16" or "fp32" always. The
    # segmentation network is unaffected (AMP is a training setting); exported bundles run CLIP in fp32.
    clip_precision: str = "auto"
    size_divisibility: int = 32
    test_short_side: int = 512
    test_max_size: int = 2048
    loss: Dict[str, Any] = field(
        default_factory=lambda: {
            "class_weight": 1.0,
            "mask_weight": 20.0,
            "dice_weight": 1.0,
            "no_object_weight": 0.1,
            "focal_alpha": 0.25,
            "focal_gamma": 2.0,
            "deep_supervision": True,
        }
    )
    ignore_index: int = 255
    setting: str = "inductive"  # official: train on seen classes only (unseen pixels ignored)
    backbone_lr_mult: float = 0.1  # official SOLVER.BACKBONE_MULTIPLIER
    # ImageNet init of the ResNet when a model is built from a config (official MODEL.WEIGHTS R-101.pkl = the
    # torchvision weights): a torchvision weights tag ("IMAGENET1K_V1", downloaded by torchvision) or a local
    # torchvision-layout state dict; None = random init. Ignored when loading native/official checkpoints.
    backbone_pretrained: Optional[str] = None

    @property
    def layers_per_stage(self) -> List[int]:
        return list(self.backbone_layers) if self.backbone_layers else list(BACKBONES[self.backbone])

    @property
    def query_templates(self) -> List[str]:
        return list(QUERY_TEMPLATE_SETS[self.prompt_ensemble])

    def validate(self) -> "ZegFormerConfig":
        self.check_family()
        if self.backbone not in BACKBONES:
            raise ValueError(f"backbone must be one of {sorted(BACKBONES)}, got {self.backbone!r}")
        if self.backbone_layers is not None and (
            len(self.backbone_layers) != 4 or any(int(n) < 1 for n in self.backbone_layers)
        ):
            raise ValueError(f"backbone_layers must be 4 positive block counts, got {self.backbone_layers}")
        if min(self.stem_channels, self.res2_channels, self.width_per_group) < 1:
            raise ValueError(
                "stem_channels, res2_channels and width_per_group must be >= 1, got "
                f"{self.stem_channels}, {self.res2_channels}, {self.width_per_group}"
            )
        if self.prompt_ensemble not in QUERY_TEMPLATE_SETS:
            raise ValueError(
                f"prompt_ensemble must be one of {sorted(QUERY_TEMPLATE_SETS)}, got {self.prompt_ensemble!r}"
            )
        if self.clip_cls_style not in CLIP_STYLES:
            raise ValueError(f"clip_cls_style must be one of {CLIP_STYLES}, got {self.clip_cls_style!r}")
        if self.clip_precision not in CLIP_PRECISIONS:
            raise ValueError(f"clip_precision must be one of {CLIP_PRECISIONS}, got {self.clip_precision!r}")
        if self.fusion not in FUSION_MODES:
            raise ValueError(f"fusion must be one of {FUSION_MODES}, got {self.fusion!r}")
        if not 0.0 <= self.ensemble_lambda <= 1.0:
            raise ValueError(f"ensemble_lambda must be in [0, 1], got {self.ensemble_lambda}")
        if self.setting != "inductive":
            raise ValueError(f"ZegFormer trains in the inductive setting only (official), got setting={self.setting!r}")
        if self.hidden_dim % self.nheads:
            raise ValueError(f"hidden_dim {self.hidden_dim} is not divisible by nheads {self.nheads}")
        if self.conv_dim % 32:
            raise ValueError(f"conv_dim {self.conv_dim} must be a multiple of 32 (GroupNorm with 32 groups)")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if self.size_divisibility < 1 or self.test_short_side < 1 or self.test_max_size < self.test_short_side:
            raise ValueError("size_divisibility, test_short_side must be >= 1 and test_max_size >= test_short_side")
        n = len(self.class_names)
        bad = [i for i in self.seen_classes if not (0 <= int(i) < n)]
        if bad:
            raise ValueError(f"seen_classes {bad} out of range for {n} class names")
        for label, v in (
            ("mean", self.mean),
            ("std", self.std),
            ("clip_mean", self.clip_mean),
            ("clip_std", self.clip_std),
        ):
            if len(v) != 3:
                raise ValueError(f"{label} must have 3 entries (RGB), got {v}")
        return self

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "ZegFormerConfig":
        data = dict(data)
        if "class_names" in data:
            data["class_names"] = _own_list(data["class_names"])
        data = cls.checked_data(data, templates=None)  # ZegFormer's own template sets are not read from here
        if "loss" in data:
            data["loss"] = deep_merge(cls().loss, data["loss"] or {})
        return cls.from_checked_data(data)


def load_zegformer_config(
    name_or_path: Union[str, os.PathLike, ZegFormerConfig, Dict[str, Any]], **overrides: Any
) -> ZegFormerConfig:
    """Load a ZegFormer config by bundled name (``"zegformer_r101_voc"``), JSON path, dict or config object.

    Args:
        name_or_path: the config spec.
        overrides: top-level fields to replace (``clip_cfg`` and ``loss`` are deep-merged).

    Returns:
        The validated :class:`ZegFormerConfig`.
    """
    data = load_config_data(
        name_or_path, family="zegformer", label="ZegFormer", config_cls=ZegFormerConfig, overrides=overrides
    )
    return ZegFormerConfig.from_dict(data)
