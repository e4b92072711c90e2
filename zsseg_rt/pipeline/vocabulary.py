"""Deprecated import path, removed in 0.2.0 (CHANGELOG.md): the vocabulary checks are :mod:`zsseg_rt.vocabulary`."""

import warnings

from zsseg_rt.vocabulary import prompt_key, validate_class_bias, validate_class_names, validate_templates

__all__ = ["validate_class_names", "validate_templates", "validate_class_bias", "prompt_key"]

warnings.warn(
    "zsseg_rt.pipeline.vocabulary is deprecated (removed in 0.2.0): import from zsseg_rt.vocabulary",
    DeprecationWarning,
    stacklevel=2,
)
