"""Image pre-processing identical to the official ZegCLIP/mmseg test pipeline, without torch."""

from __future__ import annotations

from typing import Any, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from zsseg_rt.bundle.spec import WholeImage

# mmseg's ImageNet statistics (RGB, 0..255), used by every official ZegCLIP config (not CLIP's mean/std).
IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)


# Largest rescaled image accepted (e.g. 512 x 65536, an aspect ratio of 128:1): beyond it the short-side rule of
# the official test resize would allocate gigabytes for one elongated image.
MAX_RESCALED_PIXELS = 1 << 25


class Window(NamedTuple):
    """One sliding-window crop ``image[y1:y2, x1:x2]``."""

    y1: int
    y2: int
    x1: int
    x2: int


def _cv2():
    try:
        import cv2
    except ImportError as exc:  # pragma: no cover
        raise ImportError("OpenCV is required for image resizing: pip install opencv-python-headless") from exc
    return cv2


def check_image(image: np.ndarray) -> Tuple[int, int, int]:
    """Validate an image without copying it; returns ``(height, width, channels)`` (channels 1 for ``[H, W]``).

    Raises:
        TypeError: not a plain ``numpy.ndarray`` of dtype uint8 (masked arrays are refused: the mask would be
            ignored). ValueError: wrong rank, empty, or a channel count other than 1, 3 or 4.
    """
    if not isinstance(image, np.ndarray):
        raise TypeError(f"image must be a numpy.ndarray [H, W, 3] uint8, got {type(image).__name__}")
    if isinstance(image, np.ma.MaskedArray):
        raise TypeError("image is a numpy masked array; its mask would be ignored: pass np.ma.filled(image, 0)")
    if image.dtype != np.uint8:
        raise TypeError(
            f"image must have dtype uint8 (0..255), got {image.dtype}; convert with "
            "np.clip(x * 255, 0, 255).astype(np.uint8) if it holds floats in [0, 1]"
        )
    if image.ndim not in (2, 3):
        raise ValueError(f"image must have shape [H, W, 3] (or [H, W] grayscale), got {list(image.shape)}")
    h, w = image.shape[:2]
    ch = image.shape[2] if image.ndim == 3 else 1
    if h == 0 or w == 0:
        raise ValueError(f"image is empty: shape {list(image.shape)}")
    if ch not in (1, 3, 4):
        raise ValueError(f"image must have 1, 3 or 4 channels, got {ch} (shape {list(image.shape)})")
    return h, w, ch


def to_rgb_uint8(image: np.ndarray, color_order: str = "bgr") -> np.ndarray:
    """Validate an image and return it as a contiguous ``[H, W, 3]`` uint8 RGB array.

    Args:
        image: ``[H, W, 3]`` uint8 (``color_order`` says BGR as OpenCV gives it, or RGB); ``[H, W]`` or
            ``[H, W, 1]`` grayscale is expanded to 3 channels; ``[H, W, 4]`` has its alpha channel dropped.
        color_order: "bgr" or "rgb".
    Returns:
        ``[H, W, 3]`` uint8, RGB.
    Raises:
        TypeError / ValueError naming what was expected and what was given (``check_image``).
    """
    if color_order not in ("bgr", "rgb"):
        raise ValueError(f"color_order must be 'bgr' or 'rgb', got {color_order!r}")
    _, _, ch = check_image(image)
    if image.ndim == 2:
        image = image[:, :, None]
    if ch == 1:
        image = np.repeat(image, 3, axis=2)
    elif ch == 4:
        image = image[:, :, :3]
    if color_order == "bgr":
        image = image[:, :, ::-1]
    return np.ascontiguousarray(image)


def rescaled_size(
    height: int,
    width: int,
    scale: Sequence[Optional[int]] = (None, 512),
    max_pixels: Optional[int] = MAX_RESCALED_PIXELS,
) -> Tuple[int, int]:
    """Keep-ratio test resize size, ``scale = (long_max, short)``.

    * ``long_max`` None: the short side becomes exactly ``short`` whatever the long side (mmseg 0.x
      ``Resize(keep_ratio=True, min_size=512)``, the official ZegCLIP / CLIP-RC test pipeline);
    * otherwise mmcv ``imrescale``: the largest size within ``(long_max, short)`` (e.g. ``(2048, 336)``).
    Sizes are rounded like mmcv (``int(x * factor + 0.5)``). More than ``max_pixels`` (None: no check) raises
    ValueError (the Engine checks its own, configurable ``max_rescaled_pixels`` instead).

    Returns:
        ``(new_height, new_width)``.
    """
    long_max, short = scale[0], scale[1]
    if short is None:
        raise ValueError(f"scale must be (long_max or None, short), got {tuple(scale)}")
    factor = short / min(height, width)
    if long_max:
        long_max, short = max(long_max, short), min(long_max, short)
        factor = min(long_max / max(height, width), short / min(height, width))
    new_h, new_w = max(1, int(height * factor + 0.5)), max(1, int(width * factor + 0.5))
    if max_pixels is not None and new_h * new_w > max_pixels:
        raise ValueError(
            f"image of {height}x{width} would be rescaled to {new_h}x{new_w} by the test resize {list(scale)} "
            f"(more than {max_pixels} pixels): its aspect ratio is too extreme; crop it into parts first"
        )
    return new_h, new_w


def check_test_scale(value: Any, window: int) -> List[Optional[int]]:
    """A test resize ``(long_max or None, short)`` given by a caller (``Engine(test_scale=...)``), as a list;
    ``"window"``: ``(window, window)``, an image fitted in one window of the graph's size ``window``.

    Raises:
        ValueError: one line naming what was expected and what was given.
    """
    if isinstance(value, str) and value == "window":
        return [int(window), int(window)]
    side = lambda v: isinstance(v, (int, np.integer)) and not isinstance(v, bool) and 1 <= v <= 65536  # noqa: E731
    if (
        isinstance(value, (str, bytes))
        or not isinstance(value, Sequence)
        or len(value) != 2
        or not side(value[1])
        or not (value[0] is None or side(value[0]))
    ):
        raise ValueError(
            f"test_scale: expected (long_max or None, short) with sides in [1, 65536], or 'window' (an image fitted "
            f"in one window: ({window}, {window}) here), got {value!r}"
        )
    return [None if value[0] is None else int(value[0]), int(value[1])]


def rescale_keep_ratio(
    image: np.ndarray, scale: Sequence[Optional[int]] = (None, 512), max_pixels: Optional[int] = MAX_RESCALED_PIXELS
) -> np.ndarray:
    """Resize ``[H, W, 3]`` like mmseg's keep-ratio test ``Resize`` (cv2 bilinear); see ``rescaled_size``."""
    new_h, new_w = rescaled_size(image.shape[0], image.shape[1], scale, max_pixels)
    if (new_h, new_w) == image.shape[:2]:
        return image
    return _cv2().resize(image, (new_w, new_h), interpolation=_cv2().INTER_LINEAR)


def normalize_image(
    rgb: np.ndarray, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD
) -> np.ndarray:
    """``[H, W, 3]`` uint8 RGB -> ``[3, H, W]`` float32, ``(x - mean) / std`` per channel."""
    mean_arr = np.asarray(mean, dtype=np.float32).reshape(3, 1, 1)
    std_arr = np.asarray(std, dtype=np.float32).reshape(3, 1, 1)
    chw = np.transpose(rgb, (2, 0, 1)).astype(np.float32)
    return np.ascontiguousarray((chw - mean_arr) / std_arr)


def pad_to_multiple(chw: np.ndarray, multiple: int, min_size: Sequence[int] = (0, 0)) -> np.ndarray:
    """Zero-pad a normalised ``[3, H, W]`` image at the bottom/right to a multiple of ``multiple``.

    Also pads up to ``min_size`` (a fixed-size engine input). The valid region stays ``[:H, :W]``.
    """
    _, h, w = chw.shape
    target_h = max(-(-h // multiple) * multiple, int(min_size[0]))
    target_w = max(-(-w // multiple) * multiple, int(min_size[1]))
    if (target_h, target_w) == (h, w):
        return chw
    out = np.zeros((chw.shape[0], target_h, target_w), dtype=chw.dtype)
    out[:, :h, :w] = chw
    return out


# How whole-image inference fits a rescaled image to the patch grid (a bundle's ``whole_image.fit``): "pad" zeros at
# the bottom/right up to a multiple of the patch (mmseg's PatchEmbed, padding='corner'); "crop" drops the rows and
# columns past the last whole patch (a stride-p patch convolution, as OpenAI's CLIP runs one).
WHOLE_FITS = WholeImage.FITS


def whole_input_size(height: int, width: int, patch: int, fit: str) -> Tuple[int, int]:
    """The image-encoder input size of a ``height x width`` rescaled image in whole-image inference: each side
    rounded up (``fit="pad"``) or down (``"crop"``) to a multiple of ``patch``. A side shorter than one patch is
    padded to one patch under either rule (the official "crop" code has no result there: its grid would be empty)."""
    if fit not in WHOLE_FITS:
        raise ValueError(f"fit must be one of {WHOLE_FITS}, got {fit!r}")
    if fit == "pad":
        return -(-height // patch) * patch, -(-width // patch) * patch
    return max(patch, height // patch * patch), max(patch, width // patch * patch)


def fit_to_patches(chw: np.ndarray, patch: int, fit: str) -> np.ndarray:
    """A normalised ``[3, H, W]`` image as the whole-image encoder input ``[3, H_in, W_in]``
    (:func:`whole_input_size`): zero-padded at the bottom/right and/or cut at the bottom/right."""
    _, h, w = chw.shape
    size = whole_input_size(h, w, patch, fit)
    return pad_to_multiple(chw[:, : size[0], : size[1]], patch, size)


def sliding_windows(height: int, width: int, crop: int = 512, stride: int = 426) -> List[Window]:
    """mmseg ``slide_inference`` windows: a grid with the given stride, the last row/column clamped inside.

    An image smaller than ``crop`` along an axis gets a single window covering that axis.
    """
    if crop <= 0 or stride <= 0:
        raise ValueError(f"crop and stride must be positive, got crop={crop}, stride={stride}")
    h_grids = max(height - crop + stride - 1, 0) // stride + 1
    w_grids = max(width - crop + stride - 1, 0) // stride + 1
    windows = []
    for hi in range(h_grids):
        for wi in range(w_grids):
            y2 = min(hi * stride + crop, height)
            x2 = min(wi * stride + crop, width)
            windows.append(Window(max(y2 - crop, 0), y2, max(x2 - crop, 0), x2))
    return windows
