"""Issue 13 (binding layer) on a GPU: stream-ordered outputs, the completion event instead of the caller's stream
handle, inputs kept alive until the launch is done, ``out=`` with CUDA arrays and ``stream=None`` = torch's current
stream. The device-free halves of these (allocation counts, ordering, a destroyed stream under ASan) are the
emulation tests ``cpp_tests/emulation/test_stream_order.cpp``; this file skips without a usable GPU."""

from __future__ import annotations

import gc

import numpy as np
import pytest
from cuda_support import requires_torch_cuda

from zsseg_rt import ops

# torch CUDA tensors throughout: a real GPU only (the torch-free twins of these checks, which also run on the
# emulated CUDA runtime in CI, are in test_cuda_bindings.py)
pytestmark = [pytest.mark.cuda, requires_torch_cuda]

torch = pytest.importorskip("torch")


def test_out_on_cuda_is_written_in_place_and_equals_the_allocating_call():
    p = torch.rand(2, 33, 16, device="cuda")
    t = torch.rand(5, 16, device="cuda")
    expected = torch.from_dlpack(ops.similarity(p, t, normalize=True))
    out = torch.full((2, 5, 33), float("nan"), device="cuda")
    assert ops.similarity(p, t, normalize=True, out=out) is out
    torch.testing.assert_close(out, expected, rtol=0, atol=0)
    labels = torch.full((1, 9, 11), -1, dtype=torch.int32, device="cuda")
    scores = torch.empty((1, 9, 11), device="cuda")
    logits = torch.rand(1, 3, 5, 7, device="cuda")
    exp_labels, exp_scores = ops.segment(logits, (9, 11))
    ops.segment(logits, (9, 11), out=(labels, scores))
    torch.testing.assert_close(labels, torch.from_dlpack(exp_labels), rtol=0, atol=0)
    torch.testing.assert_close(scores, torch.from_dlpack(exp_scores), rtol=0, atol=0)


def test_cuda_out_on_the_wrong_device_or_dtype_is_refused():
    p = torch.rand(1, 4, 8, device="cuda")
    t = torch.rand(3, 8, device="cuda")
    with pytest.raises(ValueError, match=r"^similarity: argument 'out' must be on cuda:0 like the inputs, got cpu"):
        ops.similarity(p, t, out=np.zeros((1, 3, 4), np.float32))
    with pytest.raises(TypeError, match=r"^similarity: argument 'out' must have dtype float32, got float16"):
        ops.similarity(p, t, out=torch.zeros(1, 3, 4, device="cuda", dtype=torch.float16))


def test_the_callers_stream_may_be_destroyed_after_the_call():
    p = torch.rand(2, 64, 32, device="cuda")
    t = torch.rand(7, 32, device="cuda")
    torch.cuda.synchronize()
    stream = torch.cuda.Stream()
    out = ops.similarity(p, t, stream=stream.cuda_stream)
    cai_stream = out.__cuda_array_interface__["stream"]
    assert cai_stream != stream.cuda_stream  # the producer's handle is never published
    del stream
    gc.collect()
    result = torch.from_dlpack(out)  # ordered after the launch's event on torch's current stream
    torch.testing.assert_close(result, torch.einsum("cd,bnd->bcn", t, p), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out.numpy(), result.cpu().numpy(), rtol=0, atol=0)
    assert out.ready()


def test_inputs_dropped_right_after_the_call_stay_alive_until_the_kernel_is_done():
    gen = torch.Generator(device="cuda").manual_seed(3)
    p = torch.rand(4, 1024, 512, device="cuda", generator=gen)
    t = torch.rand(171, 512, device="cuda", generator=gen)
    expected = torch.einsum("cd,bnd->bcn", t, p)
    p_copy, t_copy = p.clone(), t.clone()
    side = torch.cuda.Stream()
    out = ops.similarity(p_copy, t_copy, stream=side.cuda_stream)  # runs on `side` ...
    del p_copy, t_copy  # ... while torch may hand the inputs' memory to the next allocation on its stream ...
    _ = torch.zeros(8 << 20, device="cuda")  # ... and overwrite it, unless our op still holds the inputs
    torch.testing.assert_close(torch.from_dlpack(out), expected, rtol=1e-4, atol=1e-4)


def test_stream_none_is_torchs_current_stream():
    p = torch.rand(1, 8, 16, device="cuda")
    t = torch.rand(3, 16, device="cuda")
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        out = ops.similarity(p, t)
    assert out.stream == stream.cuda_stream
    assert ops.similarity(p, t).stream == torch.cuda.current_stream().cuda_stream


def test_cuda_status_says_no_error_when_available():
    assert ops.native_module().cuda_status() == "no error"
    assert ops.cuda_unavailable_reason() == ""


@pytest.mark.parametrize("op", ["upsample", "segment"])
def test_a_non_finite_cuda_bias_is_reported_after_the_launch_without_a_host_wait(op):
    logits = torch.rand(1, 3, 4, 4, device="cuda")
    bias = torch.tensor([0.0, float("nan"), 0.0], device="cuda")
    call = getattr(ops, op)
    result = call(logits, (8, 8), class_bias=bias)  # returns at once: the check runs on the device
    first = result if op == "upsample" else result[1]
    with pytest.raises(ValueError, match=rf"^{op}: argument 'class_bias' must be finite, got NaN at class 1"):
        first.numpy()  # the host learns it once the launch has finished
    call(logits, (8, 8), class_bias=bias)
    torch.cuda.synchronize()
    with pytest.raises(ValueError, match=rf"^{op}: argument 'class_bias' must be finite, got NaN at class 1"):
        ops.upsample(logits, (8, 8))  # ... or from the next op call, once
    ops.upsample(logits, (8, 8))
    call(logits, (8, 8), class_bias=torch.tensor([0.0, 0.0, -float("inf")], device="cuda"))
    with pytest.raises(ValueError, match=r"must be finite, got -inf at class 2"):
        ops.native_module().check_pending_errors(wait=True)
    ops.native_module().check_pending_errors(wait=True)  # reported once


def test_a_finite_cuda_bias_reports_nothing():
    logits = torch.rand(2, 5, 4, 4, device="cuda")
    bias = torch.full((5,), 0.1, device="cuda")
    labels, scores = ops.segment(logits, (8, 8), class_bias=bias)
    ops.native_module().check_pending_errors(wait=True)
    assert scores.numpy().shape == (2, 8, 8)
