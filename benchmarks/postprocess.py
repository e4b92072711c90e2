#!/usr/bin/env python
"""Exact post-processing on a real photo: the fused ``ops.segment_windows`` vs the unfused path it replaced
(``calibrated_window_scores`` per window -> ``merge_windows`` -> ``finalize_scores``), against the image-encoder
time of the full-size ViT-B/16 bundle, in one run.

Case (issue 13): VOC 2011_000006.jpg (500x375) -> 683x512 -> 2 windows of 512x512, C = 20 (VOC names) and
C = 171 (COCO-Stuff names), exact mode, ONNX Runtime CPU, random ViT-B/16 weights (latency does not depend on
them). The window logits come from the real bundle on the real photo; each post-processing side then runs in a
fresh subprocess: median time of --repeats calls after a warm-up, and peak extra memory (VmHWM reset through
/proc/self/clear_refs, minus VmRSS before the call; outputs included). Labels of the two sides are compared:
every target PASSes only when they are identical (``targets``).

    .venv/bin/python -m benchmarks postprocess --write    # updates the "## Exact post-processing" section
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time

import numpy as np

from .common import PHOTO, encoder_crops, measure_call, save_window_logits, section_head, show_section

SECTION = "## Exact post-processing on a real photo (fused multi-window op vs the unfused path)"
AREA = 0.1  # the softmax rows' area threshold (SCLIP's area_thd form; the value only sets which classes drop)
PAIRS = (("unfused", "fused"), ("softmax_before", "softmax_fused"), ("softmax_area_before", "softmax_area_fused"))


def worker(npz: str, side: str, repeats: int) -> None:
    """Subprocess: one side on the saved logits; prints JSON (median ms, peak extra MB) and saves its labels."""
    from zsseg_rt import pipeline

    data = np.load(npz)
    logits, bias = data["logits"], data["bias"]
    windows = [pipeline.Window(*map(int, w)) for w in data["windows"]]
    head, scaled, out = tuple(data["head"]), tuple(int(v) for v in data["scaled"]), tuple(int(v) for v in data["out"])

    def unfused():
        parts = []
        for i, w in enumerate(windows):
            full = pipeline.calibrated_window_scores(logits[i : i + 1], head, head, bias)
            parts.append(full[:, :, : w.y2 - w.y1, : w.x2 - w.x1])
        labels, scores = pipeline.finalize_scores(pipeline.merge_windows(parts, windows, scaled), out)
        return labels[0], scores[0]

    def fused():
        return pipeline.segment_windows_exact(logits, windows, head, scaled, out, bias)

    from zsseg_rt import ops
    from zsseg_rt.pipeline import postprocess as post

    def merged_logits():  # the softmax family's window average, [1, C, H', W'] (the composition's first half)
        parts = [
            post.window_scores(logits[i : i + 1], head, head, "softmax")[:, :, : w.y2 - w.y1, : w.x2 - w.x1]
            for i, w in enumerate(windows)
        ]
        return post.merge_windows(parts, windows, scaled)

    def softmax_before():  # the path before the fused softmax: merge, labels by ops.segment, 16-class chunks
        merged = merged_logits()
        labels, top = ops.segment(merged, out, None, sigmoid=False)
        denom = np.zeros_like(top)
        for c0 in range(0, merged.shape[1], 16):
            up = ops.upsample(np.ascontiguousarray(merged[:, c0 : c0 + 16]), out)
            up -= top[:, None]
            np.exp(up, out=up)
            denom += up.sum(axis=1)
        return labels[0], (1.0 / denom)[0]

    def softmax_area_before():  # with SCLIP's area filter: the dense [C, H, W] composition
        labels, scores = post.softmax_segment_dense(merged_logits(), out, area_threshold=AREA)
        return labels[0], scores[0]

    def softmax_fused():
        return post.segment_windows_softmax(logits, windows, head, scaled, out)

    def softmax_area_fused():
        return post.segment_windows_softmax(logits, windows, head, scaled, out, area_threshold=AREA)

    fn = {
        "fused": fused,
        "unfused": unfused,
        "softmax_before": softmax_before,
        "softmax_fused": softmax_fused,
        "softmax_area_before": softmax_area_before,
        "softmax_area_fused": softmax_area_fused,
    }[side]
    measured = measure_call(
        fn, 0, repeats, first=lambda result: np.save(npz.replace(".npz", f"_{side}_labels.npy"), result[0])
    )
    print(json.dumps(measured))


def targets(row: dict) -> str:
    """The "targets" cell of one C row (issue 13). Every target is met only with labels identical to the unfused
    path's (``labels_equal["fused"] == 1.0``): a faster fused op that changes a label is a MISS, not a speed-up.
    C = 171: post-processing <= 5 % of the image-encoder time and peak extra memory <= 1/20 of the unfused path's;
    other C: the fused path no slower than the unfused one."""
    same = row["labels_equal"]["fused"]
    identical = same == 1.0
    enc, old, new = row["encoder_ms"], row["unfused_median_ms"], row["fused_median_ms"]
    mem_old, mem_new = row["unfused_peak_extra_mb"], row["fused_peak_extra_mb"]
    checks = [("labels identical", identical)]
    if row["classes"] == 171:
        checks += [("post <= 5 % of encoder", new <= 0.05 * enc), ("memory <= 1/20", mem_new <= mem_old / 20)]
    else:
        checks += [("no slower than before", new <= old)]
    cells = [f"labels identical: {'PASS' if identical else f'MISS ({100 * same:.3f} % equal)'}"]
    for what, ok in checks[1:]:
        cells.append(f"{what}: {'PASS' if ok and identical else 'MISS' + ('' if identical else ' (labels differ)')}")
    return "; ".join(cells)


def fused_row(r: dict) -> str:
    """One C row of the fused-vs-unfused table (its last cell: ``targets``)."""
    enc, old, new = r["encoder_ms"], r["unfused_median_ms"], r["fused_median_ms"]
    r["labels_identical"] = r["labels_equal"]["fused"] == 1.0
    mem_old, mem_new = r["unfused_peak_extra_mb"], r["fused_peak_extra_mb"]
    return (
        f"| {r['classes']} | {enc:.0f} | {old:.1f} | {new:.1f} | {old / new:.1f}x | "
        f"{100 * old / enc:.1f} % -> {100 * new / enc:.1f} % | {mem_old:.1f} -> {mem_new:.1f} | "
        f"{'yes' if r['labels_identical'] else 'NO'} | {targets(r)} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--write", action="store_true")
    parser.add_argument("--worker", nargs=2, metavar=("NPZ", "SIDE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker[0], args.worker[1], args.repeats)
        return
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    import cv2
    import torch

    from benchmarks._launch import checkout_module  # the checkout's launcher: from any cwd, PYTHONSAFEPATH=1 too

    torch.set_num_threads(args.threads)
    from zsseg_rt import Engine
    from zsseg_rt.contract.common.config import load_class_names
    from zsseg_rt.export.onnx_export import export_bundle
    from zsseg_rt.models import create_model

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        model = create_model("zegclip_vitb16_coco_inductive").eval()
        bundle = export_bundle(model, os.path.join(tmp, "bundle"), max_classes=256, verify_images=())
        del model
        image = cv2.imread(str(PHOTO), cv2.IMREAD_COLOR)
        assert image is not None, f"cannot read {PHOTO}"
        engine = Engine(bundle, backend="onnxruntime", threads=args.threads)
        meta = engine.meta
        for names in (load_class_names("coco_stuff171")[:20], load_class_names("coco_stuff171")):
            engine.set_classes(names, templates=("a photo of a {}.",))
            scaled, windows, crops = encoder_crops(image, meta)
            encoder = []
            for _ in range(3):
                start = time.perf_counter()
                features = engine.backend.encode_image(crops)
                encoder.append(time.perf_counter() - start)
            logits = engine.backend.head(engine._vocab[1], features)
            npz = os.path.join(tmp, f"c{len(names)}.npz")
            save_window_logits(npz, engine, logits, image, scaled, windows)
            sides = {}
            for side in [side for pair in PAIRS for side in pair]:
                command, env = checkout_module(
                    "benchmarks.postprocess", "--worker", npz, side, "--repeats", args.repeats
                )
                proc = subprocess.run(
                    command,
                    capture_output=True,
                    text=True,
                    env=env,
                    timeout=1200,
                    check=True,
                )
                sides[side] = json.loads(proc.stdout.strip().splitlines()[-1])
            same = {
                after: float(
                    np.mean(
                        np.load(npz.replace(".npz", f"_{before}_labels.npy"))
                        == np.load(npz.replace(".npz", f"_{after}_labels.npy"))
                    )
                )
                for before, after in PAIRS
            }
            rows.append(
                {
                    "classes": len(names),
                    "windows": len(windows),
                    "scaled": scaled,
                    "encoder_ms": 1e3 * statistics.median(encoder),
                    **{f"{k}_{m}": v[m] for k, v in sides.items() for m in v},
                    "labels_equal": same,
                }
            )
    lines = [
        *section_head(SECTION, "postprocess --write", args.threads),
        f"- Photo 2011_000006.jpg 500x375 -> rescaled {rows[0]['scaled'][1]}x{rows[0]['scaled'][0]}, "
        f"{rows[0]['windows']} windows; full-size ZegCLIP ViT-B/16 bundle (random weights), ONNX Runtime CPU; "
        f"post-processing median of {args.repeats} calls, each side in its own process.",
        "",
        "| C | image encoder ms (2 windows) | unfused post ms | fused post ms | speed-up | post / encoder: "
        "unfused -> fused | peak extra MB: unfused -> fused | labels identical | targets |",
        "|---:|---:|---:|---:|---:|---|---|---|---|",
    ]
    lines += [fused_row(r) for r in rows]
    lines += [
        "",
        "The softmax (training-free family) order on the same window logits (the post-processing cost does not",
        "depend on which model made them): before = the composition this op replaced (a `[C, H', W']` window average,",
        "then labels by `ops.segment` and the softmax sum in 16-class chunks; with SCLIP's area filter, "
        f"area_thd = {AREA}, a dense `[C, H, W]` softmax); after = `pipeline.segment_windows_softmax`.",
        "",
        "| C | area filter | before ms | fused ms | speed-up | post / encoder: before -> fused | "
        "peak extra MB: before -> fused | labels equal |",
        "|---:|---|---:|---:|---:|---|---|---:|",
    ]
    for r in rows:
        enc = r["encoder_ms"]
        for before, after, area in (
            ("softmax_before", "softmax_fused", "no"),
            ("softmax_area_before", "softmax_area_fused", "yes"),
        ):
            old, new = r[f"{before}_median_ms"], r[f"{after}_median_ms"]
            mem_old, mem_new = r[f"{before}_peak_extra_mb"], r[f"{after}_peak_extra_mb"]
            lines.append(
                f"| {r['classes']} | {area} | {old:.1f} | {new:.1f} | {old / new:.1f}x | "
                f"{100 * old / enc:.1f} % -> {100 * new / enc:.1f} % | {mem_old:.1f} -> {mem_new:.1f} | "
                f"{100 * r['labels_equal'][after]:.3f} % |"
            )
    lines.append("")
    show_section(SECTION, "\n".join(lines), args.write)


if __name__ == "__main__":
    main()
