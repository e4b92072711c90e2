"""Evaluate a PyTorch checkpoint or an exported bundle on a labelled dataset (generalized zero-shot protocol).

Every image is segmented with the shared test-time pipeline (``zsseg_rt.pipeline``: keep-ratio rescale,
ImageNet normalisation, sliding windows or the whole image, calibrated scores averaged, resized to the
original size, argmax) — through :func:`zsseg_rt.contract.common.predict.predict` for PyTorch models and
``zsseg_rt.Engine`` for bundles — over ALL classes of the dataset's vocabulary jointly, and compared with the
ground truth at the original resolution.

Checkpoint kinds: a training checkpoint (``.pt`` from ``zsseg train``; ZegCLIP or CLIP-RC, from the stored
``model_config``), a native checkpoint directory (``model.safetensors`` + ``config.json``), or a bundle
directory (``meta.json``, run by ``Engine``).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from zsseg_rt.data import SegmentationDataset, build_dataset

from .metrics import ConfusionMatrix, summarize

__all__ = [
    "evaluate",
    "evaluate_arguments",
    "check_limit",
    "load_text",
    "load_for_eval",
    "Segmenter",
    "HookedSegmenter",
    "checkpoint_kind",
    "model_from_config",
    "evaluation_settings",
    "apply_evaluation_settings",
    "follow_settings",
    "evaluation_of",
    "segment_dataset",
    "EvaluationProtocol",
    "PreparedRun",
    "run_prepared",
    "protocol_hooks",
    "prepare_generalized_zero_shot",
]


def checkpoint_kind(path: Union[str, Path]) -> str:
    p = Path(path)
    if p.is_dir() and (p / "meta.json").is_file():
        return "bundle"
    if p.is_dir() and (p / "model.safetensors").is_file() and (p / "config.json").is_file():
        return "native"
    if p.is_file():
        return "train"
    raise FileNotFoundError(
        f"{str(p)!r} is not a training checkpoint (.pt), a native checkpoint directory "
        "(model.safetensors + config.json) or an export bundle (meta.json)"
    )


GENERALIZED_ZERO_SHOT = "generalized_zero_shot"  # this module's protocol: mIoU(seen), mIoU(unseen), hIoU
EVAL_BATCH = 8  # a bundle on a GPU: images a call (the largest of the device pipeline's batched graphs: a test checks)


def evaluation_protocol(obj) -> str:
    """The protocol ``obj`` is evaluated under: an Engine's bundle records it (meta.json), a PyTorch model's family
    declares it (registry). No torch import: bundles evaluate without torch."""
    meta = getattr(obj, "meta", None)
    if meta is not None and hasattr(meta, "evaluation_protocol"):
        return str(meta.evaluation_protocol)
    from zsseg_rt.contract.registry import family_of_model

    return family_of_model(obj).evaluation.protocol


def evaluation_of(obj) -> Any:
    """The ``Evaluation`` capability of the family of a loaded model or Engine (one registry look-up). No torch."""
    from zsseg_rt.contract.registry import family_of_object

    return family_of_object(obj).evaluation


class HookedSegmenter:
    """``segmenter(rgb [H,W,3] uint8) -> labels [H,W]`` over a fixed vocabulary (torch model or Engine), with the
    family's hook given: the generalized zero-shot protocol's segmenter (:func:`prepare_generalized_zero_shot`).

    ``vocabulary``: bundles: a named vocabulary to set instead of the dataset's class names (the same classes in the
    same order, with the official class file's synonyms: a family's evaluation settings name it).
    ``predict``: PyTorch models (required for them): the family's inference, ``Evaluation.predict``'s signature."""

    def __init__(
        self,
        kind: str,
        obj,
        class_names: Sequence[str],
        text: Optional[np.ndarray],
        mode: str,
        device: Optional[str] = None,
        seen_classes=None,
        vocabulary: Optional[str] = None,
        predict: Optional[Callable[..., Tuple[np.ndarray, np.ndarray]]] = None,
    ):
        if kind != "bundle" and predict is None:
            raise ValueError(
                "a PyTorch model is segmented by its family's inference: pass predict= (its Evaluation.predict), "
                "or use Segmenter, which looks it up"
            )
        self.kind, self.obj, self.mode = kind, obj, mode
        self.class_names = list(class_names)
        self.device = device
        self.seen_classes = seen_classes
        self.text = text
        self.predict = predict
        self.last_timing: Optional[Dict[str, float]] = None  # the last call's stages (a bundle's Result.timing)
        self.last_timings: List[Optional[Dict[str, float]]] = []  # those of the last many() call's images
        device = getattr(getattr(obj, "pipeline", None), "device", None) if kind == "bundle" else None
        self.batch = EVAL_BATCH if device is not None else 1  # images a call (segment_dataset: many())
        if kind == "bundle":
            if text is not None:
                obj.set_text_embeddings(self.class_names, text)
            elif vocabulary is not None:  # a named vocabulary for the dataset's classes (its official class file)
                obj.set_classes(vocabulary)
                if len(obj.class_names) != len(self.class_names):
                    raise ValueError(
                        f"vocabulary {vocabulary!r} has {len(obj.class_names)} classes, the dataset "
                        f"{len(self.class_names)}"
                    )
            else:
                obj.set_classes(self.class_names)
        elif text is None:
            import torch

            with torch.no_grad():
                self.text = obj.text_embeddings(self.class_names).float().cpu().numpy()

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        if self.kind == "bundle":
            result = self.obj(rgb, color_order="rgb")
            self.last_timing = result.timing  # its stages, for the speed summary (segment_dataset)
            return result.labels
        assert self.predict is not None  # checked in __init__
        labels, _ = self.predict(  # the family's PyTorch inference (its own test pipeline)
            self.obj,
            rgb,
            self.class_names,
            text=self.text,
            mode=self.mode,
            device=self.device,
            seen_classes=self.seen_classes,
        )
        return labels

    def many(self, rgbs: Sequence[np.ndarray]) -> List[np.ndarray]:
        """Bundles: the images in ONE Engine call (on a GPU, the device pipeline's batched graphs: the frames of one
        size through the image encoder together), each one's labels those of :meth:`__call__`."""
        if self.kind != "bundle":
            return [self(rgb) for rgb in rgbs]
        results = self.obj(list(rgbs), color_order="rgb")
        self.last_timings = [result.timing for result in results]
        return [result.labels for result in results]


class Segmenter(HookedSegmenter):
    """A :class:`HookedSegmenter` whose hook is looked up in the registry: the family of ``obj`` (refused when it is
    evaluated under its own protocol, where this confusion matrix would be wrong)."""

    def __init__(self, kind: str, obj, *args: Any, **kwargs: Any):
        """``HookedSegmenter``'s arguments but ``predict`` (looked up)."""
        protocol = evaluation_protocol(obj)
        if protocol != GENERALIZED_ZERO_SHOT:  # e.g. labels with background at 0: this confusion matrix would be wrong
            raise ValueError(
                f"this model is evaluated under its own protocol ({protocol!r}): use zsseg eval without --ray "
                "(zsseg_rt.eval.evaluate dispatches it to its family)"
            )
        if "predict" in kwargs:
            raise TypeError("Segmenter looks the family's predict up itself: use HookedSegmenter to pass predict=")
        predict = None if kind == "bundle" else evaluation_of(obj).predict
        super().__init__(kind, obj, *args, predict=predict, **kwargs)


def load_for_eval(
    path: Union[str, Path],
    device: Optional[str] = None,
    backend: str = "auto",
    mode: str = "slide",
    precision: Optional[str] = None,
):
    """``(kind, model_or_engine)`` for a checkpoint path (``precision``: the Engine's, bundles only)."""
    kind = checkpoint_kind(path)
    if precision is not None and kind != "bundle":
        raise ValueError(
            f"precision={precision!r} is an Engine (bundle) setting; {os.fspath(path)!r} is a {kind} checkpoint, "
            "evaluated by torch in its own precision: leave precision unset or evaluate an exported bundle"
        )
    if kind == "bundle":
        from zsseg_rt.runtime import Engine

        if mode not in ("slide", "exact"):
            raise ValueError(
                f"bundles are evaluated with the official sliding-window order (mode 'slide'); got mode {mode!r}"
            )
        # prepare=None: one path from the first image to the last (no background preparation switching it)
        engine = Engine(
            str(path), backend=backend, device=device or "auto", mode="exact", precision=precision, prepare=None
        )
        return kind, engine
    from zsseg_rt.contract.common.convert import load_native

    if kind == "native":
        model = load_native(str(path), device=device)  # the family is the one of the stored format
    else:
        from zsseg_rt.train.checkpoint import load_trained_model

        model = load_trained_model(path, device)  # the train toolkit reads its own format
    return kind, model.eval()


def _squash(name: str) -> str:
    return "".join(ch for ch in str(name).lower() if ch not in " _-")


def own_spelling(kind: str, obj, dataset_names) -> list:
    """The dataset's classes named as the checkpoint's own class list names them, when both list the same
    classes in the same order up to spaces, underscores, hyphens and case (ZegFormer's official VOC list says
    "potted plant" where the dataset's says "pottedplant": its text embeddings are of its own names); otherwise
    the dataset's names."""
    if kind == "bundle":
        own = list(getattr(getattr(obj, "meta", None), "training_class_names", None) or [])
    else:
        own = list(getattr(getattr(obj, "config", None), "class_names", None) or [])
    names = list(dataset_names)
    if len(own) == len(names) and all(_squash(a) == _squash(b) for a, b in zip(own, names)):
        return own
    return names


def model_from_config(config: Dict[str, Any]):
    """:func:`zsseg_rt.train.checkpoint.model_from_config` (the training checkpoint's format is the train toolkit's;
    this name stays for callers of ``zsseg_rt.eval``)."""
    from zsseg_rt.train.checkpoint import model_from_config as from_training_config

    return from_training_config(config)


def check_limit(limit: Optional[int]) -> None:
    """``limit``: None (every image) or a whole number of images >= 1."""
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be a whole number of images >= 1 (or None for all), got {limit!r}")


def load_text(text_embeddings: Union[None, str, Path, np.ndarray], num_classes: int) -> Optional[np.ndarray]:
    """``text_embeddings`` (None, a file or an array) as ``[num_classes, D]`` float32, or None."""
    if text_embeddings is None:
        return None
    if isinstance(text_embeddings, (str, Path)):
        from zsseg_rt.contract.common.text import load_text_embeddings

        text = np.asarray(load_text_embeddings(str(text_embeddings)), dtype=np.float32)
    else:
        text = np.asarray(text_embeddings, dtype=np.float32)
    if text.shape[0] != num_classes:
        raise ValueError(f"text embeddings have {text.shape[0]} rows for {num_classes} dataset classes")
    return text


def evaluate(
    checkpoint,
    dataset: Union[SegmentationDataset, Dict[str, Any]],
    mode: str = "slide",
    text_embeddings: Union[None, str, np.ndarray] = None,
    unseen: Optional[Sequence] = None,
    device: Optional[str] = None,
    backend: str = "auto",
    limit: Optional[int] = None,
    progress: bool = True,
    seen_classes: Optional[Sequence[int]] = None,
    settings: str = "official",
    precision: Optional[str] = None,
    **family_options: Any,
) -> Dict[str, Any]:
    """Metrics of ``checkpoint`` (path, ``ZegCLIP`` / ``CLIPRC`` or ``Engine``) on ``dataset`` (object or spec dict).

    Args:
        mode: "slide" (official crop 512 / stride 426) or "whole" (torch models only).
        text_embeddings: None (the model's / bundle's text encoder on the dataset's class names), a file
            (``.npy``/``.pt``/``.safetensors``, ``[C, D]`` in the dataset's class order) or an array.
        unseen: override the dataset split's unseen classes (names or indices) for mIoU(S)/mIoU(U)/hIoU.
        seen_classes: indices calibrated as seen (default: the checkpoint's seen classes, matched by name).
        limit: evaluate only the first ``limit`` images.
        family_options: options of a family's own evaluation protocol (``Family.evaluation.arguments()``: e.g.
            ZeroSeg's ``text_weights``, ``background_threshold``, ``thresholds``), passed on when the checkpoint's
            family (its bundle's meta.json or the model's) evaluates with that protocol. A keyword no family
            declares is refused.
        settings: bundles: "official" (default) runs a bundle with its family's official test settings for the
            dataset where the family has them (``Family.evaluation.settings``: e.g. a training-free method's logit
            scale, thresholds, PAMR and test size), restored afterwards; "bundle" keeps the bundle's own. What ran
            is recorded under ``"evaluation_settings"`` (absent when the family has no such settings).
        precision: a bundle path's Engine precision (None: the backend's default; "auto" on openvino: the fastest
            precision that passed the accuracy gate on this CPU).
    Returns:
        the :func:`summarize` dict plus ``images``, ``skipped`` (corrupt files), ``mode``, ``dataset``.
    """
    from zsseg_rt.contract.registry import default_family, family_of_object, protocol_family
    from zsseg_rt.contract.registry import family_options as _own_options

    if family_options:  # each must be an option of some family's own protocol (checked before any work)
        _own_options(default_family(), family_options, lambda f: f.evaluation.arguments(), "evaluate()")
    check_limit(limit)
    ds = build_dataset(dataset) if isinstance(dataset, dict) else dataset
    split = ds.split.with_unseen(unseen)
    if isinstance(checkpoint, (str, Path)):
        kind, obj = load_for_eval(checkpoint, device=device, backend=backend, mode=mode, precision=precision)
    else:
        from zsseg_rt.runtime import Engine  # torch-free

        kind = "bundle" if isinstance(checkpoint, Engine) else "torch"  # ZegFormerEngine is an Engine too
        obj = checkpoint
    text = load_text(text_embeddings, ds.num_classes)
    evaluation = family_of_object(obj).evaluation  # the checkpoint's family, resolved once
    meta = getattr(obj, "meta", None)
    protocol = str(meta.evaluation_protocol) if hasattr(meta, "evaluation_protocol") else evaluation.protocol
    if protocol != GENERALIZED_ZERO_SHOT and evaluation.protocol != protocol:  # a bundle recording another
        evaluation = protocol_family(protocol).evaluation  # family's own protocol: that family evaluates it
    hooks = protocol_hooks(evaluation)
    own = {}  # a family's own options reach its own protocol's hooks only (the generic protocol takes none)
    if hooks.name != GENERALIZED_ZERO_SHOT:
        own = _own_options(evaluation.family, family_options, lambda f: f.evaluation.arguments(), "evaluate()")
    prepared = hooks.prepare(
        kind,
        obj,
        ds,
        evaluation,
        unseen=split.unseen,
        mode=mode,
        text=text,
        device=device,
        seen_classes=seen_classes,
        settings=settings,
        **own,
    )
    out = run_prepared(prepared, limit, progress)
    plan = getattr(obj, "plan", None) if kind == "bundle" else None
    if plan is not None:  # the path every image ran on (an Engine switches only when a preparation was asked for)
        out["path"] = " ".join(plan.path)
    if kind == "bundle":  # what ran, and whether its numbers mean anything
        backend = getattr(obj, "backend", None)
        ran = tuple(plan.path) if plan is not None else (getattr(backend, "name", None), None)
        out.update(ran_with(ran, getattr(getattr(obj, "meta", None), "weights_banner", "")))
    name_speed(out, kind)
    return out


def name_speed(out: Dict[str, Any], kind: str) -> None:
    """What ran (backend, precision), written beside the metrics' speed (the "Speed: ..." line), when they have one."""
    if isinstance(out.get("speed"), dict):
        out["speed"].update(backend=out.get("backend") or ("torch" if kind != "bundle" else None))
        out["speed"].update(precision=out.get("precision"))


def ran_with(path: Sequence[Optional[str]], banner: str = "") -> Dict[str, Any]:
    """The metrics' record of what evaluated a bundle: ``backend`` and ``precision`` (its path), and ``banner`` when its
    weights are random (the report prints it before the numbers)."""
    record: Dict[str, Any] = {"backend": path[0], "precision": path[1] if len(path) > 1 else None}
    if banner:
        record["banner"] = banner
    return record


_NOT_SHARED = ("checkpoint", "dataset", "family_options")  # evaluate_parallel's own, or the serial path's only


def evaluate_arguments(options: Dict[str, Any], caller: str) -> Dict[str, Any]:
    """The arguments of :func:`evaluate` that another form of it takes as keywords (``evaluate_parallel``: all but
    ``checkpoint``, ``dataset`` and a family's own options), read from its signature: ``options`` completed with
    evaluate's defaults, in its order. A keyword evaluate does not take is refused, as a call would refuse it."""
    import inspect

    shared = [
        parameter.replace(kind=inspect.Parameter.KEYWORD_ONLY)
        for name, parameter in inspect.signature(evaluate).parameters.items()
        if name not in _NOT_SHARED
    ]
    try:
        bound = inspect.Signature(shared).bind(**options)
    except TypeError as exc:
        raise TypeError(f"{caller}: {exc}") from None
    bound.apply_defaults()
    return dict(bound.arguments)


@dataclass
class PreparedRun:
    """What a protocol's :meth:`EvaluationProtocol.prepare` hands the toolkit's loop (:func:`run_prepared`).

    ``segment(rgb [H,W,3] uint8) -> labels [H,W]`` over ``class_names`` (the scored classes: the confusion
    matrix's), ``dataset`` as scored (a family's protocol may read it otherwise, e.g. background kept as class 0),
    ``unseen`` (indices into ``class_names``), the progress bar's ``desc``, ``extra`` added to the metrics after the
    loop, and ``restore()``, called once the loop ends (or fails): e.g. an Engine's own settings given back."""

    segment: Callable[[np.ndarray], np.ndarray]
    dataset: SegmentationDataset
    class_names: Sequence[str]
    unseen: Sequence[int] = ()
    desc: str = "eval"
    extra: Dict[str, Any] = field(default_factory=dict)
    restore: Callable[[], None] = field(default=lambda: None)


class EvaluationProtocol:
    """An evaluation protocol as the eval toolkit runs it: :func:`evaluate` loads the checkpoint, resolves its
    family, and runs what this protocol's one hook, :meth:`prepare`, builds through the toolkit's one loop
    (:func:`run_prepared`: :func:`segment_dataset`, then ``extra``).

    This class is the generalized zero-shot protocol (all the dataset's classes jointly, mIoU(S), mIoU(U), hIoU;
    a bundle follows its family's official test settings for the dataset). A family with a protocol of its own
    subclasses it, names it ``name`` (what its bundles' meta.json records) and overrides :meth:`prepare`; its
    ``Evaluation.protocol_hooks()`` returns an instance (:func:`protocol_hooks`)."""

    name = GENERALIZED_ZERO_SHOT

    def prepare(
        self,
        kind: str,
        obj,
        ds: SegmentationDataset,
        evaluation: Any,
        unseen: Sequence[int] = (),
        mode: str = "slide",
        text: Optional[np.ndarray] = None,
        device: Optional[str] = None,
        seen_classes: Optional[Sequence[int]] = None,
        settings: str = "official",
        **options: Any,
    ) -> PreparedRun:
        """The run of ``obj`` (``kind``: "bundle", "torch", "native" or "train") on ``ds``: a bundle follows the
        settings ``evaluation`` (the family's ``Evaluation``) gives for the dataset (``settings``), undone by the
        run's ``restore``; a PyTorch model is segmented by ``evaluation.predict``. ``options``: the family's own
        protocol options (none here)."""
        if options:
            raise TypeError(f"the generalized zero-shot protocol takes no family options, got {sorted(options)}")
        record, restore = follow_settings(evaluation, obj, ds.name, settings) if kind == "bundle" else (None, None)
        try:
            vocabulary = record.get("vocabulary") if record else None
            run = prepare_generalized_zero_shot(
                kind, obj, ds, unseen, mode, text, device, seen_classes, evaluation.predict, vocabulary
            )
        except BaseException:
            if restore is not None:
                restore()
            raise
        if record is not None:
            run.extra["evaluation_settings"] = record
        if restore is not None:
            run.restore = restore
        return run


def prepare_generalized_zero_shot(
    kind: str,
    obj,
    ds: SegmentationDataset,
    unseen: Sequence[int],
    mode: str = "slide",
    text: Optional[np.ndarray] = None,
    device: Optional[str] = None,
    seen_classes: Optional[Sequence[int]] = None,
    predict: Optional[Callable[..., Tuple[np.ndarray, np.ndarray]]] = None,
    vocabulary: Optional[str] = None,
) -> PreparedRun:
    """The generalized zero-shot run of a model or Engine already loaded (no settings followed, no registry): a
    :class:`HookedSegmenter` over all the dataset's classes (named as the checkpoint names them), ``unseen``
    (indices) scored apart; ``extra``: ``mode``, ``dataset``, ``source``."""
    names = own_spelling(kind, obj, ds.class_names)
    seg = HookedSegmenter(kind, obj, names, text, mode, device, seen_classes, vocabulary, predict)
    extra: Dict[str, Any] = {"mode": mode, "dataset": ds.name, "source": kind}
    return PreparedRun(seg, ds, list(ds.class_names), unseen, f"eval {ds.name}", extra)


def protocol_hooks(evaluation: Any) -> EvaluationProtocol:
    """The protocol a family's ``Evaluation`` is evaluated under, as the toolkit runs it: its own
    (``evaluation.protocol_hooks()``) or the generalized zero-shot one; the hooks must be those of the protocol the
    family declares (``evaluation.protocol``, which its bundles record)."""
    hooks = evaluation.protocol_hooks()
    if hooks is None:
        hooks = EvaluationProtocol()
    elif not isinstance(hooks, EvaluationProtocol):
        raise TypeError(
            f"{type(evaluation).__name__}.protocol_hooks() must return an EvaluationProtocol (or None for the "
            f"generalized zero-shot protocol), got {type(hooks).__name__}"
        )
    if hooks.name != evaluation.protocol:
        raise NotImplementedError(
            f"the {evaluation.family.label} family declares the evaluation protocol {evaluation.protocol!r}, but its "
            f"{type(evaluation).__name__}.protocol_hooks() gives the hooks of {hooks.name!r}: return an "
            f"EvaluationProtocol subclass named {evaluation.protocol!r}"
        )
    return hooks


def run_prepared(prepared: PreparedRun, limit: Optional[int] = None, progress: bool = True) -> Dict[str, Any]:
    """The toolkit's loop over a protocol's prepared run: :func:`segment_dataset` (the first ``limit`` images),
    ``prepared.restore()`` however it ends, the metrics plus ``prepared.extra``."""
    try:
        out = segment_dataset(
            prepared.segment,
            prepared.dataset,
            prepared.class_names,
            prepared.unseen,
            limit,
            progress,
            prepared.desc,
        )
    finally:
        prepared.restore()
    out.update(prepared.extra)
    return out


def segment_dataset(
    segment: Callable[[np.ndarray], np.ndarray],
    ds: SegmentationDataset,
    class_names: Sequence[str],
    unseen: Sequence[int] = (),
    limit: Optional[int] = None,
    progress: bool = True,
    desc: str = "eval",
) -> Dict[str, Any]:
    """The loop of every evaluation protocol: each image of ``ds`` (the first ``limit``; corrupt files skipped as
    ``ds`` says) segmented by ``segment(rgb [H,W,3] uint8) -> labels [H,W]`` (in ``[0, len(class_names))``), a
    :class:`ConfusionMatrix` against the ground truth (255 ignored), :func:`summarize` with ``unseen`` (indices),
    plus ``images`` (segmented), ``skipped`` and ``skipped_files`` (the first 20); a progress bar named ``desc``
    when ``progress`` and tqdm is installed."""
    try:
        import tqdm as _tqdm  # noqa: F401 - installed? (a runtime-only install has no tqdm: no progress bar)

        from zsseg_rt.console.progress import progress_bar as tqdm
    except ImportError:

        def tqdm(iterable, **_kwargs):  # type: ignore[no-redef]
            return iterable

    from zsseg_rt.console.speed import SpeedMeter

    cm = ConfusionMatrix(len(class_names))
    n = len(ds) if limit is None else min(len(ds), int(limit))
    done = 0
    speed = SpeedMeter()  # ms per image per stage: the Engine's stages (a bundle), else the call ("predict")
    batch = int(getattr(segment, "batch", 1) or 1)  # a bundle on a GPU: images a call (HookedSegmenter.many)
    pending: List[Tuple[np.ndarray, np.ndarray]] = []

    def segment_pending() -> int:
        if hasattr(segment, "last_timings"):
            segment.last_timings = []  # type: ignore[attr-defined]
        start = time.perf_counter()
        every = list(segment.many([rgb for rgb, _ in pending]))  # type: ignore[attr-defined]
        elapsed = 1000.0 * (time.perf_counter() - start) / len(pending)  # (each image's share of the call)
        if len(every) != len(pending):  # (never scored short: each image is counted in the metrics or it is an error)
            raise ValueError(f"a batched segmenter gave {len(every)} label maps for {len(pending)} images")
        timings = list(getattr(segment, "last_timings", None) or [])
        timings = timings if len(timings) == len(pending) else [None] * len(pending)
        for (rgb, gt), labels, timing in zip(pending, every, timings, strict=True):
            speed.add(timing or {"predict": elapsed}, rgb.shape[:2])
            cm.update(labels, gt)
        count = len(pending)
        pending.clear()
        return count

    for i in tqdm(range(n), desc=desc, disable=not progress, dynamic_ncols=True):
        sample = ds.load_safe(i)
        if sample is None:
            continue
        if batch > 1:  # several images a call: segmented when the batch is full (and the rest at the end)
            pending.append(sample)
            done += segment_pending() if len(pending) == batch else 0
            continue
        rgb, gt = sample
        if hasattr(segment, "last_timing"):
            segment.last_timing = None  # type: ignore[attr-defined]
        start = time.perf_counter()
        labels = segment(rgb)
        elapsed = 1000.0 * (time.perf_counter() - start)
        speed.add(getattr(segment, "last_timing", None) or {"predict": elapsed}, rgb.shape[:2])
        cm.update(labels, gt)
        done += 1
    done += segment_pending() if pending else 0
    out = summarize(cm, class_names, unseen)
    out.update({"images": done, "skipped": len(ds.skipped), "skipped_files": list(ds.skipped.values())[:20]})
    out["speed"] = speed.as_dict()  # the backend and precision: evaluate() adds what ran
    return out


def evaluation_settings(meta, dataset_name: str, settings: str = "official") -> Optional[Dict[str, Any]]:
    """The record of the test settings a bundle (its ``BundleMeta``) is evaluated with on ``dataset_name``: its
    family's official per-dataset settings (``Family.evaluation.settings``), or None when the family has none."""
    from zsseg_rt.contract.registry import get_family

    _check_settings(settings)
    return get_family(meta.family).evaluation.settings(meta, dataset_name, settings)


def apply_evaluation_settings(
    engine, dataset_name: str, settings: str = "official"
) -> Tuple[Optional[Dict[str, Any]], Callable[[], None]]:
    """Make an Engine follow its family's settings for ``dataset_name`` (:func:`evaluation_settings`), its family
    looked up in the registry (:func:`follow_settings` with it).

    Returns:
        ``(record or None, restore)``: ``restore()`` gives the Engine its own settings back.
    """
    return follow_settings(evaluation_of(engine), engine, dataset_name, settings)


def follow_settings(
    evaluation: Any, engine, dataset_name: str, settings: str = "official"
) -> Tuple[Optional[Dict[str, Any]], Callable[[], None]]:
    """Make an Engine follow the settings ``evaluation`` (its family's ``Evaluation``) gives for ``dataset_name``;
    ``(record or None, restore)`` as :func:`apply_evaluation_settings`."""
    _check_settings(settings)
    record = evaluation.settings(engine.meta, dataset_name, settings)
    if record is None:
        return None, lambda: None
    return record, evaluation.apply_settings(engine, record)


def _check_settings(settings: str) -> None:
    from zsseg_rt.contract.family import EVALUATION_SETTINGS

    if settings not in EVALUATION_SETTINGS:
        raise ValueError(f"settings must be one of {EVALUATION_SETTINGS}, got {settings!r}")


def save_json(metrics: Dict[str, Any], path: Union[str, Path]) -> None:
    """``metrics`` as JSON at ``path``; a write the disk refuses (full) raises an ``OSError`` naming ``path``."""
    from zsseg_rt.errors import naming_path

    with naming_path(path, "writing the metrics"), open(path, "w", encoding="utf-8") as f:
        json.dump(metrics, f, indent=1)
