"""CLIP-RC's decode head: Region Alignment Module + bidirectional decoder + recovery decoder (official
``ATMSingleHeadSeg`` / ``RecoveryDecoder`` of ``uyzhang/CLIP-RC`` ``models/decode_heads/``, ``use_proj=False``).

With ``t [C, D]`` the (L2-normalised) class embeddings, ``g [B, D]`` the global image embedding, ``r [B, R, D]``
the bridge tokens (row-major ``r x r`` grid) and ``p [B, h*w, D]`` the patch embeddings:

* queries (``combine_token`` + ``q_proj``): ``q0[b, l*C + c] = concat((r[b,l] + g[b]) * t[c], t[c])`` (2D),
  ``q = q_proj(q0)`` -> ``R*C`` queries, region-major;
* keys (``lateral``): ``lateral_proj(concat(up(r), g, p))`` (3D -> D), ``up`` = bilinear (align_corners=False)
  of the ``r x r`` bridge map to ``h x w``;
* ``L`` decoder layers updating both sides from the PREVIOUS values:
  ``q, k = decoder_q[i](q, k), decoder_v[i](k, q)`` (ZegCLIP's ``TPN_DecoderLayer``: cross-attention only);
* mask logits ``q @ k^T`` (plain dot product, no scale) ``[B, R*C, h*w]``, averaged over the ``R`` regions of
  each class -> ``[B, C, h, w]``. The bilinear resize to the crop size, sigmoid, seen-class calibration and argmax
  are the shared ZegCLIP post-processing.
* training only: ``recovery_decoder(q, k)`` maps the decoded pair back; the recovery loss compares it with
  ``q0`` (2D) and ``p`` (D), both detached.

The official ``self_attn``/``norm1`` of every ``TPN_DecoderLayer`` (decoder_q, decoder_v, recovery decoder)
are never called; they are not built here (the importer reports them).

Because the keys attend to all queries, the classes are COUPLED: a class's mask depends on the whole vocabulary.
"""

from __future__ import annotations

import copy
from typing import Any, Dict, Tuple, cast

import torch
import torch.nn as nn
import torch.nn.functional as F

from zsseg_rt.models.zegclip.head import DecoderHead, TPNDecoderLayer, official_unused_per_layer

__all__ = ["CLIPRCHead", "RecoveryDecoder", "DecoderStack"]


class DecoderStack(nn.Module):
    """``layers``: a ModuleList of :class:`TPNDecoderLayer` (keys ``decoder_q.layers.{i}.*`` as officially)."""

    def __init__(self, layer: TPNDecoderLayer, num_layers: int):
        super().__init__()
        # torch's TransformerDecoder deep-copies one layer: identical initial weights, as officially.
        self.layers = nn.ModuleList([copy.deepcopy(layer) for _ in range(num_layers)])


def _trunc_normal_init_(module: nn.Module, std: float = 0.02) -> None:
    """Official ``trunc_normal_init(std=.02, bias=0)`` on Linear, ``constant_init(1, 0)`` on LayerNorm."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, mean=0.0, std=std, a=-2.0, b=2.0)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class RecoveryDecoder(nn.Module):
    """Official ``RecoveryDecoder``: ``linear_*_in`` -> bidirectional layers -> ``linear_q_out`` (D -> 2D) and
    ``linear_k_out`` (D -> D). Initialised as officially (its own ``init_weights`` runs in ``__init__``)."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        ffn_dim: int,
        num_layers: int = 1,
        dropout: float = 0.1,
        attn_dropout: float = 0.1,
    ):
        super().__init__()
        self.decouple_q = nn.ModuleList(
            [TPNDecoderLayer(dim, num_heads, ffn_dim, dropout, attn_dropout) for _ in range(num_layers)]
        )
        self.decouple_v = nn.ModuleList(
            [TPNDecoderLayer(dim, num_heads, ffn_dim, dropout, attn_dropout) for _ in range(num_layers)]
        )
        self.linear_q_in = nn.Linear(dim, dim)
        self.linear_k_in = nn.Linear(dim, dim)
        self.linear_q_out = nn.Linear(dim, dim * 2)
        self.linear_k_out = nn.Linear(dim, dim)
        if self.linear_q_in.weight.device.type != "meta":
            _trunc_normal_init_(self)

    def forward(self, q: torch.Tensor, lateral: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        q = self.linear_q_in(q)
        lateral = self.linear_k_in(lateral)
        for dq, dv in zip(self.decouple_q, self.decouple_v):
            q, lateral = dq(q, lateral)[0], dv(lateral, q)[0]
        return self.linear_q_out(q), self.linear_k_out(lateral)


class CLIPRCHead(DecoderHead):
    """Region Alignment Module + bidirectional decoder (+ recovery decoder for training): :class:`DecoderHead`'s
    arguments (the decoders' sizes), ``num_regions`` (region tokens) and ``recovery_layers``. Its modules in the
    official CLIP-RC head's parameter order (q/v decoders, recovery decoder, projections)."""

    def __init__(self, *args: Any, num_regions: int = 16, recovery_layers: int = 1, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.num_regions = int(num_regions)
        self.region_grid = int(round(self.num_regions**0.5))
        self.decoder_q = DecoderStack(self.decoder_layer(), self.decoder_layers)
        self.decoder_v = DecoderStack(self.decoder_layer(), self.decoder_layers)
        self.recovery_decoder = RecoveryDecoder(num_layers=recovery_layers, **self.layer_args)
        self.lateral_proj = nn.Linear(self.dim * 3, self.dim)
        self.q_proj = nn.Linear(self.dim * 2, self.dim)

    @property
    def num_layers(self) -> int:
        return len(self.decoder_q.layers)

    def init_weights(self) -> None:
        """The official head ``init_weights`` (trunc-normal Linear, unit LayerNorm, zero ``decoder_v`` FFN output).

        Note: the official ``train.py`` never calls it (only ``backbone``/``text_encoder.init_weights``), so the
        released models start from PyTorch's default init except the recovery decoder; this is NOT called by
        default either.
        """
        _trunc_normal_init_(self)
        for layer in cast(nn.ModuleList, self.decoder_v.layers):
            linear2 = cast(nn.Linear, layer.linear2)
            nn.init.zeros_(linear2.weight)
            nn.init.zeros_(linear2.bias)

    # ------------------------------------------------------------------ pieces
    def combine_tokens(self, text: torch.Tensor, image_global: torch.Tensor, regions: torch.Tensor) -> torch.Tensor:
        """Official ``combine_token``: ``text [C,D]``/``[B,C,D]``, ``image_global [B,D]``, ``regions [B,R,D]`` ->
        ``[B, R*C, 2D]`` (index ``l*C + c``)."""
        b, nr, d = regions.shape
        if text.dim() == 2:
            text = text.unsqueeze(0).expand(b, -1, -1)
        rg = (regions + image_global.unsqueeze(1)).unsqueeze(2)  # [B, R, 1, D]
        t = text.unsqueeze(1)  # [B, 1, C, D]
        mixed = (rg * t).reshape(b, -1, d)
        plain = t.expand(-1, nr, -1, -1).reshape(b, -1, d)
        return torch.cat([mixed, plain], dim=-1)

    def keys_input(
        self, image_global: torch.Tensor, patches: torch.Tensor, regions: torch.Tensor, grid: Tuple[int, int]
    ) -> torch.Tensor:
        """``concat(up(regions), g, patches)`` ``[B, h*w, 3D]``."""
        b, nr, d = regions.shape
        h, w = int(grid[0]), int(grid[1])
        r = self.region_grid
        rmap = regions.transpose(1, 2).reshape(b, d, r, r)
        if (h, w) != (r, r):
            rmap = F.interpolate(rmap, size=(h, w), mode="bilinear", align_corners=False)
        up = rmap.reshape(b, d, h * w).transpose(1, 2)
        g = image_global.unsqueeze(1).expand(-1, h * w, -1)
        return torch.cat([up, g, patches], dim=-1)

    def decode(self, q: torch.Tensor, lateral: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """The bidirectional decoder; each layer reads the previous ``(q, lateral)`` on both sides."""
        for dq, dv in zip(self.decoder_q.layers, self.decoder_v.layers):
            q, lateral = dq(q, lateral, need_logits=False)[0], dv(lateral, q, need_logits=False)[0]
        return q, lateral

    def fuse_regions(self, logits: torch.Tensor) -> torch.Tensor:
        """``[B, R*C, N]`` -> mean over the R regions of each class ``[B, C, N]`` (official ``fusion_attn_map``)."""
        b, _, n = logits.shape
        return logits.reshape(b, self.num_regions, -1, n).mean(dim=1)

    def forward(
        self,
        text: torch.Tensor,
        image_global: torch.Tensor,
        patches: torch.Tensor,
        regions: torch.Tensor,
        grid: Tuple[int, int],
        return_recovery: bool = False,
    ):
        """Mask logits ``[B, C, h, w]``; with ``return_recovery`` also a dict with the recovery decoder's output
        (``q``, ``lateral``) and its detached targets (``ori_q``, ``ori_lateral``)."""
        q0 = self.combine_tokens(text, image_global, regions)
        q = self.q_proj(q0)
        lateral = self.lateral_proj(self.keys_input(image_global, patches, regions, grid))
        q, lateral = self.decode(q, lateral)
        logits = self.fuse_regions(q @ lateral.transpose(-2, -1))
        b, c, _ = logits.shape
        logits = logits.reshape(b, c, int(grid[0]), int(grid[1]))
        if not return_recovery:
            return logits
        rq, rk = self.recovery_decoder(q, lateral)
        rec: Dict[str, torch.Tensor] = {"q": rq, "lateral": rk, "ori_q": q0.detach(), "ori_lateral": patches.detach()}
        return logits, rec

    # ------------------------------------------------------------------ bookkeeping
    def num_official_unused_parameters(self) -> int:
        """Parameters of the never-called ``self_attn`` + ``norm1`` of every official ``TPN_DecoderLayer``."""
        n_layers = 2 * self.num_layers + len(self.recovery_decoder.decouple_q) + len(self.recovery_decoder.decouple_v)
        return official_unused_per_layer(self.dim) * n_layers
