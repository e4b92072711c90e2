"""ZeroSeg's evaluation protocol, the torch-free part: background kept as class 0, a background threshold per
dataset (paper: VOC 0.95, Context 0.05, COCO-Object 0.35; GroupViT's configs: 0.95 / 0.35 / 0.95), and the
evaluation of an ``Engine`` on a ZeroSeg bundle, which works in a runtime-only install (no torch). The PyTorch
student's evaluation is :mod:`zsseg_rt.models.zeroseg.evaluate`, which uses the same protocol."""

from __future__ import annotations

import copy
from typing import Any, Callable, Dict, Optional

import numpy as np

from zsseg_rt.eval.metrics import ConfusionMatrix, summarize

__all__ = [
    "BACKGROUND_THRESHOLD_PROTOCOL",
    "DATASET_BACKGROUND_THRESHOLDS",
    "GROUPVIT_BACKGROUND_THRESHOLDS",
    "PROTOCOL",
    "THRESHOLD_TABLES",
    "protocol_threshold",
    "with_background",
    "evaluate_zeroseg_bundle",
    "run_protocol",
]

BACKGROUND_THRESHOLD_PROTOCOL = "background_threshold"  # the protocol's name in bundles' meta.json (the registry)

# paper §4.2 (following GroupViT's configs): background threshold per evaluation dataset
DATASET_BACKGROUND_THRESHOLDS = {"voc": 0.95, "context": 0.05, "coco_object": 0.35}
# GroupViT's own dataset configs (segmentation/configs/_base_/datasets/*.py) use other values for Context and
# COCO; ``zsseg eval --thresholds groupvit`` selects them (an option: the paper's table is the default)
GROUPVIT_BACKGROUND_THRESHOLDS = {"voc": 0.95, "context": 0.35, "coco_object": 0.95}

# dataset type of zsseg_rt.data.build_dataset -> (threshold key, number of classes with background)
PROTOCOL = {"voc": ("voc", 21), "context59": ("context", 60), "coco_object": ("coco_object", 81)}
THRESHOLD_TABLES = {"paper": DATASET_BACKGROUND_THRESHOLDS, "groupvit": GROUPVIT_BACKGROUND_THRESHOLDS}


def protocol_threshold(dataset_name: str, table: str = "paper") -> Optional[float]:
    """The background threshold of a dataset (by its ``SegmentationDataset.name``, e.g. ``"voc_val"``) in
    ``table`` ("paper" or "groupvit"), or None for a dataset outside the protocol."""
    if table not in THRESHOLD_TABLES:
        raise ValueError(f"threshold table must be one of {sorted(THRESHOLD_TABLES)}, got {table!r}")
    for kind in sorted(PROTOCOL, key=len, reverse=True):
        if dataset_name == kind or dataset_name.startswith(kind + "_"):
            return float(THRESHOLD_TABLES[table][PROTOCOL[kind][0]])
    return None


def with_background(dataset):
    """A shallow copy of ``dataset`` that keeps background as class 0 (``reduce_zero_label`` off) and names it,
    so labels 0..C are in range (C + 1 classes)."""
    from zsseg_rt.data.splits import ClassSplit

    data = copy.copy(dataset)
    if not dataset.reduce_zero_label:
        raise ValueError(
            f"{dataset.name}: ZeroSeg's protocol needs a dataset whose label 0 is background (VOC, Context-59, "
            "COCO-Object read with reduce_zero_label)"
        )
    data.reduce_zero_label = False
    data.split = ClassSplit(dataset.split.name + "+background", ("background",) + tuple(dataset.class_names), ())
    return data


def run_protocol(
    segment: Callable[[np.ndarray], Any],
    dataset,
    names,
    limit: Optional[int],
    progress: bool,
    extra: Dict[str, Any],
) -> Dict[str, Any]:
    """The protocol's loop: ``segment(rgb) -> labels`` (0 = background) over ``with_background(dataset)``;
    metrics in :func:`zsseg_rt.eval.metrics.summarize`'s form plus ``extra``."""
    data = with_background(dataset)
    cm = ConfusionMatrix(len(names) + 1, ignore_index=255)
    n = len(data) if limit is None else min(len(data), int(limit))
    done = 0
    indices = range(n)
    if progress:
        try:
            from tqdm import tqdm

            indices = tqdm(indices, desc=f"zeroseg eval {dataset.name}", dynamic_ncols=True)
        except ImportError:  # a runtime-only install has no tqdm: no progress bar
            pass
    for i in indices:
        sample = data.load_safe(i)
        if sample is None:
            continue
        rgb, gt = sample
        cm.update(np.asarray(segment(rgb)), gt)
        done += 1
    out = summarize(cm, ["background"] + list(names), ())
    out.update(
        {
            "images": done,
            "skipped": len(data.skipped),
            "skipped_files": list(data.skipped.values())[:20],
            "dataset": dataset.name,
            "protocol": "ZeroSeg / GroupViT (background + classes, threshold)",
        }
    )
    out.update(extra)
    return out


def evaluate_zeroseg_bundle(
    engine,
    dataset,
    text: Optional[np.ndarray] = None,
    background_threshold: Optional[float] = None,
    thresholds: str = "paper",
    limit: Optional[int] = None,
    progress: bool = True,
) -> Dict[str, Any]:
    """``zsseg eval`` of an ``Engine`` on a ZeroSeg bundle (no torch needed). The bundle's threshold is part of its
    head graph: a different requested one (``background_threshold``, or the dataset's value in ``thresholds``) is
    refused."""
    with_background(dataset)  # refuses a dataset outside the protocol before any work
    names = list(dataset.class_names)
    thr = background_threshold
    if thr is None:
        thr = protocol_threshold(dataset.name, thresholds)
    baked = float(engine.meta.postprocess["background_threshold"])
    if thr is not None and abs(float(thr) - baked) > 1e-9:
        raise ValueError(
            f"this ZeroSeg bundle paints background below {baked} (fixed in its head graph); {dataset.name} asks "
            f"for {thr}: export a bundle with that threshold (zsseg export --background-threshold {thr}) or pass "
            f"--background-threshold {baked}"
        )
    if text is not None:
        engine.set_text_embeddings(names, text)
    else:
        engine.set_classes(names)

    def segment(rgb):
        return engine(rgb, color_order="rgb").labels

    extra = {"mode": "slide", "source": "bundle", "background_threshold": baked}
    return run_protocol(segment, dataset, names, limit, progress, extra)
