"""``zsseg serve``: a bundle served over HTTP on Ray Serve (:mod:`zsseg_rt.scale.serve`; Ray is imported when it
runs)."""

from __future__ import annotations

import argparse
import signal
import socket

from zsseg_rt.cli import command_parser
from zsseg_rt.cli.scale_options import (
    BACKEND_HELP,
    CLASSES_HELP,
    DEVICE_HELP,
    MODE_HELP,
    add_cluster_arguments,
    add_limit_arguments,
    engine_options,
    local_cluster,
    local_cpus,
)
from zsseg_rt.cli_types import add_engine_arguments, port_number, real_number, whole_number

__all__ = ["add_command"]


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
    if local_cluster(args.address) and args.replicas * args.cpus_per_replica > local_cpus(args):
        raise ValueError(
            f"{args.replicas} replicas x {args.cpus_per_replica:g} CPUs need more than the {local_cpus(args)} CPUs of "
            "the local cluster (the deployment would wait forever): lower --replicas or --cpus-per-replica"
        )


def _run_serve(args: argparse.Namespace) -> int:
    from zsseg_rt.scale import import_ray, init_ray

    _check_serve_args(args)
    init_ray(args.address, num_cpus=args.num_cpus)  # before Ray Serve's import: a local cluster stays on loopback
    from ray import serve
    from ray.serve.exceptions import RayServeException

    from zsseg_rt.scale.serve import APP_NAME, run_server

    def stop(signum, _frame):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # one clean shutdown; further signals wait for it
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        raise _Stop(signal.Signals(signum).name, signum)

    # replace Ray's own handlers (which print a native stack dump on SIGTERM) with a clean shutdown
    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    stopped_by = None
    try:
        # twin (by shape): train/trainer.py's TrainAugmentation call - keyword arguments passed on
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
            **engine_options(args),
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
            if local_cluster(args.address):
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


def add_command(subparsers) -> argparse.ArgumentParser:
    """Register ``serve`` on an argparse subparsers object (``zsseg serve``)."""
    p = command_parser(
        subparsers,
        "serve",
        description="Open http://HOST:PORT/ in a browser for the web page, or POST an encoded image to "
        "http://HOST:PORT/segment (optionally ?classes=a,b,c); the answer is JSON: labels and scores as base64 PNG, "
        "class names and colours, per-class areas, timing. GET /stats gives counters. Ctrl-C or SIGTERM stops.",
    )
    p.add_argument("--bundle", required=True, help="bundle directory written by `zsseg export`")
    p.add_argument("--classes", required=True, help=CLASSES_HELP + "; the default (a request may give its own)")
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
    add_engine_arguments(p, backend_help=BACKEND_HELP, device_help=DEVICE_HELP, mode_help=MODE_HELP)
    add_limit_arguments(p)
    add_cluster_arguments(p)
    p.set_defaults(func=_run_serve)
    return p
