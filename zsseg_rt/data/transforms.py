"""The official ZegCLIP / mmseg 0.x training augmentation, in NumPy + OpenCV, driven by an explicit RNG.

Order (``train_pipeline`` of the official configs)::

    Resize(img_scale=(2048, 512), ratio_range=(0.5, 2.0), keep_ratio) -> RandomCrop(512, cat_max_ratio=0.75)
    -> RandomFlip(0.5) -> PhotoMetricDistortion -> Normalize(ImageNet mean/std, RGB) -> Pad(512, 0 / 255)

Every random draw comes from the ``numpy.random.Generator`` passed in, so a sample's augmentation is a pure
function of ``(image, label, rng seed)``: the training loader seeds it from ``(seed, sample position)``,
which makes resuming reproduce an uninterrupted run without saving any data-pipeline RNG state.
Images are RGB uint8 here (mmseg works in BGR; only the HSV conversions care, and they use the RGB codes).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional, Tuple

import numpy as np

from .labels import IGNORE_INDEX

__all__ = ["TrainAugmentation", "rescale_size", "random_crop_bbox"]


def rescale_size(h: int, w: int, scale: Tuple[int, int]) -> Tuple[int, int]:
    """mmcv ``imrescale`` keep-ratio size for ``scale=(long, short)`` -> ``(new_h, new_w)``."""
    long_max, short_max = max(scale), min(scale)
    factor = min(long_max / max(h, w), short_max / min(h, w))
    return int(h * factor + 0.5), int(w * factor + 0.5)


def random_crop_bbox(rng: np.random.Generator, h: int, w: int, crop: Tuple[int, int]) -> Tuple[int, int, int, int]:
    """mmseg ``RandomCrop.get_crop_bbox`` -> ``(y1, y2, x1, x2)``."""
    margin_h, margin_w = max(h - crop[0], 0), max(w - crop[1], 0)
    oy = int(rng.integers(0, margin_h + 1))
    ox = int(rng.integers(0, margin_w + 1))
    return oy, oy + crop[0], ox, ox + crop[1]


@dataclass
class TrainAugmentation:
    """Official training pipeline. ``__call__(rgb [H,W,3] uint8, label [H,W] uint8, rng)`` ->
    ``(image [3,crop,crop] float32 normalised, label [crop,crop] uint8)``."""

    crop_size: Tuple[int, int] = (512, 512)
    img_scale: Tuple[int, int] = (2048, 512)
    ratio_range: Optional[Tuple[float, float]] = (0.5, 2.0)
    cat_max_ratio: float = 0.75
    flip_prob: float = 0.5
    photometric: bool = True
    mean: List[float] = field(default_factory=lambda: [123.675, 116.28, 103.53])
    std: List[float] = field(default_factory=lambda: [58.395, 57.12, 57.375])
    ignore_index: int = IGNORE_INDEX
    brightness_delta: int = 32
    contrast_range: Tuple[float, float] = (0.5, 1.5)
    saturation_range: Tuple[float, float] = (0.5, 1.5)
    hue_delta: int = 18

    def __post_init__(self):
        self.crop_size = tuple(
            int(c)
            for c in (self.crop_size if isinstance(self.crop_size, (list, tuple)) else (self.crop_size, self.crop_size))
        )
        self.img_scale = tuple(int(s) for s in self.img_scale)
        if self.ratio_range is not None:
            self.ratio_range = tuple(float(r) for r in self.ratio_range)
            if not 0 < self.ratio_range[0] <= self.ratio_range[1]:
                raise ValueError(f"ratio_range must be 0 < lo <= hi, got {self.ratio_range}")

    # -------------------------------------------------------------- steps
    def resize(self, img, label, rng):
        import cv2

        if self.ratio_range is None:
            scale = self.img_scale
        else:
            lo, hi = self.ratio_range
            ratio = rng.random() * (hi - lo) + lo
            scale = (int(self.img_scale[0] * ratio), int(self.img_scale[1] * ratio))
        nh, nw = rescale_size(img.shape[0], img.shape[1], scale)
        if (nh, nw) != img.shape[:2]:
            img = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_LINEAR)
            label = cv2.resize(label, (nw, nh), interpolation=cv2.INTER_NEAREST)
        return img, label

    def crop(self, img, label, rng):
        h, w = label.shape
        y1, y2, x1, x2 = random_crop_bbox(rng, h, w, self.crop_size)
        if self.cat_max_ratio < 1.0:
            for _ in range(10):
                seg = label[y1:y2, x1:x2]
                vals, cnt = np.unique(seg, return_counts=True)
                cnt = cnt[vals != self.ignore_index]
                if len(cnt) > 1 and np.max(cnt) / np.sum(cnt) < self.cat_max_ratio:
                    break
                y1, y2, x1, x2 = random_crop_bbox(rng, h, w, self.crop_size)
        return img[y1:y2, x1:x2], label[y1:y2, x1:x2]

    def flip(self, img, label, rng):
        if rng.random() < self.flip_prob:
            img, label = img[:, ::-1], label[:, ::-1]
        return img, label

    @staticmethod
    def _convert(x: np.ndarray, alpha: float = 1.0, beta: float = 0.0) -> np.ndarray:
        return np.clip(x.astype(np.float32) * alpha + beta, 0, 255).astype(np.uint8)

    def photometric_distortion(self, img, rng):
        """mmseg ``PhotoMetricDistortion`` (same draws in the same order)."""
        import cv2

        img = np.ascontiguousarray(img)
        if rng.integers(2):  # brightness
            img = self._convert(img, beta=rng.uniform(-self.brightness_delta, self.brightness_delta))
        mode = rng.integers(2)
        if mode == 1 and rng.integers(2):  # contrast first
            img = self._convert(img, alpha=rng.uniform(*self.contrast_range))
        if rng.integers(2):  # saturation
            hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)
            hsv[:, :, 1] = self._convert(hsv[:, :, 1], alpha=rng.uniform(*self.saturation_range))
            img = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
        if rng.integers(2):  # hue
            hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)
            hsv[:, :, 0] = (hsv[:, :, 0].astype(int) + int(rng.integers(-self.hue_delta, self.hue_delta))) % 180
            img = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
        if mode == 0 and rng.integers(2):  # contrast last
            img = self._convert(img, alpha=rng.uniform(*self.contrast_range))
        return img

    def normalize_and_pad(self, img, label):
        mean = np.asarray(self.mean, np.float32).reshape(1, 1, 3)
        std = np.asarray(self.std, np.float32).reshape(1, 1, 3)
        x = (img.astype(np.float32) - mean) / std
        h, w = label.shape
        ch, cw = max(self.crop_size[0], h), max(self.crop_size[1], w)
        out = np.zeros((3, ch, cw), np.float32)
        out[:, :h, :w] = x.transpose(2, 0, 1)
        lab = np.full((ch, cw), self.ignore_index, np.uint8)
        lab[:h, :w] = label
        return out, lab

    def __call__(self, img: np.ndarray, label: np.ndarray, rng: np.random.Generator):
        if img.shape[:2] != label.shape[:2]:
            raise ValueError(f"image {img.shape[:2]} and label {label.shape[:2]} sizes differ")
        img, label = self.resize(img, label, rng)
        img, label = self.crop(img, label, rng)
        img, label = self.flip(img, label, rng)
        if self.photometric:
            img = self.photometric_distortion(img, rng)
        return self.normalize_and_pad(img, label)
