"""The result type every backend returns, with colouring and overlay helpers (NumPy + OpenCV)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

import numpy as np


def palette(num_classes: int, seed: int = 0) -> np.ndarray:
    """Deterministic, well-separated RGB colours: ``[num_classes, 3]`` uint8 (golden-ratio hues)."""
    import colorsys

    colors = np.zeros((max(num_classes, 1), 3), dtype=np.uint8)
    for idx in range(num_classes):
        hue = (seed * 0.1 + idx * 0.61803398875) % 1.0
        sat = 0.65 + 0.35 * ((idx // 7) % 2)
        val = 0.95 - 0.25 * ((idx // 3) % 2)
        colors[idx] = [int(255 * c) for c in colorsys.hsv_to_rgb(hue, sat, val)]
    return colors[:num_classes]


@dataclass
class SegmentationResult:
    """Per-pixel labels for one image.

    Attributes:
        labels: ``[H, W]`` int32 index into ``class_names`` (every pixel gets one class).
        scores: ``[H, W]`` float32 calibrated score of the winning class (sigmoid minus calibration bias).
        class_names: the vocabulary the labels index.
        color_order: "bgr" or "rgb", the channel order of the input image (used by ``to_color``/``overlay``).
    """

    labels: np.ndarray
    scores: np.ndarray
    class_names: List[str]
    color_order: str = "bgr"

    def present_classes(self) -> List[int]:
        """Class indices that label at least one pixel, most frequent first."""
        counts = np.bincount(self.labels.ravel(), minlength=len(self.class_names))
        order = np.argsort(-counts, kind="stable")
        return [int(i) for i in order if counts[i] > 0]

    def to_color(self, colors: Optional[np.ndarray] = None) -> np.ndarray:
        """``[H, W, 3]`` uint8 colour image of the labels, in the input's channel order."""
        rgb = palette(len(self.class_names)) if colors is None else np.asarray(colors, dtype=np.uint8)
        if rgb.shape != (len(self.class_names), 3):
            raise ValueError(f"colors must have shape [{len(self.class_names)}, 3], got {list(rgb.shape)}")
        table = rgb[:, ::-1] if self.color_order == "bgr" else rgb
        return table[self.labels]

    def overlay(self, image: np.ndarray, alpha: float = 0.5, legend: bool = True, title: str = "") -> np.ndarray:
        """Blend the colour labels onto ``image`` (same size, same channel order) and draw a legend."""
        import cv2

        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        if image.shape[:2] != self.labels.shape:
            raise ValueError(f"image is {list(image.shape[:2])} but the labels are {list(self.labels.shape)}")
        base = image if image.ndim == 3 and image.shape[2] == 3 else cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
        blended = cv2.addWeighted(base.astype(np.uint8), 1.0 - alpha, self.to_color(), alpha, 0.0)
        if legend:
            blended = self._draw_legend(blended, title)
        return blended

    def _draw_legend(self, canvas: np.ndarray, title: str) -> np.ndarray:
        import cv2

        table = palette(len(self.class_names))
        if self.color_order == "bgr":
            table = table[:, ::-1]
        rows = [(title, None)] if title else []
        rows += [(self.class_names[i], table[i]) for i in self.present_classes()[:20]]
        scale = max(0.4, min(canvas.shape[:2]) / 900.0)
        line = int(22 * scale / 0.5)
        for row, (text, color) in enumerate(rows):
            y = 8 + row * line
            x = 8
            if color is not None:
                cv2.rectangle(canvas, (x, y), (x + line - 4, y + line - 4), tuple(int(c) for c in color), -1)
                x += line
            cv2.putText(canvas, text, (x, y + line - 8), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 3, cv2.LINE_AA)
            cv2.putText(
                canvas, text, (x, y + line - 8), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA
            )
        return canvas
