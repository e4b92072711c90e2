"""A signal stack large enough for AMX state on the main thread.

Found by the test suite: after OpenVINO ran bf16 on an AMX CPU, a child process exiting while a Python
SIGCHLD handler was set (torch's DataLoader sets one for its workers) killed the parent with SIGSEGV. CPython installs
its signal handlers with ``SA_ONSTACK``, and faulthandler (enabled by pytest, ``-X faulthandler``, many libraries)
gives the main thread an alternate signal stack sized when it was enabled (20 KiB here), before the process asked the
kernel for AMX tile state; once a thread holds that state, the kernel cannot fit the signal frame on that stack and
sends SIGSEGV instead of running the handler. :func:`ensure_signal_stack` swaps a too-small alternate stack of the
main thread for a larger one (kept for the life of the process; faulthandler leaves a stack it did not install
alone when disabled). It changes no result; on other systems, or where nothing is installed, it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
import threading
from typing import Any, List, Optional

__all__ = ["ensure_signal_stack", "signal_stack_size", "SAFE_SIGNAL_STACK"]

SAFE_SIGNAL_STACK = 1 << 18  # 256 KiB: AMX tile data (8 KiB) + AVX-512 state + the frame, with a wide margin
_SS_DISABLE = 2
_kept: List[Any] = []  # the stacks handed to the kernel: never freed


class _StackT(ctypes.Structure):
    _fields_ = [("ss_sp", ctypes.c_void_p), ("ss_flags", ctypes.c_int), ("ss_size", ctypes.c_size_t)]


def _libc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return None


def signal_stack_size() -> Optional[int]:
    """The calling thread's alternate signal stack size in bytes (0: none installed); None where unknown."""
    libc = _libc()
    if libc is None:
        return None
    current = _StackT()
    if libc.sigaltstack(None, ctypes.byref(current)) != 0:
        return None
    return 0 if current.ss_flags & _SS_DISABLE else int(current.ss_size)


def ensure_signal_stack(min_bytes: int = SAFE_SIGNAL_STACK) -> bool:
    """On the main thread, replace an installed alternate signal stack smaller than ``min_bytes`` with one of
    ``min_bytes``; True when it did. No stack installed, another thread, or not Linux: nothing to do (False)."""
    if threading.current_thread() is not threading.main_thread():
        return False
    libc = _libc()
    size = signal_stack_size()
    if libc is None or not size or size >= min_bytes:
        return False
    buffer = ctypes.create_string_buffer(min_bytes)
    new = _StackT(ctypes.cast(buffer, ctypes.c_void_p), 0, min_bytes)
    if libc.sigaltstack(ctypes.byref(new), None) != 0:
        return False
    _kept.append(buffer)
    return True
