"""Evaluation: confusion-matrix metrics (mIoU seen/unseen, hIoU, pAcc) and dataset evaluation of checkpoints
and bundles through the shared test-time pipeline."""

from .evaluate import evaluate, load_for_eval
from .metrics import ConfusionMatrix, format_table, harmonic_iou, summarize

__all__ = ["evaluate", "load_for_eval", "ConfusionMatrix", "summarize", "format_table", "harmonic_iou"]
