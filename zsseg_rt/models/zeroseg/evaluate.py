"""ZeroSeg's evaluation protocol ([P] §4.2 following GroupViT): zero-shot mIoU WITH a background class on
PASCAL VOC (21 = background + 20), PASCAL Context (60 = background + 59) and COCO-Object (81 = background + 80
things), background decided by the per-dataset threshold (paper: VOC 0.95, Context 0.05, COCO-Object 0.35; or
GroupViT's configs: 0.95 / 0.35 / 0.95), GroupViT's test pipeline (:func:`.predict.predict_image`: keep-ratio
rescale to (2048, 448), 448/224 sliding windows, class maps averaged, resized to the image, arg-max).

Labels are read raw (no reduce-zero-label): 0 = background, c = class c, 255 = ignore, the label convention of
:func:`zsseg_rt.models.zeroseg.predict.predict_image` and of a ZeroSeg bundle's Engine labels.

    python -m zsseg_rt.models.zeroseg.evaluate --model work_dirs/zeroseg_in1k/final --dataset voc \\
        --root data/VOCdevkit/VOC2012 --pretrained openai

or ``zsseg eval CHECKPOINT_OR_BUNDLE --dataset voc|context59|coco_object --text-weights openai``.

The protocol itself (thresholds, :func:`with_background`, :class:`BackgroundThresholdProtocol`: hooks of the eval
toolkit's evaluation) and the evaluation of an
``Engine`` on a ZeroSeg bundle (:func:`evaluate_zeroseg_bundle`) are torch-free, so a runtime-only install
(no torch) evaluates bundles: torch and the PyTorch inference are imported inside the student's functions only.
"""

from __future__ import annotations

import argparse
import copy
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from zsseg_rt.eval.evaluate import EvaluationProtocol, PreparedRun, run_prepared
from zsseg_rt.eval.metrics import ConfusionMatrix

from .config import DATASET_BACKGROUND_THRESHOLDS, GROUPVIT_BACKGROUND_THRESHOLDS

if TYPE_CHECKING:  # torch only inside the student's functions: the protocol and bundle evaluation are torch-free
    import torch

__all__ = [
    "BACKGROUND_THRESHOLD_PROTOCOL",
    "DATASET_BACKGROUND_THRESHOLDS",
    "GROUPVIT_BACKGROUND_THRESHOLDS",
    "PROTOCOL",
    "THRESHOLD_TABLES",
    "protocol_threshold",
    "with_background",
    "requested_threshold",
    "bundle_segmenter",
    "student_segmenter",
    "evaluate_zeroseg_bundle",
    "run_protocol",
    "protocol_run",
    "evaluate_zeroseg",
    "BackgroundThresholdProtocol",
    "is_zeroseg",
    "main",
]

BACKGROUND_THRESHOLD_PROTOCOL = "background_threshold"  # the protocol's name in bundles' meta.json (the registry)

# dataset type of zsseg_rt.data.build_dataset -> (threshold key, number of classes with background)
PROTOCOL = {"voc": ("voc", 21), "context59": ("context", 60), "coco_object": ("coco_object", 81)}
THRESHOLD_TABLES = {"paper": DATASET_BACKGROUND_THRESHOLDS, "groupvit": GROUPVIT_BACKGROUND_THRESHOLDS}


def protocol_threshold(dataset_name: str, table: str = "paper") -> Optional[float]:
    """The background threshold of a dataset (by its ``SegmentationDataset.name``, e.g. ``"voc_val"``) in
    ``table`` ("paper" or "groupvit"), or None for a dataset outside the protocol."""
    if table not in THRESHOLD_TABLES:
        raise ValueError(f"threshold table must be one of {sorted(THRESHOLD_TABLES)}, got {table!r}")
    for kind in sorted(PROTOCOL, key=len, reverse=True):
        if dataset_name == kind or dataset_name.startswith(kind + "_"):
            return float(THRESHOLD_TABLES[table][PROTOCOL[kind][0]])
    return None


def with_background(dataset):
    """A shallow copy of ``dataset`` that keeps background as class 0 (``reduce_zero_label`` off) and names it,
    so labels 0..C are in range (C + 1 classes)."""
    from zsseg_rt.data.splits import ClassSplit

    data = copy.copy(dataset)
    if not dataset.reduce_zero_label:
        raise ValueError(
            f"{dataset.name}: ZeroSeg's protocol needs a dataset whose label 0 is background (VOC, Context-59, "
            "COCO-Object read with reduce_zero_label)"
        )
    data.reduce_zero_label = False
    data.split = ClassSplit(dataset.split.name + "+background", ("background",) + tuple(dataset.class_names), ())
    return data


def protocol_run(segment: Callable[[np.ndarray], Any], dataset, extra: Dict[str, Any]) -> PreparedRun:
    """The protocol's run for the eval toolkit's loop (:func:`zsseg_rt.eval.evaluate.run_prepared`):
    ``segment(rgb) -> labels`` (0 = background) over ``with_background(dataset)`` (background + the dataset's
    classes, none unseen); metrics in :func:`zsseg_rt.eval.metrics.summarize`'s form plus the protocol's name and
    ``extra``."""
    data = with_background(dataset)
    names = ["background"] + list(dataset.class_names)
    tail = {"dataset": dataset.name, "protocol": "ZeroSeg / GroupViT (background + classes, threshold)"}
    return PreparedRun(segment, data, names, (), f"zeroseg eval {dataset.name}", {**tail, **extra})


def run_protocol(
    segment: Callable[[np.ndarray], Any],
    dataset,
    limit: Optional[int],
    progress: bool,
    extra: Dict[str, Any],
) -> Dict[str, Any]:
    """:func:`protocol_run` through the eval toolkit's loop: the metrics of ``segment`` on ``dataset``."""
    return run_prepared(protocol_run(segment, dataset, extra), limit, progress)


def requested_threshold(dataset, background_threshold: Optional[float], thresholds: str) -> Optional[float]:
    """The background threshold an evaluation on ``dataset`` asks for: ``background_threshold``, else the dataset's
    value in the table ``thresholds`` (None outside the table). A dataset outside the protocol is refused first."""
    with_background(dataset)  # refuses a dataset outside the protocol before any work
    if background_threshold is not None:
        return background_threshold
    return protocol_threshold(dataset.name, thresholds)


def bundle_segmenter(
    engine, dataset, threshold: Optional[float], text: Optional[np.ndarray] = None
) -> Tuple[Callable[[np.ndarray], Any], Dict[str, Any]]:
    """``(segment, extra)`` of an ``Engine`` on a ZeroSeg bundle for :func:`protocol_run` (no torch needed), its
    vocabulary set to the dataset's classes (or ``text``). The bundle's threshold is part of its head graph: another
    ``threshold`` (:func:`requested_threshold`) is refused."""
    names = list(dataset.class_names)
    baked = float(engine.meta.postprocess["background_threshold"])
    if threshold is not None and abs(float(threshold) - baked) > 1e-9:
        raise ValueError(
            f"this ZeroSeg bundle paints background below {baked} (fixed in its head graph); {dataset.name} asks "
            f"for {threshold}: export a bundle with that threshold (zsseg export --background-threshold {threshold}) "
            f"or pass --background-threshold {baked}"
        )
    if text is not None:
        engine.set_text_embeddings(names, text)
    else:
        engine.set_classes(names)

    def segment(rgb):
        return engine(rgb, color_order="rgb").labels

    return segment, {"mode": "slide", "source": "bundle", "background_threshold": baked}


def student_segmenter(
    model,
    dataset,
    threshold: Optional[float],
    mode: Optional[str] = None,
    text: Optional[np.ndarray] = None,
    text_weights: Optional[str] = None,
) -> Tuple[Callable[[np.ndarray], Any], Dict[str, Any]]:
    """``(segment, extra)`` of a PyTorch student for :func:`protocol_run` (:func:`.predict.predict_image`; ``threshold``
    None: the config's), its class embeddings ``text`` or, when None, its teacher's text tower (``text_weights``) on
    the dataset's classes."""
    import torch

    from .predict import predict_image

    names = list(dataset.class_names)
    if text is None:
        if text_weights is None:
            raise ValueError(
                "a ZeroSeg checkpoint has no text tower: pass --text-weights (its teacher's CLIP weights, e.g. "
                "openai) or --text-embeddings"
            )
        from .teacher import CLIPTeacher

        teacher = CLIPTeacher(model.config, text_weights, text_tower=True)
        text_t = teacher.to(next(model.parameters()).device).text_embeddings(names, model.config.templates)
    else:
        text_t = torch.as_tensor(np.asarray(text, dtype=np.float32))
    thr = model.config.background_threshold if threshold is None else threshold

    def segment(rgb):
        return predict_image(model, rgb, text_t, thr, mode)[0].numpy()

    return segment, {"mode": mode or model.config.test_mode, "source": "torch", "background_threshold": float(thr)}


def evaluate_zeroseg_bundle(
    engine,
    dataset,
    text: Optional[np.ndarray] = None,
    background_threshold: Optional[float] = None,
    thresholds: str = "paper",
    limit: Optional[int] = None,
    progress: bool = True,
) -> Dict[str, Any]:
    """``zsseg eval`` of an ``Engine`` on a ZeroSeg bundle (no torch needed): :func:`bundle_segmenter` with the
    :func:`requested_threshold`, then :func:`run_protocol`."""
    threshold = requested_threshold(dataset, background_threshold, thresholds)
    segment, extra = bundle_segmenter(engine, dataset, threshold, text)
    return run_protocol(segment, dataset, limit, progress, extra)


def evaluate_zeroseg(
    model,
    text: "torch.Tensor",
    dataset,
    background_threshold: Optional[float] = None,
    limit: Optional[int] = None,
    progress: bool = True,
    mode: Optional[str] = None,
) -> Dict[str, Any]:
    """mIoU of ``model`` on ``dataset`` (a :class:`zsseg_rt.data.SegmentationDataset` of VOC, Context-59 or
    COCO-Object, background reduced to ignore as those readers do) with class embeddings ``text`` [C, E] of its
    foreground classes (C = 20, 59 or 80). ``mode``: "slide" / "whole" (default: the config's ``test_mode``).

    Returns ``{"mIoU", "IoU" (per class, background first), "pixel_accuracy", "num_images", "threshold"}``
    (mIoU in percent, NaN classes absent from the ground truth and the prediction skipped).
    """
    import torch

    from zsseg_rt.console.progress import progress_bar

    from .predict import predict_image

    cfg = model.config
    data = with_background(dataset)
    n_cls = text.shape[0] + 1
    if n_cls != data.num_classes:
        raise ValueError(f"text has {text.shape[0]} rows for the {dataset.num_classes} classes of {dataset.name}")
    thr = cfg.background_threshold if background_threshold is None else float(background_threshold)
    cm = ConfusionMatrix(n_cls, ignore_index=255)
    n = len(data) if limit is None else min(len(data), int(limit))
    with torch.no_grad():
        for i in progress_bar(range(n), desc="zeroseg eval", disable=not progress, dynamic_ncols=True):
            rgb, gt = data.load(i)
            labels, _ = predict_image(model, rgb, text, thr, mode)
            cm.update(labels.numpy(), gt)
    iou = cm.iou()
    return {
        "mIoU": float(np.nanmean(iou) * 100.0),
        "IoU": [float(v) for v in iou],
        "pixel_accuracy": float(cm.pixel_accuracy()),
        "num_images": n,
        "threshold": thr,
    }


def is_zeroseg(obj) -> bool:
    """A ZeroSeg student or an Engine running a ZeroSeg bundle."""
    from zsseg_rt.eval.evaluate import evaluation_protocol

    return evaluation_protocol(obj) == BACKGROUND_THRESHOLD_PROTOCOL


class BackgroundThresholdProtocol(EvaluationProtocol):
    """GroupViT's protocol as ZeroSeg is evaluated under it, as hooks of the eval toolkit's evaluation
    (``ZeroSegEvaluation.protocol_hooks``): a student (PyTorch, :func:`.predict.predict_image`) or an ``Engine`` on a
    ZeroSeg bundle, over background + the dataset's classes; metrics in :func:`zsseg_rt.eval.metrics.summarize`'s
    form plus ``background_threshold``."""

    name = BACKGROUND_THRESHOLD_PROTOCOL

    def prepare(
        self,
        kind: str,
        obj,
        ds,
        evaluation: Any = None,
        unseen: Sequence[int] = (),
        mode: Optional[str] = None,
        text: Optional[np.ndarray] = None,
        device: Optional[str] = None,
        seen_classes: Optional[Sequence[int]] = None,
        settings: str = "official",
        text_weights: Optional[str] = None,
        background_threshold: Optional[float] = None,
        thresholds: str = "paper",
        **options: Any,
    ) -> PreparedRun:
        """``text``: ``[C, E]`` class embeddings in the dataset's order, or None: the student needs ``text_weights``
        (its teacher's CLIP weights, e.g. "openai"), a bundle uses its own text encoder. ``background_threshold``:
        None = the dataset's value in ``thresholds`` ("paper" or "groupvit"); a bundle's threshold is part of its
        head graph: a different requested value is refused. The generic protocol's ``unseen``, ``seen_classes`` and
        ``settings`` do not apply (every class is scored alike). Any other option is refused."""
        if options:
            raise TypeError(f"ZeroSeg's protocol takes no option(s) {sorted(options)}")
        threshold = requested_threshold(ds, background_threshold, thresholds)
        if getattr(obj, "meta", None) is not None:  # Engine on a ZeroSeg bundle: the torch-free path
            segment, extra = bundle_segmenter(obj, ds, threshold, text)
        else:
            segment, extra = student_segmenter(obj, ds, threshold, mode, text, text_weights)
        return protocol_run(segment, ds, extra)


def main(argv: Optional[List[str]] = None) -> int:
    import torch

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="native ZeroSeg checkpoint directory (work_dir/final)")
    ap.add_argument("--dataset", required=True, choices=sorted(PROTOCOL))
    ap.add_argument("--root", required=True, help="dataset root (layouts: zsseg_rt.data.datasets)")
    ap.add_argument("--split", default="val")
    ap.add_argument("--pretrained", required=True, help="CLIP weights of the text tower (the teacher's), e.g. openai")
    ap.add_argument("--threshold", type=float, default=None, help="background threshold (default: --thresholds)")
    ap.add_argument("--thresholds", default="paper", choices=sorted(THRESHOLD_TABLES), help="per-dataset table")
    ap.add_argument("--mode", default=None, choices=["slide", "whole"], help="default: the config's test_mode")
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args(argv)
    from zsseg_rt.data import build_dataset
    from zsseg_rt.models import create_model

    from .teacher import CLIPTeacher

    model = create_model(args.model, device=args.device)
    dataset = build_dataset({"type": args.dataset, "root": args.root, "split": args.split})
    teacher = CLIPTeacher(model.config, args.pretrained).to(args.device)
    text = teacher.text_embeddings(dataset.class_names, model.config.templates)
    key, _ = PROTOCOL[args.dataset]
    thr = THRESHOLD_TABLES[args.thresholds][key] if args.threshold is None else args.threshold
    result = evaluate_zeroseg(model, text, dataset, thr, args.limit, mode=args.mode)
    print(f"{args.dataset}: mIoU {result['mIoU']:.2f} over {result['num_images']} images (threshold {thr})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
