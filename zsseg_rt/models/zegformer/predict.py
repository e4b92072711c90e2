"""Whole-image inference with a :class:`~zsseg_rt.models.zegformer.model.ZegFormer` (official test pipeline).

detectron2's test mapper resizes the shortest edge to ``test_short_side`` (longest edge at most ``test_max_size``,
``ResizeShortestEdge.get_output_shape`` rounding) with ``PIL.Image.resize(BILINEAR)`` on the uint8 image
(:func:`zsseg_rt.pipeline.resize.pil_resize_shortest_edge`, which calls Pillow, as the Engine does), the model pads to
32, predicts, crops the padding and resizes the class maps back to the original size (``sem_seg_postprocess``); the
label is the argmax.
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple

import numpy as np
import torch

from zsseg_rt.pipeline.resize import pil_resize_shortest_edge, shortest_edge_shape

__all__ = ["shortest_edge_shape", "predict_zegformer"]


@torch.no_grad()
def predict_zegformer(
    model,
    rgb: np.ndarray,
    class_names: Optional[Sequence[str]] = None,
    text: Optional[np.ndarray] = None,
    seen_classes: Optional[Sequence[int]] = None,
    device: Optional[str] = None,
) -> Tuple[np.ndarray, np.ndarray]:
    """Labels of one image.

    Args:
        model: a ZegFormer (eval mode).
        rgb: ``[H, W, 3]`` uint8 RGB.
        class_names: vocabulary (default: the model's).
        text: optional ``[C, D]`` query-classifier text embeddings (default: computed from the names).
        seen_classes: indices of ``class_names`` treated as seen (default: the model's seen classes by name).
        device: where to run (default: the model's device).

    Returns:
        ``(labels [H, W] int64, scores [C, H, W] float32)``.
    """
    if not isinstance(rgb, np.ndarray) or rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(
            f"rgb must be a [H, W, 3] uint8 array, got {getattr(rgb, 'shape', None)} {getattr(rgb, 'dtype', None)}"
        )
    c = model.config
    names = list(c.class_names if class_names is None else class_names)
    dev = torch.device(device) if device else next(model.parameters()).device
    h, w = rgb.shape[:2]
    resized = pil_resize_shortest_edge(rgb, c.test_short_side, c.test_max_size)  # [nh, nw, 3] uint8, PIL bilinear
    img = torch.from_numpy(np.ascontiguousarray(resized)).to(dev).permute(2, 0, 1).float()[None]
    seen = None
    if seen_classes is not None:
        seen = torch.zeros(len(names), dtype=torch.bool)
        seen[[int(i) for i in seen_classes]] = True
    t = None if text is None else torch.as_tensor(np.asarray(text, dtype=np.float32), device=dev)
    scores = model.segment(img, names, seen=seen, out_size=(h, w), text=t)[0]
    return scores.argmax(0).cpu().numpy().astype(np.int64), scores.float().cpu().numpy()
