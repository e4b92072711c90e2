"""Deprecated import path, kept for one release (CHANGELOG.md): ZeroSeg's trainer belongs to its family,
:mod:`zsseg_rt.models.zeroseg.trainer` (``zsseg_rt.train`` reaches it through the family registry)."""

import warnings

from zsseg_rt.models.zeroseg.trainer import CosineWarmupSchedule, ZeroSegStream, ZeroSegTrainer, cosine_lr

__all__ = ["ZeroSegTrainer", "CosineWarmupSchedule", "ZeroSegStream", "cosine_lr"]

warnings.warn(
    "zsseg_rt.train.zeroseg is deprecated: import from zsseg_rt.models.zeroseg.trainer",
    DeprecationWarning,
    stacklevel=2,
)
