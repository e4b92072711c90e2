"""Deprecated import path, removed in 0.2.0 (CHANGELOG.md): the two-stage runtime is the pipeline
:mod:`zsseg_rt.runtime.pipelines.two_stage`, and ``zsseg_rt.Engine`` runs every bundle (``ZegFormerEngine`` is
``Engine``).

``resize_antialias`` (torch's antialiased resize, emulated) is gone without an alias: the two-stage pipeline
resizes as the official ZegFormer mapper does, :func:`zsseg_rt.pipeline.resize.pil_resize_bilinear`.

A package rather than a module so that version control sees the former ``runtime/zegformer.py`` as moved.
"""

import warnings

from zsseg_rt.runtime.backends.legacy import TwoStageOrtBackend as ZegFormerOrtBackend
from zsseg_rt.runtime.engine import Engine as ZegFormerEngine
from zsseg_rt.runtime.pipelines.two_stage import (
    clip_crops,
    fuse_scores,
    mask_boxes,
    roi_align,
    shortest_edge_shape,
)

__all__ = [
    "ZegFormerEngine",
    "ZegFormerOrtBackend",
    "shortest_edge_shape",
    "mask_boxes",
    "roi_align",
    "clip_crops",
    "fuse_scores",
]

warnings.warn(
    "zsseg_rt.runtime.zegformer is deprecated (removed in 0.2.0): use zsseg_rt.Engine (every bundle) and "
    "zsseg_rt.runtime.pipelines.two_stage",
    DeprecationWarning,
    stacklevel=2,
)
