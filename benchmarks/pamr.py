"""Benchmark the native PAMR op (ops.pamr, CPU) against its PyTorch equivalent, in the same run.

The PyTorch side is PAMR as NACLIP and SC-CLIP run it (visinf/1-stage-wseg ``models/mods/pamr.py``: shift kernels
as dilated 3x3 convolutions on replicate-padded maps, std, softmax, ``(m * w).sum(2)`` per step), written with the
same torch ops. Cases: NACLIP's setting (10 steps, dilations (8, 16)) on a VOC-sized image (375 x 500) with the
21 VOC classes and with COCO-Stuff's 171.

Usage:
    .venv/bin/python -m benchmarks pamr            # print the table
    .venv/bin/python -m benchmarks pamr --write    # also update the "## PAMR (CPU)" section of BENCHMARKS.md

Method (printed with the results): every (case, side) runs in a fresh subprocess with OMP_NUM_THREADS =
torch.set_num_threads = --threads; time: median of --repeats timed calls after --warmup untimed calls; peak extra
memory: VmHWM (reset through /proc/self/clear_refs once the inputs exist) minus VmRSS before the first call.
The two outputs are compared (max |difference|) in the parent.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from typing import Callable, Dict, Tuple

from .common import REPO, machine_description, measure_call, show_section

SECTION = "## PAMR (CPU)"
ITERATIONS, DILATIONS = 10, (8, 16)
CASES: Dict[str, Tuple[str, int]] = {
    "pamr_c21": ("PAMR C=21, 375x500, 10 steps, dilations (8, 16), guide 3 channels", 21),
    "pamr_c171": ("PAMR C=171, 375x500, 10 steps, dilations (8, 16), guide 3 channels", 171),
}


def _inputs(case: str):
    import numpy as np

    rng = np.random.default_rng(0)
    classes = CASES[case][1]
    mask = rng.normal(0, 0.1, (1, classes, 375, 500)).astype(np.float32)  # cosine logits (unscaled, as NACLIP's)
    image = rng.normal(0, 1, (1, 3, 375, 500)).astype(np.float32)
    return mask, image


def _ours(mask, image) -> Callable[[], object]:
    from zsseg_rt import ops

    return lambda: ops.pamr(mask, image, ITERATIONS, DILATIONS)


def _torch(mask, image) -> Callable[[], object]:
    import torch
    import torch.nn.functional as F

    outer = [(i, j) for i in range(3) for j in range(3) if (i, j) != (1, 1)]
    aff = torch.zeros(8, 1, 3, 3)
    copy = torch.zeros(8, 1, 3, 3)
    for n, (i, j) in enumerate(outer):
        aff[n, 0, 1, 1], aff[n, 0, i, j], copy[n, 0, i, j] = 1, -1, 1
    std = torch.eye(9).reshape(9, 1, 3, 3)

    def local(x, kernel):
        b, k, h, w = x.shape
        flat = x.reshape(b * k, 1, h, w)
        return torch.cat([F.conv2d(F.pad(flat, [d] * 4, mode="replicate"), kernel, dilation=d) for d in DILATIONS], 1)

    m0, x = torch.from_numpy(mask), torch.from_numpy(image)

    @torch.no_grad()
    def run():
        b, k, h, w = x.shape
        sigma = local(x, std).reshape(b, k, -1, h, w).std(2, keepdim=True)
        weights = -local(x, aff).reshape(b, k, -1, h, w).abs() / (1e-8 + 0.1 * sigma)
        weights = F.softmax(weights.mean(1, keepdim=True), 2)
        m = m0
        for _ in range(ITERATIONS):
            m = (local(m, copy).reshape(b, m.shape[1], -1, h, w) * weights).sum(2)
        return m

    return run


def _worker(case: str, side: str, threads: int, warmup: int, repeats: int, save: str) -> dict:
    import numpy as np

    if side == "torch":
        import torch

        torch.set_num_threads(threads)
    mask, image = _inputs(case)
    fn = _ours(mask, image) if side == "ours" else _torch(mask, image)
    return measure_call(fn, warmup, repeats, first=lambda result: np.save(save, np.asarray(result)))


def run_side(case: str, side: str, args, save: str) -> dict:
    from benchmarks._launch import checkout_module  # the checkout's launcher: from any cwd, PYTHONSAFEPATH=1 too

    cmd, env = checkout_module("benchmarks.pamr", "--worker", case, side, "--save", save, "--threads", args.threads,
                               "--warmup", args.warmup, "--repeats", args.repeats,
                               env=dict(os.environ, OMP_NUM_THREADS=str(args.threads)))  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, timeout=1800)
    if out.returncode != 0:
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr.strip() else f"exit {out.returncode}"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--write", action="store_true", help="update BENCHMARKS.md")
    parser.add_argument("--worker", nargs=2, metavar=("CASE", "SIDE"), help=argparse.SUPPRESS)
    parser.add_argument("--save", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(_worker(*args.worker, args.threads, args.warmup, args.repeats, args.save)))
        return 0
    import tempfile

    import numpy as np

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for case, (description, _) in CASES.items():
            ours = run_side(case, "ours", args, f"{tmp}/ours.npy")
            torch_side = run_side(case, "torch", args, f"{tmp}/torch.npy")
            diff = float(np.abs(np.load(f"{tmp}/ours.npy") - np.load(f"{tmp}/torch.npy")).max())
            rows.append((description, ours, torch_side, diff))
            print(description, ours, torch_side, f"max |diff| {diff:.2e}", flush=True)
    lines = [
        SECTION,
        "",
        "Regenerate: `.venv/bin/python -m benchmarks pamr --write` (each side in a fresh subprocess; median of "
        f"{args.repeats} calls after {args.warmup} warm-up; peak extra memory = VmHWM - VmRSS around the first call).",
        "PyTorch side: PAMR as NACLIP / SC-CLIP run it (1-stage-wseg's dilated 3x3 shift convolutions).",
        "",
        *machine_description(args.threads),
        "",
        "| case | zsseg_rt ms | PyTorch ms | speed-up | zsseg_rt peak MB | PyTorch peak MB | max abs diff |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for description, ours, torch_side, diff in rows:
        if "error" in ours or "error" in torch_side:
            lines.append(f"| {description} | {ours.get('error', '')} | {torch_side.get('error', '')} | | | | |")
            continue
        speedup = torch_side["median_ms"] / ours["median_ms"]
        lines.append(
            f"| {description} | {ours['median_ms']:.1f} | {torch_side['median_ms']:.1f} | {speedup:.1f}x | "
            f"{ours['peak_extra_mb']:.0f} | {torch_side['peak_extra_mb']:.0f} | {diff:.1e} |"
        )
    show_section(SECTION, "\n".join(lines) + "\n", args.write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
