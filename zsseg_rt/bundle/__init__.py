"""The export bundle format, shared by the exporter (torch side) and the runtime (no torch).

A bundle is a directory::

    meta.json            architecture, input size, mean/std, templates, calibration, I/O names, versions,
                         verification results and the sha256 of every other file
    image_encoder.onnx   image [B,3,S,S] -> image_global [B,D], patches [B,N,D]
    head.onnx            text_embeddings [C,D], image_global [B,D], patches [B,N,D] -> mask_logits [B,C,h,w]
    text_encoder.onnx    tokens [P,L] int32 -> text_embeddings [P,D] (L2-normalised)
    (bundles of the two-stage pipeline, meta.json "pipeline": "two_stage", hold mask_branch.onnx and
    clip_image_encoder.onnx instead of image_encoder.onnx and head.onnx: ``spec.TWO_STAGE_GRAPH_FILES``)
    tokenizer.json       CLIP BPE tokenizer (HF `tokenizers` format)

meta.json's ``weights`` says which weights the bundle holds; a random-weight bundle's outputs carry
``weights_banner`` (``bundle.weights``).

Tensor and file names are spelled in ``spec`` and nowhere else. ``meta.json`` names the runtime pipeline that runs
the bundle and its evaluation protocol; older bundles get them from ``migrate.migrate_meta``.
"""

from typing import Any

from .meta import (
    BundleError,
    BundleMeta,
    bundle_digest,
    bundle_file,
    check_bundle_digest,
    check_bundle_integrity,
    load_meta,
    sha256_file,
    verify_files,
)
from .migrate import migrate_meta
from .schema import canonical_meta_sha256, check_meta_schema, write_meta
from .spec import (
    BUNDLE_FORMAT_VERSION,
    GRAPH_FILES,
    PIPELINE_GRAPH_FILES,
    TWO_STAGE_GRAPH_FILES,
    Files,
    Names,
    WholeImage,
    default_graph_io,
    graph_files,
    graph_io,
    two_stage_graph_io,
)
from .weights import weights_banner, weights_record

__all__ = [
    "BUNDLE_FORMAT_VERSION",
    "Files",
    "GRAPH_FILES",
    "TWO_STAGE_GRAPH_FILES",
    "PIPELINE_GRAPH_FILES",
    "graph_files",
    "two_stage_graph_io",
    "migrate_meta",
    "Names",
    "WholeImage",
    "default_graph_io",
    "graph_io",
    "BundleError",
    "bundle_file",
    "canonical_meta_sha256",
    "check_meta_schema",
    "write_meta",
    "BundleMeta",
    "load_meta",
    "sha256_file",
    "verify_files",
    "check_bundle_integrity",
    "weights_banner",
    "weights_record",
    "bundle_digest",
    "check_bundle_digest",
]

# Names removed in 0.2.0 (CHANGELOG.md): the two-stage tables were named after the family that uses them.
_DEPRECATED = {"ZEGFORMER_GRAPH_FILES": "TWO_STAGE_GRAPH_FILES", "zegformer_graph_io": "two_stage_graph_io"}


def __getattr__(name: str) -> Any:  # PEP 562
    if name in _DEPRECATED:
        import warnings

        warnings.warn(
            f"zsseg_rt.bundle.{name} is deprecated (removed in 0.2.0): use {_DEPRECATED[name]}",
            DeprecationWarning,
            stacklevel=2,
        )
        return globals()[_DEPRECATED[name]]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
