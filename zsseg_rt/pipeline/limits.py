"""Input limits of the runtime and the memory formula they enforce (docs/usage.md, "Input limits and memory").

Segmenting one image of ``H x W`` pixels with ``C`` classes on a bundle of input size ``S`` works on:

- the image itself, converted to RGB uint8 (``3 H W`` bytes) and the outputs, labels int32 + scores float32
  (``8 H W`` bytes);
- the keep-ratio rescaled image ``H' x W'`` (``3 H' W'`` bytes, uint8); its ``n`` sliding windows are
  normalised one batch at a time (``2 x 12 B S^2`` bytes for a batch of ``B = max_batch`` windows);
- the mask logits of every window, ``[n, C, h, w]`` float32 (``2 x 4 n C h w`` bytes: the per-batch parts and
  their concatenation), ``h x w`` the head's logit grid;
- post-processing: the fused exact op (``ops.segment_windows``, sigmoid and softmax alike) keeps, per CPU thread
  ``T``, three ``[C, W']`` rows (``4 T (3 C W' + 2 W' + C)`` bytes); fast mode with one window: nothing beyond
  the outputs for sigmoid, the same rows at the logit width ``w`` for softmax. (Softmax logits holding inf/NaN,
  a broken model, take the dense NumPy path, ``4 C H W`` more; that is not predictable before the encoder runs.)
  With PAMR (training-free bundles that ask for it) the logits are refined as whole maps: ``[C, H', W']``
  merged, three ``[C, H, W]`` maps, ``[P, H, W]`` weights and the guide image at both sizes, ``4 (C (H' W' +
  3 H W) + P H W + 3 (H' W' + H W))`` bytes more (``P`` = 8 per dilation).

Whole-image inference (bundles with a ``whole_image`` section) runs one "window" of the image's own size: the input
is ``H_in x W_in`` (the rescaled image fitted to the patch grid) instead of ``S x S``, and the encoder's own working
memory, which grows with the square of its ``L`` tokens (the attention maps), is counted too: ``a L + b L^2`` bytes
with the bundle's ``encoder_bytes_per_token`` (a) and ``encoder_bytes_per_token_pair`` (b).

Not counted: the encoder's own activations for one batch of windows (model- and backend-dependent, independent of
the image size) and the caller's own copy of the image. ``estimate_bytes`` is that sum; ``InputLimits.check``
refuses an image before any work when a pixel, window or memory limit would be exceeded.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional, Tuple, Union

from zsseg_rt.image_io import DEFAULT_MAX_PIXELS, max_pixels_limit

__all__ = ["InputLimits", "InputLimitError", "estimate_bytes", "cpu_threads", "MAX_SIDE", "NO_PIXEL_LIMIT"]

MIB = 1 << 20
# The longest image side any pipeline takes: the native ops refuse longer rows (``ops.preprocess`` takes sides up to
# 2^18, ``ops.segment_windows`` outputs up to 2^20), so the Engine refuses such an image up front with a message
# instead of an op's error after the encoder ran. Not configurable: it is the implementation's limit.
MAX_SIDE = 1 << 18
NO_PIXEL_LIMIT = (1 << 62) - 1  # ``max_pixels=0`` ("no limit") as a number


class InputLimitError(ValueError):
    """An input exceeds one of the Engine's documented limits (the message names it and how to raise it)."""


def cpu_threads() -> int:
    """The CPU threads the native ops use (OpenMP): ``OMP_NUM_THREADS`` when set, else the usable cores."""
    try:
        return max(1, int(os.environ.get("OMP_NUM_THREADS", "")))
    except ValueError:
        return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))


def estimate_bytes(
    image_size: Tuple[int, int],
    scaled_size: Tuple[int, int],
    windows: int,
    classes: int,
    crop: Union[int, Tuple[int, int]],
    logit_size: Tuple[int, int],
    batch: int,
    activation: str = "sigmoid",
    single_fast_window: bool = False,
    threads: Optional[int] = None,
    pamr_neighbours: int = 0,
    encoder_bytes: int = 0,
) -> int:
    """Working memory in bytes of segmenting one image (the module docstring's formula).

    Args:
        image_size: ``(H, W)`` input = output size; scaled_size: ``(H', W')`` after the keep-ratio rescale.
        windows: ``n`` sliding windows; classes: ``C``; crop: the graph input size ``S`` (or ``(H_in, W_in)``);
        logit_size: ``(h, w)`` of the head's mask logits; batch: windows per encoder call.
        activation: "sigmoid" (ZegCLIP family), "softmax" (training-free family) or "maps" (ZeroSeg).
        single_fast_window: fast mode with one window (the fused path straight to the output size).
        threads: CPU threads of the native ops (default ``cpu_threads()``).
        pamr_neighbours: PAMR's neighbours per pixel (8 per dilation; 0 without PAMR): its path holds the merged
            ``[C, H', W']`` logits, three ``[C, H, W]`` maps (resized, refined, the op's ping-pong buffer), its
            ``[P, H, W]`` weights and the guide image at both sizes.
        encoder_bytes: the encoder's own working memory when it grows with the image (whole-image inference).
    Returns:
        the estimate in bytes.
    """
    height, width = image_size
    scaled_h, scaled_w = scaled_size
    pixels, scaled = height * width, scaled_h * scaled_w
    crop_h, crop_w = (crop, crop) if isinstance(crop, int) else (int(crop[0]), int(crop[1]))
    total = 11 * pixels + 3 * scaled + 24 * min(batch, windows) * crop_h * crop_w + int(encoder_bytes)
    total += 8 * windows * classes * logit_size[0] * logit_size[1]
    rows_width = logit_size[1] if single_fast_window else scaled_w
    if activation in ("softmax", "maps") or not single_fast_window:
        total += 4 * (threads or cpu_threads()) * (3 * classes * rows_width + 2 * rows_width + classes)
    if pamr_neighbours:
        total += 4 * (classes * (scaled + 3 * pixels) + pamr_neighbours * pixels + 3 * (scaled + pixels))
    return int(total)


@dataclass(frozen=True)
class InputLimits:
    """What one Engine call accepts; every field is an ``Engine(...)`` argument of the same name.

    Attributes:
        max_pixels: input (= output) pixels ``H x W``; the default is the package's one pixel limit
            (``zsseg_rt.image_io``: 40 MP unless ``$ZSSEG_MAX_PIXELS`` says otherwise, the limit the CLI, ``zsseg
            batch`` and ``zsseg serve`` apply to files and requests); :meth:`resolve` turns None/0 into numbers.
        max_rescaled_pixels: pixels ``H' x W'`` after the keep-ratio test rescale (an elongated image grows:
            1 x 128 becomes 512 x 65536 under the short-side-512 rule).
        max_windows: sliding windows per image.
        max_memory_mb: the estimated working memory (``estimate_bytes``) of one image, in MiB.
    """

    max_pixels: int = DEFAULT_MAX_PIXELS
    max_rescaled_pixels: int = 1 << 25
    max_windows: int = 4096
    max_memory_mb: int = 2048

    def __post_init__(self) -> None:
        for name in ("max_pixels", "max_rescaled_pixels", "max_windows", "max_memory_mb"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")

    @classmethod
    def resolve(cls, max_pixels: Optional[int], **others: int) -> "InputLimits":
        """Limits with ``max_pixels`` None (the package's pixel limit: ``$ZSSEG_MAX_PIXELS`` or 40 MP) or 0 (no
        limit) turned into a number, the other fields as given."""
        limit = max_pixels_limit(max_pixels)  # ValueError for a negative or malformed value
        return cls(max_pixels=limit or NO_PIXEL_LIMIT, **others)

    def check(
        self, image_size: Tuple[int, int], scaled_size: Tuple[int, int], windows: int, estimate: Optional[int]
    ) -> None:
        """Raise ``InputLimitError`` naming the first limit the image exceeds (checked before any work)."""
        height, width = image_size
        scaled_h, scaled_w = scaled_size
        what = f"image of {height}x{width}"
        if max(height, width) > MAX_SIDE:
            raise InputLimitError(
                f"{what} has a side longer than {MAX_SIDE} pixels, the longest the native pre- and post-processing "
                "take (docs/usage.md, 'Input limits and memory'); crop it into parts or downscale it"
            )
        if height * width > self.max_pixels:
            self._fail(what, f"has {height * width} pixels", "max_pixels", self.max_pixels, "resize it")
        if scaled_h * scaled_w > self.max_rescaled_pixels:
            self._fail(
                what,
                f"is rescaled to {scaled_h}x{scaled_w} = {scaled_h * scaled_w} pixels by the test resize (its aspect "
                "ratio is extreme)",
                "max_rescaled_pixels",
                self.max_rescaled_pixels,
                "crop it into less elongated parts",
            )
        if windows > self.max_windows:
            self._fail(what, f"needs {windows} sliding windows", "max_windows", self.max_windows, "crop it into parts")
        if estimate is not None and estimate > self.max_memory_mb * MIB:
            self._fail(
                what,
                f"needs ~{estimate / MIB:.0f} MiB of working memory (docs/usage.md, 'Input limits and memory')",
                "max_memory_mb",
                self.max_memory_mb,
                "use fewer classes, mode='fast', or crop it",
            )

    @staticmethod
    def _fail(what: str, problem: str, name: str, limit: int, advice: str) -> None:
        raise InputLimitError(
            f"{what} {problem}: more than this Engine's {name}={limit}; {advice}, or raise the limit with "
            f"Engine(..., {name}=N)"
        )
