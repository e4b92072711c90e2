"""segment_windows(softmax=True): the training-free family's fused exact post-processing, against the unfused
NumPy composition it replaced (window_scores -> merge_windows -> softmax_segment_dense), the fp64 reference and
torch (the SCLIP order written with F.interpolate / softmax / argmax); area filter, bias, background threshold,
logit scale, NaN/inf, ties; bad arguments raise clear errors."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from slide_oracle import torch_slide_logits

from zsseg_rt import ops, pipeline
from zsseg_rt.ops import reference
from zsseg_rt.pipeline import postprocess as post


def unfused(logits, windows, head, scaled, out, scale=1.0, bias=None, area=None, bg=None):
    """What the Postprocessor computed before the fused softmax: a [C, H', W'] merge and a [C, H, W] softmax."""
    parts = [
        post.window_scores(logits[i : i + 1], head, head, "softmax")[:, :, : w.y2 - w.y1, : w.x2 - w.x1]
        for i, w in enumerate(windows)
    ]
    merged = post.merge_windows(parts, windows, scaled)
    labels, scores = post.softmax_segment_dense(
        merged, out, logit_scale=scale, class_bias=bias, area_threshold=area, background_threshold=bg
    )
    return labels[0], scores[0]


def torch_sclip(logits, windows, head, scaled, out, scale=1.0, bias=None, area=None):
    """The official order in torch fp64 (SCLIP forward_slide + postprocess_result, with the area filter)."""
    torch = pytest.importorskip("torch")  # the runtime-only CI job has no torch: the comparisons with it skip
    F = torch.nn.functional
    merged = torch_slide_logits(logits, windows, head, scaled)
    seg = F.interpolate((merged * scale)[None], size=out, mode="bilinear", align_corners=False)[0]
    probs = seg.softmax(0)
    if area is not None:
        area_c = torch.bincount(probs.argmax(0).flatten(), minlength=len(probs))[1:].double()
        drop = ~(area_c > area * area_c.sum())
        probs[1:][drop] = 0
    if bias is not None:
        probs = probs - torch.from_numpy(bias.astype(np.float64))[:, None, None]
    return probs.argmax(0).numpy(), probs.max(0).values.numpy()


def make_case(rng, classes, grid, head, scaled, stride, spread=3.0):
    windows = pipeline.sliding_windows(scaled[0], scaled[1], head, stride)
    logits = rng.normal(0, spread, (len(windows), classes, grid, grid)).astype(np.float32)
    return logits, windows


@settings(max_examples=50, deadline=None)
@given(
    classes=st.sampled_from([1, 2, 5, 17, 64]),
    grid=st.integers(1, 6),
    head=st.integers(4, 32),
    extra_h=st.integers(0, 50),
    extra_w=st.integers(0, 50),
    pad=st.integers(0, 2),
    out_h=st.integers(1, 70),
    out_w=st.integers(1, 70),
    scale=st.sampled_from([1.0, 0.5, 40.0]),
    with_bias=st.booleans(),
    area=st.sampled_from([None, 0.0, 0.1, 0.3]),
    bg=st.sampled_from([None, 0.3]),
    seed=st.integers(0, 2**31 - 1),
)
def test_equals_the_unfused_softmax_path(
    classes, grid, head, extra_h, extra_w, pad, out_h, out_w, scale, with_bias, area, bg, seed
):
    rng = np.random.default_rng(seed)
    scaled = (max(1, head + extra_h - pad * head // 3), max(1, head + extra_w - pad * head // 3))
    logits, windows = make_case(rng, classes, grid, head, scaled, max(1, head * 5 // 6))
    bias = rng.uniform(0, 0.2, classes).astype(np.float32) if with_bias else None
    got = post.segment_windows_softmax(logits, windows, (head, head), scaled, (out_h, out_w), scale, bias, bg, area)
    want = unfused(logits, windows, (head, head), scaled, (out_h, out_w), scale, bias, area, bg)
    # The merge and resize are the same arithmetic; only exp (libm vs NumPy's SIMD exp) and the softmax sum
    # may differ by an ulp or two: labels can differ only where two probabilities tie within that.
    np.testing.assert_allclose(got[1], want[1], rtol=0, atol=2e-6)
    differ = got[0] != want[0]
    if differ.any():
        assert differ.mean() < 0.01, differ.mean()
        probs_gap = np.abs(got[1][differ] - want[1][differ])
        assert (probs_gap <= 2e-6).all()


@pytest.mark.parametrize("area", [None, 0.15])
@pytest.mark.parametrize("with_bias", [False, True])
def test_matches_torch_official_order(area, with_bias):
    rng = np.random.default_rng(7)
    head, scaled, out = (24, 24), (30, 61), (45, 90)
    logits, windows = make_case(rng, 9, 5, head[0], scaled, 16)
    bias = rng.uniform(0, 0.05, 9).astype(np.float32) if with_bias else None
    labels, scores = ops.segment_windows(
        logits,
        [tuple(w) for w in windows],
        head,
        scaled,
        out,
        class_bias=bias,
        softmax=True,
        logit_scale=2.0,
        class_drop=None
        if area is None
        else post._area_drop(
            ops.segment_windows(logits, [tuple(w) for w in windows], head, scaled, out, softmax=True, logit_scale=2.0)[
                0
            ],
            9,
            area,
        ),
    )
    ref_labels, ref_scores = torch_sclip(logits, windows, head, scaled, out, 2.0, bias, area)
    assert (labels == ref_labels).mean() > 0.999
    np.testing.assert_allclose(scores, ref_scores, rtol=0, atol=1e-5)
    fp64_labels, fp64_scores = reference.segment_windows(
        logits, windows, head, scaled, out, class_bias=bias, softmax=True, logit_scale=2.0,
        class_drop=None if area is None else post._area_drop(ref_labels, 9, area),
    )  # fmt: skip
    assert (labels == fp64_labels).mean() > 0.999
    np.testing.assert_allclose(scores, fp64_scores, rtol=0, atol=1e-5)


def test_large_vocabulary_windows_both_ways():
    rng = np.random.default_rng(3)
    head, scaled, out = (16, 16), (37, 29), (50, 41)
    logits, windows = make_case(rng, 1000, 4, head[0], scaled, 10, spread=1.0)
    assert len({w.y1 for w in windows}) > 1 and len({w.x1 for w in windows}) > 1
    got = post.segment_windows_softmax(logits, windows, head, scaled, out, 1.0, None, None, None)
    want = unfused(logits, windows, head, scaled, out)
    assert (got[0] == want[0]).mean() > 0.999
    np.testing.assert_allclose(got[1], want[1], rtol=0, atol=1e-6)


def test_ties_give_the_lowest_index_and_single_class_is_probability_one():
    rng = np.random.default_rng(5)
    logits, windows = make_case(rng, 6, 3, 8, (8, 13), 5)
    logits[:, 3] = logits[:, 1]  # class 3 ties class 1 everywhere
    labels, _ = ops.segment_windows(logits, [tuple(w) for w in windows], (8, 8), (8, 13), (9, 14), softmax=True)
    assert (labels != 3).all() and (labels == 1).any()
    one, ones = ops.segment_windows(
        np.ascontiguousarray(logits[:, :1]), [tuple(w) for w in windows], (8, 8), (8, 13), (9, 14), softmax=True
    )
    assert (one == 0).all() and np.allclose(ones, 1.0, atol=1e-7)


def test_nan_and_infinite_logits_give_label_zero_and_nan_like_torch():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = np.random.default_rng(2)
    logits, windows = make_case(rng, 4, 4, 8, (8, 8), 8)
    logits[0, 2, 0, 0] = np.nan
    logits[0, 1, 3, 3] = np.inf
    labels, scores = ops.segment_windows(logits, [tuple(w) for w in windows], (8, 8), (8, 8), (11, 13), softmax=True)
    seg = F.interpolate(torch.from_numpy(logits).double(), size=(8, 8), mode="bilinear", align_corners=False)
    seg = F.interpolate(seg, size=(11, 13), mode="bilinear", align_corners=False)[0]
    probs = seg.softmax(0)
    bad = torch.isnan(probs).any(0).numpy()
    assert bad[0, 0] and bad[-1, -1] and not bad.all()
    np.testing.assert_array_equal(np.isnan(scores), bad)
    np.testing.assert_array_equal(labels[bad], probs.argmax(0).numpy()[bad])  # torch: all-NaN -> 0
    np.testing.assert_array_equal(labels[bad], 0)
    np.testing.assert_array_equal(labels[~bad], probs.argmax(0).numpy()[~bad])
    # softmax_segment sends non-finite logits to the dense NumPy path: the same labels and NaN pixels
    merged = F.interpolate(torch.from_numpy(logits), size=(8, 8), mode="bilinear", align_corners=False).numpy()
    dense_labels, dense_scores = post.softmax_segment(merged, (11, 13))
    np.testing.assert_array_equal(dense_labels[0], labels)
    np.testing.assert_array_equal(np.isnan(dense_scores[0]), bad)


def test_area_filter_and_background_threshold_change_results():  # a broken filter/threshold fails here
    rng = np.random.default_rng(11)
    logits, windows = make_case(rng, 8, 4, 16, (16, 40), 12)
    args = (logits, windows, (16, 16), (16, 40), (20, 50), 1.0, None)
    plain = post.segment_windows_softmax(*args, None, None)
    filtered = post.segment_windows_softmax(*args, None, 0.3)
    assert (plain[0] != filtered[0]).any()
    np.testing.assert_array_equal(filtered[0], unfused(logits, windows, (16, 16), (16, 40), (20, 50), area=0.3)[0])
    thr = post.segment_windows_softmax(*args, 0.4, None)
    np.testing.assert_array_equal(thr[0], np.where(plain[1] < 0.4, 0, plain[0]))


def test_peak_memory_has_no_class_map():
    import tracemalloc

    rng = np.random.default_rng(0)
    logits, windows = make_case(rng, 150, 8, 64, (64, 300), 40)
    tracemalloc.start()
    post.segment_windows_softmax(logits, windows, (64, 64), (64, 300), (200, 900), 1.0, None, None, 0.1)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    class_map = 150 * 200 * 900 * 4
    assert peak < class_map / 20, (peak, class_map)  # the outputs + a bincount, not [C, H, W]


def test_numpy_flags_are_accepted():  # review finding: a list of np.bool_ was refused as "got bool"
    rng = np.random.default_rng(4)
    logits, windows = make_case(rng, 3, 4, 8, (8, 8), 8)
    args = (logits, [tuple(w) for w in windows], (8, 8), (8, 8), (9, 9))
    want = ops.segment_windows(*args, softmax=True, class_drop=[False, True, False])
    assert (want[0] != 1).all()
    for flags in ([np.False_, np.True_, np.False_], np.array([0, 1, 0], dtype=bool), (0, 1, 0)):
        got = ops.segment_windows(*args, softmax=True, class_drop=flags)
        np.testing.assert_array_equal(got[0], want[0])


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(softmax=True, sigmoid=True), ValueError, "exclusive"),
        (dict(softmax=True, logit_scale=float("nan")), ValueError, "logit_scale"),
        (dict(logit_scale=2.0), ValueError, "softmax=True only"),
        (dict(class_drop=[False] * 3), ValueError, "softmax=True only"),
        (dict(softmax=True, class_drop=[False] * 2), ValueError, "class_drop has 2 entries"),
        (dict(softmax=True, class_drop="abc"), TypeError, "class_drop"),
        (dict(softmax=True, class_drop=[False, "x", True]), TypeError, r"class_drop\[1\]"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    logits = np.zeros((1, 3, 4, 4), np.float32)
    with pytest.raises(error, match=match):
        ops.segment_windows(logits, [(0, 8, 0, 8)], (8, 8), (8, 8), (5, 5), **kwargs)
