"""upsample (plain and calibrated) / segment on CUDA (fp32 and fp16) against the NumPy reference. Skipped, with
the reason, where there is no usable GPU; runs on the emulated CUDA runtime in CI."""

from __future__ import annotations

import numpy as np
import pytest
from cuda_support import EMULATED, device, requires_cuda, to_host, torch_cuda_available

from zsseg_rt.ops import reference, segment, upsample

# CUDA arrays from cuda_support (torch-free): on a GPU and on the emulated CUDA runtime in CI; the comparison with
# torch's own interpolate runs where torch has CUDA.
pytestmark = [pytest.mark.cuda, requires_cuda]


def to_numpy(device_array, dtype) -> np.ndarray:
    return to_host(device_array).astype(dtype)


def on_device(x: np.ndarray, dtype: str):
    """``x`` as a CUDA array of ``dtype`` (torch-free: runs on the emulated runtime too) and the values the kernel
    sees (fp16-rounded for float16)."""
    rounded = x.astype(dtype)
    return device(rounded), rounded.astype(np.float32)


def coordinate_tolerance(x: np.ndarray, crop_hw) -> float:
    # torch's fp32 source-coordinate error (see test_upsample.reference_tolerance)
    return float(np.abs(x).max()) * (3.6e-7 * (crop_hw[0] + crop_hw[1] + 2) + 5e-7) * 2 + 1e-7


CASES = [
    ((1, 5, 8, 8), (32, 32), None),
    ((2, 7, 13, 9), (40, 21), (1, 2, 10, 6)),
    ((1, 3, 20, 17), (6, 5), None),
]
if not EMULATED:  # 45M outputs: minutes on the emulated runtime (a fiber per CUDA thread, under ASan)
    CASES.append(((1, 171, 32, 32), (512, 512), None))


@pytest.mark.parametrize("shape,size,crop", CASES)
@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_upsample_matches_reference(shape, size, crop, dtype):
    x = np.random.default_rng(0).normal(0, 3, shape).astype(np.float32)
    t, x_in = on_device(x, dtype)  # x_in: the exact values the kernel sees (fp16-rounded)
    out = to_numpy(upsample(t, size, crop=crop), np.float32)
    crop_hw = shape[2:] if crop is None else crop[2:]
    # fp16 output: half an ulp of |x| <= ~16 is 2^-7; fp32: the coordinate bound.
    atol = 8e-3 if dtype == "float16" else coordinate_tolerance(x_in, crop_hw)
    np.testing.assert_allclose(out, reference.upsample(x_in, size, crop), rtol=0, atol=atol)


@pytest.mark.parametrize("shape,size,crop", CASES)
@pytest.mark.parametrize("dtype", ["float32", "float16"])
# every calibration but the plain resize (bias none, no sigmoid: test_upsample_matches_reference); not generated
# rather than skipped, so that the lease's must-run rule (a skip fails the stage) holds for every case that exists
@pytest.mark.parametrize("bias_kind,sigmoid", [("none", True), ("random", True), ("random", False)])
def test_calibrated_upsample_matches_reference_and_torch(shape, size, crop, dtype, bias_kind, sigmoid):
    rng = np.random.default_rng(2)
    x = rng.normal(0, 3, shape).astype(np.float32)
    bias = None if bias_kind == "none" else rng.uniform(-0.3, 0.3, shape[1]).astype(np.float32)
    t, x_in = on_device(x, dtype)
    bias_t = None if bias is None else device(bias)
    result = upsample(t, size, crop=crop, sigmoid=sigmoid, class_bias=bias_t)
    assert result.dtype == dtype and result.shape == (shape[0], shape[1], *size)
    out = to_numpy(result, np.float32)
    crop_hw = shape[2:] if crop is None else crop[2:]
    if dtype == "float16":
        # one fp16 rounding of the result: half an ulp of |v| <= ~16 (no sigmoid) or < 2 (sigmoid)
        atol = 8e-3 if not sigmoid else 1e-3
    else:
        # expf is accurate to a few ulp: the CPU bound (test_upsample.calibrated_tolerance) applies
        base = coordinate_tolerance(x_in, crop_hw)
        atol = base * 0.25 + 3e-7 if sigmoid else base + 2.4e-7 * (1.0 + float(np.abs(x_in).max()))
    np.testing.assert_allclose(
        out, reference.upsample(x_in, size, crop, sigmoid=sigmoid, class_bias=bias), rtol=0, atol=atol
    )
    if not torch_cuda_available():
        return
    # torch on the same device: interpolate -> sigmoid -> sub, in fp32
    import torch
    import torch.nn.functional as F

    tv = torch.from_numpy(x_in).cuda()
    if crop is not None:
        tv = tv[..., crop[0] : crop[0] + crop[2], crop[1] : crop[1] + crop[3]]
    ref_t = F.interpolate(tv, size=size, mode="bilinear", align_corners=False)
    ref_t = ref_t.sigmoid() if sigmoid else ref_t
    if bias is not None:
        ref_t = ref_t - torch.from_numpy(bias).cuda()[None, :, None, None]
    np.testing.assert_allclose(out, ref_t.cpu().numpy(), rtol=0, atol=atol)


def test_upsample_bias_on_another_device_is_refused():
    t = device(np.zeros((1, 3, 4, 4), np.float32))
    with pytest.raises(ValueError, match="upsample: .*'class_bias'.*cpu"):
        upsample(t, (8, 8), sigmoid=True, class_bias=np.zeros(3, np.float32))
    with pytest.raises(ValueError, match="upsample: .*'class_bias'.*cuda:0"):
        upsample(np.zeros((1, 3, 4, 4), np.float32), (8, 8), class_bias=device(np.zeros(3, np.float32)))


def test_upsample_bias_dtype_and_shape_on_cuda():
    # the third segfault of the first GPU run (join_shape formatting [4]; repro_3)
    t = device(np.zeros((1, 3, 4, 4), np.float32))
    with pytest.raises(TypeError, match="upsample: argument 'class_bias' must be float32, got float16"):
        upsample(t, (8, 8), class_bias=device(np.zeros(3, np.float16)))
    with pytest.raises(ValueError, match=r"upsample: argument 'class_bias' must have shape \[C\] = \[3\]"):
        upsample(t, (8, 8), class_bias=device(np.zeros(4, np.float32)))


@pytest.mark.parametrize("shape,size,crop", CASES)
@pytest.mark.parametrize("dtype", ["float32", "float16"])
@pytest.mark.parametrize("bias_kind", ["none", "random"])
@pytest.mark.parametrize("sigmoid", [True, False])
def test_segment_matches_reference(shape, size, crop, dtype, bias_kind, sigmoid):
    rng = np.random.default_rng(1)
    x = rng.normal(0, 3, shape).astype(np.float32)
    bias = None if bias_kind == "none" else rng.uniform(-0.3, 0.3, shape[1]).astype(np.float32)
    t, x_in = on_device(x, dtype)
    bias_t = None if bias is None else device(bias)
    labels, scores = segment(t, size, class_bias=bias_t, sigmoid=sigmoid, crop=crop)
    labels, scores = to_numpy(labels, np.int32), to_numpy(scores, np.float32)
    ref_labels, ref_scores = reference.segment(x_in, size, bias, sigmoid, crop)
    tol = coordinate_tolerance(x_in, shape[2:] if crop is None else crop[2:]) * (0.25 if sigmoid else 1) + 2e-7
    up = reference.upsample(x_in, size, crop).astype(np.float64)
    values = (1 / (1 + np.exp(-up)) if sigmoid else up) - (0 if bias is None else bias[None, :, None, None])
    top2 = -np.sort(-values, axis=1)[:, :2] if shape[1] > 1 else None
    near_tie = (top2[:, 0] - top2[:, 1] < 2 * tol) if top2 is not None else np.zeros_like(labels, bool)
    assert not ((labels != ref_labels) & ~near_tie).any()
    np.testing.assert_allclose(scores, ref_scores, rtol=0, atol=tol)


def test_cpu_bias_with_cuda_logits_is_refused():
    t = device(np.zeros((1, 3, 4, 4), np.float32))
    with pytest.raises(ValueError, match="class_bias"):
        segment(t, (8, 8), class_bias=np.zeros(3, np.float32))
