"""ZegCLIP's decode head (``ATMSingleHeadSeg`` with ``use_proj=False``, official ``decode_seg.py``).

* Relationship descriptor: ``q = q_proj(concat[t * g, t])`` (``get_qs``), ``t`` the class embeddings, ``g`` the
  global image embedding, one query per class.
* ``TPN_DecoderLayer`` x3, cross-attention ONLY (the official ``self_attn``/``norm1`` exist in the checkpoint
  but are never called; they are not built here)::

      tgt2, attn = multihead_attn(tgt, memory, memory)   # custom Attention, see below
      tgt = norm2(tgt + dropout2(tgt2))
      tgt = norm3(tgt + dropout3(linear2(dropout(relu(linear1(tgt))))))

* ``Attention``: separate ``q``/``k``/``v``/``proj`` Linear layers with bias, ``scale = head_dim ** -0.5``,
  ``attn = (q @ k^T) * scale``; the returned map is the PRE-softmax ``attn.sum(heads) / num_heads``
  (scale included), shape ``[B, C, HW]``; softmax -> attn_drop -> ``@ v`` -> proj.
* Mask logits = the LAST layer's map, reshaped to ``[B, C, h, w]``. The last layer's output queries are never
  used (not in inference, not in the loss), so that part of the last layer is not computed here; its
  parameters exist for checkpoint compatibility (and, as in the official code, get no gradient).

Because the heads are averaged, ``mean_h(scale * q_h . k_h) = (scale / H) * (q . k)`` over the full width: the
mask logits are a plain similarity ``(scale/H) * <Wq q + bq, Wk m + bk>`` (used by the native-op path).
"""

from __future__ import annotations

import copy
from typing import Any, Dict, List, Optional, Tuple, cast

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["CrossAttention", "TPNDecoderLayer", "DecoderHead", "ZegCLIPHead"]


class CrossAttention(nn.Module):
    """The official ``Attention`` module (SegViT): plain MatMul-Softmax, exportable.

    Two switches for reduced-precision inference (both off by default, so training, export and fp32 inference
    compute exactly the official order; the torch backend turns them on for fp16/bf16,
    ``zsseg_rt.export.torch_precision``):

    * ``fused_attention``: a call whose logits are not needed (``need_logits=False``: every decoder layer but the
      last) runs ``F.scaled_dot_product_attention`` (one fused kernel, fp32 softmax inside) for the same
      ``softmax(q k^T * scale) v``; the last layer's head-averaged pre-softmax logits (the mask logits) are always
      computed explicitly, since no fused kernel returns them.
    * ``float_logits``: those mask logits are computed in fp32 from the (reduced-precision) q/k projections.
    """

    fused_attention = False
    float_logits = False

    def __init__(self, dim: int, num_heads: int = 8, attn_drop: float = 0.1, proj_drop: float = 0.0):
        super().__init__()
        if dim % num_heads != 0:
            raise ValueError(f"dim {dim} not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.q = nn.Linear(dim, dim, bias=True)
        self.k = nn.Linear(dim, dim, bias=True)
        self.v = nn.Linear(dim, dim, bias=True)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        return x.reshape(b, n, self.num_heads, c // self.num_heads).permute(0, 2, 1, 3)

    def logits(self, xq: torch.Tensor, xk: torch.Tensor) -> torch.Tensor:
        """Scaled pre-softmax logits per head ``[B, H, Nq, Nk]``."""
        q = self._split(self.q(xq))
        k = self._split(self.k(xk))
        if self.float_logits:
            q, k = q.float(), k.float()
        return (q @ k.transpose(-2, -1)) * self.scale

    def mean_logits(self, xq: torch.Tensor, xk: torch.Tensor) -> torch.Tensor:
        """Head-averaged pre-softmax logits ``[B, Nq, Nk]`` (official ``attn_save.sum(1) / num_heads``)."""
        return self.logits(xq, xk).sum(dim=1) / self.num_heads

    def forward(
        self, xq: torch.Tensor, xk: torch.Tensor, xv: torch.Tensor, need_logits: bool = True
    ) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """``(output [B, Nq, D], head-averaged logits [B, Nq, Nk] or None when not needed and fused)``."""
        b, nq, c = xq.shape
        v = self._split(self.v(xv))
        if self.fused_attention and not need_logits:
            q, k = self._split(self.q(xq)), self._split(self.k(xk))
            drop = self.attn_drop.p if self.training else 0.0
            x = F.scaled_dot_product_attention(q, k, v, dropout_p=drop, scale=self.scale)
            return self.proj_drop(self.proj(x.transpose(1, 2).reshape(b, nq, c))), None
        attn = self.logits(xq, xk)
        attn_save = attn.sum(dim=1) / self.num_heads
        attn = attn.softmax(dim=-1)
        attn = self.attn_drop(attn)
        if attn.dtype != v.dtype:  # float_logits with reduced-precision values
            attn = attn.to(v.dtype)
        x = (attn @ v).transpose(1, 2).reshape(b, nq, c)
        x = self.proj_drop(self.proj(x))
        return x, attn_save


class TPNDecoderLayer(nn.Module):
    """Official ``TPN_DecoderLayer`` without the unused self-attention (post-norm, ReLU FFN)."""

    def __init__(self, dim: int, num_heads: int, ffn_dim: int, dropout: float = 0.1, attn_dropout: float = 0.1):
        super().__init__()
        self.multihead_attn = CrossAttention(dim, num_heads, attn_drop=attn_dropout)
        self.linear1 = nn.Linear(dim, ffn_dim)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(ffn_dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.norm3 = nn.LayerNorm(dim)
        self.dropout2 = nn.Dropout(dropout)
        self.dropout3 = nn.Dropout(dropout)

    def forward(
        self, tgt: torch.Tensor, memory: torch.Tensor, need_logits: bool = True
    ) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """``tgt [B, C, D]``, ``memory [B, N, D]`` -> (new tgt ``[B, C, D]``, logits ``[B, C, N]``; None when
        ``need_logits=False`` lets the attention run fused: ``CrossAttention.fused_attention``)."""
        tgt2, attn = self.multihead_attn(tgt, memory, memory, need_logits=need_logits)
        tgt = self.norm2(tgt + self.dropout2(tgt2))
        tgt2 = self.linear2(self.dropout(F.relu(self.linear1(tgt))))
        tgt = self.norm3(tgt + self.dropout3(tgt2))
        return tgt, attn


def official_unused_per_layer(dim: int) -> int:
    """Parameters of one official ``TPN_DecoderLayer``'s never-called ``self_attn`` (in/out projections) and
    ``norm1``, which this port does not build."""
    return (3 * dim * dim + 3 * dim) + (dim * dim + dim) + 2 * dim


class DecoderHead(nn.Module):
    """What ZegCLIP's and CLIP-RC's decode heads share: the sizes of their ``TPNDecoderLayer`` decoders
    (:meth:`decoder_layer` builds one). No parameters of its own: each head builds its modules in its official
    parameter order (:class:`ZegCLIPHead`; ``zsseg_rt.models.cliprc.head.CLIPRCHead``)."""

    def __init__(
        self,
        dim: int = 512,
        num_layers: int = 3,
        num_heads: int = 8,
        ffn_dim: int = 2048,
        dropout: float = 0.1,
        attn_dropout: float = 0.1,
    ):
        super().__init__()
        if num_layers < 1:
            raise ValueError("the decoder needs at least one layer")
        self.dim = dim
        self.num_heads = num_heads
        self.decoder_layers = num_layers
        self.layer_args: Dict[str, Any] = dict(
            dim=dim, num_heads=num_heads, ffn_dim=ffn_dim, dropout=dropout, attn_dropout=attn_dropout
        )

    def decoder_layer(self) -> TPNDecoderLayer:
        """A new decoder layer of these sizes."""
        return TPNDecoderLayer(**self.layer_args)


class ZegCLIPHead(DecoderHead):
    """Relationship descriptor + cross-attention decoder -> mask logits ``[B, C, h, w]``; :class:`DecoderHead`'s
    arguments."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.q_proj = nn.Linear(2 * self.dim, self.dim)
        # torch's TransformerDecoder deep-copies ONE layer num_layers times, so the official layers all start
        # from identical weights; reproduce that.
        layer = self.decoder_layer()
        self.layers = nn.ModuleList([copy.deepcopy(layer) for _ in range(self.decoder_layers)])

    @staticmethod
    def relation(text: torch.Tensor, image_global: torch.Tensor) -> torch.Tensor:
        """``concat[t * g, t]``: ``text [C, D]`` or ``[B, C, D]``, ``image_global [B, D]`` -> ``[B, C, 2D]``."""
        b = image_global.shape[0]
        if text.dim() == 2:
            text = text.unsqueeze(0).expand(b, -1, -1)
        return torch.cat([text * image_global.unsqueeze(1), text], dim=-1)

    def queries(self, text: torch.Tensor, image_global: torch.Tensor) -> torch.Tensor:
        return self.q_proj(self.relation(text, image_global))

    def forward_queries(self, q: torch.Tensor, patches: torch.Tensor) -> torch.Tensor:
        """Run the decoder from class queries ``[B, C, D]``; returns the last layer's logits ``[B, C, N]``."""
        for layer in self.layers[:-1]:
            q, _ = layer(q, patches, need_logits=False)
        return self.layers[-1].multihead_attn.mean_logits(q, patches)

    def forward_all(self, q: torch.Tensor, patches: torch.Tensor) -> List[torch.Tensor]:
        """Every layer's logits (the official code computes them all; only the last is used)."""
        out = []
        for layer in self.layers:
            q, attn = layer(q, patches)
            out.append(cast(torch.Tensor, attn))
        return out

    def forward(
        self,
        text: torch.Tensor,
        image_global: torch.Tensor,
        patches: torch.Tensor,
        grid: Tuple[int, int],
    ) -> torch.Tensor:
        q = self.queries(text, image_global)
        logits = self.forward_queries(q, patches)
        b, c, _ = logits.shape
        return logits.reshape(b, c, int(grid[0]), int(grid[1]))

    def num_official_unused_parameters(self) -> int:
        """Parameters of the official (never called) ``self_attn`` + ``norm1`` in every layer."""
        return official_unused_per_layer(self.dim) * len(self.layers)
