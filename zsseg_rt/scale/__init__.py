"""Scaling out: batch segmentation on Ray Data (:mod:`.batch`), online serving on Ray Serve (:mod:`.serve`) and the
Ray set-up they and ``zsseg eval --ray`` (:mod:`zsseg_rt.eval.parallel`) share. Needs the ``scale`` extra
(``pip install zsseg_rt[scale]``: ``ray[data,serve]``); every module imports Ray lazily, so ``import zsseg_rt.scale`` never fails without it."""

from __future__ import annotations

from typing import List, Optional

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


# The watchdog of a private local cluster (reaper.py): the write ends of the pipes each one reads, kept open for the
# life of this process (the kernel closes them when it exits, however it exits: that is the watchdog's signal).
REAPER_TOKEN_ENV = "ZSSEG_RAY_RUN"
_REAPER_PIPES: List[int] = []


def _start_cluster_reaper() -> Optional[str]:
    """Start the watchdog that ends every process of the local cluster about to start once this process is gone
    (:mod:`.reaper`), and mark that cluster's processes: ``ZSSEG_RAY_RUN=<token>`` in the environment they inherit
    (the caller removes it once ``ray.init`` returned). Returns the token, or None where no watchdog could start (the
    cluster then lives as long as Ray lets it: until ``ray.shutdown()`` or its own checks)."""
    import os
    import secrets
    import subprocess
    import sys

    if sys.platform == "win32":  # (Ray ties its processes to the driver there with a job object)
        return None
    token = secrets.token_hex(8)
    command = [sys.executable, "-I", os.path.join(os.path.dirname(os.path.abspath(__file__)), "reaper.py")]
    command += [token, str(os.getpid())]
    if not os.path.isdir("/proc/self"):  # psutil finds the processes there: Ray's own copy
        import ray

        command.append(os.path.join(os.path.dirname(ray.__file__), "thirdparty_files"))
    read_end, write_end = os.pipe()  # both non-inheritable: no process but the watchdog holds the read end
    try:
        subprocess.Popen(  # in a session of its own: a Ctrl-C or a kill of the driver's process group spares it
            command,
            stdin=read_end,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            env={k: v for k, v in os.environ.items() if k != REAPER_TOKEN_ENV},
        ).returncode = 0  # (it outlives this process by design: no "still running" warning when it is collected)
    except OSError:
        os.close(write_end)
        return None
    finally:
        os.close(read_end)
    _REAPER_PIPES.append(write_end)
    os.environ[REAPER_TOKEN_ENV] = token
    return token


def _tell_reaper_the_session(ray) -> None:
    """Write the new cluster's session folder to its watchdog: the agents the raylet starts are found by the log
    files they hold open there (the watchdog also finds the folder on its own, from the raylet's command line)."""
    import os

    try:
        session = ray._private.worker._global_node.get_session_dir_path()
        os.write(_REAPER_PIPES[-1], f"session {session}\n".encode())
    except (AttributeError, IndexError, OSError):  # another Ray layout, or the watchdog is gone: it looks on its own
        pass


PROXY_READY_CHECK_S = "60"  # RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S of a local cluster (init_ray); Ray's default: 5
WORKER_NICENESS = "0"  # RAY_worker_niceness of a local cluster (init_ray); Ray's default: 15


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

    from zsseg_rt.console.signal_phases import held_signals

    local = address is None and not os.environ.get("RAY_ADDRESS")
    quiet = not ray_logs_wanted()
    if quiet:
        _quiet_ray_environment()
    # SIGINT / SIGTERM while Ray starts (10-20 s) are held and acted on once ray.init returned, with Ray shut down
    # again first: raised inside ray.init they left it half made, Ray's own SIGTERM handler (sys.exit(15)) ended the
    # command with exit code 15 and no message, and the driver's native handler printed a stack dump
    with held_signals() as caught:
        ray = import_ray(loopback=local)
        if ray.is_initialized():
            return
        if (
            quiet
        ):  # Ray's noise: the driver's native failure handler prints a stack dump on SIGTERM (workers keep theirs)
            _no_native_failure_handler(ray)
        options = {"log_to_driver": False, "logging_level": logging.ERROR if quiet else logging.INFO}
        try:
            if local:
                _start_local_cluster(ray, num_cpus, options)
            else:
                ray.init(address=address, **options)
        finally:
            if caught and ray.is_initialized():
                ray.shutdown()


def _no_native_failure_handler(ray) -> None:
    """No native failure handler in this process (``RAY_DISABLE_FAILURE_SIGNAL_HANDLER``, read when Ray's core worker
    starts). Ray's driver sets absl's: on SIGTERM it printed "*** SIGTERM received at time=... PC: @ ..." and a stack
    dump before the command's own handler ran (between the core worker's start and ray.init's return, the handler
    held_signals puts back after it). Ray's workers read the variable themselves: they keep theirs."""
    constants = getattr(getattr(ray, "_private", None), "ray_constants", None)
    if constants is not None and hasattr(constants, "RAY_DISABLE_FAILURE_SIGNAL_HANDLER"):
        constants.RAY_DISABLE_FAILURE_SIGNAL_HANDLER = True


def _start_local_cluster(ray, num_cpus: Optional[int], options: dict) -> None:
    """``ray.init`` of a new local cluster on 127.0.0.1, with its watchdog (:mod:`.reaper`)."""
    import os

    # Ray Serve's controller gives a new HTTP proxy 5 s to report ready, then kills it (serve.start fails with
    # ActorDiedError "killed by ray.kill ... cancelled before it started running"): on a 2-core machine with every core
    # busy a proxy's process takes longer to start. A local cluster's processes inherit this environment; the bound
    # becomes serve.start's own overall one (60 s), unless the user set it.
    os.environ.setdefault("RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S", PROXY_READY_CHECK_S)
    # Ray starts its worker processes at nice 15 (the raylet's worker_niceness). Here the workers are the work: the
    # segmentation actors of `zsseg batch`/`eval --workers`, the replicas and HTTP proxy of `zsseg serve`. At nice 15
    # they get about 3 % of a core against any process at the default priority (CFS weights 36 vs 1024): measured
    # on 2 cores with 4 busy loops, a 3-image `segment_images` run took 193 s instead of 11 s at nice 0 (5 s idle).
    # A local cluster's workers run at the priority of the command that started them, unless the user set it.
    os.environ.setdefault("RAY_worker_niceness", WORKER_NICENESS)
    token = _start_cluster_reaper()
    try:
        ray.init(num_cpus=num_cpus, include_dashboard=False, **options)
    finally:  # only the cluster's processes carry the mark, not what this process starts later
        if token is not None:
            os.environ.pop(REAPER_TOKEN_ENV, None)
    if token is not None:
        _tell_reaper_the_session(ray)
    node_address = ray.nodes()[0]["NodeManagerAddress"]
    if not node_address.startswith("127."):
        ray.shutdown()
        raise RuntimeError(
            f"the local Ray cluster came up on {node_address}, not on 127.0.0.1: Ray was imported before "
            f"zsseg_rt.scale could set {LOOPBACK_ENV}=0. Set it in the environment, or start the cluster yourself "
            "(`ray start --head`) and pass its address."
        )
