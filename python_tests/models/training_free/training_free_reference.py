"""Test reference: PyTorch slide inference of the training-free segmenters, transcribed independently from the
official ``forward_slide`` + ``postprocess_result`` of SCLIP / ClearCLIP / NACLIP. The package's own inference
(:func:`zsseg_rt.models.training_free.predict.segment`, the Engine's softmax path) goes through the one
``zsseg_rt.pipeline.Postprocessor``; this torch loop is what both are tested against.

Official order: rescale (keep ratio, short side ``short_side``) -> normalise -> windows ``crop``/``stride`` -> per
window cosine logits bilinearly upsampled to the window -> average overlapping windows (logits, not
probabilities) -> bilinear to the original size -> (PAMR, NACLIP) -> ``* logit_scale`` -> softmax over classes -> (SCLIP
``area_thd``) -> argmax; pixels whose best probability is below ``background_threshold`` -> class 0.

Differences from the official code, all shared with the Engine: windows smaller than the crop (images whose side
is below the crop) are zero-padded bottom/right to the crop and the padded logits dropped (SCLIP runs the small
crop as is; ClearCLIP pads centred). Synonyms (``"sky, wall, ..."`` lines of a class file): ``query_idx`` gives
the class of every query (name), and the class probabilities are the official one-hot product + max.
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from pamr_oracle import torch_pamr

from zsseg_rt import pipeline

__all__ = ["slide_inference", "softmax_labels"]


def softmax_labels(
    logits: torch.Tensor,
    background_threshold: Optional[float] = None,
    area_threshold: Optional[float] = None,
    query_idx: Optional[Sequence[int]] = None,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """``logits [B, Q, H, W]`` (already scaled) -> ``(labels [B,H,W] int64, best probability [B,H,W])``;
    ``query_idx``: the class of each of the Q queries (None: one query per class)."""
    probs = torch.softmax(logits.float(), dim=1)
    if query_idx is not None:  # postprocess_result: (seg_logits * one_hot(query_idx).T).max over the queries
        idx = torch.as_tensor(list(query_idx), dtype=torch.int64)
        num_cls, num_queries = int(idx.max()) + 1, len(idx)
        cls_index = F.one_hot(idx).T.view(1, num_cls, num_queries, 1, 1).to(probs.dtype)
        probs = (probs.unsqueeze(1) * cls_index).max(2)[0]
    if area_threshold is not None:
        c = probs.shape[1]
        onehot = F.one_hot(probs.argmax(1), c).to(probs.dtype)  # [B, H, W, C]
        area = onehot[..., 1:].sum((1, 2))  # [B, C-1] (class 0 is background)
        keep = (area > area_threshold * area.sum(-1, keepdim=True)).to(probs.dtype)
        probs = torch.cat([probs[:, :1], probs[:, 1:] * keep[:, :, None, None]], dim=1)
    best, labels = probs.max(dim=1)
    if background_threshold is not None:
        labels = torch.where(best < background_threshold, torch.zeros_like(labels), labels)
    return labels, best


@torch.no_grad()
def slide_inference(
    model,
    image: np.ndarray,
    class_names: Optional[Sequence[str]] = None,
    templates: Optional[Sequence[str]] = None,
    color_order: str = "rgb",
    short_side: Optional[int] = None,
    background_threshold: Optional[float] = -1.0,
    area_threshold: Optional[float] = -1.0,
    text: Optional[torch.Tensor] = None,
    query_idx: Optional[Sequence[int]] = None,
    logit_scale: Optional[float] = None,
) -> Tuple[np.ndarray, np.ndarray]:
    """Segment one ``[H, W, 3]`` uint8 image with a ``TrainingFreeSegmenter`` in PyTorch.

    Args:
        short_side: rescale target (default: the config's ``short_side``; the Engine uses the bundle's image size).
        background_threshold / area_threshold: -1 means "the config's value"; None disables.
        text: precomputed ``[C, D]`` text embeddings (else computed from ``class_names``/``templates``).
        query_idx: synonyms: ``class_names`` are queries (names) and this their classes.
        logit_scale: another scale than the config's (the official setting of a dataset).
    Returns:
        ``labels [H, W]`` int32 and ``scores [H, W]`` float32 (the winning softmax probability).
    """
    cfg = model.config
    if text is None:
        text = model.text_embeddings(class_names, templates)
    bg = cfg.background_threshold if background_threshold == -1.0 else background_threshold
    area = cfg.area_threshold if area_threshold == -1.0 else area_threshold
    short = int(cfg.short_side if short_side is None else short_side)
    size, crop, stride = int(cfg.image_size), int(cfg.crop_size), int(cfg.stride)
    device = next(model.parameters()).device

    rgb = pipeline.to_rgb_uint8(image, color_order)
    orig_hw = rgb.shape[:2]
    chw = pipeline.normalize_image(pipeline.rescale_keep_ratio(rgb, (2048, short)), cfg.mean, cfg.std)
    img = torch.from_numpy(np.ascontiguousarray(chw)).to(device)[None]
    _, _, h_img, w_img = img.shape
    text = text.to(device)
    preds = torch.zeros(1, text.shape[0], h_img, w_img, device=device)
    count = torch.zeros(1, 1, h_img, w_img, device=device)
    h_grids = max(h_img - crop + stride - 1, 0) // stride + 1
    w_grids = max(w_img - crop + stride - 1, 0) // stride + 1
    for hi in range(h_grids):
        for wi in range(w_grids):
            y2, x2 = min(hi * stride + crop, h_img), min(wi * stride + crop, w_img)
            y1, x1 = max(y2 - crop, 0), max(x2 - crop, 0)
            window = img[:, :, y1:y2, x1:x2]
            hh, ww = window.shape[-2:]
            window = F.pad(window, (0, size - ww, 0, size - hh))  # Engine: pad bottom/right to the crop
            logits = model(window, text)  # [1, C, g, g], scaled
            logits = F.interpolate(logits, size=(size, size), mode="bilinear", align_corners=False)
            preds[:, :, y1:y2, x1:x2] += logits[:, :, :hh, :ww]
            count[:, :, y1:y2, x1:x2] += 1
    preds = preds / count
    preds = F.interpolate(preds, size=tuple(orig_hw), mode="bilinear", align_corners=False)
    if cfg.pamr_iterations:  # NACLIP predict: PAMR on the resized logits, guided by the resized network input
        guide = F.interpolate(img, size=tuple(orig_hw), mode="bilinear", align_corners=False)
        refined = torch_pamr(preds.cpu().numpy(), guide.cpu().numpy(), cfg.pamr_iterations, cfg.pamr_dilations)
        preds = torch.from_numpy(refined).to(device)
    if logit_scale is not None:  # the model applied the config's scale
        preds = preds * (float(logit_scale) / float(cfg.logit_scale))
    labels, best = softmax_labels(preds, bg, area, query_idx)
    return labels[0].cpu().numpy().astype(np.int32), best[0].cpu().numpy().astype(np.float32)
