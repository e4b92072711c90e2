"""ZeroSeg's evaluation protocol ([P] §4.2 following GroupViT): zero-shot mIoU WITH a background class on
PASCAL VOC (21 = background + 20) and PASCAL Context (60 = background + 59), background decided by the
per-dataset threshold (VOC 0.95, Context 0.05; COCO-Object 0.35), images resized to a short side of 448.

Labels are read raw (no reduce-zero-label): 0 = background, c = class c, 255 = ignore, which is the
label convention of :func:`zsseg_rt.models.zeroseg.infer.labels_from_segments`.

    python -m zsseg_rt.models.zeroseg.evaluate --model work_dirs/zeroseg_in1k/final --dataset voc \\
        --root data/VOCdevkit/VOC2012 --pretrained openai

Differences from GroupViT's protocol (README, ZeroSeg): whole-image inference (no 448/224 sliding window) with
the input rounded to a multiple of the patch size; COCO-Object (from instance masks) is not wired yet.
"""

from __future__ import annotations

import argparse
import copy
from typing import Any, Dict, List, Optional

import numpy as np
import torch

from zsseg_rt.eval.metrics import ConfusionMatrix

from .config import DATASET_BACKGROUND_THRESHOLDS
from .infer import predict

__all__ = ["evaluate_zeroseg", "PROTOCOL", "main"]

# dataset type of zsseg_rt.data.build_dataset -> (paper threshold key, number of classes with background)
PROTOCOL = {"voc": ("voc", 21), "context59": ("context", 60)}


def _input_tensor(rgb: np.ndarray, short_side: int, patch: int, mean, std) -> torch.Tensor:
    """[H, W, 3] uint8 -> normalised [1, 3, h', w'] with the short side at ``short_side`` (rounded to the patch)."""
    import torch.nn.functional as F

    h, w = rgb.shape[:2]
    scale = short_side / min(h, w)
    size = (max(patch, round(h * scale / patch) * patch), max(patch, round(w * scale / patch) * patch))
    x = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None].float()
    x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
    return (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


@torch.no_grad()
def evaluate_zeroseg(
    model,
    text: torch.Tensor,
    dataset,
    background_threshold: Optional[float] = None,
    limit: Optional[int] = None,
    progress: bool = True,
) -> Dict[str, Any]:
    """mIoU of ``model`` on ``dataset`` (a :class:`zsseg_rt.data.SegmentationDataset` of VOC or Context) with
    class embeddings ``text`` [C, E] of its foreground classes (C = 20 or 59).

    Returns ``{"mIoU", "IoU" (per class, background first), "pixel_accuracy", "num_images", "threshold"}``
    (mIoU in percent, NaN classes absent from the ground truth skipped).
    """
    from tqdm import tqdm

    cfg = model.config
    data = copy.copy(dataset)
    data.reduce_zero_label = False  # keep background = 0
    n_cls = text.shape[0] + 1
    thr = cfg.background_threshold if background_threshold is None else float(background_threshold)
    cm = ConfusionMatrix(n_cls, ignore_index=255)
    n = len(data) if limit is None else min(len(data), int(limit))
    device = next(model.parameters()).device
    for i in tqdm(range(n), desc="zeroseg eval", disable=not progress, dynamic_ncols=True):
        rgb, gt = data.load(i)
        x = _input_tensor(rgb, cfg.short_side, cfg.patch_size, cfg.mean, cfg.std).to(device)
        out = predict(model, x, text.to(device), background_threshold=thr)
        # labels at the network input size -> back to the ground truth's size (nearest: labels are indices)
        labels = torch.nn.functional.interpolate(out["labels"][None].float(), size=gt.shape, mode="nearest")
        cm.update(labels[0, 0].long().cpu().numpy(), gt)
    iou = cm.iou()
    return {
        "mIoU": float(np.nanmean(iou) * 100.0),
        "IoU": [float(v) for v in iou],
        "pixel_accuracy": float(cm.pixel_accuracy()),
        "num_images": n,
        "threshold": thr,
    }


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="native ZeroSeg checkpoint directory (work_dir/final)")
    ap.add_argument("--dataset", required=True, choices=sorted(PROTOCOL))
    ap.add_argument("--root", required=True, help="dataset root (layouts: zsseg_rt.data.datasets)")
    ap.add_argument("--split", default="val")
    ap.add_argument("--pretrained", required=True, help="CLIP weights of the text tower (the teacher's), e.g. openai")
    ap.add_argument("--threshold", type=float, default=None, help="background threshold (default: the paper's)")
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
    thr = DATASET_BACKGROUND_THRESHOLDS[key] if args.threshold is None else args.threshold
    result = evaluate_zeroseg(model, text, dataset, thr, args.limit)
    print(f"{args.dataset}: mIoU {result['mIoU']:.2f} over {result['num_images']} images (threshold {thr})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
