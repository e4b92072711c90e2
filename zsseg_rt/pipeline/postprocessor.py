"""The one post-processor: per-window mask logits -> labels and scores at the original image size.

It owns the window loop, the exact/fast rule and the sigmoid/softmax choice, for every path that segments
an image: the runtime ``Engine`` (built from the bundle's ``meta.json`` with :meth:`Postprocessor.from_meta`),
``zsseg_rt.contract.common.predict`` (built from a model config with :meth:`Postprocessor.from_config`).

Official orders (no torch; the native ops do the work):

- ``"sigmoid"`` (ZegCLIP, CLIP-RC): per window logits -> bilinear to the head size -> sigmoid -> minus the
  per-class calibration bias -> to the window -> average overlapping windows -> bilinear to the original size
  -> argmax. This is :meth:`Postprocessor.exact_sigmoid`, the single method a fused native op replaces.
- ``"softmax"`` (training-free dense CLIP): window logits averaged (not probabilities), resized to the
  original size, (optional PAMR guided by the normalised network input resized to that size: NACLIP, SC-CLIP),
  ``* logit_scale``, softmax, optional area filter / background threshold
  (:func:`zsseg_rt.pipeline.postprocess.softmax_segment`, ``softmax_segment_pamr``).

- ``"maps"`` (ZeroSeg, GroupViT's order): the head already painted per-window class maps at the head size
  (background first); windows averaged, resized to the original size, argmax (:meth:`Postprocessor.exact_maps`,
  the same in both modes).

``mode="fast"`` takes the fused single-pass path when there is exactly one window covering the whole
head-size input (labels may differ from the exact order at a few boundary pixels); otherwise exact.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Mapping, Optional, Sequence, Tuple

import numpy as np

from zsseg_rt import ops
from zsseg_rt.bundle.spec import WholeImage
from zsseg_rt.options import ENGINE_OPTIONS

from . import postprocess as post
from .preprocess import Window

__all__ = ["Postprocessor", "MODES", "WINDOW_LOGITS", "WHOLE_LOGITS", "MAPS"]

MODES = tuple(ENGINE_OPTIONS["mode"].values() or ())  # Engine(mode=...): its row's values (zsseg_rt.options)
# "maps" (ZeroSeg / GroupViT): the head already painted each window's class maps at the head size (no activation,
# no calibration): windows averaged, resized to the output size, argmax. Kept here, apart from the native
# activations of ``postprocess.ACTIVATIONS``.
MAPS = "maps"
# How each window's logits relate to the window: "padded" (the crop was zero-padded bottom/right to the head
# size, the scores are cropped back: the Engine's fixed-shape graphs) or "fitted" (the network saw the window
# itself, the scores are resized to the window: PyTorch ``predict``, as in the official code).
WINDOW_LOGITS = ("padded", "fitted")
# Where whole-image inference resizes the grid logits first (a bundle's ``whole_image.logits_to``;
# :meth:`Postprocessor.whole`): to the rescaled image, then to the output ("rescaled"), or straight to the output.
WHOLE_LOGITS = WholeImage.LOGITS_TO

Size = Tuple[int, int]


@dataclass(frozen=True)
class Postprocessor:
    """Turns ``logits [n, C, h, w]`` (one row per window) into ``labels [1, H, W]`` int32 and ``scores [1, H, W]``
    float32 at the output size.

    Attributes:
        head_size: ``(Hh, Wh)`` the size the head resizes its logits to (the model's image size).
        activation: ``"sigmoid"`` or ``"softmax"``.
        mode: ``"exact"`` (official order) or ``"fast"`` (fused path for a single whole-image window).
        window_logits: ``"padded"`` or ``"fitted"`` (see ``WINDOW_LOGITS``).
        logit_scale: softmax only: multiplies the logits first (1.0 when the head already applied it).
        background_threshold / area_threshold: softmax only (SCLIP ``prob_thd`` / ``area_thd``), or None.
        pamr_iterations / pamr_dilations: softmax only: PAMR steps (0: none) and dilations; PAMR needs the
            rescaled image (``image=`` of ``__call__``) and its normalisation ``image_mean`` / ``image_std``.
        class_of: softmax only, synonyms: the class of each logit row (name), names grouped by class in class
            order; the softmax runs over the names and a class's probability is the max over its names' (the
            training-free methods' official rule). None: one row per class. Set per vocabulary (the pipeline).
        background_index: the label of pixels under ``background_threshold`` (the vocabulary's background class;
            0 as the official code when it names none).
    """

    head_size: Size
    activation: str = "sigmoid"
    mode: str = "exact"
    window_logits: str = "padded"
    logit_scale: float = 1.0
    background_threshold: Optional[float] = None
    area_threshold: Optional[float] = None
    pamr_iterations: int = 0
    pamr_dilations: Tuple[int, ...] = (8, 16)
    image_mean: Optional[Tuple[float, ...]] = None
    image_std: Optional[Tuple[float, ...]] = None
    class_of: Optional[Tuple[int, ...]] = None
    background_index: int = 0

    def __post_init__(self) -> None:
        if self.activation not in post.ACTIVATIONS + (MAPS,):
            raise ValueError(f"activation must be one of {post.ACTIVATIONS + (MAPS,)}, got {self.activation!r}")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.window_logits not in WINDOW_LOGITS:
            raise ValueError(f"window_logits must be one of {WINDOW_LOGITS}, got {self.window_logits!r}")
        if len(self.head_size) != 2 or min(self.head_size) < 1:
            raise ValueError(f"head_size must be (height, width) >= 1, got {self.head_size}")
        if self.class_of is not None:
            steps = np.diff(np.asarray(self.class_of, dtype=np.int64), prepend=-1)
            if (
                self.activation != "softmax"
                or not len(steps)
                or self.class_of[0] != 0
                or not np.isin(steps, (0, 1)).all()
            ):
                raise ValueError(
                    "class_of (synonyms) needs softmax post-processing and names grouped by class in class order "
                    f"(0, ..., each next equal or one more), got activation {self.activation!r}, {self.class_of[:8]}"
                )
        if self.pamr_iterations:
            if self.activation != "softmax":
                raise ValueError(f"PAMR refines softmax post-processing only, not {self.activation!r}")
            if self.image_mean is None or self.image_std is None:
                raise ValueError("PAMR needs image_mean and image_std (the normalisation of its guide image)")

    @property
    def pamr_neighbours(self) -> int:
        """PAMR's neighbours per pixel (8 per dilation), 0 without PAMR (``limits.estimate_bytes``)."""
        return 8 * len(self.pamr_dilations) if self.pamr_iterations else 0

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_meta(cls, meta: Any, mode: str = "exact") -> "Postprocessor":
        """From a bundle's :class:`~zsseg_rt.bundle.BundleMeta` (its ``image_size`` and ``postprocess`` table)."""
        options: Mapping[str, Any] = meta.postprocess
        scale = 1.0 if options.get("logit_scale_in_head", True) else float(options.get("logit_scale", 1.0))
        return cls(
            head_size=(int(meta.image_size), int(meta.image_size)),
            activation=str(options.get("activation", "sigmoid")),
            mode=mode,
            window_logits="padded",
            logit_scale=scale,
            background_threshold=options.get("background_threshold"),
            area_threshold=options.get("area_threshold"),
            pamr_iterations=int(options.get("pamr_iterations") or 0),
            pamr_dilations=tuple(int(d) for d in options.get("pamr_dilations") or (8, 16)),
            image_mean=_floats(getattr(meta, "mean", None)),  # PAMR's guide normalisation
            image_std=_floats(getattr(meta, "std", None)),
        )

    @classmethod
    def from_config(cls, config: Any, mode: str = "exact", window_logits: str = "fitted") -> "Postprocessor":
        """From a ZegCLIP-family model config (sigmoid, head size ``image_size``)."""
        size = int(config.image_size)
        return cls(head_size=(size, size), activation="sigmoid", mode=mode, window_logits=window_logits)

    # ------------------------------------------------------------------ entry point
    def __call__(
        self,
        logits: np.ndarray,
        windows: Sequence[Window],
        scaled_size: Size,
        output_size: Size,
        class_bias: Optional[np.ndarray] = None,
        image: Optional[np.ndarray] = None,
    ) -> Tuple[np.ndarray, np.ndarray]:
        """Segment one image.

        Args:
            logits: ``[n, C, h, w]`` float32, row ``i`` for ``windows[i]``.
            windows: the window placements in the rescaled image (``pipeline.sliding_windows``).
            scaled_size: ``(H', W')`` of the rescaled image the windows tile.
            output_size: ``(H, W)`` of the result (the original image).
            class_bias: ``[C]`` float32 calibration bias (subtracted after the activation), or None.
            image: ``[H', W', 3]`` uint8 RGB, the rescaled image the windows were cut from: PAMR's guide (needed
                when ``pamr_iterations`` > 0, ignored otherwise).
        Returns:
            ``labels [1, H, W]`` int32 and ``scores [1, H, W]`` float32.
        """
        if not isinstance(logits, np.ndarray) or logits.ndim != 4 or len(logits) != len(windows) or not windows:
            shape = getattr(logits, "shape", None)
            raise ValueError(f"need logits [n, C, h, w] with one row per window ({len(windows)}), got {shape}")
        scaled_size = (int(scaled_size[0]), int(scaled_size[1]))
        output_size = (int(output_size[0]), int(output_size[1]))
        if self.activation == MAPS:  # one order in both modes (nothing to fuse)
            return self.exact_maps(logits, windows, scaled_size, output_size, class_bias)
        if self.is_fast(windows) and not self.pamr_iterations:
            return self.fast(logits, output_size, class_bias)
        if self.activation == "softmax":  # (PAMR refines softmax only: __post_init__)
            return self.softmax(logits, windows, scaled_size, output_size, class_bias, image)
        return self.exact_sigmoid(logits, windows, self.head_size, scaled_size, output_size, class_bias)

    def whole(
        self,
        logits: np.ndarray,
        scaled_size: Size,
        output_size: Size,
        logits_to: str = "rescaled",
        class_bias: Optional[np.ndarray] = None,
        image: Optional[np.ndarray] = None,
    ) -> Tuple[np.ndarray, np.ndarray]:
        """Segment one image from the logits of one whole-image pass, ``logits [1, C, h, w]`` on the patch grid of
        the (padded or cut) rescaled image, in the method's official order (``logits_to``, :data:`WHOLE_LOGITS`):

        * ``"rescaled"`` (mmseg ``encode_decode`` + ``whole_inference``: MaskCLIP; NACLIP's ``forward_feature`` +
          ``predict``): the grid logits bilinear to the rescaled size ``scaled_size`` (the grid of a padded image
          covers a little more than the image, that of a cut one a little less: both are stretched onto it), then
          to ``output_size``, (PAMR), softmax, thresholds, argmax: the window order with one window that is the
          whole rescaled image;
        * ``"original"`` (SCLIP / ClearCLIP ``forward_feature(img, logit_size=ori_shape)``): the grid logits bilinear
          straight to ``output_size``, softmax, thresholds, argmax (their whole-image path has no PAMR).

        Fast mode resizes the grid logits straight to the output size in both orders. Args as :meth:`__call__`
        (``image``: the rescaled ``[H', W', 3]`` uint8 RGB image, PAMR's guide).
        """
        if logits_to not in WHOLE_LOGITS:
            raise ValueError(f"logits_to must be one of {WHOLE_LOGITS}, got {logits_to!r}")
        if not isinstance(logits, np.ndarray) or logits.ndim != 4 or len(logits) != 1:
            raise ValueError(f"need the logits [1, C, h, w] of one whole image, got {getattr(logits, 'shape', None)}")
        if self.activation != "softmax":
            raise ValueError(f"whole-image inference is a softmax (training-free) order, not {self.activation!r}")
        if logits_to == "original":
            grid = (int(logits.shape[2]), int(logits.shape[3]))
            direct = replace(self, head_size=grid, pamr_iterations=0)
            return direct(logits, [Window(0, grid[0], 0, grid[1])], grid, output_size, class_bias)
        scaled = (int(scaled_size[0]), int(scaled_size[1]))
        stretched = replace(self, head_size=scaled)
        return stretched(logits, [Window(0, scaled[0], 0, scaled[1])], scaled, output_size, class_bias, image)

    def is_fast(self, windows: Sequence[Window]) -> bool:
        """The exact/fast rule: fast mode and one window covering the whole head-size input."""
        hh, wh = self.head_size
        return self.mode == "fast" and len(windows) == 1 and tuple(windows[0]) == (0, hh, 0, wh)

    # ------------------------------------------------------------------ paths
    def fast(
        self, logits: np.ndarray, output_size: Size, class_bias: Optional[np.ndarray]
    ) -> Tuple[np.ndarray, np.ndarray]:
        """Fused single-window path (logits straight to the output size)."""
        if self.activation == "softmax":
            return post.softmax_segment(logits, output_size, **self._softmax_options(class_bias))
        return post.segment_fast(logits, output_size, class_bias)

    def exact_sigmoid(
        self,
        logits: np.ndarray,
        windows: Sequence[Window],
        head_size: Size,
        scaled_size: Size,
        output_size: Size,
        class_bias: Optional[np.ndarray],
    ) -> Tuple[np.ndarray, np.ndarray]:
        """The official sigmoid order. Padded windows (the Engine) go through the fused native ``ops.segment_windows``;
        fitted windows (resized to their own size) through the unfused composition.

        Args:
            logits: ``[n, C, h, w]`` float32 per-window logits; windows: their placements; head_size: the size
            the head calibrates at; scaled_size: the tiled image; output_size: the result; class_bias: ``[C]``.
        Returns:
            ``labels [1, H, W]`` int32, ``scores [1, H, W]`` float32 (winning calibrated score).
        """
        if self._padded_order(windows, head_size):
            # one native pass (ops.segment_windows), bit-identical to the composition below, no [C, H, W] buffers
            labels, scores = post.segment_windows_exact(
                logits, windows, head_size, scaled_size, output_size, class_bias
            )
            return labels[None], scores[None]
        merged = self._merged(logits, windows, head_size, "sigmoid", class_bias, scaled_size)
        return post.finalize_scores(merged, output_size)

    def softmax(
        self,
        logits: np.ndarray,
        windows: Sequence[Window],
        scaled_size: Size,
        output_size: Size,
        class_bias: Optional[np.ndarray],
        image: Optional[np.ndarray] = None,
    ) -> Tuple[np.ndarray, np.ndarray]:
        """The training-free official order: average window logits, resize, softmax, thresholds.

        Without PAMR, padded windows (the Engine) with finite logits go through the fused native op
        (``post.segment_windows_softmax``: no ``[C, H, W]`` buffer of either size); fitted windows, and logits
        holding inf/NaN, through the composition (its softmax is fused too when the merged logits are finite).
        With PAMR (NACLIP ``predict``, SC-CLIP ``forward_slide``): the window logits averaged at the rescaled size
        are resized to the output size and refined by PAMR, guided by the normalised rescaled ``image`` resized to
        the output size, before the softmax; fast mode with one whole window resizes the window's logits straight
        to the output size. Builds ``[C, H', W']`` and ``[C, H, W]`` logit maps."""
        pamr = self.pamr_iterations > 0
        if pamr:
            guide = self._pamr_guide(image, scaled_size, output_size)
        elif self._padded_order(windows, self.head_size) and np.isfinite(logits).all():
            labels, scores = post.segment_windows_softmax(
                logits, windows, self.head_size, scaled_size, output_size, **self._softmax_options(class_bias)
            )
            return labels[None], scores[None]
        if pamr and self.is_fast(windows):
            merged = logits
        else:
            merged = self._merged(logits, windows, self.head_size, "softmax", None, scaled_size)
        if not pamr:
            return post.softmax_segment(merged, output_size, **self._softmax_options(class_bias))
        dense = ops.upsample(np.ascontiguousarray(merged, dtype=np.float32), output_size)
        return post.softmax_segment_pamr(
            dense, guide, self.pamr_iterations, self.pamr_dilations, **self._softmax_options(class_bias)
        )

    def _pamr_guide(self, image: Optional[np.ndarray], scaled_size: Size, output_size: Size) -> np.ndarray:
        """PAMR's guide (``post.pamr_guide``) from the rescaled ``image`` the windows were cut from."""
        if image is None or not isinstance(image, np.ndarray) or image.shape[:2] != tuple(scaled_size):
            shape = getattr(image, "shape", None)
            raise ValueError(
                f"PAMR needs the rescaled [H', W', 3] uint8 RGB image the windows were cut from (H', W' = "
                f"{tuple(scaled_size)}), got {type(image).__name__} {shape}"
            )
        assert self.image_mean is not None and self.image_std is not None  # (__post_init__)
        return post.pamr_guide(image, self.image_mean, self.image_std, output_size)

    def exact_maps(
        self,
        maps: np.ndarray,
        windows: Sequence[Window],
        scaled_size: Size,
        output_size: Size,
        class_bias: Optional[np.ndarray],
    ) -> Tuple[np.ndarray, np.ndarray]:
        """GroupViT's order (mmseg ``slide_inference``) for per-window class maps already at the head size:
        cut each padded window back to its size, average overlapping windows, bilinear to the output size,
        argmax. ``scores`` are the winning channel's averaged value. A class bias is refused (none is defined).
        Finite maps go through the fused ``ops.segment_windows`` (identity calibration; its resize of a map to its
        own size is exact), so no ``[C, H', W']`` average is built."""
        if class_bias is not None and np.any(class_bias):
            raise ValueError("this bundle's post-processing ('maps') takes no class bias; pass class_bias=None or 0")
        if tuple(maps.shape[2:]) != tuple(self.head_size):
            raise ValueError(f"'maps' post-processing needs [n, C, {self.head_size}] maps, got {list(maps.shape)}")
        maps = np.ascontiguousarray(maps, dtype=np.float32)
        if np.isfinite(maps).all():  # the fused op, identity calibration: the same arithmetic, no [C, H', W']
            labels, scores = ops.segment_windows(
                maps, [tuple(w) for w in windows], tuple(self.head_size), scaled_size, output_size, sigmoid=False
            )
            return labels[None], scores[None]
        parts = [  # non-finite maps: the composition (its head-size resize is skipped, so NaN does not spread)
            np.ascontiguousarray(maps[i : i + 1, :, : win.y2 - win.y1, : win.x2 - win.x1], dtype=np.float32)
            for i, win in enumerate(windows)
        ]
        merged = post.merge_windows(parts, windows, scaled_size)
        return post.finalize_scores(merged, output_size)

    # ------------------------------------------------------------------ helpers
    def _padded_order(self, windows: Sequence[Window], head_size: Size) -> bool:
        """Whether windows take the padded order (the fused ops): padded window logits, or fitted ones that all have
        the head size (fitted = padded then)."""
        full_size = all((win.y2 - win.y1, win.x2 - win.x1) == tuple(head_size) for win in windows)
        return self.window_logits == "padded" or full_size

    def _merged(
        self,
        logits: np.ndarray,
        windows: Sequence[Window],
        head_size: Size,
        activation: str,
        class_bias: Optional[np.ndarray],
        scaled_size: Size,
    ) -> np.ndarray:
        """The unfused composition's window average: each window's values (``_window_part``) averaged where windows
        overlap, ``[1, C, H', W']``."""
        parts = [
            self._window_part(logits[i : i + 1], win, head_size, activation, class_bias)
            for i, win in enumerate(windows)
        ]
        return post.merge_windows(parts, windows, scaled_size)

    def _window_part(
        self,
        logits: np.ndarray,
        win: Window,
        head_size: Size,
        activation: str,
        class_bias: Optional[np.ndarray],
    ) -> np.ndarray:
        win_size = (win.y2 - win.y1, win.x2 - win.x1)
        if self.window_logits == "fitted":
            return post.window_scores(logits, head_size, win_size, activation, class_bias)
        full = post.window_scores(logits, head_size, head_size, activation, class_bias)
        return full[:, :, : win_size[0], : win_size[1]]

    def _softmax_options(self, class_bias: Optional[np.ndarray]) -> dict:
        return dict(
            logit_scale=self.logit_scale,
            class_bias=class_bias,
            background_threshold=self.background_threshold,
            area_threshold=self.area_threshold,
            background_index=self.background_index,
            class_of=None if self.class_of is None else np.asarray(self.class_of, dtype=np.int32),
        )


def _floats(values: Any) -> Optional[Tuple[float, ...]]:
    return None if values is None else tuple(float(v) for v in values)
