"""segment_windows (CPU) against today's unfused exact path (pipeline: calibrated_window_scores -> merge_windows
-> finalize_scores, bit for bit), the fp64 NumPy reference and torch; bad inputs raise clear errors. The sigmoid
path's class pruning (tile bounds; per-pixel second-order bounds on windows that form a grid) must change nothing:
logits whose classes are close (a random-weight model's: pruning needs the per-pixel bounds), peaked (a trained
model's), ties, and distinct logits whose sigmoids tie."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from zsseg_rt import ops, pipeline
from zsseg_rt.ops import reference


def unfused(logits, windows, head, scaled, out, bias, sigmoid=True):
    """What the Engine computed before the fused op (runtime/engine.py::_postprocess, sigmoid exact branch)."""
    parts = []
    for i, w in enumerate(windows):
        if sigmoid:
            full = pipeline.calibrated_window_scores(logits[i : i + 1], head, head, bias)
        else:
            full = ops.upsample(np.ascontiguousarray(logits[i : i + 1]), head)
            if bias is not None:
                full = full - bias[None, :, None, None]
        parts.append(full[:, :, : w.y2 - w.y1, : w.x2 - w.x1])
    labels, scores = pipeline.finalize_scores(pipeline.merge_windows(parts, windows, scaled), out)
    return labels[0], scores[0]


def torch_path(logits, windows, head, scaled, out, bias):
    t = torch.from_numpy(logits.astype(np.float64))
    total = torch.zeros((logits.shape[1],) + tuple(scaled), dtype=torch.float64)
    count = torch.zeros(tuple(scaled), dtype=torch.float64)
    for i, w in enumerate(windows):
        up = F.interpolate(t[i : i + 1], size=head, mode="bilinear", align_corners=False)[0].sigmoid()
        up = up - torch.from_numpy(bias.astype(np.float64))[:, None, None]
        total[:, w.y1 : w.y2, w.x1 : w.x2] += up[:, : w.y2 - w.y1, : w.x2 - w.x1]
        count[w.y1 : w.y2, w.x1 : w.x2] += 1
    final = F.interpolate((total / count)[None], size=out, mode="bilinear", align_corners=False)[0]
    return final.argmax(0).numpy(), final.max(0).values.numpy()


def case(rng, classes, grid, head, scaled, stride, out, nan=False, ties=False):
    windows = pipeline.sliding_windows(scaled[0], scaled[1], head[0], stride)
    logits = rng.normal(0, 3, (len(windows), classes, grid, grid)).astype(np.float32)
    if ties:
        logits[:, 1::2] = logits[:, 0:1]  # identical classes: the lowest index must win everywhere they tie
    if nan:
        logits[0, classes // 2, 0, 0] = np.nan
    bias = np.where(rng.random(classes) < 0.6, 0.1, 0.0).astype(np.float32)
    return logits, windows, bias


@settings(max_examples=60, deadline=None)
@given(
    classes=st.sampled_from([1, 2, 5, 17, 64]),
    grid=st.integers(1, 6),
    head=st.integers(4, 40),
    extra_h=st.integers(0, 60),
    extra_w=st.integers(0, 60),
    pad_h=st.integers(0, 2),
    pad_w=st.integers(0, 2),
    out_h=st.integers(1, 90),
    out_w=st.integers(1, 90),
    nan=st.booleans(),
    ties=st.booleans(),
    seed=st.integers(0, 2**31 - 1),
)
def test_equals_the_unfused_exact_path_bit_for_bit(
    classes, grid, head, extra_h, extra_w, pad_h, pad_w, out_h, out_w, nan, ties, seed
):
    rng = np.random.default_rng(seed)
    # windows smaller than the head (zero-padded inputs) when the rescaled image is smaller than the head
    scaled = (max(1, head + extra_h - pad_h * head // 3), max(1, head + extra_w - pad_w * head // 3))
    stride = max(1, head * 5 // 6)
    logits, windows, bias = case(
        rng, classes, grid, (head, head), scaled, stride, (out_h, out_w), nan, ties and classes > 1
    )
    got = ops.segment_windows(logits, windows, (head, head), scaled, (out_h, out_w), class_bias=bias)
    want = unfused(logits, windows, (head, head), scaled, (out_h, out_w), bias)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])


def test_windows_in_both_directions_and_large_vocabularies():
    rng = np.random.default_rng(1)
    for classes, scaled, out in [(1000, (70, 130), (61, 117)), (171, (150, 64), (301, 120)), (3, (150, 170), (7, 9))]:
        logits, windows, bias = case(rng, classes, 4, (64, 64), scaled, 48, out)
        assert len(windows) >= 2
        got = ops.segment_windows(logits, windows, (64, 64), scaled, out, class_bias=bias)
        want = unfused(logits, windows, (64, 64), scaled, out, bias)
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])
        ref = reference.segment_windows(logits, windows, (64, 64), scaled, out, bias)
        assert (got[0] == ref[0]).mean() >= 0.999  # fp64 reference: flips only at fp32 near-ties
        np.testing.assert_allclose(got[1], ref[1], rtol=0, atol=2e-6)
        tl, ts = torch_path(logits, windows, (64, 64), scaled, out, bias)
        assert (got[0] == tl).mean() >= 0.999
        np.testing.assert_allclose(got[1], ts, rtol=0, atol=2e-6)


@pytest.mark.parametrize("sigmoid", [True, False])  # identity calibration never takes the pruned path
def test_many_windows_per_row_and_counts_not_powers_of_two(sigmoid):
    # stride head/3: up to 3 windows overlap along each axis, so pixels are covered 1, 2, 3, 4, 6 or 9 times (the
    # merge divides by 3, 6 and 9, not only by powers of two) and every rescaled row is in up to 3 x 4 windows (the
    # streaming path's per-thread cache of x-blended logits rows holds 2 per covering window)
    rng = np.random.default_rng(7)
    head, scaled, out = (24, 24), (56, 70), (45, 83)
    logits, windows, bias = case(rng, 37, 6, head, scaled, 8, out)
    assert len(windows) >= 12
    bias = bias if sigmoid else None
    got = ops.segment_windows(logits, windows, head, scaled, out, class_bias=bias, sigmoid=sigmoid)
    want = unfused(logits, windows, head, scaled, out, bias, sigmoid=sigmoid)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])
    if sigmoid:
        ref = reference.segment_windows(logits, windows, head, scaled, out, bias)
        assert (got[0] == ref[0]).mean() >= 0.999  # fp64 reference: flips only at fp32 near-ties
        np.testing.assert_allclose(got[1], ref[1], rtol=0, atol=2e-6)


def close_logits(rng, n, classes, grid, spread=0.0015):
    """Window logits like the benchmark's random-weight model's: per class an offset ~ N(0.01, spread) plus noise of
    the same size, so the classes' sigmoids at a pixel are within ~1e-3 of each other."""
    offsets = rng.normal(0.01, spread, (n, classes, 1, 1))
    return (offsets + rng.normal(0.0, spread, (n, classes, grid, grid))).astype(np.float32)


def check_exact(logits, windows, head, scaled, out, bias):
    got = ops.segment_windows(logits, windows, head, scaled, out, class_bias=bias)
    want = unfused(logits, windows, head, scaled, out, bias)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1].view(np.int32), want[1].view(np.int32))  # bit for bit
    return got


@pytest.mark.parametrize(
    "classes, grid, head, scaled, out, stride",
    [
        (171, 8, 128, (128, 170), (94, 125), 106),  # the benchmark photo at 1/4: two windows side by side
        (37, 6, 96, (150, 96), (170, 110), 80),  # stacked, upsampled output
        (23, 4, 64, (100, 110), (80, 90), 48),  # 2 x 2 windows
        (19, 6, 48, (100, 110), (77, 95), 16),  # stride a third of the head: up to 3 x 3 windows at a pixel
    ],
)
def test_close_classes_bit_for_bit(classes, grid, head, scaled, out, stride):
    rng = np.random.default_rng(classes)
    windows = pipeline.sliding_windows(scaled[0], scaled[1], head, stride)
    logits = close_logits(rng, len(windows), classes, grid)
    seen = np.where(rng.random(classes) < 0.1, 0.1, 0.0).astype(np.float32)  # ZegCLIP's seen-class bias
    calibrated = rng.uniform(0.0, 2e-3, classes).astype(np.float32)  # biases the size of the classes' gaps
    for bias in (seen, calibrated, None):
        got = check_exact(logits, windows, (head, head), scaled, out, bias)
        ref = reference.segment_windows(logits, windows, (head, head), scaled, out, bias)
        assert (got[0] == ref[0]).mean() >= 0.999  # fp64 reference: flips only at fp32 near-ties
        np.testing.assert_allclose(got[1], ref[1], rtol=0, atol=2e-6)


def test_peaked_logits_bit_for_bit():
    # a trained model's kind: a label map of a few regions; the region's class at +4, the others at -4, plus noise
    rng = np.random.default_rng(5)
    head, grid, scaled, out, classes = 128, 8, (128, 170), (94, 125), 60
    windows = pipeline.sliding_windows(scaled[0], scaled[1], head, 106)
    yy, xx = np.mgrid[0 : scaled[0], 0 : scaled[1]]
    label = np.zeros(scaled, np.int64)
    for cls, (cy, cx, r) in zip(
        rng.choice(classes, 4, replace=False), [(40, 50, 30), (90, 120, 40), (20, 150, 25), (100, 30, 35)]
    ):
        label[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = cls
    logits = np.empty((len(windows), classes, grid, grid), np.float32)
    for k, w in enumerate(windows):
        crop = np.zeros((head, head), np.int64)
        crop[: w.y2 - w.y1, : w.x2 - w.x1] = label[w.y1 : w.y2, w.x1 : w.x2]
        cells = crop.reshape(grid, head // grid, grid, head // grid)
        share = np.stack([(cells == c).mean(axis=(1, 3)) for c in range(classes)])  # [C, grid, grid]
        logits[k] = 8 * share - 4 + rng.normal(0, 0.5, share.shape)
    bias = np.where(rng.random(classes) < 0.5, 0.1, 0.0).astype(np.float32)
    check_exact(logits, windows, (head, head), scaled, out, bias)


def test_ties_among_close_classes():
    rng = np.random.default_rng(9)
    head, grid, scaled, out, classes = 128, 8, (128, 170), (94, 125), 30
    windows = pipeline.sliding_windows(scaled[0], scaled[1], head, 106)
    logits = close_logits(rng, len(windows), classes, grid)
    logits[:, 1::2] = logits[:, 0::2]  # each odd class equals the even one below: the lower index wins
    got = check_exact(logits, windows, (head, head), scaled, out, None)
    assert (got[0] % 2 == 0).all()
    # distinct logits whose sigmoids tie (every map constant, class c at 0.01 + c 1e-9): the bounds of classes whose
    # logits differ must not separate values that are equal; the lowest index wins
    flat = np.broadcast_to(
        (0.01 + 1e-9 * np.arange(classes, dtype=np.float64)).astype(np.float32)[None, :, None, None], logits.shape
    )
    check_exact(np.ascontiguousarray(flat), windows, (head, head), scaled, out, None)


def test_identity_calibration_averages_raw_values():
    rng = np.random.default_rng(2)
    logits, windows, bias = case(rng, 6, 5, (40, 40), (40, 77), 30, (35, 70))
    got = ops.segment_windows(logits, windows, (40, 40), (40, 77), (35, 70), class_bias=None, sigmoid=False)
    want = unfused(logits, windows, (40, 40), (40, 77), (35, 70), None, sigmoid=False)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])


def test_a_small_change_of_one_class_is_seen():  # the bit-exact comparison can fail
    rng = np.random.default_rng(3)
    logits, windows, bias = case(rng, 8, 4, (32, 32), (32, 70), 24, (30, 66))
    base = ops.segment_windows(logits, windows, (32, 32), (32, 70), (30, 66), class_bias=bias)
    logits[1, 3] += 1e-3
    moved = ops.segment_windows(logits, windows, (32, 32), (32, 70), (30, 66), class_bias=bias)
    assert not np.array_equal(base[1], moved[1])


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(logits=np.zeros((2, 3, 4, 4), np.float64)), TypeError, "float32"),
        (dict(logits=np.zeros((3, 4, 4), np.float32)), ValueError, "4 dimensions"),
        (dict(windows=[(0, 8, 0, 8)]), ValueError, "window placements"),
        (dict(windows=[(0, 8, 0, 8), (0, 8, 9, 17)]), ValueError, "inside the rescaled image"),
        (dict(windows=[(0, 8, 0, 8), (0, 8, 8, 12)], scaled_size=(8, 16)), ValueError, "do not cover"),
        (dict(windows=[(0, 8, 0, 9), (0, 8, 7, 16)]), ValueError, "at most the head size"),
        (dict(head_size=(0, 8)), ValueError, "head_size"),
        (dict(output_size=(4,)), ValueError, "output_size"),
        (dict(windows="0,8,0,8"), TypeError, "sequence"),
        (dict(class_bias=np.zeros(4, np.float32)), ValueError, "one bias per class"),
        (dict(class_bias=np.array([0.1, np.nan, 0.0], np.float32)), ValueError, "finite|NaN"),
        (dict(stream=3), ValueError, "stream"),
    ],
)
def test_bad_inputs(kwargs, error, match):
    args = dict(
        logits=np.zeros((2, 3, 4, 4), np.float32),
        windows=[(0, 8, 0, 8), (0, 8, 8, 16)],
        head_size=(8, 8),
        scaled_size=(8, 16),
        output_size=(10, 20),
        class_bias=None,
    )
    args.update(kwargs)
    with pytest.raises(error, match=match):
        ops.segment_windows(**args)
