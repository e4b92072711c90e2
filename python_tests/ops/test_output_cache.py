"""The host work of an eager CUDA op call without ``out=`` (issue 86 item 2): the memory of a dropped output is taken
over by the next output of the same size (csrc/bindings/output_cache.h), so a steady stream of calls makes no
allocation, no free and no stream wait for its outputs. Counted by the emulated runtime (``_C._emulation.api_calls()``;
the H200 measured upsample's host time at 202.5 us per call without ``out=``, 51.5 us with it, torch eager 16.5 us).
Controls: a call on another stream is ordered after the buffer's last writer (the race detector of the emulated
runtime fails any test whose accesses are not ordered), and an output exported to another library is never taken
over (its consumer's stream is not ours to order)."""

from __future__ import annotations

import gc

import numpy as np
import pytest
from cuda_support import Stream, cuda_emulation, device, held, requires_cuda, requires_emulation, to_host

from zsseg_rt import ops
from zsseg_rt.ops import reference

pytestmark = [pytest.mark.cuda, requires_cuda, requires_emulation]

ALLOCATIONS = ("cudaMalloc", "cudaMallocAsync", "cudaMallocFromPoolAsync")
FREES = ("cudaFree", "cudaFreeAsync")
RECORDS = ("cudaEventRecord", "cudaEventRecordWithFlags")


def _count(calls, names):
    return sum(calls.get(name, 0) for name in names)


def _logits(seed, classes=5):
    x = np.random.default_rng(seed).standard_normal((1, classes, 4, 4)).astype(np.float32)
    return x, device(x, cai_stream=None)  # CAI v3 stream None: nothing to order the launch after


def _steady(call, n=8):
    """The API calls of ``n`` calls of ``call`` after two warm-up calls, each result kept until the next one is made
    (``out = call()`` in a loop: two outputs alive at a time); returns the calls and the last result."""
    out = call()
    out = call()  # the first output goes once this one exists: its memory is kept
    emu = cuda_emulation()
    emu.settle()
    emu.reset_api_calls()
    for _ in range(n):
        out = call()
    return emu.api_calls(), out


@pytest.mark.parametrize("calibrated", [False, True], ids=["upsample", "upsample_sigmoid_bias"])
def test_a_steady_stream_of_calls_allocates_frees_and_waits_for_nothing(calibrated):
    x, logits = _logits(86)
    bias_host = np.linspace(0.0, 0.4, 5).astype(np.float32)
    bias = device(bias_host, cai_stream=None) if calibrated else None
    s = Stream()
    try:
        calls, out = _steady(lambda: ops.upsample(logits, (16, 16), sigmoid=calibrated, class_bias=bias, stream=int(s)))
        # before: per call one cudaMallocFromPoolAsync and its event record; the release a cudaStreamWaitEvent and a
        # cudaFreeAsync on the library's release stream
        assert _count(calls, ALLOCATIONS) == 0 and _count(calls, FREES) == 0, calls
        assert calls.get("cudaStreamWaitEvent", 0) == 0, calls
        # the launch's completion event (and the class-bias check's: its own, on the device)
        assert _count(calls, RECORDS) == 8 * (2 if calibrated else 1), calls
        assert calls.get("cudaStreamIsCapturing", 0) <= 8, calls  # before: twice per call (the parse, the launch)
        expected = reference.upsample(x, (16, 16), sigmoid=calibrated, class_bias=bias_host if calibrated else None)
        np.testing.assert_allclose(to_host(out), expected, rtol=1e-5, atol=1e-6)
    finally:
        cuda_emulation().settle()
        s.close()


def test_similarity_outputs_are_taken_over_too():
    rng = np.random.default_rng(87)
    p = (rng.random((1, 24, 16)) - 0.5).astype(np.float32)
    t = (rng.random((7, 16)) - 0.5).astype(np.float32)
    patches, text = device(p, cai_stream=None), device(t, cai_stream=None)
    s = Stream()
    try:
        calls, out = _steady(lambda: ops.similarity(patches, text, scale=3.0, stream=int(s)))
        assert _count(calls, ALLOCATIONS) == 0 and _count(calls, FREES) == 0, calls
        assert calls.get("cudaStreamWaitEvent", 0) == 0 and _count(calls, RECORDS) == 8, calls
        np.testing.assert_allclose(to_host(out), reference.similarity(p, t, scale=3.0), rtol=1e-5, atol=1e-5)
    finally:
        cuda_emulation().settle()
        s.close()


def test_a_buffer_taken_over_on_another_stream_waits_for_its_last_writer():
    x, logits = _logits(88)
    y, other_logits = _logits(89)
    s, t = Stream(), Stream()
    try:
        ops.upsample(logits, (16, 16), stream=int(s)).numpy()  # warm-up: the first output's memory
        gc.collect()
        with held(s):  # the writer on s is still pending when t takes its memory over
            first = ops.upsample(logits, (16, 16), stream=int(s))
            address = first.ptr
            del first  # kept for the next output of this size
            emu = cuda_emulation()
            emu.reset_api_calls()
            second = ops.upsample(other_logits, (16, 16), stream=int(t))
            calls = emu.api_calls()
            assert second.ptr == address  # the same memory ...
            assert _count(calls, ALLOCATIONS) == 0, calls
            assert calls.get("cudaStreamWaitEvent", 0) == 1, calls  # ... after the writer on s: one wait
            assert not second.ready()  # ordered behind the held stream
        np.testing.assert_allclose(to_host(second), reference.upsample(y, (16, 16)), rtol=1e-5, atol=1e-6)
    finally:
        cuda_emulation().settle()
        s.close()
        t.close()


def test_an_exported_output_is_never_taken_over():
    _, logits = _logits(90)  # an output size no other test makes: no kept buffer of it exists yet
    s, consumer = Stream(), Stream()
    try:
        out = ops.upsample(logits, (13, 11), stream=int(s))
        capsule = out.__dlpack__(stream=int(consumer))  # another library reads it on its stream
        del out, capsule
        gc.collect()
        emu = cuda_emulation()
        emu.settle()
        emu.reset_api_calls()
        fresh = ops.upsample(logits, (13, 11), stream=int(s))
        calls = emu.api_calls()
        assert _count(calls, ALLOCATIONS) == 1, calls  # a new allocation: the exported memory was released
        to_host(fresh)
    finally:
        cuda_emulation().settle()
        s.close()
        consumer.close()
