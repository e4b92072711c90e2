"""Fakes for the video tests: textured synthetic scenes whose true labels are known, and an engine-like object whose
class scores are those labels (no model)."""

from __future__ import annotations

import hashlib
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from zsseg_rt.pipeline.class_scores import ClassScores, state_size
from zsseg_rt.runtime.result import Result


def texture(height: int, width: int, seed: int) -> np.ndarray:
    """A smooth random grey texture ``[H, W, 3]`` uint8 (blobs of about 6 px: something an optical flow can follow)."""
    import cv2

    rng = np.random.default_rng(seed)
    noise = rng.uniform(0, 255, (height // 6 + 2, width // 6 + 2)).astype(np.float32)
    grey = cv2.resize(noise, (width, height), interpolation=cv2.INTER_CUBIC)
    return np.repeat(np.clip(grey, 0, 255).astype(np.uint8)[:, :, None], 3, axis=2)


def moving_square(
    frames: int = 10,
    size: Tuple[int, int] = (120, 160),
    side: int = 32,
    step: int = 4,
    seed: int = 0,
    margin: int = 24,
) -> Tuple[List[np.ndarray], List[np.ndarray]]:
    """A textured square sliding right by ``step`` px a frame over a static textured background: the frames and their
    true label maps (1 inside the square, 0 elsewhere)."""
    height, width = size
    background = texture(height, width, seed)
    patch = 255 - texture(side, side, seed + 1)
    images, truths = [], []
    top = (height - side) // 2
    for k in range(frames):
        left = margin + step * k
        image = background.copy()
        image[top : top + side, left : left + side] = patch
        truth = np.zeros(size, dtype=np.int32)
        truth[top : top + side, left : left + side] = 1
        images.append(image)
        truths.append(truth)
    return images, truths


def _area(mask: np.ndarray, size: Tuple[int, int]) -> np.ndarray:
    import cv2

    return cv2.resize(mask.astype(np.float32), (size[1], size[0]), interpolation=cv2.INTER_AREA)


class ScoreEngine:
    """Engine-like: each known frame's class scores are its true labels (one-hot, area-averaged to the state size)
    plus noise of ``noise`` seeded by the frame (a near-tie per pixel when ``noise`` is comparable to the gap, ``gap``),
    everywhere or only where ``noise_where`` is set (a confident model that hesitates at its boundaries). Its labels
    are the argmax of those scores at the frame's size (as an Engine's are, up to the state's resolution).

    ``frames`` / ``truths``: the frames it knows and their labels; unknown frames get class 0 everywhere. ``calls``
    counts frames encoded; ``set_classes`` changes ``class_names`` and the vocabulary token.
    """

    def __init__(
        self,
        frames: Sequence[np.ndarray],
        truths: Sequence[np.ndarray],
        classes: Sequence[str] = ("background", "square"),
        noise: float = 0.0,
        gap: float = 0.5,
        seed: int = 0,
        noise_where: Optional[np.ndarray] = None,
    ):
        self._truth: Dict[str, np.ndarray] = {self._key(f): t for f, t in zip(frames, truths)}
        self.class_names = list(classes)
        self.vocabulary: object = object()
        self.noise, self.gap = float(noise), float(gap)
        self.seed = int(seed)
        self.noise_where = noise_where  # [H, W] bool: the noise only there (a confident model elsewhere)
        self.calls = 0

    @staticmethod
    def _key(frame: np.ndarray) -> str:
        return hashlib.sha1(np.ascontiguousarray(frame).tobytes() + str(frame.shape).encode()).hexdigest()

    def set_classes(self, names) -> None:
        self.class_names = [n.strip() for n in names.split(",")] if isinstance(names, str) else list(names)
        self.vocabulary = object()

    def scores_of(self, frame: np.ndarray, stride: int) -> np.ndarray:
        truth: Optional[np.ndarray] = self._truth.get(self._key(frame))
        if truth is None:
            truth = np.zeros(frame.shape[:2], dtype=np.int32)
        size = state_size(frame.shape[:2], stride)
        classes = len(self.class_names)
        scores = np.stack([_area(truth == c, size) * self.gap for c in range(classes)]).astype(np.float32)
        if self.noise:  # the same frame always gets the same noise (whatever else was encoded before it)
            rng = np.random.default_rng([self.seed, int(self._key(frame)[:12], 16)])
            noise = rng.normal(0.0, self.noise, scores.shape).astype(np.float32)
            if self.noise_where is not None:
                noise *= _area(self.noise_where, size) > 0
            scores += noise
        return scores

    def segment_with_class_scores(self, frames, stride: int = 4, color_order=None) -> List[Result]:
        results = []
        for frame in frames:
            self.calls += 1
            class_scores = ClassScores(self.scores_of(frame, stride), frame.shape[:2])
            labels, winning = class_scores.finalize()
            results.append(Result(labels, winning, list(self.class_names), image=frame, class_scores=class_scores))
        return results

    def __call__(self, frames, color_order=None):
        single = not isinstance(frames, list)
        results = self.segment_with_class_scores([frames] if single else frames)
        for result in results:
            result.class_scores = None
        return results[0] if single else results
