"""``zsseg_rt.Engine``: open-vocabulary segmentation from an export bundle, vocabulary chosen at run time."""

from __future__ import annotations

import collections
import contextlib
import threading
import time
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np

from zsseg_rt import pipeline
from zsseg_rt.bundle import GRAPH_FILES, BundleMeta, Files, Names, load_meta
from zsseg_rt.bundle.tokenizer import ClipTokenizer, expand_templates
from zsseg_rt.pipeline.limits import InputLimits, estimate_bytes
from zsseg_rt.pipeline.postprocessor import MODES, Postprocessor
from zsseg_rt.pipeline.preprocess import Window, rescaled_size
from zsseg_rt.pipeline.vocabulary import validate_class_bias, validate_class_names, validate_templates

from .backends import Backend, OnnxRuntimeBackend, TensorRTBackend, TorchBackend
from .file_verification import verify_bundle_files
from .result import SegmentationResult

_MODES = MODES
TOKEN_BUCKET = 8  # text sequence lengths are rounded up to a multiple of this (few distinct shapes for TensorRT)


class Engine:
    """Segment images with a ZegCLIP-family bundle; change the vocabulary without re-exporting anything.

    Args:
        bundle: a bundle directory written by ``zsseg export``.
        classes: initial class names (list, or a comma-separated string), or None to set later.
        backend: "auto" (TensorRT when its engines exist and import, else ONNX Runtime), "tensorrt",
            "onnxruntime" or "torch" (or a ready ``Backend`` object, e.g. the accuracy gate's).
        device: "auto", "cpu" or "cuda" (ONNX Runtime / torch backends).
        mode: "exact" (the official order: calibrate at crop resolution, average windows, resize, argmax; in
            fp32, so labels can differ from another fp32 implementation only where two classes tie within
            ~1e-7) or
            "fast" (single-window images: fused upsample+sigmoid+bias+argmax straight to the output size, no
            [C,H,W] buffer; multi-window images are processed as in "exact").
        max_batch: windows run through the image encoder together.
        verify: check the sha256 of the bundle files the chosen backend opens (the tokenizer, and the ONNX graphs
            for ONNX Runtime; TensorRT engines are checked against their engine.json), remembering verified files
            by (size, mtime, ctime, inode, sha256) so a restart does not hash them again
            (``runtime/file_verification.py``).
        model: (torch backend) the PyTorch model to run instead of loading the source checkpoint.
        precision: (TensorRT backend) which built engines to use: "fp16", "fp16-pinned", "fp32" or "int8".
        threads: (ONNX Runtime backend) intra-op threads; 0 lets ONNX Runtime choose.
        device_pipeline: "auto" keeps a frame's data on the GPU where it can (TensorRT, torch on CUDA): one upload
            of the frame, pre-processing, encoder, head and the exact post-processing on one stream, one download
            of labels and scores (``runtime/device_pipeline.py``); True requires it, False uses the host path.
        max_pixels, max_rescaled_pixels, max_windows, max_memory_mb: input limits (``pipeline.InputLimits``,
            README "Input limits and memory"): an image over one of them is refused with ``InputLimitError`` (a
            ValueError) naming the limit, before any work. Defaults: 2^26 input pixels, 2^25 rescaled pixels,
            4096 windows, 2048 MiB estimated working memory per image.

    Fixed-size graphs: a bundle's image encoder has one input size S. Images are rescaled so the short side is S
    (official test pipeline), so every window is S x S, except for images more than 4:1 elongated, whose short
    side the (4S, S) rescale bound keeps below S: those windows are zero-padded to S x S and the padding is cut
    from the scores. The official code (and ``zsseg_rt.models.common.predict``) runs such a window at its own size
    instead, so labels can differ slightly there.

    Thread safety: one Engine may be shared by threads. ``__call__`` reads an immutable vocabulary snapshot;
    ``set_classes`` swaps it under a lock; ONNX Runtime sessions are thread-safe and the TensorRT backend
    serialises its execution contexts with a lock.
    """

    def __new__(cls, bundle=None, *args, **kwargs):
        """Family dispatch: a ZegFormer bundle (two-stage pipeline) gets ``runtime.zegformer.ZegFormerEngine``, a
        subclass with the same API; every other bundle this class. An unreadable bundle falls through to
        ``__init__``, which reports it."""
        if cls is Engine and _bundle_family(bundle) == "zegformer":
            from .zegformer import ZegFormerEngine

            return super().__new__(ZegFormerEngine)
        return super().__new__(cls)

    def __init__(
        self,
        bundle: str,
        classes: Optional[Union[str, Sequence[str]]] = None,
        backend: str = "auto",
        device: str = "auto",
        mode: str = "exact",
        max_batch: int = 4,
        verify: bool = True,
        model=None,
        precision: str = "fp16",
        threads: int = 0,
        device_pipeline="auto",
        max_pixels: int = InputLimits.max_pixels,
        max_rescaled_pixels: int = InputLimits.max_rescaled_pixels,
        max_windows: int = InputLimits.max_windows,
        max_memory_mb: int = InputLimits.max_memory_mb,
    ):
        self.limits = InputLimits(max_pixels, max_rescaled_pixels, max_windows, max_memory_mb)
        if mode not in _MODES:
            raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self.meta: BundleMeta = load_meta(bundle)
        if verify:
            verify_bundle_files(self.meta, [Files.TOKENIZER])
        self.mode = mode
        self.postprocessor = Postprocessor.from_meta(self.meta, mode=mode)  # windows, exact/fast, activation
        # The keep-ratio test rescale [long_max, short] (host path): the bundle's; an evaluation protocol may set
        # another (zsseg_rt.eval.training_free_protocol). The device pipeline always uses the bundle's.
        self.test_scale = list(self.meta.test_scale)
        self.max_batch = int(max_batch)
        self.backend: Backend = _make_backend(self.meta, backend, device, model, precision, threads, verify)
        from .device_pipeline import make_device_pipeline

        self._device = make_device_pipeline(self.meta, self.backend, device_pipeline, self.max_batch)
        self._device_lock = threading.Lock()
        self._device_vocab = None  # the vocabulary snapshot uploaded to the device pipeline (once per set_classes)
        self.tokenizer = ClipTokenizer(self.meta.file(Files.TOKENIZER), self.meta.context_length)
        self._lock = threading.Lock()
        # Per-class text-embedding cache: (name, templates) -> [D]. Editing a vocabulary encodes only new names.
        self._cache: "collections.OrderedDict[tuple, np.ndarray]" = collections.OrderedDict()
        self.text_cache_size = 4096
        text_axes = self.meta.io.get("text", {}).get("dynamic_axes", {}).get(Names.TOKENS, {})
        self._trim_tokens = 1 in text_axes  # bundles exported before the dynamic sequence axis run all 77
        self._vocab: Optional[Tuple[Tuple[str, ...], np.ndarray, np.ndarray]] = None
        # Optional per-stage timing hook: a callable ``(stage: str, seconds: float) -> None`` called after each
        # stage ("text_encoder", "preprocess", "image_encoder", "head", "postprocess"). Used by tools/profile.py.
        # Wall-clock on the host; GPU backends synchronise before returning NumPy arrays, so stage times are
        # complete. Set it to a function, or None (default, no overhead beyond one check per stage).
        self.stage_hook = None
        if classes is not None:
            self.set_classes(classes)

    @contextlib.contextmanager
    def _stage(self, name: str):
        hook = self.stage_hook
        if hook is None:
            yield
            return
        start = time.perf_counter()
        yield
        hook(name, time.perf_counter() - start)

    # ---- vocabulary -------------------------------------------------------------------------------------
    @property
    def class_names(self) -> List[str]:
        return list(self._vocab[0]) if self._vocab else []

    def set_classes(self, names, templates: Optional[Union[str, Sequence[str]]] = None, class_bias=None) -> None:
        """Encode a vocabulary once (cached) and make it current. No re-export, no engine rebuild.

        Everything is checked before anything is installed: a refused call leaves the current vocabulary as it was.

        Args:
            names: class names (list or comma-separated string; see ``validate_class_names``).
            templates: prompt templates, each with exactly one ``{}`` (a plain string is one template; see
                ``validate_templates``); default: the bundle's (the model's training templates).
            class_bias: ``[C]`` finite numbers subtracted after the sigmoid; default: the bundle's calibration
                for names that were seen classes in training, 0 for the others.
        Raises:
            TypeError / ValueError: a bad name, template or bias, or two names whose prompts are identical
                token for token (the later class could never win).
        """
        names = validate_class_names(names, self.meta.max_classes)
        templates = validate_templates(templates) if templates is not None else tuple(self.meta.templates)
        bias = self._class_bias(names, class_bias)
        self._check_distinct_prompts(names, templates)
        embeddings = self._embed(tuple(names), templates)
        with self._lock:
            self._vocab = (tuple(names), embeddings, bias)

    def _check_distinct_prompts(self, names: Sequence[str], templates: Tuple[str, ...]) -> None:
        """Refuse two names whose prompts tokenise identically (e.g. ``"t-shirt"`` and ``"t - shirt"``, or long
        names that differ only past the context length): their embeddings would be equal."""
        seen: dict = {}
        limit = self.tokenizer.context_length - 2  # minus the start and end tokens
        for i, name in enumerate(names):
            ids = tuple(self.tokenizer.encode(name))
            if len(ids) >= limit // 2:  # a prompt may be truncated: compare the prompts as the encoder gets them
                key: tuple = ("prompts", self.tokenizer(expand_templates([name], templates)).tobytes())
            else:
                key = ("name", ids)
            if key in seen:
                raise ValueError(
                    f"class names {names[seen[key]]!r} (position {seen[key]}) and {name!r} (position {i}) give "
                    "identical prompts once tokenised (CLIP ignores case, spacing around punctuation and text past "
                    f"{self.tokenizer.context_length} tokens), so {name!r} could never win: rename or drop one"
                )
            seen[key] = i

    def _class_bias(self, names: Sequence[str], class_bias) -> np.ndarray:
        """``[C]`` float32: the given bias (validated), or the bundle's calibration for these names."""
        if class_bias is None:
            return np.asarray(self.meta.class_bias(names), dtype=np.float32)
        return validate_class_bias(class_bias, len(names))

    def set_text_embeddings(self, names, embeddings: np.ndarray, class_bias=None) -> None:
        """Use precomputed class embeddings ``[C, D]`` (e.g. the official ZegCLIP ``.npy``; fp16 is cast)."""
        names = validate_class_names(names, self.meta.max_classes)
        emb = np.asarray(embeddings)
        if emb.ndim != 2 or emb.shape != (len(names), self.meta.embed_dim):
            raise ValueError(
                f"embeddings must have shape [{len(names)}, {self.meta.embed_dim}] (classes x embed_dim), "
                f"got {list(emb.shape)}"
            )
        if emb.dtype.kind not in "iuf":
            raise TypeError(f"embeddings must be numeric, got dtype {emb.dtype}")
        if not np.isfinite(emb).all():
            raise ValueError("embeddings contain NaN or inf")
        bias = self._class_bias(names, class_bias)
        embeddings = np.ascontiguousarray(emb, dtype=np.float32)
        with self._lock:
            self._vocab = (tuple(names), embeddings, bias)

    def _embed(self, names: Tuple[str, ...], templates: Tuple[str, ...]) -> np.ndarray:
        """``[C, D]`` class embeddings; only names not already cached for these templates are encoded."""
        with self._lock:
            missing = [name for name in dict.fromkeys(names) if (name, templates) not in self._cache]
        if missing:
            with self._stage("text_encoder"):
                fresh = self._encode_classes(missing, templates)
            with self._lock:
                for name, row in zip(missing, fresh):
                    self._cache[(name, templates)] = row
        with self._lock:
            rows = []
            for name in names:
                row = self._cache.get((name, templates))
                if row is None:  # evicted by a concurrent set_classes between the two locked sections
                    row = self._encode_classes([name], templates)[0]
                else:
                    self._cache.move_to_end((name, templates))
                rows.append(row)
            while len(self._cache) > self.text_cache_size:
                self._cache.popitem(last=False)
        return np.ascontiguousarray(np.stack(rows), dtype=np.float32)

    def _encode_classes(self, names: Sequence[str], templates: Tuple[str, ...]) -> np.ndarray:
        """Text encoder over every (class, template) prompt -> ``[len(names), D]`` (normalise, average, normalise).

        Each prompt runs with its padding trimmed to a length bucket of its own (when the bundle's text graph
        has a dynamic sequence axis), so a class's embedding does not depend on the other classes' prompts.
        """
        tokens = self.tokenizer(expand_templates(names, templates))  # [C*T, L]
        per_prompt: np.ndarray = np.empty((len(tokens), self.meta.embed_dim), dtype=np.float32)
        for rows, trimmed in self._token_batches(tokens):
            per_prompt[rows] = self.backend.encode_text(trimmed)
        per_prompt = per_prompt.reshape(len(names), len(templates), -1)
        per_prompt /= np.maximum(np.linalg.norm(per_prompt, axis=-1, keepdims=True), 1e-12)
        mean = per_prompt.mean(axis=1)
        mean /= np.maximum(np.linalg.norm(mean, axis=-1, keepdims=True), 1e-12)
        return np.ascontiguousarray(mean, dtype=np.float32)

    def _token_batches(self, tokens: np.ndarray, max_prompts: int = 256):
        """Yield ``(row indices, tokens[rows, :L])`` chunks of at most ``max_prompts`` prompts.

        With a dynamic sequence axis, prompts are grouped by ``L`` = their own length (start token .. end token)
        rounded up to a multiple of ``TOKEN_BUCKET``; otherwise every chunk keeps the full context length.
        """
        lengths = np.count_nonzero(tokens, axis=1)  # ids after the end token are 0 (padding)
        if self._trim_tokens:
            buckets = np.minimum(-(-lengths // TOKEN_BUCKET) * TOKEN_BUCKET, tokens.shape[1])
        else:
            buckets = np.full(len(tokens), tokens.shape[1])
        for length in np.unique(buckets):
            rows = np.flatnonzero(buckets == length)
            for start in range(0, len(rows), max_prompts):
                part = rows[start : start + max_prompts]
                yield part, np.ascontiguousarray(tokens[part, : int(length)])

    # ---- inference --------------------------------------------------------------------------------------
    def __call__(self, image, color_order: str = "bgr"):
        """Segment one ``[H, W, 3]`` uint8 image (BGR by default, as OpenCV reads it) or a list of them.

        Returns:
            a ``SegmentationResult`` (or a list of them, for a list input).
        """
        vocab = self._vocab
        if vocab is None:
            raise RuntimeError("no vocabulary: call engine.set_classes(['cat', 'floor', ...]) first")
        if isinstance(image, (list, tuple)):
            return [self._segment_one(img, color_order, vocab) for img in image]
        return self._segment_one(image, color_order, vocab)

    def _plan(self, image, bias: np.ndarray) -> Tuple[Tuple[int, int], Tuple[int, int], List[Window]]:
        """Validate the image and check the input limits before any work: ``(original size, rescaled size,
        windows)``. Raises TypeError/ValueError for a bad image, ``InputLimitError`` past a limit."""
        height, width, _ = pipeline.check_image(image)
        scaled = rescaled_size(height, width, self.test_scale, max_pixels=None)
        crop, stride = self.meta.crop_size, self.meta.stride
        count = (max(scaled[0] - crop + stride - 1, 0) // stride + 1) * (
            max(scaled[1] - crop + stride - 1, 0) // stride + 1
        )
        self.limits.check((height, width), scaled, count, None)  # pixel and window limits before listing windows
        windows = pipeline.sliding_windows(scaled[0], scaled[1], crop, stride)
        maps = self.postprocessor.activation == "maps"  # ZeroSeg: 1 + C class maps at the graph size per window
        estimate = estimate_bytes(
            (height, width),
            scaled,
            len(windows),
            len(bias) + int(maps),
            self.meta.image_size,
            (self.meta.image_size,) * 2 if maps else self.meta.grid,
            self.max_batch,
            activation=self.postprocessor.activation,
            single_fast_window=self.postprocessor.is_fast(windows),
            pamr_neighbours=8 * len(self.postprocessor.pamr_dilations) if self.postprocessor.pamr_iterations else 0,
        )
        self.limits.check((height, width), scaled, len(windows), estimate)
        return (height, width), scaled, windows

    def _segment_one(self, image, color_order, vocab) -> SegmentationResult:
        names, text, bias = vocab
        if color_order not in ("bgr", "rgb"):
            raise ValueError(f"color_order must be 'bgr' or 'rgb', got {color_order!r}")
        orig_hw, scaled_hw, windows = self._plan(image, bias)
        if self._device is not None and self.mode == "exact":
            with self._device_lock, self._stage("device_pipeline"):
                if self._device_vocab is not vocab:  # first frame after set_classes: upload text + bias once
                    self._device.set_vocabulary(text, bias)
                    self._device_vocab = vocab
                labels, scores = self._device(np.ascontiguousarray(image), color_order)
            return SegmentationResult(labels, scores, list(names), color_order)
        with self._stage("preprocess"):
            rgb = pipeline.to_rgb_uint8(image, color_order)
            scaled = pipeline.rescale_keep_ratio(rgb, self.test_scale, max_pixels=None)  # official keep-ratio
            del rgb  # the original-size copy is not needed any more
        logits = self._window_logits(scaled, windows, text)  # [n, C, h, w]
        with self._stage("postprocess"):
            labels, scores = self.postprocessor(logits, windows, scaled_hw, orig_hw, bias, image=scaled)
        return SegmentationResult(labels[0], scores[0], self._label_names(names), color_order)

    def _label_names(self, names: Sequence[str]) -> List[str]:
        """The names the labels index: the bundle's background label first where its head paints one (ZeroSeg's
        ``postprocess.background_label``: label 0 = background, 1..C = the vocabulary), else the vocabulary."""
        background = self.meta.postprocess.get("background_label")
        return ([str(background)] if background else []) + list(names)

    def _window_logits(self, scaled: np.ndarray, windows: List[Window], text: np.ndarray) -> np.ndarray:
        """Mask logits ``[n, C, h, w]`` of every window of the rescaled ``[H', W', 3]`` uint8 RGB image. Windows
        are cut, normalised and zero-padded to the graph size one batch at a time (``max_batch x 3 x S x S``
        float32 in memory, never the whole normalised image)."""
        size = self.meta.image_size
        outputs = []
        for start in range(0, len(windows), self.max_batch):
            with self._stage("preprocess"):
                batch = np.stack(
                    [
                        pipeline.pad_to_multiple(
                            pipeline.normalize_image(scaled[w.y1 : w.y2, w.x1 : w.x2], self.meta.mean, self.meta.std),
                            self.meta.patch_size,
                            (size, size),
                        )
                        for w in windows[start : start + self.max_batch]
                    ]
                )  # [b, 3, S, S]
            with self._stage("image_encoder"):
                features = self.backend.encode_image(batch)
            with self._stage("head"):
                outputs.append(self.backend.head(text, features))
        return outputs[0] if len(outputs) == 1 else np.concatenate(outputs, axis=0)


def _bundle_family(bundle) -> str:
    """``architecture.family`` of a bundle directory's meta.json, or "" when it cannot be read here."""
    import os

    from zsseg_rt.bundle import BundleError

    if not isinstance(bundle, (str, os.PathLike)):
        return ""
    try:
        return load_meta(os.fspath(bundle)).family
    except BundleError:
        return ""


def _onnxruntime_backend(meta: BundleMeta, device: str, threads: int, verify: bool) -> Backend:
    if verify:  # the graphs ONNX Runtime is about to open
        verify_bundle_files(meta, sorted(GRAPH_FILES.values()))
    return OnnxRuntimeBackend(meta, device, threads)


def _make_backend(
    meta: BundleMeta, backend, device: str, model, precision: str, threads: int, verify: bool = True
) -> Backend:
    if isinstance(backend, Backend):
        return backend
    if backend == "onnxruntime":
        return _onnxruntime_backend(meta, device, threads, verify)
    if backend == "tensorrt":
        return TensorRTBackend(meta, precision)
    if backend == "torch":
        return TorchBackend(meta, device, model)
    if backend == "auto":
        try:
            return TensorRTBackend(meta, precision)
        except Exception as exc:  # noqa: BLE001 - any TensorRT problem -> ONNX Runtime, said out loud
            import warnings

            if isinstance(exc, ImportError):
                reason = "TensorRT is not installed"
            else:  # engines missing or built for another device/TensorRT/bundle: the reason matters here
                reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            warnings.warn(
                f"backend='auto': TensorRT cannot be used ({reason}); running the bundle with ONNX Runtime instead "
                "(slower, fp32). Build engines with `zsseg build-engine`, or pass backend='onnxruntime' to "
                "silence this.",
                RuntimeWarning,
                stacklevel=3,
            )
            return _onnxruntime_backend(meta, device, threads, verify)
    raise ValueError(f"backend must be 'auto', 'tensorrt', 'onnxruntime' or 'torch', got {backend!r}")
