"""relation_descriptor (CPU) against zsseg_rt.ops.reference.relation_descriptor and torch."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zsseg_rt.ops import reference, relation_descriptor


def _atol(dim: int) -> float:
    # 2D-term fp32 dot products of values <= 1 in magnitude: error ~ sqrt(2D) * 2^-24 * |terms|, plus reordering.
    return 2e-6 * np.sqrt(2 * dim) + 1e-6


@settings(max_examples=60, deadline=None)
@given(
    batch=st.integers(1, 3),
    classes=st.integers(1, 40),
    dim=st.integers(1, 96),
    out_dim=st.one_of(st.none(), st.integers(1, 80)),
    with_bias=st.booleans(),
    seed=st.integers(0, 2**31 - 1),
)
def test_matches_reference(batch, classes, dim, out_dim, with_bias, seed):
    rng = np.random.default_rng(seed)
    t = rng.uniform(-1, 1, (classes, dim)).astype(np.float32)
    g = rng.uniform(-1, 1, (batch, dim)).astype(np.float32)
    w = None if out_dim is None else rng.uniform(-1, 1, (out_dim, 2 * dim)).astype(np.float32)
    b = rng.uniform(-1, 1, (out_dim,)).astype(np.float32) if (w is not None and with_bias) else None
    out = relation_descriptor(t, g, w, b)
    expected = reference.relation_descriptor(t, g, w, b)
    assert out.dtype == np.float32 and out.shape == expected.shape
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=_atol(dim))


@pytest.mark.parametrize(
    "batch,classes,dim,out_dim", [(1, 1, 1, 1), (1, 1, 1, None), (2, 1, 5, 3), (1, 1000, 16, 8), (2, 171, 512, 512)]
)
def test_odd_and_real_sizes(batch, classes, dim, out_dim):
    rng = np.random.default_rng(classes + dim)
    t = rng.uniform(-1, 1, (classes, dim)).astype(np.float32)
    g = rng.uniform(-1, 1, (batch, dim)).astype(np.float32)
    w = None if out_dim is None else rng.uniform(-1, 1, (out_dim, 2 * dim)).astype(np.float32)
    b = None if out_dim is None else rng.uniform(-1, 1, (out_dim,)).astype(np.float32)
    np.testing.assert_allclose(
        relation_descriptor(t, g, w, b), reference.relation_descriptor(t, g, w, b), rtol=1e-5, atol=_atol(dim)
    )


def test_without_weight_is_exact_concat():
    t = np.arange(6, dtype=np.float32).reshape(2, 3)
    g = np.array([[1, 2, 3], [0, -1, 0.5]], np.float32)
    out = relation_descriptor(t, g)
    assert out.shape == (2, 2, 6)
    np.testing.assert_array_equal(out[1, 1], np.array([0, -4, 2.5, 3, 4, 5], np.float32))


def test_matches_torch_linear_of_concat():
    torch = pytest.importorskip("torch")
    gen = torch.Generator().manual_seed(1)
    t = torch.nn.functional.normalize(torch.randn(13, 32, generator=gen), dim=-1)
    g = torch.nn.functional.normalize(torch.randn(3, 32, generator=gen), dim=-1)
    linear = torch.nn.Linear(64, 24)
    with torch.no_grad():
        prod = t[None] * g[:, None]  # [B, C, D]
        expected = linear(torch.cat([prod, t[None].expand_as(prod)], dim=-1))
    out = relation_descriptor(t, g, linear.weight.detach(), linear.bias.detach())
    np.testing.assert_allclose(out, expected.numpy(), rtol=1e-5, atol=1e-6 * 8)
