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

__all__ = ["segment_class_scores", "labels_from_segments", "predict"]


def segment_class_scores(
    segments: torch.Tensor, global_feature: torch.Tensor, text: torch.Tensor, config: ZeroSegConfig
) -> torch.Tensor:
    """Per-segment class scores [B, m, C].

    Args:
        segments: [B, m, E] segment tokens in CLIP space. global_feature: [B, E] z (for the top-k class filter).
        text: [C, E] class embeddings (normalised here).
    ``score_mode="cosine"``: raw cosine; ``"softmax"``: softmax over classes of ``logit_scale * cosine`` after
    keeping only the ``topk_classes`` classes the global embedding ranks highest (0 = keep all).
    """
    t = F.normalize(text.float(), dim=-1)
    cos = F.normalize(segments.float(), dim=-1) @ t.t()  # [B, m, C]
    if config.score_mode == "cosine":
        return cos
    logits = cos * min(float(config.logit_scale), 100.0)
    k = int(config.topk_classes)
    if 0 < k < t.shape[0]:
        ranking = F.normalize(global_feature.float(), dim=-1) @ t.t()  # [B, C]
        keep = torch.zeros_like(ranking, dtype=torch.bool).scatter_(1, ranking.topk(k, dim=1).indices, True)
        logits = logits.masked_fill(~keep[:, None, :], float("-inf"))
    return logits.softmax(dim=-1)


def labels_from_segments(
    maps: torch.Tensor, scores: torch.Tensor, size: Tuple[int, int], background_threshold: Optional[float]
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Pixel labels from segment maps and segment scores.

    Args:
        maps: [B, m, h, w] patch -> segment assignment. scores: [B, m, C]. size: output (H, W).
        background_threshold: segments whose best score is below it are background (None: never).
    Returns:
        labels [B, H, W] int64 (0 = background, c + 1 = class c), score [B, H, W] float32 (the segment's best score).
    """
    up = F.interpolate(maps.float(), size=size, mode="bilinear", align_corners=False)  # [B, m, H, W]
    segment = up.argmax(dim=1)  # [B, H, W]
    best, cls = scores.max(dim=-1)  # [B, m]
    seg_label = cls + 1
    if background_threshold is not None:
        seg_label = torch.where(best < background_threshold, torch.zeros_like(seg_label), seg_label)
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
    labels, score = labels_from_segments(maps, scores, (int(images.shape[-2]), int(images.shape[-1])), thr)
    return {"labels": labels, "score": score, "segment_scores": scores, "maps": maps}
