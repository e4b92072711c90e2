"""Reading and verifying a bundle's ``meta.json`` (no torch)."""

from __future__ import annotations

import hashlib
import json
import os
import stat
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence

from zsseg_rt.errors import BundleError
from zsseg_rt.vocabulary import name_key, seen_mask

from .migrate import migrate_meta
from .schema import META_HASH_FIELD, SchemaError, canonical_meta_sha256, check_file_name, check_meta_schema
from .spec import BUNDLE_FORMAT_VERSION, Files, graph_files, graph_io
from .weights import weights_banner

MAX_META_BYTES = 16 << 20  # a meta.json larger than this is refused before it is parsed
normalize_class_name = name_key  # the former name: class names are compared by the vocabulary unit's one rule


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
    digest: str = ""  # "sha256:<hex>" of meta.json's content (``bundle_digest``), set by ``load_meta``

    @property
    def io(self) -> Dict[str, Dict[str, Any]]:
        """Per graph role ("image", "head", "text"): inputs, outputs, dynamic axes."""
        return graph_io(self.raw)

    @property
    def family(self) -> str:
        """The model family the bundle was exported from (``architecture.family``; information, not dispatch)."""
        return str(self.architecture.get("family", ""))

    @property
    def pipeline(self) -> str:
        """The runtime pipeline that runs this bundle (``zsseg_rt.runtime.pipelines``): "windowed", "two_stage"."""
        return str(self.raw["pipeline"])

    @property
    def evaluation_protocol(self) -> str:
        """How the bundle is evaluated (``zsseg_rt.eval``): "generalized_zero_shot" or a family's own protocol."""
        return str(self.raw["evaluation_protocol"])

    @property
    def weights(self) -> Dict[str, Any]:
        """Which weights the bundle holds (``bundle.weights``): ``source``, ``kind``, ``random``."""
        return dict(self.raw.get("weights") or {})

    @property
    def random_weights(self) -> bool:
        """True when the bundle's labels are meaningless (random or untrained weights; see ``weights_banner``)."""
        return bool(self.weights.get("random"))

    @property
    def weights_banner(self) -> str:
        """The banner every output of this bundle carries ("" for trained weights)."""
        return weights_banner(self.weights)

    def section(self, name: str) -> Dict[str, Any]:
        """A parameter section of meta.json (e.g. the two-stage pipeline's ``"two_stage"``); {} when absent."""
        value = self.raw.get(name)
        return dict(value) if isinstance(value, dict) else {}

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
    def whole_image(self) -> Optional[Dict[str, Any]]:
        """The ``whole_image`` section (the image graph takes any input size; ``spec.WholeImage``), or None for a
        fixed-size image graph (windows only; every bundle exported before whole-image inference existed)."""
        section = self.raw.get("whole_image")
        return dict(section) if isinstance(section, dict) else None

    @property
    def grid(self) -> tuple:
        side = self.image_size // self.patch_size
        return side, side

    def file(self, name: str) -> str:
        """The path of bundle file ``name``, checked: inside the bundle (also after following symlinks) and a
        regular file when it exists (a FIFO or device would hang or flood a load). Raises BundleError."""
        return bundle_file(self.path, name)

    def class_bias(self, class_names: Sequence[str]) -> List[float]:
        """Per-class calibration: ``calibration_bias`` for names that were seen in training, else 0.

        This is the official inductive calibration (minus 0.1 after the sigmoid on seen classes) applied to a
        run-time vocabulary: a class counts as seen when its name is a training-split seen class name (the same name
        by ``zsseg_rt.vocabulary.name_key``: case, spacing and HTML entities do not matter).
        """
        seen = seen_mask(class_names, self.seen_class_names)
        return [self.calibration_bias if is_seen else 0.0 for is_seen in seen]


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


def bundle_file(bundle_dir: str, name: str, must_exist: bool = False) -> str:
    """``bundle_dir/name`` after checking that it cannot leave the bundle or hang a reader.

    Args:
        bundle_dir: the bundle directory; name: a relative file name as recorded in meta.json.
        must_exist: raise when the file is missing (otherwise the caller reports it).
    Returns:
        the path (not resolved: symlinks inside the bundle are allowed).
    Raises:
        BundleError: an absolute name or one with ``..``; a symlink resolving outside the bundle; something
            that is not a regular file (directory, FIFO, device, socket); missing when ``must_exist``.
    """
    try:
        check_file_name(name)
    except SchemaError as exc:
        raise BundleError(f"bundle {bundle_dir!r}: {exc}") from None
    path = os.path.join(bundle_dir, name)
    root = os.path.realpath(bundle_dir)
    real = os.path.realpath(path)
    if os.path.commonpath([root, real]) != root:
        raise BundleError(f"bundle file {path!r} resolves to {real!r}, outside the bundle {root!r}; refusing it")
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        if must_exist:
            raise BundleError(f"bundle file {path!r} is missing (re-run `zsseg export`)") from None
        return path
    except OSError as exc:
        raise BundleError(f"cannot stat bundle file {path!r}: {exc}") from exc
    if not stat.S_ISREG(mode):
        raise BundleError(f"bundle file {path!r} is not a regular file (a directory, FIFO or device); refusing it")
    return path


def _read_meta_json(meta_path: str) -> Any:
    try:
        info = os.stat(meta_path)
    except OSError as exc:
        raise BundleError(f"cannot read {meta_path!r}: {exc}") from exc
    if not stat.S_ISREG(info.st_mode):
        raise BundleError(f"{meta_path!r} is not a regular file (a directory, FIFO or device); refusing it")
    if info.st_size > MAX_META_BYTES:
        raise BundleError(f"{meta_path!r} is {info.st_size} bytes, more than {MAX_META_BYTES}: not a bundle's meta")
    try:
        with open(meta_path, "r", encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError, RecursionError) as exc:
        raise BundleError(f"cannot read {meta_path!r}: {exc}") from exc


def load_meta(bundle_dir: str) -> BundleMeta:
    """Parse ``bundle_dir/meta.json`` and check it against the schema (``bundle.schema``: types and ranges of
    every field, file names inside the bundle) and, when recorded, its own hash ``meta_sha256``. The other
    files' hashes are checked by ``verify_files``.

    Raises:
        BundleError naming the file and every malformed field.
    """
    meta_path = os.path.join(bundle_dir, Files.META)
    if os.path.exists(bundle_dir) and not os.path.isdir(bundle_dir):
        raise BundleError(
            f"{bundle_dir!r} is a file, not a bundle: a bundle is a directory (meta.json, the ONNX graphs and the "
            "tokenizer) written by `zsseg export`; give that directory"
        )
    if not os.path.isdir(bundle_dir):
        raise BundleError(f"bundle directory not found: {bundle_dir!r}; create one with `zsseg export`")
    if not os.path.lexists(meta_path):
        raise BundleError(f"{meta_path!r} is missing: {bundle_dir!r} is not a complete bundle (re-run `zsseg export`)")
    bundle_file(bundle_dir, Files.META)  # inside the bundle, a regular file
    recorded_raw = _read_meta_json(meta_path)
    raw = migrate_meta(recorded_raw)  # what an older bundle does not record yet (pipeline, evaluation protocol)
    if isinstance(raw, dict) and "format_version" in raw and raw["format_version"] != BUNDLE_FORMAT_VERSION:
        raise BundleError(
            f"bundle format {raw['format_version']!r} is not supported by this zsseg_rt (expects "
            f"{BUNDLE_FORMAT_VERSION}); re-export the bundle with this version"
        )
    problems = check_meta_schema(raw)
    if problems:
        raise BundleError(f"{meta_path!r} is malformed: {'; '.join(problems)}; re-export the bundle")
    recorded = raw.get(META_HASH_FIELD)
    if recorded is not None and recorded != canonical_meta_sha256(recorded_raw):
        raise BundleError(
            f"{meta_path!r} was modified after export: its content does not match its recorded {META_HASH_FIELD} "
            f"{recorded}; re-export the bundle (or re-sign a deliberate edit with zsseg_rt.bundle.schema.write_meta)"
        )
    kwargs = {key: raw[key] for key in _REQUIRED}
    digest = DIGEST_PREFIX + canonical_meta_sha256(recorded_raw)
    return BundleMeta(path=os.path.abspath(bundle_dir), raw=raw, digest=digest, **kwargs)


DIGEST_PREFIX = "sha256:"
_HEX64 = frozenset("0123456789abcdef")


def bundle_digest(bundle_dir: str) -> str:
    """The digest that pins a bundle: ``"sha256:<hex>"`` of its meta.json's canonical content (the value it records
    as ``meta_sha256``). meta.json holds the sha256 of every other file of the bundle, so one digest covers them
    all once those are verified (``Engine`` does). Raises BundleError for a malformed bundle."""
    return load_meta(bundle_dir).digest


def check_bundle_digest(meta: BundleMeta, expected: str) -> None:
    """Refuse a bundle whose digest is not ``expected`` (``"sha256:<64 hex>"`` or the bare hex).

    Hashes recorded inside a bundle tell whether its files are the ones it was exported with (integrity); anyone who
    can write the bundle can recompute them. Comparing with a digest kept elsewhere (a deployment's configuration:
    ``Engine(expected_digest=...)``, ``zsseg serve --bundle-digest``) tells that it is the bundle you exported.

    Raises:
        ValueError: ``expected`` is not a sha256 digest.
        BundleError: the bundle records no ``meta_sha256`` (older export), or its digest differs.
    """
    text = str(expected).strip().lower()
    hex_part = text[len(DIGEST_PREFIX) :] if text.startswith(DIGEST_PREFIX) else text
    if len(hex_part) != 64 or not set(hex_part) <= _HEX64:
        raise ValueError(f"a bundle digest is 'sha256:' and 64 hex digits (zsseg export prints it), got {expected!r}")
    if META_HASH_FIELD not in meta.raw:
        raise BundleError(
            f"bundle {meta.path!r} records no {META_HASH_FIELD} (an older export), so its files are not pinned by its "
            "meta.json; re-export it with this zsseg_rt and pin the new digest"
        )
    if meta.digest != DIGEST_PREFIX + hex_part:
        raise BundleError(
            f"bundle {meta.path!r} is not the pinned one: its digest is {meta.digest}, expected {DIGEST_PREFIX}"
            f"{hex_part}; deploy the bundle you exported (or update the pinned digest after a deliberate re-export)"
        )


def _unlisted_files(meta: BundleMeta) -> List[str]:
    """Files in the bundle (outside ``engines/``) that meta.json does not hash: an ONNX graph could load them as
    external data unverified."""
    found = []
    for folder, dirs, files in os.walk(meta.path):
        rel_dir = os.path.relpath(folder, meta.path)
        if rel_dir == ".":
            dirs[:] = [d for d in dirs if d != Files.ENGINE_DIR]
        for name in files:
            rel = name if rel_dir == "." else f"{rel_dir}/{name}".replace(os.sep, "/")
            if rel != Files.META and rel not in meta.files:
                found.append(rel)
    return sorted(found)


def check_bundle_integrity(meta: BundleMeta) -> None:
    """What must hold before any file hash means anything: meta.json records its own hash (so a modified meta.json
    cannot pass), records a sha256 for every file the runtime opens, and no file of the bundle (outside
    ``engines/``; e.g. ONNX external data) is unhashed.

    Raises:
        BundleError saying what is missing and what to do.
    """
    if META_HASH_FIELD not in meta.raw:
        raise BundleError(
            f"meta.json of {meta.path!r} records no {META_HASH_FIELD}, so a modified meta.json would pass; "
            "re-export the bundle with this zsseg_rt (or Engine(..., verify=False) to skip all checks)"
        )
    # every file the runtime opens must be covered, not only those meta.json happens to list
    required = sorted(set(graph_files(meta.pipeline).values()) | {Files.TOKENIZER})
    unlisted = [name for name in required if name not in meta.files]
    if unlisted:
        raise BundleError(f"meta.json of {meta.path!r} records no sha256 for {unlisted}; re-export the bundle")
    extra = _unlisted_files(meta)
    if extra:
        raise BundleError(
            f"bundle {meta.path!r} holds files that meta.json records no sha256 for: {extra[:10]} (an ONNX "
            "graph could load them as external data unverified); remove them or re-export the bundle"
        )


def verify_files(meta: BundleMeta, names: Optional[Sequence[str]] = None) -> None:
    """Check that the bundle's files exist and match the sha256 recorded in ``meta.json``; with ``names`` None
    also that meta.json records its own hash and that no file of the bundle (e.g. ONNX external data) is unhashed.

    Raises:
        BundleError naming the file, the expected and the actual hash.
    """
    if names is None:
        check_bundle_integrity(meta)
        names = sorted(set(meta.files) | set(graph_files(meta.pipeline).values()) | {Files.TOKENIZER})
    for name in names:
        expected = meta.files.get(name)
        if expected is None:
            raise BundleError(f"meta.json of {meta.path!r} records no hash for {name!r}")
        path = bundle_file(meta.path, name, must_exist=True)
        actual = sha256_file(path)
        if actual != expected:
            raise BundleError(
                f"bundle file {path!r} is corrupted or was modified: sha256 {actual} != recorded {expected}; "
                "re-run `zsseg export`"
            )
