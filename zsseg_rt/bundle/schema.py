"""The schema of a bundle's ``meta.json``, checked on every load, and the hash that covers meta.json itself.

A small explicit validator (no dependency): every field the runtime reads has a type and a range, and a
violation names the field, what was expected and what was found. File names recorded in ``files`` must stay
inside the bundle (relative, no ``..``, no backslashes or NUL). ``meta_sha256`` is the sha256 of the canonical
JSON of meta.json without that field (``canonical_meta_sha256``), so editing meta.json by hand is detected by
``verify_files`` like a modified graph; ``write_meta`` writes a meta.json with that field (the exporter, or a
tool that edits a bundle on purpose).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from typing import Any, Callable, Dict, List, Mapping

from zsseg_rt.vocabulary import validate_templates

from .migrate import migrate_meta
from .spec import PIPELINE_GRAPH_FILES, Names, WholeImage, graph_io
from .weights import check_weights

__all__ = ["META_HASH_FIELD", "canonical_meta_sha256", "check_meta_schema", "check_file_name", "write_meta"]

META_HASH_FIELD = "meta_sha256"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
MAX_SIDE = 1 << 14  # the largest graph input side / crop accepted (16384)
MAX_GRID = 512  # the largest patch grid side (image_size / patch_size): 262144 tokens per window
MAX_LOGIT_SCALE = 1e4  # CLIP's learned scale is capped at 100; beyond 1e4 exp() overflows float32 on any logit gap
# Images are normalised as (pixel - mean) / std on the 0-255 scale: a std below 1e-3 turns one grey level into
# thousands of units (or inf), beyond any input a network was trained on.
MIN_STD, MAX_STD = 1e-3, 1e4


class SchemaError(ValueError):
    """One field of meta.json is malformed (converted to BundleError by ``load_meta``)."""


def canonical_meta_sha256(raw: Mapping[str, Any]) -> str:
    """sha256 of meta.json's content without ``meta_sha256``: sorted keys, compact separators, UTF-8."""
    body = {key: value for key, value in raw.items() if key != META_HASH_FIELD}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def write_meta(path: str, raw: Dict[str, Any]) -> None:
    """Write ``raw`` as meta.json at ``path`` with its ``meta_sha256`` (mode 0644: readable by other users).

    Args:
        path: the meta.json file to (over)write; raw: its content (``meta_sha256`` is replaced).
    """
    data = {key: value for key, value in raw.items() if key != META_HASH_FIELD}
    data[META_HASH_FIELD] = canonical_meta_sha256(data)
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=1)
        handle.write("\n")
    os.chmod(path, 0o644)


def check_file_name(name: Any) -> str:
    """A file name recorded in meta.json: a non-empty relative path inside the bundle (``/``-separated, no
    ``..``/``.`` parts, no absolute path, backslash or NUL). Returns it; raises SchemaError otherwise."""
    if not isinstance(name, str) or not name:
        raise SchemaError(f"file names must be non-empty strings, got {name!r}")
    parts = name.split("/")
    if name.startswith("/") or "\\" in name or "\0" in name or any(part in ("", ".", "..") for part in parts):
        raise SchemaError(f"file name {name!r} must be a plain relative path inside the bundle (no '..', no '/' start)")
    if os.path.isabs(name) or os.path.splitdrive(name)[0]:
        raise SchemaError(f"file name {name!r} must be relative to the bundle directory")
    return name


# ---- field checkers -----------------------------------------------------------------------------------------
def _int(low: int, high: int) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if isinstance(value, bool) or not isinstance(value, int):
            return f"an integer in [{low}, {high}], got {type(value).__name__} {value!r}"
        return "" if low <= value <= high else f"an integer in [{low}, {high}], got {value}"

    return check


def _number(positive: bool = False, low: float = -math.inf, high: float = math.inf) -> Callable[[Any], str]:
    """A finite number (> 0 when ``positive``) in ``[low, high]``."""

    def check(value: Any) -> str:
        what = "a finite number" + (" > 0" if positive else "")
        if math.isfinite(low) or math.isfinite(high):
            what += f" in [{low:g}, {high:g}]"
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return f"{what}, got {value!r}"
        if positive and not value > 0:
            return f"{what}, got {value}"
        return "" if low <= value <= high else f"{what}, got {value:g}"

    return check


def _flag(value: Any) -> str:
    return "" if isinstance(value, bool) else f"true or false, got {value!r}"


def _name(value: Any, longest: int = 64) -> str:
    """An identifier-like name (letters, digits, '_', '-', '.'; starting with a letter or '_')."""
    if not isinstance(value, str) or not _NAME.match(value) or len(value) > longest:
        return f"a name of at most {longest} letters, digits, '_', '-' or '.', got {value!r:.80}"
    return ""


def _text(longest: int) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if not isinstance(value, str) or not value.strip() or len(value) > longest:
            return f"a non-empty string of at most {longest} characters, got {value!r:.80}"
        return ""

    return check


def _optional(check: Callable[[Any], str]) -> Callable[[Any], str]:
    return lambda value: "" if value is None else check(value)


def _triple(positive: bool, low: float = -math.inf, high: float = math.inf) -> Callable[[Any], str]:
    number = _number(positive, low, high)

    def check(value: Any) -> str:
        if not isinstance(value, list) or len(value) != 3:
            return f"a list of 3 numbers (R, G, B), got {value!r}"
        errors = [number(v) for v in value]
        return next((f"3 numbers, each {e}" for e in errors if e), "")

    return check


def _strings(non_empty: bool = False) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            return f"a list of strings, got {type(value).__name__}"
        return "a non-empty list of strings, got []" if non_empty and not value else ""

    return check


def _templates(value: Any) -> str:
    error = _strings(non_empty=True)(value)
    if error:
        return error
    try:
        validate_templates(value)
    except (TypeError, ValueError) as exc:
        return f"prompt templates with one '{{}}' each: {exc}"
    return ""


def _files(value: Any) -> str:
    if not isinstance(value, dict) or not value:
        return f"a non-empty object {{file name: sha256}}, got {type(value).__name__}"
    for name, digest in value.items():
        try:
            check_file_name(name)
        except SchemaError as exc:
            return str(exc)
        if not isinstance(digest, str) or not _SHA256.match(digest):
            return f"64 lower-case hex digits (sha256) for {name!r}, got {digest!r}"
    return ""


def _test_scale(value: Any) -> str:
    side = _int(1, 1 << 16)
    if not isinstance(value, list) or len(value) != 2 or side(value[1]) or (value[0] is not None and side(value[0])):
        return f"[long_max or null, short] with sides in [1, 65536], got {value!r}"
    return ""


def _postprocess(value: Any) -> str:
    if not isinstance(value, dict):
        return f"an object, got {type(value).__name__}"
    if value.get("activation", "sigmoid") not in ("sigmoid", "softmax", "maps"):
        return f"activation 'sigmoid' or 'softmax' (or 'maps': class maps per segment), got {value.get('activation')!r}"
    checks: Dict[str, Callable[[Any], str]] = {
        "logit_scale": _number(positive=True, high=MAX_LOGIT_SCALE),
        "background_threshold": _optional(_number(low=-1e6, high=1e6)),
        "area_threshold": _optional(_number(low=0.0, high=1.0)),
        "short_side": _optional(_int(1, 1 << 16)),
        "background_label": _optional(_text(200)),
        "logit_scale_in_head": _flag,
        "background_threshold_in_head": _flag,
        "clamp_background_threshold": _flag,
        "affinity_product": _flag,
        "topk_classes": _int(1, 1 << 16),
        "score_mode": _name,
        "assignment_maps": _name,
        "method": _name,
    }
    for key, check in checks.items():
        error = check(value[key]) if key in value else ""
        if error:
            return f"{key}: {error}"
    synonyms = value.get("synonyms", "mean")
    if synonyms not in ("mean", "max"):
        return f"synonyms: 'mean' or 'max', got {synonyms!r}"
    if synonyms == "max" and value.get("activation", "sigmoid") != "softmax":
        return "synonyms: 'max' (the max over a class's names' probabilities) needs activation 'softmax'"
    table = value.get("vocabulary_settings", {})
    if not isinstance(table, dict) or not all(
        isinstance(v, dict) and set(v) <= {"logit_scale", "background_threshold", "area_threshold"}
        for v in table.values()
    ):
        return "vocabulary_settings: an object of {vocabulary: {logit_scale, background_threshold, area_threshold}}"
    return ""


def _io(value: Any) -> str:
    """The per-graph I/O table (``spec.default_graph_io``): roles -> non-empty, distinct input and output tensor
    names, and dynamic axes ``{tensor: {"axis": label}}`` of those tensors (axes 0..7). Which roles must be there
    depends on the pipeline (checked in :func:`check_meta_schema`)."""
    if not isinstance(value, dict) or not value:
        return f"a non-empty object {{graph role: inputs, outputs, dynamic_axes}}, got {value!r:.80}"
    for role, entry in value.items():
        if not isinstance(entry, dict):
            return f"{role!r}: an object with 'inputs' and 'outputs' lists of names"
        names = []
        for key in ("inputs", "outputs"):
            listed = entry.get(key)
            if not isinstance(listed, list) or not listed or any(_name(v) for v in listed):
                return f"{role!r}: {key!r} must be a non-empty list of tensor names, got {listed!r:.80}"
            names += listed
        if len(set(names)) != len(names):
            return f"{role!r}: a tensor name appears twice among {names}"
        axes = entry.get("dynamic_axes", {})
        if not isinstance(axes, dict):
            return f"{role!r}: 'dynamic_axes' must be an object"
        for tensor, spec in axes.items():
            if tensor not in names:
                return f"{role!r}: dynamic_axes names {tensor!r}, which is neither an input nor an output"
            if not isinstance(spec, dict) or any(
                str(axis) not in "01234567" or len(str(axis)) != 1 or _name(label) for axis, label in spec.items()
            ):
                return f"{role!r}: dynamic_axes of {tensor!r} must map axis numbers 0..7 to names, got {spec!r:.80}"
    return ""


TWO_STAGE_FUSIONS = ("ensemble", "ensemble_all", "clip_only", "none")
TWO_STAGE_CLIP_STYLES = ("cropmask", "crop", "mask")
# The test-time resize of the two-stage pipeline (optional field ``resize``; absent = the first): PIL's bilinear
# filter on the uint8 image, as detectron2's ResizeShortestEdge (zsseg_rt.pipeline.resize).
TWO_STAGE_RESIZES = ("pil_bilinear",)


def _fields_error(value: Dict[str, Any], checks: Dict[str, Callable[[Any], str]]) -> str:
    """The first error of an object section: a key of ``checks`` it lacks, else the first key whose check fails."""
    missing = [key for key in checks if key not in value]
    if missing:
        return f"an object with {sorted(checks)}; lacks {missing}"
    for key, check in checks.items():
        error = check(value[key])
        if error:
            return f"{key}: {error}"
    return ""


def _two_stage(value: Any) -> str:
    """The ``two_stage`` section of a two-stage pipeline bundle (``zsseg_rt.runtime.pipelines.two_stage`` reads
    every field)."""
    if not isinstance(value, dict):
        return f"an object, got {type(value).__name__}"
    checks: Dict[str, Callable[[Any], str]] = {
        "clip_templates": _templates,
        "clip_logit_scale": _number(positive=True, high=MAX_LOGIT_SCALE),
        "clip_image_size": _int(1, MAX_SIDE),
        "clip_mean": _triple(positive=False),
        "clip_std": _triple(positive=True, low=MIN_STD / 255.0, high=MAX_STD),
        "fusion": lambda v: "" if v in TWO_STAGE_FUSIONS else f"one of {TWO_STAGE_FUSIONS}, got {v!r}",
        "clip_cls_style": lambda v: "" if v in TWO_STAGE_CLIP_STYLES else f"one of {TWO_STAGE_CLIP_STYLES}, got {v!r}",
        "ensemble_lambda": lambda v: _number()(v) or ("" if 0.0 <= v <= 1.0 else f"a number in [0, 1], got {v}"),
        "size_divisibility": _int(1, 1024),
        "test_short_side": _int(1, 1 << 16),
        "test_max_size": _int(1, 1 << 16),
    }
    error = _fields_error(value, checks)
    if error:
        return error
    if value.get("resize", TWO_STAGE_RESIZES[0]) not in TWO_STAGE_RESIZES:
        return (
            f"resize: one of {TWO_STAGE_RESIZES}, got {value['resize']!r} (a bundle from a newer zsseg_rt: "
            "upgrade the package)"
        )
    if value["test_max_size"] < value["test_short_side"]:
        return f"test_max_size >= test_short_side, got {value['test_max_size']} < {value['test_short_side']}"
    return ""


def _whole_image(value: Any) -> str:
    """The ``whole_image`` section: the image graph takes any input size (its dynamic axes in ``io``) and whole-image
    inference is how the bundle's method runs (``spec.WholeImage``; read by the windowed pipeline)."""
    if not isinstance(value, dict):
        return f"an object, got {type(value).__name__}"
    checks: Dict[str, Callable[[Any], str]] = {
        "fit": lambda v: "" if v in WholeImage.FITS else f"one of {WholeImage.FITS}, got {v!r}",
        "logits_to": lambda v: "" if v in WholeImage.LOGITS_TO else f"one of {WholeImage.LOGITS_TO}, got {v!r}",
        "max_side": _int(1, MAX_SIDE),
        "max_short_side": _int(1, MAX_SIDE),
        "default": lambda v: "" if v in WholeImage.INFERENCE else f"one of {WholeImage.INFERENCE}, got {v!r}",
        "encoder_bytes_per_token": _int(0, 1 << 40),
        "encoder_bytes_per_token_pair": _int(0, 1 << 40),
    }
    error = _fields_error(value, checks)
    if error:
        return error
    if value["max_short_side"] > value["max_side"]:
        return f"max_short_side <= max_side, got {value['max_short_side']} > {value['max_side']}"
    vocabularies = value.get("vocabularies", {})
    if not isinstance(vocabularies, dict) or any(v not in WholeImage.INFERENCE for v in vocabularies.values()):
        return f"vocabularies: an object of {{vocabulary: one of {WholeImage.INFERENCE}}}, got {vocabularies!r:.80}"
    return ""


def _architecture(value: Any) -> str:
    """The model description: an object whose ``family`` (information, not dispatch) is a name and whose
    ``config.num_queries`` (read by the two-stage pipeline) is a count."""
    if not isinstance(value, dict):
        return f"an object, got {type(value).__name__}"
    if "family" in value and _name(value["family"]):
        return f"family: {_name(value['family'])}"
    config = value.get("config", {})
    if not isinstance(config, dict):
        return f"config: an object, got {type(config).__name__}"
    if "num_queries" in config and _int(1, 10000)(config["num_queries"]):
        return f"config.num_queries: {_int(1, 10000)(config['num_queries'])}"
    return ""


REQUIRED: Dict[str, Callable[[Any], str]] = {
    "format_version": _int(1, 1 << 16),
    "architecture": _architecture,
    "image_size": _int(1, MAX_SIDE),
    "patch_size": _int(1, MAX_SIDE),
    "embed_dim": _int(1, 1 << 16),
    "context_length": _int(16, 4096),  # the templates' prompts must fit (CLIP: 77)
    "mean": _triple(positive=False, low=0.0, high=255.0),
    "std": _triple(positive=True, low=MIN_STD, high=MAX_STD),
    "templates": _templates,
    "calibration_bias": _number(low=-1.0, high=1.0),  # subtracted from a sigmoid/softmax score in [0, 1]
    "seen_class_names": _strings(),
    "training_class_names": _strings(),
    "max_classes": _int(1, 1 << 16),
    "crop_size": _int(1, MAX_SIDE),
    "stride": _int(1, MAX_SIDE),
    "opset": _int(1, 1000),
    "files": _files,
}
OPTIONAL: Dict[str, Callable[[Any], str]] = {
    "test_scale": _test_scale,
    "postprocess": _postprocess,
    "io": _io,
    "pipeline": lambda v: "" if v in PIPELINE_GRAPH_FILES else f"one of {sorted(PIPELINE_GRAPH_FILES)}, got {v!r}",
    "evaluation_protocol": lambda v: "" if isinstance(v, str) and v.isidentifier() else f"a name, got {v!r}",
    "two_stage": _two_stage,
    "whole_image": _whole_image,
    "source_checkpoint": _optional(lambda v: "" if isinstance(v, str) else f"a path string, got {v!r}"),
    "weights": check_weights,
    META_HASH_FIELD: lambda v: "" if isinstance(v, str) and _SHA256.match(v) else f"64 hex digits, got {v!r}",
}


def check_meta_schema(raw: Any) -> List[str]:
    """All schema violations of a parsed meta.json (empty when it is valid), each ``"field: expected ..."``."""
    if not isinstance(raw, dict):
        return [f"meta.json must hold a JSON object, got {type(raw).__name__}"]
    raw = migrate_meta(raw)  # an older bundle's meta.json is checked as what it means now
    missing = [key for key in REQUIRED if key not in raw]
    if missing:
        return [f"lacks required fields {missing}"]
    problems = [f"{key}: expected {error}" for key, check in REQUIRED.items() if (error := check(raw[key]))]
    problems += [
        f"{key}: expected {error}" for key, check in OPTIONAL.items() if key in raw and (error := check(raw[key]))
    ]
    if not problems:
        problems += _cross_field_problems(raw)
    return problems


def _cross_field_problems(raw: Dict[str, Any]) -> List[str]:
    """Violations that involve several fields (each field already has its type and range)."""
    problems = []
    if raw["image_size"] % raw["patch_size"]:
        problems.append(f"patch_size: {raw['patch_size']} does not divide image_size {raw['image_size']}")
    elif raw["image_size"] // raw["patch_size"] > MAX_GRID:
        problems.append(
            f"patch_size: image_size {raw['image_size']} / patch_size {raw['patch_size']} is a patch grid side of "
            f"{raw['image_size'] // raw['patch_size']}, more than {MAX_GRID}"
        )
    if raw["crop_size"] > raw["image_size"]:
        problems.append(f"crop_size: {raw['crop_size']} is larger than the graphs' input image_size")
    if not -(-raw["crop_size"] // 4) <= raw["stride"] <= raw["crop_size"]:
        problems.append(
            f"stride: expected between crop_size / 4 and crop_size ({-(-raw['crop_size'] // 4)}..{raw['crop_size']}: "
            f"windows overlap at most 3/4 and leave no gap), got {raw['stride']}"
        )
    pipeline = raw.get("pipeline", "windowed")
    if "io" in raw and pipeline in PIPELINE_GRAPH_FILES and set(raw["io"]) != set(PIPELINE_GRAPH_FILES[pipeline]):
        problems.append(
            f"io: a bundle of the {pipeline!r} pipeline describes the graphs {sorted(PIPELINE_GRAPH_FILES[pipeline])}, "
            f"got {sorted(raw['io'])}"
        )
    if pipeline == "two_stage" and "two_stage" not in raw:
        problems.append("two_stage: a bundle of the two-stage pipeline (pipeline 'two_stage') needs this section")
    if "whole_image" in raw:
        problems += _whole_image_problems(raw, pipeline)
    return problems


def _whole_image_problems(raw: Dict[str, Any], pipeline: str) -> List[str]:
    """A ``whole_image`` section needs a windowed bundle whose image graph takes any height and width, sides that
    are multiples of the patch and at least the graph size (windows run through the same graph)."""
    whole, patch = raw["whole_image"], raw["patch_size"]
    if pipeline != "windowed":
        return [f"whole_image: only bundles of the windowed pipeline run whole images, this one is {pipeline!r}"]
    axes = graph_io(raw).get("image", {}).get("dynamic_axes", {}).get(Names.IMAGE, {})
    if axes.get(2) != Names.HEIGHT or axes.get(3) != Names.WIDTH:
        return [
            f"whole_image: the image graph must take any size (io image axes 2, 3: {Names.HEIGHT!r}, "
            f"{Names.WIDTH!r}), got {axes}"
        ]
    problems = []
    for key in ("max_side", "max_short_side"):
        if whole[key] % patch or whole[key] < raw["image_size"]:
            problems.append(
                f"whole_image.{key}: a multiple of patch_size {patch} and at least image_size {raw['image_size']} "
                f"(windows run through the same graph), got {whole[key]}"
            )
    return problems
