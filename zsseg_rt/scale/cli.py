"""``zsseg batch`` and ``zsseg serve`` (registered by ``zsseg_rt.cli``; Ray is imported when they run)."""

from __future__ import annotations

import argparse
import os
import signal
import socket
from typing import Any, Dict, Optional

from zsseg_rt.cli_types import add_engine_arguments, port_number, real_number, whole_number

__all__ = ["add_batch_command", "add_serve_command"]

_BACKEND_HELP = (
    "auto (TensorRT when engines were built, else ONNX Runtime), tensorrt, onnxruntime, openvino (CPU) or torch "
    "(default auto)"
)
_DEVICE_HELP = "auto, cpu or cuda (default auto)"
_CLASSES_HELP = (
    'comma-separated class names, e.g. "cat,sofa,floor" ("person; man; woman": one class with synonyms), or a named '
    "vocabulary such as voc21 (a benchmark's official classes)"
)
_MODE_HELP = "post-processing order: exact (the papers' order) or fast; see `zsseg segment --help` (default exact)"


def _add_cluster_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--address",
        default=None,
        help="Ray cluster to join: 'auto' (this node's cluster), 'ray://head:10001'; default: RAY_ADDRESS if set, "
        "else a new local cluster on 127.0.0.1",
    )
    p.add_argument("--num-cpus", type=whole_number(1), default=None, help="CPUs of a new local cluster (default: all)")


def _workers(text: str):
    """argparse type of --workers: N or MIN:MAX (whole numbers >= 1)."""
    try:
        if ":" in text:
            low, high = text.split(":", 1)
            value: Any = (int(low), int(high))
            ok = 1 <= value[0] <= value[1]
        else:
            value = int(text)
            ok = value >= 1
    except ValueError:
        ok = False
    if not ok:
        raise argparse.ArgumentTypeError(f"expected N or MIN:MAX with 1 <= MIN <= MAX, got {text!r}")
    return value


def _local_cluster(address: Optional[str]) -> bool:
    """Whether ``init_ray(address)`` starts a private cluster on this machine (no address, no ``RAY_ADDRESS``)."""
    return address is None and not os.environ.get("RAY_ADDRESS")


def _local_cpus(args: argparse.Namespace) -> int:
    return int(args.num_cpus or os.cpu_count() or 1)


def _engine_options(args: argparse.Namespace) -> Dict[str, Any]:
    """The Engine options that ``zsseg batch`` and ``zsseg serve`` pass on alike to every actor / replica: those of
    ``add_engine_arguments`` (but ``--precision``, batch only) and of ``_add_limit_args``."""
    return {
        "backend": args.backend,
        "device": args.device,
        "mode": args.mode,
        "max_pixels": args.max_pixels,
        "expected_digest": args.bundle_digest,
    }


def _run_batch(args: argparse.Namespace) -> int:
    from . import import_ray, init_ray
    from .batch import check_pool_fits, prepare_batch, summarize_batch

    # twin (by shape): the run_server call of _run_serve - each command passes its own Namespace fields on
    job = prepare_batch(  # every argument checked before Ray starts (a Ray start takes 10-20 s)
        args.input,
        args.output,
        args.bundle,
        args.classes,
        precision=args.precision,
        workers=args.workers,
        gpus_per_worker=args.gpus_per_worker,
        cpus_per_worker=args.cpus_per_worker,
        batch_size=args.batch_size,
        resume=not args.no_resume,
        **_engine_options(args),
    )
    local = _local_cluster(args.address)
    if local:
        check_pool_fits(job, cpus=_local_cpus(args), gpus=float("inf"))  # GPUs: known once Ray has looked
    init_ray(args.address, num_cpus=args.num_cpus)
    if local:
        resources = import_ray().cluster_resources()
        check_pool_fits(job, cpus=resources.get("CPU", 0.0), gpus=resources.get("GPU", 0.0))
    summary = summarize_batch(job, progress=not args.no_progress)
    print(
        f"{summary['ok']} segmented, {summary['skipped']} already done, {summary['error']} failed; "
        f"manifest: {summary['manifest']}"
    )
    if summary["worker_peak_rss_bytes"] is not None:
        growth = summary["worker_peak_growth_bytes"]
        print(
            f"worker memory: peak RSS {summary['worker_peak_rss_bytes'] / 2**20:.0f} MB"
            + (f" ({growth / 2**20:.0f} MB over the loaded Engine)" if growth is not None else "")
        )
    for row in summary["errors"]:
        print(f"  error: {row['image']}: {row['error']}")
    return 1 if summary["error"] else 0


def _add_limit_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--max-pixels",
        type=whole_number(0),
        default=None,
        help="refuse images with more pixels than this, read from their header before decoding (default: "
        "$ZSSEG_MAX_PIXELS or 40000000, the limit of every zsseg command; 0 = no limit); files and request bodies "
        "longer than an uncompressed image of that size are refused unread",
    )
    p.add_argument(
        "--bundle-digest",
        default=None,
        metavar="sha256:HEX",
        help="refuse the bundle unless its digest is this one (zsseg export prints it): the bundle's hashes show "
        "integrity, a digest pinned here shows it is the bundle you exported",
    )


# twin (by shape): stream/cli.py add_camera_command, eval/cli.py add_eval_command - the add_<command>_command idiom
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
    p.add_argument(
        "output",
        help="output folder: a label PNG per image named after its path relative to INPUT, extension kept "
        "(a/cat.jpg -> OUTPUT/a/cat.jpg.png), and manifest.jsonl",
    )
    p.add_argument("--bundle", required=True, help="bundle directory (the same path on every node)")
    p.add_argument("--classes", required=True, help=_CLASSES_HELP)
    p.add_argument(
        "--workers", type=_workers, default=1, help="actors in the pool: N, or MIN:MAX to autoscale (default 1)"
    )
    p.add_argument(
        "--gpus-per-worker",
        type=real_number(0),
        default=0.0,
        help="GPUs per actor (0: CPU actors; 0.5 shares one GPU between two; default 0)",
    )
    p.add_argument("--cpus-per-worker", type=real_number(above=0), default=1.0, help="CPUs per actor (default 1)")
    p.add_argument("--batch-size", type=whole_number(1), default=4, help="images per actor call (default 4)")
    add_engine_arguments(
        p,
        backend_help=_BACKEND_HELP,
        device_help=_DEVICE_HELP,
        mode_help=_MODE_HELP,
        precision_help="the Engine's precision (default: the backend's); openvino: auto runs the fastest precision "
        "that passed the accuracy gate on each worker's CPU (docs/precision.md)",
    )
    p.add_argument("--no-resume", action="store_true", help="redo images whose outputs exist")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_limit_args(p)
    _add_cluster_args(p)
    p.set_defaults(func=_run_batch)
    return p


class _Stop(BaseException):
    """Raised by the SIGTERM / SIGINT handler of ``zsseg serve``: leave the serving loop and shut down cleanly
    (``signum``: the signal, for the exit code)."""

    def __init__(self, name: str, signum: int = signal.SIGTERM):
        super().__init__(name)
        self.signum = int(signum)


def _check_serve_args(args: argparse.Namespace) -> None:
    """Everything ``zsseg serve`` can check before Ray starts: the bundle (and its pinned digest), the vocabulary,
    the listening address and port, the replicas against the local cluster's CPUs."""
    from zsseg_rt.bundle import check_bundle_digest, load_meta
    from zsseg_rt.image_io import max_pixels_limit
    from zsseg_rt.vocabulary import Vocabulary

    meta = load_meta(args.bundle)
    if args.bundle_digest is not None:
        check_bundle_digest(meta, args.bundle_digest)
    Vocabulary.parse(args.classes, meta.max_classes)  # a list of names, or a named vocabulary ("voc21")
    max_pixels_limit(args.max_pixels)
    try:
        infos = socket.getaddrinfo(args.host, args.port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ValueError(f"--host {args.host!r} is not an address of this machine ({exc.strerror})") from None
    family, _, _, _, address = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            raise ValueError(
                f"cannot listen on {args.host}:{args.port} ({exc.strerror}): choose another --port, or --host "
                "an address of this machine"
            ) from None
    if _local_cluster(args.address) and args.replicas * args.cpus_per_replica > _local_cpus(args):
        raise ValueError(
            f"{args.replicas} replicas x {args.cpus_per_replica:g} CPUs need more than the {_local_cpus(args)} CPUs of "
            "the local cluster (the deployment would wait forever): lower --replicas or --cpus-per-replica"
        )


def _run_serve(args: argparse.Namespace) -> int:
    from . import import_ray, init_ray

    _check_serve_args(args)
    init_ray(args.address, num_cpus=args.num_cpus)  # before Ray Serve's import: a local cluster stays on loopback
    from ray import serve
    from ray.serve.exceptions import RayServeException

    from .serve import APP_NAME, run_server

    def stop(signum, _frame):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # one clean shutdown; further signals wait for it
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        raise _Stop(signal.Signals(signum).name, signum)

    # replace Ray's own handlers (which print a native stack dump on SIGTERM) with a clean shutdown
    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    stopped_by = None
    try:
        # twin (by shape): the prepare_batch call of _run_batch, train/trainer.py's TrainAugmentation call - keyword
        # arguments passed on
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
            **_engine_options(args),
        )
        print(
            f"serving on http://{args.host}:{args.port}/ (web page; POST /segment for the API); "
            "Ctrl-C or SIGTERM stops",
            flush=True,
        )
        while True:
            signal.pause()
    except _Stop as reason:
        print(f"zsseg serve: {reason}: shutting down", flush=True)
        stopped_by = reason.signum
    finally:
        try:
            # On the private local cluster: the application is deleted (its replicas finish the requests they hold,
            # as in serve.shutdown()), then the cluster goes as a whole, the controller and proxy with it.
            # serve.shutdown() would only add Ray's noise there: the controller's graceful_shutdown call ends by
            # design with the controller's own ray.kill, which the raylet reports to the terminal as a failed call
            # "to be retried". On a cluster of its own (--address), Serve is shut down there.
            if _local_cluster(args.address):
                try:
                    serve.delete(APP_NAME)
                except RayServeException:  # stopped before Serve started: nothing to delete
                    pass
            else:
                serve.shutdown()
            import_ray().shutdown()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    print("zsseg serve: stopped", flush=True)
    if stopped_by is None:
        return 0
    from zsseg_rt.cli_errors import exit_code_for_signal

    return exit_code_for_signal(stopped_by)  # the one rule: 143 after SIGTERM, 130 after Ctrl-C


def add_serve_command(subparsers) -> argparse.ArgumentParser:
    """Register ``serve`` on an argparse subparsers object (``zsseg serve``)."""
    p = subparsers.add_parser(
        "serve",
        help="serve a bundle over HTTP on Ray Serve (request batching, metrics)",
        description="Open http://HOST:PORT/ in a browser for the web page, or POST an encoded image to "
        "http://HOST:PORT/segment (optionally ?classes=a,b,c); the answer is JSON: labels and scores as base64 PNG, "
        "class names and colours, per-class areas, timing. GET /stats gives counters. Ctrl-C or SIGTERM stops.",
    )
    p.add_argument("--bundle", required=True, help="bundle directory written by `zsseg export`")
    p.add_argument("--classes", required=True, help=_CLASSES_HELP + "; the default (a request may give its own)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=port_number(), default=8000, help="HTTP port (default 8000)")
    p.add_argument("--replicas", type=whole_number(1), default=1, help="Engine replicas, one Engine each (default 1)")
    p.add_argument(
        "--gpus-per-replica",
        type=real_number(0),
        default=0.0,
        help="GPUs per replica (0: CPU replicas; 0.5 shares one GPU between two; default 0)",
    )
    p.add_argument("--cpus-per-replica", type=real_number(above=0), default=1.0, help="CPUs per replica (default 1)")
    p.add_argument(
        "--max-batch-size",
        type=whole_number(1),
        default=8,
        help="most requests batched in one Engine call, their windows packed into shared encoder calls (default 8)",
    )
    p.add_argument(
        "--batch-wait-ms",
        type=real_number(0),
        default=5.0,
        help="how long a batch waits for more requests once the first arrived, in ms (default 5)",
    )
    add_engine_arguments(p, backend_help=_BACKEND_HELP, device_help=_DEVICE_HELP, mode_help=_MODE_HELP)
    _add_limit_args(p)
    _add_cluster_args(p)
    p.set_defaults(func=_run_serve)
    return p
