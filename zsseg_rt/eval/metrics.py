"""Segmentation metrics from a confusion matrix (NumPy only): per-class IoU, mIoU(seen/unseen), hIoU, pAcc.

Definitions follow mmseg's ``eval_metrics`` as ZegCLIP's ``evaluate`` uses them: ground-truth pixels equal to
``ignore_index`` are dropped; ``IoU_c = |P_c & G_c| / |P_c | G_c|`` and NaN when class ``c`` is absent from
both the prediction and the ground truth (so it does not count); mIoU(S)/mIoU(U) are the NaN-mean over the
seen/unseen indices; hIoU = 2*S*U/(S+U) (not computed in the official code); pAcc = correct / valid pixels.
"""

from __future__ import annotations

from typing import Dict, List, Sequence

import numpy as np

__all__ = ["ConfusionMatrix", "summarize", "format_table", "harmonic_iou"]


class ConfusionMatrix:
    """Accumulates ``counts[gt, pred]`` over images (int64)."""

    def __init__(self, num_classes: int, ignore_index: int = 255):
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = int(num_classes)
        self.ignore_index = int(ignore_index)
        self.counts = np.zeros((self.num_classes, self.num_classes), np.int64)

    def update(self, pred: np.ndarray, gt: np.ndarray) -> None:
        """Add one image (or a batch): ``pred`` and ``gt`` integer arrays of the same shape.

        Raises ValueError for shape mismatches, predictions outside ``[0, C)`` and ground truth outside
        ``[0, C)`` that is not ``ignore_index``.
        """
        pred = np.asarray(pred)
        gt = np.asarray(gt)
        if pred.shape != gt.shape:
            raise ValueError(f"prediction shape {pred.shape} != ground-truth shape {gt.shape}")
        c = self.num_classes
        valid = gt != self.ignore_index
        g = gt[valid].astype(np.int64)
        p = pred[valid].astype(np.int64)
        if g.size and (g.min() < 0 or g.max() >= c):
            bad = np.unique(g[(g < 0) | (g >= c)])[:8].tolist()
            raise ValueError(f"ground truth holds {bad} outside [0, {c}) that are not ignore ({self.ignore_index})")
        if p.size and (p.min() < 0 or p.max() >= c):
            bad = np.unique(p[(p < 0) | (p >= c)])[:8].tolist()
            raise ValueError(f"prediction holds {bad} outside [0, {c})")
        self.counts += np.bincount(g * c + p, minlength=c * c).reshape(c, c)

    def merge(self, other: "ConfusionMatrix") -> None:
        self.counts += other.counts

    def iou(self) -> np.ndarray:
        """``[C]`` float64 per-class IoU, NaN where the class is absent from prediction and ground truth."""
        inter = np.diag(self.counts).astype(np.float64)
        union = self.counts.sum(0) + self.counts.sum(1) - np.diag(self.counts)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(union > 0, inter / np.maximum(union, 1), np.nan)

    def class_accuracy(self) -> np.ndarray:
        tot = self.counts.sum(1).astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(tot > 0, np.diag(self.counts) / np.maximum(tot, 1), np.nan)

    def pixel_accuracy(self) -> float:
        tot = self.counts.sum()
        return float(np.diag(self.counts).sum() / tot) if tot else float("nan")


def _nanmean(x: np.ndarray) -> float:
    x = x[~np.isnan(x)]
    return float(x.mean()) if x.size else float("nan")


def harmonic_iou(seen: float, unseen: float) -> float:
    if np.isnan(seen) or np.isnan(unseen) or seen + unseen == 0:
        return float("nan")
    return float(2 * seen * unseen / (seen + unseen))


def summarize(cm: ConfusionMatrix, class_names: Sequence[str], unseen: Sequence[int] = ()) -> Dict:
    """Metrics dict (percentages, 0..100): ``mIoU``, ``mIoU_seen``, ``mIoU_unseen``, ``hIoU``, ``pAcc``,
    ``mAcc`` and ``per_class`` (name -> IoU, accuracy, seen flag). NaN values become None in JSON."""
    if len(class_names) != cm.num_classes:
        raise ValueError(f"{len(class_names)} class names for a {cm.num_classes}-class confusion matrix")
    iou = cm.iou()
    acc = cm.class_accuracy()
    u = sorted(set(int(i) for i in unseen))
    s = [i for i in range(cm.num_classes) if i not in set(u)]
    m_s, m_u = _nanmean(iou[s]) if s else float("nan"), _nanmean(iou[u]) if u else float("nan")
    out = {
        "pAcc": 100 * cm.pixel_accuracy(),
        "mAcc": 100 * _nanmean(acc),
        "mIoU": 100 * _nanmean(iou),
        "mIoU_seen": 100 * m_s,
        "mIoU_unseen": 100 * m_u,
        "hIoU": 100 * harmonic_iou(m_s, m_u),
        "num_classes": cm.num_classes,
        "unseen": [class_names[i] for i in u],
        "valid_pixels": int(cm.counts.sum()),
        "per_class": {
            class_names[i]: {
                "IoU": 100 * float(iou[i]),
                "Acc": 100 * float(acc[i]),
                "seen": i not in set(u),
                "gt_pixels": int(cm.counts[i].sum()),
            }
            for i in range(cm.num_classes)
        },
    }
    return _nan_to_none(out)


def _nan_to_none(x):
    if isinstance(x, dict):
        return {k: _nan_to_none(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_nan_to_none(v) for v in x]
    if isinstance(x, float) and np.isnan(x):
        return None
    return x


def _fmt(v) -> str:
    return "   -  " if v is None else f"{v:6.2f}"


def format_table(metrics: Dict, per_class: bool = True) -> str:
    """A plain-text table: per-class IoU/Acc (seen/unseen marked), then the summary line."""
    lines: List[str] = []
    if per_class:
        width = max([len(n) for n in metrics["per_class"]] + [5])
        lines.append(f"{'class':<{width}}  split    IoU    Acc")
        for name, m in metrics["per_class"].items():
            lines.append(f"{name:<{width}}  {'seen  ' if m['seen'] else 'unseen'} {_fmt(m['IoU'])} {_fmt(m['Acc'])}")
        lines.append("")
    keys = ["pAcc", "mIoU", "mIoU_seen", "mIoU_unseen", "hIoU"]
    lines.append("  ".join(f"{k} {_fmt(metrics[k]).strip()}" for k in keys))
    return "\n".join(lines)
