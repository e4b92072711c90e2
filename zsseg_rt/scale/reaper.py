"""The watchdog of a private local Ray cluster: it ends every process of the cluster once the process that started
it (the driver: ``zsseg batch``, ``zsseg serve``, ``zsseg eval --ray``) is gone, however it went (kill -9 included).

Why: Ray 2.60 ties the processes it starts itself (GCS, raylet, dashboard head, monitors) to the driver with
``PR_SET_PDEATHSIG``, but the raylet's own children are left to watch the raylet: when it dies with the driver, the
``DashboardAgent`` and ``RuntimeEnvAgent`` first try to report the raylet's death to the GCS, which died too, and
outlive the driver by a minute or more (re-parented to init, holding their loopback ports), and workers linger for
seconds. Ray has no setting that leaves the agents out (the raylet always starts both).

How: :func:`zsseg_rt.scale.init_ray` marks the processes of a new local cluster with an environment variable
(``ZSSEG_RAY_RUN=<random token>``, set only while ``ray.init`` starts the cluster; the raylet passes its environment
on to the agents and workers it starts) and starts this script first, in a session of its own, reading a pipe whose
only writer is the driver. The pipe ends when the driver exits (the kernel closes it, whatever killed the driver);
then every process of the cluster is sent SIGTERM, and SIGKILL after a grace period, until none is left.
Processes are found by the token in their environment (``/proc/PID/environ`` on Linux; psutil elsewhere) or, for the
raylet's agents (setproctitle overwrites the environment /proc shows), by a log file of the cluster's session folder
they hold open for writing, started after the watchdog; never by name, so nothing else on the machine is touched
(a ``tail -f`` of the session's logs included). The driver writes the session folder to the pipe once ``ray.init``
returned; the watchdog also reads it from the raylet's command line while it waits.

Run as a script (``python -I reaper.py TOKEN DRIVER_PID [PSUTIL_DIR]``): it imports the standard library only
(psutil from ``PSUTIL_DIR`` off Linux), not the zsseg_rt package.
"""

from __future__ import annotations

import os
import select
import signal
import sys
import time
from typing import Callable, Iterable, List, Optional, Sequence, Set

TOKEN_ENV = "ZSSEG_RAY_RUN"
TERM_GRACE_S = 2.0  # SIGTERM first (the raylet stops its workers and agents), SIGKILL whatever is left after this
GIVE_UP_S = 30.0  # stop looking after this (a process that cannot be killed is not ours to wait for)


def _start_time(pid: object) -> int:
    """A process's start time in clock ticks since boot (``/proc/PID/stat`` field 22), -1 when unknown."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            return int(handle.read().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return -1


def _writes_under(pid: str, prefixes: Sequence[str]) -> bool:
    """Whether process ``pid`` holds a file under one of ``prefixes`` open for writing (the agents' log files in
    their session folder; a reader such as ``tail -f`` of those logs is not the cluster's)."""
    try:
        names = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for name in names:
        try:
            if not os.readlink(f"/proc/{pid}/fd/{name}").startswith(tuple(prefixes)):
                continue
            with open(f"/proc/{pid}/fdinfo/{name}", encoding="ascii", errors="replace") as handle:
                flags = next((line.split()[1] for line in handle if line.startswith("flags:")), "0")
        except (OSError, IndexError):
            continue
        if int(flags, 8) & os.O_ACCMODE != os.O_RDONLY:
            return True
    return False


def _marked_linux(needle: bytes, prefixes: Sequence[str], exclude: Set[int]) -> List[int]:
    found = []
    born = _start_time("self")  # the cluster started after this watchdog: an older process is not the cluster's
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) in exclude:
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as handle:
                environ = handle.read()
        except OSError:  # gone, or another user's process
            continue
        if not environ:  # a zombie (or a kernel thread): nothing to end
            continue
        if needle in environ.split(b"\0"):
            found.append(int(name))
        elif prefixes and _start_time(name) >= born and _writes_under(name, prefixes):
            found.append(int(name))
    return found


def _marked_psutil(needle: bytes, prefixes: Sequence[str], exclude: Set[int]) -> List[int]:
    import psutil

    key, value = needle.decode().split("=", 1)
    born = psutil.Process().create_time()
    found = []
    for process in psutil.process_iter():
        try:
            if process.pid in exclude or process.status() == psutil.STATUS_ZOMBIE:
                continue
            if process.environ().get(key) == value:
                found.append(process.pid)
            elif prefixes and process.create_time() >= born:
                files = process.open_files()
                if any(f.path.startswith(tuple(prefixes)) and getattr(f, "mode", "w") != "r" for f in files):
                    found.append(process.pid)
        except (psutil.Error, OSError):
            continue
    return found


def marked_processes(token: str, sessions: Sequence[str] = (), exclude: Iterable[int] = ()) -> List[int]:
    """Pids of the live processes of the cluster: those whose environment holds ``ZSSEG_RAY_RUN=token``, and those
    started after this watchdog that write to a file in one of its ``sessions`` folders (the raylet's agents, whose
    environment as /proc shows it setproctitle overwrites). This process is left out, and so is ``exclude``."""
    needle = f"{TOKEN_ENV}={token}".encode()
    prefixes = [os.path.join(os.path.realpath(path), "") for path in sessions]
    skip = {os.getpid(), *exclude}
    if os.path.isdir("/proc/self"):
        return _marked_linux(needle, prefixes, skip)
    return _marked_psutil(needle, prefixes, skip)


def reap(
    token: str,
    sessions: Sequence[str] = (),
    exclude: Iterable[int] = (),
    find: Callable[..., List[int]] = marked_processes,
) -> int:
    """SIGTERM every marked process (the raylet then stops its workers and agents), SIGKILL whatever is still there
    after ``TERM_GRACE_S``, until none is left (or ``GIVE_UP_S`` passed); returns how many were signalled."""
    signalled: Set[int] = set()
    start = time.monotonic()
    while time.monotonic() - start < GIVE_UP_S:
        pids = find(token, sessions, exclude)
        if not pids:
            break
        late = time.monotonic() - start > TERM_GRACE_S
        for pid in pids:
            if pid in signalled and not late:
                continue
            try:
                os.kill(pid, signal.SIGKILL if late else signal.SIGTERM)
            except OSError:  # gone meanwhile
                continue
            signalled.add(pid)
        time.sleep(0.1)
    return len(signalled)


def _session_of(token: str) -> Optional[str]:
    """The session folder of the cluster, read from the command line of one of its marked processes (the raylet's
    ``--session_dir=``, the dashboard's ``--session-dir=``), or None while none runs yet (Linux only)."""
    if not os.path.isdir("/proc/self"):
        return None
    for pid in marked_processes(token):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                arguments = handle.read().decode(errors="replace").split("\0")
        except OSError:
            continue
        for argument in arguments:
            for flag in ("--session_dir=", "--session-dir="):
                if argument.startswith(flag) and len(argument) > len(flag):
                    return argument[len(flag) :]
    return None


def watch(token: str, driver: int, pipe: int = 0) -> int:
    """Wait until ``pipe`` ends (the driver is gone), then :func:`reap`. The driver may write ``session PATH`` lines
    (the cluster's session folder); until one arrives, the folder is looked for in the marked processes' command
    lines every half second."""
    sessions: List[str] = []
    pending = b""
    while True:
        if not sessions:
            ready, _, _ = select.select([pipe], [], [], 0.5)
            if not ready:
                found = _session_of(token)
                if found:
                    sessions.append(found)
                continue
        try:
            data = os.read(pipe, 4096)
        except OSError:
            data = b""
        if not data:  # the driver never closes it: it is gone
            break
        pending += data
        *lines, pending = pending.split(b"\n")
        for line in lines:
            kind, _, value = line.decode(errors="replace").partition(" ")
            if kind == "session" and value:
                sessions.append(value)
    return reap(token, sessions, exclude=(driver,))


def main(argv: List[str]) -> int:
    token, driver = argv[1], int(argv[2])
    if len(argv) > 3:  # off Linux: psutil (Ray's copy) finds the processes
        sys.path.insert(0, argv[3])
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C meant for the driver is not for the watchdog
    watch(token, driver)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
