"""A test's child process, stopped by a signal: started with its output piped as text in the test's environment,
signalled once it has reached the moment the test wants, and never left running when an assertion fails (the
harness of every "Ctrl-C / SIGTERM at this point" test)."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import threading
import time
from typing import Callable, Iterator, List, Optional, Sequence, Tuple

from support import subprocess_env


def popen_text(argv: Sequence[str], stdin: bool = False, env: Optional[dict] = None) -> subprocess.Popen:
    """``argv`` started with stdout and stderr piped as text (stdin too with ``stdin=True``); ``env`` defaults to
    :func:`support.subprocess_env`."""
    return subprocess.Popen(
        [str(a) for a in argv],
        stdin=subprocess.PIPE if stdin else None,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=subprocess_env() if env is None else env,
    )


@contextlib.contextmanager
def reaped(process: subprocess.Popen) -> Iterator[subprocess.Popen]:
    """The block's process, killed and waited for on the way out if it still runs (a failed assertion or a timeout
    leaves no process behind); a process that ended is left as it is."""
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@contextlib.contextmanager
def reading_stderr(process: subprocess.Popen) -> Iterator[List[str]]:
    """The block gets the list of the process's stderr lines as they come (a thread reads all along: a full pipe
    would block the child's logging); on the way out the process is reaped and the reader joined."""
    lines: List[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(process.stderr.readline, "")), daemon=True)
    reader.start()
    try:
        with reaped(process):
            yield lines
    finally:
        reader.join(30)


def signalled(
    process: subprocess.Popen, sig: int, ready: Callable[[], object] = lambda: None, timeout: float = 60.0
) -> Tuple[str, str]:
    """Once ``ready()`` returns (it waits for the moment, failing the test where it cannot), ``sig`` sent and the
    process waited for: its (stdout, stderr). Killed on the way out if anything failed."""
    with reaped(process):
        ready()
        process.send_signal(sig)
        return process.communicate(timeout=timeout)


def says(process: subprocess.Popen, expected: str) -> Callable[[], None]:
    """A ``ready`` for :func:`signalled`: the process's next line of stdout is ``expected`` (else the test fails,
    with its stderr where it has ended)."""

    def ready() -> None:
        line = process.stdout.readline() if process.stdout is not None else ""
        assert line.strip() == expected, (line, process.stderr.read() if process.poll() is not None else "")

    return ready


def zsseg_process(*argv: object) -> subprocess.Popen:
    """``zsseg ARGV`` (this interpreter's zsseg_rt.cli) started with its stdout discarded and stderr piped as text."""
    code = "import sys\nfrom zsseg_rt.cli import main\nsys.exit(main(sys.argv[1:]))\n"
    return subprocess.Popen(
        [sys.executable, "-c", code, *(str(a) for a in argv)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=subprocess_env(),
    )


def killed_when(process: subprocess.Popen, condition: Callable[[], bool], what: str, seconds: float) -> None:
    """``process`` killed with SIGKILL (no handler, nothing finalised) as soon as ``condition()`` holds: progress is
    polled, the deadline of ``seconds`` only turns a hang into a failure naming ``what``; a process that ends first
    fails the test with its stderr."""

    def ready() -> None:
        deadline = time.monotonic() + seconds
        while not condition():
            assert process.poll() is None, process.communicate()[1]
            assert time.monotonic() < deadline, f"{what}: not within {seconds:g} s"
            time.sleep(0.05)

    signalled(process, signal.SIGKILL, ready)
    assert process.returncode == -signal.SIGKILL, process.returncode
