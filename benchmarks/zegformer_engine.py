#!/usr/bin/env python
"""ZegFormer: the ONNX Runtime ``Engine`` (CPU) vs ``predict_zegformer`` (PyTorch CPU), full size, one photo.

Full-size ``zegformer_r101_voc`` with random weights (latency does not depend on them) is written as an
UNVERIFIED bundle (the export's parity check at full size would run both pipelines on three images first; the
parity is what the tests and a real ``zsseg export`` check), then both pipelines segment the same photo resized to
512x512 with the 20 VOC class names (text embeddings encoded before the timing), and the Engine's stages are
timed with its ``stage_hook``: preprocess (resize, normalise, pad), image_encoder (the mask-branch graph), head
(mask upsampling, the 100 crops, the CLIP graph on them, fusion), postprocess (semantic maps + fused segment).

    .venv/bin/python -m benchmarks zegformer_engine --write     # updates its section of BENCHMARKS.md
"""

from __future__ import annotations

import collections
import statistics
import sys
import tempfile
import time
from typing import Dict, List

from .common import PHOTO, median_ms, run_lines_program, section_head

SECTION = "## ZegFormer Engine (ONNX Runtime CPU) vs PyTorch"


def _write_bundle(model, folder: str) -> str:
    from zsseg_rt.bundle import load_meta
    from zsseg_rt.export.onnx_export import DEFAULT_OPSET
    from zsseg_rt.models.zegformer.export import export_zegformer_bundle

    export_zegformer_bundle(model.eval().float().cpu(), folder, 256, DEFAULT_OPSET, None, (), None, verify=False)
    load_meta(folder)
    return folder


def run(iters: int, warmup: int, threads: int) -> List[str]:
    import cv2
    import numpy as np
    import torch

    from zsseg_rt.contract.common.config import load_class_names
    from zsseg_rt.models import create_model
    from zsseg_rt.models.zegformer.predict import predict_zegformer
    from zsseg_rt.runtime import Engine

    torch.set_num_threads(threads)
    bgr = cv2.imread(str(PHOTO), cv2.IMREAD_COLOR)
    rgb = np.ascontiguousarray(cv2.resize(bgr, (512, 512), interpolation=cv2.INTER_LINEAR)[:, :, ::-1])
    names = load_class_names("voc20")
    torch.manual_seed(0)
    model = create_model("zegformer_r101_voc").eval()
    with tempfile.TemporaryDirectory(prefix="zegformer-bench-") as tmp:
        start = time.perf_counter()
        bundle = _write_bundle(model, tmp)
        export_s = time.perf_counter() - start
        engine = Engine(bundle, classes=names, backend="onnxruntime", device="cpu", threads=threads)
        stages: Dict[str, List[float]] = collections.defaultdict(list)
        engine.stage_hook = lambda stage, seconds: stages[stage].append(seconds)
        t_engine = median_ms(lambda: engine(rgb, color_order="rgb"), iters, warmup)
        result = engine(rgb, color_order="rgb")
    text, clip_text = model.text_embeddings(names), model.clip_text_embeddings(names)  # cached before the timing
    del text, clip_text
    t_torch = median_ms(lambda: predict_zegformer(model, rgb, names), iters, warmup)
    labels, _ = predict_zegformer(model, rgb, names)
    agreement = float((result.labels == labels).mean())
    per_call = {k: 1000.0 * statistics.median(v[-iters:]) for k, v in stages.items()}
    rows = [f"| {k} | {per_call[k]:.0f} |" for k in ("preprocess", "image_encoder", "head", "postprocess")]
    return [
        *section_head(SECTION, "zegformer_engine --write", threads),
        f"- Input: {PHOTO.name} resized to 512x512, 20 VOC classes, median of {iters} runs after {warmup} warm-up; "
        "full-size `zegformer_r101_voc` with random weights (ResNet-101 mask branch, 100 queries, CLIP ViT-B/16 at "
        f"224 on every query's crop); bundle written unverified in {export_s:.0f} s.",
        "",
        "| pipeline | ms per image |",
        "|---|---:|",
        f"| `predict_zegformer` (PyTorch, fp32) | {t_torch:.0f} |",
        f"| `Engine` (ONNX Runtime CPU, fp32; crops/fusion in NumPy) | {t_engine:.0f} |",
        "",
        "Engine stages (median per call):",
        "",
        "| stage | ms |",
        "|---|---:|",
        *rows,
        "",
        f"Labels Engine vs PyTorch on this image: {100 * agreement:.3f} % equal (random weights; the parity bound is "
        "checked by the tests and at export).",
    ]


def main() -> int:
    return run_lines_program(__doc__, SECTION, run)


if __name__ == "__main__":
    sys.exit(main())
