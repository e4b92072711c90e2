"""ONNX export of the ZeroSeg student's inference graph, checked against PyTorch with ONNX Runtime.

One graph, ``images [B, 3, S, S]`` (normalised, S = the config's image_size) -> ``segment_features [B, m, E]``,
``global_feature [B, E]``, ``assignment_maps [B, m, S/p, S/p]``; batch is dynamic. Classifying the segments
against text embeddings and painting pixels (:mod:`zsseg_rt.models.zeroseg.infer`) are cheap and stay outside.
The Engine bundle (graphs + text encoder + post-processing) is :mod:`zsseg_rt.models.zeroseg.bundle`.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Dict, Union

import numpy as np
import torch

from zsseg_rt.bundle import Names

__all__ = ["export_zeroseg_onnx", "verify_zeroseg_onnx", "INPUT_NAME", "OUTPUT_NAMES"]

INPUT_NAME = "images"
OUTPUT_NAMES = (Names.SEGMENT_FEATURES, Names.GLOBAL_FEATURE, Names.ASSIGNMENT_MAPS)
FEATURE_ATOL = 1e-4  # fp32 graph re-ordering gives ~1e-6 on features of unit scale
MAPS_ATOL = 1e-5  # assignment probabilities in [0, 1]


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
    """Max-abs differences ONNX Runtime vs PyTorch for batches of 1 and 3, and the fraction of patches whose
    arg-max segment differs; raises ``RuntimeError`` when a tolerance is exceeded."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    size = model.config.image_size
    rng = np.random.default_rng(seed)
    report = {name: 0.0 for name in OUTPUT_NAMES}
    flips = total = 0
    for batch in (1, 3):
        x = rng.standard_normal((batch, 3, size, size)).astype(np.float32)
        got = session.run(list(OUTPUT_NAMES), {INPUT_NAME: x})
        with torch.no_grad():
            ref = [t.numpy() for t in model(torch.from_numpy(x))]
        for name, g, r in zip(OUTPUT_NAMES, got, ref):
            if g.shape != r.shape:
                raise RuntimeError(f"ONNX output {name} has shape {g.shape}, PyTorch {r.shape}")
            report[name] = max(report[name], float(np.abs(g - r).max()))
        flips += int((got[2].argmax(1) != ref[2].argmax(1)).sum())
        total += ref[2].shape[0] * ref[2].shape[2] * ref[2].shape[3]
    report["segment_flip_fraction"] = flips / total
    limits = {
        Names.SEGMENT_FEATURES: FEATURE_ATOL,
        Names.GLOBAL_FEATURE: FEATURE_ATOL,
        Names.ASSIGNMENT_MAPS: MAPS_ATOL,
    }
    bad = {k: v for k, v in report.items() if k in limits and v > limits[k]}
    if bad or report["segment_flip_fraction"] > 0.001:
        raise RuntimeError(f"ONNX export of ZeroSeg disagrees with PyTorch: {report} (limits {limits}, flips 0.1 %)")
    return report
