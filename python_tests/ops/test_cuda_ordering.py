"""Ordering of the CUDA ops' arguments across streams, events and CUDA graphs (issue 36, item 2): each test here
failed on e66ca60 under the asynchronous emulated runtime (a race or misuse reported by it, stale data, or an
invalidated capture). They run on a real GPU too (torch-free: arrays from ``zsseg_rt._C._testing``); the ones that
hold a stream or count pool allocations need the emulation's controls.

On the emulated runtime every test also fails when the runtime reports a race (two accesses to one allocation, one
of them a write, not ordered by the stream order, events or host synchronisations), a use of freed pool memory or a
misuse of a handle (python_tests/conftest.py)."""

from __future__ import annotations

import gc

import numpy as np
import pytest
from cuda_support import (
    Stream,
    cuda_emulation,
    cuda_testing,
    device,
    held,
    requires_cuda,
    requires_emulation,
    to_host,
)

from zsseg_rt import ops
from zsseg_rt.ops import reference

pytestmark = [pytest.mark.cuda, requires_cuda]

F32 = np.float32


def _inputs(seed, b=1, n=40, c=7, d=16):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((b, n, d)).astype(F32), rng.standard_normal((c, d)).astype(F32)


def _expected(p, t):
    return reference.similarity(p, t, False, 1.0)


@pytest.fixture
def streams():
    made = [Stream(), Stream()]  # non-blocking: no implicit ordering with each other or the legacy stream
    yield made
    for s in made:
        s.close()


# ---- a DeviceArray written again through out= (review #8) ------------------------------------------------------
def test_an_out_device_array_is_read_after_its_newest_write(streams):
    first, second = streams
    p1, t1 = _inputs(1)
    p2, t2 = _inputs(2)
    out = ops.similarity(device(p1), device(t1), stream=int(first))
    np.testing.assert_allclose(to_host(out), _expected(p1, t1), rtol=1e-5, atol=1e-5)
    for _ in range(3):
        ops.similarity(device(p2), device(t2), out=out, stream=int(second))
        # e66ca60: numpy() waited for the FIRST launch's event only, then copied on the legacy stream, which does not
        # wait for a non-blocking stream: a race with the second launch (stale values when it had not run yet)
        np.testing.assert_allclose(to_host(out), _expected(p2, t2), rtol=1e-5, atol=1e-5)
        ops.similarity(device(p1), device(t1), out=out, stream=int(first))
        np.testing.assert_allclose(to_host(out), _expected(p1, t1), rtol=1e-5, atol=1e-5)


@requires_emulation
def test_an_out_device_array_is_not_ready_while_its_new_write_is_pending(streams):
    first, second = streams
    p1, t1 = _inputs(3)
    p2, t2 = _inputs(4)
    out = ops.similarity(device(p1), device(t1), stream=int(first))
    to_host(out)
    inputs = device(p2), device(t2)
    with held(second):
        ops.similarity(*inputs, out=out, stream=int(second))
        assert not out.ready()  # e66ca60: True (the first launch's event)
    np.testing.assert_allclose(to_host(out), _expected(p2, t2), rtol=1e-5, atol=1e-5)


def test_a_write_into_a_device_array_waits_for_its_pending_readers(streams):
    first, second = streams
    p, t = _inputs(5)
    a = ops.similarity(device(p), device(t), stream=int(first))  # [1, 7, 40]
    expected_a = _expected(p, t)
    text = device(np.random.default_rng(6).standard_normal((3, 40)).astype(F32))
    results = []
    for _ in range(3):
        results.append(ops.similarity(a, text, stream=int(first)))  # reads a on `first`
        # ... while `second` overwrites a: must wait for that read (write after read)
        ops.similarity(device(p * 2), device(t), out=a, stream=int(second))
        ops.similarity(device(p), device(t), out=a, stream=int(second))
    for r in results:
        np.testing.assert_allclose(to_host(r), _expected(expected_a, to_host(text)), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(to_host(a), expected_a, rtol=1e-5, atol=1e-5)


# ---- a DeviceArray input and the caller's stream (review #12) ------------------------------------------------------
def test_a_device_array_input_does_not_keep_the_callers_stream():
    p, t = _inputs(7)
    a = ops.similarity(device(p), device(t))  # a DeviceArray [1, 7, 40]
    text = device(np.random.default_rng(8).standard_normal((2, 40)).astype(F32))
    s = Stream()
    b = ops.similarity(a, text, stream=int(s))
    expected = _expected(_expected(p, t), to_host(text))
    np.testing.assert_allclose(to_host(b), expected, rtol=1e-4, atol=1e-4)
    s.close()  # "the caller may destroy its stream right after the call"
    del a, b  # e66ca60: a's release recorded an event on the destroyed stream (it was a's DLPack consumer)
    gc.collect()
    ops.native_module().check_pending_errors(wait=True)


class _CountingProducer:
    """A DLPack producer that also has a __cuda_array_interface__ property (as torch tensors do), counting reads."""

    def __init__(self, inner):
        self.inner = inner
        self.cai_reads = 0

    @property
    def __cuda_array_interface__(self):
        self.cai_reads += 1
        return self.inner.__cuda_array_interface__

    def __dlpack__(self, **kwargs):
        return self.inner.__dlpack__(**kwargs)

    def __dlpack_device__(self):
        return self.inner.__dlpack_device__()


def test_a_dlpack_producer_is_never_asked_for_its_cuda_array_interface():
    # item 4's host side: torch's __cuda_array_interface__ is a Python property (tens of microseconds per argument)
    # that e66ca60 evaluated (hasattr) before choosing __dlpack__
    p, t = _inputs(9)
    patches = _CountingProducer(device(p, interface="both"))
    text = _CountingProducer(device(t, interface="both"))
    out = ops.similarity(patches, text)
    np.testing.assert_allclose(to_host(out), _expected(p, t), rtol=1e-5, atol=1e-5)
    assert patches.cai_reads == 0 and text.cai_reads == 0


# ---- consumers of __cuda_array_interface__ that ignore its stream (review #11) -------------------------------------
def test_a_consumer_ignoring_the_cai_stream_reads_complete_content(streams):
    producer, consumer = streams
    testing = cuda_testing()
    for seed in range(3):
        p, t = _inputs(10 + seed)
        out = ops.similarity(device(p), device(t), stream=int(producer))
        cai = out.__cuda_array_interface__  # what torch.as_tensor reads: shape, typestr, data; never "stream"
        copy = device(np.zeros(out.shape, F32))
        testing.memcpy_async(copy.ptr, cai["data"][0], out.nbytes, int(consumer))  # torch's copy on its own stream
        testing.stream_synchronize(int(consumer))
        # e66ca60: the export named a stream and returned at once; the copy raced with the kernel
        np.testing.assert_allclose(to_host(copy), _expected(p, t), rtol=1e-5, atol=1e-5)


# ---- CUDA graph capture -------------------------------------------------------------------------------------------
def test_a_captured_call_on_a_finished_device_array_leaves_the_capture_valid(streams):
    capture_stream = streams[0]
    p, t = _inputs(11)
    a = ops.similarity(device(p), device(t))
    to_host(a)  # finished
    text = device(np.random.default_rng(12).standard_normal((3, 40)).astype(F32))
    out = device(np.zeros((1, 3, 7), F32))
    testing = cuda_testing()
    testing.begin_capture(int(capture_stream))
    try:
        ops.similarity(a, text, out=out, stream=int(capture_stream))
    finally:
        # e66ca60: the capturing stream waited for an event recorded outside the capture: invalidated
        graph = testing.end_capture(int(capture_stream), keep=True)
    try:
        exec_ = testing.graph_instantiate(graph)
        testing.graph_launch(exec_, int(capture_stream))
        testing.stream_synchronize(int(capture_stream))
        np.testing.assert_allclose(to_host(out), _expected(to_host(a), to_host(text)), rtol=1e-4, atol=1e-4)
        testing.graph_exec_destroy(exec_)
    finally:
        testing.graph_destroy(graph)


@requires_emulation
def test_a_captured_call_on_a_pending_device_array_is_refused_and_the_capture_stays_valid(streams):
    producer, capture_stream = streams
    p, t = _inputs(13)
    text = device(np.random.default_rng(14).standard_normal((3, 40)).astype(F32))
    out = device(np.zeros((1, 3, 7), F32))
    inputs = device(p), device(t)
    testing = cuda_testing()
    with held(producer):
        a = ops.similarity(*inputs, stream=int(producer))  # still being written
        testing.begin_capture(int(capture_stream))
        try:
            with pytest.raises(ValueError, match=r"argument 'patches' is a DeviceArray that a launch still writes"):
                ops.similarity(a, text, out=out, stream=int(capture_stream))
        finally:
            testing.end_capture(int(capture_stream))  # raises if the call had invalidated the capture


def test_segment_windows_with_a_cuda_class_of_is_refused_in_a_capture(streams):
    capture_stream = streams[0]
    logits = device(np.zeros((1, 3, 4, 4), F32))
    class_of = device(np.array([0, 1, 1], np.int32))
    out = device(np.zeros((6, 6), np.int32)), device(np.zeros((6, 6), F32))
    testing = cuda_testing()
    testing.begin_capture(int(capture_stream))
    try:
        with pytest.raises(ValueError, match=r"argument 'class_of' on CUDA is read back to the host.*capture"):
            ops.segment_windows(
                logits, [(0, 4, 0, 4)], (4, 4), (4, 4), (6, 6), softmax=True, class_of=class_of,
                out=out, stream=int(capture_stream),
            )  # fmt: skip
    finally:
        testing.end_capture(int(capture_stream))  # e66ca60: its host read-back had invalidated the capture


def test_pamr_on_cuda_is_refused_in_a_capture_with_the_reason(streams):
    capture_stream = streams[0]
    mask = device(np.zeros((1, 2, 5, 5), F32))
    image = device(np.zeros((1, 3, 5, 5), F32))
    out = device(np.zeros((1, 2, 5, 5), F32))
    testing = cuda_testing()
    testing.begin_capture(int(capture_stream))
    try:
        with pytest.raises(ValueError, match=r"^pamr: on CUDA it allocates its workspaces.*capture"):
            ops.pamr(mask, image, iterations=2, out=out, stream=int(capture_stream))
    finally:
        testing.end_capture(int(capture_stream))


def test_a_graph_runs_only_when_launched_and_reads_its_inputs_then(streams):
    capture_stream = streams[0]
    p1, t = _inputs(15)
    p2, _ = _inputs(16)
    patches, text = device(p1), device(t)
    out = device(np.full((1, 7, 40), np.nan, F32))
    testing = cuda_testing()
    testing.begin_capture(int(capture_stream))
    ops.similarity(patches, text, out=out, stream=int(capture_stream))
    graph = testing.end_capture(int(capture_stream), keep=True)
    exec_ = testing.graph_instantiate(graph)
    try:
        testing.device_synchronize()
        assert np.isnan(to_host(out)).all()  # the capture ran nothing
        testing.graph_launch(exec_, int(capture_stream))
        testing.stream_synchronize(int(capture_stream))
        np.testing.assert_allclose(to_host(out), _expected(p1, t), rtol=1e-5, atol=1e-5)
        # new content in the captured input's memory (same address): the next replay reads it
        testing.memcpy_async(patches.ptr, np.ascontiguousarray(p2).ctypes.data, p2.nbytes, int(capture_stream))
        testing.graph_launch(exec_, int(capture_stream))
        testing.stream_synchronize(int(capture_stream))
        np.testing.assert_allclose(to_host(out), _expected(p2, t), rtol=1e-5, atol=1e-5)
    finally:
        testing.graph_exec_destroy(exec_)
        testing.graph_destroy(graph)


# ---- the memory pool's release threshold (review #13) ---------------------------------------------------------------
@requires_emulation
def test_freed_output_memory_stays_in_the_pool_across_synchronisations():
    emu, testing = cuda_emulation(), cuda_testing()
    p, t = _inputs(17)
    inputs = device(p), device(t)
    ops.similarity(*inputs).numpy()  # the first output's memory comes from the system
    ops.native_module().check_pending_errors(wait=True)
    testing.device_synchronize()
    emu.reset_stats()
    for _ in range(4):
        out = ops.similarity(*inputs)
        to_host(out)
        del out
        gc.collect()
        ops.native_module().check_pending_errors(wait=True)
        testing.device_synchronize()  # e66ca60: the pool (release threshold 0) gave the freed output back here ...
    stats = emu.stats()
    assert stats["pool_os_allocations"] == 0, stats  # ... and mapped it again for every output
    # issue 86: the dropped output's memory is taken over by the next output of its size before it reaches the pool
    # (csrc/bindings/output_cache.h; python_tests/ops/test_output_cache.py): no pool operation at all
    assert stats["pool_reuses"] == 0 and stats["pool_os_releases"] == 0, stats


def test_the_device_default_pool_is_left_as_it_is():
    """Review c783dbf #11a: c783dbf raised the DEFAULT pool's release threshold to 256 MiB for the whole process
    (torch's cudaMallocAsync backend shares that pool; on a Jetson, memory it keeps is CPU RAM) and took its outputs
    from it. Outputs now come from a pool of the library's own (cudaMemPoolCreate), threshold set there only."""
    testing = cuda_testing()
    threshold = testing.default_pool_attribute("release_threshold")
    p, t = _inputs(19)
    inputs = device(p), device(t)
    # earlier tests' garbage is released and the default pool's queued frees complete here, not during the call
    # (a collection can run inside it): the H100 lease of 2026-11-26 read 256 bytes in use before the call, 0 after
    gc.collect()
    ops.native_module().check_pending_errors(wait=True)
    testing.device_synchronize()
    used = testing.default_pool_attribute("used_current")
    out = ops.similarity(*inputs)
    to_host(out)
    assert testing.default_pool_attribute("used_current") == used  # c783dbf: + the output's bytes
    del out
    gc.collect()
    ops.native_module().check_pending_errors(wait=True)
    testing.device_synchronize()
    assert testing.default_pool_attribute("release_threshold") == threshold
    assert threshold != 256 << 20  # c783dbf: raised on the process's first output (or by an earlier test's)
