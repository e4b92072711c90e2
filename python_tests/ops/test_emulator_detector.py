"""What the emulated CUDA runtime's race detector sees beyond plain pointer arguments and single operations (issue
50, review #3-#5; the C++ side: cpp_tests/emulation/test_detector_coverage.cpp): the pointers inside a kernel's
struct parameter (``preprocess``, the first kernel of every frame), the nodes of one captured graph against each
other, and a kernel that faults (a sticky device error the host sees). Each case has an ordered control that reports
nothing. Emulation only: they read the runtime's reports."""

from __future__ import annotations

import numpy as np
import pytest
from cuda_support import Stream, cuda_emulation, cuda_testing, device, requires_emulation, to_host

from zsseg_rt import ops

pytestmark = [pytest.mark.cuda, requires_emulation]

MEAN, STD = (123.7, 116.3, 103.5), (58.4, 57.1, 57.4)
CROP = 32


def _ptr(array) -> int:
    return int(array.__cuda_array_interface__["data"][0])


def _order(waiter: Stream, stream: Stream) -> None:
    """``waiter`` waits for what ``stream`` has enqueued so far."""
    t = cuda_testing()
    event = t.event_create()
    t.event_record(event, int(stream))
    t.stream_wait_event(int(waiter), event)
    t.event_destroy(event)


@pytest.mark.parametrize("ordered", [False, True])
@pytest.mark.parametrize("target", ["out", "frame"])
def test_preprocess_racing_an_unordered_copy_is_reported(target, ordered):
    """Review experiment E: preprocess's pointers travel in PreprocessParams; its write of ``out`` (or its read of
    the frame) against a copy on another stream into the same memory, with no ordering between them, is a race."""
    t, emu = cuda_testing(), cuda_emulation()
    rng = np.random.default_rng(0)
    frame = device(rng.integers(0, 256, (40, 60, 3), dtype=np.uint8))
    out = device(np.zeros((1, 3, CROP, CROP), np.float32))
    junk = device(np.ones((1, 3, CROP, CROP), np.float32))
    s1, s2 = Stream(), Stream()
    try:
        ops.preprocess(frame, (40, 60), [(0, 32, 0, 32)], CROP, MEAN, STD, out=out, stream=int(s1))
        if ordered:
            _order(s2, s1)
        if target == "out":
            t.memcpy_async(_ptr(out), _ptr(junk), 3 * CROP * CROP * 4, int(s2))
        else:  # the frame the kernel reads, overwritten
            t.memcpy_async(_ptr(frame), _ptr(junk), 40 * 60 * 3, int(s2))
        t.device_synchronize()
        reports = emu.take_reports()
    finally:
        s1.close()
        s2.close()
    if ordered:
        assert reports == []
        if target == "out":
            np.testing.assert_array_equal(to_host(out), 1.0)  # the copy came last
    else:
        assert [kind for kind, _ in reports] == ["race"], reports
        assert "preprocess_kernel" in reports[0][1] and "cudaMemcpyAsync" in reports[0][1], reports


@pytest.mark.parametrize("ordered", [False, True])
def test_unordered_writers_in_two_nodes_of_one_captured_graph_are_reported(ordered):
    """Two forked streams of one capture write one buffer; joined back only at the end (a GPU runs the two branches
    concurrently at every launch: a race), or with the second write after the first (no report)."""
    t, emu = cuda_testing(), cuda_emulation()
    buffer = device(np.zeros(256, np.uint8))
    s1, s2 = Stream(), Stream()
    fork, middle, join = t.event_create(), t.event_create(), t.event_create()
    try:
        t.begin_capture(int(s1))
        t.event_record(fork, int(s1))
        t.stream_wait_event(int(s2), fork)  # s2 joins the capture
        t.memset_async(buffer.ptr, 1, 256, int(s1))
        if ordered:
            t.event_record(middle, int(s1))
            t.stream_wait_event(int(s2), middle)
        t.memset_async(buffer.ptr, 2, 256, int(s2))
        t.event_record(join, int(s2))
        t.stream_wait_event(int(s1), join)  # joined back before the capture ends
        graph = t.end_capture(int(s1), keep=True)
        executable = t.graph_instantiate(graph)
        for _ in range(2):
            t.graph_launch(executable, int(s1))
        t.stream_synchronize(int(s1))
        reports = emu.take_reports()
        t.graph_exec_destroy(executable)
        t.graph_destroy(graph)
    finally:
        for event in (fork, middle, join):
            t.event_destroy(event)
        s1.close()
        s2.close()
    if ordered:
        assert reports == []
        np.testing.assert_array_equal(to_host(buffer), 2)
    else:
        assert [kind for kind, _ in reports] == ["race", "race"], reports  # one per launch
        assert "(node 0) and 'cudaMemsetAsync' (node 1) both write" in reports[0][1], reports


@pytest.mark.parametrize("ran_first", [False, True], ids=["launch-then-fault", "fault-before-the-check"])
def test_a_kernel_fault_is_a_sticky_error_the_host_sees(ran_first):
    """A kernel that throws (the emulation's device fault) is reported as a kernel-error, and the next
    synchronisation raises, on any stream, as do later launches, until the device is reset. The launch itself
    succeeds whether or not the stream's worker has already run the kernel when the launch's error is read (a CI run
    on a loaded machine once saw the fault there: "launch_faulting_kernel: unspecified launch failure")."""
    t, emu = cuda_testing(), cuda_emulation()
    s1, s2 = Stream(), Stream()
    x = device(np.ones((1, 2, 4, 4), np.float32))
    try:
        emu.launch_faulting_kernel(int(s1), ran_first=ran_first)
        with pytest.raises(RuntimeError, match="cudaStreamSynchronize: unspecified launch failure"):
            t.stream_synchronize(int(s1))
        with pytest.raises(RuntimeError, match="unspecified launch failure"):
            t.stream_synchronize(int(s2))
        with pytest.raises(RuntimeError, match="upsample: CUDA error 719"):
            ops.upsample(x, (8, 8), stream=int(s2))
        assert emu.device_error() == "unspecified launch failure"
        reports = emu.take_reports()
    finally:
        emu.reset_device_error()
    assert [kind for kind, _ in reports] == ["kernel-error"], reports
    assert "faulting_kernel" in reports[0][1]
    try:  # after the reset the device works again
        out = ops.upsample(x, (8, 8), stream=int(s2))
        np.testing.assert_allclose(to_host(out), 1.0)
    finally:
        t.device_synchronize()
        s1.close()
        s2.close()
