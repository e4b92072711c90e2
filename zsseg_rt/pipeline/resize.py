"""detectron2's test-time resize (``ResizeShortestEdge``) with PIL's bilinear filter, torch-free.

ZegFormer's official test mapper, for one, applies ``ResizeShortestEdge(short, max_size)``: the output size comes from
``ResizeShortestEdge.get_output_shape`` (:func:`shortest_edge_shape`) and the pixels from ``ResizeTransform``,
which for a uint8 image is ``PIL.Image.fromarray(img).resize((new_w, new_h), Image.BILINEAR)`` (PIL's own
separable filter: a triangle widened by the scale when shrinking, fixed-point coefficients, each pass rounded to
uint8). Read from facebookresearch/detectron2 ``detectron2/data/transforms/{augmentation_impl,transform}.py`` (the
same code in every release since v0.3).

The pixels come from Pillow itself (a runtime dependency), one axis per call: the width first, then the height.
That is what every Pillow up to 12 does inside one ``resize`` call (``libImaging/Resample.c``: horizontal pass,
then vertical) and so what the official results were computed with; Pillow 13 runs the vertical pass first when
the height shrinks much more than the width (python-pillow/Pillow#9549), which changes some pixels by one level
on thin images. Two single-axis calls give the same pixels with any Pillow version.

Chosen by the two-stage pipeline (``runtime.pipelines.two_stage``, its bundles' ``two_stage.resize`` =
``"pil_bilinear"``) and by the families whose official code resizes this way (ZegFormer's ``predict_zegformer``);
the windowed pipeline keeps its own official resize (``preprocess.rescale_keep_ratio``).
"""

from __future__ import annotations

from typing import Tuple

import numpy as np

__all__ = ["shortest_edge_shape", "pil_resize_bilinear", "pil_resize_shortest_edge"]


def shortest_edge_shape(height: int, width: int, short: int, max_size: int) -> Tuple[int, int]:
    """``(new_h, new_w)`` of detectron2 ``ResizeShortestEdge.get_output_shape(h, w, short, max_size)``.

    The short side is scaled to ``short``; if the long side then exceeds ``max_size``, both are scaled down so
    that it equals ``max_size``; each side is rounded with ``int(x + 0.5)`` (half up). A side that rounds to 0
    (an image thinner than about ``1 : 2 * max_size / short``) is refused with a ValueError, where the official
    code would fail inside PIL.
    """
    h, w = int(height), int(width)
    if h < 1 or w < 1:
        raise ValueError(f"image size must be positive, got {h}x{w}")
    size = float(short)
    scale = size / min(h, w)
    if h < w:
        new_h, new_w = size, scale * w
    else:
        new_h, new_w = scale * h, size
    if max(new_h, new_w) > max_size:
        scale = max_size * 1.0 / max(new_h, new_w)
        new_h = new_h * scale
        new_w = new_w * scale
    out = int(new_h + 0.5), int(new_w + 0.5)
    if min(out) < 1:
        raise ValueError(
            f"a {h}x{w} image resized to short side {short} with the long side at most {max_size} (detectron2 "
            f"ResizeShortestEdge) has a side of 0 pixels ({new_h:.3f} x {new_w:.3f}): crop or pad the image to an "
            "aspect ratio the model can take"
        )
    return out


def _bilinear():
    from PIL import Image

    return getattr(Image, "Resampling", Image).BILINEAR  # Image.BILINEAR before Pillow 9.1


def pil_resize_bilinear(rgb: np.ndarray, height: int, width: int) -> np.ndarray:
    """``[H, W, 3]`` uint8 -> ``[height, width, 3]`` uint8 as ``PIL.Image.resize(BILINEAR)`` of Pillow <= 12 (the
    width pass, then the height pass, each rounded to uint8), which is what detectron2's
    ``ResizeTransform.apply_image`` computed for the official results; unchanged size: a copy."""
    from PIL import Image

    if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(
            f"expected an [H, W, 3] uint8 image, got {getattr(rgb, 'shape', None)} {getattr(rgb, 'dtype', None)}"
        )
    if height < 1 or width < 1:
        raise ValueError(f"resize target must be at least 1x1, got {height}x{width}")
    image = Image.fromarray(np.ascontiguousarray(rgb))
    if image.width != int(width):
        image = image.resize((int(width), image.height), _bilinear())  # horizontal pass only
    if image.height != int(height):
        image = image.resize((image.width, int(height)), _bilinear())  # vertical pass only
    return np.array(image)


def pil_resize_shortest_edge(rgb: np.ndarray, short: int, max_size: int) -> np.ndarray:
    """detectron2 ``ResizeShortestEdge(short, max_size)`` on an ``[H, W, 3]`` uint8 RGB image: the
    :func:`shortest_edge_shape` size, PIL bilinear pixels. Returns ``[new_h, new_w, 3]`` uint8."""
    nh, nw = shortest_edge_shape(rgb.shape[0], rgb.shape[1], short, max_size)
    return pil_resize_bilinear(rgb, nh, nw)
