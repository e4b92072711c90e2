"""What every model family's configuration shares: ``BaseModelConfig`` and the bundled config/vocabulary files.

Each family's bundled configs live in its own subpackage, ``zsseg_rt/models/<family>/configs/*.json`` (one per paper
setting plus tiny test models; :func:`family_config_dir`); class-name lists and prompt templates shared by all
families live in the vocabulary unit (``zsseg_rt/vocabulary/lists/*.json``). A config names an open_clip model (``clip_model``, e.g.
``"ViT-B-16"``) whose open_clip JSON config gives the tower architecture; ``clip_cfg`` is deep-merged on top of it
(tiny test towers, or any other change).

``mean``/``std`` are ImageNet statistics on the 0-255 scale (the official mmseg ``img_norm_cfg``), RGB order.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Type, TypeVar

from zsseg_rt.vocabulary import VOCAB_DIR, load_class_names, load_templates  # noqa: F401 - re-exported here

MODELS_DIR = Path(__file__).resolve().parent.parent.parent / "models"  # the family plugins' package

__all__ = [
    "BaseModelConfig",
    "load_class_names",
    "load_templates",
    "family_config_dir",
    "bundled_config_file",
    "VOCAB_DIR",
]


def family_config_dir(family: str) -> Path:
    """The directory of a family's bundled JSON configs: ``zsseg_rt/models/<family>/configs``."""
    return MODELS_DIR / family / "configs"


def bundled_config_file(family: str, name: str) -> Optional[Path]:
    """The bundled config ``name`` (file stem, ``-`` or ``_``, ``.json`` optional) of ``family``, else None."""
    stem = str(name)[: -len(".json")] if str(name).endswith(".json") else str(name)
    if not stem or "/" in stem or os.sep in stem:
        return None
    for cand in (stem, stem.replace("-", "_")):
        p = family_config_dir(family) / f"{cand}.json"
        if p.is_file():
            return p
    return None


def _read_json(path: Path) -> Dict[str, Any]:
    with open(path, "r", encoding="utf-8") as f:
        return json.load(f)


def check_known_keys(cls, data: Dict[str, Any], what: str = "config") -> None:
    """Refuse keys that are not fields of dataclass ``cls``, naming them and the known ones."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        from zsseg_rt.options import did_you_mean

        hints = [f"{key!r}: {did_you_mean(key, known)}" for key in unknown if did_you_mean(key, known)]
        close = f" ({'; '.join(hints)})" if hints else ""
        raise ValueError(f"unknown {what} keys {unknown}{close}; known keys: {sorted(known)}")


def check_choice(what: str, value: Any, choices: Sequence[Any]) -> None:
    """ValueError ``"<what> must be a|b, got <value>"`` unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{what} must be {'|'.join(map(str, choices))}, got {value!r}")


def deep_merge(base: Dict[str, Any], over: Dict[str, Any]) -> Dict[str, Any]:
    """``base`` updated by ``over``, nested dicts merged key by key (both left unchanged)."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def load_config_data(
    spec: Any,
    *,
    family: str,
    label: str,
    config_cls: "Type[BaseModelConfig]",
    overrides: Dict[str, Any],
    merge_keys: Sequence[str] = ("clip_cfg", "loss"),
    resolve: Optional[Callable[[str], Optional[Path]]] = None,
    check_family: bool = False,
) -> Dict[str, Any]:
    """The dict a family's ``load_<family>_config`` builds its config from (one implementation for every family).

    Args:
        spec: a ``config_cls`` instance, a dict, a JSON path, or a bundled name of ``family``.
        family: the family whose bundled configs names are looked up in (``family_config_dir``).
        label: the family's name in messages (``"ZegCLIP"``).
        config_cls: the family's config class; another family's config object is refused.
        overrides: top-level keys replaced; those in ``merge_keys`` are deep-merged into a dict value.
        resolve: name -> bundled file (default ``bundled_config_file(family, name)``); None when unknown.
        check_family: refuse data whose ``"family"`` is not ``family`` (a missing one is set).
    Raises:
        FileNotFoundError: neither a file nor a bundled name (the message lists the bundled configs).
        ValueError: another family's config object, or (``check_family``) data of another family.
    """
    if isinstance(spec, config_cls):
        data = spec.to_dict()
    elif isinstance(spec, BaseModelConfig):
        raise ValueError(f"{spec.name!r} is a {type(spec).__name__}, not a {label} config ({config_cls.__name__})")
    elif isinstance(spec, dict):
        data = dict(spec)
    else:
        s = str(spec)
        path: Optional[Path] = Path(s)
        if path is None or not path.is_file():
            path = resolve(s) if resolve is not None else bundled_config_file(family, s)
        if path is None or not path.is_file():
            from zsseg_rt.options import did_you_mean

            bundled = sorted(p.stem for p in family_config_dir(family).glob("*.json"))
            hint = did_you_mean(s, bundled)
            raise FileNotFoundError(
                f"{label} config {s!r} is neither a file nor a bundled config"
                + (f" ({hint})" if hint else "")
                + f"; bundled: {bundled}"
            )
        data = _read_json(path)
        if not isinstance(data, dict):
            raise ValueError(f"{label} config {str(path)!r} must hold a JSON object, got {type(data).__name__}")
    if check_family:
        data.setdefault("family", family)
        if data.get("family") != family:
            raise ValueError(f"config {data.get('name')!r} has family {data.get('family')!r}, not {family!r}")
    for key, value in overrides.items():
        if key in merge_keys and isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = deep_merge(data[key], value)
        else:
            data[key] = value
    return data


_Config = TypeVar("_Config", bound="BaseModelConfig")


@dataclass
class BaseModelConfig:
    """The fields every model family shares: the open_clip tower, input size, sliding-window test settings,
    normalisation, vocabulary, prompt templates and the seen-class calibration. ``family`` is required: each
    family's subclass sets it (the registry key, :mod:`zsseg_rt.contract.registry`) and ``validate`` checks it.
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

    def to_dict(self) -> Dict[str, Any]:
        """The config as plain JSON-able data (families with extra serialisation override this)."""
        return dataclasses.asdict(self)

    # ------------------------------------------------------------------ derived architecture
    def open_clip_cfg(self) -> Dict[str, Any]:
        """The open_clip model config (tower hyper-parameters) after merging ``clip_cfg``."""
        import open_clip

        base = open_clip.get_model_config(self.clip_model)
        if base is None:
            raise ValueError(
                f"unknown open_clip model config {self.clip_model!r}; see open_clip.list_models() for names"
            )
        cfg = deep_merge(base, self.clip_cfg or {})
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

    @property
    def unseen_classes(self) -> List[int]:
        """Indices of the classes that are not in ``seen_classes``."""
        seen = set(self.seen_classes)
        return [i for i in range(len(self.class_names)) if i not in seen]

    def validate(self) -> "BaseModelConfig":
        """Check the fields (each family adds its own checks); returns the config."""
        self.check_family()
        return self

    @classmethod
    def checked_data(
        cls,
        data: Dict[str, Any],
        what: str = "config",
        templates: Optional[Callable[[Any], List[str]]] = load_templates,
    ) -> Dict[str, Any]:
        """The first step of a family's ``from_dict``: a copy of ``data`` whose keys are all fields of ``cls`` (else
        ValueError naming the ``what``'s unknown keys), its ``class_names`` read (:func:`load_class_names`), its
        ``seen_classes`` made ints and its ``templates`` read with ``templates`` (None: left as given)."""
        data = dict(data)
        check_known_keys(cls, data, what)
        if "class_names" in data:
            data["class_names"] = load_class_names(data["class_names"])
        if "seen_classes" in data:
            data["seen_classes"] = [int(i) for i in data["seen_classes"]]
        if templates is not None and "templates" in data:
            data["templates"] = templates(data["templates"])
        return data

    @classmethod
    def from_checked_data(cls: Type[_Config], data: Dict[str, Any]) -> _Config:
        """The last step of a family's ``from_dict``: the config of ``data`` (keys checked, values normalised),
        given the class names of its ``dataset`` when it lists none, validated."""
        cfg = cls(**data)
        if not cfg.class_names:
            cfg.class_names = load_class_names(cfg.dataset)
        cfg.validate()
        return cfg

    def check_family(self) -> None:
        """Refuse a config whose ``family`` is not its class's (or is missing)."""
        expected = type(self).__dataclass_fields__["family"].default
        if not expected or self.family != expected:
            raise ValueError(f"{type(self).__name__} must have family={expected!r}, got {self.family!r}")
