"""Test oracle: SC-CLIP's official inference transcribed independently from SuleBai/SC-CLIP @0417ba9
(``clip/model.py``: ``VisionTransformer.forward``, ``lof_pytorch``, ``custom_attn``, ``adaptively_aggregate``,
``mean_interpolation``; ``scclip_segmentor.py``: ``forward_feature``, ``forward_slide``, ``postprocess_result``)
on an image tower in the OpenAI CLIP layout (sequence-first ``nn.MultiheadAttention`` blocks, QuickGELU).

It keeps the official computations as they are: one window at a time (batch 1), the ``[N, N, W]`` difference
tensor for the LOF distances, ``torch.quantile``, the anomaly indices and the index-based repair, the mean of the
similarity over the whole tensor, logits scaled only in the post-processing. The package's implementation
(``zsseg_rt.models.training_free.scclip``) is tested against it, end to end through the Engine.

Shared with the Engine (documented differences of the whole training-free family, not SC-CLIP's): the keep-ratio
rescale (``zsseg_rt.pipeline.rescale_keep_ratio``, mmcv's) and the text embeddings are inputs here.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from zsseg_rt import pipeline

__all__ = ["OfficialSCCLIPVisual", "official_scclip_inference"]


class _QuickGELU(nn.Module):
    def forward(self, x):
        return x * torch.sigmoid(1.702 * x)


class _Block(nn.Module):  # clip/model.py ResidualAttentionBlock (sequence-first)
    def __init__(self, width: int, heads: int):
        super().__init__()
        self.attn = nn.MultiheadAttention(width, heads)
        self.ln_1 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(
            OrderedDict(
                [("c_fc", nn.Linear(width, 4 * width)), ("gelu", _QuickGELU()), ("c_proj", nn.Linear(4 * width, width))]
            )
        )
        self.ln_2 = nn.LayerNorm(width)

    def forward(self, x):
        y = self.ln_1(x)
        x = x + self.attn(y, y, y, need_weights=False)[0]
        return x + self.mlp(self.ln_2(x))


class _Transformer(nn.Module):
    def __init__(self, width: int, layers: int, heads: int):
        super().__init__()
        self.resblocks = nn.Sequential(*[_Block(width, heads) for _ in range(layers)])


def _lof(x: torch.Tensor, n_neighbors: int, contamination: float):  # lof_pytorch
    distances = torch.norm(x[:, None] - x[None, :], dim=2, p=2) ** 2
    knn_distances, knn_indices = torch.topk(distances, k=n_neighbors + 1, largest=False)
    knn_distances, knn_indices = knn_distances[:, 1:], knn_indices[:, 1:]
    k_distances = knn_distances[:, -1].unsqueeze(1).expand_as(knn_distances)
    reach_distances = torch.max(knn_distances, k_distances)
    lrd = n_neighbors / torch.nan_to_num(reach_distances.mean(dim=1), nan=1e-6)
    lof_scores = (lrd[knn_indices] / lrd.unsqueeze(1)).mean(dim=1)
    threshold = torch.quantile(lof_scores.to(torch.float32), 1 - contamination)
    return torch.where(lof_scores > threshold)[0]


class OfficialSCCLIPVisual(nn.Module):
    """The OpenAI ``VisionTransformer`` with SC-CLIP's ``forward(x, return_all=True)``."""

    def __init__(self, resolution: int, patch: int, width: int, layers: int, heads: int, output_dim: int, **settings):
        super().__init__()
        self.patch_size, self.width = patch, width
        self.conv1 = nn.Conv2d(3, width, kernel_size=patch, stride=patch, bias=False)
        self.class_embedding = nn.Parameter(torch.zeros(width))
        self.positional_embedding = nn.Parameter(torch.zeros((resolution // patch) ** 2 + 1, width))
        self.ln_pre = nn.LayerNorm(width)
        self.transformer = _Transformer(width, layers, heads)
        self.ln_post = nn.LayerNorm(width)
        self.proj = nn.Parameter(torch.zeros(width, output_dim))
        self.beta = 0.4
        self.pre_adjust_idx = settings.get("pre_adjust_idx", 8)
        self.post_adjust_idx = settings.get("post_adjust_idx", 3)
        self.multi_start_idx = settings.get("multi_start_idx", 3)
        self.multi_end_idx = settings.get("multi_end_idx", 10)
        self.res_cls = settings.get("res_cls", 0.3)
        self.n_neighbors = settings.get("lof_neighbors", 30)
        self.contamination = settings.get("lof_contamination", 0.05)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B = x.shape[0]
        x = self.conv1(x)
        feat_w, feat_h = x.shape[-2], x.shape[-1]
        x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)
        x = torch.cat([self.class_embedding + torch.zeros(x.shape[0], 1, x.shape[-1]), x], dim=1)
        assert x.shape[1] == self.positional_embedding.shape[0], "the oracle runs at the native grid"
        x = self.ln_pre(x + self.positional_embedding)
        x = x.permute(1, 0, 2)
        feats_list = []
        top_indices = []
        blocks = self.transformer.resblocks
        for idx, blk in enumerate(blocks[:-1], start=1):
            x = blk(x)
            feats_list.append(x)
            if idx == len(blocks) - 1:
                cls_token = x[:1, ...]
                outliers = _lof(x[1:, ...].squeeze(1), self.n_neighbors, self.contamination)
                top_indices = [(torch.div(i, feat_w, rounding_mode="trunc"), i % feat_w) for i in outliers]
                fmap = x[1:, :, :].permute(1, 2, 0).reshape(B, self.width, feat_w, feat_h)
                fmap = self.mean_interpolation(fmap, top_indices)
                x = fmap.reshape(B, self.width, feat_w * feat_h).permute(2, 0, 1)
        feats = feats_list[self.pre_adjust_idx][1:, ...].clone()
        feats = self.mean_interpolation(feats.permute(1, 2, 0).reshape(B, self.width, feat_w, feat_h), top_indices)
        feats = feats.reshape(B, self.width, feat_w * feat_h).permute(2, 0, 1)
        feats = feats / feats.norm(dim=2, keepdim=True)
        before_simi = torch.matmul(feats.permute(1, 0, 2), feats.permute(1, 2, 0))
        mid_simi = before_simi.clone()
        before_simi[before_simi < self.beta] = 0.0
        x = self.adaptively_aggregate(x, before_simi)
        blk = blocks[-1]
        x = self.custom_attn(blk.attn, blk.ln_1(x), mid_simi) + self.res_cls * cls_token
        feats = feats_list[self.post_adjust_idx][1:, ...].clone()
        feats = feats / feats.norm(dim=2, keepdim=True)
        after_simi = torch.matmul(feats.permute(1, 0, 2), feats.permute(1, 2, 0))
        after_simi[after_simi < self.beta] = 0.0
        x = self.adaptively_aggregate(x, after_simi)
        re_feats = torch.zeros_like(feats_list[0])
        for i in range(self.multi_start_idx, self.multi_end_idx):
            re_feats += feats_list[i]
        cls_token = re_feats[:1, ...]
        re_feats = self.custom_attn(blk.attn, blk.ln_1(re_feats[1:, ...]), mid_simi) + self.res_cls * cls_token
        x += self.adaptively_aggregate(re_feats, after_simi)
        return self.ln_post(x.permute(1, 0, 2)) @ self.proj

    def custom_attn(self, attn_layer, x, mid_simi):
        num_heads = attn_layer.num_heads
        _, bsz, embed_dim = x.size()
        head_dim = embed_dim // num_heads
        q, k, v = F.linear(x, attn_layer.in_proj_weight, attn_layer.in_proj_bias).chunk(3, dim=-1)
        k = k.contiguous().view(-1, bsz * num_heads, head_dim).transpose(0, 1)
        v = v.contiguous().view(-1, bsz * num_heads, head_dim).transpose(0, 1)
        mid_simi = (mid_simi - torch.mean(mid_simi)) * 3.0
        mid_simi[mid_simi < 0.0] = float("-inf")
        attn_weights = F.softmax(mid_simi.repeat(num_heads, 1, 1), dim=-1)
        attn_weights += F.softmax(torch.bmm(k, k.transpose(1, 2)) * head_dim**-0.5, dim=-1)
        attn_weights /= 2
        out = torch.bmm(attn_weights, v).transpose(0, 1).contiguous().view(-1, bsz, embed_dim)
        return attn_layer.out_proj(out)

    @staticmethod
    def adaptively_aggregate(feats, corrs):
        corrs_normalized = corrs / (corrs.sum(dim=-1, keepdim=True) + 1e-6)
        return torch.matmul(corrs_normalized, feats.permute(1, 0, 2)).permute(1, 0, 2)

    @staticmethod
    def mean_interpolation(feature_map, top_indices):
        B, C, H, W = feature_map.shape
        kernel = torch.ones(C, 1, 3, 3)
        kernel[:, 0, 1, 1] = 0
        mask = torch.ones((H, W))
        indices = torch.tensor(top_indices, dtype=torch.long)
        mask[indices[:, 0], indices[:, 1]] = 0
        mask = mask[None, None]
        neighbor_sum = F.conv2d(F.pad(feature_map * mask, (1, 1, 1, 1)), kernel, groups=C)
        valid = F.conv2d(F.pad(mask, (1, 1, 1, 1)), kernel[:, :1], groups=1)
        valid_mask = (valid > 0).float()
        safe = valid.clone()
        safe[safe == 0] = 1
        top_mask = torch.zeros((H, W))
        top_mask[indices[:, 0], indices[:, 1]] = 1
        update = top_mask[None, None] * valid_mask
        return feature_map * (1 - update) + neighbor_sum / safe * update


def _forward_feature(visual: OfficialSCCLIPVisual, img: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
    feats = visual(img)
    feats = feats / feats.norm(dim=-1, keepdim=True)
    logits = feats @ query.T
    w, h = img[0].shape[-2] // visual.patch_size, img[0].shape[-1] // visual.patch_size
    logits = logits.permute(0, 2, 1).reshape(-1, logits.shape[-1], w, h)
    return F.interpolate(logits, size=img.shape[-2:], mode="bilinear", align_corners=False)


@torch.no_grad()
def official_scclip_inference(
    visual: OfficialSCCLIPVisual,
    query_features: torch.Tensor,
    image_bgr: np.ndarray,
    mean: Sequence[float],
    std: Sequence[float],
    short_side: int,
    crop: int,
    stride: int,
    logit_scale: float = 40.0,
    prob_thd: float = 0.0,
    area_thd: Optional[float] = None,
    query_idx: Optional[Sequence[int]] = None,
) -> Tuple[np.ndarray, np.ndarray]:
    """``forward_slide`` + ``postprocess_result`` on one BGR image: ``(labels [H, W] int32, max probability)``.

    ``query_features``: ``[Q, D]`` L2-normalised query (name) embeddings; ``query_idx``: the class of each query
    (``get_cls_idx`` of a class file with synonyms), None for one query per class. No PAMR (SC-CLIP's configs never
    enable it)."""
    rgb = pipeline.to_rgb_uint8(image_bgr, "bgr")
    scaled = pipeline.rescale_keep_ratio(rgb, (2048, short_side))
    img = torch.from_numpy(pipeline.normalize_image(scaled, mean, std))[None]
    _, _, h_img, w_img = img.shape
    preds = img.new_zeros((1, query_features.shape[0], h_img, w_img))
    count_mat = img.new_zeros((1, 1, h_img, w_img))
    for h_idx in range(max(h_img - crop + stride - 1, 0) // stride + 1):
        for w_idx in range(max(w_img - crop + stride - 1, 0) // stride + 1):
            y1, x1 = h_idx * stride, w_idx * stride
            y2, x2 = min(y1 + crop, h_img), min(x1 + crop, w_img)
            y1, x1 = max(y2 - crop, 0), max(x2 - crop, 0)
            crop_logit = _forward_feature(visual, img[:, :, y1:y2, x1:x2], query_features)
            preds += F.pad(crop_logit, (int(x1), int(preds.shape[3] - x2), int(y1), int(preds.shape[2] - y2)))
            count_mat[:, :, y1:y2, x1:x2] += 1
    assert (count_mat == 0).sum() == 0
    logits = F.interpolate(preds / count_mat, size=rgb.shape[:2], mode="bilinear", align_corners=False)
    seg = (logits[0] * logit_scale).softmax(0)
    num_cls = seg.shape[0]
    if query_idx is not None:  # postprocess_result: num_cls != num_queries
        idx = torch.as_tensor(list(query_idx), dtype=torch.int64)
        num_cls, num_queries = int(idx.max()) + 1, len(idx)
        cls_index = F.one_hot(idx).T.view(num_cls, num_queries, 1, 1)
        seg = (seg.unsqueeze(0) * cls_index).max(1)[0]
    if area_thd is not None:
        predictions = F.one_hot(seg.argmax(0), num_cls).to(seg.dtype)
        area_pred = predictions[:, :, 1:].sum((0, 1), keepdim=True)
        area_pred = (area_pred > area_thd * area_pred.sum()).to(seg.dtype)
        seg[1:] *= area_pred.transpose(0, -1)
    seg_pred = seg.argmax(0, keepdim=True)
    seg_pred[seg.max(0, keepdim=True)[0] < prob_thd] = 0
    return seg_pred[0].numpy().astype(np.int32), seg.max(0)[0].numpy().astype(np.float32)


def openai_state_dict(visual: OfficialSCCLIPVisual, text_clip: nn.Module) -> dict:
    """A CLIP state dict in the OpenAI layout: ``visual.*`` from the oracle's tower, the text keys of ``text_clip``
    (an open_clip CLIP, whose text keys are OpenAI's)."""
    sd = {f"visual.{k}": v.detach().clone() for k, v in visual.state_dict().items()}
    for k, v in text_clip.state_dict().items():
        if not k.startswith("visual."):
            sd[k] = v.detach().clone()
    return sd
