"""The signal sweep's runner (issue 64, N5): a ``zsseg`` command started with the phase test hook
(``zsseg_rt.console.signal_phases.phase``) stops at one named start-up phase, the test sends it SIGINT or SIGTERM there, and
:func:`signal_at_phase` returns what it did: exit code, stdout, stderr, and the processes it left (Linux /proc).

Events, no sleeps: the command connects to a Unix socket the test listens on when it reaches the phase, and waits
there until the signal has reached it (a Ray worker that reaches it waits, loading no model, while the test signals
its driver, until the driver is gone). The waits are bounded: on the connection (the command may end or fail
first: then it never reached the phase) and on the command's exit.

Phases no ``phase()`` call of the package marks, because they lie inside a library, are marked by this runner's
child program (``CHILD``): ``ray:connect`` and ``ray:connected`` (inside ``ray.init``: the Ray node runs and Ray's
SIGTERM handler is set; the driver about to connect, and connected: its core worker set a native SIGTERM handler),
``ray:get`` (at ``serve:start``, the driver inside a ``ray.get``: a Ray task it waits for tells the test), ``ort:session`` (inside the model load: ONNX Runtime builds a session), ``torch:onnx-export``
(inside ``zsseg export``'s graph export, its staging folder open)."""

from __future__ import annotations

import dataclasses
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Optional, Set

from support import subprocess_env

HOOK_ENV = "ZSSEG_TEST_PHASE_HOOK"  # zsseg_rt.console.signal_phases.PHASE_HOOK_ENV (read there; written here)

# The command line's entry point, with the phases inside libraries marked (only the one the test stops at).
CHILD = r"""
import os, sys
from zsseg_rt.console.signal_phases import phase

def mark(owner, name, label, after=False):
    original = getattr(owner, name)
    def marked(*args, **kwargs):
        if not after:
            phase(label)
        result = original(*args, **kwargs)
        if after:
            phase(label)
        return result
    setattr(owner, name, marked)

stop = os.environ.get("ZSSEG_TEST_PHASE_HOOK", "").partition("@")[0]
if stop in ("ray:connect", "ray:connected"):
    import zsseg_rt.scale as scale
    importer = scale.import_ray
    def import_ray(*args, **kwargs):
        ray = importer(*args, **kwargs)
        if not getattr(ray._private.worker, "phase_marked", False):
            mark(ray._private.worker, "connect", stop, after=stop == "ray:connected")
            ray._private.worker.phase_marked = True
        return ray
    scale.import_ray = import_ray
elif stop == "ray:get":  # at serve:start, the driver blocked inside ray.get (as serve.start blocks there)
    import signal, socket
    import zsseg_rt.console.signal_phases as phases
    address = os.environ["ZSSEG_TEST_PHASE_HOOK"].partition("@")[2]
    own = phases.phase
    def tell_handled(handler):
        def told(signum, frame):  # the driver's handler ran (inside the ray.get): the test may let the task end
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
                client.connect(address)
                client.sendall(f"handled {os.getpid()}\n".encode())
            return handler(signum, frame)
        return told
    def phase_in_a_get(name):
        if name != "serve:start":
            return own(name)
        import ray
        install = getattr(phases, "_set_handler", signal.signal)  # the real one, also while a block holds
        for signum in (signal.SIGINT, signal.SIGTERM):
            if callable(signal.getsignal(signum)):
                install(signum, tell_handled(signal.getsignal(signum)))
        @ray.remote(num_cpus=0)
        def stopped_here():  # a worker tells the test, which signals the driver waiting for this task's end
            phases.phase("ray:get")
        ray.get(stopped_here.remote())
    phases.phase = phase_in_a_get
elif stop == "ort:session":
    import onnxruntime
    mark(onnxruntime.InferenceSession, "__init__", stop)
elif stop == "torch:onnx-export":
    import torch.onnx
    mark(torch.onnx, "export", stop)
from zsseg_rt.cli import main
sys.exit(main())
"""

# what no interrupted command may print (a SystemError, a traceback, Ray's native stack dump, a swallowed exception)
FORBIDDEN = ("Traceback", "SystemError", "Exception ignored", "*** SIG", "Segmentation fault", "unexpected", "error:")


@dataclasses.dataclass
class Outcome:
    phase: str
    code: Optional[int]  # None: still running when the bounded wait ended (the signal was swallowed); killed then
    stdout: str
    stderr: str
    left: Dict[int, str]  # {pid: command line} of the processes of the run still alive after it ended

    def describe(self) -> str:
        return (
            f"phase {self.phase}: exit code {self.code}\n--- stdout\n{self.stdout[-2500:]}\n--- stderr\n"
            f"{self.stderr[-2500:]}\n--- left: {self.left}"
        )


def plain_images(folder, count: int, step: int, name: str = "{index}.png"):
    """``folder`` made with ``count`` small PNGs of one grey each (``step * index``): a command's input that costs
    nothing to read."""
    import cv2
    import numpy as np

    folder.mkdir()
    for index in range(count):
        cv2.imwrite(str(folder / name.format(index=index)), np.full((24, 32, 3), step * index, np.uint8))
    return folder


def start_time(pid: int) -> Optional[int]:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if fields[0] == "Z" else int(fields[19])  # a zombie has ended: it only waits to be collected


def command_line(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def process_tree(root: int) -> Set[int]:
    """``root`` and every process below it now (children, their children, ...), read from Linux /proc."""
    parents: Dict[int, int] = {}
    for name in os.listdir("/proc"):
        try:
            with open(f"/proc/{name}/stat", encoding="ascii", errors="replace") as handle:
                parents[int(name)] = int(handle.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
    family, grown = set(), {root}
    while grown:
        family |= grown
        grown = {pid for pid, parent in parents.items() if parent in grown} - family
    return family


def descendants(root: int) -> Dict[int, Optional[int]]:
    """``{pid: start time}`` of every process below ``root`` now (children, their children, ...)."""
    return {pid: start_time(pid) for pid in process_tree(root) - {root}}


def _names_folder(pid: int, folder: str) -> bool:
    """Whether ``pid``'s command line or one of its open files names ``folder`` (the run's private Ray folder)."""
    if folder in command_line(pid):
        return True
    try:
        names = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for name in names:
        try:
            if os.readlink(f"/proc/{pid}/fd/{name}").startswith(folder):
                return True
        except OSError:
            continue
    return False


def left_over(seen: Dict[int, Optional[int]], folder: Optional[str]) -> Dict[int, str]:
    """The live processes of the run: one seen below the command (the same process: the same start time), or one
    naming its private Ray folder."""
    left = {pid: command_line(pid) for pid, start in seen.items() if start is not None and start_time(pid) == start}
    for name in os.listdir("/proc") if folder else ():
        if name.isdigit() and int(name) not in left and int(name) != os.getpid() and start_time(int(name)):
            if _names_folder(int(name), folder):
                left[int(name)] = command_line(int(name))
    return left


def wait_until_gone(seen: Dict[int, Optional[int]], folder: Optional[str], seconds: float) -> Dict[int, str]:
    """Bounded: the Ray cluster's watchdog ends what the driver left within its grace period (2 s, then SIGKILL)."""
    deadline = time.monotonic() + seconds
    left = left_over(seen, folder)
    while left and time.monotonic() < deadline:
        time.sleep(0.25)
        left = left_over(seen, folder)
    return left


def _accept(listener: socket.socket, proc: subprocess.Popen, seconds: float) -> Optional[socket.socket]:
    """The command's connection once it reached the phase; None if it ended first or ``seconds`` passed."""
    deadline = time.monotonic() + seconds
    while proc.poll() is None and time.monotonic() < deadline:
        ready, _, _ = select.select([listener], [], [], 1.0)
        if ready:
            return listener.accept()[0]
    return None


def signal_at_phase(argv: List[str], phase: str, sig: int, ray: bool = False, reach_s: float = 420.0) -> Outcome:
    """Run ``zsseg ARGV`` (through ``CHILD``) until it reaches ``phase``, send ``sig`` to it there and wait (bounded)
    for it to end; ``ray``: a private Ray folder (``RAY_TMPDIR``) whose processes count as the run's too. A
    command that never reaches the phase fails the calling test with its output."""
    scratch = tempfile.mkdtemp(prefix="zsp", dir="/tmp")  # short: a Unix socket's path must fit in 107 bytes
    address = os.path.join(scratch, "s")
    env = subprocess_env(OMP_NUM_THREADS="1", **{HOOK_ENV: f"{phase}@{address}"})
    for name in ("RAY_ADDRESS", "ZSSEG_RAY_LOGS"):
        env.pop(name, None)
    folder = os.path.join(scratch, "ray") if ray else None
    if folder:
        os.mkdir(folder)
        env["RAY_TMPDIR"] = folder
    out, err = open(os.path.join(scratch, "out"), "w+b"), open(os.path.join(scratch, "err"), "w+b")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(address)
    listener.listen(8)
    proc = subprocess.Popen([sys.executable, "-c", CHILD, *argv], stdout=out, stderr=err, env=env)
    seen: Dict[int, Optional[int]] = {}
    code: Optional[int] = None
    try:
        connection = _accept(listener, proc, reach_s)
        if connection is None:
            raise AssertionError(f"never reached {phase}: {_outcome(phase, proc, out, err, {}).describe()}")
        with connection:
            said = connection.makefile().readline().split()
            assert said and said[0] == phase, said
            seen = descendants(proc.pid)
            os.kill(proc.pid, sig)  # the driver (a worker that says it waits is not the one a user signals)
            if phase == "ray:get":  # the call the driver waits in returns once the driver's handler has run there
                handled = _accept(listener, proc, 240)
                if handled is not None:  # read before it is closed: the handler's write must not meet a closed
                    with handled:  # socket (its BrokenPipeError, raised inside ray.get, was a SystemError there)
                        said = handled.makefile().readline().split()
                        assert said and said[0] == "handled", said
                connection.close()
            try:
                code = proc.wait(timeout=240)
            except subprocess.TimeoutExpired:
                code = None  # the signal was swallowed: the command goes on
        return _outcome(phase, proc, out, err, wait_until_gone(seen, folder, 60), code)
    finally:
        listener.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pid in left_over({**seen, **descendants(proc.pid)}, folder):  # a failing run leaves nothing either
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        out.close()
        err.close()
        shutil.rmtree(scratch, ignore_errors=True)


def _outcome(phase, proc, out, err, left, code=None) -> Outcome:
    if code is None and proc.poll() is not None:
        code = proc.returncode
    texts = []
    for handle in (out, err):
        handle.flush()
        handle.seek(0)
        texts.append(handle.read().decode(errors="replace"))
    return Outcome(phase, code, texts[0], texts[1], left)


def interrupted_cleanly(outcome: Outcome, command: str, sig: int, said: str = "stderr") -> List[str]:
    """What is wrong with an interrupted run: its exit code is not 128 + ``sig``, the one line saying so is missing
    from ``said`` (``zsseg CMD: interrupted (SIGNAME)``; ``zsseg serve`` says it shuts down and then that it
    stopped, on stdout), something forbidden was printed, or a process of the run is left."""
    name = signal.Signals(sig).name
    problems = []
    if outcome.code != 128 + sig:
        problems.append(f"exit code {outcome.code}, not {128 + sig}")
    if command == "serve":
        lines = [line for line in outcome.stdout.splitlines() if line.startswith("zsseg serve:")]
        if lines != [f"zsseg serve: {name}: shutting down", "zsseg serve: stopped"]:
            problems.append(f"said {lines} on stdout")
    else:
        lines = [line for line in outcome.stderr.splitlines() if line.startswith(f"zsseg {command}:")]
        if lines != [f"zsseg {command}: interrupted ({name})"]:
            problems.append(f"said {lines} on stderr")
    problems += [f"printed {word!r}" for word in FORBIDDEN if word in outcome.stdout + outcome.stderr]
    if outcome.left:
        problems.append(f"left {len(outcome.left)} processes")
    return problems
