"""The one model registry: family name -> (config class, config loader, model class, model factory).

Every place that turns a name into a config or a model (``create_model``, ``load_model_config``,
``load_config``, ``list_configs``, evaluation) asks this module which family a spec belongs to, so the
answer is decided once. Bundled configs live in their family's subpackage (``zsseg_rt/models/<family>/configs``)
and declare the family in their JSON (``"family": "cliprc"``); configs without the key are ZegCLIP's. A native checkpoint directory is told apart by the
``format`` string of its ``config.json`` (``zsseg_rt.<family>.vN``; ZegCLIP's is ``zsseg_rt.zegclip.v1``).

Adding a family (see CONTRIBUTING.md): write the config class (a dataclass with a ``family`` field, a
``from_dict`` and a ``to_dict``), a ``load_<family>_config(spec, **overrides)`` and a
``create_<family>(spec, pretrained=None, device=None, **overrides)``, then call :func:`register_family` once
at import time of the family's package (and import that package from ``zsseg_rt/models/__init__.py``).
"""

from __future__ import annotations

import importlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

from zsseg_rt.models.common.config import family_config_dir

__all__ = [
    "ModelFamily",
    "register_family",
    "families",
    "get_family",
    "family_of",
    "bundled_config_path",
    "list_configs",
    "load_config",
    "create_model",
    "load_model_config",
    "DEFAULT_FAMILY",
]

DEFAULT_FAMILY = "zegclip"


@dataclass(frozen=True)
class ModelFamily:
    """One registry entry. ``config_class``/``model_class`` are ``"module:attr"`` paths, imported on first use
    (the config modules are light; model modules import torch/open_clip).

    ``load_config(spec, **overrides)`` and ``create(spec, pretrained=None, device=None, **overrides)`` take
    any spec of this family: bundled name, JSON path, dict, config object (``create`` also a native
    checkpoint directory). ``aliases(name)`` may map a short name to a bundled stem (``"cliprc-vitb16-voc"``
    -> ``"cliprc_vitb16_voc_inductive"``); ``native_formats`` are the ``format`` prefixes of its checkpoints.
    """

    name: str
    config_class: str
    model_class: str
    load_config: str
    create: str
    native_formats: Tuple[str, ...] = ()
    aliases: Optional[Callable[[str], List[str]]] = None
    description: str = ""
    _cache: Dict[str, Any] = field(default_factory=dict, compare=False, hash=False, repr=False)

    def _resolve(self, ref: str) -> Any:
        if ref not in self._cache:
            module, attr = ref.split(":")
            self._cache[ref] = getattr(importlib.import_module(module), attr)
        return self._cache[ref]

    def config_cls(self) -> type:
        """The config dataclass of this family."""
        return self._resolve(self.config_class)

    def model_cls(self) -> type:
        """The ``nn.Module`` class of this family (imports torch)."""
        return self._resolve(self.model_class)

    def load(self, spec: Any, **overrides: Any) -> Any:
        """This family's config from ``spec`` (name, path, dict or config object)."""
        return self._resolve(self.load_config)(spec, **overrides)

    def build(self, spec: Any, pretrained: Optional[str] = None, device: Any = None, **overrides: Any) -> Any:
        """This family's model from ``spec`` (eval mode)."""
        return self._resolve(self.create)(spec, pretrained=pretrained, device=device, **overrides)


_FAMILIES: Dict[str, ModelFamily] = {}


def register_family(family: ModelFamily, replace: bool = False) -> ModelFamily:
    """Add ``family`` to the registry (once; ``replace=True`` to overwrite an entry on purpose)."""
    if not family.name or family.name != family.name.strip():
        raise ValueError(f"family name must be a non-empty word, got {family.name!r}")
    if family.name in _FAMILIES and not replace and _FAMILIES[family.name] != family:
        raise ValueError(f"model family {family.name!r} is already registered")
    _FAMILIES[family.name] = family
    return family


def families() -> List[str]:
    """Registered family names, in registration order."""
    return list(_FAMILIES)


def get_family(name: str) -> ModelFamily:
    """The registry entry of family ``name`` (clear error naming the known ones)."""
    try:
        return _FAMILIES[name]
    except KeyError:
        raise ValueError(f"unknown model family {name!r}; registered: {families()}") from None


def _read_json(path: Path) -> Any:
    with open(path, "r", encoding="utf-8") as f:
        return json.load(f)


def _family_of_data(data: Any) -> str:
    if not isinstance(data, dict):
        raise ValueError(f"a model config must be a JSON object, got {type(data).__name__}")
    return str(data.get("family") or DEFAULT_FAMILY)


def bundled_config_path(name: str) -> Optional[Path]:
    """The bundled JSON for a name: the file stem, with ``-`` or ``_``, or a family alias; else None."""
    s = str(name)
    if s.endswith(".json"):
        s = s[: -len(".json")]
    if not s or "/" in s or os.sep in s:
        return None
    stems = [s, s.replace("-", "_")]
    for fam in _FAMILIES.values():
        if fam.aliases is not None:
            stems += fam.aliases(s.replace("-", "_"))
    for stem in stems:
        for fam in _FAMILIES.values():
            p = family_config_dir(fam.name) / f"{stem}.json"
            if p.is_file():
                return p
    return None


def _family_of_dir(p: Path) -> str:
    cfg = p / "config.json"
    if not cfg.is_file():
        raise FileNotFoundError(f"{p} is a directory without config.json (not a native checkpoint)")
    fmt = str(_read_json(cfg).get("format", ""))
    for fam in _FAMILIES.values():
        if any(fmt.startswith(prefix) for prefix in fam.native_formats):
            return fam.name
    raise ValueError(f"{cfg}: unknown native checkpoint format {fmt!r}")


def family_of(spec: Any) -> str:
    """The family of a config spec: config object, dict, bundled name/alias, JSON path or native directory.

    Raises ``FileNotFoundError`` for a name that is neither a file, a directory nor a bundled config.
    """
    fam = getattr(spec, "family", None)
    if isinstance(fam, str) and not isinstance(spec, (dict, str, os.PathLike)):
        return fam
    if isinstance(spec, dict):
        return _family_of_data(spec)
    if not isinstance(spec, (str, os.PathLike)):
        for entry in _FAMILIES.values():  # a config object without a family attribute
            if type(spec) is entry.config_cls():
                return entry.name
        raise TypeError(f"model spec must be a name, path, dict or config, got {type(spec).__name__}")
    p = Path(os.path.expanduser(str(spec)))
    if p.is_dir():
        return _family_of_dir(p)
    if p.is_file():
        return _family_of_data(_read_json(p))
    bundled = bundled_config_path(str(spec))
    if bundled is None:
        raise FileNotFoundError(
            f"model config {str(spec)!r} is neither a file nor a bundled config; bundled: {list_configs()}"
        )
    return _family_of_data(_read_json(bundled))


def list_configs(family: Optional[str] = None) -> List[str]:
    """Names of the bundled model configs (all, or those of one registered ``family``)."""
    if family is not None:
        get_family(family)
    names = []
    for fam in [family] if family is not None else families():
        for p in sorted(family_config_dir(fam).glob("*.json")):
            declared = _family_of_data(_read_json(p))
            if declared != fam:
                raise ValueError(f"{p} declares family {declared!r} but lives in the configs of {fam!r}")
            names.append(p.stem)
    return sorted(names)


def _spec_for_loader(spec: Any) -> Any:
    """A bundled name/alias becomes its JSON path, so every family loader sees the same file."""
    if isinstance(spec, (str, os.PathLike)):
        p = Path(os.path.expanduser(str(spec)))
        if not p.exists():
            bundled = bundled_config_path(str(spec))
            if bundled is not None:
                return str(bundled)
    return spec


def load_config(spec: Any, **overrides: Any) -> Any:
    """The config of any registered family from a bundled name/alias, JSON path, dict or config object.

    ``overrides`` replace top-level fields (dict fields such as ``clip_cfg`` are deep-merged by the family's
    loader). Returns the family's config class (``ZegCLIPConfig``, ``CLIPRCConfig``, ``TrainingFreeConfig``...).
    """
    fam = get_family(family_of(spec))
    if isinstance(spec, (str, os.PathLike)) and Path(os.path.expanduser(str(spec))).is_dir():
        cfg_file = Path(os.path.expanduser(str(spec))) / "config.json"
        data = dict(_read_json(cfg_file).get("config") or {})
        data.setdefault("family", fam.name)
        return fam.load(data, **overrides)
    return fam.load(_spec_for_loader(spec), **overrides)


def load_model_config(spec: Any, **overrides: Any) -> Any:
    """The config of any registered model family by name, alias, path, dict, config or native directory
    (same as :func:`load_config`)."""
    return load_config(spec, **overrides)


def create_model(
    spec: Any = "zegclip_vitb16_voc_inductive", pretrained: Optional[str] = None, device: Any = None, **overrides: Any
) -> Any:
    """Build a model of any registered family (returned in eval mode, CLIP towers frozen).

    The family comes from the spec (``"family"`` in the JSON; none = ZegCLIP; a native checkpoint's format).

    Args:
        spec: bundled config name (``"zegclip_vitb16_voc_inductive"``, see :func:`list_configs`), a config JSON
            path, a dict or config object, or a native checkpoint directory (``model.safetensors`` + ``config.json``).
        pretrained: None (random init; prompts/head always start at the official init), an open_clip tag of the
            config's CLIP model (e.g. ``"openai"``; downloaded by open_clip, needs network), or a local file:
            OpenAI CLIP JIT archive, open_clip state dict (.pt/.bin/.pth) or .safetensors. These fill the CLIP
            towers only. For official checkpoints use ``load_official_zegclip`` / ``load_official_cliprc``.
        device: where to put the model.
        overrides: config fields to replace (e.g. ``fix_double_class_embedding=True``, ``calibration_bias=0``).
    """
    fam = get_family(family_of(spec))
    return fam.build(_spec_for_loader(spec), pretrained=pretrained, device=device, **overrides)


# ---------------------------------------------------------------------- built-in families
def _cliprc_aliases(stem: str) -> List[str]:
    """``cliprc_vitb16_voc`` -> the inductive setting (``cliprc_vitb16_voc_inductive``)."""
    return [f"{stem}_inductive"] if stem.startswith("cliprc") else []


register_family(
    ModelFamily(
        name="zegclip",
        config_class="zsseg_rt.models.zegclip.config:ZegCLIPConfig",
        model_class="zsseg_rt.models.zegclip.model:ZegCLIP",
        load_config="zsseg_rt.models.zegclip.config:load_zegclip_config",
        create="zsseg_rt.models.zegclip.model:create_zegclip",
        native_formats=("zsseg_rt.zegclip.",),
        description="ZegCLIP (Zhou et al., CVPR 2023)",
    )
)
register_family(
    ModelFamily(
        name="cliprc",
        config_class="zsseg_rt.models.cliprc.config:CLIPRCConfig",
        model_class="zsseg_rt.models.cliprc.model:CLIPRC",
        load_config="zsseg_rt.models.cliprc.config:load_cliprc_config",
        create="zsseg_rt.models.cliprc.model:create_cliprc",
        native_formats=("zsseg_rt.cliprc.",),
        aliases=_cliprc_aliases,
        description="CLIP-RC (Zhang et al., CVPR 2024)",
    )
)
register_family(
    ModelFamily(
        name="training_free",
        config_class="zsseg_rt.models.training_free.config:TrainingFreeConfig",
        model_class="zsseg_rt.models.training_free.model:TrainingFreeSegmenter",
        load_config="zsseg_rt.models.training_free.config:load_training_free_config",
        create="zsseg_rt.models.training_free.model:create_training_free_model",
        description="training-free dense CLIP: MaskCLIP, SCLIP, ClearCLIP, NACLIP",
    )
)
