"""ops.pamr (native CPU) against the NumPy reference and an independent torch transcription of PAMR's reference
implementation (visinf/1-stage-wseg models/mods/pamr.py, as NACLIP and SC-CLIP vendor it); bad arguments raise
clear errors; the CUDA op against the CPU op where a GPU exists."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pamr_oracle import torch_pamr

from zsseg_rt import ops
from zsseg_rt.ops import reference

# Tolerance (PAMR's done-when bound): every step is a convex combination of the previous values (weights sum to
# 1), so fp32 rounding adds O(P) ulp of max|mask| per step and never amplifies; with |mask| <= 3, P <= 24 and
# <= 10 steps the worst case is ~1e-5 and the typical error ~1e-6. The weights themselves (softmax of affinities
# computed in fp32 by both sides) agree to a few ulp.
ATOL = 1e-5
RTOL = 1e-5


def random_case(rng, b, c, k, h, w, spread=1.0):
    mask = rng.uniform(-spread, spread, (b, c, h, w)).astype(np.float32)
    image = rng.normal(0, 1.0, (b, k, h, w)).astype(np.float32)
    return mask, image


@settings(max_examples=40, deadline=None)
@given(
    b=st.integers(1, 2),
    c=st.integers(1, 6),
    k=st.sampled_from([1, 3]),
    h=st.integers(1, 29),
    w=st.integers(1, 29),
    iterations=st.integers(1, 10),
    dilations=st.sampled_from([(1,), (8, 16), (1, 2, 4), (3,)]),
    seed=st.integers(0, 2**31 - 1),
)
def test_native_matches_numpy_reference(b, c, k, h, w, iterations, dilations, seed):
    mask, image = random_case(np.random.default_rng(seed), b, c, k, h, w, spread=3.0)
    got = ops.pamr(mask, image, iterations, dilations)
    assert got.shape == mask.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, reference.pamr(mask, image, iterations, dilations), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize(
    "shape,iterations,dilations",
    [((1, 21, 47, 53), 10, (8, 16)), ((2, 3, 20, 9), 3, (1, 2, 4, 8, 12, 24)), ((1, 5, 1, 33), 1, (8, 16))],
)
def test_native_and_reference_match_the_torch_transcription(shape, iterations, dilations):
    """The done-when check: PAMR equals its reference implementation within 1e-5 (NACLIP's 10 steps, (8, 16);
    the 1-stage-wseg default dilations; a one-row map)."""
    rng = np.random.default_rng(sum(shape))
    mask, image = random_case(rng, shape[0], shape[1], 3, shape[2], shape[3])
    pytest.importorskip("torch")
    oracle = torch_pamr(mask, image, iterations, dilations)
    np.testing.assert_allclose(ops.pamr(mask, image, iterations, dilations), oracle, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(reference.pamr(mask, image, iterations, dilations), oracle, rtol=RTOL, atol=ATOL)


def test_refinement_on_an_image_with_an_edge():
    """A mask misaligned with an image edge spreads inside the region and not across the edge (what PAMR is for);
    on a flat image the same mask spreads across."""
    image = np.zeros((1, 3, 16, 16), np.float32)
    image[:, :, :, 8:] = 1.0
    image += np.random.default_rng(0).normal(0, 0.01, image.shape).astype(np.float32)
    mask = np.zeros((1, 1, 16, 16), np.float32)
    mask[0, 0, :, :5] = 1.0  # the class covers columns 0..4; the image region is columns 0..7
    out = ops.pamr(mask, image, 10, (1,))
    assert out[0, 0, :, 5:8].mean() > 0.05  # spread into the rest of its region
    assert out[0, 0, :, 8:].max() < 1e-3  # not across the edge
    flat = ops.pamr(mask, np.zeros_like(image), 10, (1,))
    assert flat[0, 0, :, 8:].max() > 0.01


def test_linear_in_the_mask_so_it_commutes_with_the_logit_scale():
    mask, image = random_case(np.random.default_rng(3), 1, 4, 3, 19, 23)
    np.testing.assert_allclose(ops.pamr(40.0 * mask, image), 40.0 * ops.pamr(mask, image), rtol=1e-5, atol=1e-4)


def test_out_buffer_and_torch_cpu_tensors():
    torch = pytest.importorskip("torch")
    mask, image = random_case(np.random.default_rng(4), 1, 2, 3, 8, 9)
    out = np.empty_like(mask)
    assert ops.pamr(mask, image, 2, (1, 2), out=out) is out
    np.testing.assert_array_equal(out, ops.pamr(torch.from_numpy(mask), torch.from_numpy(image), 2, [1, 2]))
    np.testing.assert_array_equal(out, ops.pamr(mask, image, np.int64(2), np.array([1, 2])))


def test_nan_spreads_as_in_the_reference():
    mask, image = random_case(np.random.default_rng(5), 1, 2, 3, 12, 12)
    mask[0, 1, 6, 6] = np.nan
    got, ref = ops.pamr(mask, image, 1, (1,)), reference.pamr(mask, image, 1, (1,))
    np.testing.assert_array_equal(np.isnan(got), np.isnan(ref))
    # one step: exactly the 8 pixels that have it as a neighbour (a pixel is not its own neighbour)
    assert np.isnan(got[0, 1]).sum() == 8 and not np.isnan(got[0, 1, 6, 6]) and not np.isnan(got[0, 0]).any()


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        (
            {"mask": np.zeros((2, 3, 4), np.float32)},
            ValueError,
            r"pamr: argument 'mask' must have shape \[B, C, H, W\]",
        ),
        ({"image": np.zeros((1, 3, 5, 4), np.float32)}, ValueError, r"'image' must have shape .*resize the mask"),
        ({"image": np.zeros((2, 3, 4, 4), np.float32)}, ValueError, r"'image' must have shape"),
        ({"mask": np.zeros((1, 2, 4, 4), np.float64)}, TypeError, r"'mask'.*float32"),
        ({"iterations": 0}, ValueError, r"'iterations' must be in 1\.\.10000, got 0"),
        ({"iterations": 2.0}, TypeError, r"iterations must be an int"),
        ({"iterations": True}, TypeError, r"iterations must be an int"),
        ({"dilations": ()}, ValueError, r"'dilations' must hold 1\.\.8 values, got 0"),
        ({"dilations": (8, 0)}, ValueError, r"'dilations' values must be in 1\.\..*got 0 at position 2"),
        ({"dilations": (8, 1.5)}, TypeError, r"'dilations' must hold ints, got float at position 2"),
        ({"dilations": 8}, TypeError, r"'dilations' must be a sequence of ints"),
        ({"dilations": tuple(range(1, 10))}, ValueError, r"1\.\.8 values, got 9"),
        ({"stream": 5}, ValueError, r"stream"),
    ],
)
def test_bad_arguments_raise_clear_errors(kwargs, error, match):
    args = {
        "mask": np.zeros((1, 2, 4, 4), np.float32),
        "image": np.zeros((1, 3, 4, 4), np.float32),
        "iterations": 2,
        "dilations": (1, 2),
    }
    args.update(kwargs)
    with pytest.raises(error, match=match):
        ops.pamr(**args)


def test_out_must_not_alias_the_mask():
    mask, image = random_case(np.random.default_rng(6), 1, 2, 3, 5, 5)
    with pytest.raises(ValueError, match="out"):
        ops.pamr(mask, image, out=mask)


@pytest.mark.skipif(not ops.cuda_available(), reason="no usable CUDA device (or a CPU-only build of _C)")
def test_cuda_matches_cpu():
    torch = pytest.importorskip("torch")
    mask, image = random_case(np.random.default_rng(7), 2, 21, 3, 61, 47, spread=3.0)
    got = ops.pamr(torch.from_numpy(mask).cuda(), torch.from_numpy(image).cuda(), 10, (8, 16))
    gpu = torch.from_dlpack(got).cpu().numpy()
    np.testing.assert_allclose(gpu, ops.pamr(mask, image, 10, (8, 16)), rtol=RTOL, atol=ATOL)
    with pytest.raises(ValueError, match="pamr: .*'image'.*cpu"):
        ops.pamr(torch.from_numpy(mask).cuda(), image)
