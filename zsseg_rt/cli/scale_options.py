"""What ``zsseg batch`` and ``zsseg serve`` share: the Ray cluster to run on, the limits and the Engine options
every actor / replica gets (:mod:`zsseg_rt.cli.batch`, :mod:`zsseg_rt.cli.serve`)."""

from __future__ import annotations

import argparse
import os
from typing import Any, Dict, Optional

from zsseg_rt.cli_types import whole_number

__all__ = [
    "BACKEND_HELP",
    "CLASSES_HELP",
    "DEVICE_HELP",
    "MODE_HELP",
    "add_cluster_arguments",
    "add_limit_arguments",
    "engine_options",
    "local_cluster",
    "local_cpus",
]

BACKEND_HELP = (
    "auto (TensorRT when engines were built; on a CPU the fastest path that passed the accuracy gate here, else "
    "ONNX Runtime fp32), tensorrt, onnxruntime, openvino (CPU) or torch "
    "(default auto)"
)
DEVICE_HELP = "auto, cpu or cuda (default auto)"
CLASSES_HELP = (
    'comma-separated class names, e.g. "cat,sofa,floor" ("person; man; woman": one class with synonyms), or a named '
    "vocabulary such as voc21 (a benchmark's official classes)"
)
MODE_HELP = "post-processing order: exact (the papers' order) or fast; see `zsseg segment --help` (default exact)"


def add_cluster_arguments(p: argparse.ArgumentParser) -> None:
    """``--address`` and ``--num-cpus``: the Ray cluster the command runs on."""
    p.add_argument(
        "--address",
        default=None,
        help="Ray cluster to join: 'auto' (this node's cluster), 'ray://head:10001'; default: RAY_ADDRESS if set, "
        "else a new local cluster on 127.0.0.1",
    )
    p.add_argument("--num-cpus", type=whole_number(1), default=None, help="CPUs of a new local cluster (default: all)")


def local_cluster(address: Optional[str]) -> bool:
    """Whether ``init_ray(address)`` starts a private cluster on this machine (no address, no ``RAY_ADDRESS``)."""
    return address is None and not os.environ.get("RAY_ADDRESS")


def local_cpus(args: argparse.Namespace) -> int:
    """The CPUs of the local cluster the command would start (``--num-cpus``, else this machine's)."""
    return int(args.num_cpus or os.cpu_count() or 1)


def engine_options(args: argparse.Namespace) -> Dict[str, Any]:
    """The Engine options that ``zsseg batch`` and ``zsseg serve`` pass on alike to every actor / replica: those of
    ``add_engine_arguments`` (but ``--precision``, batch only) and of ``add_limit_arguments``."""
    return {
        "backend": args.backend,
        "device": args.device,
        "mode": args.mode,
        "max_pixels": args.max_pixels,
        "expected_digest": args.bundle_digest,
    }


def add_limit_arguments(p: argparse.ArgumentParser) -> None:
    """``--max-pixels`` and ``--bundle-digest``: the limits every actor / replica holds to."""
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
