"""ZegCLIP's image encoder: an open_clip CLIP ViT with deep visual prompt tuning (VPT-deep).

Computes exactly the official ``VPTCLIPVisionTransformer.forward`` (ZegCLIP ``models/backbone/img_encoder.py``):

1. ``conv1`` patchify -> tokens ``[B, h*w, W]``; prepend CLS = ``class_embedding``.
2. Add positional embeddings. The stored table is at the training grid (``image_size // patch``, e.g. 32x32 at
   512); it is bilinearly resized (align_corners=False) to the actual ``(h, w)`` grid, skipped when equal.
   The CLS position gets ``pos[0] + class_embedding`` (official quirk: CLS ends up ``2*class_embedding +
   pos[0]``); ``fix_double_class_embedding=True`` gives the plain ``class_embedding + pos[0]``.
3. ``ln_pre``, then insert ``N`` prompt tokens ``dropout(prompt_proj(prompt_embeddings))`` after CLS.
4. Before layers ``1..deep`` the tokens ``[1:1+N]`` are replaced with ``dropout(prompt_proj(deep[i-1]))``;
   after the deep layers (only when ``0 < deep < layers-1``) prompts are dropped as the official code does.
5. ``prompt_norm`` (skipped by the official shallow variant, ``deep == 0``) (LayerNorm eps 1e-6) -> ``ln_post`` -> ``@ proj`` on all tokens.
6. global = token 0, patches = last ``h*w`` tokens; both L2-normalised.

Unlike the official ``d3_to_d4``, non-square grids are handled with the real ``(h, w)``.
"""

from __future__ import annotations

import math
from functools import reduce
from operator import mul
from typing import Tuple, cast

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["PromptedVisionTransformer", "resize_pos_embed_official"]


# twin of training_free.model.resize_positional_embedding (bicubic): each transcribes its own official code
def resize_pos_embed_official(pos: torch.Tensor, grid: Tuple[int, int]) -> torch.Tensor:
    """Resize a ``[1 + g*g, W]`` CLIP positional table to ``[1 + gh*gw, W]`` the official way.

    Bilinear, ``align_corners=False``, no anti-aliasing (``F.interpolate(..., mode='bilinear')``), CLS row kept.
    """
    n, width = pos.shape
    g = int(round(math.sqrt(n - 1)))
    if g * g != n - 1:
        raise ValueError(f"positional embedding with {n - 1} spatial rows is not a square grid")
    gh, gw = int(grid[0]), int(grid[1])
    if (gh, gw) == (g, g):
        return pos.clone()
    spatial = pos[1:].reshape(1, g, g, width).permute(0, 3, 1, 2).float()
    spatial = F.interpolate(spatial, size=(gh, gw), mode="bilinear", align_corners=False)
    spatial = spatial.reshape(width, gh * gw).permute(1, 0).to(pos.dtype)
    return torch.cat([pos[:1], spatial], dim=0)


class PromptedVisionTransformer(nn.Module):
    """CLIP ViT (open_clip ``VisionTransformer`` modules, OpenAI key names) + VPT-deep prompts.

    Parameter names match the official ``backbone.*`` keys exactly.
    """

    def __init__(
        self,
        visual: nn.Module,
        num_tokens: int,
        deep_layers: int,
        prompt_dropout: float = 0.1,
        fix_double_class_embedding: bool = False,
    ):
        super().__init__()
        if getattr(visual, "attn_pool", None) is not None:
            raise ValueError("open_clip ViTs with attentional pooling are not supported by ZegCLIP")
        if getattr(visual, "pool_type", "tok") != "tok":
            raise ValueError(f"ZegCLIP needs a CLS-token ViT (pool_type='tok'), got {visual.pool_type!r}")
        if not hasattr(visual, "conv1") or not hasattr(visual, "transformer"):
            raise ValueError("only open_clip VisionTransformer towers are supported (no ResNet / timm towers)")
        self.conv1 = cast(nn.Conv2d, visual.conv1)
        self.class_embedding = cast(torch.Tensor, visual.class_embedding)
        self.positional_embedding = cast(torch.Tensor, visual.positional_embedding)
        self.ln_pre = visual.ln_pre
        self.transformer = cast(nn.Module, visual.transformer)
        self.ln_post = visual.ln_post
        self.proj = visual.proj

        width = int(self.conv1.out_channels)
        patch = self.conv1.kernel_size
        self.width = width
        self.patch_size = (int(patch[0]), int(patch[1]))
        self.num_layers = len(cast(nn.ModuleList, self.transformer.resblocks))
        g = int(round(math.sqrt(self.positional_embedding.shape[0] - 1)))
        self.grid = (g, g)
        self.num_tokens = int(num_tokens)
        self.deep_layers = int(deep_layers)
        self.fix_double_class_embedding = bool(fix_double_class_embedding)
        self.batch_first = bool(getattr(self.transformer, "batch_first", True))

        # Official init (img_encoder.py _init_prompt): xavier-uniform-like bound over (3*p*p + prompt_dim).
        val = math.sqrt(6.0 / float(3 * reduce(mul, self.patch_size, 1) + width))
        self.prompt_embeddings = nn.Parameter(torch.zeros(1, self.num_tokens, width))
        self.deep_prompt_embeddings = nn.Parameter(torch.zeros(self.deep_layers, self.num_tokens, width))
        self.prompt_proj = nn.Linear(width, width)
        self.prompt_norm = nn.LayerNorm(width, eps=1e-6)
        self.prompt_dropout = nn.Dropout(prompt_dropout)
        self.prompt_init_bound = val
        self.reset_prompts()

    def reset_prompts(self) -> None:
        """Official initialisation of the prompt parameters."""
        val = self.prompt_init_bound
        if self.prompt_embeddings.device.type == "meta":
            return
        with torch.no_grad():
            nn.init.uniform_(self.prompt_embeddings, -val, val)
            nn.init.uniform_(self.deep_prompt_embeddings, -val, val)
            nn.init.kaiming_normal_(self.prompt_proj.weight, a=0, mode="fan_out")
            # prompt_proj.bias keeps nn.Linear's default init, as in the official code
            self.prompt_norm.reset_parameters()

    # ------------------------------------------------------------------ forward
    def _positional(self, h: int, w: int, dtype: torch.dtype) -> torch.Tensor:
        pos = self.positional_embedding.to(dtype)
        width = int(pos.shape[-1])
        cls_pos = pos[0]
        if not self.fix_double_class_embedding:
            cls_pos = cls_pos + self.class_embedding.to(dtype)
        gh, gw = self.grid
        spatial = pos[1:]
        if (h, w) != (gh, gw):  # shape-only branch: constant under tracing / ONNX export
            spatial = spatial.reshape(1, gh, gw, width).permute(0, 3, 1, 2)
            spatial = F.interpolate(spatial, size=(h, w), mode="bilinear", align_corners=False)
            spatial = spatial.reshape(width, h * w).permute(1, 0)
        return torch.cat([cls_pos.reshape(1, width), spatial], dim=0).unsqueeze(0)

    def _block(self, i: int, x: torch.Tensor) -> torch.Tensor:
        blk = self.transformer.resblocks[i]
        if self.batch_first:
            return blk(x)
        return blk(x.transpose(0, 1)).transpose(0, 1)

    def _embed(self, images: torch.Tensor) -> Tuple[torch.Tensor, int, int, int]:
        """``[CLS, patch tokens] + positional`` (before ``ln_pre``): ``([B, 1+h*w, W], B, h, w)``."""
        x = self.conv1(images)
        b, c, h, w = x.shape
        x = x.reshape(b, c, h * w).permute(0, 2, 1)
        cls = self.class_embedding.to(x.dtype).reshape(1, 1, c).expand(b, 1, c)
        x = torch.cat([cls, x], dim=1)
        return x + self._positional(h, w, x.dtype), b, h, w

    def _with_prompts(self, x: torch.Tensor, b: int) -> torch.Tensor:
        """The prompt tokens inserted after CLS."""
        # official order: project, expand to the batch, THEN dropout (an independent mask per image in training)
        prompts = self.prompt_dropout(self.prompt_proj(self.prompt_embeddings).expand(b, -1, -1))
        return torch.cat([x[:, :1], prompts.to(x.dtype), x[:, 1:]], dim=1)

    def _with_deep_prompts(self, i: int, x: torch.Tensor, b: int) -> torch.Tensor:
        """Block ``i``'s deep prompts in place of the previous prompt tokens."""
        deep = self.prompt_proj(self.deep_prompt_embeddings[i - 1]).unsqueeze(0).expand(b, -1, -1)
        deep = self.prompt_dropout(deep).to(x.dtype)
        return torch.cat([x[:, :1], deep, x[:, 1 + self.num_tokens :]], dim=1)

    def forward_tokens(self, images: torch.Tensor) -> Tuple[torch.Tensor, int, int]:
        """All output tokens after prompt_norm, ln_post and proj: ``([B, 1+N+h*w, D], h, w)``."""
        x, b, h, w = self._embed(images)
        x = self._with_prompts(self.ln_pre(x), b)
        for i in range(self.num_layers):
            if 1 <= i <= self.deep_layers:
                x = self._with_deep_prompts(i, x, b)
            elif self.deep_layers > 0 and i > self.deep_layers:
                x = torch.cat([x[:, :1], x[:, -(h * w) :]], dim=1)  # official: prompts dropped
            x = self._block(i, x)
        if self.deep_layers > 0:  # official: the shallow variant (total_d_layer=0) skips prompt_norm
            x = self.prompt_norm(x)
        x = self.ln_post(x)
        x = x @ self.proj
        return x, h, w

    def forward(self, images: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, Tuple[int, int]]:
        x, h, w = self.forward_tokens(images)
        image_global = F.normalize(x[:, 0], dim=-1)
        patches = F.normalize(x[:, -(h * w) :], dim=-1)
        return image_global, patches, (h, w)
