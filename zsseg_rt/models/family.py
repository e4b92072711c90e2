"""Deprecated import path, removed in 0.2.0 (CHANGELOG.md): the family protocol is :mod:`zsseg_rt.contract.family`.

This name is the very module object of the new path (same classes, same state), not a copy.
"""

import sys
import warnings

from zsseg_rt.contract import family as _family

warnings.warn(
    "zsseg_rt.models.family is deprecated (removed in 0.2.0): import from zsseg_rt.contract.family",
    DeprecationWarning,
    stacklevel=2,
)
sys.modules[__name__] = _family
