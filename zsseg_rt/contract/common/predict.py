"""Torch glue for whole-image and sliding-window inference with a :class:`ZegCLIP`.

Only the network call on each crop is torch; everything else (rescale, normalise, windows, calibration,
merging, final resize + argmax) is the shared torch-free ``zsseg_rt.pipeline`` code also used by the runtime
Engine (through the one :class:`zsseg_rt.pipeline.Postprocessor`), so both paths compute the official order:

    rescale keep-ratio (short side 512) -> normalise (ImageNet mean/std) -> windows (crop 512, stride 426)
    -> per window: logits [C,h,w] -> bilinear to image_size (512) -> sigmoid -> minus bias on seen classes
       -> bilinear to the window size -> average overlapping windows -> bilinear to the original size -> argmax

Crops whose sides are not multiples of the patch size (only possible for images smaller than the crop) are
floored to the patch multiple before the network, which is exactly what the official stride-p patch conv does
(it ignores the trailing pixels); the scores are still resized to the full window size.
"""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from zsseg_rt.vocabulary import seen_mask

__all__ = ["predict", "seen_class_bias"]


def seen_class_bias(
    model,
    class_names: Sequence[str],
    seen_classes: Optional[Sequence[int]] = None,
    calibration_bias: Optional[float] = None,
) -> np.ndarray:
    """``[C]`` float32: ``calibration_bias`` on seen classes, 0 elsewhere.

    ``seen_classes`` None: the config's seen classes, matched BY NAME against ``class_names`` (so a custom
    vocabulary is calibrated only on classes the model was trained on).
    """
    cfg = model.config
    bias = cfg.calibration_bias if calibration_bias is None else float(calibration_bias)
    c = len(class_names)
    out = np.zeros(c, dtype=np.float32)
    if seen_classes is None:
        seen = seen_mask(class_names, [cfg.class_names[i] for i in cfg.seen_classes])
        idx = [int(i) for i in np.flatnonzero(seen)]
    else:
        idx = [int(i) for i in seen_classes]
        bad = [i for i in idx if not 0 <= i < c]
        if bad:
            raise ValueError(f"seen_classes {bad} out of range for {c} classes")
    out[idx] = np.float32(bias)
    return out


def _group_windows(windows) -> List[List[int]]:
    groups: List[List[int]] = []
    for i, w in enumerate(windows):
        size = (w.y2 - w.y1, w.x2 - w.x1)
        if (
            groups
            and (
                windows[groups[-1][0]].y2 - windows[groups[-1][0]].y1,
                windows[groups[-1][0]].x2 - windows[groups[-1][0]].x1,
            )
            == size
        ):
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups


@torch.no_grad()
def predict(
    model,
    image: np.ndarray,
    class_names: Optional[Sequence[str]] = None,
    text: Optional[Union[torch.Tensor, np.ndarray]] = None,
    mode: str = "slide",
    seen_classes: Optional[Sequence[int]] = None,
    calibration_bias: Optional[float] = None,
    color_order: str = "rgb",
    rescale: bool = True,
    crop_size: Optional[int] = None,
    stride: Optional[int] = None,
    window_batch: int = 4,
    device: Optional[Union[str, torch.device]] = None,
) -> Tuple[np.ndarray, np.ndarray]:
    """Segment one image. Returns ``labels [H, W]`` int32 (class indices) and ``scores [H, W]`` float32
    (the winning calibrated score), at the ORIGINAL image size.

    Args:
        image: ``[H, W, 3]`` uint8 (``color_order`` "rgb" or "bgr").
        class_names: vocabulary; default the config's. Ignored for the text if ``text`` is given (then it only
            serves the by-name calibration; default: no calibration for an unnamed ``text``).
        text: precomputed ``[C, D]`` class embeddings (e.g. the official ``.npy``), else computed and cached.
        mode: "slide" (official test mode: crop/stride windows) or "whole" (one window = the whole rescaled
            image; the head still resizes to ``image_size`` squares as the official code does).
        seen_classes / calibration_bias: override the calibration (see :func:`seen_class_bias`).
        rescale: apply the official keep-ratio test resize (``config.test_scale``) first.
    """
    from zsseg_rt.pipeline import preprocess as pre
    from zsseg_rt.pipeline.postprocessor import Postprocessor

    cfg = model.config
    if mode not in ("slide", "whole"):
        raise ValueError(f"mode must be 'slide' or 'whole', got {mode!r}")
    was_training = model.training
    model.eval()
    try:
        dev = torch.device(device) if device is not None else next(model.parameters()).device
        if text is None:
            names = list(cfg.class_names if class_names is None else class_names)
            text_t = model.text_embeddings(names, cfg.templates)
        else:
            text_t = torch.as_tensor(
                np.asarray(text, dtype=np.float32) if isinstance(text, np.ndarray) else text
            ).float()
            names = list(class_names) if class_names is not None else None  # type: ignore[assignment]
        model.check_text(text_t)
        if names is not None and len(names) != text_t.shape[0]:
            raise ValueError(f"{len(names)} class names but {text_t.shape[0]} text embeddings")
        if names is None and seen_classes is None:
            bias = np.zeros(text_t.shape[0], dtype=np.float32)
        else:
            bias = seen_class_bias(
                model,
                names if names is not None else [str(i) for i in range(text_t.shape[0])],
                seen_classes,
                calibration_bias,
            )
        text_t = text_t.to(dev)

        rgb = pre.to_rgb_uint8(image, color_order)
        orig_hw = rgb.shape[:2]
        if rescale:
            rgb = pre.rescale_keep_ratio(rgb, tuple(cfg.test_scale))
        chw = pre.normalize_image(rgb, cfg.mean, cfg.std)
        h, w = chw.shape[1:]
        if mode == "slide":
            windows = pre.sliding_windows(h, w, crop_size or cfg.crop_size, stride or cfg.stride)
        else:
            windows = [pre.Window(0, h, 0, w)]
        ph, pw = model.patch_size
        logits_rows: List[Optional[np.ndarray]] = [None] * len(windows)
        for group in _group_windows(windows):
            for s in range(0, len(group), max(1, int(window_batch))):
                idx = group[s : s + max(1, int(window_batch))]
                win0 = windows[idx[0]]
                wh, ww = win0.y2 - win0.y1, win0.x2 - win0.x1
                fh, fw = wh // ph * ph, ww // pw * pw  # official conv floors to the patch grid
                if fh == 0 or fw == 0:
                    raise ValueError(f"window {wh}x{ww} is smaller than one patch ({ph}x{pw}); the image is too small")
                batch = np.stack(
                    [chw[:, win.y1 : win.y1 + fh, win.x1 : win.x1 + fw] for win in (windows[i] for i in idx)]
                )
                logits = model(torch.from_numpy(batch).to(dev), text_t).float().cpu().numpy()
                for j, i in enumerate(idx):
                    logits_rows[i] = logits[j : j + 1]
        # sliding windows all share one size (min(crop, side)), so the rows stack into [n, C, h, w]
        postprocessor = Postprocessor.from_config(cfg, window_logits="fitted")
        rows = [row for row in logits_rows if row is not None]  # every window was run
        labels, best = postprocessor(np.concatenate(rows), windows, (h, w), (int(orig_hw[0]), int(orig_hw[1])), bias)
        return labels[0], best[0]
    finally:
        model.train(was_training)
