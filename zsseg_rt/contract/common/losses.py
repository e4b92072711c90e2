"""Training pieces every segmentation family shares (torch): the official two-step logit resize and the
transductive self-training labels (ZegCLIP's ``decode_seg.forward_train``, the recipe the trainer runs for any
family in the transductive setting)."""

from __future__ import annotations

from typing import Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F

__all__ = ["upsample_logits", "transductive_pseudo_labels"]


def upsample_logits(
    logits: torch.Tensor, pred_size: Optional[Union[int, Tuple[int, int]]], label_size: Tuple[int, int]
) -> torch.Tensor:
    """Official two-step resize: head -> ``pred_size`` (512), criterion -> label size (identity when equal)."""
    x = logits
    if pred_size is not None:
        ps = (pred_size, pred_size) if isinstance(pred_size, int) else tuple(pred_size)
        if tuple(x.shape[-2:]) != ps:
            x = F.interpolate(x, size=ps, mode="bilinear", align_corners=False)
    if tuple(x.shape[-2:]) != tuple(label_size):
        x = F.interpolate(x, size=tuple(label_size), mode="bilinear", align_corners=False)
    return x


@torch.no_grad()
def transductive_pseudo_labels(
    pred: torch.Tensor, labels: torch.Tensor, seen_classes: Sequence[int], ignore_index: int = 255
) -> torch.Tensor:
    """Official self-training step (``decode_seg.forward_train``): ``sigmoid(pred)`` with seen channels set to -1,
    argmax, written only where the (remapped) label is -1 (unseen GT location); any remaining -1 -> ignore.

    ``pred``: logits already at the label size ``[B, C, H, W]``; ``labels`` from ``remap_labels_transductive``.
    """
    scores = pred.detach().sigmoid().clone()
    scores[:, list(seen_classes)] = -1
    pseudo = scores.argmax(dim=1)
    out = labels.clone().long()
    m = out == -1
    out[m] = pseudo[m]
    out[out == -1] = ignore_index
    return out
