"""``zsseg serve``: a bundle served over HTTP on Ray Serve (:mod:`zsseg_rt.scale.serve`; Ray is imported when it
runs)."""

from __future__ import annotations

import argparse
import signal
import socket

from zsseg_rt.cli import command_parser
from zsseg_rt.cli.scale_options import (
    CLASSES_HELP,
    add_cluster_arguments,
    add_resource_arguments,
    local_cluster,
    local_cpus,
)
from zsseg_rt.console.arguments import add_engine_arguments, engine_kwargs, port_number, real_number, whole_number

__all__ = ["add_command"]


def _check_serve_args(args: argparse.Namespace) -> None:
    """Everything ``zsseg serve`` can check before Ray starts: the bundle (and its pinned digest), the vocabulary,
    the listening address and port, the replicas against the local cluster's CPUs, and on a local cluster every
    value the replicas' Engine would refuse (it is opened once, in a child process: ``check_worker_engine``)."""
    from zsseg_rt.bundle import check_bundle_digest, load_meta
    from zsseg_rt.image_io import max_pixels_limit
    from zsseg_rt.vocabulary import Vocabulary

    meta = load_meta(args.bundle)
    if args.expected_digest is not None:
        check_bundle_digest(meta, args.expected_digest)
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
    if local_cluster(args.address):  # the replicas run here: what their Engine refuses is refused now
        from zsseg_rt.scale.engine import check_worker_engine

        check_worker_engine(args.bundle, args.classes, **engine_kwargs(args, "serve"))


def _stop_once(signum, frame) -> None:
    """``zsseg serve``'s SIGINT / SIGTERM handler, set before anything starts: one clean shutdown (further signals
    are ignored until it is done), raising what the command line's handler raises (``KeyboardInterrupt`` /
    ``Terminated``, the signal recorded). Raised inside ``ray.get`` (where Ray runs the handler while it waits for
    the deployment) that comes out as Ray's own ``KeyboardInterrupt``; the exception class of before, not one,
    became "SystemError: ... returned a result with an exception set" there, or was dropped: the signal swallowed,
    and every later one ignored by then."""
    from zsseg_rt.console.errors import interrupt_handler

    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    interrupt_handler(signum, frame)


def _run_serve(args: argparse.Namespace) -> int:
    """``zsseg serve``: start, serve until SIGINT / SIGTERM, shut down. A signal at any phase (checks, Ray's start,
    Ray Serve's, the replicas' model load, serving) stops it the same way: "shutting down", what started is shut
    down, "stopped", 128 + the signal. Calls into Ray that cannot be left midway (``ray.init``, Ray Serve's import and
    ``serve.start``) hold a signal until they return (``zsseg_rt.console.signal_phases.held_signals``)."""
    from zsseg_rt.console.errors import exit_code_for_signal, signal_of
    from zsseg_rt.console.signal_phases import held_signals

    previous = {
        sig: signal.signal(sig, _stop_once)
        for sig in (signal.SIGTERM, signal.SIGINT)
        if signal.getsignal(sig) != signal.SIG_IGN  # an ignored Ctrl-C (nohup) stays ignored
    }
    started: dict = {"ray_before": _ray_running()}  # a Ray the caller runs (cli.main in its process) is not ours
    stopped_by = None
    try:
        try:
            _start_and_serve(args, started)
        except KeyboardInterrupt as exc:  # Ctrl-C or SIGTERM (Terminated), at whatever phase
            stopped_by = signal_of(exc)
            print(f"zsseg serve: {signal.Signals(stopped_by).name}: shutting down", flush=True)
        finally:
            with held_signals(act=False):  # one clean shutdown; further signals wait for it
                _shut_down(args, started)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print("zsseg serve: stopped", flush=True)
    return 0 if stopped_by is None else exit_code_for_signal(stopped_by)  # 143 after SIGTERM, 130 after Ctrl-C


def _ray_running() -> bool:
    """Whether this process is connected to Ray already (without importing it: an import here would come before
    ``init_ray`` could keep a new local cluster on loopback)."""
    import sys

    ray = sys.modules.get("ray")
    return ray is not None and ray.is_initialized()


def _start_and_serve(args: argparse.Namespace, started: dict) -> None:
    """The start-up, then serving until a signal (``started["serve"]``: Ray Serve was asked to start). The
    ``phase`` calls are a test hook (python_tests/scale/test_ray_signal_phases.py)."""
    from zsseg_rt.console.signal_phases import held_signals, phase
    from zsseg_rt.scale import init_ray

    _check_serve_args(args)
    phase("serve:checked")
    init_ray(args.address, num_cpus=args.num_cpus)  # before Ray Serve's import: a local cluster stays on loopback
    phase("serve:ray-ready")
    with held_signals():  # Ray Serve's modules (seconds): a signal meanwhile is acted on once they are in
        from zsseg_rt.scale.serve import run_server
    started["serve"] = True
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
        max_queued=args.max_queued,
        **engine_kwargs(args, "serve"),  # every replica's Engine (zsseg_rt.options)
    )
    print(
        f"serving on http://{args.host}:{args.port}/ (web page; POST /segment for the API); Ctrl-C or SIGTERM stops",
        flush=True,
    )
    phase("serve:serving")
    while True:
        signal.pause()


def _shut_down(args: argparse.Namespace, started: dict) -> None:
    """End what the start-up started, whatever phase it reached.

    On the private local cluster: the replicas stop admitting (every request after the signal gets 503 with
    Retry-After) and finish the requests they hold (``serve_stop.stop_accepting``), then the cluster goes as a whole,
    the controller and proxy with it. The application is not deleted first: that took its route off the proxy while
    it still listened, so the requests arriving then got Ray's plain-text 404. serve.shutdown() would
    only add Ray's noise there: the controller's graceful_shutdown call ends by design with the controller's own ray.kill,
    which the raylet reports to the terminal as a failed call "to be retried". On a cluster of its own (--address),
    Serve is shut down there (if this command started it). Ray is left explicitly, not at the interpreter's exit;
    a Ray this process was connected to before the command (``cli.main`` called where Ray runs) is the caller's and
    stays up, also when the command is refused before Ray starts (it was shut down: the scale tests' session cluster,
    which Ray's auto-init then started again with its own defaults)."""
    import sys

    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        return  # stopped before Ray started (init_ray leaves no Ray running when it is interrupted)
    if started.get("serve"):
        from ray import serve

        if local_cluster(args.address) and not started.get("ray_before"):
            from zsseg_rt.scale.serve_stop import stop_accepting

            busy = stop_accepting()
            if busy:
                print(
                    f"zsseg serve: {len(busy)} replica(s) still held requests after 60 s; stopping anyway", flush=True
                )
        else:
            serve.shutdown()
    if not started.get("ray_before"):
        ray.shutdown()


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
    add_resource_arguments(p, "replica", "replica")  # --gpus-per-replica, --cpus-per-replica
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
    p.add_argument(
        "--max-queued",
        type=whole_number(0),
        default=None,
        help="requests a replica admits beyond the batch it runs (default: twice --max-batch-size, 16); more at once "
        "get HTTP 503 with Retry-After at once, so a burst costs neither unbounded memory nor time-outs",
    )
    add_engine_arguments(p, "serve")  # --backend, --precision, --max-pixels, --bundle-digest, ... (zsseg_rt.options)
    add_cluster_arguments(p)
    p.set_defaults(func=_run_serve)
    return p
