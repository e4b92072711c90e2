"""An independent transcription of ZegFormer's official test-time inference, for the golden fixture
``python_tests/data/golden/zegformer_tiny`` (written from dingjiansw101/ZegFormer@8cb9e8f and the detectron2 code it
runs on; it imports nothing of zsseg_rt):

* detectron2 ``DatasetMapper`` (test): the uint8 RGB image resized by ``ResizeShortestEdge`` (``get_output_shape``,
  then ``PIL.Image.resize(BILINEAR)`` in ``ResizeTransform.apply_image``), as a CHW uint8 tensor. The resize is
  this file's own (:func:`pillow_bilinear`), written from Pillow's documented convolution resampling (Pillow 2.7
  release notes / ``Image.resize`` docs: the triangle filter's support widened by the scale when shrinking) and
  the 8-bit path of ``libImaging/Resample.c`` of Pillow <= 12 (coefficients normalised, then rounded to 22-bit
  fixed point; the horizontal pass rounded to uint8 before the vertical one), so the fixture does not depend on
  the installed Pillow (Pillow 13 may run the vertical pass first, python-pillow/Pillow#9549);
  ``test_golden_zegformer`` checks it equals the installed Pillow on every fixture size;
* ``MaskFormer.forward`` (mask_former/mask_former_model.py), inference branch with ``CLIP_CLASSIFICATION``: pixel
  and CLIP normalisation, ``ImageList.from_tensors`` zero padding to ``SIZE_DIVISIBILITY`` 32, the backbone
  (detectron2 ``build_resnet_backbone``: BasicStem, BottleneckBlock with the stride in the 3x3 conv, FrozenBN), the
  ``ZegFormerHead``: ``BasePixelDecoder.forward_features`` and ``TransformerZeroshotPredictor`` (DETR decoder
  without encoder layers, sine positions, cosine classifier x 1/TEMPERATURE with ``bg_feature``), mask upsampling,
  the cumsum/argmax boxes, ``roi_align(aligned=True)`` crops for the ``cropmask``/``crop`` styles or the 224 px
  masked image for ``mask``, CLIP ``encode_image`` per image, ``ENSEMBLING`` with lambda 2/3 and the seen-class
  mean, ``semantic_inference2``, ``sem_seg_postprocess``, ``GZERO_CALIBRATE`` 0.1 on seen classes;
* the text side: ``zeroshot_classifier`` (templates x ", "-separated synonyms, normalise, mean, normalise) with the
  query classifier's ``PROMPT_ENSEMBLE_TYPE: single`` template and ``IMAGENET_TEMPLATES_SELECT_CLIP``, over
  OpenAI CLIP (mask_former/third_party/model.py, heads = width // 64, QuickGELU, causal text mask) and
  ``clip.tokenize`` (start + BPE + end, zero-padded to 77; the BPE is open_clip's copy of OpenAI's tokenizer).

Precision: everything in fp32. The official code keeps CLIP in fp16 (``build_model`` converts the weights and the
``jit=False`` load never casts back) and needs CUDA; the fixture is the fp32 computation of the same modules, as
the ZegCLIP/CLIP-RC fixtures are, with the weights stored at fp16-representable values.

``python python_tests/models/zegformer/zegformer_official.py`` writes the fixture (random, non-degenerate weights in the
official checkpoint layout, seed 3, biases centred on the photos' mean features) and prints its statistics.
"""

from __future__ import annotations

import functools
import math
from collections import OrderedDict
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image
from torchvision.ops import roi_align

PIXEL_MEAN = [123.675, 116.280, 103.530]
PIXEL_STD = [58.395, 57.120, 57.375]
CLIP_PIXEL_MEAN = [122.7709383, 116.7460125, 104.09373615]
CLIP_PIXEL_STD = [68.5005327, 66.6321579, 70.3231630]
SINGLE_TEMPLATE = ["A photo of a {} in the scene"]
CLIP_TEMPLATES = [  # mask_former/third_party/imagenet_templates.py IMAGENET_TEMPLATES_SELECT_CLIP (32)
    "a bad photo of the {}.", "a photo of the large {}.", "a photo of the small {}.", "a cropped photo of a {}.",
    "This is a photo of a {}", "This is a photo of a small {}", "This is a photo of a medium {}",
    "This is a photo of a large {}", "This is a masked photo of a {}", "This is a masked photo of a small {}",
    "This is a masked photo of a medium {}", "This is a masked photo of a large {}", "This is a cropped photo of a {}",
    "This is a cropped photo of a small {}", "This is a cropped photo of a medium {}",
    "This is a cropped photo of a large {}", "A photo of a {} in the scene", "a bad photo of the {} in the scene",
    "a photo of the large {} in the scene", "a photo of the small {} in the scene",
    "a cropped photo of a {} in the scene", "a photo of a masked {} in the scene", "There is a {} in the scene",
    "There is the {} in the scene", "This is a {} in the scene", "This is the {} in the scene",
    "This is one {} in the scene", "There is a masked {} in the scene", "There is the masked {} in the scene",
    "This is a masked {} in the scene", "This is the masked {} in the scene", "This is one masked {} in the scene",
]  # fmt: skip


# ------------------------------------------------------------------------------------------ detectron2 layers
class FrozenBatchNorm2d(nn.Module):
    """detectron2.layers.FrozenBatchNorm2d (eps 1e-5); without grad it is ``F.batch_norm(training=False)``."""

    def __init__(self, n: int):
        super().__init__()
        for name, value in (("weight", 1.0), ("bias", 0.0), ("running_mean", 0.0), ("running_var", 1.0)):
            self.register_buffer(name, torch.full((n,), value))

    def forward(self, x):
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, 1e-5)


class D2Conv(nn.Conv2d):
    """detectron2.layers.Conv2d: conv, then ``norm``, then ``activation``."""

    def __init__(self, *args, norm=None, activation=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.norm, self.activation = norm, activation

    def forward(self, x):
        x = F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)
        if self.norm is not None:
            x = self.norm(x)
        return self.activation(x) if self.activation is not None else x


class BasicStem(nn.Module):
    def __init__(self, out_channels: int):
        super().__init__()
        self.conv1 = D2Conv(3, out_channels, 7, stride=2, padding=3, bias=False, norm=FrozenBatchNorm2d(out_channels))

    def forward(self, x):
        return F.max_pool2d(F.relu_(self.conv1(x)), kernel_size=3, stride=2, padding=1)


class BottleneckBlock(nn.Module):
    """``STRIDE_IN_1X1: False``: stride 1 in conv1, the stage stride in the 3x3 conv2."""

    def __init__(self, in_channels: int, out_channels: int, bottleneck: int, stride: int):
        super().__init__()
        self.shortcut = None
        if in_channels != out_channels:
            self.shortcut = D2Conv(in_channels, out_channels, 1, stride=stride, bias=False,
                                   norm=FrozenBatchNorm2d(out_channels))  # fmt: skip
        self.conv1 = D2Conv(in_channels, bottleneck, 1, stride=1, bias=False, norm=FrozenBatchNorm2d(bottleneck))
        self.conv2 = D2Conv(bottleneck, bottleneck, 3, stride=stride, padding=1, bias=False,
                            norm=FrozenBatchNorm2d(bottleneck))  # fmt: skip
        self.conv3 = D2Conv(bottleneck, out_channels, 1, bias=False, norm=FrozenBatchNorm2d(out_channels))

    def forward(self, x):
        out = F.relu_(self.conv1(x))
        out = F.relu_(self.conv2(out))
        out = self.conv3(out)
        out += self.shortcut(x) if self.shortcut is not None else x
        return F.relu_(out)


class ResNet(nn.Module):
    """``build_resnet_backbone`` with explicit blocks per stage and widths (STEM_OUT_CHANNELS,
    RES2_OUT_CHANNELS, WIDTH_PER_GROUP x NUM_GROUPS=1); first stride 1 in res2, 2 after."""

    def __init__(self, blocks: Sequence[int], stem: int, res2: int, width: int):
        super().__init__()
        self.stem = BasicStem(stem)
        in_ch, out_ch = stem, res2
        self.names = []
        for idx, n in enumerate(blocks):
            first = 1 if idx == 0 else 2
            stage = [
                BottleneckBlock(in_ch if i == 0 else out_ch, out_ch, width, first if i == 0 else 1) for i in range(n)
            ]
            self.add_module(f"res{idx + 2}", nn.Sequential(*stage))
            self.names.append(f"res{idx + 2}")
            in_ch, out_ch, width = out_ch, out_ch * 2, width * 2

    def forward(self, x):
        out = {}
        x = self.stem(x)
        for name in self.names:
            x = getattr(self, name)(x)
            out[name] = x
        return out


# ------------------------------------------------------------------------------------------ MaskFormer head
class BasePixelDecoder(nn.Module):
    def __init__(self, channels: Sequence[int], conv_dim: int, mask_dim: int):
        super().__init__()
        self.lateral: List[Optional[D2Conv]] = []
        self.output: List[D2Conv] = []
        for idx, ch in enumerate(channels):  # res2 .. res5
            gn = nn.GroupNorm(32, conv_dim)
            if idx == len(channels) - 1:
                out = D2Conv(ch, conv_dim, 3, padding=1, bias=False, norm=gn, activation=F.relu)
                self.add_module(f"layer_{idx + 1}", out)
                self.lateral.append(None)
            else:
                lat = D2Conv(ch, conv_dim, 1, bias=False, norm=nn.GroupNorm(32, conv_dim))
                out = D2Conv(conv_dim, conv_dim, 3, padding=1, bias=False, norm=gn, activation=F.relu)
                self.add_module(f"adapter_{idx + 1}", lat)
                self.add_module(f"layer_{idx + 1}", out)
                self.lateral.append(lat)
            self.output.append(out)
        self.lateral, self.output = self.lateral[::-1], self.output[::-1]
        self.mask_features = D2Conv(conv_dim, mask_dim, 3, padding=1)

    def forward_features(self, feats: Dict[str, torch.Tensor]) -> torch.Tensor:
        y: Optional[torch.Tensor] = None
        for idx, name in enumerate(["res5", "res4", "res3", "res2"]):
            x = feats[name]
            lateral = self.lateral[idx]
            if lateral is None:
                y = self.output[idx](x)
            else:
                cur = lateral(x)
                assert y is not None  # res5 (no lateral) comes first
                y = self.output[idx](cur + F.interpolate(y, size=cur.shape[-2:], mode="nearest"))
        return self.mask_features(y)


def position_embedding_sine(x: torch.Tensor, num_feats: int) -> torch.Tensor:
    """PositionEmbeddingSine(num_feats, normalize=True) with no mask."""
    not_mask = ~torch.zeros((x.size(0), x.size(2), x.size(3)), device=x.device, dtype=torch.bool)
    y_embed = not_mask.cumsum(1, dtype=torch.float32)
    x_embed = not_mask.cumsum(2, dtype=torch.float32)
    eps, scale = 1e-6, 2 * math.pi
    y_embed = y_embed / (y_embed[:, -1:, :] + eps) * scale
    x_embed = x_embed / (x_embed[:, :, -1:] + eps) * scale
    dim_t = torch.arange(num_feats, dtype=torch.float32, device=x.device)
    dim_t = 10000 ** (2 * (dim_t // 2) / num_feats)
    pos_x = x_embed[:, :, :, None] / dim_t
    pos_y = y_embed[:, :, :, None] / dim_t
    pos_x = torch.stack((pos_x[:, :, :, 0::2].sin(), pos_x[:, :, :, 1::2].cos()), dim=4).flatten(3)
    pos_y = torch.stack((pos_y[:, :, :, 0::2].sin(), pos_y[:, :, :, 1::2].cos()), dim=4).flatten(3)
    return torch.cat((pos_y, pos_x), dim=3).permute(0, 3, 1, 2)


class DecoderLayer(nn.Module):
    """DETR ``TransformerDecoderLayer.forward_post`` (relu FFN)."""

    def __init__(self, d: int, heads: int, ffn: int):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d, heads)
        self.multihead_attn = nn.MultiheadAttention(d, heads)
        self.linear1, self.linear2 = nn.Linear(d, ffn), nn.Linear(ffn, d)
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(d), nn.LayerNorm(d), nn.LayerNorm(d)

    def forward(self, tgt, memory, pos, query_pos):
        q = k = tgt + query_pos
        tgt = self.norm1(tgt + self.self_attn(q, k, value=tgt)[0])
        tgt = self.norm2(tgt + self.multihead_attn(query=tgt + query_pos, key=memory + pos, value=memory)[0])
        return self.norm3(tgt + self.linear2(F.relu(self.linear1(tgt))))


class Decoder(nn.Module):
    def __init__(self, d: int, heads: int, ffn: int, layers: int):
        super().__init__()
        self.layers = nn.ModuleList(DecoderLayer(d, heads, ffn) for _ in range(layers))
        self.norm = nn.LayerNorm(d)

    def forward(self, tgt, memory, pos, query_pos):  # return_intermediate=True (DEEP_SUPERVISION)
        inter = []
        for layer in self.layers:
            tgt = layer(tgt, memory, pos, query_pos)
            inter.append(self.norm(tgt))
        inter[-1] = self.norm(tgt)
        return torch.stack(inter)


class Transformer(nn.Module):
    def __init__(self, d: int, heads: int, ffn: int, layers: int):
        super().__init__()
        self.decoder = Decoder(d, heads, ffn, layers)

    def forward(self, src, query_embed, pos):  # ENC_LAYERS 0: memory = src
        bs = src.shape[0]
        src = src.flatten(2).permute(2, 0, 1)
        pos = pos.flatten(2).permute(2, 0, 1)
        query_embed = query_embed.unsqueeze(1).repeat(1, bs, 1)
        tgt = torch.zeros_like(query_embed)
        return self.decoder(tgt, src, pos, query_embed).transpose(1, 2)


class MLP(nn.Module):
    def __init__(self, i: int, h: int, o: int, n: int):
        super().__init__()
        dims = [h] * (n - 1)
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip([i] + dims, dims + [o]))

    def forward(self, x):
        for k, layer in enumerate(self.layers):
            x = F.relu(layer(x)) if k < len(self.layers) - 1 else layer(x)
        return x


# ------------------------------------------------------------------------------------------ OpenAI CLIP
class QuickGELU(nn.Module):
    def forward(self, x):
        return x * torch.sigmoid(1.702 * x)


class ResidualAttentionBlock(nn.Module):
    def __init__(self, d: int, heads: int, attn_mask=None):
        super().__init__()
        self.attn = nn.MultiheadAttention(d, heads)
        self.ln_1 = nn.LayerNorm(d)
        self.mlp = nn.Sequential(
            OrderedDict([("c_fc", nn.Linear(d, 4 * d)), ("gelu", QuickGELU()), ("c_proj", nn.Linear(4 * d, d))])
        )
        self.ln_2 = nn.LayerNorm(d)
        self.attn_mask = attn_mask

    def forward(self, x):
        mask = self.attn_mask.to(dtype=x.dtype, device=x.device) if self.attn_mask is not None else None
        y = self.ln_1(x)
        x = x + self.attn(y, y, y, need_weights=False, attn_mask=mask)[0]
        return x + self.mlp(self.ln_2(x))


class CLIPTransformer(nn.Module):
    def __init__(self, width: int, layers: int, heads: int, attn_mask=None):
        super().__init__()
        self.resblocks = nn.Sequential(*[ResidualAttentionBlock(width, heads, attn_mask) for _ in range(layers)])

    def forward(self, x):
        return self.resblocks(x)


class VisualTransformer(nn.Module):
    def __init__(self, resolution: int, patch: int, width: int, layers: int, out_dim: int):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, patch, stride=patch, bias=False)
        self.class_embedding = nn.Parameter(torch.zeros(width))
        self.positional_embedding = nn.Parameter(torch.zeros((resolution // patch) ** 2 + 1, width))
        self.ln_pre = nn.LayerNorm(width)
        self.transformer = CLIPTransformer(width, layers, width // 64)
        self.ln_post = nn.LayerNorm(width)
        self.proj = nn.Parameter(torch.zeros(width, out_dim))

    def forward(self, x):
        x = self.conv1(x)
        x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)
        cls = self.class_embedding.to(x.dtype) + torch.zeros(x.shape[0], 1, x.shape[-1], dtype=x.dtype)
        x = torch.cat([cls, x], dim=1) + self.positional_embedding.to(x.dtype)
        x = self.ln_pre(x).permute(1, 0, 2)
        x = self.transformer(x).permute(1, 0, 2)
        return self.ln_post(x[:, 0, :]) @ self.proj


class CLIP(nn.Module):
    def __init__(self, embed: int, resolution: int, v_layers: int, v_width: int, patch: int, ctx: int, vocab: int,
                 t_width: int, t_layers: int):  # fmt: skip
        super().__init__()
        self.visual = VisualTransformer(resolution, patch, v_width, v_layers, embed)
        mask = torch.empty(ctx, ctx).fill_(float("-inf")).triu_(1)
        self.transformer = CLIPTransformer(t_width, t_layers, t_width // 64, mask)
        self.token_embedding = nn.Embedding(vocab, t_width)
        self.positional_embedding = nn.Parameter(torch.zeros(ctx, t_width))
        self.ln_final = nn.LayerNorm(t_width)
        self.text_projection = nn.Parameter(torch.zeros(t_width, embed))
        self.logit_scale = nn.Parameter(torch.ones([]))

    def encode_image(self, image):
        return self.visual(image)

    def encode_text(self, text):
        x = self.token_embedding(text) + self.positional_embedding
        x = self.transformer(x.permute(1, 0, 2)).permute(1, 0, 2)
        x = self.ln_final(x)
        return x[torch.arange(x.shape[0]), text.argmax(dim=-1)] @ self.text_projection


@functools.lru_cache(maxsize=1)
def _bpe():
    from open_clip.tokenizer import SimpleTokenizer

    return SimpleTokenizer()


def tokenize(texts: Sequence[str], context_length: int = 77) -> torch.Tensor:
    """``clip.tokenize``: start token + BPE + end token, zero-padded."""
    tok = _bpe()
    sot, eot = tok.sot_token_id, tok.eot_token_id  # "<|startoftext|>", "<|endoftext|>": the vocabulary's last two
    assert (sot, eot) == (49406, 49407)
    rows = [[sot] + tok.encode(t) + [eot] for t in texts]
    out = torch.zeros(len(rows), context_length, dtype=torch.long)
    for i, r in enumerate(rows):
        out[i, : len(r)] = torch.tensor(r)
    return out


def zeroshot_classifier(clip: CLIP, classnames: Sequence[str], templates: Sequence[str]) -> torch.Tensor:
    """Returns ``[C, D]`` (the official stacks on dim 1 then permutes back)."""
    weights = []
    for classname in classnames:
        if ", " in classname:
            texts = [t.format(s) for t in templates for s in classname.split(", ")]
        else:
            texts = [t.format(classname) for t in templates]
        emb = clip.encode_text(tokenize(texts))
        emb /= emb.norm(dim=-1, keepdim=True)
        e = emb.mean(dim=0)
        e /= e.norm()
        weights.append(e)
    return torch.stack(weights, dim=1).permute(1, 0).float()


# ------------------------------------------------------------------------------------------ the model
class ZegFormerOfficial(nn.Module):
    """Module names = the official checkpoint keys (``backbone.*``, ``sem_seg_head.pixel_decoder.*``,
    ``sem_seg_head.predictor.*`` with ``clip_model``)."""

    def __init__(self, arch: Dict):
        super().__init__()
        a = arch
        self.arch = dict(arch)
        self.backbone = ResNet(a["blocks"], a["stem"], a["res2"], a["width"])
        chans = [a["res2"] * 2**i for i in range(4)]
        head = nn.Module()
        head.pixel_decoder = BasePixelDecoder(chans, a["conv_dim"], a["mask_dim"])
        p = nn.Module()
        p.query_embed = nn.Embedding(a["queries"], a["hidden"])
        p.input_proj = D2Conv(chans[-1], a["hidden"], 1)
        p.transformer = Transformer(a["hidden"], a["nheads"], a["ffn"], a["dec_layers"])
        p.mask_embed = MLP(a["hidden"], a["hidden"], a["mask_dim"], 3)
        p.projection_layer = nn.Linear(a["hidden"], a["embed"])
        p.bg_feature = nn.Parameter(torch.zeros(1, a["embed"]))
        p.logit_scale = nn.Parameter(torch.tensor([math.log(1 / 0.01)]))
        c = a["clip"]
        p.clip_model = CLIP(a["embed"], 224, c["v_layers"], c["v_width"], c["patch"], 77, c["vocab"], c["t_width"],
                            c["t_layers"])  # fmt: skip
        head.predictor = p
        self.sem_seg_head = head

    def predictor(self, x, mask_features, text):
        p = self.sem_seg_head.predictor
        pos = position_embedding_sine(x, self.arch["hidden"] // 2)
        hs = p.transformer(p.input_proj(x), p.query_embed.weight, pos)
        x_cls = p.projection_layer(hs)
        x_cls = x_cls / x_cls.norm(dim=-1, keepdim=True)
        scale = p.logit_scale.exp()
        logits = torch.cat((scale * x_cls @ text.t(), scale * x_cls @ p.bg_feature.t()), -1)
        masks = torch.einsum("lbqc,bchw->lbqhw", p.mask_embed(hs), mask_features)
        return logits[-1], masks[-1]


def shortest_edge_size(h: int, w: int, short: int, max_size: int) -> Tuple[int, int]:
    """detectron2 ``ResizeShortestEdge.get_output_shape``."""
    size = short * 1.0
    scale = size / min(h, w)
    newh, neww = (size, scale * w) if h < w else (scale * h, size)
    if max(newh, neww) > max_size:
        scale = max_size * 1.0 / max(newh, neww)
        newh, neww = newh * scale, neww * scale
    return int(newh + 0.5), int(neww + 0.5)


PRECISION_BITS = 32 - 8 - 2  # Resample.c: 8-bit channels, 22-bit fixed-point coefficients


def _pillow_weights(in_size: int, out_size: int) -> np.ndarray:
    """``[out_size, in_size]`` int64 fixed-point weights of one bilinear pass (Resample.c ``precompute_coeffs`` with
    the triangle filter, support 1, then ``normalize_coeffs_8bpc``): output pixel ``i`` is centred at
    ``(i + 0.5) * scale`` in the source; when shrinking (``scale > 1``) the filter is stretched by ``scale``; the
    taps run over source pixels ``int(centre -/+ support + 0.5)`` clipped to the image, each weighted
    ``tri((x - centre + 0.5) / filterscale)``, normalised to sum 1, then rounded half away from zero to 22 bits."""
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = 1.0 * filterscale
    weights = np.zeros((out_size, in_size), dtype=np.int64)
    for i in range(out_size):
        centre = (i + 0.5) * scale
        lo = max(int(centre - support + 0.5), 0)
        hi = min(int(centre + support + 0.5), in_size)
        x = np.arange(lo, hi, dtype=np.float64)
        w = np.maximum(0.0, 1.0 - np.abs((x - centre + 0.5) / filterscale))
        if w.sum() != 0.0:
            w = w / w.sum()
        w = w * (1 << PRECISION_BITS)
        weights[i, lo:hi] = np.where(w < 0, np.trunc(w - 0.5), np.trunc(w + 0.5)).astype(np.int64)
    return weights


def _pillow_pass(image: np.ndarray, out_size: int, axis: int) -> np.ndarray:
    """One ``ImagingResample{Horizontal,Vertical}_8bpc`` pass of a ``[H, W, C]`` uint8 image along ``axis``:
    integer sum from ``1 << (PRECISION_BITS - 1)`` (rounding), shifted back and clipped to 0..255. The sums are
    formed in float64, where they are exact: every product and partial sum is an integer below 2**31."""
    weights = _pillow_weights(image.shape[axis], out_size).astype(np.float64)
    src = np.moveaxis(image.astype(np.float64), axis, 0)
    acc = np.moveaxis(np.tensordot(weights, src, axes=([1], [0])), 0, axis).astype(np.int64)
    return np.clip((acc + (1 << (PRECISION_BITS - 1))) >> PRECISION_BITS, 0, 255).astype(np.uint8)


def pillow_bilinear(rgb: np.ndarray, height: int, width: int) -> np.ndarray:
    """``PIL.Image.fromarray(rgb).resize((width, height), Image.BILINEAR)`` of Pillow <= 12 for ``[H, W, 3]`` uint8
    (no ``reducing_gap``: ``Image.resize``'s default): the horizontal pass (if the width changes), rounded to
    uint8, then the vertical pass (if the height changes)."""
    out = np.asarray(rgb, dtype=np.uint8)
    if width != out.shape[1]:
        out = _pillow_pass(out, width, axis=1)
    if height != out.shape[0]:
        out = _pillow_pass(out, height, axis=0)
    return np.ascontiguousarray(out)


def mapper(rgb: np.ndarray, short: int, max_size: int) -> torch.Tensor:
    """detectron2 ``DatasetMapper`` (test): ``ResizeShortestEdge`` with PIL bilinear, CHW uint8 tensor."""
    h, w = rgb.shape[:2]
    newh, neww = shortest_edge_size(h, w, short, max_size)
    image = pillow_bilinear(rgb, newh, neww)
    return torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1)))


def _pad(t: torch.Tensor, div: int = 32) -> torch.Tensor:
    """``ImageList.from_tensors(size_divisibility=div)`` for one image, pad value 0."""
    h, w = t.shape[-2:]
    return F.pad(t, [0, (w + div - 1) // div * div - w, 0, (h + div - 1) // div * div - h], value=0.0)[None]


@torch.no_grad()
def official_inference(
    model: ZegFormerOfficial, rgb: np.ndarray, class_names: Sequence[str], unseen_names: Sequence[str],
    short: int, max_size: int, style: str = "cropmask", calibrate: float = 0.1,
) -> Dict[str, np.ndarray]:  # fmt: skip
    """The official test pipeline on one ``[H, W, 3]`` uint8 RGB image. Returns the final ``sem_seg [C, H, W]``
    (calibrated), ``labels``, ``scores`` (winning value) and the intermediate tensors the fixture keeps."""
    p = model.sem_seg_head.predictor
    clip: CLIP = p.clip_model  # type: ignore[assignment]
    x = mapper(rgb, short, max_size).float()
    mean, std = torch.tensor(PIXEL_MEAN).view(-1, 1, 1), torch.tensor(PIXEL_STD).view(-1, 1, 1)
    cmean, cstd = torch.tensor(CLIP_PIXEL_MEAN).view(-1, 1, 1), torch.tensor(CLIP_PIXEL_STD).view(-1, 1, 1)
    clip_images = _pad((x - cmean) / cstd)
    images = _pad((x - mean) / std)
    image_size = tuple(x.shape[-2:])
    text = zeroshot_classifier(clip, class_names, SINGLE_TEMPLATE)
    text_clip = zeroshot_classifier(clip, class_names, CLIP_TEMPLATES)
    feats = model.backbone(images)
    mask_features = model.sem_seg_head.pixel_decoder.forward_features(feats)
    mask_cls, mask_small = model.predictor(feats["res5"], mask_features, text)
    masks = F.interpolate(mask_small, size=images.shape[-2:], mode="bilinear", align_corners=False)
    # ---- CLIP branch (batch of one image: count = 0)
    m224 = F.interpolate(masks, size=(224, 224), mode="bilinear", align_corners=False).sigmoid() > 0.5
    img224 = F.interpolate(clip_images, size=(224, 224), mode="bilinear", align_corners=False)
    masked_224 = img224.unsqueeze(1) * m224.unsqueeze(2)
    binary = masks.sigmoid() > 0.5
    masked_ori = (clip_images.unsqueeze(1) * binary.unsqueeze(2)).reshape(-1, *clip_images.shape[1:])
    bs, nq = binary.shape[:2]
    repeat = clip_images.unsqueeze(1).repeat(1, nq, 1, 1, 1).reshape(bs * nq, *clip_images.shape[1:])
    flat = binary.reshape(bs * nq, *binary.shape[-2:])
    cumsum_x = torch.cumsum(torch.sum(flat, dim=1), dim=1).float()
    xmaxs = torch.argmax(cumsum_x, dim=1, keepdim=True)
    cumsum_x[cumsum_x == 0] = np.inf
    xmins = torch.argmin(cumsum_x, dim=1, keepdim=True)
    cumsum_y = torch.cumsum(torch.sum(flat, dim=2), dim=1).float()
    ymaxs = torch.argmax(cumsum_y, dim=1, keepdim=True)
    cumsum_y[cumsum_y == 0] = np.inf
    ymins = torch.argmin(cumsum_y, dim=1, keepdim=True)
    areas = (ymaxs - ymins) * (xmaxs - xmins)
    ymaxs[areas == 0], ymins[areas == 0] = images.shape[-2], 0
    xmaxs[areas == 0], xmins[areas == 0] = images.shape[-1], 0
    boxes = torch.cat((xmins, ymins, xmaxs, ymaxs), 1)
    boxes_list = [boxes[i].reshape(1, -1).float() for i in range(boxes.shape[0])]
    inputs = {
        "cropmask": roi_align(masked_ori, boxes_list, 224, aligned=True),
        "crop": roi_align(repeat, boxes_list, 224, aligned=True),
        "mask": masked_224[0],
    }[style]
    image_features = clip.encode_image(inputs)
    image_features = image_features / image_features.norm(dim=-1, keepdim=True)
    logits_per_image = clip.logit_scale.exp() * image_features @ text_clip.t()
    logits_per_image = torch.cat((logits_per_image, mask_cls[0][:, -1].unsqueeze(1)), 1)
    seen = [i for i, n in enumerate(class_names) if n not in unseen_names]
    unseen = [i for i, n in enumerate(class_names) if n in unseen_names]
    lam = 2 / 3.0
    cls = F.softmax(mask_cls[0], dim=-1)[..., :-1]
    clip_prob = F.softmax(logits_per_image, dim=-1)[..., :-1]
    clip_prob[:, seen] = clip_prob[:, seen].mean(dim=1, keepdim=True)
    cls[:, seen] = torch.pow(cls[:, seen], lam) * torch.pow(clip_prob[:, seen], 1 - lam)
    cls[:, unseen] = torch.pow(cls[:, unseen], 1 - lam) * torch.pow(clip_prob[:, unseen], lam)
    semseg = torch.einsum("qc,qhw->chw", cls, masks[0].sigmoid())
    r = semseg[:, : image_size[0], : image_size[1]].expand(1, -1, -1, -1)
    r = F.interpolate(r, size=tuple(rgb.shape[:2]), mode="bilinear", align_corners=False)[0]
    if calibrate > 0:
        r[seen, :, :] = r[seen, :, :] - calibrate
    return {
        "sem_seg": r.numpy(),
        "labels": r.argmax(0).numpy().astype(np.uint8),
        "scores": r.max(0).values.numpy().astype(np.float32),
        "image": images[0].numpy(),
        "class_logits": mask_cls[0].numpy(),
        "query_masks": mask_small[0].numpy(),
        "text_embeddings": text.numpy(),
        "clip_text_embeddings": text_clip.numpy(),
        "boxes": boxes.numpy().astype(np.float32),
    }


# ------------------------------------------------------------------------------------------ the fixture
VOC_NAMES = [  # datasets/pascal/create_voc_class_names_json.py (all_classnames.json)
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable", "dog",
    "horse", "motorbike", "person", "potted plant", "sheep", "sofa", "train", "tvmonitor",
]  # fmt: skip
VOC_UNSEEN = VOC_NAMES[15:]  # val_extra_classes
ARCH = {
    "blocks": [1, 1, 1, 1], "stem": 16, "res2": 32, "width": 8, "conv_dim": 32, "mask_dim": 32, "hidden": 32,
    "nheads": 4, "ffn": 64, "dec_layers": 2, "queries": 8, "embed": 32,
    "clip": {"v_layers": 2, "v_width": 64, "patch": 16, "vocab": 49408, "t_width": 64, "t_layers": 2},
}  # fmt: skip
PHOTOS = ["2011_000006.jpg", "2011_000003.jpg"]
SETTINGS = {"tiny": (64, 128), "upscaled": (400, 640)}  # (short side, max size): shrink and enlarge
CASES = [  # (photo, setting, CLIP_CLS_STYLE); the first also keeps the model-level tensors
    ("2011_000006.jpg", "tiny", "cropmask"),
    ("2011_000006.jpg", "upscaled", "cropmask"),
    ("2011_000003.jpg", "tiny", "cropmask"),
    ("2011_000003.jpg", "tiny", "mask"),
]


def _init(model: ZegFormerOfficial, seed: int) -> Dict[str, torch.Tensor]:
    """Random non-degenerate weights (He-scaled convs, perturbed norms, OpenAI CLIP scales), rounded to fp16
    values; text-token rows that no prompt uses are zero (the file stays small)."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for name, t in model.state_dict().items():
        shape = t.shape
        if name.endswith("running_var"):
            v = 0.5 + torch.rand(shape, generator=g)
        elif name.endswith(("running_mean", "norm.bias", "ln_1.bias", "ln_2.bias", "ln_pre.bias", "ln_post.bias")) or (
            name.endswith("bias") and ("norm" in name or "ln_" in name)
        ):
            v = 0.1 * torch.randn(shape, generator=g)
        elif name.endswith("weight") and ("norm" in name or ".ln_" in name or "ln_final" in name) and t.dim() == 1:
            v = 1.0 + 0.1 * torch.randn(shape, generator=g)
        elif name.endswith("logit_scale"):
            v = torch.full(shape, math.log(1 / 0.01) if "predictor.logit_scale" in name else math.log(1 / 0.07))
        elif t.dim() >= 2:
            fan_in = int(np.prod(shape[1:])) if t.dim() > 2 or "in_proj" in name or "Linear" else shape[1]
            std = math.sqrt(2.0 / fan_in) if t.dim() == 4 else math.sqrt(1.0 / shape[-1])
            if name.endswith(("positional_embedding", "class_embedding", "proj", "text_projection")):
                std = shape[-1] ** -0.5 if not name.endswith("positional_embedding") else 0.1
            if name.endswith("token_embedding.weight"):
                std = 0.5
            if name.endswith("query_embed.weight"):
                std = 1.0
            v = std * torch.randn(shape, generator=g)
        else:
            v = 0.02 * torch.randn(shape, generator=g) if t.numel() > 1 else 0.5 * torch.randn(shape, generator=g)
        sd[name] = v.to(torch.float16).to(torch.float32)
    used = torch.unique(
        torch.cat(
            [
                tokenize([t.format(s) for t in SINGLE_TEMPLATE + CLIP_TEMPLATES for s in n.split(", ")])
                for n in VOC_NAMES
            ]
        )
    )
    key = "sem_seg_head.predictor.clip_model.token_embedding.weight"
    keep = torch.zeros(sd[key].shape[0], dtype=torch.bool)
    keep[used] = True
    sd[key][~keep] = 0.0
    return sd


def _centre(sd: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Biases of ``input_proj`` and ``mask_features`` set to cancel the mean feature of the fixture photos (a
    trained network's features are roughly centred; random ones share a large common part, which makes every query
    and mask alike): the queries then attend, classify and segment differently."""
    sd = dict(sd)
    mkey = "sem_seg_head.pixel_decoder.mask_features.bias"
    sd[mkey] = torch.zeros_like(sd[mkey])
    model = build(sd)
    r5, mf = [], []
    with torch.no_grad():
        for photo in PHOTOS:
            x = mapper(read_photo(photo), *SETTINGS["tiny"]).float()
            images = _pad((x - torch.tensor(PIXEL_MEAN).view(-1, 1, 1)) / torch.tensor(PIXEL_STD).view(-1, 1, 1))
            feats = model.backbone(images)
            r5.append(feats["res5"][0].mean((1, 2)))
            mf.append(model.sem_seg_head.pixel_decoder.forward_features(feats)[0].mean((1, 2)))
    w = sd["sem_seg_head.predictor.input_proj.weight"][:, :, 0, 0]
    sd["sem_seg_head.predictor.input_proj.bias"] = -(w @ torch.stack(r5).mean(0))
    sd[mkey] = -torch.stack(mf).mean(0)
    return {k: v.to(torch.float16).to(torch.float32) for k, v in sd.items()}


def build(sd: Dict[str, torch.Tensor]) -> ZegFormerOfficial:
    model = ZegFormerOfficial(ARCH).eval()
    missing, unexpected = model.load_state_dict({k: v for k, v in sd.items() if not k.startswith("criterion.")})
    assert not missing and not unexpected, (missing, unexpected)
    return model


# the repository's sample VOC photos, located by path (this file imports nothing of zsseg_rt)
PHOTO_DIR = Path(__file__).resolve().parents[3] / "zsseg_rt" / "assets" / "samples" / "JPEGImages"


def read_photo(name: str) -> np.ndarray:
    """detectron2 ``read_image(format="RGB")``: PIL decode, RGB."""
    with Image.open(PHOTO_DIR / name) as im:
        return np.asarray(im.convert("RGB"))


def case_tag(photo: str, setting: str, style: str) -> str:
    return f"{photo[:-4]}_{setting}_{style}"


def run_case(model: ZegFormerOfficial, photo: str, setting: str, style: str) -> Dict[str, np.ndarray]:
    return official_inference(model, read_photo(photo), VOC_NAMES, VOC_UNSEEN, *SETTINGS[setting], style)


def run_all(model: ZegFormerOfficial) -> Dict[str, np.ndarray]:
    """Every result the fixture keeps: per case the labels, winning scores and crop boxes; for the first case also
    the model-level tensors (normalised padded image, class logits, query masks, both text-embedding sets)."""
    out: Dict[str, np.ndarray] = {}
    for i, case in enumerate(CASES):
        r = run_case(model, *case)
        tag = case_tag(*case)
        out[f"{tag}_labels"], out[f"{tag}_scores"], out[f"{tag}_boxes"] = r["labels"], r["scores"], r["boxes"]
        if i == 0:
            for k in ("image", "class_logits", "query_masks", "text_embeddings", "clip_text_embeddings"):
                out[k] = r[k].astype(np.float32)
    out["tokens"] = tokenize([SINGLE_TEMPLATE[0].format(n) for n in VOC_NAMES]).numpy().astype(np.int32)
    return out


def environment() -> Dict[str, str]:
    """The versions and CPU a run of this file used (fp32 kernels differ by CPU: ~1e-7 in the text embeddings,
    ~1e-4 in the class logits between two x86 machines)."""
    import platform

    import PIL
    import safetensors
    import torchvision

    try:
        import open_clip

        open_clip_version = open_clip.__version__
    except Exception:  # the tokenizer is all this file uses of it
        open_clip_version = "unknown"
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "numpy": np.__version__,
        "Pillow (JPEG decoding only)": PIL.__version__,
        "open_clip (tokenizer BPE only)": open_clip_version,
        "safetensors": safetensors.__version__,
        "machine": f"{platform.system()} {platform.machine()} {_cpu_model()}".strip(),
    }


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            return next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    except OSError:
        import platform

        return platform.processor()


def production_record(seed: int) -> Dict:
    """How the fixture is produced (README.json ``production``)."""
    return {
        "command": "python python_tests/models/zegformer/zegformer_official.py [FOLDER]  (default: this folder)",
        "steps": [
            f"_init: a torch.Generator seeded {seed} draws every tensor of the official-layout module tree "
            "(He-scaled conv weights, perturbed norm scales and FrozenBN statistics, logit scales log(100) and "
            "log(1/0.07)), rounded to fp16 values; token-embedding rows that no prompt uses are zeroed",
            "_centre: the input_proj and mask_features biases set to cancel the two photos' mean features at the "
            "tiny setting (rounded to fp16); the state dict, with criterion.empty_weight (15 x 1.0, 0.1), stored as "
            "fp16 in official_tiny.safetensors",
            "the model rebuilt from those fp16 values in fp32 (build) and run_all: official_inference on each case "
            "(read_photo: PIL decode of the shipped VOC photo; mapper: ResizeShortestEdge size rule + this file's "
            "own Pillow<=12 bilinear resize, pillow_bilinear; the official forward in fp32 on the CPU)",
            "expected.npz: per case labels (uint8), winning calibrated scores and crop boxes; for the first case the "
            "normalised padded image, class logits, query masks and both text-embedding sets; the query prompts' "
            "tokens",
            "README.json: this record, the architecture, cases, photo sha256s and per-case statistics",
        ],
        "imports": "torch, torchvision.ops.roi_align, numpy, Pillow (JPEG decoding), open_clip's tokenizer BPE "
        "(OpenAI's vocabulary), safetensors; nothing of zsseg_rt",
        "environment": {"written_on": environment()},
    }


def write_fixture(folder, seed: int = 3) -> Dict:
    """Writes official_tiny.safetensors, expected.npz and README.json into ``folder``; returns README."""
    import hashlib
    import json
    from pathlib import Path

    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    sd = _centre(_init(ZegFormerOfficial(ARCH), seed))
    sd["criterion.empty_weight"] = torch.cat([torch.ones(15), torch.tensor([0.1])])  # the VOC training criterion
    model = build(sd)
    expected = run_all(model)
    save_file({k: v.to(torch.float16).contiguous() for k, v in sd.items()}, str(folder / "official_tiny.safetensors"))
    np.savez_compressed(folder / "expected.npz", **expected)  # type: ignore[arg-type]
    stats = {
        k[: -len("_labels")]: {"classes_winning": int(len(np.unique(v))), "pixels": int(v.size)}
        for k, v in expected.items()
        if k.endswith("_labels")
    }
    readme = {
        "official_source": "dingjiansw101/ZegFormer@8cb9e8f (mask_former/mask_former_model.py MaskFormer.forward with "
        "CLIP_CLASSIFICATION, ENSEMBLING, GZERO_CALIBRATE 0.1; modeling/heads/{zeg_former_head,pixel_decoder}.py, "
        "modeling/transformer/*; third_party/{model,clip,imagenet_templates}.py) on detectron2 (DatasetMapper test: "
        "ResizeShortestEdge with PIL bilinear; build_resnet_backbone; ImageList; sem_seg_postprocess), transcribed "
        "independently in python_tests/models/zegformer/zegformer_official.py, fp32",
        "architecture": ARCH,
        "seed": seed,
        "class_names": VOC_NAMES,
        "unseen_names": VOC_UNSEEN,
        "query_templates": SINGLE_TEMPLATE,
        "clip_templates": CLIP_TEMPLATES,
        "photos": {p: hashlib.sha256((PHOTO_DIR / p).read_bytes()).hexdigest() for p in PHOTOS},
        "settings": {k: {"test_short_side": s, "test_max_size": m} for k, (s, m) in SETTINGS.items()},
        "cases": [{"photo": p, "setting": st, "style": sy, "tag": case_tag(p, st, sy)} for p, st, sy in CASES],
        "results": stats,
        "load_with": "load_official_zegformer(path, config='zegformer_tiny_test', stem_channels=16, res2_channels=32, "
        "width_per_group=8, image_size=224, clip_cfg={'vision_cfg': {'head_width': 64}, 'text_cfg': {'heads': 1}}, "
        "class_names=<class_names>)",
        "production": production_record(seed),
    }
    (folder / "README.json").write_text(json.dumps(readme, indent=1) + "\n")
    return readme


if __name__ == "__main__":
    import json
    import sys
    from pathlib import Path

    target = (
        Path(sys.argv[1])
        if len(sys.argv) > 1
        else Path(__file__).resolve().parents[2] / "data" / "golden" / "zegformer_tiny"
    )
    print(json.dumps(write_fixture(target)["results"], indent=1))
