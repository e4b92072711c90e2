"""Deprecated import paths of modules that moved: the old name hands out the very module of the new path (same
classes, same state: a test that patches one patches the other), with a ``DeprecationWarning`` naming the new path
and the date it goes.

A package whose modules moved installs one :class:`MovedModules` finder for them (``zsseg_rt.export``: the
preparation modules now in ``zsseg_rt.prepare``; ``zsseg_rt.runtime``: the backend modules now in
``zsseg_rt.runtime.backends.<name>``). CHANGELOG.md lists every moved name.

:func:`resolve_reference` is the one reader of a ``"module:attr"`` reference (a table row that names a registry,
a factory, a preparer or a family's class by string, imported only when asked): the option table, the backend
table, the precision records and the family contract read theirs with it.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings
from typing import Any, Dict, Mapping

__all__ = ["MovedModules", "install_moved", "resolve_reference"]


class MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """``old name -> new module`` for the names of ``moved``: importing the old name returns the new module."""

    def __init__(self, moved: Mapping[str, str], removal: str):
        self.moved, self.removal = dict(moved), removal
        self._specs: Dict[str, Any] = {}

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname not in self.moved:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec: Any) -> Any:
        new = self.moved[spec.name]
        warnings.warn(f"{spec.name} is deprecated ({self.removal}): import {new}", DeprecationWarning, stacklevel=3)
        module = importlib.import_module(new)
        self._specs[module.__name__] = module.__spec__
        return module

    def exec_module(self, module: Any) -> None:  # already executed under its new name: give its own spec back
        module.__spec__ = self._specs.pop(module.__name__, module.__spec__)


def install_moved(moved: Mapping[str, str], removal: str) -> None:
    """Put a :class:`MovedModules` finder for ``moved`` first on ``sys.meta_path`` (once per set of names)."""
    if not any(isinstance(finder, MovedModules) and finder.moved == dict(moved) for finder in sys.meta_path):
        sys.meta_path.insert(0, MovedModules(moved, removal))


def resolve_reference(reference: str) -> Any:
    """The object ``"package.module:attr[.attr]"`` names, its module imported now (ValueError, in one line, for a
    reference that does not read ``module:attribute``; the import's own error for a module that is not there)."""
    module, _, attr = str(reference).partition(":")
    if not module or not attr:
        raise ValueError(f"a reference reads 'module:attribute', got {reference!r}")
    found: Any = importlib.import_module(module)
    for part in attr.split("."):
        found = getattr(found, part)
    return found
