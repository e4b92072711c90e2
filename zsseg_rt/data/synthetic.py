"""Procedural segmentation data for tests and demos: shapes with per-class colours/textures, exact labels.

Each image is a background region of one class with 1-3 ellipses/rectangles of other classes on top. Every
class has its own base colour and texture (flat, stripes, checker, dots), plus per-pixel noise, so a model
whose frozen towers are random can still separate the classes. Generation is a pure function of
``(seed, index)``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple

import numpy as np

from .datasets import SegmentationDataset
from .splits import load_split

__all__ = [
    "SyntheticDataset",
    "synthetic_dataset",
    "write_synthetic_dataset",
    "make_synthetic_sample",
    "SYNTHETIC_CLASSES",
]

SYNTHETIC_CLASSES = [
    "red blob",
    "green field",
    "blue water",
    "yellow sand",
    "magenta stripes",
    "cyan checker",
    "white dots",
    "orange brick",
]
_COLORS = np.array(
    [
        [220, 30, 30],
        [30, 170, 40],
        [30, 60, 220],
        [230, 210, 60],
        [200, 40, 200],
        [40, 210, 210],
        [240, 240, 240],
        [240, 130, 20],
    ],
    np.float32,
)
# SyntheticDataset keeps its samples when they all fit in this many bytes (RGB + label, uint8)
SAMPLE_CACHE_BYTES = 64 * 2**20
_TEXTURES = ["flat", "flat", "noise", "flat", "stripes", "checker", "dots", "bricks"]


def _class_color(c: int) -> np.ndarray:
    if c < len(_COLORS):
        return _COLORS[c]
    rng = np.random.default_rng(1000 + c)
    return rng.uniform(20, 235, 3).astype(np.float32)


def _texture(c: int, h: int, w: int) -> np.ndarray:
    kind = _TEXTURES[c] if c < len(_TEXTURES) else ["stripes", "checker", "dots", "flat"][c % 4]
    yy, xx = np.mgrid[0:h, 0:w]
    if kind == "stripes":
        t = ((xx + yy) // 4) % 2
    elif kind == "checker":
        t = ((xx // 6) + (yy // 6)) % 2
    elif kind == "dots":
        t = ((xx % 8 < 3) & (yy % 8 < 3)).astype(np.int64)
    elif kind == "bricks":
        t = ((yy % 8 == 0) | (((xx + 8 * ((yy // 8) % 2)) % 16) == 0)).astype(np.int64)
    else:
        t = np.zeros((h, w), np.int64)
    return t.astype(np.float32)


def make_synthetic_sample(
    seed: int, index: int, size: Tuple[int, int] = (64, 64), num_classes: int = 6, max_shapes: int = 3
) -> Tuple[np.ndarray, np.ndarray]:
    """``(rgb [H,W,3] uint8, label [H,W] uint8)`` for sample ``index`` of generator ``seed``."""
    h, w = size
    rng = np.random.default_rng([int(seed), int(index)])
    label = np.full((h, w), rng.integers(num_classes), np.uint8)
    yy, xx = np.mgrid[0:h, 0:w]
    for _ in range(int(rng.integers(1, max_shapes + 1))):
        c = rng.integers(num_classes)
        cy, cx = rng.uniform(0.15, 0.85) * h, rng.uniform(0.15, 0.85) * w
        ry, rx = rng.uniform(0.15, 0.35) * h, rng.uniform(0.15, 0.35) * w
        if rng.random() < 0.5:
            m = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0
        else:
            m = (np.abs(yy - cy) <= ry) & (np.abs(xx - cx) <= rx)
        label[m] = c
    img = np.zeros((h, w, 3), np.float32)
    for c in np.unique(label):
        m = label == c
        tex = _texture(int(c), h, w)[..., None]
        col = _class_color(int(c))
        img[m] = (col * (1.0 - 0.35 * tex))[m]
    img += rng.normal(0.0, 8.0, img.shape).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8), label


class SyntheticDataset(SegmentationDataset):
    """In-memory synthetic dataset with the :class:`SegmentationDataset` interface (no files)."""

    def __init__(
        self,
        length: int = 64,
        size: Sequence[int] = (64, 64),
        num_classes: int = 6,
        seed: int = 0,
        unseen: Optional[Sequence] = None,
        class_names: Optional[Sequence[str]] = None,
        **kw,
    ):
        names = (
            list(class_names)
            if class_names is not None
            else [
                SYNTHETIC_CLASSES[i] if i < len(SYNTHETIC_CLASSES) else f"synthetic class {i}"
                for i in range(num_classes)
            ]
        )
        if len(names) != num_classes:
            raise ValueError(f"{len(names)} class names for {num_classes} classes")
        split = load_split({"name": "synthetic", "class_names": names, "unseen": list(unseen or [])})
        super().__init__(
            [(f"synthetic:{i}", f"synthetic:{i}") for i in range(int(length))], split, False, f"synthetic_{seed}", **kw
        )
        self.size = (int(size[0]), int(size[1]))
        self.seed = int(seed)
        # Samples are pure functions of (seed, index): a training run reads each one many times (the tiny recipes:
        # 64 samples, 8 a step for hundreds of steps), so they are made once and kept, when all of them fit in
        # SAMPLE_CACHE_BYTES; every load hands out copies (callers may change what they get).
        self._samples: Optional[Dict[int, Tuple[np.ndarray, np.ndarray]]] = (
            {} if len(self) * self.size[0] * self.size[1] * 4 <= SAMPLE_CACHE_BYTES else None
        )

    def image_id(self, index: int) -> str:
        return f"synthetic_{self.seed}_{index:05d}"

    def load(self, index: int):
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        if self._samples is None:
            return make_synthetic_sample(self.seed, index, self.size, self.num_classes)
        sample = self._samples.get(index)
        if sample is None:
            sample = self._samples[index] = make_synthetic_sample(self.seed, index, self.size, self.num_classes)
        return sample[0].copy(), sample[1].copy()


def synthetic_dataset(**kw) -> SyntheticDataset:
    """Build a :class:`SyntheticDataset` from spec keys (``length``, ``size``, ``num_classes``, ``seed``, ...)."""
    kw.pop("split", None)
    kw.pop("root", None)
    return SyntheticDataset(**kw)


def write_synthetic_dataset(
    root, length: int = 32, size: Sequence[int] = (64, 64), num_classes: int = 6, seed: int = 0, unseen: Sequence = ()
) -> Path:
    """Write a synthetic dataset in the generic folder layout (``images/``, ``labels/``, ``classes.json``)."""
    import cv2

    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "labels").mkdir(parents=True, exist_ok=True)
    ds = SyntheticDataset(length, size, num_classes, seed)
    for i in range(length):
        rgb, lab = ds.load(i)
        cv2.imwrite(str(root / "images" / f"{i:05d}.png"), rgb[:, :, ::-1])
        cv2.imwrite(str(root / "labels" / f"{i:05d}.png"), lab)
    with open(root / "classes.json", "w", encoding="utf-8") as f:
        json.dump({"class_names": ds.class_names, "unseen": list(unseen)}, f, indent=1)
    return root
