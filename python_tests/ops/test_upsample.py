"""upsample (CPU) against zsseg_rt.ops.reference.upsample and torch's F.interpolate, plain and with the fused
calibration ``sigmoid -> minus class_bias`` (torch: ``torch.sigmoid(F.interpolate(...)) - bias[None, :, None, None]``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from op_cases import resize_cases

from zsseg_rt.ops import reference, upsample


def reference_tolerance(x: np.ndarray, crop_hw: tuple) -> float:
    """Bound of |kernel - fp64 reference|.

    torch (the spec the kernel follows bit-for-bit in its index math) computes the source coordinate in fp32:
    an error of about 3 * 2^-24 * (in + 1) that moves the blend weight, so the value by up to that times the
    neighbour difference (<= 2 max|x|) per axis; plus a few fp32 roundings of max|x|. Factor 2 of safety.
    """
    max_abs = float(np.abs(x).max()) if x.size else 0.0
    return max_abs * (3.6e-7 * (crop_hw[0] + crop_hw[1] + 2) + 5e-7) * 2 + 1e-7


def torch_upsample(x: np.ndarray, size, crop=None) -> np.ndarray:
    t = torch.from_numpy(x)
    if crop is not None:
        top, left, height, width = crop
        t = t[..., top : top + height, left : left + width]
    return F.interpolate(t, size=tuple(size), mode="bilinear", align_corners=False).numpy()


def calibrated_tolerance(x: np.ndarray, crop_hw: tuple, sigmoid: bool) -> float:
    """Bound of |calibrated kernel - fp64 reference| (and vs torch).

    With the sigmoid: its slope is <= 1/4, so the resize's coordinate bound shrinks 4x; the CPU kernel's
    vectorised sigmoid adds < 1e-7 absolute (checked in cpp_tests/test_segment.cpp), and the fp32 roundings of
    the sigmoid and of the subtraction (values in (-1, 2)) add < 2.4e-7. 3e-7 covers both; the total stays far
    below the 1e-6 the pipeline needs. Without the sigmoid: the resize bound plus the rounding of ``v - b``.
    """
    base = reference_tolerance(x, crop_hw)
    return base * 0.25 + 3e-7 if sigmoid else base + 2.4e-7 * (1.0 + float(np.abs(x).max()))


def torch_calibrated(x: np.ndarray, size, crop=None, sigmoid=False, bias=None) -> np.ndarray:
    t = torch.from_numpy(torch_upsample(x, size, crop))
    if sigmoid:
        t = torch.sigmoid(t)
    if bias is not None:
        t = t - torch.from_numpy(bias)[None, :, None, None]
    return t.numpy()


def check_calibrated(x: np.ndarray, size, crop, sigmoid: bool, bias) -> None:
    out = upsample(x, size, crop=crop, sigmoid=sigmoid, class_bias=bias)
    assert isinstance(out, np.ndarray) and out.dtype == np.float32
    assert out.shape == (x.shape[0], x.shape[1], size[0], size[1])
    crop_hw = x.shape[2:] if crop is None else crop[2:]
    tol = calibrated_tolerance(x, crop_hw, sigmoid)
    ref = reference.upsample(x, size, crop, sigmoid=sigmoid, class_bias=bias)
    np.testing.assert_allclose(out, ref, rtol=0, atol=tol)
    np.testing.assert_allclose(out, torch_calibrated(x, size, crop, sigmoid, bias), rtol=0, atol=tol)


def check(x: np.ndarray, size, crop=None) -> None:
    out = upsample(x, size, crop=crop)
    assert isinstance(out, np.ndarray) and out.dtype == np.float32
    assert out.shape == (x.shape[0], x.shape[1], size[0], size[1])
    crop_hw = x.shape[2:] if crop is None else crop[2:]
    np.testing.assert_allclose(out, reference.upsample(x, size, crop), rtol=0, atol=reference_tolerance(x, crop_hw))
    # torch itself is not bit-stable here: its AVX2/AVX-512 builds contract `scale * (i + 0.5) - 0.5` into an
    # FMA, which moves the fp32 source coordinate by an ulp (observed 1.1e-5 at |x| ~ 12, 32 -> 511). The same
    # coordinate-error bound as against the reference therefore applies.
    np.testing.assert_allclose(out, torch_upsample(x, size, crop), rtol=0, atol=reference_tolerance(x, crop_hw))


cases = resize_cases


@settings(max_examples=120, deadline=None)
@given(case=cases(), seed=st.integers(0, 2**31 - 1))
def test_matches_reference_and_torch(case, seed):
    shape, size, crop = case
    x = np.random.default_rng(seed).normal(0, 3, shape).astype(np.float32)
    check(x, size, crop)


@pytest.mark.parametrize(
    "shape,size",
    [
        ((1, 1, 1, 1), (1, 1)),  # 1x1 identity
        ((1, 3, 1, 1), (9, 4)),  # 1x1 broadcast
        ((2, 5, 7, 9), (7, 9)),  # identity size
        ((1, 1, 8, 8), (64, 64)),  # C = 1
        ((1, 1000, 3, 4), (5, 7)),  # many classes, small spatial
        ((1, 4, 20, 20), (3, 70)),  # down in H, up in W
        ((2, 2, 32, 32), (512, 511)),  # the model's real ratio, odd output
    ],
)
def test_explicit_shapes(shape, size):
    x = np.random.default_rng(0).normal(0, 3, shape).astype(np.float32)
    check(x, size)


def test_crop_equals_slicing_and_ignores_padding():
    rng = np.random.default_rng(1)
    x = rng.normal(0, 1, (2, 3, 12, 10)).astype(np.float32)
    crop = (2, 1, 8, 7)
    padded = x.copy()
    padded[..., :2, :] = 1e6  # padding outside the crop must not leak in
    padded[..., :, 8:] = -1e6
    np.testing.assert_array_equal(
        upsample(padded, (20, 17), crop=crop), upsample(np.ascontiguousarray(x[..., 2:10, 1:8]), (20, 17))
    )


def test_nan_neighbour_propagates_like_torch():
    x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
    x[0, 0, 1, 2] = np.nan
    out = upsample(x, (8, 8))
    expected = torch_upsample(x, (8, 8))
    np.testing.assert_array_equal(np.isnan(out), np.isnan(expected))
    assert np.isnan(out).any()


def test_accepts_torch_cpu_tensor():
    x = torch.randn(1, 2, 5, 6)
    np.testing.assert_allclose(upsample(x, (10, 12)), torch_upsample(x.numpy(), (10, 12)), atol=1e-6)


# ---- fused calibration: f(up(x)) - class_bias[c] ----------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(
    case=cases(),
    seed=st.integers(0, 2**31 - 1),
    sigmoid=st.booleans(),
    with_bias=st.booleans(),
    scale=st.sampled_from([0.1, 3.0, 30.0]),
)
def test_calibrated_matches_reference_and_torch(case, seed, sigmoid, with_bias, scale):
    shape, size, crop = case  # includes C = 1, crops, down- and up-sampling
    rng = np.random.default_rng(seed)
    x = rng.normal(0, scale, shape).astype(np.float32)
    bias = rng.uniform(-0.5, 0.5, shape[1]).astype(np.float32) if with_bias else None
    check_calibrated(x, size, crop, sigmoid, bias)


@pytest.mark.parametrize(
    "shape,size,crop",
    [
        ((1, 1, 8, 8), (64, 64), None),  # C = 1
        ((2, 4, 20, 20), (3, 70), (2, 1, 15, 17)),  # crop, down in H, up in W
        ((1, 171, 32, 32), (512, 512), None),  # ZegCLIP's per-window step (COCO-Stuff 171 classes)
        ((1, 20, 32, 32), (512, 512), (0, 0, 24, 32)),  # VOC, padded window
    ],
)
@pytest.mark.parametrize("bias_kind", ["none", "zegclip"])
def test_calibrated_explicit_shapes(shape, size, crop, bias_kind):
    x = np.random.default_rng(2).normal(0, 3, shape).astype(np.float32)
    c = shape[1]
    bias = None if bias_kind == "none" else np.where(np.arange(c) < max(c * 11 // 12, 1), 0.1, 0.0).astype(np.float32)
    check_calibrated(x, size, crop, True, bias)


def test_defaults_are_bit_identical_to_the_plain_resize():
    x = np.random.default_rng(3).normal(0, 3, (2, 5, 13, 9)).astype(np.float32)
    plain = upsample(x, (40, 21), crop=(1, 2, 10, 6))
    explicit = upsample(x, (40, 21), crop=(1, 2, 10, 6), sigmoid=False, class_bias=None)
    np.testing.assert_array_equal(plain.view(np.uint32), explicit.view(np.uint32))
    # v - 0.0f == v exactly, and a bias alone is the plain resize minus the bias, rounded once
    zero = upsample(x, (40, 21), crop=(1, 2, 10, 6), class_bias=np.zeros(5, np.float32))
    np.testing.assert_array_equal(plain.view(np.uint32), zero.view(np.uint32))
    bias = np.linspace(-0.3, 0.3, 5).astype(np.float32)
    np.testing.assert_array_equal(
        upsample(x, (40, 21), crop=(1, 2, 10, 6), class_bias=bias), plain - bias[None, :, None, None]
    )


def test_sigmoid_saturates_and_propagates_nan():
    x = np.array([0.0, 50.0, -50.0, 1e30, -1e30, np.nan], np.float32).reshape(1, 6, 1, 1)
    out = upsample(x, (2, 3), sigmoid=True)
    expected = torch.sigmoid(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(out, np.broadcast_to(expected, out.shape), rtol=0, atol=1e-7)
    assert np.isnan(out[0, 5]).all() and not np.isnan(out[0, :5]).any()


def test_calibrated_nan_neighbour_propagates_like_torch():
    x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4) / 8
    x[0, 0, 1, 2] = np.nan
    out = upsample(x, (8, 8), sigmoid=True, class_bias=np.array([0.1], np.float32))
    np.testing.assert_array_equal(np.isnan(out), np.isnan(torch_calibrated(x, (8, 8), sigmoid=True)))
    assert np.isnan(out).any()


def test_calibrated_accepts_torch_cpu_tensors():
    x, bias = torch.randn(1, 3, 5, 6), torch.tensor([0.1, 0.0, -0.2])
    np.testing.assert_allclose(
        upsample(x, (10, 12), sigmoid=True, class_bias=bias),
        torch_calibrated(x.numpy(), (10, 12), sigmoid=True, bias=bias.numpy()),
        rtol=0,
        atol=1e-6,
    )
