"""ops.warp (native CPU) against the NumPy reference (hypothesis: shapes, flows inside and far outside the map,
integer and half-pixel displacements, nearest and bilinear), NaN rules, bad arguments raising clear errors, and the CUDA
op against the CPU op (on a GPU, and on the emulated CUDA runtime in CI: ``-m cuda``)."""

from __future__ import annotations

import numpy as np
import pytest
from cuda_support import device, requires_cuda, to_host
from hypothesis import given, settings
from hypothesis import strategies as st

from zsseg_rt import ops
from zsseg_rt.ops import reference

# Tolerance: the reference sums the four taps in float64 from the same grid coordinates; the kernels sum four
# float32 products rounded one by one: a few ulp of max|values| (<= 4 here), never more.
ATOL = 4e-6


def random_case(rng, b, c, h, w, reach):
    values = rng.uniform(-4.0, 4.0, (b, c, h, w)).astype(np.float32)
    flow = rng.uniform(-reach, reach, (b, h, w, 2)).astype(np.float32)
    return values, flow


@settings(max_examples=60, deadline=None)
@given(
    b=st.integers(1, 2),
    c=st.integers(1, 7),
    h=st.integers(1, 23),
    w=st.integers(1, 23),
    reach=st.sampled_from([0.0, 0.5, 3.0, 40.0, 1e9]),
    snap=st.sampled_from([None, 1.0, 0.5]),
    nearest=st.booleans(),
    seed=st.integers(0, 2**31 - 1),
)
def test_native_matches_numpy_reference(b, c, h, w, reach, snap, nearest, seed):
    values, flow = random_case(np.random.default_rng(seed), b, c, h, w, reach)
    if snap is not None and reach < 1e6:  # integer or half-pixel displacements: floor and round at their edges
        flow = (np.round(flow / snap) * snap).astype(np.float32)
    got = ops.warp(values, flow, nearest)
    assert got.shape == values.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, reference.warp(values, flow, nearest), rtol=0, atol=0 if nearest else ATOL)


def test_shifts_and_border():
    values = np.arange(2 * 3 * 4, dtype=np.float32).reshape(1, 2, 3, 4)
    flow = np.zeros((1, 3, 4, 2), np.float32)
    np.testing.assert_array_equal(ops.warp(values, flow), values)  # no motion: the values themselves
    flow[..., 0] = 1.0  # each pixel reads its right neighbour; the last column replicates the border
    moved = ops.warp(values, flow)
    np.testing.assert_array_equal(moved[..., :3], values[..., 1:])
    np.testing.assert_array_equal(moved[..., 3], values[..., 3])
    flow[..., 0] = 0.25
    np.testing.assert_allclose(ops.warp(values, flow)[..., :3], 0.75 * values[..., :3] + 0.25 * values[..., 1:])
    flow[..., 0], flow[..., 1] = -0.5, 0.5  # a half rounds to even (cvRound): x - 0.5 and y + 0.5 read
    expected = values[:, :, [0, 2, 2]][:, :, :, [0, 0, 2, 2]]  # columns 0, 0, 2, 2 and rows 0, 2, 2
    np.testing.assert_array_equal(ops.warp(values, flow, nearest=True), expected)


def test_nan_rules():
    values = np.ones((1, 2, 4, 4), np.float32)
    values[0, 1, 2, 2] = np.nan
    flow = np.zeros((1, 4, 4, 2), np.float32)
    flow[0, 0, 0] = (np.inf, 0.0)
    flow[0, 3, 3] = (0.0, np.nan)
    out = ops.warp(values, flow)
    assert np.isnan(out[0, :, 0, 0]).all() and np.isnan(out[0, :, 3, 3]).all()  # a displacement not finite
    assert np.isnan(out[0, 1, 2, 2]) and not np.isnan(out[0, 0, 2, 2])  # a NaN value stays in its channel
    np.testing.assert_array_equal(np.isnan(out), np.isnan(reference.warp(values, flow)))


def test_out_buffer_and_torch_cpu_tensors():
    torch = pytest.importorskip("torch")
    values, flow = random_case(np.random.default_rng(4), 1, 3, 6, 7, 2.0)
    out = np.empty_like(values)
    assert ops.warp(values, flow, out=out) is out
    np.testing.assert_array_equal(out, ops.warp(torch.from_numpy(values), torch.from_numpy(flow)))


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        ({"values": np.zeros((3, 4, 5), np.float32)}, ValueError, r"warp: argument 'values' must have shape \[B, C, H"),
        ({"flow": np.zeros((1, 4, 5, 3), np.float32)}, ValueError, r"'flow' must have shape \[B, H, W, 2\] with B, H"),
        ({"flow": np.zeros((1, 5, 4, 2), np.float32)}, ValueError, r"'flow' must have shape"),
        ({"flow": np.zeros((2, 4, 5, 2), np.float32)}, ValueError, r"'flow' must have shape"),
        ({"values": np.zeros((1, 2, 4, 5), np.float64)}, TypeError, r"warp: argument 'values'.*float32"),
        ({"flow": np.zeros((1, 4, 5, 2), np.float64)}, TypeError, r"warp: argument 'flow'.*float32"),
        ({"nearest": 1}, TypeError, r"warp: nearest must be a bool, got int"),
        ({"stream": 5}, ValueError, r"stream"),
    ],
)
def test_bad_arguments_raise_clear_errors(kwargs, error, match):
    args = {"values": np.zeros((1, 2, 4, 5), np.float32), "flow": np.zeros((1, 4, 5, 2), np.float32)}
    args.update(kwargs)
    with pytest.raises(error, match=match):
        ops.warp(**args)


def test_out_must_not_alias_the_values():
    values, flow = random_case(np.random.default_rng(6), 1, 2, 5, 5, 1.0)
    with pytest.raises(ValueError, match="out"):
        ops.warp(values, flow, out=values)


@pytest.mark.cuda
@requires_cuda
@pytest.mark.parametrize("nearest", [False, True])
def test_cuda_matches_cpu(nearest):
    """The CUDA kernel and the CPU kernel share the per-pixel taps and sum (zsseg/warp.h, no FMA contraction on either
    device): equal. Torch-free device arrays: runs on a GPU and on the emulated CUDA
    runtime in CI."""
    values, flow = random_case(np.random.default_rng(7), 2, 9, 37, 45, 6.0)
    flow[0, 3, 4] = (np.nan, 0.0)
    gpu = to_host(ops.warp(device(values), device(flow), nearest))
    np.testing.assert_array_equal(gpu, ops.warp(values, flow, nearest))
    with pytest.raises(ValueError, match="warp: .*'flow'"):
        ops.warp(device(values), flow)
