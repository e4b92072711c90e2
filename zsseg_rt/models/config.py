"""Model configuration of ZegCLIP: a small dataclass loaded from JSON data files.

Configs live in ``zsseg_rt/models/configs/*.json`` (one per paper setting plus tiny test models); class-name
lists and prompt templates live in ``zsseg_rt/models/configs/vocab/*.json``. A config names an open_clip model
(``clip_model``, e.g. ``"ViT-B-16"``) whose open_clip JSON config gives the tower architecture; ``clip_cfg`` is
deep-merged on top of it (tiny test towers, or any other change).

``mean``/``std`` are ImageNet statistics on the 0-255 scale (the official mmseg ``img_norm_cfg``), RGB order.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
VOCAB_DIR = CONFIG_DIR / "vocab"

__all__ = [
    "BaseModelConfig",
    "ZegCLIPConfig",
    "load_zegclip_config",
    "load_class_names",
    "load_templates",
    "CONFIG_DIR",
]


def _read_json(path: Path) -> Dict[str, Any]:
    with open(path, "r", encoding="utf-8") as f:
        return json.load(f)


def load_class_names(ref: Union[str, Sequence[str]]) -> List[str]:
    """Class names from a vocab file name (``"vocab/voc20.json"``, ``"voc20"``), a path, or a list."""
    if not isinstance(ref, str):
        return [str(n) for n in ref]
    candidates = [Path(ref), CONFIG_DIR / ref, VOCAB_DIR / ref, VOCAB_DIR / f"{ref}.json"]
    for p in candidates:
        if p.is_file():
            data = _read_json(p)
            names = data["class_names"] if isinstance(data, dict) else data
            return [str(n) for n in names]
    raise FileNotFoundError(
        f"class-name list {ref!r} not found (looked in {VOCAB_DIR}); give a JSON file with a 'class_names' list"
    )


def load_templates(ref: Union[str, Sequence[str]]) -> List[str]:
    """Prompt templates by set name (``"single"``, ``"coco_multi"``; see vocab/templates.json) or as a list."""
    if not isinstance(ref, str):
        templates = [str(t) for t in ref]
    else:
        sets = _read_json(VOCAB_DIR / "templates.json")["templates"]
        if ref in sets:
            templates = list(sets[ref])
        elif "{}" in ref:
            templates = [ref]
        else:
            raise ValueError(f"unknown template set {ref!r}; known: {sorted(sets)} (or give a string with '{{}}')")
    from zsseg_rt.pipeline.vocabulary import validate_templates  # the one template check

    return list(validate_templates(templates))


def check_known_keys(cls, data: Dict[str, Any], what: str = "config") -> None:
    """Refuse keys that are not fields of dataclass ``cls``, naming them and the known ones."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"unknown {what} keys {unknown}; known keys: {sorted(known)}")


def _deep_merge(base: Dict[str, Any], over: Dict[str, Any]) -> Dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


@dataclass
class BaseModelConfig:
    """The fields every model family shares: the open_clip tower, input size, sliding-window test settings,
    normalisation, vocabulary, prompt templates and the seen-class calibration. ``family`` is required: each
    family's subclass sets it (the registry key, :mod:`zsseg_rt.models.registry`) and ``validate`` checks it.
    """

    name: str = ""
    family: str = ""
    clip_model: str = "ViT-B-16"
    clip_cfg: Dict[str, Any] = field(default_factory=dict)
    quick_gelu: bool = True  # OpenAI CLIP weights use QuickGELU
    image_size: int = 512  # network input; the stored positional grid is image_size // patch_size
    crop_size: int = 512
    stride: int = 426
    mean: List[float] = field(default_factory=lambda: [123.675, 116.28, 103.53])
    std: List[float] = field(default_factory=lambda: [58.395, 57.12, 57.375])
    dataset: str = "voc20"
    class_names: List[str] = field(default_factory=list)
    templates: List[str] = field(default_factory=lambda: ["a photo of a {}"])
    seen_classes: List[int] = field(default_factory=list)
    calibration_bias: float = 0.1  # subtracted from the scores of seen classes
    source: str = ""

    # ------------------------------------------------------------------ derived architecture
    def open_clip_cfg(self) -> Dict[str, Any]:
        """The open_clip model config (tower hyper-parameters) after merging ``clip_cfg``."""
        import open_clip

        base = open_clip.get_model_config(self.clip_model)
        if base is None:
            raise ValueError(
                f"unknown open_clip model config {self.clip_model!r}; see open_clip.list_models() for names"
            )
        cfg = _deep_merge(base, self.clip_cfg or {})
        cfg["vision_cfg"] = dict(cfg["vision_cfg"], image_size=int(self.image_size))
        return cfg

    @property
    def _vision(self) -> Dict[str, Any]:
        return self.open_clip_cfg()["vision_cfg"]

    @property
    def patch_size(self) -> int:
        p = self._vision.get("patch_size", 16)
        return int(p[0] if isinstance(p, (list, tuple)) else p)

    @property
    def width(self) -> int:
        return int(self._vision.get("width", 768))

    @property
    def layers(self) -> int:
        return int(self._vision.get("layers", 12))

    @property
    def embed_dim(self) -> int:
        return int(self.open_clip_cfg()["embed_dim"])

    @property
    def grid_size(self) -> int:
        return self.image_size // self.patch_size

    def check_family(self) -> None:
        """Refuse a config whose ``family`` is not its class's (or is missing)."""
        expected = type(self).__dataclass_fields__["family"].default
        if not expected or self.family != expected:
            raise ValueError(f"{type(self).__name__} must have family={expected!r}, got {self.family!r}")


@dataclass
class ZegCLIPConfig(BaseModelConfig):
    """Everything that defines a ZegCLIP model and its official inference/training settings."""

    name: str = "zegclip_vitb16_voc_inductive"
    family: str = "zegclip"  # registry key (zsseg_rt.models.registry); subclasses set their own
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
    loss: Dict[str, Any] = field(
        default_factory=lambda: {
            "mask_weight": 100.0,
            "dice_weight": 1.0,
            "focal_alpha": 0.25,
            "focal_gamma": 2.0,
            "mask_ignore": False,
        }
    )
    ignore_index: int = 255

    @property
    def num_deep_prompt_layers(self) -> int:
        return self.layers - 1 if self.deep_prompt_layers is None else int(self.deep_prompt_layers)

    @property
    def ffn_dim(self) -> int:
        return 4 * self.embed_dim if self.decoder_ffn_dim is None else int(self.decoder_ffn_dim)

    @property
    def unseen_classes(self) -> List[int]:
        seen = set(self.seen_classes)
        return [i for i in range(len(self.class_names)) if i not in seen]

    # ------------------------------------------------------------------ validation / io
    def validate(self) -> "ZegCLIPConfig":
        self.check_family()
        if self.setting not in ("inductive", "transductive", "fully"):
            raise ValueError(f"setting must be inductive|transductive|fully, got {self.setting!r}")
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

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "ZegCLIPConfig":
        data = dict(data)
        check_known_keys(cls, data)
        if "class_names" in data:
            data["class_names"] = load_class_names(data["class_names"])
        if "templates" in data:
            data["templates"] = load_templates(data["templates"])
        if "seen_classes" in data:
            data["seen_classes"] = [int(i) for i in data["seen_classes"]]
        if "loss" in data:
            data["loss"] = _deep_merge(cls().loss, data["loss"] or {})
        cfg = cls(**data)
        if not cfg.class_names:
            cfg.class_names = load_class_names(cfg.dataset)
        return cfg.validate()


def load_zegclip_config(
    name_or_path: Union[str, os.PathLike, ZegCLIPConfig, Dict[str, Any]], **overrides
) -> ZegCLIPConfig:
    """Load a ZegCLIP config by bundled name (``"zegclip_vitb16_voc_inductive"``), JSON path, dict or config object.

    ``overrides`` replace top-level keys (``clip_cfg`` and ``loss`` are deep-merged).
    """
    if isinstance(name_or_path, ZegCLIPConfig):
        data = name_or_path.to_dict()
    elif isinstance(name_or_path, dict):
        data = dict(name_or_path)
    else:
        s = str(name_or_path)
        path = Path(s)
        if not path.is_file():
            path = CONFIG_DIR / (s if s.endswith(".json") else f"{s}.json")
        if not path.is_file():
            raise FileNotFoundError(
                f"ZegCLIP config {s!r} is neither a file nor a bundled config; bundled: "
                f"{sorted(p.stem for p in CONFIG_DIR.glob('zegclip_*.json'))}"
            )
        data = _read_json(path)
    for k, v in overrides.items():
        if k in ("clip_cfg", "loss") and isinstance(v, dict) and isinstance(data.get(k), dict):
            data[k] = _deep_merge(data[k], v)
        else:
            data[k] = v
    return ZegCLIPConfig.from_dict(data)
