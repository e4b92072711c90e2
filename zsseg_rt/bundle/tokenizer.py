"""Deprecated import path, removed in 0.2.0 (CHANGELOG.md): the tokenizer is :mod:`zsseg_rt.vocabulary.tokenizer`."""

import warnings

from zsseg_rt.vocabulary.templates import expand_templates
from zsseg_rt.vocabulary.tokenizer import EOT_TOKEN, SOT_TOKEN, ClipTokenizer, build_tokenizer_json, clean_text

__all__ = ["ClipTokenizer", "build_tokenizer_json", "clean_text", "expand_templates", "SOT_TOKEN", "EOT_TOKEN"]

warnings.warn(
    "zsseg_rt.bundle.tokenizer is deprecated (removed in 0.2.0): import from zsseg_rt.vocabulary",
    DeprecationWarning,
    stacklevel=2,
)
