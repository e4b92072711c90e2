"""PyTorch inference of the training-free segmenters through the one post-processor.

Only the network call on each window is torch; rescale, normalise, windows and the official softmax order
(average window logits, resize to the original size, optional PAMR, softmax, optional area filter / background
threshold, argmax) are the shared torch-free :mod:`zsseg_rt.pipeline` code the runtime ``Engine`` runs too
(:class:`zsseg_rt.pipeline.Postprocessor` with ``activation="softmax"``).

Differences from the official code, all shared with the Engine: windows smaller than the crop (images whose side is
below the crop) are zero-padded bottom/right to the crop and the padded logits dropped (SCLIP runs the small crop as
is; ClearCLIP pads centred); synonyms per class (``"sky, wall, ..."`` lines) are not supported.
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple

import numpy as np
import torch

from zsseg_rt import pipeline
from zsseg_rt.pipeline.postprocessor import Postprocessor

__all__ = ["segment", "postprocessor_for"]


def postprocessor_for(config, background_threshold: Optional[float] = -1.0, area_threshold: Optional[float] = -1.0):
    """The softmax :class:`Postprocessor` of a ``TrainingFreeConfig`` (the model's logits are already scaled).

    ``background_threshold`` / ``area_threshold``: -1 means the config's value; None disables.
    """
    bg = config.background_threshold if background_threshold == -1.0 else background_threshold
    area = config.area_threshold if area_threshold == -1.0 else area_threshold
    size = int(config.image_size)
    return Postprocessor(
        head_size=(size, size),
        activation="softmax",
        window_logits="padded",
        logit_scale=1.0,
        background_threshold=bg,
        area_threshold=area,
        pamr_iterations=int(config.pamr_iterations),
        pamr_dilations=tuple(int(d) for d in config.pamr_dilations),
        image_mean=tuple(float(v) for v in config.mean),
        image_std=tuple(float(v) for v in config.std),
    )


@torch.no_grad()
def segment(
    model,
    image: np.ndarray,
    class_names: Optional[Sequence[str]] = None,
    templates: Optional[Sequence[str]] = None,
    color_order: str = "rgb",
    short_side: Optional[int] = None,
    background_threshold: Optional[float] = -1.0,
    area_threshold: Optional[float] = -1.0,
    text: Optional[torch.Tensor] = None,
) -> Tuple[np.ndarray, np.ndarray]:
    """Segment one ``[H, W, 3]`` uint8 image with a ``TrainingFreeSegmenter``.

    Args:
        class_names / templates: the vocabulary (default: the config's); ignored when ``text`` is given.
        color_order: ``"rgb"`` or ``"bgr"`` (OpenCV).
        short_side: rescale target (default: the config's ``short_side``; the Engine uses the bundle's image size).
        background_threshold / area_threshold: -1 means "the config's value"; None disables.
        text: precomputed ``[C, D]`` text embeddings.
    Returns:
        ``labels [H, W]`` int32 and ``scores [H, W]`` float32 (the winning softmax probability).
    """
    cfg = model.config
    if text is None:
        text = model.text_embeddings(class_names, templates)
    short = int(cfg.short_side if short_side is None else short_side)
    size, crop, stride = int(cfg.image_size), int(cfg.crop_size), int(cfg.stride)
    device = next(model.parameters()).device

    rgb = pipeline.to_rgb_uint8(image, color_order)
    orig_hw = rgb.shape[:2]
    scaled = pipeline.rescale_keep_ratio(rgb, (2048, short))
    chw = pipeline.normalize_image(scaled, cfg.mean, cfg.std)
    h, w = chw.shape[1:]
    windows = pipeline.sliding_windows(h, w, crop, stride)
    text = text.to(device)
    rows = []
    for win in windows:
        batch = np.zeros((1, 3, size, size), np.float32)  # zero-padded bottom/right to the crop, as the Engine
        batch[0, :, : win.y2 - win.y1, : win.x2 - win.x1] = chw[:, win.y1 : win.y2, win.x1 : win.x2]
        rows.append(model(torch.from_numpy(batch).to(device), text).float().cpu().numpy())  # [1, C, g, g], scaled
    post = postprocessor_for(cfg, background_threshold, area_threshold)
    labels, scores = post(np.concatenate(rows), windows, (h, w), tuple(orig_hw), image=scaled)
    return labels[0], scores[0]
