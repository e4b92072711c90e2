"""Deprecated import path, removed in 0.2.0 (CHANGELOG.md): the building blocks the families share are
:mod:`zsseg_rt.contract.common`.

``zsseg_rt.models.common`` and every ``zsseg_rt.models.common.<module>`` are the very module objects of the new
paths (same classes, same state), not copies: a finder hands out the new modules under the old names.
"""

import importlib
import importlib.abc
import importlib.util
import sys
import warnings
from typing import Any, Dict

from zsseg_rt.contract import common as _common

_OLD = __name__
_NEW = _common.__name__


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """``zsseg_rt.models.common.X`` -> the module ``zsseg_rt.contract.common.X`` itself."""

    def __init__(self) -> None:
        self._specs: Dict[str, Any] = {}

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if not fullname.startswith(_OLD + "."):
            return None
        if importlib.util.find_spec(_NEW + fullname[len(_OLD) :]) is None:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec: Any) -> Any:
        module = importlib.import_module(_NEW + spec.name[len(_OLD) :])
        self._specs[module.__name__] = module.__spec__
        return module

    def exec_module(self, module: Any) -> None:  # already executed under its new name: give its own spec back
        module.__spec__ = self._specs.pop(module.__name__, module.__spec__)


if not any(isinstance(finder, _MovedModules) for finder in sys.meta_path):
    sys.meta_path.insert(0, _MovedModules())
warnings.warn(
    "zsseg_rt.models.common is deprecated (removed in 0.2.0): import from zsseg_rt.contract.common",
    DeprecationWarning,
    stacklevel=2,
)
sys.modules[__name__] = _common
