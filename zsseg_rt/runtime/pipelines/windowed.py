"""The windowed pipeline: an image encoder and a head per sliding window, then the shared post-processing.

Bundles hold ``image_encoder.onnx``, ``head.onnx`` (dynamic class count) and ``text_encoder.onnx``; every window is
the graphs' input size S after the official keep-ratio rescale. Post-processing is the one
:class:`zsseg_rt.pipeline.Postprocessor` (exact or fast; sigmoid, softmax or the painted class maps of a head that
draws a background label). On a GPU a frame's data can stay on the device (``runtime/device/device_pipeline.py``).

Whole-image inference (bundles with a ``whole_image`` section, whose image graph takes any size): one encoder and
head call on the whole rescaled image, padded or cut to the patch grid (``whole_image.fit``), its grid logits resized
back in the method's order (``whole_image.logits_to``, :meth:`Postprocessor.whole`). ``inference`` chooses: "auto"
(the bundle's: its method's official test mode for a named vocabulary, else its default), "whole" or "windows". An
image whose graph input would exceed the sides the bundle declares (``max_side``, ``max_short_side``) is refused
with ``InputLimitError``, or runs in windows when ``whole_fallback="windows"`` was asked for (``Result.inference``
says which ran). Whole images run on the host path (the device pipeline runs windows).
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import logging
import threading
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from zsseg_rt import pipeline
from zsseg_rt.bundle import BundleMeta
from zsseg_rt.options import ENGINE_OPTIONS, OptionValues
from zsseg_rt.pipeline.class_scores import whole_class_scores, window_class_scores
from zsseg_rt.pipeline.limits import InputLimitError, estimate_bytes
from zsseg_rt.pipeline.postprocessor import MODES, Postprocessor
from zsseg_rt.pipeline.preprocess import Window, rescaled_size, whole_input_size

from ..backends import WindowedGraphs
from ..result import Result
from .base import Focus, Pipeline, PreparedVocabulary, image_index

__all__ = ["WindowedPipeline", "INFERENCE", "WHOLE_FALLBACKS", "WholePlan"]

INFERENCE = tuple(ENGINE_OPTIONS["inference"].values() or ())  # Engine(inference=...): its row's values
WHOLE_FALLBACKS = tuple(ENGINE_OPTIONS["whole_fallback"].values() or ())  # Engine(whole_fallback=...): its row's values


class WholePlan(NamedTuple):
    """One image's whole-image pass: its original and rescaled sizes and the graph input size (patch multiples)."""

    original: Tuple[int, int]
    scaled: Tuple[int, int]
    input_size: Tuple[int, int]


class WindowedPipeline(Pipeline):
    """Sliding windows through the image encoder and head graphs; see the module docstring and ``Engine``.

    ``mode``: "exact" (the official order) or "fast" (single-window images straight to the output size).
    ``max_batch``: windows run through the image encoder together.
    """

    kind = "windowed"
    class_scores = True  # segment / segment_many(score_stride=...) give Result.class_scores
    description = "image encoder + head per sliding window, the shared post-processing"
    roles = WindowedGraphs.roles
    modes = MODES
    default_max_batch = 4

    def __init__(self, meta: BundleMeta, options: OptionValues, **engine: Any):
        if options.mode not in self.modes:
            raise ValueError(f"mode must be one of {self.modes}, got {options.mode!r}")
        super().__init__(meta, options, **engine)
        self.postprocessor = Postprocessor.from_meta(meta, mode=options.mode)  # windows, exact/fast, activation
        # The keep-ratio test rescale [long_max, short]: the bundle's, or the Engine's test_scale (the device pipeline
        # takes it too); a family's evaluation settings may set another on the host path for an evaluation
        # (``Family.apply_evaluation_settings``).
        given = options.test_scale
        self.test_scale = (
            list(meta.test_scale) if given is None else pipeline.preprocess.check_test_scale(given, meta.crop_size)
        )
        self._device_scale = list(self.test_scale)
        self.open_backend(WindowedGraphs)
        self._device_lock = threading.Lock()
        self._batch_windows = options.max_batch  # a batched graph's windows per encoder call, when given
        self._build_device()
        self.inference = options.inference
        fallback = options.whole_fallback
        ENGINE_OPTIONS["whole_fallback"].check_value(fallback)  # (checked by the Engine already; its row's words)
        self.whole_fallback: Optional[str] = fallback
        self._bundle = (meta, self.postprocessor, list(self.test_scale))  # the bundle's window (use_window(None))
        self.bundle_meta = meta  # the bundle's own meta.json, whatever window runs (self.meta: the window's)
        self.window_size = int(meta.image_size)  # the encoder's input side now (use_window)
        self.window_choice: Any = None  # --live's choice on its first frame (stream/video_filter/live_window.py)
        self.loop_check: Any = None  # then the loop's own rate, judged over its first frames (live_window.LoopCheck)
        if options.window_size is not None:
            if given not in (None, "window"):
                raise ValueError(
                    f"window_size={options.window_size} fits each image in one window of that size: it takes "
                    f"test_scale=None or 'window', got test_scale={given!r}"
                )
            self.use_window(options.window_size)

    def use_window(self, size: Optional[int]) -> None:
        """From the next call on, each image fitted in one window of ``size`` x ``size`` and the encoder and head
        run at that size (``Engine(window_size=)``, ``zsseg camera --live``'s choice; ``window.py``); None: the
        bundle's own window and resize again. A window below the graph's own runs the exact fp32 graphs on ONNX
        Runtime on the CPU (host path); elsewhere it is refused in one line."""
        from .window import any_size, check_window_size, window_meta, window_runner

        meta, post, scale = self._bundle
        size = int(meta.image_size) if size is None else check_window_size(meta, size)
        runner = getattr(self.backend, "runner", self.backend)
        base = getattr(runner, "base", runner)  # a runner at another window: the bundle's beneath it
        if size != meta.image_size and not any_size(meta):
            path = f"{getattr(base, 'name', type(base).__name__)} {getattr(base, 'precision', None) or 'fp32'}"
            if self.device is not None or path != "onnxruntime fp32" or getattr(base, "runs_on_gpu", False):
                raise ValueError(
                    f"window_size={size}: a window below the graph's {meta.image_size} runs the exact graphs on ONNX "
                    f"Runtime on the CPU, and this Engine runs {path}"
                    + (" on its device pipeline" if self.device is not None else "")
                    + ": Engine(..., backend='onnxruntime', device='cpu', precision='fp32')"
                )
            base = window_runner(meta, base, size, int(self.options.threads or 0))
        with self._device_lock:
            if size == meta.image_size:
                self.meta, self.postprocessor = meta, post
                self.test_scale = list(scale) if self.options.window_size is None else [size, size]
            else:
                self.meta = window_meta(meta, size)
                self.postprocessor = Postprocessor.from_meta(self.meta, mode=self.options.mode)
                self.test_scale = [size, size]
            self.backend = WindowedGraphs(base, self.meta) if base is not self.backend else base
            self.window_size = size

    def _build_device(self) -> None:
        """The device pipeline over the current backend (None: the host path), its vocabulary not uploaded yet."""
        from ..device.device_pipeline import make_device_pipeline

        # the device pipeline reads its options by name (device_pipeline, postprocess_kernel, encoder_variant)
        self.device = make_device_pipeline(self.meta, self.backend, self.options, max_windows=self.max_batch,
                                           test_scale=self._device_scale)  # fmt: skip
        if self.device is not None:
            self.device.batch_windows = self._batch_windows
        self._say_where_the_kernel_applies()
        self._device_vocab: Any = None  # the vocabulary snapshot uploaded to the device pipeline (once per set_classes)

    def _say_where_the_kernel_applies(self) -> None:
        """A pinned ``postprocess_kernel`` (or ``encoder_variant``) where no device pipeline on a GPU runs the frames:
        one INFO line on the "zsseg_rt" logger says it changes nothing here (``where_it_applies`` of
        ``postprocess_choice`` and ``encoder_choice``), in the flags' words inside the command line's
        (``zsseg_rt.errors.flag_words``); ``option_notes`` keeps them (``zsseg segment`` prints them)."""
        from zsseg_rt.errors import flag_words

        from ..device.encoder_choice import where_it_applies as where_the_encoder_applies
        from ..device.postprocess_choice import where_it_applies

        flag = flag_words()
        notes = (where_it_applies(self.options.postprocess_kernel, self.device, self.mode, flag=flag),
                 where_the_encoder_applies(self.options.encoder_variant, self.device, flag=flag))  # fmt: skip
        self.option_notes: List[str] = [note for note in notes if note is not None]
        for note in self.option_notes:
            logging.getLogger("zsseg_rt").info("%s", note)

    def replace_backend(self, backend: Any, plan: Any) -> None:
        """Run ``backend`` from the next frame on, the device pipeline (its executor, buffers and CUDA graphs) built
        again over it first: nothing of the old backend keeps running, and a new path that cannot be built changes
        nothing (``Pipeline.replace_backend``)."""
        from ..device.device_pipeline import make_device_pipeline

        device = make_device_pipeline(self.meta, backend, self.options, max_windows=self.max_batch,
                                      test_scale=self._device_scale)  # raises: no change  # fmt: skip
        if device is not None:
            device.batch_windows = self._batch_windows
        with self._device_lock:
            super().replace_backend(backend, plan)
            self.device, self._device_vocab = device, None
            self.meta, self.postprocessor, scale = self._bundle  # the new path runs the bundle's own window
            self.window_size, self.test_scale = int(self.meta.image_size), list(scale)
            self.window_choice = self.loop_check = None  # (a window chosen for the old path no longer runs)

    @property
    def inference(self) -> str:
        """ "auto", "whole" or "windows" (see the module docstring); settable (a family's evaluation settings)."""
        return self._inference

    @inference.setter
    def inference(self, value: str) -> None:
        ENGINE_OPTIONS["inference"].check_value(value)  # settable: checked here too, in its row's words
        if value == "whole" and self.meta.whole_image is None:
            raise ValueError(
                f"inference='whole' needs a bundle whose image graph takes any size (meta.json 'whole_image'); "
                f"{self.meta.path!r} has a fixed {self.meta.image_size}x{self.meta.image_size} image graph (a "
                "method without whole-image inference, or a bundle exported before it): use "
                "Engine(..., inference='windows'), or re-export the bundle with this zsseg_rt"
            )
        self._inference = value

    def inference_for(self, vocab: PreparedVocabulary) -> str:
        """The inference a vocabulary runs with: ``inference`` when "whole" or "windows"; "auto": windows for a
        fixed-size bundle, else the bundle's official mode for the named vocabulary (``whole_image.vocabularies``)
        or its default (``whole_image.default``)."""
        if self.inference != "auto":
            return self.inference
        whole = self.meta.whole_image
        if whole is None:
            return "windows"
        name = vocab.vocabulary.name if vocab.vocabulary is not None else None
        return str(dict(whole.get("vocabularies") or {}).get(name, whole["default"]) if name else whole["default"])

    def plan_whole(self, image: Any, vocab: PreparedVocabulary) -> Optional[WholePlan]:
        """Validate the image and check the input limits of its whole-image pass before any work. Returns None when
        its graph input exceeds the bundle's whole-image sides and ``whole_fallback="windows"`` (it runs in windows).
        Raises TypeError/ValueError for a bad image, ``InputLimitError`` past a limit or the bundle's sides."""
        whole = self.meta.whole_image
        assert whole is not None  # (inference_for)
        height, width, _ = pipeline.check_image(image)
        scaled = rescaled_size(height, width, self.test_scale, max_pixels=None)
        self.limits.check((height, width), scaled, 1, None)  # pixel limits first
        patch = self.meta.patch_size
        size = whole_input_size(scaled[0], scaled[1], patch, whole["fit"])
        if max(size) > whole["max_side"] or min(size) > whole["max_short_side"]:
            if self.whole_fallback == "windows":
                return None
            raise InputLimitError(
                f"image of {height}x{width} is rescaled to {scaled[0]}x{scaled[1]}, a {size[0]}x{size[1]} "
                f"whole-image input: more than this bundle's image graph was exported for (sides up to "
                f"{whole['max_side']}, the shorter up to {whole['max_short_side']}); run it in windows "
                "(Engine(..., inference='windows'), or whole_fallback='windows' for such images only), or re-export "
                "the bundle with a larger whole_max_size"
            )
        estimate = self.whole_estimate_bytes((height, width), scaled, max(len(vocab.bias), len(vocab.text)))
        self.limits.check((height, width), scaled, 1, estimate)
        return WholePlan((height, width), scaled, size)

    def whole_estimate_bytes(self, original: Tuple[int, int], scaled: Tuple[int, int], rows: int) -> int:
        """The working memory of one image's whole-image pass (``pipeline.estimate_bytes`` with the graph input of
        the image's own size and the encoder's memory at its token count, ``whole_image.encoder_bytes_*``)."""
        whole = self.meta.whole_image
        assert whole is not None
        patch = self.meta.patch_size
        size = whole_input_size(scaled[0], scaled[1], patch, whole["fit"])
        tokens = (size[0] // patch) * (size[1] // patch) + 1
        return estimate_bytes(
            original,
            scaled,
            1,
            rows + int(self.postprocessor.activation == "maps"),
            size,
            (size[0] // patch, size[1] // patch),
            1,
            activation=self.postprocessor.activation,
            single_fast_window=self.mode == "fast" or whole["logits_to"] == "original",
            pamr_neighbours=self.postprocessor.pamr_neighbours,
            encoder_bytes=int(whole["encoder_bytes_per_token"]) * tokens
            + int(whole["encoder_bytes_per_token_pair"]) * tokens * tokens,
        )

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

    def segment(
        self, image: Any, color_order: str, vocab: PreparedVocabulary, score_stride: Optional[int] = None
    ) -> Result:
        if color_order not in ("bgr", "rgb"):
            raise ValueError(f"color_order must be 'bgr' or 'rgb', got {color_order!r}")
        if self.inference_for(vocab) == "whole":
            whole = self.plan_whole(image, vocab)
            if whole is not None:
                return self._whole_chunk([(image, color_order)], [whole], vocab, lambda shares: None, score_stride)[0]
        return self._segment_windows(image, color_order, vocab, score_stride)

    def _segment_windows(
        self, image: Any, color_order: str, vocab: PreparedVocabulary, score_stride: Optional[int] = None
    ) -> Result:
        """One image in sliding windows (the device pipeline's when there is one and no class scores are asked
        for: it keeps the window logits on the device)."""
        names, text, bias = vocab.names, vocab.text, vocab.bias
        orig_hw, scaled_hw, windows = self.plan(image, bias, len(text))
        if self.device is not None and self.mode == "exact" and score_stride is None:
            with self._device_lock:  # the device pipeline reports its own stages (upload, ..., download) to the hook
                if self._device_vocab is not vocab:  # first frame after set_classes: upload text + bias once
                    with self.stage("vocabulary_upload"):
                        self.device.set_vocabulary(text, bias)
                    self._device_vocab = vocab
                # one stage as in segment_many: Result.timing's stages add up to its total on this path too (its
                # time was in no stage: found by the batched-call test on the first H200 run)
                with self.stage("device_pipeline", hook=False):
                    labels, scores = self.device(np.ascontiguousarray(image), color_order, stage_hook=self.stage_hook)
            return Result(labels, scores, list(names), color_order, inference="windows")
        scaled = self._rescale(image, color_order)
        logits = self.window_logits(scaled, windows, text)  # [n, C, h, w]
        return self._finish(vocab, logits, (orig_hw, scaled_hw, windows), scaled, color_order, score_stride)

    def _rescale(self, image: Any, color_order: str) -> np.ndarray:
        """The official keep-ratio rescale of one image to ``[H', W', 3]`` uint8 RGB (the "preprocess" stage)."""
        with self.stage("preprocess"):
            rgb = pipeline.to_rgb_uint8(image, color_order)
            return pipeline.rescale_keep_ratio(rgb, self.test_scale, max_pixels=None)

    def _finish(
        self,
        vocab: PreparedVocabulary,
        logits: np.ndarray,
        plan: Tuple[Any, Any, List[Window]],
        scaled,
        order: str,
        score_stride: Optional[int] = None,
    ) -> Result:
        """Post-process one image's window logits ``[n, C, h, w]`` into its result (the "postprocess" stage; with
        ``score_stride`` also its per-class scores at ``1/score_stride`` of its size, the "class_scores" stage)."""
        orig_hw, scaled_hw, windows = plan
        with self.stage("postprocess"):
            post = self.postprocessor_for(vocab)
            labels, scores = post(logits, windows, scaled_hw, orig_hw, vocab.bias, image=scaled)
        result = Result(labels[0], scores[0], self.label_names(vocab.names), order, inference="windows")
        if score_stride is not None:
            with self.stage("class_scores"):
                result.class_scores = window_class_scores(
                    post, logits, windows, scaled_hw, orig_hw, score_stride, vocab.bias
                )
        return result

    def _whole_chunk(
        self,
        images: Sequence[Tuple[Any, str]],
        plans: Sequence[WholePlan],
        vocab: PreparedVocabulary,
        focus: Focus,
        score_stride: Optional[int] = None,
    ) -> List[Result]:
        """Whole-image passes of images whose graph inputs have one size: one encoder and one head call on all of
        them, then each one's post-processing (``focus`` times the stages per image, as ``segment_many``)."""
        whole = self.meta.whole_image
        assert whole is not None
        scaled = []
        for index, (image, order) in enumerate(images):
            focus({index: 1.0})
            scaled.append(self._rescale(image, order))
        focus({index: 1.0 / len(images) for index in range(len(images))})
        with self.stage("preprocess"):
            batch = np.stack(
                [
                    pipeline.fit_to_patches(
                        pipeline.normalize_image(rgb, self.meta.mean, self.meta.std), self.meta.patch_size, whole["fit"]
                    )
                    for rgb in scaled
                ]
            )  # [b, 3, H_in, W_in]
        with self.stage("image_encoder"):
            features = self.backend.encode_image(batch)
        with self.stage("head"):
            logits = self.backend.head(vocab.text, features)  # [b, C, h, w]
        results = []
        for index, ((_, order), plan) in enumerate(zip(images, plans)):
            focus({index: 1.0})
            with self.stage("postprocess"):
                post = self.postprocessor_for(vocab)
                labels, scores = post.whole(
                    logits[index : index + 1], plan.scaled, plan.original, whole["logits_to"], vocab.bias, scaled[index]
                )
            names = self.label_names(vocab.names)
            results.append(Result(labels[0], scores[0], names, order, inference="whole"))
            if score_stride is not None:
                with self.stage("class_scores"):
                    results[-1].class_scores = whole_class_scores(
                        post,
                        logits[index : index + 1],
                        plan.scaled,
                        plan.original,
                        whole["logits_to"],
                        score_stride,
                        vocab.bias,
                    )
        return results

    def _plan_each(self, images: Sequence[Tuple[Any, str]], vocab: PreparedVocabulary, whole: bool) -> List[Any]:
        """``segment_many``'s first step: every image checked and planned before any work (an error names the
        image): its window plan (:meth:`plan`), or in whole-image inference its :class:`WholePlan` (None: it falls
        back to windows, whose window plan is checked now too)."""
        plans: List[Any] = []
        for index, (image, order) in enumerate(images):
            with image_index(index):
                if order not in ("bgr", "rgb"):
                    raise ValueError(f"color_order must be 'bgr' or 'rgb', got {order!r}")
                if not whole:
                    plans.append(self.plan(image, vocab.bias, len(vocab.text)))
                    continue
                plans.append(self.plan_whole(image, vocab))
                if plans[-1] is None:
                    self.plan(image, vocab.bias, len(vocab.text))
        return plans

    def _segment_many_whole(
        self,
        images: Sequence[Tuple[Any, str]],
        plans: List[Optional[WholePlan]],
        vocab: PreparedVocabulary,
        focus: Focus,
        score_stride: Optional[int] = None,
    ) -> List[Result]:
        """``segment_many`` in whole-image inference, every image planned (``plans``, :meth:`_plan_each`): runs of
        consecutive images whose graph inputs have the same size go through the graphs together (at most
        ``max_batch`` per call); images of different sizes take one call each. An image that falls back to windows
        (``whole_fallback``) runs alone, as ``segment`` runs it."""
        runs: List[List[int]] = []
        for index, plan in enumerate(plans):
            previous = runs[-1] if runs else []
            joins = previous and plan is not None and plans[previous[-1]] is not None
            if joins and plans[previous[-1]].input_size == plan.input_size and len(previous) < self.max_batch:
                previous.append(index)
            else:
                runs.append([index])
        results: List[Optional[Result]] = [None] * len(images)
        for run in runs:
            if plans[run[0]] is None:
                focus({run[0]: 1.0})
                with image_index(run[0]):
                    image, order = images[run[0]]
                    results[run[0]] = self._segment_windows(image, order, vocab, score_stride)
                continue

            def shares(part: Dict[int, float], run: List[int] = run) -> None:
                focus({run[i]: share for i, share in part.items()})

            with image_index(run[0]) if len(run) == 1 else contextlib.nullcontext():
                whole = [plan for plan in (plans[i] for i in run) if plan is not None]
                chunk = self._whole_chunk([images[i] for i in run], whole, vocab, shares, score_stride)
            for i, result in zip(run, chunk):
                results[i] = result
        return [r for r in results if r is not None]

    def segment_many(
        self,
        images: Sequence[Tuple[Any, str]],
        vocab: PreparedVocabulary,
        focus: Focus,
        score_stride: Optional[int] = None,
    ) -> List[Result]:
        """Every image checked and planned first (an error names the image, before any work), then the windows of
        all images, in order, packed into encoder/head calls of at most ``max_batch`` windows: a call may hold the
        last windows of one image and the first of the next. An image is rescaled when its first window is due and
        post-processed as soon as its last window ran, so at most the images of one chunk are held rescaled, with
        their window logits, whatever the number of images. Shared stages are timed to the images of the chunk in
        proportion to their windows in it. The device pipeline packs the windows the same way on the GPU
        (``DevicePipeline.segment_many``), timed as one "device_pipeline" stage split by windows. ``score_stride``:
        also each image's per-class scores (``Result.class_scores``; the host path)."""
        whole = self.inference_for(vocab) == "whole"
        plans = self._plan_each(images, vocab, whole)
        if whole:
            return self._segment_many_whole(images, plans, vocab, focus, score_stride)
        if self.device is not None and self.mode == "exact" and score_stride is None:
            return self._segment_many_on_device(images, vocab, focus, [len(p[2]) for p in plans])
        results: List[Optional[Result]] = [None] * len(images)
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
                        results[index] = self._finish(
                            vocab, merged, plans[index], scaled.pop(index), images[index][1], score_stride
                        )
                    del logits[index]
        return [r for r in results if r is not None]

    def _segment_many_on_device(
        self, images: Sequence[Tuple[Any, str]], vocab: PreparedVocabulary, focus: Focus, windows: List[int]
    ) -> List[Result]:
        """``segment_many`` on the device pipeline: the windows of all images packed into its batches on the GPU."""
        with self._device_lock:
            if self._device_vocab is not vocab:  # first call after set_classes: upload text + bias once
                focus({0: 1.0})
                with self.stage("vocabulary_upload"):
                    self.device.set_vocabulary(vocab.text, vocab.bias)
                self._device_vocab = vocab
            focus({i: n / sum(windows) for i, n in enumerate(windows)})
            with self.stage("device_pipeline", hook=False):  # stage_hook gets the pipeline's own (event-timed) stages
                outs = self.device.segment_many(
                    [np.ascontiguousarray(image) for image, _ in images],
                    [order for _, order in images],
                    stage_hook=self.stage_hook,
                )
        return [
            Result(labels, scores, list(vocab.names), order, inference="windows")
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
