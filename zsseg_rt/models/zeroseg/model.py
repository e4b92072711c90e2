"""The ZeroSeg student: MAE ViT encoder on the visible patches, MAE pixel decoder, GroupViT-style segmentation
head (grouping after layers 2 and 4: 32 then 8 segment tokens), and the MLP projector into CLIP space.

Shapes (defaults, 224 px, patch 16): 196 patches, 78 visible at mask ratio 0.6; segment tokens [B, 8, 768]
(CLIP ViT-L/14 embed dim), global embedding z [B, 768].
"""

from __future__ import annotations

import contextlib
from typing import Any, Dict, List, Optional, Tuple, Union, cast

import numpy as np
import torch
import torch.nn.functional as F
from timm.layers import PatchEmbed
from timm.models.vision_transformer import Block
from torch import nn

from .config import ZeroSegConfig
from .grouping import GroupingBlock, group_token_projector

__all__ = ["ZeroSeg", "sincos_pos_embed_2d", "random_masking", "patchify", "ProjectionMLP"]

NATIVE_FORMAT = "zsseg_rt.zeroseg.v1"


def sincos_pos_embed_2d(dim: int, grid: int) -> torch.Tensor:
    """MAE's fixed 2-D sine-cosine table ``[grid*grid, dim]`` (half the channels per axis, row-major grid)."""
    if dim % 4:
        raise ValueError(f"sin-cos positional embedding needs a width divisible by 4, got {dim}")
    omega = 1.0 / 10000 ** (np.arange(dim // 4, dtype=np.float64) / (dim / 4.0))
    ys, xs = np.meshgrid(np.arange(grid, dtype=np.float64), np.arange(grid, dtype=np.float64), indexing="ij")

    def axis(pos: np.ndarray) -> np.ndarray:
        out = np.einsum("m,d->md", pos.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    table = np.concatenate([axis(xs), axis(ys)], axis=1)  # MAE: first half from w (x), second from h (y)
    return torch.from_numpy(table).float()


def random_masking(
    x: torch.Tensor, mask_ratio: float, generator: Optional[torch.Generator] = None
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """MAE per-sample random masking by argsort of uniform noise.

    Args:
        x: [B, L, D] patch tokens.
        mask_ratio: fraction of patches dropped; ``int(L * (1 - mask_ratio))`` stay visible.
    Returns:
        visible [B, K, D], mask [B, L] (1 = masked, in the original order), ids_restore [B, L] (position of each
        original patch in the shuffled order), ids_keep [B, K] (original indices of the visible patches).
    """
    b, length, d = x.shape
    keep = int(length * (1 - mask_ratio))
    noise = torch.rand(b, length, device=x.device, generator=generator)
    ids_shuffle = noise.argsort(dim=1)
    ids_restore = ids_shuffle.argsort(dim=1)
    ids_keep = ids_shuffle[:, :keep]
    visible = torch.gather(x, 1, ids_keep.unsqueeze(-1).expand(-1, -1, d))
    mask = torch.ones(b, length, device=x.device)
    mask[:, :keep] = 0
    mask = torch.gather(mask, 1, ids_restore)
    return visible, mask, ids_restore, ids_keep


def patchify(images: torch.Tensor, patch: int) -> torch.Tensor:
    """[B, 3, H, W] -> [B, L, patch*patch*3] (MAE order: row-major patches, (p, q, c) inside a patch)."""
    b, c, h, w = images.shape
    gh, gw = h // patch, w // patch
    x = images.reshape(b, c, gh, patch, gw, patch)
    return torch.einsum("nchpwq->nhwpqc", x).reshape(b, gh * gw, patch * patch * c)


def unshuffle_with_mask_token(visible: torch.Tensor, mask_token: torch.Tensor, ids_restore: torch.Tensor):
    """Visible tokens [B, K, D] + a mask token [1, 1, D] -> the full grid [B, L, D] in the original order."""
    b, k, d = visible.shape
    length = ids_restore.shape[1]
    full = torch.cat([visible, mask_token.expand(b, length - k, d)], dim=1)
    return torch.gather(full, 1, ids_restore.unsqueeze(-1).expand(-1, -1, d))


class ProjectionMLP(nn.Module):
    """Linear -> (BatchNorm) -> ReLU -> Linear on the last axis of [..., D_in] (GroupViT ProjectMLP, 2 layers)."""

    def __init__(self, dim_in: int, hidden: int, dim_out: int, norm: str = "batchnorm"):
        super().__init__()
        self.fc1 = nn.Linear(dim_in, hidden)
        self.norm = nn.BatchNorm1d(hidden) if norm == "batchnorm" else nn.Identity()
        self.fc2 = nn.Linear(hidden, dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        if self.training and isinstance(self.norm, nn.BatchNorm1d) and x.reshape(-1, shape[-1]).shape[0] < 2:
            raise ValueError(
                "the projector's BatchNorm needs at least 2 samples per training step and process (got a batch of "
                "1); use a larger per-GPU batch or projector_norm='none'"
            )
        h = self.fc1(x.reshape(-1, shape[-1]))
        h = F.relu(self.norm(h))
        return self.fc2(h).reshape(*shape[:-1], -1)


class SegmentationHead(nn.Module):
    """Transformer stages separated by grouping blocks: [x; 32 groups] -> 2 layers -> group -> [32; 8 groups] ->
    2 layers -> group -> 8 segments -> 1 layer (defaults)."""

    def __init__(self, cfg: ZeroSegConfig):
        super().__init__()
        w, heads, r = cfg.seg_width, cfg.seg_heads, cfg.mlp_ratio
        self.stages = nn.ModuleList(
            [nn.Sequential(*[Block(w, heads, r, qkv_bias=True) for _ in range(d)]) for d in cfg.seg_depths]
        )
        self.group_tokens = nn.ParameterList([nn.Parameter(torch.zeros(1, s, w)) for s in cfg.num_group_tokens])
        self.groupers = nn.ModuleList(
            [
                GroupingBlock(w, heads, s, cfg.group_hard, cfg.group_gumbel, cfg.gumbel_tau, cfg.assign_eps)
                for s in cfg.num_group_tokens
            ]
        )
        projectors: List[nn.Module] = []
        if cfg.group_token_projector:
            for prev, cur in zip(cfg.num_group_tokens[:-1], cfg.num_group_tokens[1:]):
                projectors.append(group_token_projector(prev, cur, w))
        self.projectors = nn.ModuleList(projectors)
        self.norm = nn.LayerNorm(w)
        for t in self.group_tokens:
            nn.init.trunc_normal_(t, std=0.02)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, List[Dict[str, torch.Tensor]]]:
        """x [B, N, W] -> (segment tokens [B, S_last, W], per-stage assignments {"hard","soft"} [B, S_i, N_i])."""
        attns: List[Dict[str, torch.Tensor]] = []
        prev_groups: Optional[torch.Tensor] = None
        for i, grouper in enumerate(self.groupers):
            g = self.group_tokens[i].expand(x.shape[0], -1, -1)
            if prev_groups is not None and len(self.projectors):
                g = g + self.projectors[i - 1](prev_groups)
            n = x.shape[1]
            y = self.stages[i](torch.cat([x, g], dim=1))
            x, g = y[:, :n], y[:, n:]
            x, attn = grouper(x, g)
            attns.append(attn)
            prev_groups = g
        x = self.stages[-1](x)
        return self.norm(x), attns


class ZeroSeg(nn.Module):
    """ZeroSeg student network (see module docstring); the CLIP teacher lives in :mod:`.teacher`."""

    native_format = NATIVE_FORMAT

    def __init__(self, config: ZeroSegConfig, device: Optional[Union[str, torch.device]] = None):
        super().__init__()
        self.config = config.validate()
        ctx = torch.device(device) if device is not None else contextlib.nullcontext()
        with ctx:
            self._build()
        if device is None or torch.device(device).type != "meta":
            self._init_weights()

    def _build(self) -> None:
        cfg = self.config
        p, w = cfg.patch_size, cfg.encoder_width
        self.patch_embed = PatchEmbed(cfg.image_size, p, 3, w, strict_img_size=False)
        grid = cfg.grid_size
        self.cls_token = nn.Parameter(torch.zeros(1, 1, w))
        self.register_buffer(
            "pos_embed", sincos_pos_embed_2d(w, grid)[None].to(self.cls_token.device), persistent=False
        )  # [1, L, W]
        self.blocks = nn.Sequential(
            *[Block(w, cfg.encoder_heads, cfg.mlp_ratio, qkv_bias=True) for _ in range(cfg.layers)]
        )
        self.norm = nn.LayerNorm(w)
        dw = cfg.decoder_width
        self.decoder_embed = nn.Linear(w, dw)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dw))
        self.register_buffer(
            "decoder_pos_embed", sincos_pos_embed_2d(dw, grid)[None].to(self.mask_token.device), persistent=False
        )
        self.decoder_blocks = nn.Sequential(
            *[Block(dw, cfg.decoder_heads, cfg.mlp_ratio, qkv_bias=True) for _ in range(cfg.decoder_layers)]
        )
        self.decoder_norm = nn.LayerNorm(dw)
        self.decoder_pred = nn.Linear(dw, p * p * 3)
        sw = cfg.seg_width
        self.seg_embed = nn.Linear(w, sw) if sw != w else nn.Identity()
        self.seg_mask_token = nn.Parameter(torch.zeros(1, 1, sw)) if cfg.seg_head_input == "mask_tokens" else None
        self.seg_pos_embed = nn.Parameter(torch.zeros(1, grid * grid, sw)) if cfg.seg_pos_embed else None
        self.seg_head = SegmentationHead(cfg)
        self.global_blocks = nn.Sequential(
            *[Block(sw, cfg.seg_heads, cfg.mlp_ratio, qkv_bias=True) for _ in range(cfg.global_extra_layers)]
        )
        self.projector = ProjectionMLP(sw, cfg.projector_hidden, cfg.embed_dim, cfg.projector_norm)

    # ------------------------------------------------------------------ init
    def _init_weights(self) -> None:
        """MAE's init: xavier-uniform linears (patch projection as a linear), zero biases, tokens N(0, 0.02)."""
        wt = self.patch_embed.proj.weight
        nn.init.xavier_uniform_(wt.view(wt.shape[0], -1))
        for t in (self.cls_token, self.mask_token, self.seg_mask_token, self.seg_pos_embed):
            if t is not None:
                nn.init.normal_(t, std=0.02)
        for name, m in self.named_modules():
            if isinstance(m, nn.Linear) and "attn.in_proj" not in name:
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    @property
    def embed_dim(self) -> int:
        return self.config.embed_dim

    def trainable_parameters(self) -> List[nn.Parameter]:
        """Every parameter of the student (the teacher is a separate frozen module)."""
        return [p for p in self.parameters() if p.requires_grad]

    # ------------------------------------------------------------------ pieces
    def _pos(self, table: torch.Tensor, grid_h: int, grid_w: int) -> torch.Tensor:
        """The positional table [1, L, W] at a (grid_h, grid_w) grid (bicubic interpolation off the train grid)."""
        g = self.config.grid_size
        if (grid_h, grid_w) == (g, g):
            return table
        t = table.reshape(1, g, g, -1).permute(0, 3, 1, 2)
        t = F.interpolate(t, size=(grid_h, grid_w), mode="bicubic", align_corners=False)
        return t.permute(0, 2, 3, 1).reshape(1, grid_h * grid_w, -1)

    def encode_patches(
        self, images: torch.Tensor, mask_ratio: float, generator: Optional[torch.Generator] = None
    ) -> Dict[str, Any]:
        """Encoder on the visible patches. images [B, 3, H, W] (normalised) -> dict with ``tokens`` [B, 1+K, W]
        (CLS first), ``mask`` [B, L], ``ids_restore`` [B, L], ``ids_keep`` [B, K], ``grid`` (h, w)."""
        p = self.config.patch_size
        gh, gw = images.shape[-2] // p, images.shape[-1] // p
        x = self.patch_embed(images) + self._pos(cast(torch.Tensor, self.pos_embed), gh, gw)  # [B, L, W]
        if mask_ratio > 0:
            x, mask, ids_restore, ids_keep = random_masking(x, mask_ratio, generator)
        else:
            b, length = x.shape[:2]
            ids = torch.arange(length, device=x.device).expand(b, -1)
            mask, ids_restore, ids_keep = x.new_zeros(b, length), ids, ids
        cls = self.cls_token.expand(x.shape[0], -1, -1)
        x = self.norm(self.blocks(torch.cat([cls, x], dim=1)))
        return {"tokens": x, "mask": mask, "ids_restore": ids_restore, "ids_keep": ids_keep, "grid": (gh, gw)}

    def decode_pixels(self, tokens: torch.Tensor, ids_restore: torch.Tensor, grid: Tuple[int, int]) -> torch.Tensor:
        """MAE decoder: encoder tokens [B, 1+K, W] -> predicted patches [B, L, p*p*3] (original order)."""
        x = self.decoder_embed(tokens)
        full = unshuffle_with_mask_token(x[:, 1:], self.mask_token, ids_restore)
        full = full + self._pos(cast(torch.Tensor, self.decoder_pos_embed), *grid)
        x = self.decoder_blocks(torch.cat([x[:, :1], full], dim=1))
        return self.decoder_pred(self.decoder_norm(x))[:, 1:]

    def segment(self, enc: Dict[str, Any]) -> Dict[str, Any]:
        """Segmentation head + projector on the encoder output. Returns ``segment_features`` [B, m, E] (CLIP
        space), ``global_feature`` [B, E] (z), ``assignments`` (per stage {"hard","soft"} [B, S_i, N_i])."""
        x = self.seg_embed(enc["tokens"][:, 1:])  # [B, K, Ws]
        if self.seg_mask_token is not None:
            x = unshuffle_with_mask_token(x, self.seg_mask_token, enc["ids_restore"])
            if self.seg_pos_embed is not None:
                x = x + self._pos(self.seg_pos_embed, *enc["grid"])
        elif self.seg_pos_embed is not None:
            pos = self._pos(self.seg_pos_embed, *enc["grid"]).expand(x.shape[0], -1, -1)
            x = x + torch.gather(pos, 1, enc["ids_keep"].unsqueeze(-1).expand(-1, -1, x.shape[-1]))
        segments, attns = self.seg_head(x)  # [B, m, Ws]
        segments = self.global_blocks(segments)
        return {
            "segment_features": self.projector(segments),
            "global_feature": self.projector(segments.mean(dim=1)),
            "assignments": attns,
        }

    # ------------------------------------------------------------------ entry points
    def forward_train(self, images: torch.Tensor, generator: Optional[torch.Generator] = None) -> Dict[str, Any]:
        """Training pass with masking. images [B, 3, H, W] normalised. Adds ``pred_patches`` [B, L, p*p*3] and
        ``mask`` [B, L] to :meth:`segment`'s dict."""
        enc = self.encode_patches(images, self.config.mask_ratio, generator)
        out = self.segment(enc)
        out["pred_patches"] = self.decode_pixels(enc["tokens"], enc["ids_restore"], enc["grid"])
        out["mask"] = enc["mask"]
        return out

    def assignment_maps(self, assignments: List[Dict[str, torch.Tensor]], grid: Tuple[int, int]) -> torch.Tensor:
        """Patch -> final segment maps [B, m, h, w]: product of the stage assignments (soft or hard by config)."""
        key = self.config.assignment_maps
        maps = assignments[0][key]  # [B, S1, N]
        for a in assignments[1:]:
            maps = a[key] @ maps  # [B, S_i, N]
        return maps.reshape(maps.shape[0], maps.shape[1], *grid)

    def encode_image(self, images: torch.Tensor) -> Dict[str, Any]:
        """Inference: all patches (no masking). Returns :meth:`segment`'s dict plus ``maps`` [B, m, h, w]."""
        enc = self.encode_patches(images, 0.0)
        out = self.segment(enc)
        out["maps"] = self.assignment_maps(out["assignments"], enc["grid"])
        return out

    def forward(self, images: torch.Tensor, masked: bool = False) -> Any:
        """images [B, 3, H, W] -> (segment features [B, m, E], global feature [B, E], maps [B, m, h, w]);
        ``masked=True`` is the training pass (:meth:`forward_train`'s dict; lets DDP wrap the model)."""
        if masked:
            return self.forward_train(images)
        out = self.encode_image(images)
        return out["segment_features"], out["global_feature"], out["maps"]
