"""Numerical check of an exported bundle: ONNX Runtime against PyTorch on random and real inputs.

Every graph output is held to the error model of :mod:`zsseg_rt.export.numeric_bounds` (ONNX Runtime's error
against the float64 value within 8x PyTorch's own fp32 error on the same input), which holds whatever kernels
the CPU's instruction set selects; the head's labels must agree on >= 99.9 % of the pixels or differ only at
near-ties. The ONNX Runtime runs are collected and executed by a runner (:mod:`zsseg_rt.export.ort_jobs`; in
this process by default), so a test can run them under another CPU model.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from zsseg_rt import ops, pipeline
from zsseg_rt.bundle import GRAPH_FILES, Files, Names, load_meta
from zsseg_rt.console.progress import stage_bar
from zsseg_rt.vocabulary import ClipTokenizer, expand_templates

from .graphs import HeadGraph, ImageEncoderGraph, TextEncoderGraph
from .numeric_bounds import BOUND_MODEL, fp32_error_case
from .ort_jobs import Runner, run_in_process

LABEL_AGREEMENT = 0.999  # >= 99.9 % identical labels after the shared post-processing


def float64_twin(model):
    """A float64 copy of ``model`` in eval mode: the exact reference of the error model (``numeric_bounds``)."""
    import copy

    return copy.deepcopy(model).double().eval()


def as_float64(array: np.ndarray) -> torch.Tensor:
    """``array`` as a torch tensor for a :func:`float64_twin`: floating point made float64, integers kept."""
    t = torch.from_numpy(np.asarray(array))
    return t.double() if t.is_floating_point() else t


def read_verification_image(path: str) -> np.ndarray:
    """A verification image as BGR uint8; FileNotFoundError naming what is wrong when it cannot be read."""
    from zsseg_rt.image_io import ImageReadError, read_image_bgr

    try:
        return read_image_bgr(path)  # refused from the header past the pixel limit (zsseg_rt.image_io)
    except ImageReadError as exc:
        raise FileNotFoundError(f"verification image: {exc}") from None


def _window_batch(paths: Sequence[str], meta, rng: np.random.Generator) -> List[Tuple[str, bool, np.ndarray]]:
    """``(input, whole image, image batch)`` of every image-encoder case: a random batch and a window of each photo
    at the graph size S; for a graph of any size (``whole_image``) also each photo whole (rescaled, fitted to the
    patch grid) and random inputs of two other sizes, a wide and a tall one, so more than one size is checked."""
    size = meta.image_size
    batches = [("random", False, rng.standard_normal((2, 3, size, size)).astype(np.float32))]
    whole = meta.raw.get("whole_image")
    for path in paths:
        rgb = pipeline.to_rgb_uint8(read_verification_image(path), "bgr")
        chw = pipeline.normalize_image(pipeline.rescale_keep_ratio(rgb, meta.test_scale), meta.mean, meta.std)
        win = pipeline.sliding_windows(chw.shape[1], chw.shape[2], size, meta.stride)[0]
        crop = pipeline.pad_to_multiple(chw[:, win.y1 : win.y2, win.x1 : win.x2], meta.patch_size, (size, size))
        batches.append((path, False, crop[None]))
        if whole:
            batches.append((path, True, pipeline.fit_to_patches(chw, meta.patch_size, whole["fit"])[None]))
    if whole:
        p = meta.patch_size
        for rows, cols in ((2, 5), (7, 3)):  # grids: wide and tall, neither the window's
            batches.append(("random", False, rng.standard_normal((1, 3, rows * p, cols * p)).astype(np.float32)))
    return batches


def verify_bundle(
    bundle_dir: str, model, images: Sequence[str] = (), seed: int = 0, runner: Optional[Runner] = None
) -> Dict[str, Any]:
    """Compare every graph of ``bundle_dir`` run by ONNX Runtime (CPU) with ``model`` in PyTorch.

    Args:
        runner: executes the ONNX Runtime jobs (default :func:`~zsseg_rt.export.ort_jobs.run_in_process`).

    Returns:
        a JSON-able report: per case the error against the float64 value (``max_abs``), its bound (``atol``,
        the error model), PyTorch's own fp32 error, label agreement, and ``passed``.
    """
    import onnxruntime  # noqa: F401 - missing: fail here, before any work (the report names its version)

    model.eval()
    meta = load_meta(bundle_dir)
    io = meta.io
    rng = np.random.default_rng(seed)
    graph = {role: meta.file(name) for role, name in GRAPH_FILES.items()}
    twin = float64_twin(model)
    image32, head32, text32 = ImageEncoderGraph(model), HeadGraph(model, meta.grid), TextEncoderGraph(model)
    image64, head64, text64 = ImageEncoderGraph(twin), HeadGraph(twin, meta.grid), TextEncoderGraph(twin)
    tokenizer = ClipTokenizer(meta.file(Files.TOKENIZER), meta.context_length)
    names = list(meta.training_class_names)[: min(meta.max_classes, 20)] or ["object"]
    tokens = tokenizer(expand_templates(names, meta.templates[:2]))
    jobs: List[Any] = [(graph["text"], {Names.TOKENS: tokens})]
    pending: List[Dict[str, Any]] = []  # per job: the case fields and the PyTorch references
    batches = _window_batch(images, meta, rng)
    class_counts = sorted({1, len(names), meta.max_classes})
    cases = 1 + len(batches) * (1 + len(class_counts))  # each: a PyTorch reference (fp32 + fp64), an ONNX Runtime run
    with stage_bar(2 * cases, "verifying against PyTorch", unit="run") as bar, torch.inference_mode():
        text_ref = text32(torch.from_numpy(tokens)).numpy()
        pending.append(
            {
                "case": {"graph": "text_encoder", "prompts": int(len(tokens))},
                "refs": [(text_ref, text64(torch.from_numpy(tokens)).numpy())],
            }
        )
        bar.update()
        text = text_ref[: len(names)]
        for source, whole_image, batch in batches:
            feats32 = [t.numpy() for t in image32(torch.from_numpy(batch))]
            feats64 = [t.numpy() for t in image64(as_float64(batch))]
            jobs.append((graph["image"], {Names.IMAGE: batch}))
            shape = [int(v) for v in batch.shape[2:]]
            case = {"graph": "image_encoder", "input": source, "input_size": shape, "whole_image": whole_image}
            pending.append({"case": case, "refs": list(zip(feats32, feats64))})
            bar.update()
            feeds = dict(zip(io["image"]["outputs"], feats32))
            for classes in class_counts:
                t = text if classes == len(names) else _random_text(rng, classes, meta.embed_dim)
                ref = head32(torch.from_numpy(t), *(torch.from_numpy(a) for a in feats32)).numpy()
                ref64 = head64(as_float64(t), *(as_float64(a) for a in feats32)).numpy()
                jobs.append((graph["head"], dict(feeds, **{Names.TEXT_EMBEDDINGS: t})))
                pending.append(
                    {
                        "case": dict(case, graph="head", classes=int(classes)),
                        "refs": [(ref, ref64)],
                        "size": tuple(batch.shape[2:]),
                    }
                )
                bar.update()
        if runner is None:
            outputs = run_in_process(jobs, on_done=bar.update)
        else:  # (another process: done all at once)
            outputs = runner(jobs)
            bar.update(len(jobs))
    return verification_report([_judge(p, got, meta) for p, got in zip(pending, outputs)])


def verification_report(
    cases: List[Dict[str, Any]], numeric_passed: Callable[[Dict[str, Any]], bool] = lambda case: case["passed"]
) -> Dict[str, Any]:
    """The bundle verification report (meta.json's ``verification``) of judged ``cases``: passed when every case
    passed numerically (``numeric_passed``) and its labels are >= 99.9 % equal, or every differing pixel is a
    near-tie of the reference (its top two classes within twice the measured logit difference, where either answer
    is within fp32 rounding of correct)."""
    import onnxruntime as ort

    passed = all(
        numeric_passed(c) and (c.get("label_agreement", 1.0) >= LABEL_AGREEMENT or c.get("flips_beyond_ties", 0) == 0)
        for c in cases
    )
    return {
        "passed": bool(passed),
        "runtime": f"onnxruntime {ort.__version__} CPU",
        "bound_model": BOUND_MODEL,
        "label_agreement_min": LABEL_AGREEMENT,
        "cases": cases,
    }


def _judge(pending: Dict[str, Any], outputs: List[np.ndarray], meta) -> Dict[str, Any]:
    """One case's measurements: the error model over all its outputs (worst output reported), and for the head
    the labels after the shared post-processing."""
    case = dict(pending["case"])
    measured = [fp32_error_case(got, r32, r64) for got, (r32, r64) in zip(outputs, pending["refs"])]
    worst = max(measured, key=lambda m: m["max_abs"] - m["atol"])
    case.update(worst, passed=all(m["passed"] for m in measured))
    if case["graph"] == "head":
        ref, got = pending["refs"][0][0], np.ascontiguousarray(outputs[0])
        size = pending.get("size", (meta.image_size, meta.image_size))  # the image's
        labels_ref, _ = pipeline.segment_fast(ref, size, None)
        labels_got, _ = pipeline.segment_fast(got, size, None)
        case["ref_max_abs"] = float(np.abs(ref).max())
        case["label_agreement"] = float((labels_ref == labels_got).mean())
        case["flips_beyond_ties"] = _flips_beyond_ties(ref, labels_ref, labels_got, size, case["vs_torch_fp32"])
    return case


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
