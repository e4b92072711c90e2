"""similarity (CPU) against zsseg_rt.ops.reference.similarity and torch."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zsseg_rt.ops import reference, similarity


def _tolerance(dim: int, scale: float) -> dict:
    # fp32 dot products of D terms of magnitude <= 1: rounding error grows ~ sqrt(D) * 2^-24 per unit of
    # |scale|, and the kernel accumulates in a different order than the float64 reference.
    return {"rtol": 1e-5, "atol": 2e-6 * np.sqrt(dim) * max(abs(scale), 1.0)}


@settings(max_examples=60, deadline=None)
@given(
    batch=st.integers(1, 3),
    patches=st.integers(1, 70),
    classes=st.integers(1, 40),
    dim=st.integers(1, 96),
    text_batched=st.booleans(),
    normalize=st.booleans(),
    scale=st.floats(-100.0, 100.0, allow_nan=False),
    seed=st.integers(0, 2**31 - 1),
)
def test_matches_reference(batch, patches, classes, dim, text_batched, normalize, scale, seed):
    rng = np.random.default_rng(seed)
    p = rng.uniform(-1, 1, (batch, patches, dim)).astype(np.float32)
    t_shape = (batch, classes, dim) if text_batched else (classes, dim)
    t = rng.uniform(-1, 1, t_shape).astype(np.float32)
    out = similarity(p, t, normalize=normalize, scale=scale)
    assert isinstance(out, np.ndarray) and out.dtype == np.float32
    assert out.shape == (batch, classes, patches)
    np.testing.assert_allclose(out, reference.similarity(p, t, normalize, scale), **_tolerance(dim, scale))


@pytest.mark.parametrize(
    "batch,patches,classes,dim",
    [(1, 1, 1, 1), (1, 5, 1, 7), (2, 1, 9, 3), (1, 8, 4, 1), (1, 37, 1000, 64), (2, 1024, 171, 512)],
)
@pytest.mark.parametrize("normalize", [False, True])
def test_odd_and_real_sizes(batch, patches, classes, dim, normalize):
    rng = np.random.default_rng(batch * 1000 + classes)
    p = rng.standard_normal((batch, patches, dim)).astype(np.float32)
    t = rng.standard_normal((classes, dim)).astype(np.float32)
    expected = reference.similarity(p, t, normalize, 3.0)
    # unnormalised N(0,1) inputs give dots of size ~sqrt(D): scale atol with D, not sqrt(D)
    atol = 3.0 * 2e-6 * (np.sqrt(dim) if normalize else dim)
    np.testing.assert_allclose(similarity(p, t, normalize=normalize, scale=3.0), expected, rtol=1e-5, atol=atol)


def test_zero_vectors_normalize_to_zero_not_nan():
    p = np.zeros((1, 4, 8), np.float32)
    p[0, 1] = 1.0
    t = np.zeros((3, 8), np.float32)
    t[2] = 2.0
    out = similarity(p, t, normalize=True, scale=10.0)
    assert not np.isnan(out).any()
    expected = np.zeros((1, 3, 4), np.float32)
    expected[0, 2, 1] = 10.0  # both unit vectors along ones/sqrt(8): cosine 1
    np.testing.assert_allclose(out, expected, atol=1e-5)


def test_matches_torch_normalize_matmul():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    gen = torch.Generator().manual_seed(0)
    p = torch.randn(2, 50, 64, generator=gen)
    t = torch.randn(2, 11, 64, generator=gen)
    expected = 7.5 * F.normalize(t, dim=-1) @ F.normalize(p, dim=-1).transpose(1, 2)  # [B, C, N]
    out = similarity(p, t, normalize=True, scale=7.5)  # torch CPU tensors are accepted
    np.testing.assert_allclose(out, expected.numpy(), rtol=1e-5, atol=7.5 * 1e-6 * 8)


def test_torch_tensor_requiring_grad_is_accepted():
    torch = pytest.importorskip("torch")
    p = torch.ones(1, 2, 3, requires_grad=True)
    t = torch.ones(4, 3)
    np.testing.assert_allclose(similarity(p, t), np.full((1, 4, 2), 3.0, np.float32))


def test_output_is_fresh_and_inputs_untouched():
    p = np.ones((1, 3, 2), np.float32)
    t = np.ones((2, 2), np.float32)
    first = similarity(p, t)
    first[...] = -1
    np.testing.assert_array_equal(similarity(p, t), np.full((1, 2, 3), 2.0, np.float32))
    np.testing.assert_array_equal(p, 1.0)
