"""GroupViT-style grouping (Xu et al., CVPR 2022), as ZeroSeg's segmentation head uses it.

Written from the GroupViT paper/code structure (``models/group_vit.py``: token-MLP over group tokens, a
cross-attention block from group tokens to image tokens, then an assignment attention whose softmax runs over the
GROUP axis, Gumbel noise while training, hard one-hot assignment with a straight-through gradient, and
``assign / (sum over tokens + eps)`` averaging).
"""

from __future__ import annotations

from typing import Dict, Tuple

import torch
import torch.nn.functional as F
from timm.layers import Mlp
from torch import nn

__all__ = ["hard_softmax", "assignment", "AssignAttention", "CrossAttentionBlock", "GroupingBlock", "TokenMlp"]


def hard_softmax(logits: torch.Tensor, dim: int) -> torch.Tensor:
    """One-hot of the argmax along ``dim`` in the forward pass, the softmax's gradient in the backward pass."""
    soft = logits.softmax(dim)
    index = soft.argmax(dim, keepdim=True)
    hard = torch.zeros_like(soft).scatter_(dim, index, 1.0)
    return hard - soft.detach() + soft


def assignment(
    logits: torch.Tensor, hard: bool, gumbel: bool, tau: float, training: bool, dim: int = -2
) -> torch.Tensor:
    """Assignment weights from ``logits [B, S, N]`` (S groups, N tokens), normalised over the group axis ``dim``.

    Gumbel noise is used only while training (GroupViT); ``hard`` gives one-hot rows with straight-through grads.
    """
    if gumbel and training:
        return F.gumbel_softmax(logits, tau=tau, hard=hard, dim=dim)
    if hard:
        return hard_softmax(logits, dim)
    return logits.softmax(dim)


class AssignAttention(nn.Module):
    """Single-head attention from group tokens (queries) to image tokens; each image token is assigned to one
    group (softmax over groups), and each group's output is the (eps-regularised) mean of its tokens' values."""

    def __init__(
        self, dim: int, hard: bool = True, gumbel: bool = True, gumbel_tau: float = 1.0, assign_eps: float = 1.0
    ):
        super().__init__()
        self.scale = dim**-0.5
        self.q_proj = nn.Linear(dim, dim)
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)
        self.hard, self.gumbel, self.gumbel_tau, self.assign_eps = hard, gumbel, gumbel_tau, assign_eps

    def forward(self, groups: torch.Tensor, tokens: torch.Tensor) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        """Args: groups [B, S, D], tokens [B, N, D]. Returns (new group features [B, S, D], {"hard", "soft"}: the
        assignment actually used [B, S, N] and the plain softmax over groups [B, S, N])."""
        q, k, v = self.q_proj(groups), self.k_proj(tokens), self.v_proj(tokens)
        logits = (q @ k.transpose(-2, -1)) * self.scale  # [B, S, N]
        attn = assignment(logits, self.hard, self.gumbel, self.gumbel_tau, self.training, dim=-2)
        soft = logits.softmax(dim=-2)
        weights = attn / (attn.sum(dim=-1, keepdim=True) + self.assign_eps)  # mean over each group's tokens
        out = self.proj(weights @ v)  # [B, S, D]
        return out, {"hard": attn, "soft": soft}


class CrossAttentionBlock(nn.Module):
    """Pre-norm cross-attention (queries attend to keys) + MLP, with a final LayerNorm (GroupViT post_norm)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.norm_q = nn.LayerNorm(dim)
        self.norm_k = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm_mlp = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.norm_post = nn.LayerNorm(dim)

    def forward(self, query: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
        """query [B, S, D], key [B, N, D] -> [B, S, D]."""
        k = self.norm_k(key)
        x = query + self.attn(self.norm_q(query), k, k, need_weights=False)[0]
        x = x + self.mlp(self.norm_mlp(x))
        return self.norm_post(x)


class TokenMlp(nn.Module):
    """An MLP across the token axis: [B, S_in, D] -> [B, S_out, D] (GroupViT's ``MixerMlp`` / ``mlp_inter``)."""

    def __init__(self, tokens_in: int, hidden: int, tokens_out: int):
        super().__init__()
        self.mlp = Mlp(tokens_in, hidden, tokens_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(x.transpose(1, 2)).transpose(1, 2)


class GroupingBlock(nn.Module):
    """Merge N image tokens into S segment tokens (GroupViT ``GroupingBlock``).

    Args:
        dim: token width.
        heads: heads of the pre-assignment cross attention.
        num_group_tokens: learnable group tokens entering the block (= output segments here).
    """

    def __init__(
        self,
        dim: int,
        heads: int,
        num_group_tokens: int,
        hard: bool = True,
        gumbel: bool = True,
        gumbel_tau: float = 1.0,
        assign_eps: float = 1.0,
        mlp_ratio: Tuple[float, float] = (0.5, 4.0),
    ):
        super().__init__()
        self.norm_tokens = nn.LayerNorm(dim)
        # GroupViT: hidden widths are fractions of the CHANNEL width (tokens_dim = 0.5 * dim, channels 4 * dim)
        self.token_mlp = TokenMlp(num_group_tokens, int(dim * mlp_ratio[0]), num_group_tokens)
        self.norm_post_tokens = nn.LayerNorm(dim)
        self.norm_x = nn.LayerNorm(dim)
        self.pre_assign = CrossAttentionBlock(dim, heads)
        self.assign = AssignAttention(dim, hard, gumbel, gumbel_tau, assign_eps)
        self.norm_new_x = nn.LayerNorm(dim)
        self.mlp_channels = Mlp(dim, int(dim * mlp_ratio[1]), dim)

    def forward(self, tokens: torch.Tensor, group_tokens: torch.Tensor) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        """Args: tokens [B, N, D] (image tokens), group_tokens [B, S, D]. Returns (segments [B, S, D],
        assignment dict {"hard", "soft"} of [B, S, N])."""
        x = self.norm_x(tokens)
        g = self.norm_tokens(group_tokens)
        g = self.norm_post_tokens(self.token_mlp(g))
        g = self.pre_assign(g, x)
        new, attn = self.assign(g, x)
        new = new + g
        new = new + self.mlp_channels(self.norm_new_x(new))
        return new, attn


def group_token_projector(prev_tokens: int, tokens: int, dim: int) -> nn.Module:
    """GroupViT's stage-to-stage group-token projector: LayerNorm + token MLP (prev S -> this stage's S, hidden
    width dim // 2 as GroupViT's MixerMlp)."""
    return nn.Sequential(nn.LayerNorm(dim), TokenMlp(prev_tokens, dim // 2, tokens))
