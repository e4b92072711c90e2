"""Numerical check of an exported bundle: ONNX Runtime against PyTorch on random and real inputs."""

from __future__ import annotations

from typing import Any, Dict, List, Sequence

import numpy as np
import torch

from zsseg_rt import ops, pipeline
from zsseg_rt.bundle import GRAPH_FILES, Files, Names, load_meta
from zsseg_rt.vocabulary import ClipTokenizer, expand_templates

from .graphs import HeadGraph, ImageEncoderGraph, TextEncoderGraph

LOGIT_ATOL = 1e-4  # issue 4: mask logits within 1e-4 max-abs in fp32 ...
LOGIT_RTOL = 1e-5  # ... plus 1e-5 of the largest |logit|: fp32 error of graph re-ordering scales with it
EMBED_ATOL = 1e-4  # embeddings are unit vectors; fp32 graph re-ordering gives ~1e-6
LABEL_AGREEMENT = 0.999  # >= 99.9 % identical labels after the shared post-processing


def _read_image(path: str) -> np.ndarray:
    from zsseg_rt.image_io import ImageReadError, read_image_bgr

    try:
        return read_image_bgr(path)  # refused from the header past the pixel limit (zsseg_rt.image_io)
    except ImageReadError as exc:
        raise FileNotFoundError(f"verification image: {exc}") from None


def _window_batch(paths: Sequence[str], meta, rng: np.random.Generator) -> List[np.ndarray]:
    size = meta.image_size
    batches = [rng.standard_normal((2, 3, size, size)).astype(np.float32)]
    for path in paths:
        rgb = pipeline.to_rgb_uint8(_read_image(path), "bgr")
        chw = pipeline.normalize_image(pipeline.rescale_keep_ratio(rgb, meta.test_scale), meta.mean, meta.std)
        win = pipeline.sliding_windows(chw.shape[1], chw.shape[2], size, meta.stride)[0]
        crop = pipeline.pad_to_multiple(chw[:, win.y1 : win.y2, win.x1 : win.x2], meta.patch_size, (size, size))
        batches.append(crop[None])
    return batches


def _max_abs(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64)))) if a.size else 0.0


def verify_bundle(bundle_dir: str, model, images: Sequence[str] = (), seed: int = 0) -> Dict[str, Any]:
    """Compare every graph of ``bundle_dir`` run by ONNX Runtime (CPU) with ``model`` in PyTorch.

    Returns:
        a JSON-able report: per-case max-abs differences, label agreement, thresholds and ``passed``.
    """
    import onnxruntime as ort

    model.eval()
    meta = load_meta(bundle_dir)
    io = meta.io
    rng = np.random.default_rng(seed)
    sess = {
        role: ort.InferenceSession(meta.file(name), providers=["CPUExecutionProvider"])
        for role, name in GRAPH_FILES.items()
    }
    image_graph, head_graph, text_graph = ImageEncoderGraph(model), HeadGraph(model, meta.grid), TextEncoderGraph(model)
    tokenizer = ClipTokenizer(meta.file(Files.TOKENIZER), meta.context_length)
    names = list(meta.training_class_names)[: min(meta.max_classes, 20)] or ["object"]
    tokens = tokenizer(expand_templates(names, meta.templates[:2]))
    cases: List[Dict[str, Any]] = []
    with torch.inference_mode():
        text_ref = text_graph(torch.from_numpy(tokens)).numpy()
        text_ort = sess["text"].run(None, {Names.TOKENS: tokens})[0]
        cases.append(
            {
                "graph": "text_encoder",
                "prompts": int(len(tokens)),
                "max_abs": _max_abs(text_ref, text_ort),
                "atol": EMBED_ATOL,
            }
        )
        text = text_ref[: len(names)]
        for idx, batch in enumerate(_window_batch(images, meta, rng)):
            source = "random" if idx == 0 else images[idx - 1]
            feats_ref = [t.numpy() for t in image_graph(torch.from_numpy(batch))]
            feats_ort = sess["image"].run(None, {Names.IMAGE: batch})
            cases.append(
                {
                    "graph": "image_encoder",
                    "input": source,
                    "atol": EMBED_ATOL,
                    "max_abs": max(_max_abs(a, b) for a, b in zip(feats_ref, feats_ort)),
                }
            )
            feeds = dict(zip(io["image"]["outputs"], feats_ref))
            for classes in sorted({1, len(names), meta.max_classes}):
                t = text if classes == len(names) else _random_text(rng, classes, meta.embed_dim)
                ref = head_graph(torch.from_numpy(t), *(torch.from_numpy(a) for a in feats_ref)).numpy()
                got = sess["head"].run(None, dict(feeds, **{Names.TEXT_EMBEDDINGS: t}))[0]
                size = (meta.image_size, meta.image_size)
                labels_ref, _ = pipeline.segment_fast(ref, size, None)
                labels_got, _ = pipeline.segment_fast(np.ascontiguousarray(got), size, None)
                scale = float(np.abs(ref).max())
                max_abs = _max_abs(ref, got)
                cases.append(
                    {
                        "graph": "head",
                        "input": source,
                        "classes": int(classes),
                        "ref_max_abs": scale,
                        "max_abs": max_abs,
                        "atol": LOGIT_ATOL + LOGIT_RTOL * scale,
                        "label_agreement": float((labels_ref == labels_got).mean()),
                        "flips_beyond_ties": _flips_beyond_ties(ref, labels_ref, labels_got, size, max_abs),
                    }
                )
    # Labels: >= 99.9 % equal, or every differing pixel is a near-tie of the reference (its top two classes within
    # twice the measured logit error, where either answer is within fp32 rounding of correct).
    passed = all(
        c["max_abs"] <= c["atol"]
        and (c.get("label_agreement", 1.0) >= LABEL_AGREEMENT or c.get("flips_beyond_ties", 0) == 0)
        for c in cases
    )
    return {
        "passed": bool(passed),
        "runtime": f"onnxruntime {ort.__version__} CPU",
        "label_agreement_min": LABEL_AGREEMENT,
        "cases": cases,
    }


def _flips_beyond_ties(ref: np.ndarray, labels_ref: np.ndarray, labels_got: np.ndarray, size, max_abs: float) -> int:
    """Pixels whose labels differ although the reference's two best classes are more than 2 x ``max_abs`` apart."""
    differ = labels_ref != labels_got
    if not differ.any():
        return 0
    up = ops.upsample(np.ascontiguousarray(ref, dtype=np.float32), tuple(size))  # [B, C, H, W]
    top2 = np.sort(up, axis=1)[:, -2:] if up.shape[1] > 1 else np.concatenate([up, up], axis=1)
    gap = top2[:, 1] - top2[:, 0]
    return int(np.count_nonzero(differ & (gap > 2.0 * max_abs)))


def _random_text(rng: np.random.Generator, classes: int, dim: int) -> np.ndarray:
    text = rng.standard_normal((classes, dim)).astype(np.float32)
    return np.ascontiguousarray(text / np.linalg.norm(text, axis=1, keepdims=True), dtype=np.float32)
