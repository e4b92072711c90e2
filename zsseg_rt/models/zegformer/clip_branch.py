"""ZegFormer's test-time CLIP image branch and score fusion, batched (official ``MaskFormer.forward``).

The official code binarises each query's mask (sigmoid > 0.5), multiplies the CLIP-normalised image by it, crops
the mask's tight box with ``roi_align`` to 224x224 and calls CLIP's image encoder once per image on its 100
crops. Here every crop of every image goes through ONE encoder call (:func:`clip_crops` + ``encode``), with the
same crops. Fusion (:func:`fuse_scores`) follows the official ``ENSEMBLING`` / ``ENSEMBLING_ALL_CLS`` branches.

Shapes: ``B`` images, ``Q`` queries, ``C`` classes, ``H x W`` the padded network input.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torchvision.ops import roi_align

__all__ = ["mask_boxes", "clip_crops", "fuse_scores", "semantic_maps"]


def mask_boxes(binary: torch.Tensor) -> torch.Tensor:
    """Tight boxes of binary masks, official convention.

    Args:
        binary: ``[N, H, W]`` bool masks.

    Returns:
        ``[N, 4]`` float ``(x_min, y_min, x_max, y_max)`` where ``x_max``/``y_max`` are the INDEX of the last
        column/row holding mask pixels (not one past it). A mask whose box has zero area (empty, or one pixel
        row/column wide) gets the whole padded image ``(0, 0, W, H)``, as in the official code.
    """
    n, h, w = binary.shape
    cols = binary.any(dim=1)  # [N, W]
    rows = binary.any(dim=2)  # [N, H]
    x_min = cols.to(torch.uint8).argmax(dim=1)
    x_max = (w - 1) - cols.flip(1).to(torch.uint8).argmax(dim=1)
    y_min = rows.to(torch.uint8).argmax(dim=1)
    y_max = (h - 1) - rows.flip(1).to(torch.uint8).argmax(dim=1)
    empty = ~cols.any(dim=1)
    x_max = torch.where(empty, torch.zeros_like(x_max), x_max)  # official: argmax of an all-zero cumsum = 0
    y_max = torch.where(empty, torch.zeros_like(y_max), y_max)
    boxes = torch.stack((x_min, y_min, x_max, y_max), dim=1).float()
    degenerate = (y_max - y_min) * (x_max - x_min) == 0
    full = torch.tensor([0.0, 0.0, float(w), float(h)], device=binary.device)
    return torch.where(degenerate[:, None], full, boxes)


def clip_crops(
    clip_images: torch.Tensor, mask_logits: torch.Tensor, style: str, size: int = 224, chunk: int = 32
) -> torch.Tensor:
    """The CLIP inputs of every query of every image.

    Args:
        clip_images: ``[B, 3, H, W]`` CLIP-normalised (padding = 0).
        mask_logits: ``[B, Q, H, W]`` mask logits at the same size.
        style: ``cropmask`` (masked image, box crop), ``crop`` (box crop of the plain image) or ``mask`` (masked
            image resized to ``size``).
        size: CLIP input size.
        chunk: queries per ``roi_align`` call (bounds the memory of the masked copies, result unchanged).

    Returns:
        ``[B*Q, 3, size, size]`` crops, image-major.
    """
    b, q, h, w = mask_logits.shape
    if style == "mask":
        small = F.interpolate(mask_logits, size=(size, size), mode="bilinear", align_corners=False)
        img = F.interpolate(clip_images, size=(size, size), mode="bilinear", align_corners=False)
        return (img.unsqueeze(1) * (small.sigmoid() > 0.5).unsqueeze(2)).reshape(b * q, 3, size, size)
    binary = mask_logits.sigmoid() > 0.5  # [B,Q,H,W]
    boxes = mask_boxes(binary.reshape(b * q, h, w))  # [B*Q, 4]
    if style == "crop":
        index = torch.arange(b, device=boxes.device).repeat_interleave(q).to(boxes.dtype)
        return roi_align(clip_images, torch.cat((index[:, None], boxes), 1), size, aligned=True)
    if style != "cropmask":
        raise ValueError(f"clip_cls_style must be cropmask, crop or mask, got {style!r}")
    out = []
    for bi in range(b):
        for s in range(0, q, chunk):
            m = binary[bi, s : s + chunk]  # [k,H,W]
            masked = clip_images[bi].unsqueeze(0) * m.unsqueeze(1)  # [k,3,H,W]
            k = m.shape[0]
            index = torch.arange(k, device=boxes.device, dtype=boxes.dtype)
            bx = boxes[bi * q + s : bi * q + s + k]
            out.append(roi_align(masked, torch.cat((index[:, None], bx), 1), size, aligned=True))
    return torch.cat(out, 0)


def fuse_scores(
    zeg_logits: torch.Tensor,
    clip_logits: Optional[torch.Tensor],
    seen: torch.Tensor,
    mode: str,
    lam: float = 2.0 / 3.0,
) -> torch.Tensor:
    """Per-query class scores ``[B, Q, C]`` from ZegFormer's logits and the CLIP branch (official fusion).

    Args:
        zeg_logits: ``[B, Q, C+1]`` query-classifier logits (last column = no-object).
        clip_logits: ``[B, Q, C]`` CLIP logits (``logit_scale * cos``); unused for ``mode="none"``.
        seen: ``[C]`` bool, True for seen classes.
        mode: ``ensemble`` (seen-class CLIP probabilities replaced by their mean over the seen classes, then
            seen ``zeg^lam * clip^(1-lam)``, unseen ``zeg^(1-lam) * clip^lam``), ``ensemble_all``
            (``zeg^(1-lam) * clip^lam`` for every class), ``clip_only`` (softmax of CLIP logits with ZegFormer's
            no-object logit appended) or ``none`` (softmax of ZegFormer's logits).
        lam: the balance lambda (official 2/3).
    """
    if mode == "none":
        return zeg_logits.softmax(-1)[..., :-1]
    if clip_logits is None:
        raise ValueError(f"fusion mode {mode!r} needs the CLIP branch logits")
    clip_prob = torch.cat((clip_logits, zeg_logits[..., -1:]), -1).softmax(-1)[..., :-1]
    if mode == "clip_only":
        return clip_prob
    zeg_prob = zeg_logits.softmax(-1)[..., :-1]
    if mode == "ensemble_all":
        return zeg_prob.pow(1 - lam) * clip_prob.pow(lam)
    if mode != "ensemble":
        raise ValueError(f"fusion must be ensemble, ensemble_all, clip_only or none, got {mode!r}")
    seen = seen.to(device=zeg_logits.device, dtype=torch.bool)
    if bool(seen.any()):
        seen_mean = clip_prob[..., seen].mean(-1, keepdim=True)  # [B,Q,1]
        clip_prob = torch.where(seen, seen_mean, clip_prob)
    seen_part = zeg_prob.pow(lam) * clip_prob.pow(1 - lam)
    unseen_part = zeg_prob.pow(1 - lam) * clip_prob.pow(lam)
    return torch.where(seen, seen_part, unseen_part)


def semantic_maps(scores: torch.Tensor, mask_logits: torch.Tensor) -> torch.Tensor:
    """``einsum("bqc,bqhw->bchw", scores, sigmoid(mask_logits))`` -> ``[B, C, H, W]``."""
    return torch.einsum("bqc,bqhw->bchw", scores, mask_logits.sigmoid())
