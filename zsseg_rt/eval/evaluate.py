"""Evaluate a PyTorch checkpoint or an exported bundle on a labelled dataset (generalized zero-shot protocol).

Every image is segmented with the shared test-time pipeline (``zsseg_rt.pipeline``: keep-ratio rescale,
ImageNet normalisation, sliding windows or the whole image, calibrated scores averaged, resized to the
original size, argmax) — through :func:`zsseg_rt.models.common.predict.predict` for PyTorch models and
``zsseg_rt.Engine`` for bundles — over ALL classes of the dataset's vocabulary jointly, and compared with the
ground truth at the original resolution.

Checkpoint kinds: a training checkpoint (``.pt`` from ``zsseg train``; ZegCLIP or CLIP-RC, from the stored
``model_config``), a native checkpoint directory (``model.safetensors`` + ``config.json``), or a bundle
directory (``meta.json``, run by ``Engine``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Union

import numpy as np

from zsseg_rt.data import SegmentationDataset, build_dataset

from .metrics import ConfusionMatrix, summarize
from .training_free_protocol import protocol_record as protocol_record_of

__all__ = ["evaluate", "load_for_eval", "Segmenter", "checkpoint_kind", "model_from_config"]


def checkpoint_kind(path: Union[str, Path]) -> str:
    p = Path(path)
    if p.is_dir() and (p / "meta.json").is_file():
        return "bundle"
    if p.is_dir() and (p / "model.safetensors").is_file() and (p / "config.json").is_file():
        return "native"
    if p.is_file():
        return "train"
    raise FileNotFoundError(
        f"{str(p)!r} is not a training checkpoint (.pt), a native checkpoint directory "
        "(model.safetensors + config.json) or an export bundle (meta.json)"
    )


def _is_zeroseg(obj) -> bool:
    """A ZeroSeg student or an Engine on a ZeroSeg bundle (no torch import: bundles evaluate without torch)."""
    meta = getattr(obj, "meta", None)
    if meta is not None and hasattr(meta, "family"):
        return meta.family == "zeroseg"
    return getattr(getattr(obj, "config", None), "family", "") == "zeroseg"


class Segmenter:
    """``segmenter(rgb [H,W,3] uint8) -> labels [H,W]`` over a fixed vocabulary (torch model or Engine)."""

    def __init__(
        self,
        kind: str,
        obj,
        class_names: Sequence[str],
        text: Optional[np.ndarray],
        mode: str,
        device: Optional[str] = None,
        seen_classes=None,
    ):
        if _is_zeroseg(obj):  # its labels put background at 0: the generic confusion matrix would be silently wrong
            raise ValueError(
                "ZeroSeg is evaluated under its own protocol (background + classes): use zsseg eval without --ray "
                "(zsseg_rt.models.zeroseg.evaluate.evaluate_checkpoint)"
            )
        self.kind, self.obj, self.mode = kind, obj, mode
        self.class_names = list(class_names)
        self.device = device
        self.seen_classes = seen_classes
        self.text = text
        if kind == "bundle":
            if text is not None:
                obj.set_text_embeddings(self.class_names, text)
            else:
                obj.set_classes(self.class_names)
        elif text is None:
            import torch

            with torch.no_grad():
                self.text = obj.text_embeddings(self.class_names).float().cpu().numpy()

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        if self.kind == "bundle":
            return self.obj(rgb, color_order="rgb").labels
        if getattr(self.obj.config, "family", "") == "zegformer":  # two-stage: its own whole-image test pipeline
            from zsseg_rt.models.zegformer.predict import predict_zegformer

            labels, _ = predict_zegformer(
                self.obj, rgb, self.class_names, text=self.text, seen_classes=self.seen_classes, device=self.device
            )
            return labels
        from zsseg_rt.models.common.predict import predict

        labels, _ = predict(
            self.obj,
            rgb,
            class_names=self.class_names,
            text=self.text,
            mode=self.mode,
            color_order="rgb",
            device=self.device,
            seen_classes=self.seen_classes,
        )
        return labels


def load_for_eval(path: Union[str, Path], device: Optional[str] = None, backend: str = "auto", mode: str = "slide"):
    """``(kind, model_or_engine)`` for a checkpoint path."""
    kind = checkpoint_kind(path)
    if kind == "bundle":
        from zsseg_rt.runtime import Engine

        if mode not in ("slide", "exact"):
            raise ValueError(
                f"bundles are evaluated with the official sliding-window order (mode 'slide'); got mode {mode!r}"
            )
        return kind, Engine(str(path), backend=backend, device=device or "auto", mode="exact")
    from zsseg_rt.models import load_native

    if kind == "native":
        model = load_native(str(path), device=device)  # dispatches ZegCLIP / CLIP-RC on the stored format
    else:
        from zsseg_rt.train.checkpoint import load_checkpoint

        state = load_checkpoint(path)
        model = model_from_config(state["model_config"])
        model.load_state_dict(state["model"], strict=True)
        if device:
            model = model.to(device)
    return kind, model.eval()


def model_from_config(config: Dict[str, Any]):
    """An untrained model of the family a training checkpoint's ``model_config`` names (weights come after):
    the family is resolved by the model registry (no ``"family"`` -> ZegCLIP); only trainable families
    (ZegCLIP, CLIP-RC) are accepted."""
    from zsseg_rt.models import create_model, family_of

    if not isinstance(config, dict):
        raise TypeError(f"model_config must be a dict, got {type(config).__name__}")
    family = family_of(config)
    if family not in ("zegclip", "cliprc", "zegformer", "zeroseg"):
        raise ValueError(
            f"training checkpoint holds a model of family {family!r}; only ZegCLIP, CLIP-RC, ZegFormer and ZeroSeg "
            "checkpoints are trained"
        )
    return create_model(dict(config))


def evaluate(
    checkpoint,
    dataset: Union[SegmentationDataset, Dict[str, Any]],
    mode: str = "slide",
    text_embeddings: Union[None, str, np.ndarray] = None,
    unseen: Optional[Sequence] = None,
    device: Optional[str] = None,
    backend: str = "auto",
    limit: Optional[int] = None,
    progress: bool = True,
    seen_classes: Optional[Sequence[int]] = None,
    text_weights: Optional[str] = None,
    background_threshold: Optional[float] = None,
    thresholds: str = "paper",
    protocol: str = "official",
) -> Dict[str, Any]:
    """Metrics of ``checkpoint`` (path, ``ZegCLIP`` / ``CLIPRC`` or ``Engine``) on ``dataset`` (object or spec dict).

    Args:
        mode: "slide" (official crop 512 / stride 426) or "whole" (torch models only).
        text_embeddings: None (the model's / bundle's text encoder on the dataset's class names), a file
            (``.npy``/``.pt``/``.safetensors``, ``[C, D]`` in the dataset's class order) or an array.
        unseen: override the dataset split's unseen classes (names or indices) for mIoU(S)/mIoU(U)/hIoU.
        seen_classes: indices calibrated as seen (default: the checkpoint's seen classes, matched by name).
        limit: evaluate only the first ``limit`` images.
        text_weights, background_threshold, thresholds: ZeroSeg only (its protocol: background + classes, see
            :func:`zsseg_rt.models.zeroseg.evaluate.evaluate_checkpoint`).
        protocol: training-free bundles: "official" (default) runs the method with its official settings for the
            dataset (``zsseg_rt/eval/training_free_settings.json``: logit scale, thresholds, PAMR, test size) and
            records them with what the bundle cannot follow under ``"training_free_protocol"``; "bundle" keeps the bundle's own.
    Returns:
        the :func:`summarize` dict plus ``images``, ``skipped`` (corrupt files), ``mode``, ``dataset``.
    """
    try:
        from tqdm import tqdm
    except ImportError:  # a runtime-only install (no torch extra) has no tqdm: no progress bar

        def tqdm(iterable, **_kwargs):  # type: ignore[no-redef]
            return iterable

    ds = build_dataset(dataset) if isinstance(dataset, dict) else dataset
    split = ds.split.with_unseen(unseen)
    if isinstance(checkpoint, (str, Path)):
        kind, obj = load_for_eval(checkpoint, device=device, backend=backend, mode=mode)
    else:
        from zsseg_rt.runtime import Engine  # torch-free

        kind = "bundle" if isinstance(checkpoint, Engine) else "torch"  # ZegFormerEngine is an Engine too
        obj = checkpoint
    text = None
    if isinstance(text_embeddings, (str, Path)):
        from zsseg_rt.models.common.text import load_text_embeddings

        text = np.asarray(load_text_embeddings(str(text_embeddings)), dtype=np.float32)
    elif text_embeddings is not None:
        text = np.asarray(text_embeddings, dtype=np.float32)
    if text is not None and text.shape[0] != ds.num_classes:
        raise ValueError(f"text embeddings have {text.shape[0]} rows for {ds.num_classes} dataset classes")
    if _is_zeroseg(obj) and kind == "bundle":  # background kept as class 0, per-dataset threshold; no torch
        from .zeroseg_protocol import evaluate_zeroseg_bundle

        return evaluate_zeroseg_bundle(obj, ds, text, background_threshold, thresholds, limit, progress)
    if _is_zeroseg(obj):  # the PyTorch student, same protocol
        from zsseg_rt.models.zeroseg.evaluate import evaluate_checkpoint  # (torch is imported only here)

        return evaluate_checkpoint(
            obj, ds, mode, text, text_weights, background_threshold, thresholds, limit, progress, device
        )
    # a training-free bundle's Engine follows the official settings for the evaluation only (restored after)
    saved = (obj.postprocessor, obj.test_scale) if kind == "bundle" and hasattr(obj, "test_scale") else None
    try:
        protocol_record = protocol_record_of(obj, ds.name, protocol) if kind == "bundle" else None
        seg = Segmenter(kind, obj, ds.class_names, text, mode, device, seen_classes)
        cm = ConfusionMatrix(ds.num_classes)
        n = len(ds) if limit is None else min(len(ds), int(limit))
        done = 0
        for i in tqdm(range(n), desc=f"eval {ds.name}", disable=not progress, dynamic_ncols=True):
            sample = ds.load_safe(i)
            if sample is None:
                continue
            rgb, gt = sample
            cm.update(seg(rgb), gt)
            done += 1
    finally:
        if saved is not None:
            obj.postprocessor, obj.test_scale = saved
    out = summarize(cm, ds.class_names, split.unseen)
    out.update(
        {
            "images": done,
            "skipped": len(ds.skipped),
            "skipped_files": list(ds.skipped.values())[:20],
            "mode": mode,
            "dataset": ds.name,
            "source": kind,
        }
    )
    if protocol_record is not None:
        out["training_free_protocol"] = protocol_record
    return out


def save_json(metrics: Dict[str, Any], path: Union[str, Path]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(metrics, f, indent=1)
