"""segment (CPU) against zsseg_rt.ops.reference.segment and torch (interpolate -> sigmoid -> sub -> argmax).

Near-ties. Labels must be equal except at pixels where the top-2 calibrated values of the reference are closer
than twice the value error bound of the fp32 upsampling (``value_tolerance``): there, fp32 rounding may
legitimately swap the two classes. The bound is not a fixed 1e-5 because torch (the spec) computes the bilinear
source coordinate in fp32, whose error grows with the map size and the logit magnitude (see test_upsample).
Everywhere else labels are compared exactly.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from op_cases import resize_cases

from zsseg_rt.ops import reference, segment


def value_tolerance(x: np.ndarray, crop_hw, sigmoid: bool) -> float:
    """Bound of |calibrated value - fp64 reference| (see test_upsample.reference_tolerance)."""
    max_abs = float(np.abs(x).max())
    upsampled = max_abs * (3.6e-7 * (crop_hw[0] + crop_hw[1] + 2) + 5e-7) * 2
    return upsampled * (0.25 if sigmoid else 1.0) + 2e-7  # sigmoid' <= 1/4; + fp32 rounding of the result


def reference_calibrated(x, size, bias, sigmoid, crop) -> np.ndarray:
    up = reference.upsample(x, size, crop).astype(np.float64)  # [B, C, H, W]
    if sigmoid:
        up = 1.0 / (1.0 + np.exp(-up))
    return up if bias is None else up - bias.astype(np.float64)[None, :, None, None]


def top2_gap(values: np.ndarray) -> np.ndarray:
    """[B, H, W] gap between the best and second-best class (inf with one class)."""
    if values.shape[1] < 2:
        return np.full(values.shape[:1] + values.shape[2:], np.inf)
    top2 = -np.sort(-values, axis=1)[:, :2]
    return top2[:, 0] - top2[:, 1]


def torch_segment(x, size, bias, sigmoid, crop):
    t = torch.from_numpy(x)
    if crop is not None:
        top, left, height, width = crop
        t = t[..., top : top + height, left : left + width]
    v = F.interpolate(t, size=tuple(size), mode="bilinear", align_corners=False)
    if sigmoid:
        v = v.sigmoid()
    if bias is not None:
        v = v - torch.from_numpy(bias)[None, :, None, None]
    labels = v.argmax(dim=1)
    return labels.numpy(), v.gather(1, labels[:, None])[:, 0].numpy(), v.numpy()


def check(x, size, bias=None, sigmoid=True, crop=None):
    labels, scores = segment(x, size, class_bias=bias, sigmoid=sigmoid, crop=crop)
    assert labels.dtype == np.int32 and scores.dtype == np.float32
    assert labels.shape == scores.shape == (x.shape[0], size[0], size[1])
    tol = value_tolerance(x, x.shape[2:] if crop is None else crop[2:], sigmoid)
    # 1) the fp64 reference
    ref_labels, ref_scores = reference.segment(x, size, bias, sigmoid, crop)
    near_tie = top2_gap(reference_calibrated(x, size, bias, sigmoid, crop)) < 2 * tol
    differ = labels != ref_labels
    assert not (differ & ~near_tie).any(), f"{int((differ & ~near_tie).sum())} labels differ away from near-ties"
    np.testing.assert_allclose(scores, ref_scores, rtol=0, atol=tol)
    # 2) torch's fp32 pipeline (its own fp32 sigmoid rounding adds ~6e-8)
    t_labels, t_scores, t_values = torch_segment(x, size, bias, sigmoid, crop)
    differ = labels != t_labels
    assert not (differ & ~(top2_gap(t_values.astype(np.float64)) < 2 * tol + 1e-7)).any()
    np.testing.assert_allclose(scores, t_scores, rtol=0, atol=tol + 1e-7)


@st.composite
def cases(draw):
    shape, size, crop = draw(resize_cases())
    bias_kind = draw(st.sampled_from(["none", "two_values", "random"]))  # grouped / grouped / general path
    return shape, size, crop, bias_kind, draw(st.booleans())


def make_bias(kind: str, classes: int, rng) -> np.ndarray | None:
    if kind == "none":
        return None
    if kind == "two_values":  # ZegCLIP: 0.1 on seen classes, 0 on unseen
        return np.where(np.arange(classes) % 4 == 0, 0.0, 0.1).astype(np.float32)
    return rng.uniform(-0.3, 0.3, classes).astype(np.float32)


@settings(max_examples=150, deadline=None)
@given(case=cases(), seed=st.integers(0, 2**31 - 1))
def test_matches_reference_and_torch(case, seed):
    shape, size, crop, bias_kind, sigmoid = case
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 3, shape).astype(np.float32)
    check(x, size, make_bias(bias_kind, shape[1], rng), sigmoid, crop)


@pytest.mark.parametrize("bias_kind", ["none", "two_values", "random"])
@pytest.mark.parametrize(
    "shape,size",
    [
        ((1, 1, 5, 5), (9, 9)),  # C = 1: label 0 everywhere
        ((1, 1000, 3, 4), (6, 7)),  # many classes, small spatial
        ((2, 3, 1, 1), (4, 5)),  # 1x1 maps
        ((1, 6, 8, 9), (8, 9)),  # identity size
        ((1, 20, 32, 32), (128, 96)),  # the model's ratio
    ],
)
@pytest.mark.parametrize("sigmoid", [True, False])
def test_explicit_shapes(shape, size, bias_kind, sigmoid):
    rng = np.random.default_rng(3)
    x = rng.normal(0, 3, shape).astype(np.float32)
    check(x, size, make_bias(bias_kind, shape[1], rng), sigmoid)
    if shape[1] == 1:
        assert (segment(x, size)[0] == 0).all()


@pytest.mark.parametrize("classes", [4, 12])  # 12 distinct biases take the general path
def test_ties_resolve_to_lowest_index(classes):
    x = np.full((1, classes, 3, 3), 0.7, np.float32)
    labels, scores = segment(x, (5, 5))
    assert (labels == 0).all()
    bias = np.linspace(0.5, 0.6, classes).astype(np.float32)
    bias[2] = bias[3] = 0.01  # classes 2 and 3 tie for the best calibrated value
    labels, scores = segment(x, (5, 5), class_bias=bias)
    assert (labels == 2).all()
    np.testing.assert_allclose(scores, 1 / (1 + np.exp(-0.7)) - 0.01, atol=1e-6)
    t_labels = torch_segment(x, (5, 5), bias, True, None)[0]
    assert (labels == t_labels).all()


@pytest.mark.parametrize("bias_kind", ["none", "two_values", "random"])
def test_first_nan_wins_with_nan_score(bias_kind):
    """torch.argmax: a NaN beats every number and the first NaN wins; the score is then NaN."""
    rng = np.random.default_rng(5)
    x = rng.normal(0, 1, (1, 10, 4, 4)).astype(np.float32)
    x[0, 7, 1, 1] = np.nan
    x[0, 4, 1, 1] = np.nan
    x[0, 9] = 50.0  # a clear winner elsewhere
    bias = make_bias(bias_kind, 10, rng)
    labels, scores = segment(x, (8, 8), class_bias=bias)
    ref_labels, ref_scores = reference.segment(x, (8, 8), bias)
    nan_pixels = np.isnan(ref_scores)
    assert nan_pixels.any() and (~nan_pixels).any()
    np.testing.assert_array_equal(np.isnan(scores), nan_pixels)
    assert (labels[nan_pixels] == 4).all()
    assert (labels[~nan_pixels] == 9).all()
    t_labels = torch_segment(x, (8, 8), bias, True, None)[0]
    np.testing.assert_array_equal(labels, t_labels)


def test_crop_ignores_padding():
    rng = np.random.default_rng(2)
    x = rng.normal(0, 1, (1, 5, 10, 10)).astype(np.float32)
    padded = np.full((1, 5, 14, 13), 100.0, np.float32)
    padded[:, 1, ...] = 1e4  # class 1 would win everywhere if padding leaked in
    padded[..., 3:13, 2:12] = x
    a = segment(padded, (30, 30), crop=(3, 2, 10, 10))
    b = segment(x, (30, 30))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status (Linux only)")
def test_no_full_resolution_buffer_is_allocated():
    """B=1, C=171, 32x32 -> 1024x1024: a [B, C, H, W] float32 buffer would be 717 MB.

    Peak RSS growth (Linux VmHWM, reset before the call) of a fresh process during the call must stay far
    below it (outputs are 8 MB). The same
    probe around `upsample` at 512x512 (a real 179 MB output) must see it, which shows the probe works.
    """
    script = textwrap.dedent(
        """
        import numpy as np
        from zsseg_rt.ops import segment, upsample
        def vm_kb(key):
            with open("/proc/self/status") as f:
                return next(int(l.split()[1]) for l in f if l.startswith(key + ":"))
        def growth_mb(fn):  # peak RSS during fn minus RSS before it (VmHWM reset via clear_refs)
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            before = vm_kb("VmRSS"); result = fn(); return (vm_kb("VmHWM") - before) / 1024.0, result
        x = np.random.default_rng(0).normal(0, 3, (1, 171, 32, 32)).astype(np.float32)
        bias = np.where(np.arange(171) < 156, 0.1, 0.0).astype(np.float32)
        segment(x[:, :, :4, :4].copy(), (8, 8), class_bias=bias)  # load the module, warm OpenMP
        seg, _ = growth_mb(lambda: segment(x, (1024, 1024), class_bias=bias))
        ups, _ = growth_mb(lambda: upsample(x, (512, 512)))
        print(seg, ups)
        """
    )
    env = dict(os.environ, OMP_NUM_THREADS="2")
    out = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
    )
    assert out.returncode == 0, out.stderr
    segment_growth_mb, upsample_growth_mb = (float(v) for v in out.stdout.split())
    assert upsample_growth_mb > 150, f"probe did not see upsample's 179 MB output ({upsample_growth_mb:.1f} MB)"
    assert segment_growth_mb < 100, f"segment grew the peak RSS by {segment_growth_mb:.1f} MB"
