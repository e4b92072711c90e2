"""ZegFormer's training loss: MaskFormer's set criterion with Hungarian matching (official ``criterion.py``,
``matcher.py``).

Per image, the targets are the classes present in the label map (one binary mask each; ignored pixels are 0 in
every mask, as the official semantic mapper builds them). Queries are matched to targets by
``linear_sum_assignment`` on ``cost_class * (-p_class) + cost_mask * focal + cost_dice * dice`` (targets
nearest-resized to the mask resolution); the losses are CE over all queries (no-object weight 0.1), sigmoid focal
and dice on matched masks (predictions bilinearly upsampled to the label size), normalised by the number of
targets, on the last decoder layer and every earlier one (deep supervision, each with its own matching).
"""

from __future__ import annotations

from typing import Dict, List, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment

__all__ = ["ZegFormerLoss", "labels_to_targets", "hungarian_match"]


def labels_to_targets(labels: torch.Tensor, ignore_index: int = 255) -> List[Dict[str, torch.Tensor]]:
    """``[B,H,W]`` class-index maps -> per image ``{"labels": [T], "masks": [T,H,W] float}`` (sorted classes)."""
    out = []
    for lab in labels:
        classes = torch.unique(lab)
        classes = classes[(classes != ignore_index) & (classes >= 0)]
        masks = (lab[None] == classes[:, None, None]).float()
        out.append({"labels": classes.long(), "masks": masks})
    return out


def _focal_cost(logits: torch.Tensor, targets: torch.Tensor, alpha: float, gamma: float) -> torch.Tensor:
    """Pairwise sigmoid focal loss ``[N,P] x [M,P] -> [N,M]`` (mean over pixels)."""
    p = logits.sigmoid()
    pos = (1 - p) ** gamma * F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits), reduction="none")
    neg = p**gamma * F.binary_cross_entropy_with_logits(logits, torch.zeros_like(logits), reduction="none")
    if alpha >= 0:
        pos, neg = pos * alpha, neg * (1 - alpha)
    return (pos @ targets.t() + neg @ (1 - targets).t()) / logits.shape[1]


def _dice_cost(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    p = logits.sigmoid()
    num = 2 * p @ targets.t()
    den = p.sum(-1)[:, None] + targets.sum(-1)[None, :]
    return 1 - (num + 1) / (den + 1)


@torch.no_grad()
def hungarian_match(
    logits: torch.Tensor,
    masks: torch.Tensor,
    targets: List[Dict[str, torch.Tensor]],
    weights: Tuple[float, float, float],
    alpha: float,
    gamma: float,
) -> List[Tuple[torch.Tensor, torch.Tensor]]:
    """Per image ``(query indices, target indices)`` minimising the official matching cost.

    Args:
        logits: ``[B,Q,C+1]``; masks: ``[B,Q,h,w]``; targets: from :func:`labels_to_targets`;
        weights: ``(class, mask, dice)`` cost weights (official 1, 20, 1).
    """
    out = []
    w_cls, w_mask, w_dice = weights
    for b, tgt in enumerate(targets):
        if tgt["labels"].numel() == 0:
            empty = torch.zeros(0, dtype=torch.int64)
            out.append((empty, empty))
            continue
        prob = logits[b].float().softmax(-1)
        pred = masks[b].float().flatten(1)
        tm = F.interpolate(tgt["masks"][:, None].to(pred), size=masks.shape[-2:], mode="nearest")[:, 0].flatten(1)
        cost = (
            w_mask * _focal_cost(pred, tm, alpha, gamma)
            - w_cls * prob[:, tgt["labels"]]
            + w_dice * _dice_cost(pred, tm)
        )
        rows, cols = linear_sum_assignment(cost.cpu().numpy())
        out.append((torch.as_tensor(rows, dtype=torch.int64), torch.as_tensor(cols, dtype=torch.int64)))
    return out


class ZegFormerLoss(nn.Module):
    """Set criterion; ``forward(outputs, labels)`` -> ``loss_ce``, ``loss_mask`` (x mask_weight), ``loss_dice``
    (x dice_weight) summed over decoder layers, and ``num_masks`` (targets in this batch).

    ``loss_mask``/``loss_dice`` are normalised by this batch's ``num_masks`` (the trainer re-normalises them by
    the global count); ``loss_ce`` is a mean over queries (official ``F.cross_entropy`` with class weights).
    """

    def __init__(self, num_classes: int, loss_cfg: Dict, ignore_index: int = 255):
        super().__init__()
        self.num_classes = int(num_classes)
        self.cfg = dict(loss_cfg)
        self.ignore_index = int(ignore_index)

    def _class_weight(self, c: int, device) -> torch.Tensor:
        w = torch.ones(c + 1, device=device)
        w[-1] = float(self.cfg["no_object_weight"])
        return w

    def _layer(self, logits, masks, targets, num_masks: float) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        cfg = self.cfg
        alpha, gamma = float(cfg["focal_alpha"]), float(cfg["focal_gamma"])
        idx = hungarian_match(
            logits, masks, targets, (cfg["class_weight"], cfg["mask_weight"], cfg["dice_weight"]), alpha, gamma
        )
        b, q, c1 = logits.shape
        target_classes = torch.full((b, q), c1 - 1, dtype=torch.int64, device=logits.device)
        for i, (src, tgt) in enumerate(idx):
            target_classes[i, src.to(logits.device)] = targets[i]["labels"][tgt.to(logits.device)]
        ce = F.cross_entropy(logits.float().transpose(1, 2), target_classes, self._class_weight(c1 - 1, logits.device))
        src_masks = torch.cat([masks[i][s.to(masks.device)] for i, (s, _) in enumerate(idx)])
        tgt_masks = torch.cat([targets[i]["masks"][t.to(masks.device)] for i, (_, t) in enumerate(idx)])
        if src_masks.shape[0] == 0:
            zero = masks.sum() * 0.0
            return ce, zero, zero
        src = F.interpolate(src_masks[:, None].float(), size=tgt_masks.shape[-2:], mode="bilinear", align_corners=False)
        src = src[:, 0].flatten(1)
        tgt_flat = tgt_masks.flatten(1).to(src)
        prob = src.sigmoid()
        bce = F.binary_cross_entropy_with_logits(src, tgt_flat, reduction="none")
        p_t = prob * tgt_flat + (1 - prob) * (1 - tgt_flat)
        focal = bce * (1 - p_t) ** gamma
        if alpha >= 0:
            focal = (alpha * tgt_flat + (1 - alpha) * (1 - tgt_flat)) * focal
        loss_focal = focal.mean(1).sum() / num_masks
        dice = 1 - (2 * (prob * tgt_flat).sum(-1) + 1) / (prob.sum(-1) + tgt_flat.sum(-1) + 1)
        return ce, loss_focal, dice.sum() / num_masks

    def forward(self, outputs: Dict, labels: torch.Tensor) -> Dict[str, torch.Tensor]:
        """``outputs`` of :meth:`ZegFormer.forward` (training), ``labels [B,H,W]`` in the training class order."""
        targets = labels_to_targets(labels, self.ignore_index)
        n = sum(int(t["labels"].numel()) for t in targets)
        num_masks = max(float(n), 1.0)
        layers = [outputs]
        if self.cfg.get("deep_supervision", True):
            layers = layers + list(outputs.get("aux_outputs", []))
        ce_sum = mask_sum = dice_sum = None
        for layer in layers:
            ce, mk, dc = self._layer(layer["pred_logits"], layer["pred_masks"], targets, num_masks)
            ce_sum = ce if ce_sum is None else ce_sum + ce
            mask_sum = mk if mask_sum is None else mask_sum + mk
            dice_sum = dc if dice_sum is None else dice_sum + dc
        return {
            "loss_ce": ce_sum * float(self.cfg["class_weight"]),
            "loss_mask": mask_sum * float(self.cfg["mask_weight"]),
            "loss_dice": dice_sum * float(self.cfg["dice_weight"]),
            "num_masks": torch.tensor(float(n)),
        }
