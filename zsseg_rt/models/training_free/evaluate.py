"""The published evaluation protocol of the training-free methods (SCLIP, NACLIP, ClearCLIP, SC-CLIP, MaskCLIP):
one table of their official per-dataset settings (``settings.json``: slide crop/stride, test short side, logit
scale, ``prob_thd``, ``area_thd``, PAMR, background), and how ``zsseg eval`` applies it to a training-free bundle's
Engine (through the family's ``evaluation_settings`` / ``apply_evaluation_settings``, :mod:`.family`). No torch.

What a bundle cannot follow is reported, never hidden: a dataset whose official setting is whole-image inference
(NACLIP on VOC, MaskCLIP everywhere) runs whole images when the bundle's image graph takes any size (meta.json
``whole_image``, every bundle of those methods exported since), else the bundle's windows, listed in ``deviations``;
another crop (ClearCLIP on Cityscapes) runs with the bundle's windows and is listed too. The class names are the
official class file's (the named vocabulary of the benchmark, ``zsseg_rt/vocabulary/named``: synonyms and all).
The dataset readers here evaluate VOC, Context-59, COCO-Stuff and ADE20K without background, and COCO-Object with
its background ignored (no official training-free entry for that); the background benchmarks (VOC21, Context60,
COCO-Object) run in ``zsseg segment --classes voc21`` etc., with the settings recorded in the bundle
(:func:`vocabulary_settings`).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

__all__ = [
    "SETTINGS_FILE",
    "OfficialSettings",
    "load_settings_table",
    "official_settings",
    "dataset_key",
    "apply_official_settings",
    "bundle_deviations",
    "settings_record",
    "apply_record",
    "CHOICES",
    "VOCABULARY_KEYS",
    "vocabulary_settings",
    "default_inference",
    "vocabulary_inference",
    "official_test_scales",
]

CHOICES = ("official", "bundle")  # zsseg eval --settings

SETTINGS_FILE = Path(__file__).with_name("settings.json")
# Dataset readers (SegmentationDataset.name prefixes) -> the table's dataset keys. COCO-Object is absent on
# purpose: the reader reduces background to ignore, while the training-free protocol predicts it.
_READER_KEYS: Tuple[Tuple[str, str], ...] = (
    ("voc_", "voc20"),
    ("context59_", "context59"),
    ("coco_stuff_", "coco_stuff164k"),
    ("ade150", "ade20k"),
)
# Named vocabularies (zsseg_rt/vocabulary/named, the official class files) -> the table's dataset keys.
VOCABULARY_KEYS: Dict[str, str] = {
    "voc21": "voc21",
    "voc20": "voc20",
    "context60": "context60",
    "context59": "context59",
    "coco_object": "coco_object",
    "coco_stuff": "coco_stuff164k",
    "cityscapes": "cityscapes",
    "ade20k": "ade20k",
}


@dataclass(frozen=True)
class OfficialSettings:
    """One method's official test settings on one dataset (see the table's ``about``)."""

    method: str
    dataset: str
    crop: Optional[int]  # None: whole-image inference
    stride: Optional[int]
    short_side: int
    logit_scale: float
    prob_thd: float
    area_thd: Optional[float]
    pamr_iterations: int
    pamr_dilations: Tuple[int, ...]
    background: bool
    source: str  # "<repository>@<commit>:<file>"
    long_side: int = 2048


def load_settings_table() -> Dict[str, Any]:
    with open(SETTINGS_FILE, "r", encoding="utf-8") as handle:
        return json.load(handle)


def official_settings(method: str, dataset: str) -> OfficialSettings:
    """The official settings of ``method`` on ``dataset`` (table keys). Raises KeyError naming what exists."""
    methods = load_settings_table()["methods"]
    if method not in methods:
        raise KeyError(f"no official settings for training-free method {method!r}; known: {sorted(methods)}")
    entry = methods[method]
    if dataset not in entry["datasets"]:
        raise KeyError(f"{method} has no official setting for dataset {dataset!r}; it has: {sorted(entry['datasets'])}")
    row = dict(entry["datasets"][dataset])
    source = f"{entry['repository']}@{entry['commit'][:7]}:{row.pop('source')}"
    row["pamr_dilations"] = tuple(int(d) for d in row["pamr_dilations"])
    return OfficialSettings(method=method, dataset=dataset, source=source, **row)


def dataset_key(dataset_name: str) -> Optional[str]:
    """The table key of a dataset reader's name (``"voc_val"`` -> ``"voc20"``), or None when the protocol has no
    matching benchmark."""
    for prefix, key in _READER_KEYS:
        if dataset_name.startswith(prefix):
            return key
    return None


def apply_official_settings(engine, settings: OfficialSettings) -> Callable[[], None]:
    """Make a training-free bundle's Engine follow ``settings``: its post-processor (logit scale relative to the
    head's, ``prob_thd``, ``area_thd``, PAMR) and its test rescale (the windowed pipeline's ``test_scale``).

    Returns:
        a function that restores the Engine's own post-processor and test rescale.
    """
    post = engine.postprocessor
    options = engine.meta.postprocess
    if post is None or post.activation != "softmax":
        activation = getattr(post, "activation", None)
        raise ValueError(f"official training-free settings apply to softmax bundles, not {activation!r}")
    head_scale = float(options.get("logit_scale", 1.0)) if options.get("logit_scale_in_head", True) else 1.0
    saved = (post, list(engine.pipeline.test_scale), getattr(engine.pipeline, "inference", None))
    engine.postprocessor = dataclasses.replace(
        post,
        logit_scale=float(settings.logit_scale) / head_scale,
        background_threshold=float(settings.prob_thd) if settings.prob_thd > 0 else None,
        area_threshold=None if settings.area_thd is None else float(settings.area_thd),
        pamr_iterations=int(settings.pamr_iterations),
        pamr_dilations=tuple(settings.pamr_dilations),
    )
    engine.pipeline.test_scale = [int(settings.long_side), int(settings.short_side)]
    if saved[2] is not None:  # the official test mode, where the bundle can run it (bundle_deviations says otherwise)
        whole = settings.crop is None and engine.meta.whole_image is not None
        engine.pipeline.inference = "whole" if whole else "windows"

    def restore() -> None:
        engine.postprocessor, engine.pipeline.test_scale = saved[0], list(saved[1])
        if saved[2] is not None:
            engine.pipeline.inference = saved[2]

    return restore


def bundle_deviations(meta, settings: OfficialSettings) -> List[str]:
    """What a bundle (``BundleMeta``) cannot follow of ``settings``, as sentences."""
    deviations = []
    crop, stride = int(meta.crop_size), int(meta.stride)
    whole = getattr(meta, "whole_image", None)
    if settings.crop is None and whole is None:
        deviations.append(
            f"official whole-image inference; the bundle's fixed-size image graph runs {crop}/{stride} windows "
            "(re-export it: bundles of this method take any size since whole-image inference exists)"
        )
    elif settings.crop is None:
        patch = int(meta.patch_size)
        long, short = settings.long_side, settings.short_side
        fitted = (-(-long // patch) * patch, -(-short // patch) * patch)
        if fitted[0] > whole["max_side"] or min(fitted) > whole["max_short_side"]:
            deviations.append(
                f"official whole-image inference at test scale ({long}, {short}); the bundle's image graph takes "
                f"sides up to {whole['max_side']} (the shorter up to {whole['max_short_side']}): larger images are "
                "refused"
            )
    elif (settings.crop, settings.stride) != (crop, stride):
        deviations.append(
            f"official windows {settings.crop}/{settings.stride}; the bundle's are {crop}/{stride} "
            f"(export a bundle with image_size={settings.crop}, stride={settings.stride})"
        )
    if settings.background:
        deviations.append(
            "the official protocol predicts a background class (its class file's background names, prob_thd); the "
            "dataset readers here have none to score it against (the runtime applies it: the named vocabulary, "
            "e.g. zsseg segment --classes voc21)"
        )
    return deviations


def settings_record(meta, dataset_name: str, choice: str = "official") -> Dict[str, Any]:
    """The settings ``zsseg eval`` runs a training-free bundle (its ``BundleMeta``) with on ``dataset_name``.

    Args:
        choice: "official" (the method's official settings for the dataset, when the table has them) or "bundle"
            (the bundle's own).
    Returns:
        ``{"method", "dataset_key", "settings": dict | "bundle", "summary", "deviations" | "reason"}``.
    """
    if choice not in CHOICES:
        raise ValueError(f"settings must be one of {CHOICES}, got {choice!r}")
    method = str(meta.postprocess.get("method", ""))
    key = dataset_key(dataset_name)
    record: Dict[str, Any] = {"method": method, "dataset_key": key}
    if choice == "bundle":
        reason = "the bundle's own settings asked for"
    elif key is None:
        reason = f"no official training-free benchmark matches {dataset_name!r}"
    else:
        try:
            settings = official_settings(method, key)
        except KeyError as exc:
            reason = str(exc.args[0])
        else:
            shown = ", ".join(
                f"{name} {getattr(settings, name)}"
                for name in ("short_side", "logit_scale", "prob_thd", "area_thd", "pamr_iterations", "source")
            )
            deviations = bundle_deviations(meta, settings)
            vocabulary = {v: k for k, v in VOCABULARY_KEYS.items()}[key]
            summary = f"official {method} settings for {key}: {shown}; class names: named vocabulary {vocabulary}"
            return dict(
                record, settings=describe(settings), summary=summary, deviations=deviations, vocabulary=vocabulary
            )
    return dict(record, settings="bundle", summary=f"{method}: the bundle's own settings ({reason})", reason=reason)


def apply_record(engine, record: Dict[str, Any]) -> Callable[[], None]:
    """Apply a :func:`settings_record` to the Engine it was made for; returns the function that restores it."""
    settings = record.get("settings")
    if not isinstance(settings, dict):
        return lambda: None
    return apply_official_settings(engine, official_settings(str(settings["method"]), str(settings["dataset"])))


def describe(settings: OfficialSettings) -> Dict[str, Any]:
    """The settings as a JSON-ready dict (recorded in the metrics)."""
    out = dataclasses.asdict(settings)
    out["pamr_dilations"] = list(settings.pamr_dilations)
    return out


def vocabulary_settings(method: str) -> Dict[str, Dict[str, Any]]:
    """What a bundle of ``method`` records for the named vocabularies (meta.json ``postprocess.vocabulary_settings``,
    applied by the runtime when that vocabulary is set): per vocabulary, the method's official ``logit_scale``
    (the method's, not relative to the head), ``background_threshold`` (``prob_thd``; None when 0) and
    ``area_threshold`` for that benchmark. Vocabularies without an official setting are left out."""
    out: Dict[str, Dict[str, Any]] = {}
    for vocabulary, key in VOCABULARY_KEYS.items():
        try:
            s = official_settings(method, key)
        except KeyError:
            continue
        out[vocabulary] = {
            "logit_scale": float(s.logit_scale),
            "background_threshold": float(s.prob_thd) if s.prob_thd > 0 else None,
            "area_threshold": None if s.area_thd is None else float(s.area_thd),
        }
    return out


def default_inference(method: str) -> str:
    """The method's test mode where a dataset has no setting of its own (settings.json ``default_mode``): "whole"
    (MaskCLIP) or "windows" (the others)."""
    methods = load_settings_table()["methods"]
    if method not in methods:
        raise KeyError(f"no official settings for training-free method {method!r}; known: {sorted(methods)}")
    return "whole" if methods[method]["default_mode"] == "whole" else "windows"


def vocabulary_inference(method: str) -> Dict[str, str]:
    """Per named vocabulary with an official setting of ``method``: "whole" (its official config runs whole-image
    inference: crop null) or "windows" (recorded in a bundle's ``whole_image.vocabularies``)."""
    out: Dict[str, str] = {}
    for vocabulary, key in VOCABULARY_KEYS.items():
        try:
            s = official_settings(method, key)
        except KeyError:
            continue
        out[vocabulary] = "whole" if s.crop is None else "windows"
    return out


def official_test_scales(method: str) -> List[Tuple[int, int]]:
    """The keep-ratio test scales ``(long, short)`` of ``method``'s official settings, one per dataset."""
    entry = load_settings_table()["methods"].get(method, {"datasets": {}})
    return [(int(row.get("long_side", 2048)), int(row["short_side"])) for row in dict(entry["datasets"]).values()]
