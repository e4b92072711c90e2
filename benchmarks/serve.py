#!/usr/bin/env python
"""Bounded load test of ``zsseg serve`` (Ray Serve) on 127.0.0.1: latency p50/p99, throughput, errors, answers
checked against the local Engine, and the replica's RSS after each round (flat = no leak).

Starts a local Ray cluster bound to 127.0.0.1 (nothing else is contacted), deploys the server for a bundle (by
default a freshly exported tiny ZegCLIP, 64 px input, random weights: the serving overhead dominates; pass
``--bundle`` for a real one), warms up, then sends ``--rounds`` rounds of ``--requests`` POSTs of the four
packaged VOC photos from ``--concurrency`` client threads. Each round stops starting requests after
``--max-seconds``, so the run always ends.

    .venv/bin/python -m benchmarks serve --write     # updates the "## Serving" section of BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import tempfile
import time
from typing import Dict, List

import numpy as np

from .common import machine_description, write_section

SECTION = "## Serving: zsseg serve on Ray Serve (HTTP, 127.0.0.1)"
VOCAB = ["person", "cat", "dog", "car", "chair", "sofa", "table", "plant", "bottle", "tv"]


def _bundle(args) -> str:
    if args.bundle:
        return args.bundle
    import torch

    from zsseg_rt.export.onnx_export import export_bundle
    from zsseg_rt.models import create_model

    torch.manual_seed(0)
    path = os.path.join(tempfile.mkdtemp(prefix="zsseg-bench-serve-"), "bundle")
    export_bundle(create_model(args.config).eval(), path, max_classes=32, verify_images=())
    return path


def _photos(width: int):
    import cv2

    from zsseg_rt.assets import sample_images

    out = []
    for path in sample_images():
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if width:
            image = cv2.resize(image, (width, int(round(width * image.shape[0] / image.shape[1]))))
        ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 95])
        out.append((data.tobytes(), cv2.imdecode(data, cv2.IMREAD_COLOR)))  # what the server decodes
    return out


def run(args) -> Dict:
    from zsseg_rt.scale import init_ray

    init_ray(num_cpus=args.num_cpus)
    from ray import serve

    from zsseg_rt.runtime import Engine
    from zsseg_rt.scale.loadtest import get_json, run_load_test
    from zsseg_rt.scale.serve import decode_labels, run_server

    bundle = _bundle(args)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    run_server(
        bundle,
        VOCAB,
        host="127.0.0.1",
        port=port,
        backend="onnxruntime",
        cpus_per_replica=1.0,
        max_batch_size=args.max_batch_size,
        batch_wait_s=args.batch_wait_ms / 1000.0,
    )
    photos = _photos(args.width)
    engine = Engine(bundle, classes=VOCAB, backend="onnxruntime")
    expected = [engine(image).labels for _, image in photos]
    images = [data for data, _ in photos]
    warm = run_load_test(url + "/segment", images, requests=args.concurrency * 2, concurrency=args.concurrency)
    rss = [get_json(url + "/stats")["rss_bytes"]]
    rounds, mismatches = [], 0
    for _ in range(args.rounds):
        result = run_load_test(url + "/segment", images, args.requests, args.concurrency, args.max_seconds)
        for index, answer in enumerate(result.answers):
            if answer is None or not np.array_equal(decode_labels(answer), expected[index % len(photos)]):
                mismatches += 1
        rounds.append(result)
        rss.append(get_json(url + "/stats")["rss_bytes"])
        print(result.summary(), flush=True)
    stats = get_json(url + "/stats")
    serve.shutdown()
    latencies = [lat for r in rounds for lat in r.latencies_s]
    completed = sum(r.completed for r in rounds)
    return {
        "bundle": "given" if args.bundle else f"{args.config} (random weights)",
        "warmup_errors": len(warm.errors),
        "requests": args.requests * args.rounds,
        "completed": completed,
        "errors": sum(len(r.errors) for r in rounds),
        "mismatches": mismatches,
        "p50_ms": float(np.percentile(np.asarray(latencies) * 1000, 50)),
        "p99_ms": float(np.percentile(np.asarray(latencies) * 1000, 99)),
        "throughput_rps": completed / sum(r.wall_s for r in rounds),
        "rss_mb": [round(v / 2**20, 1) for v in rss],
        "mean_batch_size": stats["mean_batch_size"],
        "image_sizes": sorted({f"{image.shape[1]}x{image.shape[0]}" for _, image in photos}),
    }


def render(result: Dict, args) -> str:
    lines = [
        SECTION,
        "",
        "Regenerate: `.venv/bin/python -m benchmarks serve --write` (local Ray cluster on 127.0.0.1; one replica "
        "with 1 CPU, ONNX Runtime; client threads in the same process).",
        "",
        *[line for line in machine_description(0) if not line.startswith("- Threads")],  # ORT default threads
        f"- Bundle: {result['bundle']}; images: the 4 VOC samples as JPEG, {', '.join(result['image_sizes'])}; "
        f"vocabulary of {len(VOCAB)} classes",
        f"- Load: {args.rounds} rounds x {args.requests} requests, {args.concurrency} concurrent clients, "
        f"max batch {args.max_batch_size}, batch wait {args.batch_wait_ms} ms, deadline {args.max_seconds} s per round",
        "",
        "| requests | completed | errors | labels != local Engine | p50 ms | p99 ms | throughput req/s | "
        "mean batch | replica RSS MB (after warm-up, after each round) |",
        "|---|---|---|---|---|---|---|---|---|",
        f"| {result['requests']} | {result['completed']} | {result['errors']} | {result['mismatches']} | "
        f"{result['p50_ms']:.1f} | {result['p99_ms']:.1f} | {result['throughput_rps']:.1f} | "
        f"{result['mean_batch_size']:.2f} | {' / '.join(str(v) for v in result['rss_mb'])} |",
        "",
    ]
    return "\n".join(lines)


def main(argv: List[str] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", default=None, help="bundle to serve (default: export --config to a temp dir)")
    parser.add_argument("--config", default="zegclip_tiny_test", help="model config exported when no --bundle")
    parser.add_argument("--requests", type=int, default=200, help="requests per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--max-seconds", type=float, default=120.0, help="per-round deadline for starting requests")
    parser.add_argument("--max-batch-size", type=int, default=8)
    parser.add_argument("--batch-wait-ms", type=float, default=5.0)
    parser.add_argument("--width", type=int, default=320, help="resize the photos to this width (0: as shipped)")
    parser.add_argument("--num-cpus", type=int, default=2, help="CPUs of the local Ray cluster")
    parser.add_argument("--write", action="store_true", help="update the section in BENCHMARKS.md")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    result = run(args)
    text = render(result, args)
    print(text)
    print(f"total {time.perf_counter() - start:.0f} s")
    if args.write:
        print(f"wrote {write_section(SECTION, text)}")
    return 1 if result["errors"] or result["mismatches"] else 0


if __name__ == "__main__":
    sys.exit(main())
