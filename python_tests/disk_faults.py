"""Full disks for the output-safety tests (issue 51): a real one (a small tmpfs, where this machine lets a test mount
one) and a fake one that runs everywhere (an ``os`` module whose ``write`` says ENOSPC once a byte budget is spent)."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import subprocess
import sys
import types
from typing import Callable, Dict, Iterator, Optional

import pytest


@contextlib.contextmanager
def small_tmpfs(directory, size_kib: int = 64) -> Iterator[str]:
    """A tmpfs of ``size_kib`` KiB mounted on ``directory`` (created), unmounted afterwards. Skips the test, with the
    reason, where mounting is not permitted (not root, no CAP_SYS_ADMIN, not Linux): the fake-ENOSPC tests cover the
    same code paths there."""
    if not sys.platform.startswith("linux") or shutil.which("mount") is None:
        pytest.skip("a real full disk needs a Linux tmpfs mount; the fake ENOSPC writer covers this path here")
    os.makedirs(directory, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={int(size_kib)}k", "tmpfs", str(directory)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(
            f"cannot mount a tmpfs here ({mounted.stderr.strip() or mounted.returncode}): the full disk on a real file "
            "system is not checked; the fake ENOSPC writer covers the same path"
        )
    try:
        yield str(directory)
    finally:
        if subprocess.run(["umount", str(directory)], capture_output=True, check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(directory)], capture_output=True, check=False)


def fill(directory) -> int:
    """Fill the file system of ``directory`` up (a file of zeros written until ENOSPC); returns the bytes written."""
    written = 0
    with open(os.path.join(str(directory), "filler"), "wb", buffering=0) as handle:
        block = b"\0" * 4096
        while True:
            try:
                count = handle.write(block)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
                return written
            written += count or 0


class FullDiskOs(types.ModuleType):
    """Stands in for the ``os`` module of a module under test: everything is the real ``os``'s, except that ``write``
    to a file opened through it whose path ``matches`` raises ENOSPC once ``budget`` bytes were written to such files
    (the first write that would pass the budget writes what still fits, as a file system does, then the next fails).

    ``monkeypatch.setattr(module, "os", FullDiskOs(...))``."""

    def __init__(self, budget: int = 0, matches: Callable[[str], bool] = lambda path: True):
        super().__init__("os")
        self.budget = int(budget)
        self.matches = matches
        self.failures = 0
        self._paths: Dict[int, str] = {}

    def __getattr__(self, name):
        return getattr(os, name)

    def open(self, path, flags, mode=0o777, *, dir_fd: Optional[int] = None):  # noqa: A003 - os.open's name
        fd = os.open(path, flags, mode, dir_fd=dir_fd)
        self._paths[fd] = os.fspath(path)
        return fd

    def close(self, fd: int) -> None:
        self._paths.pop(fd, None)
        os.close(fd)

    def write(self, fd: int, data) -> int:
        path = self._paths.get(fd)
        if path is None or not self.matches(path):
            return os.write(fd, data)
        if self.budget <= 0:
            self.failures += 1
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        view = memoryview(data)[: self.budget]
        count = os.write(fd, view)
        self.budget -= count
        return count
