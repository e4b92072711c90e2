"""Unlabeled image reader for ZeroSeg training: any folder of images, ImageNet layout included
(``<root>/<class>/<image>.JPEG``; the class folders are ignored, no labels are used).

Each item is the paper's training view ([P] §4.1: centre crop only, no other augmentation): resize the short side
to ``image_size`` (bicubic, antialiased) and take the centre ``image_size`` square, as RGB uint8, plus the
SHA-256 of the file bytes (the teacher-cache key) and the index.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

import numpy as np
import torch

from zsseg_rt.data.datasets import IMAGE_EXTS

__all__ = ["UnlabeledImageFolder", "center_crop_image"]


def center_crop_image(data: bytes, size: int) -> torch.Tensor:
    """Decode image bytes -> [3, size, size] uint8 RGB (short side resized to ``size``, centre crop)."""
    from PIL import Image
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import functional as TF

    with Image.open(io.BytesIO(data)) as source:
        im = source.convert("RGB")
        im = TF.resize(im, size, interpolation=InterpolationMode.BICUBIC, antialias=True)
        im = TF.center_crop(im, [size, size])
        arr = np.asarray(im, dtype=np.uint8)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1)


class UnlabeledImageFolder(torch.utils.data.Dataset):
    """All images under ``root`` (recursive, sorted), decoded as the fixed centre crop.

    Args:
        root: a folder of images, or an ImageNet-style ``train`` folder.
        image_size: crop side (224 in the paper).
        on_corrupt: "raise" (default) or "skip" (warn, and return the next readable image instead).
        limit: keep only the first ``limit`` files (sorted), e.g. for a quick run.
    """

    def __init__(
        self,
        root: Union[str, os.PathLike],
        image_size: int = 224,
        on_corrupt: str = "raise",
        limit: Optional[int] = None,
    ):
        self.root = Path(os.path.expanduser(str(root)))
        if not self.root.is_dir():
            raise FileNotFoundError(f"image folder {str(self.root)!r} does not exist; give a folder of images")
        if on_corrupt not in ("raise", "skip"):
            raise ValueError(f"on_corrupt must be raise|skip, got {on_corrupt!r}")
        self.files: List[str] = sorted(
            str(p) for p in self.root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTS
        )
        if limit is not None:
            self.files = self.files[: int(limit)]
        if not self.files:
            raise FileNotFoundError(f"no images ({', '.join(IMAGE_EXTS)}) under {str(self.root)!r}")
        self.image_size = int(image_size)
        self.on_corrupt = on_corrupt
        self.skipped: List[str] = []

    def __len__(self) -> int:
        return len(self.files)

    def read(self, index: int) -> Dict[str, Any]:
        """``{"image": [3, S, S] uint8, "key": sha256 hex, "index": int, "path": str}`` (may raise on a bad file)."""
        from .teacher import TeacherFeatureCache

        path = self.files[index]
        data = Path(path).read_bytes()
        try:
            image = center_crop_image(data, self.image_size)
        except Exception as exc:  # PIL raises many types for broken files
            raise ValueError(f"cannot decode image {path!r}: {exc}") from exc
        return {"image": image, "key": TeacherFeatureCache.key_of_bytes(data), "index": index, "path": path}

    def views_of(self, index: int, grids, size: int) -> torch.Tensor:
        """The teacher's views of image ``index`` at its own resolution (``teacher.image_views``):
        ``[n, 3, size, size]`` uint8."""
        from PIL import Image

        from .teacher import image_views

        with Image.open(self.files[index]) as source:
            rgb = np.asarray(source.convert("RGB"))
        return image_views(rgb, grids, size)

    def __getitem__(self, index: int) -> Dict[str, Any]:
        for attempt in range(len(self.files)):
            i = (index + attempt) % len(self.files)
            try:
                return self.read(i)
            except ValueError:
                if self.on_corrupt == "raise":
                    raise
                warnings.warn(f"skipping unreadable image {self.files[i]!r}", RuntimeWarning)
                self.skipped.append(self.files[i])
        raise ValueError(f"no readable image under {str(self.root)!r}")
