"""The windowed pipeline: an image encoder and a head per sliding window, then the shared post-processing.

Bundles hold ``image_encoder.onnx``, ``head.onnx`` (dynamic class count) and ``text_encoder.onnx``; every window is
the graphs' input size S after the official keep-ratio rescale. Post-processing is the one
:class:`zsseg_rt.pipeline.Postprocessor` (exact or fast; sigmoid, softmax or the painted class maps of a head that
draws a background label). On a GPU a frame's data can stay on the device (``runtime/device_pipeline.py``).
"""

from __future__ import annotations

import dataclasses
import itertools
import threading
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from zsseg_rt import pipeline
from zsseg_rt.bundle import BundleMeta
from zsseg_rt.pipeline.limits import estimate_bytes
from zsseg_rt.pipeline.postprocessor import MODES, Postprocessor
from zsseg_rt.pipeline.preprocess import Window, rescaled_size

from ..backends import make_backend
from ..result import SegmentationResult
from .base import Focus, Pipeline, PreparedVocabulary, image_index

__all__ = ["WindowedPipeline"]


class WindowedPipeline(Pipeline):
    """Sliding windows through the image encoder and head graphs; see the module docstring and ``Engine``.

    ``mode``: "exact" (the official order) or "fast" (single-window images straight to the output size).
    ``max_batch``: windows run through the image encoder together.
    """

    kind = "windowed"
    description = "image encoder + head per sliding window, the shared post-processing"
    backends = ("auto", "tensorrt", "onnxruntime", "openvino", "torch")
    modes = MODES
    default_max_batch = 4

    def __init__(self, meta: BundleMeta, **options: Any):
        mode = options["mode"]
        if mode not in self.modes:
            raise ValueError(f"mode must be one of {self.modes}, got {mode!r}")
        super().__init__(meta, **options)
        self.postprocessor = Postprocessor.from_meta(meta, mode=mode)  # windows, exact/fast, activation
        # The keep-ratio test rescale [long_max, short] of the host path: the bundle's; a family's evaluation settings
        # may set another for an evaluation (``Family.apply_evaluation_settings``). The device pipeline keeps the
        # bundle's.
        self.test_scale = list(meta.test_scale)
        self.backend = make_backend(
            meta,
            options["backend"],
            options["device"],
            options["model"],
            options["precision"],
            options["threads"],
            options["verify"],
        )
        from ..device_pipeline import make_device_pipeline

        self.device = make_device_pipeline(meta, self.backend, options["device_pipeline"], self.max_batch)
        self._device_lock = threading.Lock()
        self._device_vocab: Any = None  # the vocabulary snapshot uploaded to the device pipeline (once per set_classes)

    def plan(
        self, image: Any, bias: np.ndarray, rows: int = 0
    ) -> Tuple[Tuple[int, int], Tuple[int, int], List[Window]]:
        """Validate the image and check the input limits before any work: ``(original size, rescaled size,
        windows)``. ``rows``: the head's class rows when they are more than the classes (one per name: synonyms).
        Raises TypeError/ValueError for a bad image, ``InputLimitError`` past a limit."""
        height, width, _ = pipeline.check_image(image)
        scaled = rescaled_size(height, width, self.test_scale, max_pixels=None)
        crop, stride = self.meta.crop_size, self.meta.stride
        count = (max(scaled[0] - crop + stride - 1, 0) // stride + 1) * (
            max(scaled[1] - crop + stride - 1, 0) // stride + 1
        )
        self.limits.check((height, width), scaled, count, None)  # pixel and window limits before listing windows
        windows = pipeline.sliding_windows(scaled[0], scaled[1], crop, stride)
        maps = self.postprocessor.activation == "maps"  # a head that paints 1 + C class maps at the graph size
        estimate = estimate_bytes(
            (height, width),
            scaled,
            len(windows),
            max(len(bias), int(rows)) + int(maps),
            self.meta.image_size,
            (self.meta.image_size,) * 2 if maps else self.meta.grid,
            self.max_batch,
            activation=self.postprocessor.activation,
            single_fast_window=self.postprocessor.is_fast(windows),
            pamr_neighbours=self.postprocessor.pamr_neighbours,
        )
        self.limits.check((height, width), scaled, len(windows), estimate)
        return (height, width), scaled, windows

    def segment(self, image: Any, color_order: str, vocab: PreparedVocabulary) -> SegmentationResult:
        names, text, bias = vocab.names, vocab.text, vocab.bias
        if color_order not in ("bgr", "rgb"):
            raise ValueError(f"color_order must be 'bgr' or 'rgb', got {color_order!r}")
        orig_hw, scaled_hw, windows = self.plan(image, bias, len(text))
        if self.device is not None and self.mode == "exact":
            with self._device_lock:  # the device pipeline reports its own stages (upload, ..., postprocess, download)
                if self._device_vocab is not vocab:  # first frame after set_classes: upload text + bias once
                    with self.stage("vocabulary_upload"):
                        self.device.set_vocabulary(text, bias)
                    self._device_vocab = vocab
                labels, scores = self.device(np.ascontiguousarray(image), color_order, stage_hook=self.stage_hook)
            return SegmentationResult(labels, scores, list(names), color_order)
        scaled = self._rescale(image, color_order)
        logits = self.window_logits(scaled, windows, text)  # [n, C, h, w]
        return self._finish(vocab, logits, (orig_hw, scaled_hw, windows), scaled, color_order)

    def _rescale(self, image: Any, color_order: str) -> np.ndarray:
        """The official keep-ratio rescale of one image to ``[H', W', 3]`` uint8 RGB (the "preprocess" stage)."""
        with self.stage("preprocess"):
            rgb = pipeline.to_rgb_uint8(image, color_order)
            return pipeline.rescale_keep_ratio(rgb, self.test_scale, max_pixels=None)

    def _finish(
        self, vocab: PreparedVocabulary, logits: np.ndarray, plan: Tuple[Any, Any, List[Window]], scaled, order: str
    ) -> SegmentationResult:
        """Post-process one image's window logits ``[n, C, h, w]`` into its result (the "postprocess" stage)."""
        orig_hw, scaled_hw, windows = plan
        with self.stage("postprocess"):
            post = self.postprocessor_for(vocab)
            labels, scores = post(logits, windows, scaled_hw, orig_hw, vocab.bias, image=scaled)
        return SegmentationResult(labels[0], scores[0], self.label_names(vocab.names), order)

    def segment_many(
        self, images: Sequence[Tuple[Any, str]], vocab: PreparedVocabulary, focus: Focus
    ) -> List[SegmentationResult]:
        """Every image checked and planned first (an error names the image, before any work), then the windows of
        all images, in order, packed into encoder/head calls of at most ``max_batch`` windows: a call may hold the
        last windows of one image and the first of the next. An image is rescaled when its first window is due and
        post-processed as soon as its last window ran, so at most the images of one chunk are held rescaled, with
        their window logits, whatever the number of images. Shared stages are timed to the images of the chunk in
        proportion to their windows in it. The device pipeline packs the windows the same way on the GPU
        (``DevicePipeline.segment_many``), timed as one "device_pipeline" stage split by windows."""
        plans = []
        for index, (image, order) in enumerate(images):
            with image_index(index):
                if order not in ("bgr", "rgb"):
                    raise ValueError(f"color_order must be 'bgr' or 'rgb', got {order!r}")
                plans.append(self.plan(image, vocab.bias, len(vocab.text)))
        if self.device is not None and self.mode == "exact":
            return self._segment_many_on_device(images, vocab, focus, [len(p[2]) for p in plans])
        results: List[Optional[SegmentationResult]] = [None] * len(images)
        scaled: Dict[int, np.ndarray] = {}  # the rescaled images with windows still to run (at most one chunk's)
        logits: Dict[int, List[np.ndarray]] = {}  # their window logits so far
        jobs = ((i, w) for i, plan in enumerate(plans) for w in plan[2])  # (image, window), lazily
        for chunk in iter(lambda: list(itertools.islice(jobs, self.max_batch)), []):
            for index in dict.fromkeys(i for i, _ in chunk):
                if index not in scaled:
                    focus({index: 1.0})
                    scaled[index] = self._rescale(*images[index])
            focus({i: n / len(chunk) for i, n in _counts(chunk).items()})
            out = self._window_chunk([(scaled[i], w) for i, w in chunk], vocab.text)
            for row, (index, _) in enumerate(chunk):
                logits.setdefault(index, []).append(out[row : row + 1])
            for index, parts in list(logits.items()):
                if sum(len(p) for p in parts) == len(plans[index][2]):  # its last window ran: post-process it now
                    focus({index: 1.0})
                    with image_index(index):
                        merged = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=0)
                        results[index] = self._finish(vocab, merged, plans[index], scaled.pop(index), images[index][1])
                    del logits[index]
        return [r for r in results if r is not None]

    def _segment_many_on_device(
        self, images: Sequence[Tuple[Any, str]], vocab: PreparedVocabulary, focus: Focus, windows: List[int]
    ) -> List[SegmentationResult]:
        """``segment_many`` on the device pipeline: the windows of all images packed into its batches on the GPU."""
        with self._device_lock:
            if self._device_vocab is not vocab:  # first call after set_classes: upload text + bias once
                focus({0: 1.0})
                with self.stage("vocabulary_upload"):
                    self.device.set_vocabulary(vocab.text, vocab.bias)
                self._device_vocab = vocab
            focus({i: n / sum(windows) for i, n in enumerate(windows)})
            with self.stage("device_pipeline"):
                outs = self.device.segment_many(
                    [np.ascontiguousarray(image) for image, _ in images],
                    [order for _, order in images],
                    stage_hook=self.stage_hook,
                )
        return [
            SegmentationResult(labels, scores, list(vocab.names), order)
            for (labels, scores), (_, order) in zip(outs, images)
        ]

    def postprocessor_for(self, vocab: PreparedVocabulary) -> Postprocessor:
        """The post-processor for a vocabulary snapshot: the pipeline's, with the vocabulary's name -> class map
        (synonyms, ``"max"`` rule), background class (the label of pixels under the background threshold) and the
        settings the bundle records for a named vocabulary (``logit_scale`` relative to the head's, thresholds)."""
        post = self.postprocessor
        changes: Dict[str, Any] = dict(vocab.post_options)
        if "logit_scale" in changes:  # recorded as the method's scale; the head may already apply the bundle's
            options = self.meta.postprocess
            head = float(options.get("logit_scale", 1.0)) if options.get("logit_scale_in_head", True) else 1.0
            changes["logit_scale"] = float(changes["logit_scale"]) / head
        if vocab.class_of is not None:
            changes["class_of"] = vocab.class_of
        if vocab.background is not None:
            changes["background_index"] = int(vocab.background)
        return dataclasses.replace(post, **changes) if changes else post

    def label_names(self, names: Sequence[str]) -> List[str]:
        """The names the labels index: the bundle's background label first where its head paints one
        (``postprocess.background_label``: label 0 = background, 1..C = the vocabulary), else the vocabulary."""
        background = self.meta.postprocess.get("background_label")
        return ([str(background)] if background else []) + list(names)

    def window_logits(self, scaled: np.ndarray, windows: List[Window], text: np.ndarray) -> np.ndarray:
        """Mask logits ``[n, C, h, w]`` of every window of the rescaled ``[H', W', 3]`` uint8 RGB image. Windows
        are cut, normalised and zero-padded to the graph size one batch at a time (``max_batch x 3 x S x S``
        float32 in memory, never the whole normalised image)."""
        outputs = [
            self._window_chunk([(scaled, w) for w in windows[start : start + self.max_batch]], text)
            for start in range(0, len(windows), self.max_batch)
        ]
        return outputs[0] if len(outputs) == 1 else np.concatenate(outputs, axis=0)

    def _window_chunk(self, windows: Sequence[Tuple[np.ndarray, Window]], text: np.ndarray) -> np.ndarray:
        """One encoder and one head call on ``(rescaled image, window)`` pairs (of one image or several):
        ``[b, C, h, w]`` mask logits."""
        size = self.meta.image_size
        with self.stage("preprocess"):
            batch = np.stack(
                [
                    pipeline.pad_to_multiple(
                        pipeline.normalize_image(scaled[w.y1 : w.y2, w.x1 : w.x2], self.meta.mean, self.meta.std),
                        self.meta.patch_size,
                        (size, size),
                    )
                    for scaled, w in windows
                ]
            )  # [b, 3, S, S]
        with self.stage("image_encoder"):
            features = self.backend.encode_image(batch)
        with self.stage("head"):
            return self.backend.head(text, features)


def _counts(chunk: Sequence[Tuple[int, Any]]) -> Dict[int, int]:
    """How many of a chunk's windows each image holds, in order."""
    counts: Dict[int, int] = {}
    for index, _ in chunk:
        counts[index] = counts.get(index, 0) + 1
    return counts
