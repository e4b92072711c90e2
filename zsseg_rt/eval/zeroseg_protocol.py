"""Deprecated import path, kept for one release (CHANGELOG.md): ZeroSeg's evaluation protocol belongs to its
family, :mod:`zsseg_rt.models.zeroseg.protocol` (``zsseg_rt.eval`` reaches it through the family registry)."""

import warnings

from zsseg_rt.models.zeroseg.protocol import (
    DATASET_BACKGROUND_THRESHOLDS,
    GROUPVIT_BACKGROUND_THRESHOLDS,
    PROTOCOL,
    THRESHOLD_TABLES,
    evaluate_zeroseg_bundle,
    protocol_threshold,
    run_protocol,
    with_background,
)

__all__ = [
    "DATASET_BACKGROUND_THRESHOLDS",
    "GROUPVIT_BACKGROUND_THRESHOLDS",
    "PROTOCOL",
    "THRESHOLD_TABLES",
    "protocol_threshold",
    "with_background",
    "evaluate_zeroseg_bundle",
    "run_protocol",
]

warnings.warn(
    "zsseg_rt.eval.zeroseg_protocol is deprecated: import from zsseg_rt.models.zeroseg.protocol",
    DeprecationWarning,
    stacklevel=2,
)
