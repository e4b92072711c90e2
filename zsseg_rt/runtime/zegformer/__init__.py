"""Deprecated import path, kept for one release (CHANGELOG.md): the two-stage runtime is the pipeline
:mod:`zsseg_rt.runtime.pipelines.two_stage`, and ``zsseg_rt.Engine`` runs every bundle (``ZegFormerEngine`` is
``Engine``).

A package rather than a module so that version control sees the former ``runtime/zegformer.py`` as moved.
"""

import warnings

from zsseg_rt.runtime.engine import Engine as ZegFormerEngine
from zsseg_rt.runtime.pipelines.two_stage import TwoStageOrtBackend as ZegFormerOrtBackend
from zsseg_rt.runtime.pipelines.two_stage import (
    clip_crops,
    fuse_scores,
    mask_boxes,
    resize_antialias,
    roi_align,
    shortest_edge_shape,
)

__all__ = [
    "ZegFormerEngine",
    "ZegFormerOrtBackend",
    "shortest_edge_shape",
    "resize_antialias",
    "mask_boxes",
    "roi_align",
    "clip_crops",
    "fuse_scores",
]

warnings.warn(
    "zsseg_rt.runtime.zegformer is deprecated: use zsseg_rt.Engine (every bundle) and "
    "zsseg_rt.runtime.pipelines.two_stage",
    DeprecationWarning,
    stacklevel=2,
)
