"""The one model registry: family name -> the family object (:class:`zsseg_rt.contract.family.Family`).

Every place that turns a name into a config or a model (``create_model``, ``load_model_config``,
``load_config``, ``list_configs``, evaluation, export, training) asks this module which family a spec, a model,
a checkpoint or a bundle belongs to, so the answer is decided once. Bundled configs live in their family's
subpackage (``zsseg_rt/models/<family>/configs``) and declare the family in their JSON (``"family": "cliprc"``);
configs without the key belong to the default family (they predate families). A native checkpoint directory is
told apart by the ``format`` string of its ``config.json`` (``zsseg_rt.<family>.vN``).

Families are plugins: each package under ``zsseg_rt/models/`` (except ``common``) registers its family when it is
imported, and this module imports all of them on first use (:func:`discover`), plus the modules named by the
``zsseg_rt.families`` entry points of other installed distributions. Adding a family (CONTRIBUTING.md): write
its config class, loader and factory, subclass :class:`ModelFamily` where a default does not fit, and call
:func:`register_family` in the package's ``__init__.py``; nothing outside the package changes.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import pkgutil
import threading
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

from zsseg_rt.contract.family import Family, ModelFamily
from zsseg_rt.options.registry import Registry

__all__ = [
    "FAMILIES",
    "Family",
    "ModelFamily",
    "register_family",
    "discover",
    "families",
    "get_family",
    "default_family",
    "family_of",
    "family_of_model",
    "family_of_object",
    "family_of_format",
    "official_family",
    "protocol_family",
    "bundled_config_path",
    "list_configs",
    "load_config",
    "create_model",
    "load_model_config",
    "family_options",
    "family_arguments",
]


_DISCOVERED = False
_DISCOVERY_LOCK = threading.RLock()
ENTRY_POINT_GROUP = "zsseg_rt.families"  # other distributions' families: module paths, imported by discover()


def _import_entry(entry: Any) -> None:
    """An entry point of :data:`ENTRY_POINT_GROUP` names a module: importing it registers its family."""
    importlib.import_module(entry.value.partition(":")[0])


# The families by name: a Registry (zsseg_rt.options.registry) filled by the family packages as they are imported
# (register_family) and by the zsseg_rt.families entry points (discover()); a test's family: FAMILIES.adding(family)
FAMILIES: Registry[Any] = Registry(
    "model family", error=ValueError, group=ENTRY_POINT_GROUP, load=_import_entry, populate=lambda: discover()
)


def register_family(family: Any, replace: bool = False) -> Any:
    """Add ``family`` (a :class:`Family`, usually a :class:`ModelFamily`) to the registry, once; ``replace=True``
    overwrites an entry on purpose. A family's package calls this when it is imported."""
    if not isinstance(family, Family):
        raise TypeError(f"a model family must implement zsseg_rt.contract.family.Family, got {type(family).__name__}")
    if not family.name or family.name != family.name.strip():
        raise ValueError(f"family name must be a non-empty word, got {family.name!r}")
    return FAMILIES.register(family, replace=replace)


FAMILIES_PACKAGE = "zsseg_rt.models"  # the built-in family plugins: each subpackage registers one family
_NOT_FAMILIES = frozenset({"common"})  # a deprecated alias of zsseg_rt.contract.common, no family


def _family_packages() -> Iterable[str]:
    """The built-in family packages: every subpackage of :data:`FAMILIES_PACKAGE` (found by name, imported by
    :func:`discover`; the contract never imports a family statically)."""
    spec = importlib.util.find_spec(FAMILIES_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return
    for info in pkgutil.iter_modules(list(spec.submodule_search_locations), FAMILIES_PACKAGE + "."):
        if info.ispkg and info.name.rpartition(".")[2] not in _NOT_FAMILIES:
            yield info.name


def discover() -> None:
    """Import every family package once (they register themselves), then the ``zsseg_rt.families`` entry points."""
    global _DISCOVERED
    if _DISCOVERED:
        return
    with _DISCOVERY_LOCK:
        if _DISCOVERED:
            return
        for package in sorted(_family_packages()):
            importlib.import_module(package)
        FAMILIES.load_all()
        _DISCOVERED = True


def families() -> List[str]:
    """Registered family names, by their ``order`` (then registration order)."""
    discover()
    rows = list(FAMILIES)
    return [family.name for _, family in sorted(enumerate(rows), key=lambda item: (item[1].order, item[0]))]


def get_family(name: str) -> Any:
    """The registry entry of family ``name`` (ValueError in one line: the closest name, or the known ones)."""
    discover()
    return FAMILIES.get(name)


def default_family() -> Any:
    """The family of configs and native checkpoints that name none (they were written before families existed)."""
    defaults = [name for name in families() if FAMILIES[name].default]
    if len(defaults) != 1:
        raise RuntimeError(f"exactly one registered model family must be the default one, found {defaults}")
    return FAMILIES[defaults[0]]


def __getattr__(name: str) -> Any:  # PEP 562: DEFAULT_FAMILY is the default family's name
    if name == "DEFAULT_FAMILY":
        return default_family().name
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def family_of_model(model: Any) -> Any:
    """The family of a model object (its config's ``family``)."""
    name = getattr(getattr(model, "config", None), "family", None)
    if not isinstance(name, str):
        raise TypeError(f"{type(model).__name__} has no config.family: not a model of a registered family")
    return get_family(name)


def family_of_object(obj: Any) -> Any:
    """The family of a loaded model or Engine: an Engine's bundle names it (``meta.family``), a model's config
    does (:func:`family_of_model`). No torch import."""
    meta = getattr(obj, "meta", None)
    name = getattr(meta, "family", None)
    if isinstance(name, str):
        return get_family(name)
    return family_of_model(obj)


def family_of_format(fmt: str) -> Any:
    """The family whose native checkpoints have format ``fmt`` (``config.json`` ``"format"``); None if unknown."""
    for name in families():
        if any(str(fmt).startswith(prefix) for prefix in FAMILIES[name].checkpoints.formats):
            return FAMILIES[name]
    return None


def official_family(keys: Iterable[str]) -> Optional[Any]:
    """The family claiming an official checkpoint by its tensor names (``module.`` prefix removed), else None."""
    keys = list(keys)
    for name in families():
        if FAMILIES[name].checkpoints.is_official(keys):
            return FAMILIES[name]
    return None


def protocol_family(protocol: str) -> Any:
    """The family that implements evaluation protocol ``protocol`` (named in a bundle's meta.json)."""
    for name in families():
        if FAMILIES[name].evaluation.protocol == protocol:
            return FAMILIES[name]
    raise ValueError(f"no registered model family implements the evaluation protocol {protocol!r}")


def _read_json(path: Path) -> Any:
    with open(path, "r", encoding="utf-8") as f:
        return json.load(f)


def _family_of_data(data: Any) -> str:
    if not isinstance(data, dict):
        raise ValueError(f"a model config must be a JSON object, got {type(data).__name__}")
    return str(data.get("family") or default_family().name)


def bundled_config_path(name: str) -> Optional[Path]:
    """The bundled JSON for a name: the file stem, with ``-`` or ``_``, or a family alias; else None."""
    s = str(name)
    if s.endswith(".json"):
        s = s[: -len(".json")]
    if not s or "/" in s or os.sep in s:
        return None
    stems = [s, s.replace("-", "_")]
    for fam in map(get_family, families()):
        stems += fam.config_aliases(s.replace("-", "_"))
    for stem in stems:
        for fam in map(get_family, families()):
            p = fam.configs_dir() / f"{stem}.json"
            if p.is_file():
                return p
    return None


def _family_of_dir(p: Path) -> str:
    cfg = p / "config.json"
    if not cfg.is_file():
        raise FileNotFoundError(f"{p} is a directory without config.json (not a native checkpoint)")
    fmt = str(_read_json(cfg).get("format", ""))
    fam = family_of_format(fmt)
    if fam is None:
        raise ValueError(f"{cfg}: unknown native checkpoint format {fmt!r}")
    return fam.name


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
        for entry in map(get_family, families()):  # a config object without a family attribute
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
        from zsseg_rt.options import did_you_mean

        hint = did_you_mean(str(spec), list_configs())
        raise FileNotFoundError(
            f"model config {str(spec)!r} is neither a file nor a bundled config"
            + (f" ({hint})" if hint else "")
            + f"; bundled: {list_configs()}"
        )
    return _family_of_data(_read_json(bundled))


def list_configs(family: Optional[str] = None) -> List[str]:
    """Names of the bundled model configs (all, or those of one registered ``family``)."""
    if family is not None:
        get_family(family)
    names = []
    for fam in [family] if family is not None else families():
        for p in sorted(get_family(fam).configs_dir().glob("*.json")):
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
    loader). Returns the family's config class.
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

    The family comes from the spec (``"family"`` in the JSON; none = the default family; a native checkpoint's
    format).

    Args:
        spec: bundled config name (``"zegclip_vitb16_voc_inductive"``, see :func:`list_configs`), a config JSON
            path, a dict or config object, or a native checkpoint directory (``model.safetensors`` + ``config.json``).
        pretrained: None (random init; prompts/head always start at the official init), an open_clip tag of the
            config's CLIP model (e.g. ``"openai"``; downloaded by open_clip, needs network), or a local file:
            OpenAI CLIP JIT archive, open_clip state dict (.pt/.bin/.pth) or .safetensors. These fill the CLIP
            towers only. For official checkpoints use ``load_official_any`` (or a family's own importer).
        device: where to put the model.
        overrides: config fields to replace (e.g. ``fix_double_class_embedding=True``, ``calibration_bias=0``).
    """
    fam = get_family(family_of(spec))
    return fam.build(_spec_for_loader(spec), pretrained=pretrained, device=device, **overrides)


def family_arguments(of: Callable[[Any], Iterable[Any]]) -> List[Tuple[Any, Any]]:
    """``(family, FamilyArgument)`` of every family's own options of one command (``of(family)``, e.g.
    ``lambda f: f.export.arguments()``), in registry order, each ``dest`` once (the first family declaring it
    owns it), so a command adds them all without a clash. Torch-free."""
    found: List[Tuple[Any, Any]] = []
    seen = set()
    for name in families():
        family = get_family(name)
        for argument in of(family):
            if argument.dest not in seen:
                seen.add(argument.dest)
                found.append((family, argument))
    return found


def family_options(
    owner: Any, options: Dict[str, Any], arguments: Callable[[Any], Iterable[Any]], caller: str
) -> Dict[str, Any]:
    """The keyword ``options`` a generic call (``caller``, e.g. ``"evaluate()"``) passes on to ``owner``, the family
    it runs: those ``owner`` declares (``arguments(family)``: e.g. ``lambda f: f.evaluation.arguments()``). Options
    only other families declare are dropped (they do not apply to this family's checkpoints, as a CLI flag another
    family takes); a name no family declares is refused (a ``TypeError`` naming the declared ones)."""
    if not options:
        return {}
    declared = {argument.dest for name in families() for argument in arguments(get_family(name))}
    unknown = sorted(set(options) - declared)
    if unknown:
        raise TypeError(
            f"{caller} got unexpected keyword argument(s) {', '.join(map(repr, unknown))}; the families' own options "
            f"are: {', '.join(sorted(declared)) or 'none'}"
        )
    own = {argument.dest for argument in arguments(owner)}
    return {name: value for name, value in options.items() if name in own}
