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

# Ray's own log lines on the terminal. A successful run printed 16-29 of them (a token-authentication notice,
# "Started a local Ray instance", Ray Data's execution plan and progress logged line by line, and one
# error-looking C++ line about actor constructor arguments that Ray Data itself causes, ray-project/ray#53727).
# By default zsseg keeps them off the terminal: the driver's "ray" logger shows errors only, Ray Data's console
# handler warnings and errors (ray_data_logging.yaml), and Ray's C++ core fatal messages only
# (RAY_BACKEND_LOG_LEVEL, inherited by the processes of a new local cluster, so their session log files hold
# fatal messages only too). A failure still reaches the user as the Python exception zsseg reports.
# ZSSEG_RAY_LOGS=1 (or `zsseg --debug`) keeps Ray's defaults; a RAY_BACKEND_LOG_LEVEL or RAY_DATA_LOGGING_CONFIG
# set in the environment is always kept.
RAY_LOGS_ENV = "ZSSEG_RAY_LOGS"


def ray_logs_wanted() -> bool:
    """Whether Ray's own log lines should reach the terminal (``ZSSEG_RAY_LOGS=1``)."""
    import os

    return os.environ.get(RAY_LOGS_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def _quiet_ray_environment() -> None:
    """Sets (only where unset) the variables Ray reads when it starts processes and imports Ray Data."""
    import os

    os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")
    os.environ.setdefault("RAY_DATA_LOGGING_CONFIG", os.path.join(os.path.dirname(__file__), "ray_data_logging.yaml"))


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
    import logging
    import os

    local = address is None and not os.environ.get("RAY_ADDRESS")
    quiet = not ray_logs_wanted()
    if quiet:
        _quiet_ray_environment()
    ray = import_ray(loopback=local)
    if ray.is_initialized():
        return
    options = {"log_to_driver": False, "logging_level": logging.ERROR if quiet else logging.INFO}
    if not local:
        ray.init(address=address, **options)
        return
    ray.init(num_cpus=num_cpus, include_dashboard=False, **options)
    node_address = ray.nodes()[0]["NodeManagerAddress"]
    if not node_address.startswith("127."):
        ray.shutdown()
        raise RuntimeError(
            f"the local Ray cluster came up on {node_address}, not on 127.0.0.1: Ray was imported before "
            f"zsseg_rt.scale could set {LOOPBACK_ENV}=0. Set it in the environment, or start the cluster yourself "
            "(`ray start --head`) and pass its address."
        )
