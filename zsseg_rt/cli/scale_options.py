"""What ``zsseg batch`` and ``zsseg serve`` share: the Ray cluster to run on and the vocabulary's help
(:mod:`zsseg_rt.cli.batch`, :mod:`zsseg_rt.cli.serve`); the Engine options every actor / replica gets are the
flags of every command that opens an Engine (``zsseg_rt.console.arguments.add_engine_arguments``)."""

from __future__ import annotations

import argparse
import os
from typing import Optional

from zsseg_rt.console.arguments import real_number, whole_number

__all__ = ["CLASSES_HELP", "add_cluster_arguments", "add_resource_arguments", "local_cluster", "local_cpus"]

CLASSES_HELP = (
    'comma-separated class names, e.g. "cat,sofa,floor" ("person; man; woman": one class with synonyms), or a named '
    "vocabulary such as voc21 (a benchmark's official classes)"
)


def add_resource_arguments(p: argparse.ArgumentParser, per: str, unit: str) -> None:
    """``--gpus-per-PER`` and ``--cpus-per-PER``: what each ``unit`` (batch's actor, serve's replica) reserves."""
    p.add_argument(
        f"--gpus-per-{per}",
        type=real_number(0),
        default=0.0,
        help=f"GPUs per {unit} (0: CPU {unit}s; 0.5 shares one GPU between two; default 0)",
    )
    p.add_argument(f"--cpus-per-{per}", type=real_number(above=0), default=1.0, help=f"CPUs per {unit} (default 1)")


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
