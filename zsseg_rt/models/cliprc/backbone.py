"""CLIP-RC's image encoder: ZegCLIP's prompted CLIP ViT plus the Region-Level Bridge (official
``CLIPVisionTransformerWithRLB``, ``models/backbone/img_encoder_rlb.py``).

Differences from :class:`~zsseg_rt.models.zegclip.backbone.PromptedVisionTransformer`, in the official order:

1. After the positional embedding is added (CLS and patches as in ZegCLIP), ``R`` bridge tokens
   ``region_level_bridge [R, W]`` are APPENDED (no positional embedding of their own: the official init already
   holds ``class_embedding + positional_embedding[0]``). Then ``ln_pre`` and the prompts after CLS, so the token
   layout is ``[CLS, N prompts, h*w patches, R bridges]``.
2. Every block runs with the official static additive mask (:func:`region_bridge_attention_mask`).
3. Deep prompts replace tokens ``[1:1+N]`` as in ZegCLIP; where the official code drops the prompts (only when
   ``0 < deep < layers-1``) the bridges are kept (``hidden[1+N:]``) and the mask without prompt rows is used.
4. ``prompt_norm`` on every token EXCEPT the bridges (deep variant only), then ``ln_post`` and ``@ proj`` on all.
5. Outputs: ``image_global`` (token 0), ``patches [B, h*w, D]`` and ``regions [B, R, D]`` (row-major over the
   ``r x r`` bridge grid), each L2-normalised.

The mask is built for the training grid, so the input size is FIXED at ``image_size`` (larger images go through
sliding windows); ``forward`` raises for any other size.
"""

from __future__ import annotations

import math
from typing import Any, Tuple, cast

import torch
import torch.nn as nn
import torch.nn.functional as F

from zsseg_rt.models.zegclip.backbone import PromptedVisionTransformer

__all__ = ["RegionBridgeVisionTransformer", "region_bridge_attention_mask", "region_of_patch"]


def region_of_patch(grid: int, region_grid: int) -> torch.Tensor:
    """``[grid*grid]`` long: the bridge token (row-major ``i*r + j``) whose block holds each patch, -1 if none.

    Official geometry: ``stride = grid // region_grid``; bridge ``(i, j)`` owns patch rows ``[i*s, (i+1)*s)`` and
    columns ``[j*s, (j+1)*s)``. When ``grid`` is not a multiple of ``region_grid`` the trailing rows/columns
    belong to no bridge (as in the official code).
    """
    g, r = int(grid), int(region_grid)
    s = g // r
    if s < 1:
        raise ValueError(f"patch grid {g} is smaller than the region grid {r}")
    rows = torch.arange(g, device="cpu") // s
    rows = torch.where(rows < r, rows, torch.full_like(rows, -1))
    ri = rows.reshape(g, 1).expand(g, g)
    ci = rows.reshape(1, g).expand(g, g)
    region = torch.where((ri >= 0) & (ci >= 0), ri * r + ci, torch.full_like(ri, -1))
    return region.reshape(-1)


def region_bridge_attention_mask(num_prompts: int, grid: int, region_grid: int) -> torch.Tensor:
    """Official ``gen_attention_mask``: additive float mask ``[L, L]`` (0 = may attend, -inf = blocked), rows are
    queries, columns keys, ``L = 1 + num_prompts + grid*grid + region_grid**2``.

    * CLS, prompts, patches attend to CLS, prompts and every patch;
    * a patch also attends to ITS OWN bridge token, never to the others;
    * a bridge token attends only to itself and to the patches of its block;
    * CLS and prompt tokens never see bridge tokens.
    """
    n, g, r = int(num_prompts), int(grid), int(region_grid)
    nr = r * r
    hw = g * g
    size = 1 + n + hw + nr
    mask = torch.zeros(size, size, dtype=torch.float32, device="cpu")  # built on the CPU (also under meta)
    mask[:, size - nr :] = float("-inf")
    mask[size - nr :, :] = float("-inf")
    region = region_of_patch(g, r)
    patch_idx = torch.arange(hw, device="cpu") + 1 + n
    owned = region >= 0
    bridge_idx = size - nr + region[owned]
    mask[bridge_idx, patch_idx[owned]] = 0.0
    mask[patch_idx[owned], bridge_idx] = 0.0
    diag = torch.arange(size - nr, size, device="cpu")
    mask[diag, diag] = 0.0
    return mask


class RegionBridgeVisionTransformer(PromptedVisionTransformer):
    """Prompted CLIP ViT + region-level bridge tokens + the static attention mask.

    Parameter names match the official ``backbone.*`` keys (``region_level_bridge`` included); the masks are
    non-persistent buffers (the official mask is a plain attribute, not in the checkpoint).
    """

    def __init__(self, visual: nn.Module, *args: Any, region_bridge_size: int = 16, **kwargs: Any):
        """:class:`PromptedVisionTransformer`'s arguments (``ZegCLIP.prompt_args``) and ``region_bridge_size``
        (bridge tokens, a square number)."""
        super().__init__(visual, *args, **kwargs)
        r = int(round(math.sqrt(region_bridge_size)))
        if r * r != int(region_bridge_size) or r < 1:
            raise ValueError(f"region_bridge_size must be a positive square number, got {region_bridge_size}")
        gh, gw = self.grid
        if gh < r:
            raise ValueError(f"patch grid {gh}x{gw} is smaller than the {r}x{r} region-bridge grid")
        self.region_grid = r
        self.num_regions = r * r
        self.region_level_bridge = nn.Parameter(torch.zeros(self.num_regions, int(self.width)))
        self.register_buffer("attn_mask", region_bridge_attention_mask(self.num_tokens, gh, r), persistent=False)
        self._drops_prompts = 0 < self.deep_layers < self.num_layers - 1
        if self._drops_prompts:
            self.register_buffer("attn_mask_no_prompts", region_bridge_attention_mask(0, gh, r), persistent=False)
        self.reset_region_bridge()

    @torch.no_grad()
    def reset_region_bridge(self) -> None:
        """Official init (``init_weights`` after loading CLIP): every bridge = ``class_embedding + pos[0]``."""
        if self.region_level_bridge.device.type == "meta":
            return
        init = (self.class_embedding + self.positional_embedding[0]).to(self.region_level_bridge.dtype)
        self.region_level_bridge.copy_(init.reshape(1, -1).expand_as(self.region_level_bridge))

    def _masked_block(self, i: int, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        blk = self.transformer.resblocks[i]
        if self.batch_first:
            return blk(x, attn_mask=mask)
        return blk(x.transpose(0, 1), attn_mask=mask).transpose(0, 1)

    def forward_tokens(self, images: torch.Tensor) -> Tuple[torch.Tensor, int, int]:
        """All output tokens after (prompt_norm), ln_post and proj: ``([B, 1+N'+h*w+R, D], h, w)``."""
        x, b, h, w = self._embed(images)
        if (h, w) != tuple(self.grid):
            ph, pw = self.patch_size
            raise ValueError(
                f"CLIP-RC's attention mask fixes the input at {self.grid[0] * ph}x{self.grid[1] * pw} pixels "
                f"(a {self.grid[0]}x{self.grid[1]} patch grid); got a {h}x{w} grid. Run larger images through "
                "sliding windows (zsseg_rt.contract.common.predict / the Engine)"
            )
        bridges = self.region_level_bridge.to(x.dtype).unsqueeze(0).expand(b, -1, -1)
        x = self._with_prompts(self.ln_pre(torch.cat([x, bridges], dim=1)), b)
        mask = cast(torch.Tensor, self.attn_mask)
        for i in range(self.num_layers):
            if 1 <= i <= self.deep_layers:
                x = self._with_deep_prompts(i, x, b)
            elif self.deep_layers > 0 and i > self.deep_layers:
                if mask is self.attn_mask:  # official: prompts dropped once, bridges kept
                    x = torch.cat([x[:, :1], x[:, 1 + self.num_tokens :]], dim=1)
                    mask = cast(torch.Tensor, self.attn_mask_no_prompts)
            x = self._masked_block(i, x, mask)
        nr = self.num_regions
        if self.deep_layers > 0:  # official: prompt_norm on everything but the bridges (skipped when shallow)
            x = torch.cat([self.prompt_norm(x[:, :-nr]), x[:, -nr:]], dim=1)
        x = self.ln_post(x)
        x = x @ self.proj
        return x, h, w

    def forward(self, images: torch.Tensor):
        """``images [B,3,S,S]`` -> (``image_global [B,D]``, ``patches [B,h*w,D]``, ``regions [B,R,D]``, ``(h,w)``)."""
        x, h, w = self.forward_tokens(images)
        nr = self.num_regions
        image_global = F.normalize(x[:, 0], dim=-1)
        patches = F.normalize(x[:, -(h * w + nr) : -nr], dim=-1)
        regions = F.normalize(x[:, -nr:], dim=-1)
        return image_global, patches, regions, (h, w)
