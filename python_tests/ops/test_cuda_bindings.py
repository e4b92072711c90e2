"""The binding layer of the CUDA ops without torch (issue 25): DeviceArray, CUDA argument parsing of every kind of
memory, ``out=``, streams, events, exports and their release, CUDA graph capture. Runs on a real GPU and, in CI, on
the emulated CUDA runtime (``ZSSEG_CUDA_EMULATION=1``, see python_tests/cuda_support.py); the tests that observe
pending work or count device-wide synchronisations need the emulation's controls."""

from __future__ import annotations

import gc
import weakref

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
    stream,
    to_host,
)

from zsseg_rt import ops
from zsseg_rt.ops import reference

pytestmark = [pytest.mark.cuda, requires_cuda]
__all__ = ["stream"]  # the fixture, imported for the tests below

F32 = np.float32


def _inputs(seed=0, b=1, n=5, c=3, d=8):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((b, n, d)).astype(F32), rng.standard_normal((c, d)).astype(F32)


def _expected(p, t):
    return reference.similarity(p, t, False, 1.0)


# ---- DeviceArray ----------------------------------------------------------------------------------------------
def test_device_array_shape_dtype_cai_dlpack_and_numpy():
    # The first GPU run: .shape and __cuda_array_interface__ raised "Unregistered type: std::vector<long>".
    p, t = _inputs()
    out = ops.similarity(device(p), device(t))
    assert type(out).__name__ == "DeviceArray"
    assert out.shape == (1, 3, 5) and isinstance(out.shape, tuple)
    assert out.dtype == "float32" and out.device == "cuda:0" and out.nbytes == 60
    cai = out.__cuda_array_interface__
    assert cai["shape"] == (1, 3, 5) and cai["typestr"] == "<f4" and cai["version"] == 3 and cai["strides"] is None
    assert isinstance(cai["data"][0], int) and cai["data"][1] is False
    assert out.__dlpack_device__() == (2, 0)
    assert repr(out) == "DeviceArray(shape=[1, 3, 5], dtype=float32, device=cuda:0)"
    np.testing.assert_allclose(to_host(out), _expected(p, t), rtol=1e-5, atol=1e-6)
    again = ops.similarity(out, out)  # a DeviceArray is an input too (through __dlpack__)
    np.testing.assert_allclose(to_host(again), to_host(out) @ to_host(out).transpose(0, 2, 1), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", ["device", "pool", "managed", "mapped"])
@pytest.mark.parametrize("interface", ["cai", "dlpack"])
def test_every_kind_of_device_addressable_memory_is_accepted(kind, interface):
    # "mapped": page-locked host memory mapped into the device (a Jetson's zero-copy frame), which the pointer
    # attributes report as cudaMemoryTypeHost with a device pointer: refused before issue 25.
    p, t = _inputs(1)
    out = ops.similarity(device(p, kind, interface=interface), device(t, kind, interface=interface))
    np.testing.assert_allclose(to_host(out), _expected(p, t), rtol=1e-5, atol=1e-6)


def test_mapped_pinned_memory_is_an_output_too():
    p, t = _inputs(2)
    out = device(np.full((1, 3, 5), np.nan, F32), "mapped")
    assert ops.similarity(device(p), device(t), out=out) is out
    np.testing.assert_allclose(to_host(out), _expected(p, t), rtol=1e-5, atol=1e-6)


def test_pageable_host_memory_claiming_to_be_cuda_is_refused():
    p, t = _inputs()
    with pytest.raises(ValueError, match=r"argument 'text' claims to be a CUDA array but its data pointer is not"):
        ops.similarity(device(p), device(t, "host"))


# ---- argument parsing of CUDA inputs ------------------------------------------------------------------------
def test_cuda_argument_errors_are_clear_and_never_crash():
    p, t = _inputs()
    # formatted by join_shape: the segfault of the first GPU run (a static libstdc++ inside _C)
    with pytest.raises(ValueError, match=r"argument 'text' must be C-contiguous, got shape \[3, 8\] with byte strides"):
        ops.similarity(device(p), device(t, strides=(4, 12)))
    with pytest.raises(TypeError, match=r"arguments 'patches' \(float32\) and 'text' \(float16\) must have the same"):
        ops.similarity(device(p), device(t.astype(np.float16)))
    with pytest.raises(ValueError, match=r"arguments 'patches' \(cuda:0\) and 'text' \(cpu\) are on different devices"):
        ops.similarity(device(p), t)
    with pytest.raises(ValueError, match=r"argument 'patches' must have shape \[B, N, D\], got \[5, 8\]"):
        ops.similarity(device(p[0]), device(t))
    logits = device(np.zeros((1, 3, 4, 4), F32))
    with pytest.raises(ValueError, match=r"argument 'class_bias' must have shape \[C\] = \[3\].*got \[4\]"):
        ops.upsample(logits, (8, 8), class_bias=device(np.zeros(4, F32)))


def test_out_on_cuda_is_checked_and_written_in_place():
    p, t = _inputs(3)
    out = device(np.full((1, 3, 5), np.nan, F32), interface="dlpack")
    assert ops.similarity(device(p), device(t), out=out) is out
    np.testing.assert_allclose(to_host(out), _expected(p, t), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match=r"argument 'out' is read-only"):
        ops.similarity(device(p), device(t), out=device(np.zeros((1, 3, 5), F32), readonly=True))
    with pytest.raises(ValueError, match=r"argument 'out' must have shape \[1, 3, 5\], got \[1, 3, 4\]"):
        ops.similarity(device(p), device(t), out=device(np.zeros((1, 3, 4), F32)))
    with pytest.raises(ValueError, match=r"argument 'out' must be on cuda:0 like the inputs, got cpu"):
        ops.similarity(device(p), device(t), out=np.zeros((1, 3, 5), F32))
    labels, scores = device(np.zeros((1, 8, 8), np.int32)), device(np.zeros((1, 8, 8), F32))
    logits = np.random.default_rng(4).standard_normal((1, 3, 4, 4)).astype(F32)
    ops.segment(device(logits), (8, 8), out=(labels, scores))
    exp_labels, exp_scores = ops.segment(logits, (8, 8))
    np.testing.assert_array_equal(to_host(labels), exp_labels)
    np.testing.assert_allclose(to_host(scores), exp_scores, rtol=1e-6, atol=1e-7)


def test_dlpack_producers_are_asked_for_the_launch_stream(stream):
    p, t = _inputs()
    text = device(t, interface="dlpack")
    ops.similarity(device(p), text)
    assert text.last_dlpack_stream == 1  # DLPack: 1 = the legacy default stream (ours is 0)
    ops.similarity(device(p), text, stream=int(stream))
    assert text.last_dlpack_stream == int(stream)


# ---- streams and events -----------------------------------------------------------------------------------------
def test_the_callers_stream_may_be_destroyed_right_after_the_call():
    p, t = _inputs(5)
    s = Stream()
    out = ops.similarity(device(p), device(t), stream=int(s))
    assert out.stream == int(s)
    s.close()
    gc.collect()
    np.testing.assert_allclose(to_host(out), _expected(p, t), rtol=1e-5, atol=1e-6)
    assert out.ready()


def test_a_non_finite_cuda_bias_is_reported_after_the_launch():
    logits = device(np.zeros((1, 3, 4, 4), F32))
    bias = device(np.array([0.0, np.nan, 0.0], F32))
    result = ops.upsample(logits, (8, 8), class_bias=bias)
    with pytest.raises(ValueError, match=r"^upsample: argument 'class_bias' must be finite, got NaN at class 1"):
        result.numpy()
    ops.segment(logits, (8, 8), class_bias=device(np.array([0.0, 0.0, -np.inf], F32)))
    with pytest.raises(ValueError, match=r"must be finite, got -inf at class 2"):
        ops.native_module().check_pending_errors(wait=True)
    ops.native_module().check_pending_errors(wait=True)  # reported once


@requires_emulation
def test_cai_inputs_without_a_stream_entry_are_ordered_after_the_legacy_default_stream(stream):
    # torch's __cuda_array_interface__ is version 2 (no "stream"): its producer's pending work used to be ignored.
    p, t = _inputs()
    other = Stream()
    try:
        inputs = device(p), device(t, cai_stream="absent"), device(t, cai_stream=None)
        with held(0):  # work still running on the legacy default stream
            out = ops.similarity(inputs[0], inputs[1], stream=int(stream))
            explicit_none = ops.similarity(inputs[0], inputs[2], stream=int(other))
            # CAI v3: None = the producer needs no synchronisation: this one completes while the hold stays
            np.testing.assert_allclose(to_host(explicit_none), _expected(p, t), rtol=1e-5, atol=1e-6)
            assert not out.ready()  # ordered after the held legacy stream (a wait for it would have released it)
        assert out.ready()
    finally:
        other.close()


# ---- release of exported outputs (pool memory is not synchronised by cudaFree) ---------------------------------
_KEEP = []  # the tests' inputs stay alive: only the output's release is observed


def _exported_output(stream_handle, how, consumer=None):
    p, t = _inputs()
    _KEEP[:] = [device(p), device(t)]
    out = ops.similarity(*_KEEP, stream=stream_handle)
    ptr = out.ptr
    if how == "dlpack":
        capsule = out.__dlpack__(stream=consumer)
        del capsule  # an unconsumed capsule releases its share when dropped
    return out, ptr


@requires_emulation
def test_an_exported_output_is_not_freed_while_its_kernel_may_still_write_it(stream):
    emu = cuda_emulation()
    _KEEP.clear()  # an earlier test's inputs: freeing them (cudaFree waits for the device) would end the hold
    with held(stream):  # the launch is still running on the GPU
        out, ptr = _exported_output(int(stream), "dlpack", consumer=1)
        del out
        assert emu.is_live(ptr)  # before: cudaFree of pool memory returned it at once
    ops.native_module().check_pending_errors(wait=True)
    assert not emu.is_live(ptr)


@requires_emulation
def test_a_cai_export_is_released_after_the_legacy_streams_work(stream):
    # CAI names no consumer stream: the release waits for the legacy default stream (every blocking stream)
    emu = cuda_emulation()
    out, ptr = _exported_output(int(stream), "cai")
    assert out.__cuda_array_interface__["stream"] is None and out.ready()  # the export waited for the producer
    with held(0):  # a consumer's kernel on the legacy stream still reads it
        del out
        assert emu.is_live(ptr)
    ops.native_module().check_pending_errors(wait=True)
    assert not emu.is_live(ptr)


@requires_emulation
def test_an_exported_output_waits_for_the_consumers_stream_not_the_whole_device(stream):
    emu = cuda_emulation()
    consumer = Stream()
    try:
        out, ptr = _exported_output(int(stream), "dlpack", consumer=int(consumer))
        emu.reset_stats()
        with held(consumer):  # the consumer's kernel reading the output is still running
            del out
            assert emu.is_live(ptr)
        ops.native_module().check_pending_errors(wait=True)
        assert not emu.is_live(ptr)
        stats = emu.stats()
        assert stats["sync_free"] == 0 and stats["pool_free"] == 0  # no device-wide cudaFree any more
        assert stats["async_free"] >= 1
    finally:
        consumer.close()


@requires_emulation
def test_a_consumers_read_on_its_stream_comes_before_the_release_with_no_report(stream):
    # What the consumer enqueued on the stream it named to __dlpack__ still reads the output when the output is
    # dropped: the release waits for that stream. Without the wait, the free runs first and the read is a
    # use-after-free report (the mutation lib_skip_consumer_wait; the emulated runtime's reports fail the test).
    consumer = Stream()
    try:
        out, ptr = _exported_output(int(stream), "dlpack", consumer=int(consumer))
        expected = to_host(out)
        sink = device(np.zeros(out.shape, F32))
        with held(consumer):  # the consumer's copy out of the output is still pending
            cuda_testing().memcpy_async(sink.ptr, ptr, out.nbytes, int(consumer))
            del out
        ops.native_module().check_pending_errors(wait=True)
        np.testing.assert_array_equal(to_host(sink), expected)
    finally:
        consumer.close()


@requires_emulation
def test_the_class_bias_stays_alive_while_its_device_check_may_still_read_it(stream):
    logits = device(np.zeros((1, 3, 4, 4), F32))
    bias = device(np.zeros(3, F32))
    alive = weakref.ref(bias)
    bad_out = device(np.zeros((1, 3, 5, 5), F32))  # wrong shape: the op fails after enqueueing the bias check
    with held(stream):
        with pytest.raises(ValueError, match=r"argument 'out' must have shape"):
            ops.upsample(logits, (8, 8), class_bias=bias, out=bad_out, stream=int(stream))
        del bias
        gc.collect()
        assert alive() is not None  # before: dropped while the check kernel was still queued
    ops.native_module().check_pending_errors(wait=True)
    gc.collect()
    assert alive() is None


# ---- CUDA graph capture ------------------------------------------------------------------------------------------
def test_a_call_with_out_can_be_captured_and_allocation_is_refused_clearly(stream):
    p, t = _inputs(6)
    ops.similarity(device(p), device(t))  # leaves a launch in the pending list: its event must not be queried
    out = device(np.zeros((1, 3, 5), F32))
    inputs = device(p), device(t)
    cuda_testing().begin_capture(int(stream))
    try:
        ops.similarity(*inputs, out=out, stream=int(stream))
        with pytest.raises(ValueError, match=r"cannot be allocated while the stream is captured.*pass preallocated"):
            ops.similarity(*inputs, stream=int(stream))
    finally:
        cuda_testing().end_capture(int(stream))  # raises if anything above invalidated the capture
