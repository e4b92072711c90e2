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
    import onnxruntime as ort

    from zsseg_rt.export.numeric_bounds import BOUND_MODEL, fp32_error_case
    from zsseg_rt.export.verify import _f64, float64_twin

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
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
            ref64 = [t.numpy() for t in twin(_f64(x))]
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
