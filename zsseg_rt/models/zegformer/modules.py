"""ZegFormer's mask-proposal network in plain PyTorch (no detectron2), parameter names chosen so the official
checkpoint maps onto it key by key (see :mod:`zsseg_rt.models.zegformer.official`).

- :class:`ResNetTrunk`: detectron2's ResNet-50/101 with frozen BatchNorm (``FrozenBN``, stride in the 3x3 conv =
  ``STRIDE_IN_1X1: False``) in torchvision's parameter layout, returning ``res2..res5`` (strides 4, 8, 16, 32).
- :class:`PixelDecoder`: MaskFormer's ``BasePixelDecoder``: an FPN with GroupNorm(32), nearest top-down
  upsampling and a final 3x3 ``mask_features`` conv (stride 4).
- :class:`SinePositionEncoding`: DETR's normalised sine encoding (``normalize=True``, scale 2*pi).
- :class:`QueryDecoder`: DETR's transformer decoder (no encoder layers), post-norm by default, returning every
  layer's output after the shared final LayerNorm (deep supervision).
- :class:`MLP`: the 3-layer mask-embedding MLP.
"""

from __future__ import annotations

import math
from typing import Dict, List, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.ops.misc import FrozenBatchNorm2d

__all__ = ["ResNetTrunk", "PixelDecoder", "SinePositionEncoding", "QueryDecoder", "DecoderLayer", "MLP", "ConvNorm"]


def c2_xavier_fill(module: nn.Conv2d) -> None:
    """detectron2's ``c2_xavier_fill``: kaiming-uniform with a=1 on the weight, zero bias."""
    nn.init.kaiming_uniform_(module.weight, a=1)
    if module.bias is not None:
        nn.init.constant_(module.bias, 0)


class _Bottleneck(nn.Module):
    """detectron2's ``BottleneckBlock`` (``STRIDE_IN_1X1: False``: the stride in the 3x3 conv, FrozenBN after
    every conv, projection shortcut when the channels change) with torchvision's parameter names (``conv1``,
    ``bn1``, ..., ``downsample.0/1``), so any bottleneck width works (detectron2 ``WIDTH_PER_GROUP``)."""

    def __init__(self, in_ch: int, width: int, out_ch: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, width, 1, bias=False)
        self.bn1 = FrozenBatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = FrozenBatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out_ch, 1, bias=False)
        self.bn3 = FrozenBatchNorm2d(out_ch)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: Optional[nn.Module] = None
        if in_ch != out_ch or stride != 1:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False), FrozenBatchNorm2d(out_ch)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


class ResNetTrunk(nn.Module):
    """detectron2's ResNet (``build_resnet_backbone``, bottleneck blocks, FrozenBN) without the classifier, in
    torchvision's parameter layout; ``forward`` returns ``{res2..res5}``.

    Args:
        layers: blocks per stage (R50 ``[3, 4, 6, 3]``, R101 ``[3, 4, 23, 3]``).
        stem_channels / res2_channels / width_per_group: detectron2 ``STEM_OUT_CHANNELS`` (64),
            ``RES2_OUT_CHANNELS`` (256) and ``WIDTH_PER_GROUP`` (64, the res2 bottleneck width); each later stage
            doubles the output and bottleneck widths.
    """

    def __init__(self, layers: List[int], stem_channels: int = 64, res2_channels: int = 256, width_per_group: int = 64):
        super().__init__()
        self.conv1 = nn.Conv2d(3, stem_channels, 7, stride=2, padding=3, bias=False)
        self.bn1 = FrozenBatchNorm2d(stem_channels)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        in_ch, out_ch, width = stem_channels, res2_channels, width_per_group
        self.out_channels: Dict[str, int] = {}
        for stage, blocks in enumerate(layers):
            stride = 1 if stage == 0 else 2
            units = [
                _Bottleneck(in_ch if i == 0 else out_ch, width, out_ch, stride if i == 0 else 1) for i in range(blocks)
            ]
            self.add_module(f"layer{stage + 1}", nn.Sequential(*units))
            self.out_channels[f"res{stage + 2}"] = out_ch
            in_ch, out_ch, width = out_ch, 2 * out_ch, 2 * width
        for m in self.modules():  # detectron2's c2_msra_fill (an ImageNet checkpoint replaces it in practice)
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        """``x [B,3,H,W]`` normalised -> ``res2 [B,256,H/4,W/4]`` ... ``res5 [B,2048,H/32,W/32]`` (default widths)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        res2 = self.layer1(x)
        res3 = self.layer2(res2)
        res4 = self.layer3(res3)
        res5 = self.layer4(res4)
        return {"res2": res2, "res3": res3, "res4": res4, "res5": res5}


class ConvNorm(nn.Conv2d):
    """A conv followed by an optional ``norm`` sub-module and ReLU (detectron2's ``Conv2d(norm=, activation=)``
    state-dict layout: ``weight``, ``[bias]``, ``norm.weight``, ``norm.bias``)."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, groups_norm: Optional[int], relu: bool):
        super().__init__(in_ch, out_ch, kernel_size, padding=kernel_size // 2, bias=groups_norm is None)
        self.norm = nn.GroupNorm(groups_norm, out_ch) if groups_norm else None
        self.use_relu = relu
        c2_xavier_fill(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = super().forward(x)
        if self.norm is not None:
            x = self.norm(x)
        return F.relu(x) if self.use_relu else x


class PixelDecoder(nn.Module):
    """MaskFormer ``BasePixelDecoder`` over ``res2..res5`` (official module names ``adapter_{1,2,3}``,
    ``layer_{1..4}``, ``mask_features``)."""

    in_features = ("res2", "res3", "res4", "res5")

    def __init__(self, in_channels: List[int], conv_dim: int = 256, mask_dim: int = 256):
        super().__init__()
        n = len(in_channels)
        for idx, ch in enumerate(in_channels):
            if idx == n - 1:
                setattr(self, f"layer_{idx + 1}", ConvNorm(ch, conv_dim, 3, 32, relu=True))
            else:
                setattr(self, f"adapter_{idx + 1}", ConvNorm(ch, conv_dim, 1, 32, relu=False))
                setattr(self, f"layer_{idx + 1}", ConvNorm(conv_dim, conv_dim, 3, 32, relu=True))
        self.num_levels = n
        self.mask_features = nn.Conv2d(conv_dim, mask_dim, 3, padding=1)
        c2_xavier_fill(self.mask_features)

    def forward(self, features: Dict[str, torch.Tensor]) -> torch.Tensor:
        """``features`` (res2..res5) -> ``mask_features [B, mask_dim, H/4, W/4]``."""
        top = self.num_levels
        y = getattr(self, f"layer_{top}")(features[self.in_features[top - 1]])
        for idx in range(top - 1, 0, -1):  # top-down: res4, res3, res2
            lateral = getattr(self, f"adapter_{idx}")(features[self.in_features[idx - 1]])
            y = lateral + F.interpolate(y, size=lateral.shape[-2:], mode="nearest")
            y = getattr(self, f"layer_{idx}")(y)
        return self.mask_features(y)


class SinePositionEncoding(nn.Module):
    """DETR's sine encoding with ``normalize=True``: ``[B, 2*num_pos_feats, H, W]`` (y features then x)."""

    def __init__(self, num_pos_feats: int, temperature: float = 10000.0):
        super().__init__()
        self.num_pos_feats = int(num_pos_feats)
        self.temperature = float(temperature)
        self.scale = 2 * math.pi

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        ones = torch.ones((b, h, w), dtype=torch.float32, device=x.device)
        y_pos = ones.cumsum(1)
        x_pos = ones.cumsum(2)
        eps = 1e-6
        y_pos = y_pos / (y_pos[:, -1:, :] + eps) * self.scale
        x_pos = x_pos / (x_pos[:, :, -1:] + eps) * self.scale
        idx = torch.arange(self.num_pos_feats, dtype=torch.float32, device=x.device)
        freq = self.temperature ** (2 * torch.div(idx, 2, rounding_mode="floor") / self.num_pos_feats)
        px = x_pos[..., None] / freq  # [B,H,W,F]
        py = y_pos[..., None] / freq
        px = torch.stack((px[..., 0::2].sin(), px[..., 1::2].cos()), dim=4).flatten(3)
        py = torch.stack((py[..., 0::2].sin(), py[..., 1::2].cos()), dim=4).flatten(3)
        return torch.cat((py, px), dim=3).permute(0, 3, 1, 2)


class DecoderLayer(nn.Module):
    """One DETR decoder layer (sequence-first tensors ``[L, B, C]``); post-norm unless ``pre_norm``."""

    def __init__(self, dim: int, heads: int, ffn_dim: int, dropout: float, pre_norm: bool):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(dim, heads, dropout=dropout)
        self.multihead_attn = nn.MultiheadAttention(dim, heads, dropout=dropout)
        self.linear1 = nn.Linear(dim, ffn_dim)
        self.linear2 = nn.Linear(ffn_dim, dim)
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.dropout, self.dropout1 = nn.Dropout(dropout), nn.Dropout(dropout)
        self.dropout2, self.dropout3 = nn.Dropout(dropout), nn.Dropout(dropout)
        self.pre_norm = pre_norm

    def _ffn(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear2(self.dropout(F.relu(self.linear1(x))))

    def forward(self, tgt: torch.Tensor, memory: torch.Tensor, pos: torch.Tensor, query_pos: torch.Tensor):
        """``tgt [Q,B,C]``, ``memory``/``pos [HW,B,C]``, ``query_pos [Q,B,C]`` -> ``[Q,B,C]``."""
        if self.pre_norm:
            t = self.norm1(tgt)
            tgt = tgt + self.dropout1(self.self_attn(t + query_pos, t + query_pos, t)[0])
            t = self.norm2(tgt)
            tgt = tgt + self.dropout2(self.multihead_attn(t + query_pos, memory + pos, memory)[0])
            return tgt + self.dropout3(self._ffn(self.norm3(tgt)))
        q = tgt + query_pos
        tgt = self.norm1(tgt + self.dropout1(self.self_attn(q, q, tgt)[0]))
        tgt = self.norm2(tgt + self.dropout2(self.multihead_attn(tgt + query_pos, memory + pos, memory)[0]))
        return self.norm3(tgt + self.dropout3(self._ffn(tgt)))


class QueryDecoder(nn.Module):
    """DETR decoder stack with a final LayerNorm applied to every layer's output (``return_intermediate``)."""

    def __init__(self, dim: int, heads: int, ffn_dim: int, num_layers: int, dropout: float, pre_norm: bool):
        super().__init__()
        self.layers = nn.ModuleList([DecoderLayer(dim, heads, ffn_dim, dropout, pre_norm) for _ in range(num_layers)])
        self.norm = nn.LayerNorm(dim)
        for p in self.parameters():  # official Transformer._reset_parameters
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)

    def forward(self, memory: torch.Tensor, pos: torch.Tensor, query_embed: torch.Tensor) -> torch.Tensor:
        """``memory``/``pos [HW,B,C]``, ``query_embed [Q,C]`` -> every layer's output ``[L, B, Q, C]``."""
        b = memory.shape[1]
        query_pos = query_embed.unsqueeze(1).expand(-1, b, -1)
        out = torch.zeros_like(query_pos)
        stack = []
        for layer in self.layers:
            out = layer(out, memory, pos, query_pos)
            stack.append(self.norm(out))
        return torch.stack(stack).transpose(1, 2)


class MLP(nn.Module):
    """``num_layers`` Linear layers with ReLU between them (official ``MLP``)."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int, num_layers: int):
        super().__init__()
        dims = [in_dim] + [hidden_dim] * (num_layers - 1)
        outs = [hidden_dim] * (num_layers - 1) + [out_dim]
        self.layers = nn.ModuleList(nn.Linear(i, o) for i, o in zip(dims, outs))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = F.relu(x)
        return x
