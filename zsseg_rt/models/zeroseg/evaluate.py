"""ZeroSeg's evaluation protocol ([P] §4.2 following GroupViT): zero-shot mIoU WITH a background class on
PASCAL VOC (21 = background + 20), PASCAL Context (60 = background + 59) and COCO-Object (81 = background + 80
things), background decided by the per-dataset threshold (paper: VOC 0.95, Context 0.05, COCO-Object 0.35; or
GroupViT's configs: 0.95 / 0.35 / 0.95), GroupViT's test pipeline (:func:`.infer.predict_image`: keep-ratio
rescale to (2048, 448), 448/224 sliding windows, class maps averaged, resized to the image, arg-max).

Labels are read raw (no reduce-zero-label): 0 = background, c = class c, 255 = ignore, the label convention of
:func:`zsseg_rt.models.zeroseg.infer.predict_image` and of a ZeroSeg bundle's Engine labels.

    python -m zsseg_rt.models.zeroseg.evaluate --model work_dirs/zeroseg_in1k/final --dataset voc \\
        --root data/VOCdevkit/VOC2012 --pretrained openai

or ``zsseg eval CHECKPOINT_OR_BUNDLE --dataset voc|context59|coco_object --text-weights openai``.
"""

from __future__ import annotations

import argparse
from typing import Any, Dict, List, Optional

import numpy as np
import torch

from zsseg_rt.eval.metrics import ConfusionMatrix
from zsseg_rt.models.zeroseg.protocol import (  # noqa: F401 - the protocol's tables, re-exported
    BACKGROUND_THRESHOLD_PROTOCOL,
    PROTOCOL,
    THRESHOLD_TABLES,
    evaluate_zeroseg_bundle,
    protocol_threshold,
    run_protocol,
    with_background,
)

from .infer import predict_image

__all__ = [
    "evaluate_zeroseg",
    "evaluate_checkpoint",
    "is_zeroseg",
    "PROTOCOL",
    "protocol_threshold",
    "with_background",
    "main",
]


@torch.no_grad()
def evaluate_zeroseg(
    model,
    text: torch.Tensor,
    dataset,
    background_threshold: Optional[float] = None,
    limit: Optional[int] = None,
    progress: bool = True,
    mode: Optional[str] = None,
) -> Dict[str, Any]:
    """mIoU of ``model`` on ``dataset`` (a :class:`zsseg_rt.data.SegmentationDataset` of VOC, Context-59 or
    COCO-Object, background reduced to ignore as those readers do) with class embeddings ``text`` [C, E] of its
    foreground classes (C = 20, 59 or 80). ``mode``: "slide" / "whole" (default: the config's ``test_mode``).

    Returns ``{"mIoU", "IoU" (per class, background first), "pixel_accuracy", "num_images", "threshold"}``
    (mIoU in percent, NaN classes absent from the ground truth and the prediction skipped).
    """
    from tqdm import tqdm

    cfg = model.config
    data = with_background(dataset)
    n_cls = text.shape[0] + 1
    if n_cls != data.num_classes:
        raise ValueError(f"text has {text.shape[0]} rows for the {dataset.num_classes} classes of {dataset.name}")
    thr = cfg.background_threshold if background_threshold is None else float(background_threshold)
    cm = ConfusionMatrix(n_cls, ignore_index=255)
    n = len(data) if limit is None else min(len(data), int(limit))
    for i in tqdm(range(n), desc="zeroseg eval", disable=not progress, dynamic_ncols=True):
        rgb, gt = data.load(i)
        labels, _ = predict_image(model, rgb, text, thr, mode)
        cm.update(labels.numpy(), gt)
    iou = cm.iou()
    return {
        "mIoU": float(np.nanmean(iou) * 100.0),
        "IoU": [float(v) for v in iou],
        "pixel_accuracy": float(cm.pixel_accuracy()),
        "num_images": n,
        "threshold": thr,
    }


def is_zeroseg(obj) -> bool:
    """A ZeroSeg student or an Engine running a ZeroSeg bundle."""
    from zsseg_rt.eval.evaluate import evaluation_protocol

    return evaluation_protocol(obj) == BACKGROUND_THRESHOLD_PROTOCOL


def evaluate_checkpoint(
    obj,
    dataset,
    mode: Optional[str] = None,
    text: Optional[np.ndarray] = None,
    text_weights: Optional[str] = None,
    background_threshold: Optional[float] = None,
    thresholds: str = "paper",
    limit: Optional[int] = None,
    progress: bool = True,
    device: Optional[str] = None,
) -> Dict[str, Any]:
    """``zsseg eval`` for ZeroSeg: a student (PyTorch, :func:`.infer.predict_image`) or an ``Engine`` on a ZeroSeg
    bundle, over background + the dataset's classes; metrics in :func:`zsseg_rt.eval.metrics.summarize`'s form
    plus ``background_threshold``.

    Args:
        text: ``[C, E]`` class embeddings in the dataset's order, or None: the student needs ``text_weights``
            (its teacher's CLIP weights, e.g. "openai"), a bundle uses its own text encoder.
        background_threshold: None = the dataset's value in ``thresholds`` ("paper" or "groupvit"). A bundle's
            threshold is part of its head graph: a different requested value is refused.
    """
    meta = getattr(obj, "meta", None)
    if meta is not None:  # Engine on a ZeroSeg bundle: the torch-free path
        return evaluate_zeroseg_bundle(obj, dataset, text, background_threshold, thresholds, limit, progress)
    with_background(dataset)
    names = list(dataset.class_names)
    thr = background_threshold
    if thr is None:
        thr = protocol_threshold(dataset.name, thresholds)
    if text is None:
        if text_weights is None:
            raise ValueError(
                "a ZeroSeg checkpoint has no text tower: pass --text-weights (its teacher's CLIP weights, e.g. "
                "openai) or --text-embeddings"
            )
        from .teacher import CLIPTeacher

        teacher = CLIPTeacher(obj.config, None)
        from .bundle import _load_text_tower

        _load_text_tower(teacher, text_weights)
        text_t = teacher.to(next(obj.parameters()).device).text_embeddings(names, obj.config.templates)
    else:
        text_t = torch.as_tensor(np.asarray(text, dtype=np.float32))
    thr = obj.config.background_threshold if thr is None else thr

    def segment(rgb):
        return predict_image(obj, rgb, text_t, thr, mode)[0].numpy()

    extra = {"mode": mode or obj.config.test_mode, "source": "torch", "background_threshold": float(thr)}
    return run_protocol(segment, dataset, names, limit, progress, extra)


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="native ZeroSeg checkpoint directory (work_dir/final)")
    ap.add_argument("--dataset", required=True, choices=sorted(PROTOCOL))
    ap.add_argument("--root", required=True, help="dataset root (layouts: zsseg_rt.data.datasets)")
    ap.add_argument("--split", default="val")
    ap.add_argument("--pretrained", required=True, help="CLIP weights of the text tower (the teacher's), e.g. openai")
    ap.add_argument("--threshold", type=float, default=None, help="background threshold (default: --thresholds)")
    ap.add_argument("--thresholds", default="paper", choices=sorted(THRESHOLD_TABLES), help="per-dataset table")
    ap.add_argument("--mode", default=None, choices=["slide", "whole"], help="default: the config's test_mode")
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args(argv)
    from zsseg_rt.data import build_dataset
    from zsseg_rt.models import create_model

    from .teacher import CLIPTeacher

    model = create_model(args.model, device=args.device)
    dataset = build_dataset({"type": args.dataset, "root": args.root, "split": args.split})
    teacher = CLIPTeacher(model.config, args.pretrained).to(args.device)
    text = teacher.text_embeddings(dataset.class_names, model.config.templates)
    key, _ = PROTOCOL[args.dataset]
    thr = THRESHOLD_TABLES[args.thresholds][key] if args.threshold is None else args.threshold
    result = evaluate_zeroseg(model, text, dataset, thr, args.limit, mode=args.mode)
    print(f"{args.dataset}: mIoU {result['mIoU']:.2f} over {result['num_images']} images (threshold {thr})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
