"""Config of the training-free dense-CLIP segmenters (MaskCLIP, SCLIP, ClearCLIP, NACLIP, SC-CLIP) on stock CLIP
weights.

Bundled configs: ``zsseg_rt/models/training_free/configs/{maskclip,sclip,clearclip,naclip,scclip}_vitb16.json`` (+ the tiny test config
``training_free_tiny_test.json``). They carry ``"family": "training_free"``, which is how ``create_model`` tells
them from ZegCLIP configs; names may be given with dashes (``"sclip-vitb16"``).

The first four methods differ only in the last transformer block of the CLIP image tower (see ``model.py``);
SC-CLIP also repairs anomaly tokens and uses intermediate layers (``scclip.py``, settings ``SCCLIPSettings``):

======== ====================================== ============ =================================================
method   last-block attention                   residual/FFN official inference (ViT-B/16, OpenAI weights)
======== ====================================== ============ =================================================
maskclip identity (``out_proj(v)``)             kept / kept  whole image, short side 512, ImageNet mean/std
sclip    ``softmax(qq^T s) + softmax(kk^T s)``  kept / kept  slide 224/112, short side 336, logit scale 40
clearclip ``softmax(qq^T s)``                   no / no      slide 448/224, short side 448, logit scale 50
naclip   ``softmax(kk^T s + Omega)`` (Gaussian) no / no      slide 224/112, short side 336, logit scale 40, PAMR 10
scclip   ``(softmax(A) + softmax(kk^T s)) / 2`` no / no      slide 224/112, short side 336, logit scale 40
======== ====================================== ============ =================================================

Image tower (``tower``, ``TOWERS``): MaskCLIP's official code builds it as mmseg's VisionTransformer (exact GELU,
LayerNorm eps 1e-6, ``"mmseg"``, its default); the other four run OpenAI's CLIP (QuickGELU, eps 1e-5,
``"open_clip"``). ``tower="open_clip"`` on MaskCLIP is the stock-CLIP variant, a deviation from its official code.

Post-processing options (all in the bundle's ``postprocess`` table): ``background_threshold`` (official
``prob_thd``), ``area_threshold`` (``area_thd``), ``pamr_iterations`` / ``pamr_dilations`` (PAMR on the logits at
the image size before the softmax; NACLIP's reported numbers: 10 steps, dilations (8, 16)).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

from zsseg_rt.contract.common.config import (
    VOCAB_DIR,
    BaseModelConfig,
    family_config_dir,
    load_config_data,
    load_templates,
)

__all__ = [
    "TrainingFreeConfig",
    "SCCLIPSettings",
    "METHODS",
    "ATTENTION_MODES",
    "TOWERS",
    "INFERENCE_MODES",
    "FAMILY",
    "load_training_free_config",
    "training_free_config_path",
    "load_training_free_templates",
]

FAMILY = "training_free"
ATTENTION_MODES = ("identity", "qq+kk", "qq", "kk", "scclip")
# How the image tower is built (the text tower is always stock CLIP: QuickGELU per ``quick_gelu``, LayerNorm eps 1e-5).
# "open_clip": open_clip's VisionTransformer, as OpenAI's clip package builds it (activation per ``quick_gelu``,
#   every LayerNorm eps 1e-5): what SCLIP, ClearCLIP, NACLIP and SC-CLIP run (they load OpenAI's clip package).
# "mmseg": mmseg's VisionTransformer as MaskCLIP configures it (chongzhou96/MaskCLIP @245d31f
#   configs/_base_/models/maskclip_vit16.py:22-23 norm_cfg=dict(type='LN', eps=1e-6), act_cfg=dict(type='GELU')):
#   exact (erf) GELU in every block's FFN, eps 1e-6 in every LayerNorm (pre-norm ln0 = ln_pre, each layer's
#   ln1/ln2 = ln_1/ln_2, final norm ln1 = ln_post; mmseg/models/backbones/vit.py:61-76, 273-283), same weights.
TOWERS: Dict[str, Dict[str, Any]] = {
    "open_clip": {"activation": None, "layer_norm_eps": 1e-5},  # activation None: QuickGELU iff quick_gelu
    "mmseg": {"activation": "gelu", "layer_norm_eps": 1e-6},
}
# Per method: last-block attention, residual kept, FFN kept, Gaussian neighbourhood std (NACLIP), pos-embed resize,
# image tower (TOWERS), and how its whole-image inference (official ``slide_crop=0`` / mmseg ``mode='whole'``) feeds
# the rescaled image to the tower and resizes the logits back:
# ``whole_fit`` "pad": zeros bottom/right to a multiple of the patch (MaskCLIP: mmseg PatchEmbed(padding='corner'),
#   mmseg/models/utils/embed.py:AdaptivePadding); "crop": the remainder rows/columns dropped (OpenAI CLIP's conv1 of
#   stride p, as SCLIP / ClearCLIP / NACLIP run it);
# ``whole_logits`` "rescaled": grid logits bilinear to the rescaled image, then to the original (MaskCLIP:
#   EncoderDecoder.encode_decode + whole_inference; NACLIP: forward_feature + predict); "original": grid logits
#   bilinear straight to the original size (SCLIP / ClearCLIP: forward_feature(logit_size=ori_shape)).
METHODS: Dict[str, Dict[str, Any]] = {
    "maskclip": {
        "attention": "identity",
        "residual": True,
        "ffn": True,
        "gaussian_std": None,
        "pos_resize": "size",
        "tower": "mmseg",
        "whole_fit": "pad",
        "whole_logits": "rescaled",
    },
    "sclip": {
        "attention": "qq+kk",
        "residual": True,
        "ffn": True,
        "gaussian_std": None,
        "pos_resize": "dino",
        "tower": "open_clip",
        "whole_fit": "crop",
        "whole_logits": "original",
    },
    "clearclip": {
        "attention": "qq",
        "residual": False,
        "ffn": False,
        "gaussian_std": None,
        "pos_resize": "dino",
        "tower": "open_clip",
        "whole_fit": "crop",
        "whole_logits": "original",
    },
    "naclip": {
        "attention": "kk",
        "residual": False,
        "ffn": False,
        "gaussian_std": 5.0,
        "pos_resize": "dino",
        "tower": "open_clip",
        "whole_fit": "crop",
        "whole_logits": "rescaled",
    },
    "scclip": {
        "attention": "scclip",
        "residual": False,
        "ffn": False,
        "gaussian_std": None,
        "pos_resize": "dino",
        "tower": "open_clip",
        # no whole-image graph: its anomaly repair takes constant-size TopKs over the tokens (scclip.py), and its
        # official settings all use windows
        "whole_fit": None,
        "whole_logits": None,
    },
}
INFERENCE_MODES = ("whole", "windows")
PAMR_MAX_DILATIONS = 8
_TEMPLATE_FILE = VOCAB_DIR / "imagenet_templates.json"


def load_training_free_templates(ref: Union[str, Sequence[str]]) -> List[str]:
    """Templates by set name: ``"imagenet80"`` (the 80 CLIP ImageNet templates) or any ``load_templates`` set."""
    if isinstance(ref, str):
        with open(_TEMPLATE_FILE, "r", encoding="utf-8") as handle:
            sets = json.load(handle)["templates"]
        if ref in sets:
            return load_templates(list(sets[ref]))
    return load_templates(ref)


@dataclass(frozen=True)
class SCCLIPSettings:
    """SC-CLIP's hyper-parameters (official defaults: ``configs/base_config.py`` and ``clip/model.py``)."""

    pre_adjust_idx: int = 8  # layer whose repaired self-similarity adjusts the last block (S_mid)
    post_adjust_idx: int = 3  # layer whose self-similarity refines the output (S_post)
    multi_start_idx: int = 3  # multi-level fusion sums f_i for i in [multi_start_idx, multi_end_idx)
    multi_end_idx: int = 10
    res_cls: float = 0.3  # weight of the CLS token added after the last attention
    beta: float = 0.4  # similarities below it are zeroed before the feature averaging
    attention_scale: float = 3.0  # A = attention_scale * (S_mid - mean(S_mid))
    lof_neighbors: int = 30
    lof_contamination: float = 0.05

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "SCCLIPSettings":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown SC-CLIP settings {unknown}; known: {sorted(known)}")
        defaults = cls()
        for key, value in data.items():
            want = type(getattr(defaults, key))
            ok = isinstance(value, int) if want is int else isinstance(value, (int, float))
            if isinstance(value, bool) or not ok:
                raise ValueError(f"SC-CLIP setting {key!r} must be {want.__name__}, got {value!r}")
        values: Dict[str, Any] = {k: (float(v) if type(getattr(defaults, k)) is float else v) for k, v in data.items()}
        return cls(**values)

    def to_dict(self) -> Dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def validate(self, layers: int, tokens: int) -> "SCCLIPSettings":
        """Check the indices against a ViT of ``layers`` blocks and the LOF against ``tokens`` patch tokens."""
        last = layers - 2  # f_0 .. f_{L-2}
        if layers < 2:
            raise ValueError(f"SC-CLIP needs a ViT with at least 2 blocks, got {layers}")
        for name in ("pre_adjust_idx", "post_adjust_idx"):
            value = getattr(self, name)
            if not 0 <= value <= last:
                raise ValueError(f"SC-CLIP {name} must be in 0..{last} for a {layers}-block ViT, got {value}")
        if not 0 <= self.multi_start_idx < self.multi_end_idx <= last + 1:
            raise ValueError(
                f"SC-CLIP needs 0 <= multi_start_idx < multi_end_idx <= {last + 1} for a {layers}-block ViT, got "
                f"{self.multi_start_idx}, {self.multi_end_idx}"
            )
        if not 1 <= self.lof_neighbors < tokens:
            raise ValueError(
                f"SC-CLIP lof_neighbors must be in 1..{tokens - 1} for {tokens} patch tokens (the image grid), got "
                f"{self.lof_neighbors}: use a larger image_size or fewer neighbours"
            )
        if not 0.0 < self.lof_contamination < 1.0:
            raise ValueError(f"SC-CLIP lof_contamination must be in (0, 1), got {self.lof_contamination}")
        return self


@dataclass
class TrainingFreeConfig(BaseModelConfig):
    """Everything that defines a training-free segmenter and its inference settings.

    ``image_size`` is the sliding-window crop (a bundle's window size; its image graph takes any size but for
    SC-CLIP); the stock positional table keeps its stored grid and is resized to each input's grid in the forward
    (``grid.positional_for_grid``), as the official code does. ``short_side``/``crop_size``/``stride`` are the official test
    settings (``test_scale = [2048, short_side]``). ``attention``/``residual``/``ffn``/``gaussian_std``/
    ``pos_resize``/``tower`` default (None) to the method's values in ``METHODS``.
    """

    name: str = "sclip_vitb16"
    family: str = FAMILY
    method: str = "sclip"
    image_size: int = 224
    crop_size: int = 224
    stride: int = 112
    short_side: int = 336
    logit_scale: float = 40.0
    background_threshold: Optional[float] = None  # max softmax probability below it -> class 0 (SCLIP prob_thd)
    area_threshold: Optional[float] = None  # SCLIP area_thd: drop classes covering <= this share of class>0 area
    attention: Optional[str] = None
    residual: Optional[bool] = None
    ffn: Optional[bool] = None
    gaussian_std: Optional[float] = None
    pos_resize: Optional[str] = None  # "dino": bicubic, scale (g+0.1)/g0 (SCLIP family); "size": bicubic to size
    tower: Optional[str] = None  # image tower: "open_clip" | "mmseg" (TOWERS; MaskCLIP's official is "mmseg")
    templates: List[str] = field(default_factory=lambda: ["a photo of a {}."])
    mean: List[float] = field(default_factory=lambda: [122.771, 116.746, 104.094])
    std: List[float] = field(default_factory=lambda: [68.501, 66.632, 70.323])
    calibration_bias: float = 0.0  # ZegCLIP's seen-class calibration never applies here; kept for the bundle
    pamr_iterations: int = 0  # PAMR steps on the logits at the image size before the softmax (0: none)
    pamr_dilations: List[int] = field(default_factory=lambda: [8, 16])
    scclip: Dict[str, Any] = field(default_factory=dict)  # SC-CLIP settings overriding SCCLIPSettings' defaults
    # "whole" (one pass over the rescaled image at its own size) or "windows" (crop_size/stride sliding windows); None:
    # the method's official test mode (settings.json "default_mode": MaskCLIP whole, the others windows)
    inference: Optional[str] = None
    # [long, short]: the largest rescaled image whole-image inference accepts (a bundle's image graph is exported for
    # sides up to these, rounded up to the patch); None: the largest test scale of the method's official settings
    whole_max_size: Optional[List[int]] = None

    # ------------------------------------------------------------------ derived
    def resolved(self, key: str):
        value = getattr(self, key)
        return METHODS[self.method][key] if value is None else value

    def scclip_settings(self) -> SCCLIPSettings:
        """SC-CLIP's settings (the official defaults with this config's ``scclip`` entries)."""
        return SCCLIPSettings.from_dict(self.scclip)

    @property
    def test_scale(self) -> List[int]:
        """Official mmseg 1.x test resize ``Resize(scale=(2048, short_side), keep_ratio=True)``."""
        return [2048, int(self.short_side)]

    # ------------------------------------------------------------------ validation / io
    def validate(self) -> "TrainingFreeConfig":
        self.check_family()
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {sorted(METHODS)}, got {self.method!r}")
        if self.resolved("attention") not in ATTENTION_MODES:
            raise ValueError(f"attention must be one of {ATTENTION_MODES}, got {self.attention!r}")
        std = self.resolved("gaussian_std")
        if std is not None and not float(std) > 0:
            raise ValueError(f"gaussian_std must be > 0 (or null for no neighbourhood bias), got {std}")
        if self.resolved("tower") not in TOWERS:
            raise ValueError(
                f"tower must be one of {sorted(TOWERS)} (the image tower's activation and LayerNorm eps), got "
                f"{self.tower!r}"
            )
        if self.resolved("pos_resize") not in ("dino", "size"):
            raise ValueError(f"pos_resize must be 'dino' or 'size', got {self.pos_resize!r}")
        if self.image_size % self.patch_size:
            raise ValueError(f"image_size {self.image_size} is not a multiple of the patch size {self.patch_size}")
        if self.crop_size != self.image_size:
            raise ValueError(
                f"crop_size {self.crop_size} must equal image_size {self.image_size} (the encoder input is the crop)"
            )
        if not (0 < self.stride <= self.crop_size):
            raise ValueError(f"stride must be in (0, crop_size={self.crop_size}], got {self.stride}")
        if self.short_side < 1 or not self.logit_scale > 0:
            raise ValueError(f"short_side >= 1 and logit_scale > 0 expected, got {self.short_side}, {self.logit_scale}")
        for key in ("background_threshold", "area_threshold"):
            v = getattr(self, key)
            if v is not None and not (0.0 <= float(v) <= 1.0):
                raise ValueError(f"{key} must be null or in [0, 1], got {v}")
        if len(self.mean) != 3 or len(self.std) != 3:
            raise ValueError("mean and std must have 3 entries (RGB)")
        self._validate_pamr()
        self._validate_whole()
        if self.resolved("attention") == "scclip":  # the settings of SC-CLIP's attention mode (model.ATTENTION)
            self.scclip_settings().validate(self.layers, (self.image_size // self.patch_size) ** 2)
        elif self.scclip:
            raise ValueError(f"'scclip' settings apply to method 'scclip' only, not {self.method!r}")
        return self

    def _validate_pamr(self) -> None:
        n = self.pamr_iterations
        if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= 10000:
            raise ValueError(f"pamr_iterations must be an int in 0..10000 (0: no PAMR), got {n!r}")
        d = self.pamr_dilations
        if not (
            isinstance(d, (list, tuple))
            and 1 <= len(d) <= PAMR_MAX_DILATIONS
            and all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in d)
        ):
            raise ValueError(f"pamr_dilations must be 1..{PAMR_MAX_DILATIONS} ints >= 1, got {d!r}")

    def _validate_whole(self) -> None:
        if self.inference is not None and self.inference not in INFERENCE_MODES:
            raise ValueError(
                f"inference must be one of {INFERENCE_MODES} (or null: the method's), got {self.inference!r}"
            )
        if self.inference == "whole" and not self.whole_image_capable:
            raise ValueError(
                f"{self.method} has no whole-image inference here (its official settings all use windows): "
                "inference must be 'windows'"
            )
        size = self.whole_max_size
        if size is not None and not (
            isinstance(size, (list, tuple))
            and len(size) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) for v in size)
            and size[0] >= size[1] >= self.patch_size
            and size[0] <= 1 << 14
        ):
            raise ValueError(
                f"whole_max_size must be [long, short] with {1 << 14} >= long >= short >= the patch size "
                f"{self.patch_size}, got {size!r}"
            )

    @property
    def whole_image_capable(self) -> bool:
        """Whether the method runs whole images (its image graph then takes any size): all but SC-CLIP."""
        return METHODS[self.method]["whole_fit"] is not None

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "TrainingFreeConfig":
        return cls.from_checked_data(cls.checked_data(data, "training-free config", load_training_free_templates))


def training_free_config_path(name: Union[str, os.PathLike]) -> Optional[Path]:
    """The JSON file of a training-free config (bundled name with ``-`` or ``_``, or a path), else None."""
    s = str(name)
    candidates = [Path(s)]
    if not s.endswith(".json"):
        candidates += [
            family_config_dir(FAMILY) / f"{s}.json",
            family_config_dir(FAMILY) / f"{s.replace('-', '_')}.json",
        ]
    for path in candidates:
        if path.is_file() and path.suffix == ".json":
            try:
                with open(path, "r", encoding="utf-8") as handle:
                    data = json.load(handle)
            except (OSError, ValueError):
                return None
            return path if isinstance(data, dict) and data.get("family") == FAMILY else None
    return None


def load_training_free_config(
    name_or_path: Union[str, os.PathLike, TrainingFreeConfig, Dict[str, Any]], **overrides
) -> TrainingFreeConfig:
    """Load by bundled name (``"sclip-vitb16"``), JSON path, dict or config; ``overrides`` replace keys
    (``clip_cfg`` is deep-merged)."""
    data = load_config_data(
        name_or_path,
        family=FAMILY,
        label="training-free",
        config_cls=TrainingFreeConfig,
        overrides=overrides,
        merge_keys=("clip_cfg",),
        resolve=training_free_config_path,
        check_family=True,
    )
    return TrainingFreeConfig.from_dict(data)
