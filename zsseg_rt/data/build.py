"""``build_dataset``: any dataset from a spec dict (the readers of :mod:`.datasets` and the synthetic one)."""

from __future__ import annotations

import os
from typing import Union

from .datasets import DATASET_TYPES, SegmentationDataset
from .synthetic import synthetic_dataset

__all__ = ["build_dataset"]


def build_dataset(spec: Union[dict, SegmentationDataset], **overrides) -> SegmentationDataset:
    """Dataset from a spec ``{"type": "voc", "root": ..., "split": "val", "unseen": [...], "on_corrupt": ...}``.

    ``type`` "synthetic" builds an in-memory :func:`zsseg_rt.data.synthetic.synthetic_dataset` (tests, demos).
    """
    if isinstance(spec, SegmentationDataset):
        return spec
    spec = dict(spec, **{k: v for k, v in overrides.items() if v is not None})
    kind = spec.pop("type", None)
    if kind == "synthetic":
        try:
            return synthetic_dataset(**spec)
        except TypeError as exc:
            raise ValueError(f"dataset spec for 'synthetic': {exc}") from exc
    if kind not in DATASET_TYPES:
        raise ValueError(f"dataset type {kind!r} unknown; known: {sorted(DATASET_TYPES) + ['synthetic']}")
    if "root" not in spec:
        raise ValueError(f"dataset spec for {kind!r} needs 'root' (the dataset directory)")
    root = os.path.expanduser(str(spec.pop("root")))
    fn = DATASET_TYPES[kind]
    import inspect

    allowed = set(inspect.signature(fn).parameters) | {"unseen", "on_corrupt", "on_bad_label"}
    unknown = sorted(set(spec) - allowed)
    if unknown:
        raise ValueError(f"dataset spec for {kind!r}: unknown keys {unknown}; known: {sorted(allowed - {'kw'})}")
    return fn(root, **spec)
