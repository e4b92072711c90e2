"""PyTorch models (needs torch + open_clip to build one): the model families, each a plugin package registered in
:mod:`zsseg_rt.contract.registry` (ZegCLIP, CLIP-RC, training-free dense CLIP, ZeroSeg, ZegFormer), and what they
share (:mod:`zsseg_rt.contract.common`). ``create_model``/``load_config``/``list_configs`` resolve names through the
registry; :mod:`zsseg_rt.contract.family` says what a family is.

Importing this package is light (no torch): every name below is imported on first use. The families' own public
names (``ZegCLIP``, ``CLIPRC``, ``load_official_zegclip``, ...) come from their registrations (``public_names``).
"""

from __future__ import annotations

import importlib
from typing import Any, Dict, List

from zsseg_rt.aliases import resolve_reference

# name -> "module:attribute" of the names every installation has, whatever families are registered
_SHARED: Dict[str, str] = {
    "create_model": "zsseg_rt.contract.registry:create_model",
    "load_config": "zsseg_rt.contract.registry:load_config",
    "load_model_config": "zsseg_rt.contract.registry:load_model_config",
    "list_configs": "zsseg_rt.contract.registry:list_configs",
    "families": "zsseg_rt.contract.registry:families",
    "family_of": "zsseg_rt.contract.registry:family_of",
    "get_family": "zsseg_rt.contract.registry:get_family",
    "register_family": "zsseg_rt.contract.registry:register_family",
    "ModelFamily": "zsseg_rt.contract.family:ModelFamily",
    "Family": "zsseg_rt.contract.family:Family",
    "load_official_any": "zsseg_rt.contract.common.official:load_official_any",
    "convert_official": "zsseg_rt.contract.common.official:convert_official",
    "load_native": "zsseg_rt.contract.common.convert:load_native",
    "save_native": "zsseg_rt.contract.common.convert:save_native",
    "VocabularyCache": "zsseg_rt.contract.common.text:VocabularyCache",
    "load_text_embeddings": "zsseg_rt.contract.common.text:load_text_embeddings",
    "WeightsError": "zsseg_rt.contract.common.weights:WeightsError",
    "load_class_names": "zsseg_rt.vocabulary:load_class_names",
    "load_templates": "zsseg_rt.vocabulary:load_templates",
}


def _public_names() -> Dict[str, str]:
    from zsseg_rt.contract.registry import families, get_family

    names = dict(_SHARED)
    for name in families():
        names.update(get_family(name).public_names)
    return names


def __getattr__(name: str) -> Any:  # PEP 562: public names on first use
    if name == "__all__":
        return sorted(_public_names())
    if name.startswith("__"):
        raise AttributeError(name)
    ref = _SHARED.get(name) or _public_names().get(name)
    if ref is not None:
        value = resolve_reference(ref)
        globals()[name] = value
        return value
    try:  # a subpackage (a family, common) or module of this package
        return importlib.import_module(f"{__name__}.{name}")
    except ModuleNotFoundError as exc:
        if exc.name != f"{__name__}.{name}":
            raise
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> List[str]:
    return sorted(set(globals()) | set(_public_names()))
