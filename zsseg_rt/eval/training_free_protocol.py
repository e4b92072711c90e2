"""The published evaluation protocol of the training-free methods (SCLIP, NACLIP, ClearCLIP, SC-CLIP, MaskCLIP):
one table of their official per-dataset settings (``training_free_settings.json``: slide crop/stride, test
short side, logit scale, ``prob_thd``, ``area_thd``, PAMR, background), and how ``zsseg eval`` applies it to a
training-free bundle's Engine. No torch.

What a bundle cannot change is reported, never hidden: its fixed encoder input is the sliding-window crop, so a
dataset whose official setting is another crop or whole-image inference (NACLIP on VOC, MaskCLIP, ClearCLIP on
Cityscapes) runs with the bundle's windows and the difference is listed in ``deviations``. Datasets with a
background class (VOC21, Context60, COCO-Object) need their official background names (synonym lists), which the
vocabulary does not support yet: the dataset readers here evaluate VOC, Context-59, COCO-Stuff and ADE20K without
background, and COCO-Object with its background ignored (no official training-free entry for that).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

__all__ = [
    "SETTINGS_FILE",
    "OfficialSettings",
    "load_settings_table",
    "official_settings",
    "dataset_key",
    "apply_official_settings",
    "bundle_deviations",
    "protocol_record",
]

SETTINGS_FILE = Path(__file__).with_name("training_free_settings.json")
# Dataset readers (SegmentationDataset.name prefixes) -> the table's dataset keys. COCO-Object is absent on
# purpose: the reader reduces background to ignore, while the training-free protocol predicts it.
_READER_KEYS: Tuple[Tuple[str, str], ...] = (
    ("voc_", "voc20"),
    ("context59_", "context59"),
    ("coco_stuff_", "coco_stuff164k"),
    ("ade150", "ade20k"),
)


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


def apply_official_settings(engine, settings: OfficialSettings) -> List[str]:
    """Make a training-free bundle's Engine follow ``settings``: its post-processor (logit scale relative to the
    head's, ``prob_thd``, ``area_thd``, PAMR) and its test rescale (``Engine.test_scale``).

    Returns:
        the deviations the bundle cannot avoid (another crop or stride, whole-image inference), as sentences.
    """
    post = engine.postprocessor
    options = engine.meta.postprocess
    if post.activation != "softmax":
        raise ValueError(f"official training-free settings apply to softmax bundles, not {post.activation!r}")
    head_scale = float(options.get("logit_scale", 1.0)) if options.get("logit_scale_in_head", True) else 1.0
    engine.postprocessor = dataclasses.replace(
        post,
        logit_scale=float(settings.logit_scale) / head_scale,
        background_threshold=float(settings.prob_thd) if settings.prob_thd > 0 else None,
        area_threshold=None if settings.area_thd is None else float(settings.area_thd),
        pamr_iterations=int(settings.pamr_iterations),
        pamr_dilations=tuple(settings.pamr_dilations),
    )
    engine.test_scale = [int(settings.long_side), int(settings.short_side)]
    return bundle_deviations(engine.meta, settings)


def bundle_deviations(meta, settings: OfficialSettings) -> List[str]:
    """What a bundle (``BundleMeta``) cannot follow of ``settings``, as sentences."""
    deviations = []
    crop, stride = int(meta.crop_size), int(meta.stride)
    if settings.crop is None:
        deviations.append(f"official whole-image inference; the bundle's fixed input runs {crop}/{stride} windows")
    elif (settings.crop, settings.stride) != (crop, stride):
        deviations.append(
            f"official windows {settings.crop}/{settings.stride}; the bundle's are {crop}/{stride} "
            f"(export a bundle with image_size={settings.crop}, stride={settings.stride})"
        )
    if settings.background:
        deviations.append("the official protocol predicts a background class with its own names (not supported yet)")
    return deviations


def protocol_record(engine, dataset_name: str, protocol: str = "official", apply: bool = True) -> Optional[dict]:
    """For a training-free bundle's Engine (or anything with its ``meta``): the settings ``zsseg eval`` uses on
    ``dataset_name``, applied to ``engine`` when ``apply`` and the protocol is "official"; None for other bundles.

    Returns:
        ``{"method", "dataset_key", "settings": dict | "bundle", "deviations" | "reason"}``.
    """
    meta = getattr(engine, "meta", None)
    if meta is None or getattr(meta, "family", "") != "training_free":
        return None
    if protocol not in ("official", "bundle"):
        raise ValueError(f"protocol must be 'official' or 'bundle', got {protocol!r}")
    method = str(meta.postprocess.get("method", ""))
    key = dataset_key(dataset_name)
    record: Dict[str, Any] = {"method": method, "dataset_key": key}
    if protocol == "bundle":
        return dict(record, settings="bundle", reason="protocol='bundle' asked for")
    if key is None:
        return dict(record, settings="bundle", reason=f"no official training-free benchmark matches {dataset_name!r}")
    try:
        settings = official_settings(method, key)
    except KeyError as exc:
        return dict(record, settings="bundle", reason=str(exc.args[0]))
    deviations = apply_official_settings(engine, settings) if apply else bundle_deviations(meta, settings)
    deviations.append("class names: the dataset reader's, one name per class (the official files list synonyms)")
    return dict(record, settings=describe(settings), deviations=deviations)


def describe(settings: OfficialSettings) -> Dict[str, Any]:
    """The settings as a JSON-ready dict (recorded in the metrics)."""
    out = dataclasses.asdict(settings)
    out["pamr_dilations"] = list(settings.pamr_dilations)
    return out
