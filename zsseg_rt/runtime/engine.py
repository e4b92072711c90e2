"""``zsseg_rt.Engine``: open-vocabulary segmentation from an export bundle, vocabulary chosen at run time.

One class for every bundle: it holds the vocabulary (tokenizer, per-name text-embedding cache, current classes) and
the runtime pipeline that meta.json names (``runtime/pipelines/``); it knows no model family."""

from __future__ import annotations

import contextlib
import inspect
import logging
import os
import threading
import time
import weakref
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from zsseg_rt import ops
from zsseg_rt.bundle import BundleMeta, Files, Names, check_bundle_digest, load_meta
from zsseg_rt.options import ENGINE_OPTIONS, OptionValues, Preset, preset_named
from zsseg_rt.pipeline.limits import InputLimits
from zsseg_rt.pipeline.postprocessor import MODES
from zsseg_rt.vocabulary import (
    TOKEN_BUCKET,
    ClipTokenizer,
    TextEmbeddingCache,
    Vocabulary,
    check_distinct_prompts,
    token_batches,
    validate_class_names,
    validate_templates,
)

from . import upgrade
from .file_verification import verify_bundle_files
from .pipelines import Pipeline, PreparedVocabulary, pipeline_class
from .pipelines.base import StageHook, image_index
from .result import Result, check_unknown_name, mark_unknown

_MODES = MODES
__all__ = ["Engine", "TOKEN_BUCKET", "validate_class_names"]
LOG = logging.getLogger("zsseg_rt")
# the rows whose None stands for a field of pipeline.InputLimits (their default_from names it): the limits given
LIMIT_OPTIONS = tuple(
    row.name for row in ENGINE_OPTIONS if any(ref.startswith("zsseg_rt.pipeline.limits:") for ref in row.default_from)
)


class Engine:
    """Segment images with a bundle of any model family; change the vocabulary without re-exporting anything.

        ``engine(image)`` takes a file path (str or ``pathlib.Path``), a NumPy ``[H, W, 3]`` uint8 array (BGR, as
        OpenCV reads it; ``color_order="rgb"`` for RGB arrays), a PIL image (RGB), or a list of those, and returns a
        :class:`~zsseg_rt.runtime.result.Result` (a list for a list): ``labels``, ``scores``, ``class_names``,
        ``areas()``, ``overlay()``, ``save(dir)``, ``to_json()`` and per-stage ``timing`` in milliseconds.

        Args:
            bundle: a bundle directory written by ``zsseg export`` (str or path).
            classes: initial class names (list, or a comma-separated string), or None to set later.
            preset: a :class:`~zsseg_rt.options.Preset` (or its name): a named set of options, e.g.
                ``zsseg_rt.options.LIVE`` (``zsseg camera --live``), whose video part a ``VideoSegmenter`` of this Engine
                takes; a keyword given here wins over the preset's.
            options: the Engine's options, each declared once in ``zsseg_rt.options.ENGINE_OPTIONS`` (a misspelt
                keyword is refused with the closest name); they are:

    {OPTIONS}

        Fixed-size graphs (windowed pipeline): a bundle's image encoder has one input size S. Images are rescaled so the short side is S
        (official test pipeline), so every window is S x S, except for images more than 4:1 elongated, whose short
        side the (4S, S) rescale bound keeps below S: those windows are zero-padded to S x S and the padding is cut
        from the scores. The official code (and ``zsseg_rt.contract.common.predict``) runs such a window at its own size
        instead, so labels can differ slightly there.

        Thread safety: one Engine may be shared by threads. ``__call__`` reads an immutable vocabulary snapshot;
        ``set_classes`` swaps it under a lock; ONNX Runtime sessions are thread-safe and the TensorRT and OpenVINO
        backends serialise their execution contexts / infer requests with a lock.
    """

    def __init__(
        self,
        bundle: Union[str, "os.PathLike[str]"],
        classes: Optional[Union[str, Sequence[str]]] = None,
        *,
        preset: Union[None, str, Preset] = None,
        **options: Any,
    ):
        values = ENGINE_OPTIONS.resolve(options, "Engine()", preset)
        self.preset: Optional[Preset] = None if preset is None else preset_named(preset)
        self.allow_partial_images = bool(values.allow_partial_images)
        limits = {name: values[name] for name in LIMIT_OPTIONS if values[name] is not None}
        self.limits = InputLimits.resolve(values.max_pixels, **limits)
        if values.expected_digest is not None and not values.verify:
            raise ValueError(
                "expected_digest pins the bundle through the file hashes that verify=True checks; verify=False "
                "would skip them: drop one of the two"
            )
        upgrade.check_request(values.prepare, values.backend, values.cache_dir)
        if values.device != "cpu":  # says once why a visible GPU is not used (a driver too old for CUDA, ...)
            ops.cuda_available()
        self.meta: BundleMeta = load_meta(os.fspath(bundle))
        if values.expected_digest is not None:
            check_bundle_digest(self.meta, values.expected_digest)
        kind = pipeline_class(self.meta.pipeline)
        ENGINE_OPTIONS.check_kind(kind.kind, values, preset, options)  # of other bundle kinds: one line
        if values.verify:
            verify_bundle_files(self.meta, [Files.TOKENIZER])
        self._stage_hook: Optional[StageHook] = None  # see the stage_hook property
        self._calls = threading.local()  # per thread: the stage times of the call in progress (Result.timing)
        batch = kind.default_max_batch if values.max_batch is None else int(values.max_batch)
        self.options: OptionValues = values.replace(max_batch=batch)  # what this Engine runs with
        self.pipeline: Pipeline = kind(self.meta, self.options, limits=self.limits, stage=self._stage)
        prepare_mode = upgrade.decide(self.meta, self.pipeline.backend_plan, values.prepare, values.cache_dir)
        if prepare_mode == "now":
            self._prepare_now()
        self._upgrade: Optional[upgrade.BackgroundUpgrade] = None  # backend="auto", prepare="background" (below)
        self.tokenizer = ClipTokenizer(self.meta.file(Files.TOKENIZER), self.meta.context_length)
        self._lock = threading.Lock()
        # Per-class text-embedding cache: (name, templates) -> [D]. Editing a vocabulary encodes only new names.
        self.text_cache = TextEmbeddingCache(self._encode_timed, maxsize=4096)
        text_axes = self.meta.io.get("text", {}).get("dynamic_axes", {}).get(Names.TOKENS, {})
        self._trim_tokens = 1 in text_axes  # bundles exported before the dynamic sequence axis run all 77
        self._vocab: Optional[PreparedVocabulary] = None
        if classes is not None:
            self.set_classes(classes)
        if prepare_mode == "background":  # last: an Engine whose construction failed starts nothing
            self._upgrade = upgrade.BackgroundUpgrade(self.meta, self.pipeline.backend_plan)
            weakref.finalize(self, self._upgrade.stop)

    # ---- what the pipeline holds ------------------------------------------------------------------------
    @property
    def backend(self):
        """The backend running the graphs (``backend.name``: "onnxruntime", "tensorrt", "openvino", "torch")."""
        return self.pipeline.backend

    @backend.setter
    def backend(self, value) -> None:  # e.g. a wrapper that records calls (tests, profiling)
        self.pipeline.backend = value

    @property
    def mode(self) -> str:
        return self.pipeline.mode

    @property
    def plan(self):
        """What runs and why: the backend's :class:`~zsseg_rt.runtime.backends.cpu_auto.BackendPlan` (``path``: the
        (backend, precision) every frame from now on runs; ``choice``: why, where ``backend="auto"`` chose on a CPU;
        ``missing``: the faster paths this CPU could run, not prepared yet)."""
        return self.pipeline.backend_plan

    @property
    def auto_choice(self):
        """What ``backend="auto"`` chose on a CPU and why (``plan.choice``; None for a named backend)."""
        return self.pipeline.backend_plan.choice

    @property
    def device_stats(self) -> Optional[Dict[str, Any]]:
        """What the device pipeline did, or None on the host path: ``postprocess_kernel`` (the post-processing
        kernel per geometry, pinned or chosen by timing each candidate, with the times and any candidate's failed
        check: ``runtime/device/postprocess_choice.py``), ``encoder_variant`` (the image encoder, pinned or chosen by
        timing each variant behind its accuracy gate: ``runtime/device/encoder_choice.py``), ``cuda_graphs``
        (``FrameGraphs.stats``, or None) and ``batched_graphs`` (each batched graph kept, its buffers' bytes:
        ``runtime/device/frame_batches.py``; None before a batched call)."""
        device = getattr(self.pipeline, "device", None)
        if device is None:
            return None
        graphs = getattr(device, "graphs", None)
        kernels = getattr(device, "kernels", None)
        encoders = getattr(device, "encoders", None)
        batches = getattr(graphs, "batches", None)
        return {
            "postprocess_kernel": kernels.report() if kernels is not None else None,
            "encoder_variant": encoders.report() if encoders is not None else None,
            "cuda_graphs": dict(graphs.stats) if graphs is not None else None,
            "batched_graphs": batches.report() if batches is not None else None,
        }

    def _next_frame(self) -> PreparedVocabulary:
        """Between frames: the path a finished background preparation made ready (:meth:`_take_upgrade`), then the
        vocabulary snapshot the frame runs with."""
        if self._upgrade is not None:
            self._take_upgrade()
        vocab = self._vocab
        if vocab is None:
            raise RuntimeError("no vocabulary: call engine.set_classes(['cat', 'floor', ...]) first")
        return vocab

    def _prepare_now(self) -> None:
        """``prepare="now"``: prepare the missing paths in the foreground (their progress on the terminal), then run
        the fastest; a failure is said with its reason and log, and the current path runs."""
        if upgrade.run_preparation(self.meta, foreground=True) != 0:
            failed = upgrade.last_failure(self.meta) or {}
            LOG.warning(
                "backend='auto': preparing the faster CPU paths failed (%s; log %s); the exact fp32 path runs",
                failed.get("reason", "see its output above"),
                failed.get("log", ""),
            )
            return
        self.pipeline.replace_backend(*self.pipeline.backend_plan.reopen())

    def _take_upgrade(self) -> None:
        """Between frames: once a background preparation (``prepare="background"``) has finished, run the path it
        made ready (opened by its own thread: nothing here waits for quantisation or compilation); the pipeline
        rebuilds what it built over the old backend (``Pipeline.replace_backend``)."""
        upgrade = self._upgrade
        if upgrade is None or not upgrade.ready():
            return
        with self._lock:
            if self._upgrade is not upgrade:
                return
            self._upgrade = None
            if upgrade.backend is None:
                return
            try:
                self.pipeline.replace_backend(upgrade.backend, upgrade.plan)
            except Exception as exc:  # noqa: BLE001 - the new path cannot run here: the current one goes on
                LOG.warning(
                    "backend='auto': cannot switch to %s (%s); the current path goes on", upgrade.plan.path, exc
                )
                return
            LOG.info("backend='auto': switched to %s %s, prepared and gated in the background", *upgrade.plan.path)

    def close(self) -> None:
        """Stop a background preparation (``prepare="background"``): its process ends, what it finished is kept for
        the next start. The Engine keeps running the path it runs. ``with Engine(...) as engine:`` closes it."""
        upgrade, self._upgrade = self._upgrade, None
        if upgrade is not None:
            upgrade.stop()

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

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

    @postprocessor.setter
    def postprocessor(self, value) -> None:  # e.g. other thresholds for an evaluation (a family's settings)
        if not hasattr(self.pipeline, "postprocessor"):
            raise AttributeError(f"the {self.pipeline.kind} pipeline has no post-processor to replace")
        self.pipeline.postprocessor = value

    @property
    def stage_hook(self) -> Optional[StageHook]:
        """Optional per-stage timing hook: a callable ``(stage: str, seconds: float) -> None`` called after each
        stage ("text_encoder", "preprocess", "image_encoder", "head", "postprocess"; with the device pipeline also
        "upload", "download" and "vocabulary_upload", the copies). Used by tools/profile.py. On the host path,
        wall-clock (GPU backends synchronise before returning NumPy arrays). The device pipeline's stages on a GPU
        are device time from timing events recorded on its stream at the stage boundaries, inside the frame's CUDA
        graph when it has one (a timed frame is replayed as deployed, nothing extra synchronised), handed to the hook
        after the frame's synchronisation (docs/gpu.md, "The device pipeline's stages"). Set it to a function, or
        None (default, no overhead beyond one check per stage)."""
        return self._stage_hook

    @stage_hook.setter
    def stage_hook(self, hook: Optional[StageHook]) -> None:
        self._stage_hook = hook
        self.pipeline.stage_hook = hook  # pipelines that time their own stages (the device pipeline) read it there

    @property
    def weights_banner(self) -> str:
        """ "" for a bundle of trained weights, else the banner its results carry ("RANDOM WEIGHTS ...")."""
        return self.meta.weights_banner

    def __repr__(self) -> str:
        return (
            f"Engine({self.meta.path!r}, backend={self.backend.name!r}, pipeline={self.meta.pipeline!r}, "
            f"mode={self.mode!r}, classes={len(self.class_names)})"
        )

    @contextlib.contextmanager
    def _stage(self, name: str, hook: bool = True):
        """Times a stage into the call's Result.timing and, with ``hook``, for ``stage_hook``: False for an
        umbrella stage whose parts the hook already gets (the device pipeline reports its own stages to it)."""
        start = time.perf_counter()
        yield
        elapsed = time.perf_counter() - start
        times = getattr(self._calls, "times", None)
        if isinstance(times, dict):
            times[name] = times.get(name, 0.0) + elapsed
        elif times is not None:  # a batched call's shared stage: [(an image's times, its share)]
            for image_times, share in times:
                image_times[name] = image_times.get(name, 0.0) + share * elapsed
        if hook and self.stage_hook is not None:
            self.stage_hook(name, elapsed)

    # ---- vocabulary -------------------------------------------------------------------------------------
    @property
    def class_names(self) -> List[str]:
        """The current classes' labels (what ``labels`` index; a class with synonyms is named by its label)."""
        return list(self._vocab.names) if self._vocab else []

    @property
    def vocabulary(self) -> Optional[Vocabulary]:
        """The current :class:`~zsseg_rt.vocabulary.Vocabulary` (entries with their names, background class, the
        named vocabulary's name), or None before ``set_classes`` / ``set_text_embeddings``."""
        return self._vocab.vocabulary if self._vocab else None

    def vocabulary_snapshot(self) -> Any:
        """The current vocabulary as prepared (its names, templates, bias and embeddings), opaque: made current again,
        exactly, by :meth:`restore_vocabulary` (a ``Session`` given an app's Engine gives it back when the run
        ends); None before ``set_classes``."""
        return self._vocab

    def restore_vocabulary(self, snapshot: Any) -> None:
        """Make a :meth:`vocabulary_snapshot` of this Engine current again (nothing encoded again)."""
        with self._lock:
            self._vocab = snapshot

    def set_classes(self, names, templates: Optional[Union[str, Sequence[str]]] = None, class_bias=None) -> None:
        """Encode a vocabulary once (cached) and make it current. No re-export, no engine rebuild.

        Everything is checked before anything is installed: a refused call leaves the current vocabulary as it was.

        Args:
            names: class names (list or comma-separated string; see ``zsseg_rt.vocabulary.validate_class_names``); a
                class may have synonyms ``"person; man; woman"`` (scored by the bundle's family's official rule,
                ``postprocess.synonyms``); a named vocabulary, ``"voc21"`` (the standard benchmarks' official class
                files, ``zsseg_rt.vocabulary.named_vocabularies()``, with their background class and the settings
                the bundle records for them); or a ``zsseg_rt.vocabulary.Vocabulary``.
            templates: prompt templates, each with exactly one ``{}`` (a plain string is one template; see
                ``validate_templates``); default: the bundle's (the model's training templates).
            class_bias: ``[C]`` finite numbers subtracted after the sigmoid; default: the bundle's calibration
                for names that were seen classes in training, 0 for the others.
        Raises:
            TypeError / ValueError: a bad name, template or bias, or two names whose prompts are identical
                token for token (the later class could never win).
        """
        vocabulary = Vocabulary.parse(names, self.meta.max_classes)
        templates = validate_templates(templates) if templates is not None else tuple(self.meta.templates)
        bias = self._class_bias(vocabulary.texts, class_bias)
        self._check_distinct_prompts(list(dict.fromkeys(vocabulary.names)), templates)  # every name, once
        vocab = self.pipeline.prepare(vocabulary, templates, bias, self._embed)
        self._install(vocab)

    def _install(self, vocab: PreparedVocabulary) -> None:
        """Make ``vocab`` current; with the unknown threshold on, a class named like the unknown label is refused
        (its pixels and the unknown ones would share a name in every output)."""
        check_unknown_name(vocab.names, self.options.unknown_below)  # the rule zsseg serve checks before a batch
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
        """Use precomputed embeddings (e.g. the official ZegCLIP ``.npy``; fp16 is cast): ``[C, D]``, one per class,
        or, for a vocabulary with synonyms on a bundle whose rule is ``"max"``, ``[N, D]``, one per name (in
        ``Vocabulary.names`` order). ``names`` as in :meth:`set_classes` (named vocabularies included)."""
        vocabulary = Vocabulary.parse(names, self.meta.max_classes)
        emb = np.asarray(embeddings)
        per_name = self.pipeline.synonyms == "max" and vocabulary.has_synonyms
        rows = [len(vocabulary)] + ([len(vocabulary.names)] if per_name else [])
        if emb.ndim != 2 or emb.shape[0] not in rows or emb.shape[1] != self.meta.embed_dim:
            what = " or ".join(f"[{r}, {self.meta.embed_dim}]" for r in rows)
            raise ValueError(
                f"embeddings must have shape {what} ({'classes or names' if per_name else 'classes'} x embed_dim), "
                f"got {list(emb.shape)}"
            )
        if emb.dtype.kind not in "iuf":
            raise TypeError(f"embeddings must be numeric, got dtype {emb.dtype}")
        if not np.isfinite(emb).all():
            raise ValueError("embeddings contain NaN or inf")
        bias = self._class_bias(vocabulary.texts, class_bias)
        vocab = self.pipeline.prepare_embeddings(vocabulary, np.ascontiguousarray(emb, dtype=np.float32), bias)
        self._install(vocab)

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
    def __call__(self, image: Any, color_order: Optional[str] = None) -> Any:
        """Segment one image or a list of them.

        Args:
            image: a file path (str or ``pathlib.Path``; decoded to BGR, refused before decoding when over the
                ``max_pixels`` limit or truncated / damaged: see ``allow_partial_images``), a NumPy ``[H, W, 3]``
                uint8 array, a PIL image (converted to RGB), or a list or tuple of those.
            color_order: the channel order of NumPy arrays: "bgr" (default, as OpenCV reads images) or "rgb".
                Paths and PIL images carry their own order and ignore it.
        Returns:
            a :class:`Result` (a list of them for a list input) holding the input image, its path, per-stage
            ``timing`` in milliseconds, and the bundle's random-weights ``banner`` ("" for trained weights).
        """
        vocab = self._next_frame()
        if isinstance(image, (list, tuple)):
            return self._segment_many(image, color_order, vocab)
        return self._segment_one(image, color_order, vocab)

    def segment_with_class_scores(
        self, images: Sequence[Any], stride: int = 4, color_order: Optional[str] = None
    ) -> List[Result]:
        """``self(list(images))`` whose results also hold every class's scores at ``1/stride`` of their size
        (``Result.class_scores``, a ``zsseg_rt.pipeline.class_scores.ClassScores``): what a video filter blends from
        one frame to the next (``zsseg_rt.stream.VideoSegmenter``). The labels and scores are the plain call's
        (on the host path: a device pipeline keeps no per-class scores, so it is not used for this call).

        Raises:
            ClassScoresUnavailable (a ValueError): the bundle's pipeline or post-processing gives no per-class scores
                (the two-stage pipeline, PAMR, an area threshold).
        """
        from zsseg_rt.pipeline.class_scores import ClassScoresUnavailable

        if not getattr(self.pipeline, "class_scores", False):
            raise ClassScoresUnavailable(
                f"the {self.pipeline.kind} pipeline of {self.meta.path!r} gives no per-class scores: video filtering "
                "(stabilize / keyframes) needs a windowed bundle"
            )
        if isinstance(stride, bool) or not isinstance(stride, (int, np.integer)) or stride < 1:
            raise ValueError(f"stride must be an integer >= 1, got {stride!r}")
        vocab = self._next_frame()  # between frames of a video filter too, as in __call__
        return self._segment_many(list(images), color_order, vocab, int(stride))

    def segment_on_device(
        self, images: Sequence[Any], arrays: Any, stride: Optional[int] = None, color_order: Optional[str] = None
    ) -> List[Result]:
        """The video filter's keyframes on the device pipeline (``zsseg_rt.stream.VideoSegmenter`` with ``device``):
        like :meth:`segment_with_class_scores` (``stride``; None: the labels and scores instead), but what the
        filter needs stays on the device, in ``arrays`` (a ``stream.filter_arrays.DeviceArrays``), and nothing is
        copied down (``runtime/device/device_video.py``). NumPy ``[H, W, 3]`` uint8 frames only.

        Raises:
            ValueError: the Engine has no device path for this (``device_video.device_unavailable`` says why), or
                more than one image is given (``arrays`` alternates two buffers a name: a third image's results
                would overwrite the first's; one frame a call, as a stream's filter takes them).
        """
        from .device.device_video import device_keyframes, device_unavailable

        images = list(images)
        if len(images) != 1:
            raise ValueError(
                f"segment_on_device: expected one frame a call (its results stay in the stream's buffers, two a "
                f"name, alternating), got {len(images)}"
            )
        reason = device_unavailable(self)
        if reason is not None:
            raise ValueError(f"segment_on_device: {reason}")
        vocab = self._next_frame()  # between frames of a video filter too, as in __call__
        return device_keyframes(self, images, arrays, stride, color_order or "bgr", vocab)

    def in_flight(self, depth: int = 2, color_order: Optional[str] = None) -> Any:
        """Up to ``depth`` frames in flight: ``submit(image)`` returns at once (on a GPU's device pipeline: the frame
        launched on a lane of its own, not waited for), ``result()`` gives the oldest frame's Result, in submission
        order, equal to ``engine(image)``'s; ``close()`` (or ``with``) frees its lanes. Where frames cannot be in
        flight (the host path, a CPU) each frame runs at ``submit`` (``lanes`` 0, ``why_synchronous``). See
        :class:`~zsseg_rt.runtime.device.in_flight.InFlight`."""
        from .device.in_flight import InFlight

        return InFlight(self, depth, color_order)

    def stream(self, frames: Any, in_flight: int = 2, color_order: Optional[str] = None) -> Any:
        """The Results of an iterable of images (e.g. a video's frames), in order, with up to ``in_flight`` frames in
        flight on a GPU's device pipeline (frame N+1 launched before frame N is waited for; :meth:`in_flight`): a
        generator, whose lanes are freed when it ends or is closed."""
        from .device.in_flight import stream

        return stream(self, frames, in_flight, color_order)

    def _segment_many(
        self,
        items: Sequence[Any],
        color_order: Optional[str],
        vocab: PreparedVocabulary,
        score_stride: Optional[int] = None,
    ) -> List[Result]:
        """A list: every item read and checked first (an error names the item, counted from 1: "image 2 of the list
        (index 1): ..."), then the pipeline's ``segment_many`` packs the windows of all images into encoder/head calls of at most
        ``max_batch`` (see the Engine docstring). Timing: an image's own stages (read, rescale, post-processing) are
        its own; a stage run for several images is split among them by their share of its windows; ``total`` is the
        sum of an image's stages."""
        if not items:
            return []
        times: List[Dict[str, float]] = [{} for _ in items]
        inputs = []
        try:
            for index, item in enumerate(items):
                self._calls.times = times[index]
                with image_index(index):
                    if isinstance(item, np.ndarray):
                        inputs.append(self._as_image(item, color_order))
                    else:
                        with self._stage("read"):
                            inputs.append(self._as_image(item, color_order))

            def focus(shares: Dict[int, float]) -> None:
                self._calls.times = [(times[i], share) for i, share in shares.items()]

            pairs = [(image, order) for image, order, _ in inputs]
            if score_stride is None:
                results = self.pipeline.segment_many(pairs, vocab, focus)
            else:
                pipeline: Any = self.pipeline  # a pipeline whose ``class_scores`` is True (segment_with_class_scores)
                results = pipeline.segment_many(pairs, vocab, focus, score_stride=score_stride)
        finally:
            self._calls.times = None
        for result, (image, _, path), stages in zip(results, inputs, times):
            if path is None:
                stages.pop("read", None)
            result.timing = {stage: 1000.0 * seconds for stage, seconds in stages.items()}
            result.timing["total"] = 1000.0 * sum(stages.values())
            result.image, result.path = image, path
            result.banner, result.backend = self.meta.weights_banner, self.backend.name
            self.mark_unknown(result)
        return results

    def _segment_one(self, item: Any, color_order: Optional[str], vocab: PreparedVocabulary) -> Result:
        times: Dict[str, float] = {}
        self._calls.times = times
        start = time.perf_counter()
        try:
            if isinstance(item, np.ndarray):  # an array: nothing is read (no "read" stage, for hooks either)
                image, order, path = self._as_image(item, color_order)
            else:
                with self._stage("read"):
                    image, order, path = self._as_image(item, color_order)
            result = self.pipeline.segment(image, order, vocab)
        finally:
            self._calls.times = None
        total = time.perf_counter() - start
        if path is None:
            times.pop("read", None)  # an array: nothing was read
        result.timing = {stage: 1000.0 * seconds for stage, seconds in times.items()}
        result.timing["total"] = 1000.0 * total
        result.image, result.path = image, path
        result.banner, result.backend = self.meta.weights_banner, self.backend.name
        return self.mark_unknown(result)

    def mark_unknown(self, result: Result) -> Result:
        """``result`` with the unknown threshold applied (``unknown_below``, off by default: unchanged): the pixels
        whose best class's probability is below it labelled :func:`~zsseg_rt.runtime.result.unknown_label` (in
        place; ``result.unknown_below`` set). A result without host scores is left as it is. The limits of its
        objects (``object_min_area``, ``max_objects``: ``Result.objects()``) are set on it too."""
        result.object_min_area, result.max_objects = self.options.object_min_area, self.options.max_objects
        threshold = self.options.unknown_below
        if threshold is None or result.scores is None or result.labels is None:
            return result
        probability = result.probability if result.probability is not None else result.scores
        mark_unknown(result.labels, probability, float(threshold), len(result.class_names))
        result.unknown_below = float(threshold)
        return result

    def _as_image(self, item: Any, color_order: Optional[str]) -> Tuple[Any, str, Optional[str]]:
        """``(image, its channel order, its file path or None)`` of one input (see ``__call__``); anything else is
        handed to the pipeline, which says what it expected."""
        if isinstance(item, (str, os.PathLike)):
            from zsseg_rt.image_io import read_image_bgr

            path = os.fspath(item)
            image = read_image_bgr(path, self.limits.max_pixels, allow_partial=self.allow_partial_images)
            return image, "bgr", path
        if _is_pil_image(item):  # turned upright as its EXIF says, as its file would be read
            from zsseg_rt.image_io import pil_image_rgb

            return pil_image_rgb(item), "rgb", getattr(item, "filename", None) or None
        return item, color_order or "bgr", None


def _is_pil_image(item: Any) -> bool:
    """A PIL image, recognised by its own class (``PIL.Image.Image`` or a subclass), without importing Pillow and
    without reading ``sys.modules``: there ``PIL.Image`` may be a module another thread is still importing, with no
    ``Image`` yet (``zsseg camera clip.avi photos/`` crashed when the folder's capture thread imported
    Pillow while the Engine looked)."""
    return any(klass.__name__ == "Image" and klass.__module__ == "PIL.Image" for klass in type(item).__mro__)


def _signature() -> inspect.Signature:
    """``Engine(bundle, classes=None, *, preset=None, <every row of ENGINE_OPTIONS with its default>)``: what
    ``inspect.signature(Engine)`` and ``help(Engine)`` show (the keywords themselves are checked by the table)."""
    here = inspect.Parameter
    head = [here(name, here.POSITIONAL_OR_KEYWORD) for name in ("self", "bundle")]
    head += [here("classes", here.POSITIONAL_OR_KEYWORD, default=None), here("preset", here.KEYWORD_ONLY, default=None)]
    return inspect.Signature(head + [here(row.name, here.KEYWORD_ONLY, default=row.default) for row in ENGINE_OPTIONS])


Engine.__init__.__signature__ = _signature()  # type: ignore[attr-defined]
if Engine.__doc__:  # the option list, from the one table (None under python -OO)
    Engine.__doc__ = Engine.__doc__.replace("{OPTIONS}", ENGINE_OPTIONS.docstring())
