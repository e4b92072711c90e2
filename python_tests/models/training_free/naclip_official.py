"""Test reference: NACLIP's official inference (sinahmr/NACLIP @0cac3a6), transcribed independently with plain torch
functions on a stock CLIP state dict (OpenAI / open_clip key layout). Nothing here imports zsseg_rt.

What is transcribed (file:function of the official repository):

* ``clip/model.py``: ``VisionTransformer.forward(x, return_all=True)`` with ``arch='reduced'``,
  ``attn_strategy='naclip'``: the patch convolution (stride 16, no bias: a side that is not a multiple of 16 loses
  its last rows/columns), the CLS token, the positional table added as stored when the token count equals the
  table's, else ``interpolate_pos_encoding`` (bicubic, ``scale_factor=((H//16 + 0.1) / 14, (W//16 + 0.1) / 14)``,
  ``recompute_scale_factor=False``), ``ln_pre``, the blocks but the last with ``nn.MultiheadAttention`` and
  QuickGELU (OpenAI CLIP; LayerNorm eps 1e-5), the last block reduced to
  ``out_proj(softmax(k k^T * scale + Omega) v)`` of ``ln_1(x)`` (no residual, no FFN), ``Omega`` from
  ``gaussian_window`` and ``get_attention_addition`` (a ``(2h-1) x (2w-1)`` Gaussian convolved, padding 'same', over
  one-hot position maps; 0 on the CLS row and column), ``ln_post`` and ``proj`` on every token;
* ``naclip.py``: ``forward_feature`` (CLS dropped, L2-normalised, cosine with the text, reshaped to the
  ``(H//16, W//16)`` grid, bilinear to the input's size), ``forward_slide`` (mmseg windows, logits averaged),
  ``predict`` (``slide_crop=0``: ``forward_feature`` on the whole image, the official VOC configs; bilinear to the
  original size; PAMR guided by the normalised input resized to that size), ``postprocess_result``
  (``softmax(logits * logit_scale)``, the max over a class's names, argmax, ``prob_thd`` -> class 0);
* the test pipeline: ``LoadImageFromFile`` (BGR), ``Resize(scale=(2048, 336), keep_ratio=True)`` (mmcv
  ``imrescale``, cv2 bilinear), ``SegDataPreProcessor`` (RGB, CLIP mean/std, no padding at test time).

PAMR is the shared test oracle ``pamr_oracle.torch_pamr`` (the reference implementation NACLIP vendors).
"""

from __future__ import annotations

import math
from typing import Mapping, Optional, Sequence, Tuple

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from pamr_oracle import torch_pamr

__all__ = ["naclip_official_predict", "naclip_patch_features", "official_attention_addition"]

LN_EPS = 1e-5  # OpenAI CLIP's LayerNorm (nn.LayerNorm default)
CLIP_MEAN = (122.771, 116.746, 104.094)
CLIP_STD = (68.501, 66.632, 70.323)


def _ln(x: torch.Tensor, sd: Mapping[str, torch.Tensor], name: str) -> torch.Tensor:
    return F.layer_norm(x, (x.shape[-1],), sd[name + ".weight"], sd[name + ".bias"], LN_EPS)


def gaussian_window(dim1: int, dim2: int, std: float) -> torch.Tensor:
    """``VisionTransformer.gaussian_window``."""
    constant = 1 / (std * math.sqrt(2))
    ks = []
    for dim in (dim1, dim2):
        start = -(dim - 1) / 2.0
        ks.append(torch.linspace(start * constant, (start + (dim - 1)) * constant, steps=dim, dtype=torch.float))
    return torch.exp(-(torch.stack(torch.meshgrid(*ks, indexing="ij")) ** 2).sum(0))


def official_attention_addition(dim1: int, dim2: int, std: float) -> torch.Tensor:
    """``get_attention_addition(dim1, dim2, gaussian_window(2 dim1 - 1, 2 dim2 - 1, std), adjust_for_cls=True)``:
    ``[1 + dim1 dim2, 1 + dim1 dim2]``."""
    window = gaussian_window(2 * dim1 - 1, 2 * dim2 - 1, std)
    m = torch.einsum("ij,kl->ijkl", torch.eye(dim1), torch.eye(dim2)).permute(0, 3, 1, 2).contiguous()
    out = F.conv2d(m.view(-1, dim1, dim2).unsqueeze(1), window[None, None], padding="same").squeeze(1)
    out = out.view(dim1 * dim2, dim1 * dim2)
    out = torch.hstack([torch.zeros((dim1 * dim2 + 1, 1)), torch.vstack([torch.zeros((1, dim1 * dim2)), out])])
    return out


def _positional(sd: Mapping[str, torch.Tensor], tokens: int, rows_px: int, cols_px: int, patch: int) -> torch.Tensor:
    """``x + interpolate_pos_encoding`` or the stored table (``VisionTransformer.forward``)."""
    pos = sd["visual.positional_embedding"]
    if tokens == pos.shape[0]:
        return pos
    npatch, n = tokens - 1, pos.shape[0] - 1
    if npatch == n and rows_px == cols_px:
        return pos
    dim, g = pos.shape[-1], int(math.sqrt(n))
    w0, h0 = rows_px // patch + 0.1, cols_px // patch + 0.1
    grid = F.interpolate(
        pos[1:].reshape(1, g, g, dim).permute(0, 3, 1, 2),
        mode="bicubic",
        scale_factor=(w0 / math.sqrt(n), h0 / math.sqrt(n)),
        align_corners=False,
        recompute_scale_factor=False,
    )
    assert int(w0) == grid.shape[-2] and int(h0) == grid.shape[-1]
    return torch.cat([pos[[0]].unsqueeze(0), grid.permute(0, 2, 3, 1).reshape(1, -1, dim)], dim=1)[0]


def _mha(x: torch.Tensor, sd: Mapping[str, torch.Tensor], p: str, heads: int) -> torch.Tensor:
    """``nn.MultiheadAttention(x, x, x)`` on ``[L, N, E]`` (sequence first)."""
    length, n, width = x.shape
    hd = width // heads
    q, k, v = F.linear(x, sd[p + "attn.in_proj_weight"], sd[p + "attn.in_proj_bias"]).chunk(3, dim=-1)
    q, k, v = (t.reshape(length, n * heads, hd).transpose(0, 1) for t in (q, k, v))
    a = torch.softmax((q * hd**-0.5) @ k.transpose(1, 2), dim=-1) @ v
    a = a.transpose(0, 1).reshape(length, n, width)
    return F.linear(a, sd[p + "attn.out_proj.weight"], sd[p + "attn.out_proj.bias"])


def _naclip_attention(x: torch.Tensor, sd: Mapping[str, torch.Tensor], p: str, heads: int, n_patches, std):
    """``custom_attn`` with ``attn_strategy='naclip'`` on ``[L, N, E]``."""
    length, bsz, width = x.shape
    hd = width // heads
    q, k, v = F.linear(x, sd[p + "attn.in_proj_weight"], sd[p + "attn.in_proj_bias"]).chunk(3, dim=-1)
    k = k.contiguous().view(-1, bsz * heads, hd).transpose(0, 1)
    v = v.contiguous().view(-1, bsz * heads, hd).transpose(0, 1)
    addition = official_attention_addition(n_patches[0], n_patches[1], std).unsqueeze(0).to(x.dtype)
    weights = torch.bmm(k, k.transpose(1, 2)) * hd**-0.5 + addition
    out = torch.bmm(F.softmax(weights, dim=-1), v)
    out = out.transpose(0, 1).contiguous().view(-1, bsz, width)
    return F.linear(out, sd[p + "attn.out_proj.weight"], sd[p + "attn.out_proj.bias"])


def naclip_patch_features(img: torch.Tensor, sd: Mapping[str, torch.Tensor], heads: int, std: float = 5.0):
    """``encode_image(img, return_all=True)[:, 1:]`` of a normalised ``[B, 3, H, W]`` input: ``[B, N, D]``."""
    w_conv = sd["visual.conv1.weight"]
    patch = w_conv.shape[-1]
    _, _, rows_px, cols_px = img.shape
    n_patches = (rows_px // patch, cols_px // patch)
    x = F.conv2d(img, w_conv, stride=patch)
    x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)
    cls = sd["visual.class_embedding"] + torch.zeros(x.shape[0], 1, x.shape[-1])
    x = torch.cat([cls, x], dim=1)
    x = x + _positional(sd, x.shape[1], rows_px, cols_px, patch)
    x = _ln(x, sd, "visual.ln_pre").permute(1, 0, 2)  # NLD -> LND
    layers = sorted({int(k.split(".")[3]) for k in sd if k.startswith("visual.transformer.resblocks.")})
    for i in layers[:-1]:
        p = f"visual.transformer.resblocks.{i}."
        x = x + _mha(_ln(x, sd, p + "ln_1"), sd, p, heads)
        h = F.linear(_ln(x, sd, p + "ln_2"), sd[p + "mlp.c_fc.weight"], sd[p + "mlp.c_fc.bias"])
        x = x + F.linear(h * torch.sigmoid(1.702 * h), sd[p + "mlp.c_proj.weight"], sd[p + "mlp.c_proj.bias"])
    p = f"visual.transformer.resblocks.{layers[-1]}."
    x = _naclip_attention(_ln(x, sd, p + "ln_1"), sd, p, heads, n_patches, std)  # arch 'reduced'
    x = x.permute(1, 0, 2)
    return (_ln(x, sd, "visual.ln_post") @ sd["visual.proj"])[:, 1:]


def _forward_feature(img: torch.Tensor, sd, text: torch.Tensor, heads: int) -> torch.Tensor:
    feats = naclip_patch_features(img, sd, heads)
    feats = feats / feats.norm(dim=-1, keepdim=True)
    logits = feats @ text.T
    patch = sd["visual.conv1.weight"].shape[-1]
    w, h = img[0].shape[-2] // patch, img[0].shape[-1] // patch
    logits = logits.permute(0, 2, 1).reshape(-1, logits.shape[-1], w, h)
    return F.interpolate(logits, size=img.shape[-2:], mode="bilinear", align_corners=False)


def _forward_slide(img: torch.Tensor, sd, text: torch.Tensor, heads: int, stride: int, crop: int) -> torch.Tensor:
    _, _, h_img, w_img = img.shape
    preds = img.new_zeros((1, text.shape[0], h_img, w_img))
    count = img.new_zeros((1, 1, h_img, w_img))
    h_grids = max(h_img - crop + stride - 1, 0) // stride + 1
    w_grids = max(w_img - crop + stride - 1, 0) // stride + 1
    for hi in range(h_grids):
        for wi in range(w_grids):
            y2, x2 = min(hi * stride + crop, h_img), min(wi * stride + crop, w_img)
            y1, x1 = max(y2 - crop, 0), max(x2 - crop, 0)
            logits = _forward_feature(img[:, :, y1:y2, x1:x2], sd, text, heads)
            preds += F.pad(logits, (int(x1), int(w_img - x2), int(y1), int(h_img - y2)))
            count[:, :, y1:y2, x1:x2] += 1
    return preds / count


def imrescale(bgr: np.ndarray, scale: Tuple[int, int]) -> np.ndarray:
    """mmcv ``imrescale`` (keep ratio, cv2 bilinear)."""
    h, w = bgr.shape[:2]
    factor = min(max(scale) / max(h, w), min(scale) / min(h, w))
    return cv2.resize(bgr, (int(w * factor + 0.5), int(h * factor + 0.5)), interpolation=cv2.INTER_LINEAR)


@torch.no_grad()
def naclip_official_predict(
    bgr: np.ndarray,
    sd: Mapping[str, torch.Tensor],
    text: torch.Tensor,
    heads: int,
    slide_crop: int = 0,
    slide_stride: int = 112,
    scale: Tuple[int, int] = (2048, 336),
    logit_scale: float = 40.0,
    prob_thd: float = 0.0,
    pamr_steps: int = 10,
    pamr_dilations: Sequence[int] = (8, 16),
    query_idx: Optional[Sequence[int]] = None,
) -> Tuple[np.ndarray, np.ndarray]:
    """``NACLIP.predict`` + ``postprocess_result`` on one BGR image: labels ``[H, W]`` and class probabilities
    ``[num_cls, H, W]``. ``text``: the normalised query embeddings ``[Q, D]`` (one per name), ``query_idx`` their
    classes (None: one query per class); ``slide_crop=0`` is the official VOC setting (whole image)."""
    rgb = imrescale(bgr, scale)[..., ::-1].astype(np.float32)
    norm = (rgb - np.asarray(CLIP_MEAN, np.float32)) / np.asarray(CLIP_STD, np.float32)
    inputs = torch.from_numpy(np.ascontiguousarray(norm.transpose(2, 0, 1)))[None]
    sd = {k: v.float() for k, v in sd.items()}
    text = text.float()
    if slide_crop > 0:
        seg_logits = _forward_slide(inputs, sd, text, heads, slide_stride, slide_crop)
    else:
        seg_logits = _forward_feature(inputs, sd, text, heads)
    img_size = bgr.shape[:2]
    seg_logits = F.interpolate(seg_logits, size=img_size, mode="bilinear", align_corners=False)
    if pamr_steps:
        img = F.interpolate(inputs, size=img_size, mode="bilinear", align_corners=False)
        seg_logits = torch.from_numpy(torch_pamr(seg_logits.numpy(), img.numpy(), pamr_steps, pamr_dilations))
    probs = torch.softmax(seg_logits[0] * logit_scale, dim=0)
    idx = torch.arange(text.shape[0]) if query_idx is None else torch.as_tensor(list(query_idx), dtype=torch.int64)
    num_cls, num_queries = int(idx.max()) + 1, len(idx)
    if num_cls != num_queries:
        cls_index = F.one_hot(idx).T.view(num_cls, num_queries, 1, 1)
        probs = (probs.unsqueeze(0) * cls_index).max(1)[0]
    pred = probs.argmax(0)
    pred[probs.max(0)[0] < prob_thd] = 0
    return pred.numpy(), probs.numpy()
