"""Deprecated import path, removed in 0.2.0 (CHANGELOG.md): the class lists are :mod:`zsseg_rt.vocabulary`."""

import warnings

from zsseg_rt.vocabulary.class_lists import VOCAB_DIR, load_class_names

__all__ = ["VOCAB_DIR", "load_class_names"]

warnings.warn(
    "zsseg_rt.data.vocab is deprecated (removed in 0.2.0): import from zsseg_rt.vocabulary",
    DeprecationWarning,
    stacklevel=2,
)
