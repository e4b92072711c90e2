"""``zsseg batch`` and ``zsseg serve`` (registered by ``zsseg_rt.cli``; Ray is imported when they run)."""

from __future__ import annotations

import argparse

__all__ = ["add_batch_command", "add_serve_command"]

_BACKEND_HELP = "auto (TensorRT when engines were built, else ONNX Runtime), tensorrt, onnxruntime or torch"
_MODE_HELP = "post-processing order: exact (the papers' order) or fast; see `zsseg segment --help`"


def _add_cluster_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--address",
        default=None,
        help="Ray cluster to join: 'auto' (this node's cluster), 'ray://head:10001'; default: RAY_ADDRESS if set, "
        "else a new local cluster on 127.0.0.1",
    )
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs of a new local cluster (default: all)")


def _workers(text: str):
    if ":" in text:
        low, high = text.split(":", 1)
        return int(low), int(high)
    return int(text)


def _run_batch(args: argparse.Namespace) -> int:
    from . import init_ray
    from .batch import segment_images

    init_ray(args.address, num_cpus=args.num_cpus)
    summary = segment_images(
        args.input,
        args.output,
        args.bundle,
        args.classes,
        progress=not args.no_progress,
        backend=args.backend,
        device=args.device,
        mode=args.mode,
        workers=_workers(args.workers),
        gpus_per_worker=args.gpus_per_worker,
        cpus_per_worker=args.cpus_per_worker,
        batch_size=args.batch_size,
        resume=not args.no_resume,
    )
    print(
        f"{summary['ok']} segmented, {summary['skipped']} already done, {summary['error']} failed; "
        f"manifest: {summary['manifest']}"
    )
    for row in summary["errors"]:
        print(f"  error: {row['image']}: {row['error']}")
    return 1 if summary["error"] else 0


def add_batch_command(subparsers) -> argparse.ArgumentParser:
    """Register ``batch`` on an argparse subparsers object (``zsseg batch``)."""
    p = subparsers.add_parser(
        "batch",
        help="segment a folder / list file / URI of images on a Ray cluster: label PNGs + manifest.jsonl",
        description="Batch segmentation on Ray Data: an actor pool (one Engine per actor) segments every image; "
        "label PNGs (8-bit, 16-bit above 256 classes) and a JSON-lines manifest (class areas, timings) go to "
        "OUTPUT. Re-running resumes: images already done are skipped.",
    )
    p.add_argument("input", help="image folder (recursive), list file (.txt: one path per line), image, or URI/glob")
    p.add_argument("output", help="output folder (label PNGs keep the input's relative paths)")
    p.add_argument("--bundle", required=True, help="bundle directory (the same path on every node)")
    p.add_argument("--classes", required=True, help='comma-separated class names, e.g. "cat,sofa,floor"')
    p.add_argument("--workers", default="1", help="actors in the pool: N, or MIN:MAX to autoscale (default 1)")
    p.add_argument("--gpus-per-worker", type=float, default=0.0, help="GPUs per actor (0: CPU actors; 0.5 shares)")
    p.add_argument("--cpus-per-worker", type=float, default=1.0, help="CPUs per actor (default 1)")
    p.add_argument("--batch-size", type=int, default=4, help="images per actor call (default 4)")
    p.add_argument(
        "--backend", default="auto", choices=["auto", "tensorrt", "onnxruntime", "torch"], help=_BACKEND_HELP
    )
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="auto, cpu or cuda")
    p.add_argument("--mode", default="exact", choices=["exact", "fast"], help=_MODE_HELP)
    p.add_argument("--no-resume", action="store_true", help="redo images whose outputs exist")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_cluster_args(p)
    p.set_defaults(func=_run_batch)
    return p


def _run_serve(args: argparse.Namespace) -> int:
    from . import init_ray

    init_ray(args.address, num_cpus=args.num_cpus)  # before Ray Serve's import: a local cluster stays on loopback
    from .serve import run_server

    run_server(
        args.bundle,
        args.classes,
        host=args.host,
        port=args.port,
        replicas=args.replicas,
        gpus_per_replica=args.gpus_per_replica,
        cpus_per_replica=args.cpus_per_replica,
        max_batch_size=args.max_batch_size,
        batch_wait_s=args.batch_wait_ms / 1000.0,
        backend=args.backend,
        device=args.device,
        mode=args.mode,
        blocking=True,
    )
    return 0


def add_serve_command(subparsers) -> argparse.ArgumentParser:
    """Register ``serve`` on an argparse subparsers object (``zsseg serve``)."""
    p = subparsers.add_parser(
        "serve",
        help="serve a bundle over HTTP on Ray Serve (request batching, metrics)",
        description="POST an encoded image to http://HOST:PORT/segment (optionally ?classes=a,b,c); the answer is "
        "JSON with the label map as base64 PNG and the class names. GET /stats gives counters. Ctrl-C stops.",
    )
    p.add_argument("--bundle", required=True, help="bundle directory written by `zsseg export`")
    p.add_argument("--classes", required=True, help="default vocabulary (a request may give its own)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000)")
    p.add_argument("--replicas", type=int, default=1, help="Engine replicas (one Engine each)")
    p.add_argument("--gpus-per-replica", type=float, default=0.0, help="GPUs per replica (0: CPU; 0.5 shares)")
    p.add_argument("--cpus-per-replica", type=float, default=1.0, help="CPUs per replica (default 1)")
    p.add_argument("--max-batch-size", type=int, default=8, help="requests batched per Engine call")
    p.add_argument("--batch-wait-ms", type=float, default=5.0, help="how long a batch waits to fill")
    p.add_argument(
        "--backend", default="auto", choices=["auto", "tensorrt", "onnxruntime", "torch"], help=_BACKEND_HELP
    )
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="auto, cpu or cuda")
    p.add_argument("--mode", default="exact", choices=["exact", "fast"], help=_MODE_HELP)
    _add_cluster_args(p)
    p.set_defaults(func=_run_serve)
    return p
