"""PyTorch inference of the training-free segmenters through the one post-processor.

Only the network call on each window is torch; rescale, normalise, windows and the official softmax order
(average window logits, resize to the original size, optional PAMR, softmax, optional area filter / background
threshold, argmax) are the shared torch-free :mod:`zsseg_rt.pipeline` code the runtime ``Engine`` runs too
(:class:`zsseg_rt.pipeline.Postprocessor` with ``activation="softmax"``).

Two test modes (``inference``), as the official configs run them: "windows" (``crop_size``/``stride`` sliding
windows, mmseg ``slide_inference``) and "whole" (one pass over the rescaled image at its own size, mmseg
``whole_inference`` / ``slide_crop=0``: the image padded or cut to the patch grid the method's way,
``METHODS[method]["whole_fit"]``, and its grid logits resized back its way, ``whole_logits``;
:meth:`zsseg_rt.pipeline.Postprocessor.whole`). The default is the config's ``inference``, else the method's
official default (MaskCLIP whole, the others windows; per dataset: ``evaluate.py``).

Differences from the official code, all shared with the Engine: windows smaller than the crop (images whose side is
below the crop) are zero-padded bottom/right to the crop and the padded logits dropped (SCLIP runs the small crop as
is; ClearCLIP pads centred); in whole-image inference a rescaled side shorter than one patch is padded to one patch
under the "crop" rule (the official code has no result there).

Synonyms (``"person; man; woman"``, or a named vocabulary such as ``"voc21"``) follow the family's official rule as
the Engine does: every name is a query of its own and a class's probability is the max over its names' (their
``postprocess_result`` with ``query_idx``); pixels under the background threshold get the vocabulary's background
class.
"""

from __future__ import annotations

import dataclasses
from typing import Optional, Sequence, Tuple, Union

import numpy as np
import torch

from zsseg_rt import pipeline
from zsseg_rt.pipeline.postprocessor import Postprocessor
from zsseg_rt.vocabulary import Vocabulary

from .config import INFERENCE_MODES, METHODS
from .evaluate import default_inference

__all__ = ["segment", "postprocessor_for", "resolve_inference"]


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


def resolve_inference(config, inference: Optional[str] = None) -> str:
    """The test mode to run: ``inference`` when given, else the config's, else the method's official default."""
    mode = inference or config.inference or default_inference(config.method)
    if mode not in INFERENCE_MODES:
        raise ValueError(f"inference must be one of {INFERENCE_MODES}, got {mode!r}")
    if mode == "whole" and not config.whole_image_capable:
        raise ValueError(f"{config.method} has no whole-image inference here; use inference='windows'")
    return mode


@torch.no_grad()
def segment(
    model,
    image: np.ndarray,
    class_names: Optional[Union[str, Sequence[str], Vocabulary]] = None,
    templates: Optional[Sequence[str]] = None,
    color_order: str = "rgb",
    short_side: Optional[int] = None,
    background_threshold: Optional[float] = -1.0,
    area_threshold: Optional[float] = -1.0,
    text: Optional[torch.Tensor] = None,
    inference: Optional[str] = None,
    test_scale: Optional[Tuple[int, int]] = None,
) -> Tuple[np.ndarray, np.ndarray]:
    """Segment one ``[H, W, 3]`` uint8 image with a ``TrainingFreeSegmenter``.

    Args:
        class_names / templates: the vocabulary (default: the config's): names, a comma-separated string, a
            named vocabulary or a :class:`~zsseg_rt.vocabulary.Vocabulary`; classes may have synonyms (scored by
            the max rule). ``text`` given: one row per class, or one per name of a vocabulary with synonyms.
        color_order: ``"rgb"`` or ``"bgr"`` (OpenCV).
        short_side: rescale target (default: the config's ``short_side``; the Engine uses the bundle's image size).
        background_threshold / area_threshold: -1 means "the config's value"; None disables.
        text: precomputed ``[C, D]`` text embeddings.
        inference: "whole" or "windows" (default: :func:`resolve_inference`).
        test_scale: the keep-ratio test resize ``(long, short)`` (default ``(2048, short_side)``).
    Returns:
        ``labels [H, W]`` int32 and ``scores [H, W]`` float32 (the winning softmax probability).
    """
    cfg = model.config
    vocab = Vocabulary.parse(class_names) if class_names is not None else None
    per_name = vocab is not None and vocab.has_synonyms  # the max rule: one query per name
    if text is None:
        text = model.text_embeddings(None if vocab is None else (vocab.names if per_name else vocab.texts), templates)
    short = int(cfg.short_side if short_side is None else short_side)
    size, crop, stride = int(cfg.image_size), int(cfg.crop_size), int(cfg.stride)
    device = next(model.parameters()).device

    mode = resolve_inference(cfg, inference)
    rgb = pipeline.to_rgb_uint8(image, color_order)
    orig_hw = rgb.shape[:2]
    scaled = pipeline.rescale_keep_ratio(rgb, tuple(test_scale) if test_scale else (2048, short))
    chw = pipeline.normalize_image(scaled, cfg.mean, cfg.std)
    h, w = chw.shape[1:]
    text = text.to(device)
    post = postprocessor_for(cfg, background_threshold, area_threshold)
    if vocab is not None:
        class_of = tuple(int(c) for c in vocab.class_of()) if per_name and len(text) != len(vocab) else None
        post = dataclasses.replace(post, class_of=class_of, background_index=int(vocab.background or 0))
    if mode == "whole":  # one pass at the image's own size (padded or cut to the patch grid)
        method = METHODS[cfg.method]
        batch = pipeline.fit_to_patches(chw, cfg.patch_size, str(method["whole_fit"]))[None]
        logits = model(torch.from_numpy(batch).to(device), text).float().cpu().numpy()  # [1, C, h', w'], scaled
        labels, scores = post.whole(logits, (h, w), tuple(orig_hw), str(method["whole_logits"]), image=scaled)
        return labels[0], scores[0]
    windows = pipeline.sliding_windows(h, w, crop, stride)
    rows = []
    for win in windows:
        batch = np.zeros((1, 3, size, size), np.float32)  # zero-padded bottom/right to the crop, as the Engine
        batch[0, :, : win.y2 - win.y1, : win.x2 - win.x1] = chw[:, win.y1 : win.y2, win.x1 : win.x2]
        rows.append(model(torch.from_numpy(batch).to(device), text).float().cpu().numpy())  # [1, C, g, g], scaled
    labels, scores = post(np.concatenate(rows), windows, (h, w), tuple(orig_hw), image=scaled)
    return labels[0], scores[0]
