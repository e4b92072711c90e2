"""Export of a ZegFormer model to a bundle of the runtime's two-stage pipeline (``runtime/pipelines/two_stage.py``).

Graphs (``bundle.spec.TWO_STAGE_GRAPH_FILES``, I/O in ``bundle.spec.two_stage_graph_io``):

* ``mask_branch.onnx``: ``image [1,3,H,W]`` (normalised, zero-padded to ``size_divisibility``; H and W dynamic) +
  ``text_embeddings [C,D]`` -> ``class_logits [1,Q,C+1]``, ``query_masks [1,Q,H/4,W/4]`` (ResNet, pixel decoder,
  transformer decoder, mask embeddings, cosine classifier with the learnt background embedding);
* ``clip_image_encoder.onnx`` (fp32, whatever the model's ``clip_precision``): ``crops [N,3,S,S]`` (S = the CLIP input size, N dynamic) -> ``crop_embeddings
  [N,D]`` L2-normalised (CLIP's image tower);
* ``text_encoder.onnx``: the CLIP text tower, as in every bundle (both text-embedding sets come from it).

The crops, boxes, fusion and semantic maps run on the runtime side (NumPy + native ops). The export is checked
twice: every graph with ONNX Runtime against PyTorch on random and real inputs, and the whole ``Engine``
(ONNX Runtime) against ``predict_zegformer`` on a synthetic image and the ``verify_images``.
"""

from __future__ import annotations

import os
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch
from torch import nn

from zsseg_rt.bundle import TWO_STAGE_GRAPH_FILES, Files, Names, two_stage_graph_io
from zsseg_rt.export.graphs import TextEncoderGraph
from zsseg_rt.export.numeric_bounds import fp32_error_case
from zsseg_rt.export.ort_jobs import Runner, run_in_process
from zsseg_rt.runtime.backends.table import REFERENCE_BACKEND

__all__ = [
    "MaskBranchGraph",
    "ClipImageGraph",
    "export_zegformer_graphs",
    "export_zegformer_bundle",
    "zegformer_meta",
    "verify_zegformer_bundle",
    "flips_beyond_ties",
    "synthetic_image",
]

# Winning fused scores, Engine vs predict_zegformer. They are sums over queries of probability x sigmoid, of
# order 1; their fp32 error is that of the graph outputs feeding them (each within the error model of
# export.numeric_bounds: ~1e-5 at the class logits' scale of 100, ~1e-6 for mask logits and embeddings) times
# the fusion's sensitivity (softmax, geometric mix and sigmoid have derivatives <= 1): ~1e-5. 1e-3 leaves a
# factor 100 for the CLIP crops, whose boxes come from thresholded masks. Measured ~1e-6 on the tiny model.
SCORE_ATOL = 1e-3


class MaskBranchGraph(nn.Module):
    """``(image [B,3,H,W], text_embeddings [C,D])`` -> ``(class_logits [B,Q,C+1], query_masks [B,Q,H/4,W/4])``."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.eval()

    def forward(self, image: torch.Tensor, text: torch.Tensor):
        out = self.model.forward(image, text)
        return out["pred_logits"], out["pred_masks"]


class ClipImageGraph(nn.Module):
    """``crops [N,3,S,S]`` -> ``crop_embeddings [N,D]`` (``ZegFormer.encode_crops``)."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.eval()

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        from zsseg_rt.contract.common.tracing import mha_fastpath_off_when_tracing

        with mha_fastpath_off_when_tracing():  # the MHA inference fast path has no ONNX export
            return self.model.encode_crops(crops)


def export_zegformer_graphs(model, out_dir: str, opset: int) -> None:
    """Write the three graphs of ``model`` (eval, CPU, fp32) into ``out_dir`` and run ``onnx.checker`` on each."""
    from zsseg_rt.export.onnx_export import dummy_tokens, export_graph_jobs

    c = model.config
    io = two_stage_graph_io()
    div = int(c.size_divisibility)
    image = torch.zeros(1, 3, 2 * div, 3 * div)  # non-square, so height and width stay separate symbols
    text = nn.functional.normalize(torch.randn(3, int(c.embed_dim), generator=torch.Generator().manual_seed(0)), dim=-1)
    crops = torch.zeros(2, 3, int(c.image_size), int(c.image_size))
    jobs = [
        ("mask", MaskBranchGraph(model), (image, text)),
        ("clip_image", ClipImageGraph(model), (crops,)),
        ("text", TextEncoderGraph(model), (dummy_tokens(),)),
    ]
    export_graph_jobs(jobs, io, TWO_STAGE_GRAPH_FILES, out_dir, opset)


def zegformer_meta(model, meta: Dict[str, Any]) -> Dict[str, Any]:
    """Adapt ``onnx_export.build_meta``'s content to a ZegFormer bundle: the CLIP input size as ``image_size``
    (crop/stride are unused by this runtime and set to it), the query classifier's templates, the I/O table and
    the ``zegformer`` section the runtime reads."""
    from zsseg_rt.models.zegformer.config import CLIP_BRANCH_TEMPLATES

    c = model.config
    size = int(c.image_size)
    meta.update(
        {
            "image_size": size,
            "patch_size": int(c.patch_size),
            "crop_size": size,
            "stride": size,
            "templates": list(c.query_templates),
            "test_scale": [int(c.test_max_size), int(c.test_short_side)],
            "io": two_stage_graph_io(),
            "postprocess": {"activation": "softmax"},  # informative: the fusion replaces the shared post-processing
            "two_stage": {
                "clip_templates": list(CLIP_BRANCH_TEMPLATES),
                "clip_logit_scale": float(model.clip_logit_scale.detach().exp()),
                "clip_image_size": size,
                "clip_mean": [float(v) for v in c.clip_mean],
                "clip_std": [float(v) for v in c.clip_std],
                "fusion": c.fusion,
                "clip_cls_style": c.clip_cls_style,
                "ensemble_lambda": float(c.ensemble_lambda),
                "size_divisibility": int(c.size_divisibility),
                "test_short_side": int(c.test_short_side),
                "test_max_size": int(c.test_max_size),
                "resize": "pil_bilinear",  # detectron2's ResizeShortestEdge on uint8: PIL bilinear (official)
                "clip_precision": "fp32",  # the graphs (the model's clip_precision applies to PyTorch only)
            },
            "tensorrt_compatibility": {
                "supported": False,
                "reason": "ZegFormer bundles run with ONNX Runtime or OpenVINO only",
            },
        }
    )
    return meta


def _max_abs(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64)))) if a.size else 0.0


def flips_beyond_ties(scores_ref: np.ndarray, labels_ref: np.ndarray, labels: np.ndarray, max_abs: float) -> int:
    """Pixels whose labels differ although the reference's two best class scores (``scores_ref [C,H,W]``) are more
    than ``2 x max_abs`` apart."""
    differ = labels != labels_ref
    if not differ.any():
        return 0
    if scores_ref.shape[0] < 2:
        return int(differ.sum())
    top2 = np.sort(scores_ref[:, differ], axis=0)[-2:]
    return int(np.count_nonzero(top2[1] - top2[0] > 2.0 * max_abs))


def synthetic_image(height: int = 90, width: int = 140, seed: int = 0) -> np.ndarray:
    """A smooth random ``[H, W, 3]`` uint8 RGB image (blobs of colour), used when no real image is given."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (6, 8, 3)).astype(np.float32)
    import cv2

    return np.clip(cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC), 0, 255).astype(np.uint8)


def _graph_cases(engine, model, names: List[str], rng: np.random.Generator, runner: Runner) -> List[Dict[str, Any]]:
    """Each graph of the bundle on random inputs (and the text graph on real prompts) against the PyTorch model,
    under the error model of :mod:`zsseg_rt.export.numeric_bounds` (float64 twin as the exact value)."""
    from zsseg_rt.export.verify import as_float64, float64_twin

    c = model.config
    graph = {role: engine.meta.file(name) for role, name in TWO_STAGE_GRAPH_FILES.items()}
    twin = float64_twin(model)
    jobs: List[Any] = []
    pending: List[Dict[str, Any]] = []
    with torch.inference_mode():
        tokens = engine.tokenizer([t.format(n) for n in names[:4] for t in engine.pipeline.clip_templates[:2]])
        refs = [
            (
                TextEncoderGraph(model)(torch.from_numpy(tokens)).numpy(),
                TextEncoderGraph(twin)(as_float64(tokens)).numpy(),
            )
        ]
        jobs.append((graph["text"], {Names.TOKENS: tokens}))
        pending.append({"case": {"graph": "text_encoder"}, "refs": refs})
        div = int(c.size_divisibility)
        text = model.text_embeddings(names).numpy()
        for h, w in ((2 * div, 3 * div), (4 * div, 2 * div)):
            image = rng.standard_normal((1, 3, h, w)).astype(np.float32)
            ref32 = [t.numpy() for t in MaskBranchGraph(model)(torch.from_numpy(image), torch.from_numpy(text))]
            ref64 = [t.numpy() for t in MaskBranchGraph(twin)(as_float64(image), as_float64(text))]
            jobs.append((graph["mask"], {Names.IMAGE: image, Names.TEXT_EMBEDDINGS: text}))
            pending.append(
                {"case": {"graph": "mask_branch", "input": f"random {h}x{w}"}, "refs": list(zip(ref32, ref64))}
            )
        size = int(c.image_size)
        for batch in (1, 3):
            crops = rng.standard_normal((batch, 3, size, size)).astype(np.float32)
            refs = [
                (
                    ClipImageGraph(model)(torch.from_numpy(crops)).numpy(),
                    ClipImageGraph(twin)(as_float64(crops)).numpy(),
                )
            ]
            jobs.append((graph["clip_image"], {Names.CROPS: crops}))
            pending.append({"case": {"graph": "clip_image_encoder", "crops": batch}, "refs": refs})
    cases: List[Dict[str, Any]] = []
    for p, outputs in zip(pending, runner(jobs)):
        measured = [fp32_error_case(got, r32, r64) for got, (r32, r64) in zip(outputs, p["refs"])]
        cases.append(dict(p["case"], **max(measured, key=lambda m: m["max_abs"] - m["atol"])))
        cases[-1]["passed"] = all(m["passed"] for m in measured)
    return cases


def verify_zegformer_bundle(
    bundle_dir: str, model, images: Sequence[str] = (), seed: int = 0, runner: Optional[Runner] = None
) -> Dict[str, Any]:
    """ONNX Runtime (CPU) against PyTorch: each graph on random and real inputs (the error model of
    :mod:`zsseg_rt.export.numeric_bounds`, float64 reference), then the whole ``Engine`` against
    ``predict_zegformer`` (labels and winning scores) on a synthetic image and on ``images``.

    Args:
        runner: executes the graph checks' ONNX Runtime jobs (default: in this process); the Engine part runs here.

    Returns:
        a JSON-able report with per-case measurements, the thresholds and ``passed``.
    """

    from zsseg_rt.export.verify import read_verification_image
    from zsseg_rt.models.zegformer.predict import predict_zegformer
    from zsseg_rt.runtime import Engine

    model.eval()
    c = model.config
    engine = Engine(bundle_dir, backend=REFERENCE_BACKEND, device="cpu", verify=True)
    names = list(c.class_names)[: min(engine.meta.max_classes, 20)]
    cases = _graph_cases(engine, model, names, np.random.default_rng(seed), runner or run_in_process)
    engine.set_classes(names)
    sources: List[Any] = [("synthetic", synthetic_image(seed=seed))]
    for path in images:
        from zsseg_rt import pipeline

        sources.append((path, pipeline.to_rgb_uint8(read_verification_image(path), "bgr")))
    for source, rgb in sources:
        result = engine(rgb, color_order="rgb")
        labels_ref, scores_ref = predict_zegformer(model, rgb, names, device="cpu")
        max_abs = _max_abs(result.scores, scores_ref.max(axis=0))
        cases.append(
            {
                "graph": "engine",
                "input": source,
                "size": [int(rgb.shape[0]), int(rgb.shape[1])],
                "label_agreement": float((result.labels == labels_ref).mean()),
                "flips_beyond_ties": flips_beyond_ties(scores_ref, labels_ref, result.labels, max_abs),
                "max_abs": max_abs,
                "atol": SCORE_ATOL,
            }
        )
    # Labels: >= 99.9 % equal, or every differing pixel is a near-tie of the reference (its two best classes within
    # twice the measured score error: either answer is within rounding of correct), as for the other families;
    # numerically, a graph case passes by its own judgement and every case's score error is within its bound.
    from zsseg_rt.export.verify import verification_report

    return verification_report(cases, numeric_passed=lambda c: c.get("passed", True) and c["max_abs"] <= c["atol"])


def export_zegformer_bundle(
    model,
    tmp: str,
    max_classes: int,
    opset: int,
    source: Optional[str],
    verify_images: Sequence[str],
    extra_meta: Optional[Dict[str, Any]],
    verify: bool = True,
) -> Dict[str, Any]:
    """Write a ZegFormer bundle into the temporary directory ``tmp`` (``export_bundle`` checks the destination,
    renames it into place and cleans up); returns the verification report (meta.json records it).
    ``verify=False`` (benchmark bundles only, ``python -m benchmarks zegformer_engine``) records ``passed: None``."""
    from zsseg_rt.bundle import write_meta
    from zsseg_rt.export.onnx_export import build_meta, hash_bundle_files
    from zsseg_rt.vocabulary import build_tokenizer_json

    precision = model.config.clip_precision
    model.config.clip_precision = "fp32"  # bundles hold fp32 graphs; checked against the model in fp32
    try:
        export_zegformer_graphs(model, tmp, opset)
        tok = model.text_encoder.tokenizer
        build_tokenizer_json(tok.encoder, tok.bpe_ranks, os.path.join(tmp, Files.TOKENIZER))
        meta = zegformer_meta(model, build_meta(model, max_classes, opset, source, {}))
        meta.update(extra_meta or {})
        meta["files"] = hash_bundle_files(tmp)
        write_meta(os.path.join(tmp, Files.META), meta)
        if verify:
            report = verify_zegformer_bundle(tmp, model, verify_images)
        else:
            report = {"passed": None, "skipped": "unverified benchmark bundle (python -m benchmarks zegformer_engine)"}
    finally:
        model.config.clip_precision = precision
    meta["verification"] = report
    write_meta(os.path.join(tmp, Files.META), meta)
    return report
