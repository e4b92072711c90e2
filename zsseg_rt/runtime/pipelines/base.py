"""What a runtime pipeline is to the Engine: the :class:`Pipeline` base class and the prepared vocabulary."""

from __future__ import annotations

import contextlib
from typing import Any, Callable, ClassVar, ContextManager, Dict, Iterator, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from zsseg_rt.bundle import BundleMeta
from zsseg_rt.options import OptionValues
from zsseg_rt.pipeline.limits import InputLimits
from zsseg_rt.vocabulary import ClipTokenizer, Vocabulary, embed_names, validate_class_bias

from ..result import Result

__all__ = ["Pipeline", "PreparedVocabulary", "Embed", "Stage", "StageHook", "Focus", "image_index"]

Embed = Callable[[Tuple[str, ...], Tuple[str, ...]], np.ndarray]  # (names, templates) -> [C, D], cached per name
# the Engine's per-stage timer: ``with stage("head"): ...``; ``stage(name, hook=False)``: into Result.timing only
Stage = Callable[..., ContextManager[None]]
StageHook = Callable[[str, float], None]  # the Engine's ``stage_hook``: ``hook(stage, seconds)``
# ``segment_many``: which images the stages timed next belong to, ``{index: share}`` (shares sum to 1): a stage run
# for several images at once (one encoder call on the windows of three images) is split among them by these shares.
Focus = Callable[[Dict[int, float]], None]


@contextlib.contextmanager
def image_index(index: int) -> Iterator[None]:
    """Name the list item at fault in an error raised inside: ``"image 3 of the list (index 2): <the single call's
    message>"`` (counted from 1, as a person counts, with the Python index), the exception's type and attributes
    kept (an error without a message string gets that as a note)."""
    try:
        yield
    except Exception as exc:
        where = f"image {index + 1} of the list (index {index})"
        if not getattr(exc, "_zsseg_image_index", False):
            if exc.args and isinstance(exc.args[0], str) and not isinstance(exc, OSError):
                exc.args = (f"{where}: {exc.args[0]}",) + tuple(exc.args[1:])
            elif hasattr(exc, "add_note"):  # Python 3.11+: shown under the message
                exc.add_note(where)
            exc._zsseg_image_index = True  # type: ignore[attr-defined]
        raise


class PreparedVocabulary(NamedTuple):
    """An immutable vocabulary snapshot, ready for ``segment``: ``names`` (the C class labels), ``text [C, D]``
    float32 class embeddings (``[N, D]``, one row per name, with ``class_of``), ``bias [C]`` float32, what else a
    pipeline needs (``extra``; the two-stage pipeline's CLIP embeddings and seen mask), ``class_of`` (synonyms under
    the ``"max"`` rule: the class of each name row, grouped by class; None otherwise), ``background`` (the
    vocabulary's background class, or None), ``vocabulary`` (the checked :class:`~zsseg_rt.vocabulary.Vocabulary`)
    and ``post_options`` (post-processing settings the bundle records for this named vocabulary, as pairs)."""

    names: Tuple[str, ...]
    text: np.ndarray
    bias: np.ndarray
    extra: Any = None
    class_of: Optional[Tuple[int, ...]] = None
    background: Optional[int] = None
    vocabulary: Optional[Vocabulary] = None
    post_options: Tuple[Tuple[str, Any], ...] = ()


class Pipeline:
    """The part of ``zsseg_rt.Engine`` that depends on how a bundle's graphs are run; chosen by meta.json's
    ``pipeline`` (:func:`zsseg_rt.runtime.pipelines.pipeline_class`). Pipelines are family-blind and torch-free.

    Class attributes: ``kind`` (the name meta.json records), ``description``, ``roles`` (the graph roles it runs: a
    backend whose runner opens them serves it, :meth:`supports`), ``modes`` (post-processing modes),
    ``default_max_batch``.

    An instance holds ``options`` (the Engine's, :class:`~zsseg_rt.options.OptionValues`), ``backend`` (with
    ``name`` and ``encode_text``) and its ``backend_plan`` (``make_backend``'s: the path it runs, what could follow),
    ``mode`` and ``max_batch``; the Engine owns the tokenizer, the per-name text cache
    and the current vocabulary, and calls :meth:`encode_classes`, :meth:`prepare` and :meth:`segment`, and
    :meth:`replace_backend` between frames to run another path (a preparation it asked for has finished).
    """

    kind: ClassVar[str] = ""
    description: ClassVar[str] = ""
    roles: ClassVar[Tuple[str, ...]] = ()
    modes: ClassVar[Tuple[str, ...]] = ("exact",)
    default_max_batch: ClassVar[int] = 1
    # whether ``segment`` / ``segment_many`` take ``score_stride`` and give ``Result.class_scores`` (the per-class
    # scores a video filter blends: ``zsseg_rt.pipeline.class_scores``)
    class_scores: ClassVar[bool] = False

    backend: Any
    backend_plan: Any  # the backend's BackendPlan (runtime/backends/cpu_auto.py)
    mode: str
    max_batch: int
    # The Engine's stage_hook (set by the Engine), for a pipeline that times stages the ``stage`` timer cannot see
    # (the device pipeline's stages are device work: timed by events recorded on its stream, inside the frame's CUDA
    # graph when it has one, read after the frame's one synchronisation; only while a hook is set).
    stage_hook: Optional[StageHook] = None

    def __init__(self, meta: BundleMeta, options: OptionValues, *, limits: InputLimits, stage: Stage):
        """``options``: the Engine's (every row of ``zsseg_rt.options.ENGINE_OPTIONS``, ``max_batch`` resolved),
        read by attribute; ``limits`` the input limits they make; ``stage`` the Engine's stage timer."""
        self.meta = meta
        self.options = options
        self.mode = options.mode
        self.max_batch = int(options.max_batch)
        self.limits = limits
        self.stage = stage

    def open_backend(self, adapter: Any) -> None:
        """Open the backend the Engine's options name (``make_backend``: the backend table, the ``auto`` policy) as
        this pipeline's role object, with its plan. The options go whole, by name: a row a backend reads reaches
        its runner (``OpenRequest.values``) with nothing here."""
        from ..backends import make_backend

        self.backend, self.backend_plan = make_backend(self.meta, self.options, roles=self.roles, adapter=adapter)

    def replace_backend(self, backend: Any, plan: Any) -> None:
        """Run ``backend`` from the next frame on (the Engine's upgrade, between frames). A pipeline that built
        something over the old backend builds it again over the new one (the windowed pipeline's device pipeline and
        its graphs)."""
        self.backend, self.backend_plan = backend, plan

    @classmethod
    def supports(cls, backend: str) -> bool:
        """Whether bundles of this pipeline can run on ``backend`` (a name of the backend table, or "auto")."""
        from ..backends import AUTO, backend_row

        return backend == AUTO or backend_row(backend).serves(cls.roles)

    @classmethod
    def backend_names(cls) -> List[str]:
        """The built-in backends that serve this pipeline (their runners open its roles)."""
        from ..backends import rows_serving

        return rows_serving(cls.roles)

    # ---- vocabulary
    @property
    def synonyms(self) -> str:
        """How a class with several names is scored (the bundle's ``postprocess.synonyms``, its family's official
        rule): ``"mean"`` (every prompt of every name averaged into one embedding; the default) or ``"max"`` (one
        row per name, the class's probability the max over its names': softmax post-processing only)."""
        return str(self.meta.postprocess.get("synonyms", "mean"))

    def encode_classes(
        self, names: Sequence[str], templates: Tuple[str, ...], tokenizer: ClipTokenizer, trim: bool
    ) -> np.ndarray:
        """``[len(names), D]`` class embeddings through the bundle's text graph (the Engine caches them per name).
        Default: every template filled with every name of the class (``"a; b"``: synonyms), normalised, averaged,
        normalised."""
        return embed_names(names, templates, tokenizer, self.backend.encode_text, self.meta.embed_dim, trim)

    def prepare(
        self, vocabulary: Vocabulary, templates: Tuple[str, ...], bias: np.ndarray, embed: Embed
    ) -> PreparedVocabulary:
        """The snapshot ``set_classes`` installs (checked vocabulary, templates and bias given). Classes with
        synonyms follow :attr:`synonyms`: ``"max"`` encodes every name on its own (rows ``[N, D]`` and
        ``class_of``), ``"mean"`` one embedding per class from all its names' prompts."""
        labels = tuple(vocabulary.labels)
        if self.synonyms == "max" and vocabulary.has_synonyms:
            names = tuple(vocabulary.names)
            if len(names) > int(self.meta.max_classes):
                raise ValueError(
                    f"{len(names)} names given ({len(labels)} classes with synonyms; this bundle scores every name on "
                    f"its own) but it supports at most {self.meta.max_classes} (re-export with a larger --max-classes)"
                )
            class_of: Optional[Tuple[int, ...]] = tuple(int(c) for c in vocabulary.class_of())
            text = embed(names, templates)
        else:
            class_of, text = None, embed(tuple(vocabulary.texts), templates)
        options = self.vocabulary_options(vocabulary)
        return PreparedVocabulary(labels, text, bias, None, class_of, vocabulary.background, vocabulary, options)

    def vocabulary_options(self, vocabulary: Vocabulary) -> Tuple[Tuple[str, Any], ...]:
        """Post-processing settings the bundle records for a named vocabulary (meta.json
        ``postprocess.vocabulary_settings[name]``: e.g. a method's official background threshold for that
        benchmark), as sorted pairs; () for other vocabularies and bundles that record none."""
        table = self.meta.postprocess.get("vocabulary_settings") or {}
        entry = table.get(vocabulary.name) if vocabulary.name else None
        return tuple(sorted(dict(entry).items())) if entry else ()

    def prepare_embeddings(
        self, vocabulary: Vocabulary, embeddings: np.ndarray, bias: np.ndarray
    ) -> PreparedVocabulary:
        """The snapshot ``set_text_embeddings`` installs (``embeddings`` checked, float32: ``[C, D]`` one per class,
        or ``[N, D]`` one per name under the ``"max"`` rule)."""
        per_name = len(embeddings) != len(vocabulary)
        class_of = tuple(int(c) for c in vocabulary.class_of()) if per_name else None
        options = self.vocabulary_options(vocabulary)
        labels = tuple(vocabulary.labels)
        return PreparedVocabulary(labels, embeddings, bias, None, class_of, vocabulary.background, vocabulary, options)

    def class_bias(self, names: Sequence[str], class_bias: Any) -> np.ndarray:
        """``[C]`` float32: the given bias (validated), or the bundle's calibration for these names."""
        if class_bias is None:
            return np.asarray(self.meta.class_bias(names), dtype=np.float32)
        return validate_class_bias(class_bias, len(names))

    # ---- inference
    def segment(self, image: Any, color_order: str, vocab: PreparedVocabulary) -> Result:
        """Segment one ``[H, W, 3]`` uint8 image with the vocabulary snapshot."""
        raise NotImplementedError

    def segment_many(self, images: Sequence[Tuple[Any, str]], vocab: PreparedVocabulary, focus: Focus) -> List[Result]:
        """Segment ``(image, color order)`` pairs with one vocabulary snapshot: one result per image, equal to
        :meth:`segment` on it. ``focus`` tells the Engine which images the next stages are timed for. This default
        runs the images one after another; pipelines that can pack several images' work into one graph call
        override it (an error names the image at fault: :func:`image_index`)."""
        results = []
        for index, (image, order) in enumerate(images):
            focus({index: 1.0})
            with image_index(index):
                results.append(self.segment(image, order, vocab))
        return results
