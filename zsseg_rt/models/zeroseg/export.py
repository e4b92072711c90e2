"""ZeroSeg's export: the Engine bundle (:func:`export_zeroseg_bundle`) and the student's ONNX graph alone
(:func:`export_zeroseg_onnx`, checked against PyTorch with ONNX Runtime).

The bundle, for :class:`zsseg_rt.Engine`, has the shape every bundle has. GroupViT's test-time inference (which
ZeroSeg follows, :mod:`.predict`) is written exactly as the bundle's three
graphs plus the shared post-processing:

* image encoder ``image [B, 3, S, S]`` -> ``segment_features [B, m, E]``, ``global_feature [B, E]``,
  ``assignment_maps [B, m, S/p, S/p]`` (the student, all patches, S = ``crop_size``, 448 by default);
* head ``(text_embeddings [C, E], *image outputs)`` -> ``mask_logits [B, 1 + C, S, S]``: the per-window class maps
  of :func:`.predict.window_class_maps` (GroupViT's ``encode_decode``: segment scores, top-k filter, background
  channel from the threshold, maps upsampled to the window, each pixel painted with its arg-max segment);
* text encoder: the CLIP text tower of the teacher (``clip_model``), the one that classifies segments;
* post-processing ``"maps"`` (:class:`zsseg_rt.pipeline.Postprocessor`): windows averaged, resized to the image,
  arg-max; ``postprocess.background_label`` makes the Engine's label 0 "background" and 1..C the vocabulary.

The background threshold is a constant of the head graph (recorded in ``meta.json``): export one bundle per
threshold (VOC 0.95, Context 0.05, COCO-Object 0.35). Only the sliding-window test mode has a bundle form (the
graphs have one input size); GroupViT's configs use it for all three datasets.

The ONNX graph alone: ``images [B, 3, S, S]`` (normalised, S = the config's image_size) -> ``segment_features
[B, m, E]``, ``global_feature [B, E]``, ``assignment_maps [B, m, S/p, S/p]``; batch is dynamic. Classifying the
segments against text embeddings and painting pixels (:mod:`zsseg_rt.models.zeroseg.predict`) are cheap and stay
outside.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import nn

from zsseg_rt.bundle import Names
from zsseg_rt.runtime.backends.table import REFERENCE_BACKEND

from .config import ZeroSegConfig
from .predict import predict_image, window_class_maps

__all__ = [
    "ZeroSegBundleModel",
    "BundleConfig",
    "build_bundle_model",
    "export_zeroseg_bundle",
    "IMAGE_OUTPUTS",
    "export_zeroseg_onnx",
    "verify_zeroseg_onnx",
    "INPUT_NAME",
    "OUTPUT_NAMES",
]

IMAGE_OUTPUTS = (Names.SEGMENT_FEATURES, Names.GLOBAL_FEATURE, Names.ASSIGNMENT_MAPS)
LABEL_AGREEMENT = 0.999  # Engine (ONNX Runtime) vs PyTorch labels on the verification photos
# Scores (averaged class-map values, probabilities in [0, 1]) where the labels agree: their fp32 error is that
# of the graph outputs (each within the error model of zsseg_rt.export.numeric_bounds, ~1e-6 at unit scale)
# times the softmax's sensitivity (<= 1 per logit at logit scale 100: ~1e-4 per unit of cosine error) -
# measured ~1e-6; 1e-4 = ~800 ulps of 1 keeps a margin while a wrong threshold or template moves them by 1e-2.
SCORE_ATOL = 1e-4


class BundleConfig:
    """The view of a ZeroSeg config that the bundle exporter reads (graph size = ``crop_size``, not the training
    ``image_size``); ``to_dict`` is the full ZeroSeg config, recorded in ``meta.json``."""

    family = "zeroseg"

    def __init__(self, config: ZeroSegConfig):
        self.zeroseg = config
        self.image_size = int(config.crop_size)
        self.patch_size = int(config.patch_size)
        self.embed_dim = int(config.embed_dim)
        self.class_names = list(config.class_names)
        self.seen_classes: List[int] = []
        self.calibration_bias = 0.0  # no seen-class calibration in ZeroSeg
        self.templates = list(config.templates)
        self.crop_size = int(config.crop_size)
        self.stride = int(config.stride)
        self.test_scale = [int(config.max_long_side), int(config.short_side)]
        self.mean = list(config.mean)
        self.std = list(config.std)

    def to_dict(self) -> Dict[str, Any]:
        return self.zeroseg.to_dict()


class ZeroSegBundleModel(nn.Module):
    """The ZeroSeg student + the teacher's CLIP text tower, with the bundle hooks of :mod:`zsseg_rt.export.graphs`.

    Args:
        student: a :class:`~.model.ZeroSeg` (eval mode).
        clip: the open_clip ``CLIP`` of ``student.config.clip_model`` whose text tower encodes the vocabulary
            (:class:`~.teacher.CLIPTeacher` ``.clip``).
        background_threshold: baked into the head graph (default: the config's).
    """

    family = "zeroseg"
    export_image_outputs = IMAGE_OUTPUTS

    def __init__(self, student: Any, clip: nn.Module, background_threshold: Optional[float] = None):
        super().__init__()
        from open_clip.tokenizer import SimpleTokenizer

        from zsseg_rt.contract.common.text import TextEncoder

        cfg = student.config
        if cfg.test_mode != "slide":
            raise ValueError(
                f"a ZeroSeg bundle runs the sliding-window test mode (fixed-size graphs); the config has test_mode "
                f"{cfg.test_mode!r}: set test_mode='slide' or run whole-image inference in PyTorch (infer.predict)"
            )
        self.student = student.eval()
        context = int(clip.positional_embedding.shape[0])
        self.text_encoder = TextEncoder(clip, SimpleTokenizer(context_length=context)).eval()
        if self.text_encoder.embed_dim != cfg.embed_dim:
            raise ValueError(
                f"the text tower gives {self.text_encoder.embed_dim}-d embeddings but the student projects to "
                f"embed_dim {cfg.embed_dim}: pass the CLIP model of the student's teacher ({cfg.clip_model})"
            )
        thr = cfg.background_threshold if background_threshold is None else background_threshold
        self.background_threshold = float(thr)
        self.zeroseg_config: ZeroSegConfig = cfg
        self.config = BundleConfig(cfg)
        for p in self.parameters():
            p.requires_grad_(False)

    @property
    def export_postprocess(self) -> Dict[str, Any]:
        cfg = self.zeroseg_config
        return {
            "activation": "maps",
            "background_label": "background",
            "background_threshold": self.background_threshold,
            "background_threshold_in_head": True,
            "clamp_background_threshold": bool(cfg.clamp_background_threshold),
            "score_mode": cfg.score_mode,
            "logit_scale": float(cfg.logit_scale),
            "topk_classes": int(cfg.topk_classes),
            "affinity_product": bool(cfg.affinity_product),
            "assignment_maps": cfg.assignment_maps,
            "short_side": int(cfg.short_side),
        }

    def export_encode_image(self, image: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        return tuple(self.student(image))

    def export_decode(self, text, segments, global_feature, maps, grid) -> torch.Tensor:
        size = (int(grid[0]) * self.config.patch_size, int(grid[1]) * self.config.patch_size)
        return window_class_maps(
            segments, global_feature, maps, text, self.zeroseg_config, size, self.background_threshold
        )

    @torch.no_grad()
    def text_embeddings(self, names: Sequence[str], templates: Optional[Sequence[str]] = None) -> torch.Tensor:
        """[C, E] class embeddings as the Engine computes them (per prompt normalised, averaged, normalised)."""
        return self.text_encoder.encode(list(names), list(templates or self.config.templates))

    # ------------------------------------------------------------------ verification (export_bundle hook)
    def export_verify(self, bundle_dir: str, images: Sequence[str] = (), seed: int = 0) -> Dict[str, Any]:
        """ONNX Runtime vs PyTorch for a freshly written bundle: the text and image graphs on random and real
        windows, and the whole Engine (ONNX Runtime) against :func:`.predict.predict_image` (PyTorch) on every
        verification photo and a random image: labels >= 99.9 % equal and >= 99.9 % of the pixels with the same
        label and a score within ``SCORE_ATOL``. Returns the JSON-able report (``passed``)."""
        return verify_zeroseg_bundle(bundle_dir, self, images, seed)


def build_bundle_model(
    student: Any, clip_weights: Optional[str], background_threshold: Optional[float] = None
) -> ZeroSegBundleModel:
    """Wrap a ZeroSeg student with its teacher's text tower: ``clip_weights`` an open_clip tag of the config's
    ``clip_model`` (e.g. ``"openai"``) or a local weight file; None = random text tower (tests only)."""
    from .teacher import CLIPTeacher

    teacher = CLIPTeacher(student.config, clip_weights, text_tower=True)
    return ZeroSegBundleModel(student, teacher.clip, background_threshold)


def export_zeroseg_bundle(
    student: Any,
    out_dir: str,
    clip_weights: Optional[str] = None,
    background_threshold: Optional[float] = None,
    verify_images: Sequence[str] = (),
    **kwargs: Any,
) -> str:
    """``export_bundle`` for a ZeroSeg student (see :func:`build_bundle_model`); ``kwargs`` go to export_bundle."""
    from zsseg_rt.export.onnx_export import export_bundle

    model = build_bundle_model(student, clip_weights, background_threshold)
    return export_bundle(model, out_dir, verify_images=verify_images, **kwargs)


def _max_abs(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64)))) if a.size else 0.0


def verify_zeroseg_bundle(
    bundle_dir: str, model: ZeroSegBundleModel, images: Sequence[str] = (), seed: int = 0
) -> Dict[str, Any]:
    """See :meth:`ZeroSegBundleModel.export_verify`."""
    import onnxruntime as ort

    from zsseg_rt import pipeline
    from zsseg_rt.bundle import GRAPH_FILES, Files, load_meta
    from zsseg_rt.export.numeric_bounds import BOUND_MODEL, fp32_error_case
    from zsseg_rt.export.ort_jobs import cpu_session
    from zsseg_rt.export.verify import float64_twin
    from zsseg_rt.image_io import read_image_bgr
    from zsseg_rt.runtime.engine import Engine
    from zsseg_rt.vocabulary import ClipTokenizer, expand_templates

    model.eval()
    meta = load_meta(bundle_dir)
    rng = np.random.default_rng(seed)
    sess = {role: cpu_session(meta.file(name)) for role, name in GRAPH_FILES.items()}
    cases: List[Dict[str, Any]] = []
    names = list(meta.training_class_names)[: min(meta.max_classes, 20)] or ["object"]
    tokenizer = ClipTokenizer(meta.file(Files.TOKENIZER), meta.context_length)
    tokens = tokenizer(expand_templates(names, meta.templates[:2]))
    twin = float64_twin(model)
    with torch.inference_mode():
        ref = model.text_encoder.encode_tokens(torch.from_numpy(tokens)).numpy()
        ref64 = twin.text_encoder.encode_tokens(torch.from_numpy(tokens)).numpy()
    got = sess["text"].run(None, {Names.TOKENS: tokens})[0]
    cases.append(dict({"graph": "text_encoder"}, **fp32_error_case(got, ref, ref64)))
    size = meta.image_size
    photos = [pipeline.to_rgb_uint8(read_image_bgr(p), "bgr") for p in images]
    batches = [("random", rng.standard_normal((2, 3, size, size)).astype(np.float32))]
    for path, rgb in zip(images, photos):
        chw = pipeline.normalize_image(pipeline.rescale_keep_ratio(rgb, meta.test_scale), meta.mean, meta.std)
        win = pipeline.sliding_windows(chw.shape[1], chw.shape[2], size, meta.stride)[0]
        crop = pipeline.pad_to_multiple(chw[:, win.y1 : win.y2, win.x1 : win.x2], meta.patch_size, (size, size))
        batches.append((str(path), crop[None]))
    for source, batch in batches:
        with torch.inference_mode():
            want = [t.numpy() for t in model.student(torch.from_numpy(batch))]
            want64 = [t.numpy() for t in twin.student(torch.from_numpy(batch).double())]
        have = sess["image"].run(list(IMAGE_OUTPUTS), {Names.IMAGE: batch})
        for name, a, a64, b in zip(IMAGE_OUTPUTS, want, want64, have):
            cases.append(
                dict({"graph": "image_encoder", "input": source, "output": name}, **fp32_error_case(b, a, a64))
            )
    # the whole Engine (ONNX Runtime) against the PyTorch inference, on the photos and one random image
    engine = Engine(bundle_dir, classes=names, backend=REFERENCE_BACKEND, device="cpu", verify=False)
    with torch.inference_mode():
        text = model.text_embeddings(names, meta.templates)
    rgb_random = rng.integers(0, 256, (size * 3 // 4, size + size // 3, 3), dtype=np.uint8)
    for source, rgb in [("random", rgb_random)] + list(zip(map(str, images), photos)):
        result = engine(rgb, color_order="rgb")
        labels, scores = predict_image(model.student, rgb, text, model.background_threshold)
        labels_np, scores_np = labels.numpy(), scores.numpy()
        same = result.labels == labels_np
        close = same & (np.abs(result.scores - scores_np) <= SCORE_ATOL)
        cases.append(
            {
                "graph": "engine",
                "input": source,
                "label_agreement": float(same.mean()),
                # a pixel between two segments of the same class may take the other one (fp32 near-tie of the
                # assignment maps): same label, another score; such pixels count against score_agreement
                "score_agreement": float(close.mean()),
                "labels_present": int(len(np.unique(labels_np))),
                "min_agreement": LABEL_AGREEMENT,
                "score_max_abs": _max_abs(result.scores[same], scores_np[same]),
                "score_atol": SCORE_ATOL,
            }
        )
    passed = all(
        c.get("passed", True)
        and c.get("label_agreement", 1.0) >= LABEL_AGREEMENT
        and c.get("score_agreement", 1.0) >= LABEL_AGREEMENT
        for c in cases
    )
    return {
        "passed": bool(passed),
        "runtime": f"onnxruntime {ort.__version__} CPU",
        "reference": "zsseg_rt.models.zeroseg.predict.predict_image (PyTorch)",
        "bound_model": BOUND_MODEL,
        "label_agreement_min": LABEL_AGREEMENT,
        "cases": cases,
    }


def default_verify_images() -> List[str]:
    """The package's sample photos (used by ``zsseg export`` when none are given)."""
    from zsseg_rt.assets import SAMPLES_DIR

    folder = os.path.join(str(SAMPLES_DIR), "JPEGImages")
    return [os.path.join(folder, n) for n in sorted(os.listdir(folder))] if os.path.isdir(folder) else []


# --- the student's ONNX graph alone ---

INPUT_NAME = "images"
OUTPUT_NAMES = (Names.SEGMENT_FEATURES, Names.GLOBAL_FEATURE, Names.ASSIGNMENT_MAPS)
SEGMENT_FLIPS = 0.001  # patches whose arg-max segment may differ (fp32 near-ties of the assignment maps)


def export_zeroseg_onnx(
    model, path: Union[str, os.PathLike], opset: int = 17, verify: bool = True, seed: int = 0
) -> Dict[str, float]:
    """Export ``model`` (a :class:`~zsseg_rt.models.zeroseg.model.ZeroSeg`, put in eval mode) to ``path`` and,
    with ``verify``, compare ONNX Runtime with PyTorch on random batches (raises ``RuntimeError`` beyond the
    tolerances). Returns the measured max-abs differences (empty without ``verify``)."""
    model = model.eval()
    size = model.config.image_size
    dummy = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(seed))
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(
            model,
            (dummy,),
            str(out),
            input_names=[INPUT_NAME],
            output_names=list(OUTPUT_NAMES),
            dynamic_axes={INPUT_NAME: {0: "batch"}, **{n: {0: "batch"} for n in OUTPUT_NAMES}},
            opset_version=opset,
            dynamo=False,
        )
    return verify_zeroseg_onnx(out, model, seed) if verify else {}


def verify_zeroseg_onnx(path: Union[str, os.PathLike], model, seed: int = 0) -> Dict[str, float]:
    """ONNX Runtime vs PyTorch for batches of 1 and 3: per output the error against the float64 model (the
    error model of :mod:`zsseg_rt.export.numeric_bounds`: within 8x PyTorch's own fp32 error), and the fraction
    of patches whose arg-max segment differs; raises ``RuntimeError`` when a bound is exceeded. Returns, per
    output, the largest error against float64 and its bound (``<name>_bound``), and the flip fraction."""
    from zsseg_rt.export.numeric_bounds import BOUND_MODEL, fp32_error_case
    from zsseg_rt.export.ort_jobs import cpu_session
    from zsseg_rt.export.verify import as_float64, float64_twin

    session = cpu_session(str(path))
    twin = float64_twin(model)
    size = model.config.image_size
    rng = np.random.default_rng(seed)
    report: Dict[str, float] = {}
    failed = []
    flips = total = 0
    for batch in (1, 3):
        x = rng.standard_normal((batch, 3, size, size)).astype(np.float32)
        got = session.run(list(OUTPUT_NAMES), {INPUT_NAME: x})
        with torch.no_grad():
            ref = [t.numpy() for t in model(torch.from_numpy(x))]
            ref64 = [t.numpy() for t in twin(as_float64(x))]
        for name, g, r, r64 in zip(OUTPUT_NAMES, got, ref, ref64):
            if g.shape != r.shape:
                raise RuntimeError(f"ONNX output {name} has shape {g.shape}, PyTorch {r.shape}")
            case = fp32_error_case(g, r, r64)
            report[name] = max(report.get(name, 0.0), case["max_abs"])
            report[f"{name}_bound"] = max(report.get(f"{name}_bound", 0.0), case["atol"])
            if not case["passed"]:
                failed.append((name, batch, case))
        flips += int((got[2].argmax(1) != ref[2].argmax(1)).sum())
        total += ref[2].shape[0] * ref[2].shape[2] * ref[2].shape[3]
    report["segment_flip_fraction"] = flips / total
    if failed or report["segment_flip_fraction"] > SEGMENT_FLIPS:
        raise RuntimeError(
            f"ONNX export of ZeroSeg disagrees with PyTorch: {report} (bound: {BOUND_MODEL}; failed {failed}; "
            f"segment flips at most {SEGMENT_FLIPS:.1%})"
        )
    return report
