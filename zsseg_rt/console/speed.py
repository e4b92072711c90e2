"""The end-of-run speed summary of ``zsseg segment``, ``zsseg camera`` and ``zsseg eval``: what ran (backend and
precision) and the milliseconds an image (a frame) spent in each stage, averaged over the run, in one line::

    Speed: 3.1 ms preprocess, 41.0 ms encoder, 2.2 ms post-processing, 46.3 ms in all per image (onnxruntime fp32,
    640x480)

The stages are those of ``Result.timing`` (the Engine's: "read", "preprocess", "image_encoder", "head",
"postprocess", ...; a video filter's "flow", "propagate", "filter"; a PyTorch checkpoint's evaluation: "predict"), an
image that did not run a stage counting 0 ms for it (a propagated video frame runs no encoder), so the stages add up
to the mean total. ``--stats-json`` (camera) and the metrics of ``zsseg eval`` hold the same numbers
(:meth:`SpeedMeter.as_dict`).

Standard library only (the foundation layer).
"""

from __future__ import annotations

import threading
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

__all__ = ["STAGE_WORDS", "SpeedMeter", "speed_line"]

TOTAL = "total"
# a stage's name in the line (the others as they are, "_" as a space), and the order stages are shown in
STAGE_WORDS = {
    "read": "read",
    "upload": "upload",
    "preprocess": "preprocess",
    "image_encoder": "encoder",
    "head": "head",
    "postprocess": "post-processing",
    "download": "download",
    "device_pipeline": "device pipeline",
    "class_scores": "class scores",
    "filter": "filter",
    "flow": "flow",
    "propagate": "propagate",
    "predict": "predict",
}


class SpeedMeter:
    """Sums each stage's milliseconds over the images of a run (:meth:`add`, thread-safe), and says the mean per
    image (:meth:`per_image`, :meth:`line`, :meth:`as_dict`)."""

    def __init__(self) -> None:
        self.images = 0
        self._sums: Dict[str, float] = {}
        self._sizes: Dict[Tuple[int, int], int] = {}
        self._lock = threading.Lock()

    def add(self, timing: Mapping[str, float], size: Optional[Sequence[int]] = None) -> None:
        """One image's ``timing`` (stage -> ms, with or without "total": without, its stages' sum is its total) and
        its ``size`` as ``(height, width)``."""
        stages = {str(name): float(ms) for name, ms in timing.items()}
        total = stages.pop(TOTAL, sum(stages.values()))
        with self._lock:
            self.images += 1
            for name, ms in stages.items():
                self._sums[name] = self._sums.get(name, 0.0) + ms
            self._sums[TOTAL] = self._sums.get(TOTAL, 0.0) + total
            if size is not None:
                key = (int(size[0]), int(size[1]))
                self._sizes[key] = self._sizes.get(key, 0) + 1

    def per_image(self) -> Dict[str, float]:
        """Mean milliseconds per image of each stage (the known stages in their pipeline order, then the others),
        "total" last; {} before the first image."""
        with self._lock:
            if not self.images:
                return {}
            order = [name for name in STAGE_WORDS if name in self._sums]
            order += sorted(name for name in self._sums if name not in STAGE_WORDS and name != TOTAL)
            means = {name: self._sums[name] / self.images for name in order}
            means[TOTAL] = self._sums.get(TOTAL, 0.0) / self.images
            return means

    def size_text(self) -> str:
        """ "640x480" when every image had that size; "640x480 and 2 other sizes" otherwise; "" when none was
        given."""
        with self._lock:
            sizes = sorted(self._sizes.items(), key=lambda item: -item[1])
        if not sizes:
            return ""
        (height, width), _ = sizes[0]
        more = f" and {len(sizes) - 1} other size{'s' if len(sizes) > 2 else ''}" if len(sizes) > 1 else ""
        return f"{width}x{height}{more}"

    def as_dict(self, backend: Optional[str] = None, precision: Optional[str] = None) -> Dict[str, Any]:
        """What ``--stats-json`` / the metrics hold: ``{"images", "ms_per_image": {stage: ms, ..., "total"},
        "backend", "precision", "size"}``."""
        return {
            "images": self.images,
            "ms_per_image": {name: round(ms, 3) for name, ms in self.per_image().items()},
            "backend": backend,
            "precision": precision,
            "size": self.size_text() or None,
        }

    def state(self) -> Dict[str, Any]:
        """The raw sums, JSON-able, for another process's meter to :meth:`merge` (``zsseg eval --ray``'s actors)."""
        with self._lock:
            return {
                "images": self.images,
                "sums": dict(self._sums),
                "sizes": [[height, width, count] for (height, width), count in self._sizes.items()],
            }

    def merge(self, state: Mapping[str, Any]) -> None:
        """Add another meter's :meth:`state` (its images, stage sums and sizes) to this one's."""
        with self._lock:
            self.images += int(state["images"])
            for name, ms in state["sums"].items():
                self._sums[str(name)] = self._sums.get(str(name), 0.0) + float(ms)
            for height, width, count in state["sizes"]:
                key = (int(height), int(width))
                self._sizes[key] = self._sizes.get(key, 0) + int(count)

    def line(self, backend: Optional[str] = None, precision: Optional[str] = None, unit: str = "image") -> str:
        """The one line (module docstring); "" before the first image."""
        return speed_line(self.per_image(), backend, precision, self.size_text(), unit)


def speed_line(
    per_image: Mapping[str, float],
    backend: Optional[str] = None,
    precision: Optional[str] = None,
    size: str = "",
    unit: str = "image",
) -> str:
    """``Speed: 3.1 ms preprocess, 41.0 ms encoder, ..., 46.3 ms in all per image (onnxruntime fp32, 640x480)`` of
    the mean ms per stage ``per_image`` (:meth:`SpeedMeter.per_image`); "" when it is empty."""
    if not per_image:
        return ""
    parts: List[str] = [
        f"{ms:.1f} ms {STAGE_WORDS.get(name, name.replace('_', ' '))}"
        for name, ms in per_image.items()
        if name != TOTAL
    ]
    if TOTAL in per_image and len(parts) != 1:
        parts.append(f"{per_image[TOTAL]:.1f} ms in all")
    ran = " ".join(str(part) for part in (backend, precision) if part)
    where = ", ".join(part for part in (ran, size) if part)
    return f"Speed: {', '.join(parts)} per {unit}" + (f" ({where})" if where else "")
