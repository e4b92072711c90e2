"""ZegCLIP's training loss (official ``SegLossPlus`` / ``SegPlusCriterion``, ``models/losses/``).

* Predictions: the head's logits ``[B, C, h, w]`` are bilinearly resized (align_corners=False) to ``pred_size``
  (the official head hard-resizes to ``img_size`` = 512) and then, if different, to the label size (the
  criterion's own resize).
* Targets: one-hot per class index; label ``ignore_index`` (255) pixels get an all-zero target.
* ``loss_mask``: sigmoid focal loss (alpha 0.25, gamma 2) over ALL ``C`` class maps; per map the mean over
  pixels, then the sum over ``B*C`` maps, divided by ``num_masks``.
* ``loss_dice``: ``1 - (2*sum(p*t) + 1) / (sum(p) + sum(t) + 1)`` only for (image, class) pairs present in the
  ground truth, summed, divided by ``num_masks``.
* ``num_masks`` = number of (image, class) pairs present in the batch (single process), clamped to >= 1.
* Total = ``mask_weight * loss_mask + dice_weight * loss_dice`` (100 and 1 in every main official config).

``mask_ignore=False`` (official): ignore pixels count as negatives for every class in both terms.
``mask_ignore=True``: ignore pixels are excluded — the focal term averages over valid pixels only (per map:
sum over valid pixels / number of valid pixels, 0 when an image has none) and the dice sums skip them.
"""

from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple, Type, TypeVar, Union

import torch
import torch.nn.functional as F

from zsseg_rt.contract.common.losses import transductive_pseudo_labels, upsample_logits

__all__ = [
    "sigmoid_focal_loss",
    "dice_loss",
    "zegclip_loss",
    "ZegCLIPLoss",
    "upsample_logits",
    "remap_labels_inductive",
    "remap_labels_transductive",
    "transductive_pseudo_labels",
]

_Loss = TypeVar("_Loss", bound="ZegCLIPLoss")


def sigmoid_focal_loss(
    inputs: torch.Tensor,
    targets: torch.Tensor,
    num_masks: float,
    alpha: float = 0.25,
    gamma: float = 2.0,
    valid: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """``inputs``/``targets`` ``[M, P]`` (M maps of P pixels); mean over pixels, sum over maps, / num_masks.

    ``valid [M, P]`` (bool) restricts the per-map mean to valid pixels.
    """
    ce = F.binary_cross_entropy_with_logits(inputs, targets, reduction="none")
    prob = inputs.sigmoid()
    p_t = prob * targets + (1 - prob) * (1 - targets)
    loss = ce * ((1 - p_t) ** gamma)
    if alpha >= 0:
        alpha_t = alpha * targets + (1 - alpha) * (1 - targets)
        loss = alpha_t * loss
    if valid is None:
        per_map = loss.mean(1)
    else:
        v = valid.to(loss.dtype)
        per_map = (loss * v).sum(1) / v.sum(1).clamp(min=1.0)
    return per_map.sum() / num_masks


def dice_loss(
    inputs: torch.Tensor, targets: torch.Tensor, num_masks: float, valid: Optional[torch.Tensor] = None
) -> torch.Tensor:
    """``inputs`` logits / ``targets`` ``[M, P]``; +1 smoothing; summed over maps, / num_masks."""
    p = inputs.sigmoid()
    if valid is not None:
        v = valid.to(p.dtype)
        p = p * v
        targets = targets * v
    numerator = 2 * (p * targets).sum(-1)
    denominator = p.sum(-1) + targets.sum(-1)
    loss = 1 - (numerator + 1) / (denominator + 1)
    return loss.sum() / num_masks


def zegclip_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    pred_size: Optional[Union[int, Tuple[int, int]]] = 512,
    mask_weight: float = 100.0,
    dice_weight: float = 1.0,
    focal_alpha: float = 0.25,
    focal_gamma: float = 2.0,
    ignore_index: int = 255,
    mask_ignore: bool = False,
) -> Dict[str, torch.Tensor]:
    """Official ZegCLIP loss.

    Args:
        logits: ``[B, C, h, w]`` mask logits (the model's ``forward`` output).
        labels: ``[B, H, W]`` (or ``[B, 1, H, W]``) integer class indices in ``[0, C)`` or ``ignore_index``.
        pred_size: size the head resizes to before the loss (official: the training image size, 512);
            None skips that step.
    Returns:
        dict with ``loss`` (weighted total), ``loss_mask`` and ``loss_dice`` (both already weighted, as the
        official ``SegLossPlus`` reports them) and ``num_masks``.
    """
    if labels.dim() == 4:
        if labels.shape[1] != 1:
            raise ValueError(f"labels must be [B,H,W] or [B,1,H,W], got {tuple(labels.shape)}")
        labels = labels[:, 0]
    if labels.dim() != 3:
        raise ValueError(f"labels must be [B,H,W], got shape {tuple(labels.shape)}")
    if logits.dim() != 4 or logits.shape[0] != labels.shape[0]:
        raise ValueError(f"logits {tuple(logits.shape)} and labels {tuple(labels.shape)} do not match")
    if labels.is_floating_point():
        raise TypeError(f"labels must be an integer tensor, got {labels.dtype}")
    b, c = logits.shape[:2]
    labels = labels.long()
    ignore = labels == ignore_index
    bad = (~ignore) & ((labels < 0) | (labels >= c))
    if bool(bad.any()):
        vals = torch.unique(labels[bad])[:8].tolist()
        raise ValueError(f"labels hold values {vals} outside [0, {c}) that are not ignore_index={ignore_index}")

    pred = upsample_logits(logits.float(), pred_size, (int(labels.shape[-2]), int(labels.shape[-1])))
    hw = labels.shape[-2] * labels.shape[-1]
    safe = torch.where(ignore, torch.zeros_like(labels), labels)
    onehot = F.one_hot(safe.reshape(b, hw), c).permute(0, 2, 1).to(pred.dtype)  # [B, C, HW]
    onehot = onehot * (~ignore).reshape(b, 1, hw).to(pred.dtype)
    present = onehot.sum(-1) > 0  # [B, C]
    num_masks = max(float(present.sum().item()), 1.0)

    src = pred.reshape(b * c, hw)
    tgt = onehot.reshape(b * c, hw)
    valid = None
    if mask_ignore:
        valid = (~ignore).reshape(b, 1, hw).expand(b, c, hw).reshape(b * c, hw)
    l_mask = sigmoid_focal_loss(src, tgt, num_masks, focal_alpha, focal_gamma, valid=valid)
    sel = present.reshape(b * c)
    l_dice = dice_loss(src[sel], tgt[sel], num_masks, valid=None if valid is None else valid[sel])
    l_mask = l_mask * mask_weight
    l_dice = l_dice * dice_weight
    return {"loss": l_mask + l_dice, "loss_mask": l_mask, "loss_dice": l_dice, "num_masks": torch.tensor(num_masks)}


class ZegCLIPLoss(torch.nn.Module):
    """Module wrapper configured from a ``ZegCLIPConfig``'s ``loss`` section."""

    def __init__(
        self,
        pred_size=512,
        mask_weight=100.0,
        dice_weight=1.0,
        focal_alpha=0.25,
        focal_gamma=2.0,
        ignore_index=255,
        mask_ignore=False,
    ):
        super().__init__()
        self.kw = dict(
            pred_size=pred_size,
            mask_weight=mask_weight,
            dice_weight=dice_weight,
            focal_alpha=focal_alpha,
            focal_gamma=focal_gamma,
            ignore_index=ignore_index,
            mask_ignore=mask_ignore,
        )

    @classmethod
    def from_config(cls: Type[_Loss], config, **overrides) -> _Loss:
        kw = dict(config.loss)
        kw.update(pred_size=config.image_size, ignore_index=config.ignore_index)
        kw.update(overrides)
        return cls(**kw)

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> Dict[str, torch.Tensor]:
        return zegclip_loss(logits, labels, **self.kw)


# ---------------------------------------------------------------------- label remapping (training modes)
def _lut(num_values: int = 256) -> torch.Tensor:
    return torch.full((num_values,), -1, dtype=torch.long)


def remap_labels_inductive(labels: torch.Tensor, seen_classes: Sequence[int], ignore_index: int = 255) -> torch.Tensor:
    """Official ``_visiable_mask``: seen id -> its position in ``seen_classes``; unseen (and anything else) ->
    ``ignore_index``. Use with the text embeddings of the seen classes only (``text[seen_classes]``)."""
    lut = _lut()
    for i, n in enumerate(seen_classes):
        lut[int(n)] = i
    lut[ignore_index] = ignore_index
    out = lut.to(labels.device)[labels.long().clamp(0, 255)]
    return torch.where(out < 0, torch.full_like(out, ignore_index), out)


def remap_labels_transductive(
    labels: torch.Tensor, seen_classes: Sequence[int], ignore_index: int = 255
) -> torch.Tensor:
    """Official ``_visiable_mask_st``: seen ids kept, unseen -> -1 (to be pseudo-labelled), 255 kept, and the
    ``*_st`` padding value 200 kept."""
    lut = _lut()
    for n in seen_classes:
        lut[int(n)] = int(n)
    lut[ignore_index] = ignore_index
    lut[200] = 200
    return lut.to(labels.device)[labels.long().clamp(0, 255)]
