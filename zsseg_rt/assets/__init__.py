"""Data shipped with the package (no download needed): four labelled PASCAL VOC photos in the VOC 2012 layout
(``samples/``, used by the demo, ``zsseg segment`` without an image, the profiler and the tests) and the official
ZegCLIP text embeddings of the VOC and COCO-Stuff class names (``text_embeddings/``, real CLIP ViT-B/16 text-tower
outputs). See the README.md in each folder for their origin."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Sequence

ASSETS_DIR = Path(__file__).resolve().parent
SAMPLES_DIR = ASSETS_DIR / "samples"
TEXT_EMBEDDINGS_DIR = ASSETS_DIR / "text_embeddings"
DEMO_PHOTO = "2011_000006.jpg"  # 500x375, person + chair + sofa: two sliding windows at the official test scale


def sample_images() -> List[Path]:
    """The sample photos (``samples/JPEGImages/*.jpg``), sorted by name."""
    return sorted((SAMPLES_DIR / "JPEGImages").glob("*.jpg"))


def verification_images(paths: Optional[Sequence[str]] = None, count: int = 2) -> List[str]:
    """The photos an export is checked on: ``paths`` when given, else the first ``count`` sample photos."""
    if paths:
        return list(paths)
    return [str(p) for p in sample_images()[:count]]


def sample_image(name: str = DEMO_PHOTO) -> Path:
    """Path of one sample photo; FileNotFoundError naming the available ones when ``name`` is not shipped."""
    path = SAMPLES_DIR / "JPEGImages" / name
    if not path.is_file():
        available = ", ".join(p.name for p in sample_images()) or "none"
        raise FileNotFoundError(f"sample photo {name!r} is not shipped with zsseg_rt (available: {available})")
    return path


def sample_label(name: str = DEMO_PHOTO) -> Path:
    """Path of the VOC label PNG of a sample photo (palette PNG: 0 background, 1..20 classes, 255 ignore)."""
    path = SAMPLES_DIR / "SegmentationClass" / (Path(name).stem + ".png")
    if not path.is_file():
        raise FileNotFoundError(f"no label PNG for sample {name!r} at {path}")
    return path


__all__ = [
    "ASSETS_DIR",
    "SAMPLES_DIR",
    "TEXT_EMBEDDINGS_DIR",
    "DEMO_PHOTO",
    "sample_images",
    "sample_image",
    "verification_images",
    "sample_label",
]
