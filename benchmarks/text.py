#!/usr/bin/env python
"""Vocabulary cost of zsseg_rt.Engine: the text encoder at the full context length vs trimmed to the prompts'
own lengths, and the cost of adding one class to a 170-class vocabulary (per-class embedding cache).

Full-size CLIP ViT-B/16 text tower (random weights: latency does not depend on them), exported by the bundle
exporter (dynamic sequence axis), run with ONNX Runtime on the CPU. Vocabulary: the 171 COCO-Stuff names with
the bundle's single template. Each timing is the median of --repeats runs in this process.

    .venv/bin/python -m benchmarks text --write     # updates the "## Vocabulary" section of BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import os
import tempfile

import numpy as np

from .common import median_ms, section_head, show_section

SECTION = "## Vocabulary: text encoder and per-class cache (ONNX Runtime CPU, full-size CLIP ViT-B/16 text)"


def _measure(engine, names, templates, repeats: int) -> dict:
    tokens = engine.tokenizer([t.format(n) for n in names for t in templates])
    lengths = np.count_nonzero(tokens, axis=1)

    def full_run():
        return np.concatenate([engine.backend.encode_text(tokens[i : i + 256]) for i in range(0, len(tokens), 256)])

    def trimmed_run():
        out = np.empty((len(tokens), engine.meta.embed_dim), np.float32)
        for rows, part in engine._token_batches(tokens):
            out[rows] = engine.backend.encode_text(part)
        return out

    full_ms, trimmed_ms = median_ms(full_run, repeats), median_ms(trimmed_run, repeats)
    max_diff = float(np.abs(full_run() - trimmed_run()).max())

    def cold():
        engine.text_cache.clear()
        engine.set_classes(names, templates=templates)

    cold_ms = median_ms(cold, repeats)

    def add_one():
        engine.text_cache.discard(names[-1], templates)
        engine.set_classes(names, templates=templates)

    add_ms = median_ms(add_one, repeats)
    return {
        "templates": len(templates),
        "prompts": len(tokens),
        "lengths": f"{lengths.min()}..{lengths.max()} of 77",
        "full_ms": full_ms,
        "trimmed_ms": trimmed_ms,
        "max_diff": max_diff,
        "cold_ms": cold_ms,
        "add_ms": add_ms,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import torch

    torch.set_num_threads(args.threads)
    from zsseg_rt import Engine
    from zsseg_rt.contract.common.config import load_class_names
    from zsseg_rt.export.onnx_export import export_bundle
    from zsseg_rt.models import create_model

    names = load_class_names("coco_stuff171")
    with tempfile.TemporaryDirectory() as tmp:
        model = create_model("zegclip_vitb16_coco_inductive").eval()
        bundle = export_bundle(model, os.path.join(tmp, "bundle"), max_classes=256, verify_images=())
        del model
        engine = Engine(bundle, backend="onnxruntime", threads=args.threads)
        rows = []
        for templates in (("a photo of a {}.",), tuple(engine.meta.templates)):
            rows.append(_measure(engine, names, templates, args.repeats))
    lines = [
        *section_head(SECTION, "text --write", args.threads),
        f"- Vocabulary: the {len(names)} COCO-Stuff names; median of {args.repeats} runs. Before: every prompt padded "
        "to 77 tokens, chunks of 256 prompts (the Engine until this change). After: prompts grouped by their own "
        "length rounded up to a multiple of 8.",
        "",
        "| templates | prompts | token lengths | text encoder, 77 tokens (ms) | trimmed (ms) | speed-up | max abs diff "
        "| `set_classes` 171 names, cold (ms) | 170 cached + 1 new (ms) |",
        "|---:|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['templates']} | {r['prompts']} | {r['lengths']} | {r['full_ms']:.0f} | {r['trimmed_ms']:.0f} | "
            f"{r['full_ms'] / r['trimmed_ms']:.1f}x | {r['max_diff']:.1e} | {r['cold_ms']:.0f} | {r['add_ms']:.0f} |"
        )
    lines += [
        "",
        "Trimming is exact up to fp32 rounding (CLIP's causal mask: the end token's output does not depend "
        "on the padding after it); adding one class encodes only that class's prompts.",
        "",
    ]
    show_section(SECTION, "\n".join(lines), args.write)


if __name__ == "__main__":
    main()
