"""Scaling out: batch segmentation on Ray Data (:mod:`.batch`), parallel evaluation (:mod:`.parallel_eval`) and
online serving on Ray Serve (:mod:`.serve`). Needs the ``scale`` extra (``pip install zsseg_rt[scale]``:
``ray[data,serve]``); every module imports Ray lazily, so ``import zsseg_rt.scale`` never fails without it."""

from __future__ import annotations

from typing import Optional

RAY_MISSING = (
    "this needs Ray (the 'scale' extra): pip install 'zsseg_rt[scale]' or pip install 'ray[data,serve]==2.60.0'"
)


# Ray's single-machine mode: every Ray service binds to and advertises the loopback address (Ray's default on
# macOS/Windows; on Linux it advertises the machine's routable IP and listens on all interfaces). Read by Ray when
# it is imported, so it is set before the first ``import ray`` of a process that starts a local cluster.
LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def import_ray(loopback: bool = False):
    """``ray``, or ImportError saying which extra to install.

    Args:
        loopback: (first import only) put Ray in its single-machine loopback mode (see ``LOOPBACK_ENV``).
    """
    import os

    if loopback:
        os.environ.setdefault(LOOPBACK_ENV, "0")
    try:
        import ray
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise ImportError(f"{RAY_MISSING} ({exc})") from exc
    return ray


def init_ray(address: Optional[str] = None, num_cpus: Optional[int] = None) -> None:
    """Connect to a Ray cluster, or start a local one that only this machine can reach (127.0.0.1).

    Args:
        address: None (``RAY_ADDRESS`` if set, else a new local cluster on 127.0.0.1), ``"auto"`` (the cluster
            this node belongs to) or ``"ray://head:10001"``.
        num_cpus: CPUs of a new local cluster (None: all of this machine's).
    Raises:
        RuntimeError: a new local cluster did not come up on the loopback address (Ray was imported before with
            ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER`` unset: set it to 0 in the environment, or pass an address).
    """
    import os

    local = address is None and not os.environ.get("RAY_ADDRESS")
    ray = import_ray(loopback=local)
    if ray.is_initialized():
        return
    if not local:
        ray.init(address=address, log_to_driver=False)
        return
    ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
    node_address = ray.nodes()[0]["NodeManagerAddress"]
    if not node_address.startswith("127."):
        ray.shutdown()
        raise RuntimeError(
            f"the local Ray cluster came up on {node_address}, not on 127.0.0.1: Ray was imported before "
            f"zsseg_rt.scale could set {LOOPBACK_ENV}=0. Set it in the environment, or start the cluster yourself "
            "(`ray start --head`) and pass its address."
        )
