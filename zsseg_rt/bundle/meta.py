"""Reading and verifying a bundle's ``meta.json`` (no torch)."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence

from .spec import BUNDLE_FORMAT_VERSION, GRAPH_FILES, Files, graph_io


def normalize_class_name(name: str) -> str:
    """The form in which class names are compared (seen-class calibration): whitespace collapsed, lower case."""
    return " ".join(str(name).split()).lower()


class BundleError(RuntimeError):
    """A bundle is missing, incomplete, corrupted or incompatible."""


def sha256_file(path: str, chunk: int = 1 << 22) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class BundleMeta:
    """The parsed ``meta.json`` of a bundle (see ``zsseg_rt.bundle``)."""

    path: str
    format_version: int
    architecture: Dict[str, Any]
    image_size: int
    patch_size: int
    embed_dim: int
    context_length: int
    mean: List[float]
    std: List[float]
    templates: List[str]
    calibration_bias: float
    seen_class_names: List[str]
    training_class_names: List[str]
    max_classes: int
    crop_size: int
    stride: int
    opset: int
    files: Dict[str, str]
    raw: Dict[str, Any] = field(repr=False, default_factory=dict)

    @property
    def io(self) -> Dict[str, Dict[str, Any]]:
        """Per graph role ("image", "head", "text"): inputs, outputs, dynamic axes."""
        return graph_io(self.raw)

    @property
    def family(self) -> str:
        return str(self.architecture.get("family", "zegclip"))

    @property
    def postprocess(self) -> Dict[str, Any]:
        """How mask logits become labels: {"activation": "sigmoid"|"softmax", "logit_scale": float,
        "background_threshold": float|None}. ZegCLIP: sigmoid, calibration bias after it."""
        return dict(
            {"activation": "sigmoid", "logit_scale": 1.0, "background_threshold": None},
            **self.raw.get("postprocess", {}),
        )

    @property
    def test_scale(self) -> List[Optional[int]]:
        """Keep-ratio test resize ``[long_max, short]`` (long_max None: short side exactly ``short``, the official
        ZegCLIP/CLIP-RC ``min_size`` rule); see ``zsseg_rt.pipeline.preprocess.rescaled_size``."""
        scale = self.raw.get("test_scale")
        if scale is None:
            short = self.postprocess.get("short_side") or self.image_size
            return [None, int(short)]
        return [None if v is None else int(v) for v in scale]

    @property
    def grid(self) -> tuple:
        side = self.image_size // self.patch_size
        return side, side

    def file(self, name: str) -> str:
        return os.path.join(self.path, name)

    def class_bias(self, class_names: Sequence[str]) -> List[float]:
        """Per-class calibration: ``calibration_bias`` for names that were seen in training, else 0.

        This is the official inductive calibration (minus 0.1 after the sigmoid on seen classes) applied to a
        run-time vocabulary: a class counts as seen when its name equals a training-split seen class name (compared by
        ``normalize_class_name``: case and repeated whitespace do not matter).
        """
        seen = {normalize_class_name(name) for name in self.seen_class_names}
        return [self.calibration_bias if normalize_class_name(name) in seen else 0.0 for name in class_names]


_REQUIRED = (
    "format_version",
    "architecture",
    "image_size",
    "patch_size",
    "embed_dim",
    "context_length",
    "mean",
    "std",
    "templates",
    "calibration_bias",
    "seen_class_names",
    "training_class_names",
    "max_classes",
    "crop_size",
    "stride",
    "opset",
    "files",
)


def load_meta(bundle_dir: str) -> BundleMeta:
    """Parse ``bundle_dir/meta.json`` and check its format (not the file hashes: see ``verify_files``)."""
    meta_path = os.path.join(bundle_dir, Files.META)
    if not os.path.isdir(bundle_dir):
        raise BundleError(f"bundle directory not found: {bundle_dir!r}; create one with `zsseg export`")
    if not os.path.isfile(meta_path):
        raise BundleError(f"{meta_path!r} is missing: {bundle_dir!r} is not a complete bundle (re-run `zsseg export`)")
    try:
        with open(meta_path, "r", encoding="utf-8") as handle:
            raw = json.load(handle)
    except (OSError, ValueError) as exc:
        raise BundleError(f"cannot read {meta_path!r}: {exc}") from exc
    missing = [key for key in _REQUIRED if key not in raw]
    if missing:
        raise BundleError(f"{meta_path!r} lacks required fields {missing}; re-export the bundle")
    if raw["format_version"] != BUNDLE_FORMAT_VERSION:
        raise BundleError(
            f"bundle format {raw['format_version']} is not supported by this zsseg_rt (expects "
            f"{BUNDLE_FORMAT_VERSION}); re-export the bundle with this version"
        )
    kwargs = {key: raw[key] for key in _REQUIRED}
    return BundleMeta(path=os.path.abspath(bundle_dir), raw=raw, **kwargs)


def verify_files(meta: BundleMeta, names: Optional[Sequence[str]] = None) -> None:
    """Check that the bundle's files exist and match the sha256 recorded in ``meta.json``.

    Raises:
        BundleError naming the file, the expected and the actual hash.
    """
    if names is None:
        # every file the runtime opens must be covered, not only those meta.json happens to list
        required = sorted(set(GRAPH_FILES.values()) | {Files.TOKENIZER})
        unlisted = [name for name in required if name not in meta.files]
        if unlisted:
            raise BundleError(f"meta.json of {meta.path!r} records no sha256 for {unlisted}; re-export the bundle")
        names = sorted(set(meta.files) | set(required))
    for name in names:
        expected = meta.files.get(name)
        if expected is None:
            raise BundleError(f"meta.json of {meta.path!r} records no hash for {name!r}")
        path = meta.file(name)
        if not os.path.isfile(path):
            raise BundleError(f"bundle file {path!r} is missing (re-run `zsseg export`)")
        actual = sha256_file(path)
        if actual != expected:
            raise BundleError(
                f"bundle file {path!r} is corrupted or was modified: sha256 {actual} != recorded {expected}; "
                "re-run `zsseg export`"
            )
