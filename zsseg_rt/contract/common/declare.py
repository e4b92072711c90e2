"""One call that registers a family package: :func:`declare_family`, a :class:`ModelFamily` written with the family
layout's conventions (docs/development.md, "Family layout") instead of spelling each reference out in full.

Light on purpose (no torch): a family's ``__init__.py`` calls it on import.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

from zsseg_rt.contract.family import ModelFamily
from zsseg_rt.contract.registry import register_family

__all__ = ["declare_family"]

# the ModelFamily fields that hold "module:attr" references
_REFERENCES = (
    "config_class",
    "model_class",
    "load_config",
    "create",
    "native_loader",
    "official_keys",
    "official_loader",
    "official_converter",
)


def _resolve(package: str, ref: str) -> str:
    """``".config:X"`` -> ``"<package>.config:X"``; an absolute reference is kept."""
    return package + ref if ref.startswith(".") else ref


def _public_names(package: str, public: Mapping[str, Iterable[str]]) -> dict:
    """``{".model": ("A", "B")}`` -> ``{"A": "<package>.model:A", "B": "<package>.model:B"}``."""
    names: dict = {}
    for module, attrs in public.items():
        if isinstance(attrs, str):
            raise TypeError(f"public[{module!r}] must be a sequence of names, got the string {attrs!r}")
        for attr in attrs:
            if attr in names:
                raise ValueError(f"public name {attr!r} is listed twice")
            names[attr] = f"{_resolve(package, module)}:{attr}"
    return names


def declare_family(
    package: str,
    *,
    create: str,
    native: str = "",
    official: str = "",
    public: Mapping[str, Iterable[str]] | None = None,
    **fields: Any,
) -> ModelFamily:
    """Register (:func:`~zsseg_rt.contract.registry.register_family`) and return the :class:`ModelFamily` of the
    family package ``package`` (pass ``__name__``). The family's name is the package's last component.

    The references follow the family layout; each may be given in full instead (``"module:attr"``), and a reference
    that starts with ``"."`` is relative to ``package`` (``".config:ZegCLIPConfig"``):

    - ``load_config`` (default ``".config:load_<name>_config"``);
    - ``create``: a module (``".model"``: its ``create_<name>``) or a full reference;
    - ``native``: the module with ``load_native_<name>`` (native checkpoints); the checkpoint format is then
      ``"zsseg_rt.<name>.v1"`` (``native_format``, ``native_formats`` ``("zsseg_rt.<name>.",)`` unless given);
    - ``official``: the module with ``is_<name>_keys`` (detection) and ``load_official_<name>`` (the importer);
    - ``public``: the names ``zsseg_rt.models`` exports for the family, by module (``{".model": ("ZegCLIP",)}``).

    Every other keyword is a :class:`ModelFamily` field, passed on as it is.
    """
    name = package.rpartition(".")[2]
    fields.setdefault("load_config", f".config:load_{name}_config")
    fields["create"] = create if ":" in create else f"{create}:create_{name}"
    if native:
        fields["native_loader"] = f"{native}:load_native_{name}"
        fields.setdefault("native_format", f"zsseg_rt.{name}.v1")
        fields.setdefault("native_formats", (f"zsseg_rt.{name}.",))
    if official:
        fields["official_keys"] = f"{official}:is_{name}_keys"
        fields["official_loader"] = f"{official}:load_official_{name}"
    for key in _REFERENCES:
        if key in fields:
            fields[key] = _resolve(package, fields[key])
    family = ModelFamily(name=name, public_names=_public_names(package, public or {}), **fields)
    return register_family(family)
