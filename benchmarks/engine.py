#!/usr/bin/env python
"""Per-frame latency of zsseg_rt.Engine (ONNX Runtime, CPU) vs the PyTorch model on the same 512x512 input.

Full-size ZegCLIP ViT-B/16 (VOC config, random weights: latency does not depend on the weights), C = 20 and
C = 171 with the official ZegCLIP text embeddings (zsseg_rt/assets/text_embeddings). For each side: the
end-to-end time per frame and the image-encoder-only time; for the Engine also the head and post-processing
stages (Engine.stage_hook). Target (issue 4): head + post-processing add at most 30 % to the encoder time at
C=171.

    .venv/bin/python -m benchmarks engine --write     # updates the "## Engine" section of BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from typing import Dict, List

import numpy as np

from .common import PHOTO, REPO, section_head, show_section

SECTION = "## Engine (ONNX Runtime CPU) vs PyTorch, full-size ZegCLIP ViT-B/16"
EMBEDDINGS = REPO / "zsseg_rt" / "assets" / "text_embeddings"


def _median_ms(samples: List[float]) -> float:
    return 1000.0 * statistics.median(samples)


def _vocabularies(model) -> Dict[int, tuple]:
    from zsseg_rt.contract.common.config import load_class_names
    from zsseg_rt.models import load_text_embeddings

    voc = load_text_embeddings(str(EMBEDDINGS / "voc12_single.npy"))
    coco = load_text_embeddings(str(EMBEDDINGS / "coco_multi.npy"))
    return {
        20: (list(model.config.class_names), np.asarray(voc, np.float32)),
        171: (load_class_names("coco_stuff171"), np.asarray(coco, np.float32)),
    }


def _image():
    import cv2

    image = cv2.imread(str(PHOTO), cv2.IMREAD_COLOR)
    if image is None:
        raise SystemExit(f"cannot read {PHOTO}")
    return cv2.resize(image, (512, 512), interpolation=cv2.INTER_LINEAR)  # exactly one 512x512 window


def bench_engine(bundle: str, names, emb, image, iters: int, warmup: int, threads: int) -> Dict[str, float]:
    from zsseg_rt.runtime import Engine

    engine = Engine(bundle, backend="onnxruntime", device="cpu", threads=threads, verify=False)
    engine.set_text_embeddings(names, emb)
    stages: Dict[str, List[float]] = {}
    engine.stage_hook = lambda stage, seconds: stages.setdefault(stage, []).append(seconds)
    totals = []
    for i in range(warmup + iters):
        if i == warmup:
            stages.clear()
        start = time.perf_counter()
        engine(image)
        if i >= warmup:
            totals.append(time.perf_counter() - start)
    return {"total": _median_ms(totals), **{k: _median_ms(v) for k, v in stages.items()}}


def bench_torch(model, emb, image, iters: int, warmup: int) -> Dict[str, float]:
    import torch

    from zsseg_rt import pipeline
    from zsseg_rt.contract.common.predict import predict

    rgb = image[:, :, ::-1].copy()
    x = torch.from_numpy(pipeline.normalize_image(rgb, model.config.mean, model.config.std)[None])
    text = torch.from_numpy(emb)
    totals, encoder = [], []
    with torch.inference_mode():
        for i in range(warmup + iters):
            start = time.perf_counter()
            predict(model, rgb, text=text, mode="slide")
            mid = time.perf_counter()
            model.encode_image(x)
            end = time.perf_counter()
            if i >= warmup:
                totals.append(mid - start)
                encoder.append(end - mid)
    return {"total": _median_ms(totals), "image_encoder": _median_ms(encoder)}


def render(rows, args) -> str:
    lines = section_head(SECTION, "engine --write", args.threads)
    lines += [
        f"- Input: {PHOTO.name} resized to 512x512 (one window), median of {args.iters} frames after {args.warmup} "
        "warm-up frames; random weights (latency does not depend on them); official text embeddings.",
        "- Engine: ONNX Runtime CPU EP (spinning off), exact mode (calibrate at 512, resize, fused argmax).",
        "  PyTorch: `zsseg_rt.contract.common.predict` (same official order) with torch.set_num_threads(threads).",
        "",
        "| C | Engine ms/frame | Engine encoder | head | post-process | (head+post)/encoder | torch ms/frame | "
        "torch encoder | Engine/torch | target |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for classes, eng, tor in rows:
        extra = (eng["head"] + eng["postprocess"]) / eng["image_encoder"]
        target = "-"
        if classes == 171:
            target = ("PASS" if extra <= 0.30 else "MISS") + " (<= 30 %)"
        lines.append(
            f"| {classes} | {eng['total']:.0f} | {eng['image_encoder']:.0f} | {eng['head']:.1f} | "
            f"{eng['postprocess']:.1f} | {100 * extra:.1f} % | {tor['total']:.0f} | {tor['image_encoder']:.0f} | "
            f"{eng['total'] / tor['total']:.2f} | {target} |"
        )
    lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--bundle", default=None, help="reuse this bundle directory (default: export to a temp dir)")
    parser.add_argument("--write", action="store_true", help="update the section in BENCHMARKS.md")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import torch

    from zsseg_rt.export.onnx_export import export_bundle
    from zsseg_rt.models import create_model

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = create_model("zegclip_vitb16_voc_inductive").eval()
    bundle = args.bundle
    if bundle is None or not os.path.isfile(os.path.join(bundle, "meta.json")):
        bundle = bundle or os.path.join(tempfile.mkdtemp(prefix="zsseg-bench-"), "bundle")
        start = time.perf_counter()
        export_bundle(model, bundle, max_classes=256, overwrite=True)
        print(f"exported + verified {bundle} in {time.perf_counter() - start:.0f}s", flush=True)
    image = _image()
    rows = []
    for classes, (names, emb) in _vocabularies(model).items():
        eng = bench_engine(bundle, names, emb, image, args.iters, args.warmup, args.threads)
        tor = bench_torch(model, emb, image, args.iters, args.warmup)
        print(f"C={classes}: engine {eng} | torch {tor}", flush=True)
        rows.append((classes, eng, tor))
    show_section(SECTION, render(rows, args), args.write)


if __name__ == "__main__":
    main()
