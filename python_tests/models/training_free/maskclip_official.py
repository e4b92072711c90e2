"""Test reference: MaskCLIP's official forward (chongzhou96/MaskCLIP @245d31f), transcribed independently with
plain torch functions on the tensors of its own checkpoint layout. Nothing here imports zsseg_rt's model code.

What is transcribed (file:line of the official repository):

* ``tools/maskclip_utils/convert_clip_weights.py:27-63``: OpenAI CLIP image keys -> mmseg ViT keys
  (:func:`convert_clip_weights`, both output files);
* ``configs/_base_/models/maskclip_vit16.py``: mmseg ``VisionTransformer`` with ``patch_bias=False``,
  ``norm_cfg=dict(type='LN', eps=1e-6)``, ``act_cfg=dict(type='GELU')`` (exact GELU), ``pre_norm=True``,
  ``final_norm=True``, ``return_qkv=True``, ``interpolate_mode='bicubic'``;
* ``mmseg/models/utils/embed.py`` (``PatchEmbed(padding='corner')``: ``AdaptivePadding`` zero-pads the normalised
  input at the bottom/right to a multiple of the patch before the patch convolution, so the grid is
  ``ceil(H / 16) x ceil(W / 16)``);
* ``mmseg/models/backbones/vit.py:94-108`` (``TransformerEncoderLayer.forward``: the last layer's
  ``v = out_proj(v-part of in_proj(norm1(x))) + x; v = v + ffn(norm2(v))``), ``:383-410`` (``resize_pos_embed``,
  bicubic to the patch grid), ``:412-464`` (``forward``: ``norm0`` after the position embedding, the final norm
  ``norm1`` applied to ``v`` too);
* ``mmseg/models/decode_heads/maskclip_head.py:71-127`` (``proj`` 1x1 conv without bias on ``v``, channel
  L2-normalisation, 1x1 conv with the text embeddings: raw cosine, no scale; ``ks_thresh = pd_thresh = 0``);
* ``mmseg/models/segmentors/encoder_decoder.py`` ``encode_decode`` (head output resized bilinearly to the input),
  ``slide_inference`` (mmseg 0.20 windows, logits averaged), ``whole_inference`` (``encode_decode`` on the whole
  rescaled image: the head's grid logits resized to the unpadded input, then to the original image), ``inference``
  (``F.softmax(seg_logit, dim=1)``, line 249), ``simple_test`` (argmax); MaskCLIP's test mode is ``whole``
  (``configs/_base_/models/maskclip_vit16.py`` ``test_cfg=dict(mode='whole')``);
* the test pipeline: ``LoadImageFromFile`` (BGR) -> ``Resize(keep_ratio=True)`` (mmcv ``imrescale``: factor
  ``min(long / max(h, w), short / min(h, w))``, size ``int(x * factor + 0.5)``, cv2 bilinear) -> ``Normalize``
  (``to_rgb=True``, ImageNet mean/std).

The official text embeddings come from ``prompt_engineering.py`` (the 85 templates, OpenAI CLIP's text tower,
normalise / average / renormalise); the test passes the same ``[C, D]`` embeddings to both sides.
"""

from __future__ import annotations

import math
from typing import Dict, Mapping, Sequence, Tuple

import cv2
import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "convert_clip_weights",
    "MASKCLIP_SCENE_TEMPLATES",
    "official_whole_logits",
    "official_segment",
    "official_whole_segment",
]

# tools/maskclip_utils/prompt_engineering.py:34, the five templates after the 80 ImageNet ones.
MASKCLIP_SCENE_TEMPLATES = [
    "there is a {} in the scene.",
    "there is the {} in the scene.",
    "this is a {} in the scene.",
    "this is the {} in the scene.",
    "this is one {} in the scene.",
]
LN_EPS = 1e-6  # configs/_base_/models/maskclip_vit16.py:22


def convert_clip_weights(openai_sd: Mapping[str, torch.Tensor]) -> Tuple[dict, dict]:
    """The two files ``convert_clip_weights.py --model ViT16 [--backbone]`` writes, from an OpenAI-layout state
    dict: ``(backbone_file, weights_file)``, ``{"meta": {}, "state_dict": {"backbone.<k>": ...}}`` and
    ``{"proj": {"weight": proj.T}, "clip": {<k>: ...}}``."""
    backbone, plain, proj = {}, {}, {}
    for key, value in openai_sd.items():
        if not key.startswith("visual."):
            continue
        k = key[len("visual.") :]
        v = value.float()
        if k == "proj":
            proj["weight"] = v.t()
            continue
        if k == "class_embedding":
            k, v = "cls_token", v[None, None, :]
        elif k == "positional_embedding":
            k, v = "pos_embed", v[None, :, :]
        elif k == "conv1.weight":
            k = "patch_embed.projection.weight"
        elif k.startswith("ln_pre."):
            k = "ln0." + k.split(".")[-1]
        elif k.startswith("ln_post."):
            k = "ln1." + k.split(".")[-1]
        elif k.startswith("transformer.resblocks."):
            k = "layers." + k[len("transformer.resblocks.") :]
            k = k.replace("mlp", "ffn.layers").replace("c_fc", "0.0").replace("c_proj", "1")
            if "attn" in k:
                k = k.replace("attn", "attn.attn")
            elif "ln_" in k:
                k = k.replace("ln_", "ln")
        plain[k] = v
        backbone["backbone." + k] = v
    return {"meta": {}, "state_dict": backbone}, {"proj": proj, "clip": plain}


def _ln(x: torch.Tensor, sd: Mapping[str, torch.Tensor], name: str) -> torch.Tensor:
    return F.layer_norm(x, (x.shape[-1],), sd[name + ".weight"], sd[name + ".bias"], LN_EPS)


def _ffn(x: torch.Tensor, sd: Mapping[str, torch.Tensor], p: str) -> torch.Tensor:
    h = F.linear(x, sd[p + "ffn.layers.0.0.weight"], sd[p + "ffn.layers.0.0.bias"])
    h = 0.5 * h * (1.0 + torch.erf(h / math.sqrt(2.0)))  # nn.GELU(): the exact, erf form
    return F.linear(h, sd[p + "ffn.layers.1.weight"], sd[p + "ffn.layers.1.bias"])


def _attention(y: torch.Tensor, sd: Mapping[str, torch.Tensor], p: str, heads: int) -> torch.Tensor:
    n, length, width = y.shape
    qkv = F.linear(y, sd[p + "attn.attn.in_proj_weight"], sd[p + "attn.attn.in_proj_bias"])
    q, k, v = (t.reshape(n, length, heads, width // heads).transpose(1, 2) for t in qkv.split(width, -1))
    a = torch.softmax((q * (width // heads) ** -0.5) @ k.transpose(-1, -2), dim=-1) @ v
    a = a.transpose(1, 2).reshape(n, length, width)
    return F.linear(a, sd[p + "attn.attn.out_proj.weight"], sd[p + "attn.attn.out_proj.bias"])


def _backbone_v(img: torch.Tensor, sd: Mapping[str, torch.Tensor], heads: int) -> torch.Tensor:
    """mmseg VisionTransformer.forward with MaskCLIP's settings -> ``v [N, W, h, w]`` of the last layer."""
    w_patch = sd["patch_embed.projection.weight"]
    patch = w_patch.shape[-1]
    pad_h, pad_w = -img.shape[2] % patch, -img.shape[3] % patch  # AdaptivePadding(padding='corner')
    if pad_h or pad_w:
        img = F.pad(img, [0, pad_w, 0, pad_h])
    x = F.conv2d(img, w_patch, stride=patch)  # patch_bias=False
    n, width, gh, gw = x.shape
    x = torch.cat([sd["cls_token"].expand(n, -1, -1), x.flatten(2).transpose(1, 2)], dim=1)
    pos = sd["pos_embed"]
    g0 = int(round(math.sqrt(pos.shape[1] - 1)))
    if pos.shape[1] != x.shape[1]:
        grid = pos[:, 1:].reshape(1, g0, g0, width).permute(0, 3, 1, 2)
        grid = F.interpolate(grid, size=(gh, gw), mode="bicubic", align_corners=False)
        pos = torch.cat([pos[:, :1], grid.flatten(2).transpose(1, 2)], dim=1)
    x = _ln(x + pos, sd, "ln0")  # pre_norm
    layers = sorted({int(k.split(".")[1]) for k in sd if k.startswith("layers.")})
    v = x
    for i in layers:
        p = f"layers.{i}."
        if i == layers[-1]:  # return_qkv on the output layer
            y = F.linear(_ln(x, sd, p + "ln1"), sd[p + "attn.attn.in_proj_weight"], sd[p + "attn.attn.in_proj_bias"])
            v = F.linear(y[..., 2 * width :], sd[p + "attn.attn.out_proj.weight"], sd[p + "attn.attn.out_proj.bias"])
            v = v + x
            v = v + _ffn(_ln(v, sd, p + "ln2"), sd, p)
        x = x + _attention(_ln(x, sd, p + "ln1"), sd, p, heads)
        x = x + _ffn(_ln(x, sd, p + "ln2"), sd, p)
    v = _ln(v, sd, "ln1")  # final_norm applied to v as well
    return v[:, 1:].reshape(n, gh, gw, width).permute(0, 3, 1, 2)


def _encode_decode(img: torch.Tensor, sd: Mapping[str, torch.Tensor], text: torch.Tensor, heads: int) -> torch.Tensor:
    v = _backbone_v(img, sd, heads)
    feat = F.conv2d(v, sd["proj.weight"][:, :, None, None])  # MaskClipHead.proj, no bias
    feat = feat / feat.norm(dim=1, keepdim=True)
    out = F.conv2d(feat, text[:, :, None, None])  # cls_seg: raw cosine
    return F.interpolate(out, size=img.shape[2:], mode="bilinear", align_corners=False)


def mmcv_imrescale(bgr: np.ndarray, scale: Tuple[int, int]) -> np.ndarray:
    h, w = bgr.shape[:2]
    factor = min(max(scale) / max(h, w), min(scale) / min(h, w))
    size = (int(w * factor + 0.5), int(h * factor + 0.5))
    return cv2.resize(bgr, size, interpolation=cv2.INTER_LINEAR)


def _normalise(bgr: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    rgb = bgr[..., ::-1].astype(np.float32)
    out = (rgb - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return torch.from_numpy(np.ascontiguousarray(out.transpose(2, 0, 1)))[None]


@torch.no_grad()
def official_whole_logits(img: torch.Tensor, weights_file: dict, text: torch.Tensor, heads: int) -> torch.Tensor:
    """``encode_decode`` on one normalised ``[1, 3, H, W]`` input: cosine logits ``[1, C, H, W]``."""
    sd: Dict[str, torch.Tensor] = dict(weights_file["clip"])
    sd["proj.weight"] = weights_file["proj"]["weight"]
    return _encode_decode(img, sd, F.normalize(text.float(), dim=-1), heads)


@torch.no_grad()
def official_whole_segment(
    bgr: np.ndarray,
    weights_file: dict,
    text: torch.Tensor,
    heads: int,
    scale: Tuple[int, int],
    mean: Sequence[float],
    std: Sequence[float],
) -> Tuple[np.ndarray, np.ndarray]:
    """The official test of one BGR image in MaskCLIP's mode, ``test_cfg=dict(mode='whole')``: the rescaled image
    through ``encode_decode`` at its own size (padded inside the backbone), the logits resized to the original image
    (``whole_inference``), softmax. Returns labels ``[H, W]`` and probabilities ``[C, H, W]``."""
    img = _normalise(mmcv_imrescale(bgr, scale), mean, std)
    seg_logit = official_whole_logits(img, weights_file, text, heads)  # [1, C, H', W']
    seg_logit = F.interpolate(seg_logit, size=bgr.shape[:2], mode="bilinear", align_corners=False)
    probs = F.softmax(seg_logit, dim=1)
    return probs.argmax(1)[0].numpy(), probs[0].numpy()


@torch.no_grad()
def official_segment(
    bgr: np.ndarray,
    weights_file: dict,
    text: torch.Tensor,
    heads: int,
    scale: Tuple[int, int],
    crop: int,
    stride: int,
    mean: Sequence[float],
    std: Sequence[float],
) -> Tuple[np.ndarray, np.ndarray]:
    """The official test of one BGR image with ``test_cfg=dict(mode='slide', crop_size, stride)``: labels
    ``[H, W]`` and the softmax probabilities ``[C, H, W]`` (scale 1)."""
    img = _normalise(mmcv_imrescale(bgr, scale), mean, std)
    _, _, h_img, w_img = img.shape
    num_classes = text.shape[0]
    preds = torch.zeros(1, num_classes, h_img, w_img)
    count = torch.zeros(1, 1, h_img, w_img)
    h_grids = max(h_img - crop + stride - 1, 0) // stride + 1
    w_grids = max(w_img - crop + stride - 1, 0) // stride + 1
    for hi in range(h_grids):
        for wi in range(w_grids):
            y1, x1 = hi * stride, wi * stride
            y2, x2 = min(y1 + crop, h_img), min(x1 + crop, w_img)
            y1, x1 = max(y2 - crop, 0), max(x2 - crop, 0)
            logits = official_whole_logits(img[:, :, y1:y2, x1:x2], weights_file, text, heads)
            preds += F.pad(logits, (x1, w_img - x2, y1, h_img - y2))
            count[:, :, y1:y2, x1:x2] += 1
    seg_logit = F.interpolate(preds / count, size=bgr.shape[:2], mode="bilinear", align_corners=False)
    probs = F.softmax(seg_logit, dim=1)
    return probs.argmax(1)[0].numpy(), probs[0].numpy()
