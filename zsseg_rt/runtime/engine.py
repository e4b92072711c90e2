"""``zsseg_rt.Engine``: open-vocabulary segmentation from an export bundle, vocabulary chosen at run time.

One class for every bundle: it holds the vocabulary (tokenizer, per-name text-embedding cache, current classes) and
the runtime pipeline that meta.json names (``runtime/pipelines/``); it knows no model family."""

from __future__ import annotations

import contextlib
import threading
import time
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np

from zsseg_rt.bundle import BundleMeta, Files, Names, check_bundle_digest, load_meta
from zsseg_rt.pipeline.limits import InputLimits
from zsseg_rt.pipeline.postprocessor import MODES
from zsseg_rt.vocabulary import (
    TOKEN_BUCKET,
    ClipTokenizer,
    TextEmbeddingCache,
    check_distinct_prompts,
    token_batches,
    validate_class_names,
    validate_templates,
)

from .file_verification import verify_bundle_files
from .pipelines import Pipeline, PreparedVocabulary, pipeline_class

_MODES = MODES
__all__ = ["Engine", "TOKEN_BUCKET", "validate_class_names"]


class Engine:
    """Segment images with a ZegCLIP-family bundle; change the vocabulary without re-exporting anything.

    Args:
        bundle: a bundle directory written by ``zsseg export``.
        classes: initial class names (list, or a comma-separated string), or None to set later.
        backend: "auto" (TensorRT when its engines exist and import, else ONNX Runtime), "tensorrt",
            "onnxruntime" or "torch" (or a ready ``Backend`` object, e.g. the accuracy gate's).
        device: "auto", "cpu" or "cuda" (ONNX Runtime / torch backends).
        mode: (windowed pipeline) "exact" (the official order: calibrate at crop resolution, average windows, resize, argmax; in
            fp32, so labels can differ from another fp32 implementation only where two classes tie within
            ~1e-7) or
            "fast" (single-window images: fused upsample+sigmoid+bias+argmax straight to the output size, no
            [C,H,W] buffer; multi-window images are processed as in "exact").
        max_batch: windows run through the image encoder together (two-stage pipeline: crops per CLIP encoder call);
            default the pipeline's (4 windows; 32 crops).
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
            ValueError) naming the limit, before any work. Defaults: the package's one pixel limit (None:
            ``$ZSSEG_MAX_PIXELS`` or 40 MP, the limit of the CLI, ``zsseg batch`` and ``zsseg serve``; 0: none),
            2^25 rescaled pixels, 4096 windows, 2048 MiB estimated working memory per image. Sides longer than
            ``pipeline.limits.MAX_SIDE`` (262144) are always refused.
        expected_digest: pin the bundle: ``"sha256:<64 hex>"`` (or the bare hex) of its meta.json
            (``zsseg_rt.bundle.bundle_digest``; ``zsseg export`` prints it). meta.json records the sha256 of every
            other file, which the Engine checks, so the pin covers the whole bundle. A bundle whose digest differs is
            refused with ``BundleError``. The hashes in a bundle give integrity (nothing changed by accident), not
            authenticity (whoever can write the bundle can recompute them): pin the digest you exported where the
            bundle comes from somewhere you do not control.

    Fixed-size graphs (windowed pipeline): a bundle's image encoder has one input size S. Images are rescaled so the short side is S
    (official test pipeline), so every window is S x S, except for images more than 4:1 elongated, whose short
    side the (4S, S) rescale bound keeps below S: those windows are zero-padded to S x S and the padding is cut
    from the scores. The official code (and ``zsseg_rt.models.common.predict``) runs such a window at its own size
    instead, so labels can differ slightly there.

    Thread safety: one Engine may be shared by threads. ``__call__`` reads an immutable vocabulary snapshot;
    ``set_classes`` swaps it under a lock; ONNX Runtime sessions are thread-safe and the TensorRT backend
    serialises its execution contexts with a lock.
    """

    def __init__(
        self,
        bundle: str,
        classes: Optional[Union[str, Sequence[str]]] = None,
        backend: str = "auto",
        device: str = "auto",
        mode: str = "exact",
        max_batch: Optional[int] = None,
        verify: bool = True,
        model=None,
        precision: str = "fp16",
        threads: int = 0,
        device_pipeline="auto",
        max_pixels: Optional[int] = None,
        max_rescaled_pixels: int = InputLimits.max_rescaled_pixels,
        max_windows: int = InputLimits.max_windows,
        max_memory_mb: int = InputLimits.max_memory_mb,
        expected_digest: Optional[str] = None,
    ):
        self.limits = InputLimits.resolve(
            max_pixels, max_rescaled_pixels=max_rescaled_pixels, max_windows=max_windows, max_memory_mb=max_memory_mb
        )
        if max_batch is not None and max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        if expected_digest is not None and not verify:
            raise ValueError(
                "expected_digest pins the bundle through the file hashes that verify=True checks; verify=False "
                "would skip them: drop one of the two"
            )
        self.meta: BundleMeta = load_meta(bundle)
        if expected_digest is not None:
            check_bundle_digest(self.meta, expected_digest)
        kind = pipeline_class(self.meta.pipeline)
        if verify:
            verify_bundle_files(self.meta, [Files.TOKENIZER])
        # Optional per-stage timing hook: a callable ``(stage: str, seconds: float) -> None`` called after each
        # stage ("text_encoder", "preprocess", "image_encoder", "head", "postprocess"). Used by tools/profile.py.
        # Wall-clock on the host; GPU backends synchronise before returning NumPy arrays, so stage times are
        # complete. Set it to a function, or None (default, no overhead beyond one check per stage).
        self.stage_hook = None
        self.pipeline: Pipeline = kind(
            self.meta,
            backend=backend,
            device=device,
            mode=mode,
            max_batch=kind.default_max_batch if max_batch is None else int(max_batch),
            verify=verify,
            model=model,
            precision=precision,
            threads=threads,
            device_pipeline=device_pipeline,
            limits=self.limits,
            stage=self._stage,
        )
        self.tokenizer = ClipTokenizer(self.meta.file(Files.TOKENIZER), self.meta.context_length)
        self._lock = threading.Lock()
        # Per-class text-embedding cache: (name, templates) -> [D]. Editing a vocabulary encodes only new names.
        self.text_cache = TextEmbeddingCache(self._encode_timed, maxsize=4096)
        text_axes = self.meta.io.get("text", {}).get("dynamic_axes", {}).get(Names.TOKENS, {})
        self._trim_tokens = 1 in text_axes  # bundles exported before the dynamic sequence axis run all 77
        self._vocab: Optional[PreparedVocabulary] = None
        if classes is not None:
            self.set_classes(classes)

    # ---- what the pipeline holds ------------------------------------------------------------------------
    @property
    def backend(self):
        """The backend running the graphs (``backend.name``: "onnxruntime", "tensorrt", "torch")."""
        return self.pipeline.backend

    @backend.setter
    def backend(self, value) -> None:  # e.g. a wrapper that records calls (tests, profiling)
        self.pipeline.backend = value

    @property
    def mode(self) -> str:
        return self.pipeline.mode

    @property
    def max_batch(self) -> int:
        return self.pipeline.max_batch

    @max_batch.setter
    def max_batch(self, value: int) -> None:  # e.g. the profiler's batch sizes
        if int(value) < 1:
            raise ValueError(f"max_batch must be >= 1, got {value}")
        self.pipeline.max_batch = int(value)

    @property
    def postprocessor(self):
        """The windowed pipeline's ``pipeline.Postprocessor`` (None for pipelines without one)."""
        return getattr(self.pipeline, "postprocessor", None)

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
        return list(self._vocab.names) if self._vocab else []

    def set_classes(self, names, templates: Optional[Union[str, Sequence[str]]] = None, class_bias=None) -> None:
        """Encode a vocabulary once (cached) and make it current. No re-export, no engine rebuild.

        Everything is checked before anything is installed: a refused call leaves the current vocabulary as it was.

        Args:
            names: class names (list or comma-separated string; see ``zsseg_rt.vocabulary.validate_class_names``).
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
        vocab = self.pipeline.prepare(tuple(names), templates, bias, self._embed)
        with self._lock:
            self._vocab = vocab

    def _check_distinct_prompts(self, names: Sequence[str], templates: Tuple[str, ...]) -> None:
        """Refuse two names whose prompts tokenise identically (``zsseg_rt.vocabulary.check_distinct_prompts``)."""
        check_distinct_prompts(names, templates, self.tokenizer)

    @property
    def text_cache_size(self) -> int:
        """How many (name, templates) embeddings the text cache keeps."""
        return self.text_cache.maxsize

    @text_cache_size.setter
    def text_cache_size(self, value: int) -> None:
        self.text_cache.maxsize = int(value)

    def _class_bias(self, names: Sequence[str], class_bias) -> np.ndarray:
        """``[C]`` float32: the given bias (validated), or the bundle's calibration for these names."""
        return self.pipeline.class_bias(names, class_bias)

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
        vocab = self.pipeline.prepare_embeddings(tuple(names), np.ascontiguousarray(emb, dtype=np.float32), bias)
        with self._lock:
            self._vocab = vocab

    def _embed(self, names: Tuple[str, ...], templates: Tuple[str, ...]) -> np.ndarray:
        """``[C, D]`` class embeddings; only names not already cached for these templates are encoded."""
        return self.text_cache.embed(names, templates)

    def _encode_classes(self, names: Sequence[str], templates: Tuple[str, ...]) -> np.ndarray:
        """The bundle's text encoder on the classes' prompts -> ``[len(names), D]`` (the pipeline's rule; windowed:
        ``zsseg_rt.vocabulary.embed_names``). Each prompt runs with its padding trimmed to a length bucket of its own
        (when the bundle's text graph has a dynamic sequence axis), so a class's embedding does not depend on the
        other classes' prompts."""
        return self.pipeline.encode_classes(names, templates, self.tokenizer, self._trim_tokens)

    def _encode_timed(self, names: Sequence[str], templates: Tuple[str, ...]) -> np.ndarray:
        """The text cache's encoder: :meth:`_encode_classes` timed as the "text_encoder" stage."""
        with self._stage("text_encoder"):
            return self._encode_classes(names, templates)

    def _token_batches(self, tokens: np.ndarray, max_prompts: int = 256):
        """``zsseg_rt.vocabulary.token_batches`` with this bundle's trimming rule."""
        return token_batches(tokens, self._trim_tokens, max_prompts, TOKEN_BUCKET)

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
            return [self.pipeline.segment(img, color_order, vocab) for img in image]
        return self.pipeline.segment(image, color_order, vocab)
