"""One owner per output: the lock a run holds on each output it writes, from its start to its end.

Every output an :class:`~zsseg_rt.outputs.plan.OutputPlan` declares (a video, a folder of frames or label maps, a
stats file, and any kind added later through the plan) and ``zsseg segment``'s output folder is claimed by its run
before anything is written: an ``OwnerLock`` on a hidden file, ``.NAME.zsseg-owner`` beside a file output and
``DIR/.zsseg-owner`` inside a folder output (made for it: the folder may sit in one the user cannot write into),
``flock``-ed by the run and naming its process. A second run on the same output (another process, or
another plan of this one) is refused at its start, ``--overwrite`` included, with one line naming the first run's
process; ``--overwrite`` never takes an output from a running run (before, it removed that run's
``out.partial.mp4`` as "left by an interrupted run", and both runs said they had written the video).

A run killed with ``kill -9`` leaves the lock file; the kernel released its lock with the process, so the next run
takes the output over and says so (``its owner lock was left by process N, which no longer runs (a killed run)``).
The lock file goes when its run ends (committed, aborted, or refused at its start).

Where ``flock`` is unavailable (not POSIX, or a file system without locks), the process named in the file decides:
a running one owns the output.
"""

from __future__ import annotations

import errno as errno_codes
import logging
import os
import weakref
from typing import Callable, List, Optional, Sequence, Tuple

__all__ = ["FOLDER_LOCK", "OWNER_SUFFIX", "OwnerLock", "OutputBusy", "claim_all", "owner_lock_path", "try_flock"]

log = logging.getLogger("zsseg_rt.outputs")

OWNER_SUFFIX = ".zsseg-owner"  # .NAME.zsseg-owner beside the file output NAME
FOLDER_LOCK = ".zsseg-owner"  # inside a folder output
_ATTEMPTS = 8  # the lock file replaced under us (its owner ended meanwhile): try again, at most this often


class OutputBusy(OSError):
    """An output is held by another run now; ``owner``: that run's process id ("" when unknown)."""

    def __init__(self, message: str, path: str, owner: str):
        super().__init__(message)
        self.path = path
        self.owner = owner


def owner_lock_path(path: str, folder: bool = False) -> str:
    """The lock file of output ``path``: ``.NAME.zsseg-owner`` beside a file, ``DIR/.zsseg-owner`` in a folder, by
    its real path (``./out.mp4``, ``out.mp4`` and a symbolic link to it share one lock)."""
    real = os.path.realpath(os.path.abspath(os.path.normpath(str(path))))
    if folder:
        return os.path.join(real, FOLDER_LOCK)
    parent, name = os.path.split(real)
    return os.path.join(parent, f".{name}{OWNER_SUFFIX}")


def try_flock(fd: int) -> Optional[bool]:
    """Try to ``flock`` an open file: True locked, False held by another open file, None where locks are unavailable
    (not POSIX, or a file system without locks)."""
    try:
        import fcntl
    except ImportError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    except OSError:  # e.g. ENOLCK on a network file system
        return None


def _running(pid: str) -> bool:
    if not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it runs, as another user
        return True
    return True


def _read_owner(fd: int) -> str:
    try:
        return os.pread(fd, 64, 0).decode("ascii", "replace").split()[0]
    except (OSError, IndexError):
        return ""


def _close(fd: Optional[int]) -> None:
    if fd is not None:
        try:
            os.close(fd)
        except OSError:
            pass


class OwnerLock:
    """The owner lock of one output (see the module): :meth:`acquire` at the run's start, :meth:`release` at its end.

    Args:
        path: the output (a file or a folder; it need not exist).
        option: the user's words for it in messages (``-o``, ``--labels-out``, ``folder``).
        folder: the output is a folder (its lock inside it; the folder is made, and removed again when the run
            leaves it empty).
    """

    def __init__(self, path: str, option: str = "output", folder: bool = False):
        self.path = str(path)
        self.option = option
        self.lock_path = owner_lock_path(self.path, folder)
        self.fd: Optional[int] = None
        self.taken_over = ""  # the process id of a killed run whose lock this one took over
        self._made: List[str] = []  # folders made for the lock file (removed again when empty)
        self._finalizer: Optional[weakref.finalize] = None

    @property
    def held(self) -> bool:
        return self.fd is not None

    def _make_folder(self) -> None:
        folder = os.path.dirname(self.lock_path)
        missing = []
        while folder and not os.path.isdir(folder):
            missing.append(folder)
            parent = os.path.dirname(folder)
            if parent == folder:
                break
            folder = parent
        for made in reversed(missing):
            os.mkdir(made)
            self._made.append(made)

    def acquire(self, say: Optional[Callable[[str], None]] = None) -> None:
        """Claim the output for this run (a no-op when held already); ``say`` names a killed run's lock taken over
        (default: a warning in the log).

        Raises:
            OutputBusy: another run holds it now (the message names its process).
            OSError: the lock file cannot be made (a read-only or full disk: the caller says so in its words).
        """
        if self.fd is not None:
            return
        say = say or log.warning
        for _ in range(_ATTEMPTS):
            self._make_folder()
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o666)
            locked = try_flock(fd)
            owner = _read_owner(fd)
            if locked is False or (locked is None and owner != str(os.getpid()) and _running(owner)):
                _close(fd)
                self._remove_made()
                who = f"process {owner}" if owner else "another process"
                raise OutputBusy(
                    f"{self.option} {self.path!r} is being written by another run now ({who}): wait for it to end, "
                    f"or choose another {self.option} (--overwrite never takes an output from a running run)",
                    self.path,
                    owner,
                )
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.lock_path))
            except FileNotFoundError:
                same = False
            if not same:  # its owner ended and removed it between our open and our lock: take the new one
                _close(fd)
                continue
            self.fd = fd
            self._finalizer = weakref.finalize(self, _close, fd)
            if owner and owner != str(os.getpid()):
                self.taken_over = owner
                say(
                    f"{self.option} {self.path}: its owner lock ({self.lock_path}) was left by process {owner}, which "
                    "no longer runs (a killed run): taken over"
                )
            self._write_owner()
            return
        raise OSError(errno_codes.EAGAIN, f"the owner lock {self.lock_path!r} kept changing; try again")

    def _write_owner(self) -> None:
        assert self.fd is not None
        try:
            os.ftruncate(self.fd, 0)
            os.pwrite(self.fd, f"{os.getpid()}\n".encode(), 0)
        except OSError:  # a full disk: the lock holds all the same; a second run then names "another process"
            pass

    def release(self) -> None:
        """End the claim: the lock file removed (while still held, so no run can take a file about to go), then
        unlocked; the folders made for it go again when empty. Idempotent."""
        if self.fd is None:
            return
        try:
            os.unlink(self.lock_path)
        except OSError:
            pass
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None
        _close(self.fd)
        self.fd = None
        self._remove_made()

    def _remove_made(self) -> None:
        for folder in reversed(self._made):
            try:
                os.rmdir(folder)
            except OSError:
                break
        self._made = []


def claim_all(outputs: Sequence[Tuple[str, str, bool]], say: Optional[Callable[[str], None]] = None) -> List[OwnerLock]:
    """Owner locks on every ``(option, path, is_folder)`` of ``outputs`` (one per distinct output), all or none.

    Raises:
        OutputBusy: one is held by another run (none is kept).
        OSError: a lock file could not be made (none is kept).
    """
    locks: List[OwnerLock] = []
    seen = set()
    try:
        for option, path, folder in outputs:
            lock = OwnerLock(path, option, folder)
            if lock.lock_path in seen:
                continue
            seen.add(lock.lock_path)
            lock.acquire(say)
            locks.append(lock)
    except BaseException:
        for lock in reversed(locks):
            lock.release()
        raise
    return locks
