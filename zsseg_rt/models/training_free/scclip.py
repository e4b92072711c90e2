"""SC-CLIP (Self-Calibrated CLIP, Bai et al., arXiv 2411.15869; official code SuleBai/SC-CLIP at 0417ba9,
``clip/model.py::VisionTransformer.forward``) on a stock open_clip ViT, written from the official code.

With ``f_i`` the output of block ``i + 1`` (``i = 0 .. L-2``; the last block's own output is never used), ``P``
the patch tokens and ``G`` the ``h x w`` grid:

1. **Anomaly tokens** (after the penultimate block, ``x = f_{L-2}``): the local outlier factor of every patch
   token among the patch tokens (the official PyTorch LOF: squared Euclidean distances, ``k = 30`` neighbours,
   ``lrd_p = k / mean_o max(d(p, o), kdist(p))``, ``lof_p = mean_o lrd_o / lrd_p``); tokens whose LOF is above
   the ``1 - 0.05`` quantile (linear interpolation, as ``torch.quantile``) are anomalies. **Repair**: an anomaly
   takes the mean of its non-anomalous 8-neighbours on the grid (zero-padded; kept when it has none).
2. **Self-adjustment**: ``S_mid = cos(repair(f_pre)_p, repair(f_pre)_q)`` (``pre_adjust_idx`` = 8); the repaired
   tokens are averaged over ``S_mid`` thresholded at ``beta`` = 0.4 (row-normalised, ``+ 1e-6``). The last
   block's attention becomes ``(softmax(A) + softmax(k k^T / sqrt(d))) / 2`` with
   ``A = 3 (S_mid - mean(S_mid))`` and ``-inf`` where ``A < 0``; no residual, no FFN; ``res_cls`` (0.3) times the
   penultimate CLS token is added. The result is averaged once more over ``S_post = cos(f_post)`` (thresholded;
   ``post_adjust_idx`` = 3, not repaired).
3. **Multi-level fusion**: ``F = sum_{i = 3}^{9} f_i`` goes through the same last-block attention (its own CLS
   times ``res_cls`` added) and the ``S_post`` averaging, and is added to the result.

The patch features are then ``ln_post(x) @ proj`` (all ``h*w`` tokens, no CLS).

Differences from the official code (all identical for its use: one image per forward, square crops):
the statistics are per image (``mean(S_mid)`` over one image's ``[N, N]``; the official takes the mean over the
whole batch tensor and its LOF needs batch size 1); the squared distances are computed as
``|a|^2 + |b|^2 - 2 a.b`` (clamped at 0, diagonal exactly 0) instead of the official ``[N, N, W]`` difference
tensor (equal up to fp32 rounding; the anomaly set only changes at exact LOF/neighbour near-ties); anomalies map
to grid cells row-major (the official divides the token index by the grid height, the same on a square grid);
an image without anomaly (all LOF equal) is left unrepaired (the official raises an IndexError there).
"""

from __future__ import annotations

from typing import Any, List, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from zsseg_rt.models.training_free.config import SCCLIPSettings

__all__ = ["SCCLIPSettings", "scclip_encode", "lof_outliers", "repair_anomalies", "quantile_lerp_constants"]


# ---------------------------------------------------------------------------------------------------- anomalies
def quantile_lerp_constants(count: int, q: float) -> Tuple[int, int, float]:
    """``torch.quantile(x, q)`` (linear) of ``count`` values as ``(below, above, weight)``: float32 rank
    ``q * (count - 1)``, its floor and ceil, and the float32 weight ``rank - below``."""
    rank = np.float32(q) * np.float32(count - 1)
    below = int(np.floor(rank))
    return below, int(np.ceil(rank)), float(np.float32(rank - np.float32(below)))


def _lerp(start: torch.Tensor, end: torch.Tensor, weight: float) -> torch.Tensor:
    """``torch.lerp`` with a scalar weight, its two-sided formula (what ``torch.quantile`` uses)."""
    if weight < 0.5:
        return start + weight * (end - start)
    return end - (end - start) * (1.0 - weight)


def lof_outliers(tokens: torch.Tensor, neighbors: int, contamination: float) -> torch.Tensor:
    """SC-CLIP's anomaly tokens: ``tokens [B, N, W]`` -> ``[B, N]`` bool, True where the local outlier factor is
    above the ``1 - contamination`` quantile of the image's N factors (the official ``lof_pytorch``)."""
    n = int(tokens.shape[1])  # a constant of the exported graph (fixed grid): TensorRT needs constant TopK sizes
    sq = (tokens * tokens).sum(-1)  # [B, N]
    dist = (sq[:, :, None] + sq[:, None, :] - 2.0 * (tokens @ tokens.transpose(1, 2))).clamp_min(0.0)
    eye = torch.from_numpy(np.eye(n, dtype=bool)).to(tokens.device)  # an initializer (ORT has no bool EyeLike)
    dist = torch.where(eye, torch.zeros_like(dist), dist)  # a token's own distance is exactly 0
    knn_dist, knn_idx = torch.topk(dist, neighbors + 1, dim=-1, largest=False)
    knn_dist, knn_idx = knn_dist[..., 1:], knn_idx[..., 1:]  # drop the token itself
    reach = torch.maximum(knn_dist, knn_dist[..., -1:])
    mean_reach = reach.mean(-1)
    # torch.nan_to_num(mean, nan=1e-6): NaN -> 1e-6, +inf -> the largest float32 (the mean is never negative)
    mean_reach = torch.where(torch.isnan(mean_reach), torch.full_like(mean_reach, 1e-6), mean_reach)
    mean_reach = torch.clamp(mean_reach, max=float(np.finfo(np.float32).max))
    lrd = neighbors / mean_reach  # [B, N]
    lrd_neighbors = torch.gather(lrd, 1, knn_idx.reshape(knn_idx.shape[0], -1)).reshape(knn_idx.shape)
    lof = (lrd_neighbors / lrd[..., None]).mean(-1)  # [B, N]
    below, above, weight = quantile_lerp_constants(n, 1.0 - contamination)
    ordered = torch.topk(lof, n, dim=-1, largest=False).values  # ascending
    threshold = _lerp(ordered[:, below : below + 1], ordered[:, above : above + 1], weight)
    return lof > threshold


def _neighbour_sum(x: torch.Tensor) -> torch.Tensor:
    """Sum of the 8 grid neighbours of every cell, zero outside: ``x [B, C, h, w]`` -> ``[B, C, h, w]``."""
    h, w = x.shape[-2:]
    p = F.pad(x, (1, 1, 1, 1))
    total = torch.zeros_like(x)
    for dy in range(3):
        for dx in range(3):
            if (dy, dx) != (1, 1):
                total = total + p[:, :, dy : dy + h, dx : dx + w]
    return total


def repair_anomalies(tokens: torch.Tensor, outliers: torch.Tensor, grid: Tuple[int, int]) -> torch.Tensor:
    """The official ``mean_interpolation``: every anomaly token becomes the mean of its non-anomalous 8-neighbours
    on the ``grid`` (row-major tokens ``[B, N, W]``); one without such neighbours is kept."""
    b, n, width = tokens.shape
    h, w = int(grid[0]), int(grid[1])
    fmap = tokens.transpose(1, 2).reshape(b, width, h, w)
    bad = outliers.to(tokens.dtype).reshape(b, 1, h, w)
    good = 1.0 - bad
    total = _neighbour_sum(fmap * good)
    valid = _neighbour_sum(good)
    mean = total / torch.where(valid == 0, torch.ones_like(valid), valid)
    update = bad * (valid > 0).to(tokens.dtype)
    fmap = fmap * (1.0 - update) + mean * update
    return fmap.reshape(b, width, n).transpose(1, 2)


# ---------------------------------------------------------------------------------------------------- blocks
def _cosine(tokens: torch.Tensor) -> torch.Tensor:
    """``[B, N, W]`` -> ``[B, N, N]`` cosine similarities (the official divides by the norm, no epsilon)."""
    unit = tokens / tokens.norm(dim=-1, keepdim=True)
    return unit @ unit.transpose(1, 2)


def _aggregate(tokens: torch.Tensor, corr: torch.Tensor) -> torch.Tensor:
    """The official ``adaptively_aggregate``: row-normalised ``corr`` (``+ 1e-6``) times the tokens."""
    return (corr / (corr.sum(-1, keepdim=True) + 1e-6)) @ tokens


def _threshold(sim: torch.Tensor, beta: float) -> torch.Tensor:
    return torch.where(sim < beta, torch.zeros_like(sim), sim)


def _adjusted_attention(block: Any, x: torch.Tensor, mid: torch.Tensor, scale: float) -> torch.Tensor:
    """The official ``custom_attn`` on ``ln_1(x)``: ``(softmax(A) + softmax(k k^T / sqrt(d))) / 2`` over ``v``,
    then ``out_proj``. ``x [B, N, W]``, ``mid [B, N, N]`` (S_mid)."""
    attn: nn.MultiheadAttention = block.attn
    b, n, width = x.shape
    heads = int(attn.num_heads)
    head_dim = width // heads
    _, k, v = F.linear(block.ln_1(x), attn.in_proj_weight, attn.in_proj_bias).chunk(3, dim=-1)
    k = k.reshape(b, n, heads, head_dim).transpose(1, 2)  # [B, H, N, d]
    v = v.reshape(b, n, heads, head_dim).transpose(1, 2)
    centred = (mid - mid.mean(dim=(1, 2), keepdim=True)) * scale
    centred = torch.where(centred < 0.0, torch.full_like(centred, float("-inf")), centred)
    weights = torch.softmax(centred, dim=-1)[:, None] + torch.softmax((k @ k.transpose(-2, -1)) * head_dim**-0.5, -1)
    out = ((weights / 2) @ v).transpose(1, 2).reshape(b, n, width)
    return F.linear(out, attn.out_proj.weight, attn.out_proj.bias)


def scclip_encode(
    blocks: Any, x: torch.Tensor, grid: Tuple[int, int], s: SCCLIPSettings, batch_first: bool = True
) -> torch.Tensor:
    """SC-CLIP's transformer: ``x [B, 1 + N, W]`` (after ``ln_pre``, CLS first) -> ``[B, N, W]`` (before
    ``ln_post``). ``blocks``: the ViT's residual blocks (stock open_clip ``ResidualAttentionBlock``)."""
    feats: List[torch.Tensor] = []
    for blk in blocks[:-1]:
        x = blk(x) if batch_first else blk(x.transpose(0, 1)).transpose(0, 1)
        feats.append(x)
    cls = x[:, :1]
    outliers = lof_outliers(x[:, 1:], s.lof_neighbors, s.lof_contamination)
    x = repair_anomalies(x[:, 1:], outliers, grid)
    mid = _cosine(repair_anomalies(feats[s.pre_adjust_idx][:, 1:], outliers, grid))
    x = _aggregate(x, _threshold(mid, s.beta))
    last = blocks[-1]
    x = _adjusted_attention(last, x, mid, s.attention_scale) + s.res_cls * cls
    after = _threshold(_cosine(feats[s.post_adjust_idx][:, 1:]), s.beta)
    x = _aggregate(x, after)
    multi = torch.zeros_like(feats[0])
    for i in range(s.multi_start_idx, s.multi_end_idx):
        multi = multi + feats[i]
    fused = _adjusted_attention(last, multi[:, 1:], mid, s.attention_scale) + s.res_cls * multi[:, :1]
    return x + _aggregate(fused, after)
