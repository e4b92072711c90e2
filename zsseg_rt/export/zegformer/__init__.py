"""Deprecated import path, kept for one release (CHANGELOG.md): the ZegFormer exporter belongs to its family,
:mod:`zsseg_rt.models.zegformer.export` (``zsseg_rt.export.onnx_export.export_bundle`` reaches it through the
family registry).

A package rather than a module so that version control sees the former ``export/zegformer.py`` as moved.
"""

import warnings

from zsseg_rt.models.zegformer.export import (
    ClipImageGraph,
    MaskBranchGraph,
    export_zegformer_bundle,
    export_zegformer_graphs,
    flips_beyond_ties,
    synthetic_image,
    verify_zegformer_bundle,
    zegformer_meta,
)

__all__ = [
    "MaskBranchGraph",
    "ClipImageGraph",
    "export_zegformer_graphs",
    "export_zegformer_bundle",
    "zegformer_meta",
    "verify_zegformer_bundle",
    "flips_beyond_ties",
    "synthetic_image",
]

warnings.warn(
    "zsseg_rt.export.zegformer is deprecated: import from zsseg_rt.models.zegformer.export",
    DeprecationWarning,
    stacklevel=2,
)
