"""ZeroSeg inference ([P] §4.2, GroupViT-style details as named config options): each of the m segment tokens is
classified against the CLIP text embeddings of the vocabulary, the patch -> segment assignment maps are upsampled
to the image, every pixel takes its segment (argmax over segments), and a segment whose best class score is
below the dataset's background threshold becomes background.

Label convention: 0 = background, 1..C = the given classes (VOC-21 / Context-60 / COCO-Object-81 style).
"""

from __future__ import annotations

from typing import Dict, Optional, Tuple

import torch
import torch.nn.functional as F

from .config import ZeroSegConfig

__all__ = [
    "segment_class_scores",
    "effective_threshold",
    "labels_from_segments",
    "window_class_maps",
    "predict",
    "predict_image",
]


def segment_class_scores(
    segments: torch.Tensor, global_feature: torch.Tensor, text: torch.Tensor, config: ZeroSegConfig
) -> torch.Tensor:
    """Per-segment class scores [B, m, C].

    Args:
        segments: [B, m, E] segment tokens in CLIP space. global_feature: [B, E] z (for the top-k class filter).
        text: [C, E] class embeddings (normalised here).
    ``score_mode="cosine"``: raw cosine; ``"softmax"``: softmax over classes of ``logit_scale * cosine`` after
    keeping only the ``topk_classes`` classes the global embedding ranks highest (0 = keep all), multiplied by
    the softmax without that filter when ``affinity_product`` (GroupViT's ``encode_decode``).
    """
    t = F.normalize(text.float(), dim=-1)
    cos = F.normalize(segments.float(), dim=-1) @ t.t()  # [B, m, C]
    if config.score_mode == "cosine":
        return cos
    logits = cos * min(float(config.logit_scale), 100.0)
    k = int(config.topk_classes)
    unmasked = logits.softmax(dim=-1)
    if k > 0:
        # GroupViT keeps the top min(k, C) classes of the pooled embedding. Written as "fewer than k classes rank
        # strictly higher" (no data-dependent branch or k, so the traced head graph works for every C)
        ranking = F.normalize(global_feature.float(), dim=-1) @ t.t()  # [B, C]
        higher = (ranking[:, None, :] > ranking[:, :, None]).sum(dim=-1)  # [B, C] classes ranked above each
        logits = logits.masked_fill((higher >= k)[:, None, :], float("-inf"))
    scores = logits.softmax(dim=-1)
    if config.affinity_product:  # GroupViT: group_affinity_mat *= pre_group_affinity_mat
        scores = scores * unmasked
    return scores


def effective_threshold(scores: torch.Tensor, background_threshold: float, clamp: bool) -> torch.Tensor:
    """[B] background threshold per image: GroupViT's ``min(bg_thresh, max segment score)`` with ``clamp``."""
    thr = torch.full((scores.shape[0],), float(background_threshold), dtype=scores.dtype, device=scores.device)
    return torch.minimum(thr, scores.flatten(1).max(dim=1).values) if clamp else thr


def labels_from_segments(
    maps: torch.Tensor,
    scores: torch.Tensor,
    size: Tuple[int, int],
    background_threshold: Optional[float],
    clamp: bool = False,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Pixel labels from segment maps and segment scores.

    Args:
        maps: [B, m, h, w] patch -> segment assignment. scores: [B, m, C]. size: output (H, W).
        background_threshold: segments whose best score is below it are background (None: never).
        clamp: lower the threshold to the best segment score of the image (GroupViT), see :func:`effective_threshold`.
    Returns:
        labels [B, H, W] int64 (0 = background, c + 1 = class c), score [B, H, W] float32 (the segment's best score).
    """
    up = F.interpolate(maps.float(), size=size, mode="bilinear", align_corners=False)  # [B, m, H, W]
    segment = up.argmax(dim=1)  # [B, H, W]
    best, cls = scores.max(dim=-1)  # [B, m]
    seg_label = cls + 1
    if background_threshold is not None:
        thr = effective_threshold(scores, background_threshold, clamp)[:, None]
        seg_label = torch.where(best < thr, torch.zeros_like(seg_label), seg_label)
    labels = torch.gather(seg_label, 1, segment.flatten(1)).view_as(segment)
    score = torch.gather(best, 1, segment.flatten(1)).view_as(segment)
    return labels, score


@torch.no_grad()
def predict(
    model, images: torch.Tensor, text: torch.Tensor, background_threshold: Optional[float] = None
) -> Dict[str, torch.Tensor]:
    """Whole-image inference on normalised ``images`` [B, 3, H, W] with class embeddings ``text`` [C, E].

    ``background_threshold`` defaults to the config's (``DATASET_BACKGROUND_THRESHOLDS``: VOC 0.95, Context 0.05,
    COCO-Object 0.35). Returns labels [B, H, W], score [B, H, W], segment_scores [B, m, C], maps [B, m, h, w].
    """
    cfg = model.config
    model.eval()
    segments, global_feature, maps = model(images)
    scores = segment_class_scores(segments, global_feature, text, cfg)
    thr = cfg.background_threshold if background_threshold is None else background_threshold
    size = (int(images.shape[-2]), int(images.shape[-1]))
    labels, score = labels_from_segments(maps, scores, size, thr, clamp=cfg.clamp_background_threshold)
    return {"labels": labels, "score": score, "segment_scores": scores, "maps": maps}


def window_class_maps(
    segments: torch.Tensor,
    global_feature: torch.Tensor,
    maps: torch.Tensor,
    text: torch.Tensor,
    config: ZeroSegConfig,
    size: Tuple[int, int],
    background_threshold: float,
) -> torch.Tensor:
    """GroupViT's per-window class maps ``[B, 1 + C, H, W]`` (its ``encode_decode``): the assignment maps are
    upsampled (bilinear) to the window, each pixel takes its arg-max segment, and gets that segment's class scores
    (channels 1..C) and a background channel that is 1 where the segment's best score is below the (clamped)
    threshold, else 0. Windows are averaged by the sliding-window inference; the arg-max over channels is the
    label (0 = background). This function is also the bundle's head graph, so ONNX and PyTorch cannot drift.

    Args:
        segments [B, m, E], global_feature [B, E], maps [B, m, h, w] (the student's outputs), text [C, E].
    """
    scores = segment_class_scores(segments, global_feature, text, config)  # [B, m, C]
    best = scores.max(dim=-1).values  # [B, m]
    thr = effective_threshold(scores, background_threshold, config.clamp_background_threshold)
    table = torch.cat([(best < thr[:, None]).to(scores.dtype)[..., None], scores], dim=-1)  # [B, m, 1 + C]
    up = F.interpolate(maps.float(), size=size, mode="bilinear", align_corners=False)  # [B, m, H, W]
    segment = up.argmax(dim=1).flatten(1)  # [B, H*W]
    index = segment[..., None].expand(-1, -1, table.shape[-1])
    pixels = torch.gather(table, 1, index)  # [B, H*W, 1 + C]
    return pixels.transpose(1, 2).reshape(scores.shape[0], table.shape[-1], int(size[0]), int(size[1]))


@torch.no_grad()
def predict_image(
    model,
    rgb,
    text: torch.Tensor,
    background_threshold: Optional[float] = None,
    mode: Optional[str] = None,
    max_batch: int = 4,
):
    """GroupViT's test pipeline on one ``[H, W, 3]`` uint8 RGB image: keep-ratio rescale to
    ``(max_long_side, short_side)`` (mmseg/cv2 bilinear), normalisation, then ``mode`` (default the config's
    ``test_mode``) "slide" (``crop_size`` windows every ``stride``, class maps averaged where windows overlap) or
    "whole" (the rescaled image in one pass, padded to a multiple of the patch), bilinear resize of the class maps
    to the original size, arg-max over ``1 + C`` channels.

    A window smaller than ``crop_size`` (only for images more than ~4.6:1 elongated) is zero-padded to the crop
    size and its maps cut back, as the fixed-size Engine graphs do (GroupViT runs it at its own size).

    Returns ``(labels [H, W] int64 (0 = background, c + 1 = class c), scores [H, W] float32)`` (the winning
    channel's averaged value, as the Engine's ``SegmentationResult.scores``).
    """
    import numpy as np

    from zsseg_rt import pipeline

    cfg = model.config
    mode = cfg.test_mode if mode is None else mode
    if mode not in ("slide", "whole"):
        raise ValueError(f"mode must be slide|whole, got {mode!r}")
    thr = cfg.background_threshold if background_threshold is None else float(background_threshold)
    device = next(model.parameters()).device
    text = text.to(device)
    model.eval()
    height, width = rgb.shape[:2]
    scaled = pipeline.rescale_keep_ratio(rgb, (cfg.max_long_side, cfg.short_side), max_pixels=None)
    chw = pipeline.normalize_image(scaled, cfg.mean, cfg.std)
    sh, sw = chw.shape[1:]
    if mode == "whole":
        windows = [pipeline.Window(0, sh, 0, sw)]
        size = None
    else:
        windows = pipeline.sliding_windows(sh, sw, cfg.crop_size, cfg.stride)
        size = (cfg.crop_size, cfg.crop_size)
    total = torch.zeros(1, len(text) + 1, sh, sw)
    count = torch.zeros(1, 1, sh, sw)
    for start in range(0, len(windows), max_batch):
        part = windows[start : start + max_batch]
        crops = [chw[:, w.y1 : w.y2, w.x1 : w.x2] for w in part]
        target = size or max(((c.shape[1], c.shape[2]) for c in crops))
        batch = np.stack([pipeline.pad_to_multiple(c, cfg.patch_size, target) for c in crops])
        x = torch.from_numpy(batch).to(device)
        segments, global_feature, maps = model(x)
        hw = (int(x.shape[-2]), int(x.shape[-1]))
        out = window_class_maps(segments, global_feature, maps, text, cfg, hw, thr).cpu()
        for w, o in zip(part, out):
            total[:, :, w.y1 : w.y2, w.x1 : w.x2] += o[:, : w.y2 - w.y1, : w.x2 - w.x1]
            count[:, :, w.y1 : w.y2, w.x1 : w.x2] += 1
    merged = total / count
    if (sh, sw) != (height, width):
        merged = F.interpolate(merged, size=(height, width), mode="bilinear", align_corners=False)
    labels = merged[0].argmax(dim=0)  # first maximum on ties: background wins a tie, as in mmseg's argmax
    score = torch.gather(merged[0], 0, labels[None])[0]
    return labels, score
