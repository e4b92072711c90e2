"""``runtime.signal_stack.ensure_signal_stack``: the main thread's alternate signal stack is made large enough for
AMX state (the suite's full run died with SIGSEGV when a DataLoader worker exited after OpenVINO bf16 ran: the
parent's 20 KiB faulthandler stack could not hold the signal frame; see the module's docstring)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="sigaltstack via Linux's libc")

SCRIPT = textwrap.dedent(
    """
    import ctypes, threading
    from zsseg_rt.runtime import signal_stack as ss

    libc = ss._libc()
    small = ctypes.create_string_buffer(20144)  # the size faulthandler gave the main thread on the CI machine
    libc.sigaltstack(ctypes.byref(ss._StackT(ctypes.cast(small, ctypes.c_void_p), 0, 20144)), None)
    print(ss.signal_stack_size())
    seen = []
    worker = threading.Thread(target=lambda: seen.append(ss.ensure_signal_stack()))
    worker.start(); worker.join()
    print(seen[0])                              # not the main thread: untouched
    print(ss.ensure_signal_stack(), ss.signal_stack_size())
    print(ss.ensure_signal_stack(), ss.signal_stack_size())   # large enough already: kept
    """
)


def test_a_small_alternate_stack_is_replaced_on_the_main_thread_only():
    """Control: without the replacement the size stays 20144 (the second line of numbers would not be 262144)."""
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["20144", "False", "True", "262144", "False", "262144"], out


def test_no_alternate_stack_is_left_alone():
    script = "from zsseg_rt.runtime import signal_stack as ss; print(ss.signal_stack_size(), ss.ensure_signal_stack())"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["0", "False"], out
