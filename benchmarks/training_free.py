"""Training-free methods on full-size CLIP ViT-B/16 (random weights: speed does not depend on them): the cost of
each method's exported image encoder relative to plain CLIP's on the same input, and the Engine latency on a
sample photo, all on this CPU in one run (ONNX Runtime).

Usage:
    .venv/bin/python -m benchmarks training_free                 # print the tables
    .venv/bin/python -m benchmarks training_free --write         # also write the measured table of docs/training_free.md

For every method (its bundled config): the bundle is exported once (cached under --workdir), then
* encoder: ``image_encoder.onnx`` on one ``[1, 3, S, S]`` window against the stock open_clip image tower
  (``visual.forward``: the unmodified 12 blocks and CLS pooling) of the same model exported at the same S, timed
  alternately (median of --repeats each, after one warm-up);
* Engine: ``zsseg_rt.Engine`` (backend onnxruntime, exact mode, windows, the bundle's own post-processing, e.g.
  NACLIP's PAMR) on the first sample photo (500 x 375) with the 20 VOC classes, after one warm-up (text embeddings cached
  by then); the methods' Engines run round-robin, median of --repeats calls each.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Dict, List

from zsseg_rt.models.training_free.config import METHODS  # the methods table (one row per method)

from .common import REPO, machine_description

DOC = REPO / "docs" / "training_free.md"
BEGIN, END = "<!-- bench_training_free:begin -->", "<!-- bench_training_free:end -->"


def _interleaved_ms(first, second, repeats: int):
    """Medians of ``first`` and ``second`` timed alternately (one warm-up each), so that a change of the machine's
    load during the run hits both alike."""
    first(), second()
    a, b = [], []
    for _ in range(repeats):
        for fn, out in ((first, a), (second, b)):
            start = time.perf_counter()
            fn()
            out.append(time.perf_counter() - start)
    return 1e3 * statistics.median(a), 1e3 * statistics.median(b)


def _plain_clip_graph(model, path: Path, size: int) -> None:
    """The stock image tower (no method change) exported as the baseline at the method's input size."""
    import torch

    from zsseg_rt.contract.common.tracing import mha_fastpath_off_when_tracing

    class Plain(torch.nn.Module):
        def __init__(self, visual):
            super().__init__()
            self.visual = visual

        def forward(self, image):
            with mha_fastpath_off_when_tracing():
                return self.visual(image)

    with torch.no_grad():
        torch.onnx.export(
            Plain(model.visual).eval(), (torch.zeros(1, 3, size, size),), str(path), opset_version=18, dynamo=False
        )


def _session(path: Path, threads: int):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def measure(method: str, args) -> Dict[str, object]:
    import cv2
    import numpy as np

    from zsseg_rt import Engine
    from zsseg_rt.assets import sample_images
    from zsseg_rt.export.onnx_export import export_bundle
    from zsseg_rt.models import create_model

    bundle = Path(args.workdir) / f"{method}_vitb16"
    model = create_model(f"{method}_vitb16").eval()
    if not (bundle / "meta.json").is_file():
        print(f"[{method}] exporting {bundle} (full size, random weights) ...", flush=True)
        export_bundle(model, str(bundle), max_classes=32, overwrite=True)
    size = int(model.config.image_size)
    plain = Path(args.workdir) / f"plain_clip_{size}.onnx"
    if not plain.is_file():
        _plain_clip_graph(model, plain, size)
    x = np.random.default_rng(0).normal(0, 1, (1, 3, size, size)).astype(np.float32)
    enc = _session(bundle / "image_encoder.onnx", args.threads)
    base = _session(plain, args.threads)
    enc_ms, base_ms = _interleaved_ms(
        lambda: enc.run(None, {enc.get_inputs()[0].name: x}),
        lambda: base.run(None, {base.get_inputs()[0].name: x}),
        args.repeats,
    )
    image = cv2.imread(str(sample_images()[0]))
    engine = Engine(  # windows, the mode every method's table row compares (MaskCLIP's own default is whole images)
        str(bundle),
        backend="onnxruntime",
        threads=args.threads,
        classes=list(model.config.class_names),
        inference="windows",
    )
    engine(image)  # warm-up: sessions, text embeddings
    row = {
        "method": method,
        "input": size,
        "encoder_ms": enc_ms,
        "plain_ms": base_ms,
        "ratio": enc_ms / base_ms,
        "windows": len(engine.pipeline.plan(image, np.zeros(20, np.float32))[2]),
        "pamr": int(engine.postprocessor.pamr_iterations),
        "engine": engine,
        "image": image,
        "times": [],
    }
    print({k: v for k, v in row.items() if k not in ("engine", "image", "times")}, flush=True)
    return row


def time_engines(rows: List[Dict[str, object]], repeats: int) -> None:
    """Engine latency, round-robin over the methods (each repetition runs every Engine once), so that the machine's
    load during the run weighs on every method alike; median per method."""
    for _ in range(repeats):
        for row in rows:
            start = time.perf_counter()
            row["engine"](row["image"])  # type: ignore[operator]
            row["times"].append(time.perf_counter() - start)  # type: ignore[attr-defined]
    for row in rows:
        row["engine_ms"] = 1e3 * statistics.median(row["times"])  # type: ignore[arg-type]
        print(row["method"], f"Engine {row['engine_ms']:.0f} ms", flush=True)


def table(rows: List[Dict[str, object]], args) -> str:
    lines = [
        BEGIN,
        "Measured by `python -m benchmarks training_free` (ONNX Runtime CPU, fp32, random full-size ViT-B/16 weights, "
        f"median of {args.repeats} after one warm-up; each encoder timed alternately with plain CLIP, the Engines "
        f"round-robin; 1/5/15-minute load average at the start: {args.load}, at the end: {args.load_end}: other "
        "jobs shared the 2 cores, so absolute times are inflated; the ratios are the reliable part).",
        "",
        *machine_description(args.threads),
        "",
        "| method | encoder input | encoder ms | plain CLIP ms (same input) | encoder cost vs plain CLIP | Engine ms, "
        "500x375 photo, 20 classes | windows | PAMR steps |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['method']} | {r['input']} | {r['encoder_ms']:.0f} | {r['plain_ms']:.0f} | {r['ratio']:.2f}x | "
            f"{r['engine_ms']:.0f} | {r['windows']} | {r['pamr']} |"
        )
    lines.append(END)
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workdir", default=str(REPO / "out" / "bench_training_free"))
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--write", action="store_true", help=f"replace the measured table in {DOC}")
    args = parser.parse_args()
    os.makedirs(args.workdir, exist_ok=True)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    args.load = " / ".join(f"{v:.1f}" for v in os.getloadavg())
    rows = [measure(m.strip(), args) for m in args.methods.split(",") if m.strip()]
    time_engines(rows, args.repeats)
    args.load_end = " / ".join(f"{v:.1f}" for v in os.getloadavg())
    text = table(rows, args)
    print(text)
    if args.write:
        content = DOC.read_text()
        if BEGIN not in content or END not in content:
            raise SystemExit(f"{DOC} has no {BEGIN} ... {END} block to replace")
        content = re.sub(re.escape(BEGIN) + r".*?" + re.escape(END), lambda _: text, content, flags=re.S)
        DOC.write_text(content)
        print(f"written to {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
