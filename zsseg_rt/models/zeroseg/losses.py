"""ZeroSeg's training losses ([P] §3.2, Eq. 1): MAE pixel reconstruction + multi-scale feature distillation of the
global embedding z + segment matching of the segment tokens to their nearest local-crop teacher feature.

Teacher features ``views [B, n, E]`` are ordered as :func:`zsseg_rt.models.zeroseg.teacher.grid_boxes` gives
them: view 0 is the full image (the 1x1 grid), views 1..n-1 are the local crops.
"""

from __future__ import annotations

from typing import Any, Dict

import torch
import torch.nn.functional as F

from .config import ZeroSegConfig
from .model import patchify

__all__ = ["reconstruction_loss", "distillation_loss", "segment_matching_loss", "pairwise_l1", "ZeroSegLoss"]


def _reduce(x: torch.Tensor, how: str, dim: int) -> torch.Tensor:
    return x.mean(dim) if how == "mean" else x.sum(dim)


def pairwise_l1(a: torch.Tensor, b: torch.Tensor, reduction: str = "sum") -> torch.Tensor:
    """L1 distances between every row pair: a [B, M, E], b [B, N, E] -> [B, M, N]: the L1 norm of the difference
    (``"sum"`` over E, as Eq. 1 writes |g_i - v_j|_1) or its per-element mean (``"mean"``, nn.L1Loss's)."""
    return _reduce((a.unsqueeze(2) - b.unsqueeze(1)).abs(), reduction, dim=-1)


def reconstruction_loss(
    pred: torch.Tensor, images: torch.Tensor, mask: torch.Tensor, patch: int, norm_pix: bool = True
) -> torch.Tensor:
    """MAE loss: per-patch pixel MSE averaged over the MASKED patches only.

    Args:
        pred: [B, L, patch*patch*3] predicted patches. images: [B, 3, H, W] (the normalised network input).
        mask: [B, L], 1 = masked. norm_pix: normalise each target patch by its own mean/std (MAE ``norm_pix_loss``).
    """
    target = patchify(images, patch)
    if norm_pix:
        mean = target.mean(dim=-1, keepdim=True)
        var = target.var(dim=-1, keepdim=True)
        target = (target - mean) / (var + 1.0e-6) ** 0.5
    per_patch = ((pred - target) ** 2).mean(dim=-1)  # [B, L]
    return (per_patch * mask).sum() / mask.sum().clamp_min(1.0)


def distillation_loss(
    global_feature: torch.Tensor, views: torch.Tensor, l1: str = "sum", over_views: str = "mean"
) -> torch.Tensor:
    """L1 between z [B, E] and every teacher view [B, n, E] (pass ``views[:, :1]`` for the full image only),
    reduced over the views (``over_views``; inferred mean: Eq. 1 leaves it open) and averaged over the batch.
    Defaults as ``ZeroSegConfig.loss`` (docs/zeroseg.md)."""
    d = _reduce((global_feature.unsqueeze(1) - views).abs(), l1, dim=-1)  # [B, n]
    return _reduce(d, over_views, dim=1).mean()


def segment_matching_loss(
    segments: torch.Tensor, crops: torch.Tensor, l1: str = "sum", over_tokens: str = "sum"
) -> torch.Tensor:
    """Eq. 1's L_match = sum_i min_j |g_i - v_j|_1 (``over_tokens="mean"``: the mean over i): segments [B, m, E]
    each to its nearest local crop [B, n_local, E] (no one-to-one constraint, several tokens may take the same
    crop), averaged over the batch. Gradient flows through the chosen pair."""
    d = pairwise_l1(segments, crops, l1)  # [B, m, n_local]
    return _reduce(d.min(dim=-1).values, over_tokens, dim=1).mean()


class ZeroSegLoss:
    """The weighted sum of the three terms with the options of ``config.loss`` (docs/zeroseg.md: every choice and
    its source)."""

    def __init__(self, config: ZeroSegConfig):
        self.config = config
        self.opt: Dict[str, Any] = dict(config.loss)

    def __call__(self, out: Dict[str, Any], images: torch.Tensor, views: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Args: out: :meth:`ZeroSeg.forward_train`'s dict; images [B, 3, H, W] (normalised student input);
        views [B, n, E] teacher features (view 0 = full image). Returns loss, loss_rec, loss_distill, loss_match."""
        o = self.opt
        z, g = out["global_feature"].float(), out["segment_features"].float()
        v = views.float()
        if o["l2_normalize"]:
            z, g, v = F.normalize(z, dim=-1), F.normalize(g, dim=-1), F.normalize(v, dim=-1)
        rec = reconstruction_loss(
            out["pred_patches"].float(), images.float(), out["mask"], self.config.patch_size, o["norm_pix_loss"]
        )
        targets = v if o["distill_views"] == "all" else v[:, :1]
        distill = distillation_loss(z, targets, o["l1_reduction"], o["view_reduction"])
        match = segment_matching_loss(g, v[:, 1:], o["l1_reduction"], o["token_reduction"])
        total = (
            float(o["reconstruction_weight"]) * rec
            + float(o["distill_weight"]) * distill
            + float(o["match_weight"]) * match
        )
        return {"loss": total, "loss_rec": rec, "loss_distill": distill, "loss_match": match}
