#!/usr/bin/env python
"""Precision on the CPU: the PyTorch pipeline and the Engine per precision, in one run, with label agreement.

Full-size ZegCLIP ViT-B/16 (VOC config; random weights unless --native names a checkpoint: latency does not depend on
them, agreement does, see the section's notes), the sample photo 2011_000006.jpg as it is (500x375: rescaled to
683x512, two 512x512 windows, the issue's photo frame), C = 20 and C = 171 with the official ZegCLIP text embeddings.
Rows:

* ``torch fp32``: ``zsseg_rt.models.common.predict`` (the official test order in PyTorch, slide mode), the PyTorch
  equivalent every ratio is against;
* ``Engine onnxruntime fp32`` (the default) and ``Engine onnxruntime int8`` (``precision="int8"``: the gated dynamic
  int8 image encoder, ``docs/precision.md``), same bundle, same weights;
* the image encoder alone at one 512x512 window per precision (the floor the Engine cannot beat on this CPU).

Label agreement is against the Engine's fp32 labels (the exact path) and, for the Engine fp32 row, against PyTorch.
CPU only: the GPU rows of issue 27 (torch fp16/bf16, CUDA graphs) are measured by ``benchmarks/cuda.py`` /
``tools/gpu_check.sh`` on a GPU, which this benchmark has never had.

    .venv/bin/python -m benchmarks precision --bundle B --native N --write   # updates BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from typing import Dict, List, Tuple

import numpy as np

from .common import machine_description, write_section
from .engine import EMBEDDINGS, PHOTO

SECTION = "## Precision on the CPU: Engine fp32 / int8 vs the PyTorch pipeline, full-size ZegCLIP ViT-B/16"


def _median_ms(samples: List[float]) -> float:
    return 1000.0 * statistics.median(samples)


def _vocabularies(model, which: List[int]) -> Dict[int, tuple]:
    from zsseg_rt.models import load_text_embeddings
    from zsseg_rt.models.common.config import load_class_names

    out = {}
    if 20 in which:
        out[20] = (list(model.config.class_names), np.asarray(load_text_embeddings(str(EMBEDDINGS / "voc12_single.npy")), np.float32))
    if 171 in which:
        emb = load_text_embeddings(str(EMBEDDINGS / "coco_multi.npy"))
        out[171] = (load_class_names("coco_stuff171"), np.asarray(emb, np.float32))
    return out


def _engine(bundle: str, precision: str, threads: int):
    from zsseg_rt.runtime import Engine

    return Engine(bundle, backend="onnxruntime", device="cpu", threads=threads, verify=False, precision=precision)


def _torch_run(model, names, emb, image):
    import torch

    from zsseg_rt.models.common.predict import predict

    rgb = image[:, :, ::-1].copy()
    text = torch.from_numpy(emb)

    def run():
        with torch.inference_mode():
            return np.asarray(predict(model, rgb, class_names=names, text=text, mode="slide")[0])

    return run


def _engine_run(engine, names, emb, image):
    engine.set_text_embeddings(names, emb)
    return lambda: np.asarray(engine(image).labels)


def interleaved(runs: Dict[str, object], iters: int, warmup: int) -> Dict[str, Tuple[float, np.ndarray]]:
    """Median ms and last labels of each run, the runs taking turns frame by frame: on a shared machine every row
    sees the same load, so the ratios between rows hold even when the absolute times drift."""
    times: Dict[str, List[float]] = {name: [] for name in runs}
    labels: Dict[str, np.ndarray] = {}
    for i in range(warmup + iters):
        for name, run in runs.items():
            start = time.perf_counter()
            labels[name] = run()  # type: ignore[operator]
            if i >= warmup:
                times[name].append(time.perf_counter() - start)
    return {name: (_median_ms(times[name]), labels[name]) for name in runs}


def encoder_floors(engines, iters: int, warmup: int) -> Dict[str, float]:
    window = np.random.default_rng(0).standard_normal((1, 3, 512, 512)).astype(np.float32)
    runs = {f"onnxruntime {p}": (lambda e=e: e.backend.encode_image(window)) for p, e in engines.items()}
    return {name: ms for name, (ms, _) in interleaved(runs, iters, warmup).items()}


def render(rows, floors, args) -> str:
    lines = [SECTION, "", f"Regenerate: `.venv/bin/python -m benchmarks precision {args.command_tail}`", ""]
    lines += machine_description(args.threads)
    lines += [
        f"- Input: {PHOTO.name} as it is ({args.photo_size}: two 512x512 windows), median of {args.iters} frames "
        f"after {args.warmup} warm-up frame(s), the rows taking turns frame by frame (same load on each); official text embeddings; {args.weights}.",
        "- torch fp32: `zsseg_rt.models.common.predict` (the official test order, slide mode) with "
        "torch.set_num_threads(threads): the PyTorch equivalent every ratio is against, measured in the same run.",
        "- Engine: ONNX Runtime CPU EP (spinning off), exact mode. int8: the gated dynamic-int8 image encoder "
        "(`precision=\"int8\"`, docs/precision.md); its gate record was prepared before the run (not timed).",
        "- Agreement: fraction of pixels whose label equals the Engine fp32 label map (the exact default).",
        "- CPU numbers only: no GPU was available, the GPU targets of issue 27 are unmeasured.",
        "",
        "| C | row | ms/photo | vs torch fp32 | labels = Engine fp32 |",
        "|---:|---|---:|---:|---:|",
    ]
    for classes, name, ms, torch_ms, agreement in rows:
        lines.append(f"| {classes} | {name} | {ms:.0f} | {torch_ms / ms:.2f}x | {100 * agreement:.3f} % |")
    lines += ["", "Image encoder alone, one 512x512 window (ms): " + ", ".join(f"{k} {v:.0f}" for k, v in floors.items())]
    return "\n".join(lines + [""] + _targets(rows) + [""])


def _targets(rows) -> List[str]:
    """Issue 27's CPU target at C = 171: the fastest reduced Engine row >= 2.5x the PyTorch pipeline with >= 99 %
    of labels equal to fp32, and what the rows cannot say."""
    reduced = [r for r in rows if r[0] == 171 and r[1].startswith("Engine") and not r[1].endswith("fp32")]
    lines = []
    if reduced:
        classes, name, ms, torch_ms, agreement = min(reduced, key=lambda r: r[2])
        speed, labels = torch_ms / ms, 100 * agreement
        lines.append(
            f"Issue 27's CPU target at C = 171 ({name}): >= 2.5x the PyTorch pipeline: **{speed:.2f}x, "
            f"{'PASS' if speed >= 2.5 else 'MISS'}**; labels >= 99 % equal to fp32: **{labels:.3f} %, "
            f"{'PASS' if labels >= 99.0 else 'MISS'}**."
        )
    lines.append(
        "Caveats: on a shared machine absolute times drift with the load; the rows take turns frame by frame, so the "
        "ratios compare like with like. The PyTorch side is zsseg_rt's transcription of the official test order "
        "(`predict`), not mmseg's code. With random weights the agreement of trained weights is not measured. "
        "ONNX Runtime has no bf16 arithmetic on x86 (docs/precision.md): int8 is the only reduced CPU precision "
        "here; CPUs without VNNI (7-bit weights) and Arm CPUs are not measured by a run on this machine."
    )
    return lines


def _model(native):
    import torch

    from zsseg_rt.models import create_model

    if native:
        from zsseg_rt.models.common.convert import load_native

        return load_native(native).eval()
    torch.manual_seed(0)
    return create_model("zegclip_vitb16_voc_inductive").eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", required=True, help="a full-size ZegCLIP bundle (`zsseg export`)")
    parser.add_argument("--native", default=None, help="the native checkpoint the bundle was exported from")
    parser.add_argument("--classes", default="171", help="comma-separated vocabulary sizes among 20,171")
    parser.add_argument("--precisions", default="fp32,int8", help="Engine precisions on ONNX Runtime")
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--write", action="store_true", help="update the section in BENCHMARKS.md")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import cv2
    import torch

    torch.set_num_threads(args.threads)
    model = _model(args.native)
    image = cv2.imread(str(PHOTO), cv2.IMREAD_COLOR)
    args.photo_size = f"{image.shape[1]}x{image.shape[0]}"
    args.weights = "weights: " + ("the native checkpoint the bundle came from" if args.native else "random (seed 0)")
    args.command_tail = "--bundle B --native N --write" if args.native else "--bundle B --write"
    precisions = [p for p in args.precisions.split(",") if p]
    engines = {p: _engine(args.bundle, p, args.threads) for p in precisions}
    rows: List[tuple] = []
    for classes, (names, emb) in _vocabularies(model, [int(c) for c in args.classes.split(",")]).items():
        runs = {"torch fp32 (PyTorch pipeline)": _torch_run(model, names, emb, image)}
        for p in precisions:
            runs[f"Engine onnxruntime {p}"] = _engine_run(engines[p], names, emb, image)
        results = interleaved(runs, args.iters, args.warmup)
        torch_ms, torch_labels = results["torch fp32 (PyTorch pipeline)"]
        exact = results["Engine onnxruntime fp32"][1] if "fp32" in precisions else torch_labels
        for name, (ms, labels) in results.items():
            rows.append((classes, name, ms, torch_ms, float((labels == exact).mean())))
        print(rows[-len(results) :], flush=True)
    floors = encoder_floors(engines, args.iters, args.warmup)
    text = render(rows, floors, args)
    print(text)
    if args.write:
        print(f"wrote {write_section(SECTION, text)}")


if __name__ == "__main__":
    main()
