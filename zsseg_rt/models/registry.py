"""Deprecated import path, removed in 0.2.0 (CHANGELOG.md): the registry is :mod:`zsseg_rt.contract.registry`.

This name is the very module object of the new path (the one registry, same state), not a copy.
"""

import sys
import warnings

from zsseg_rt.contract import registry as _registry

warnings.warn(
    "zsseg_rt.models.registry is deprecated (removed in 0.2.0): import from zsseg_rt.contract.registry",
    DeprecationWarning,
    stacklevel=2,
)
sys.modules[__name__] = _registry
