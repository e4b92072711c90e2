"""The ``ordered`` candidate of CUDA ``segment_windows``' sigmoid path (issue 86 item 2: csrc/cuda/
segment_windows_ordered.cuh, branch and bound on the tiled kernel's fast tiles) and every other candidate on the three
kinds of logits the post-processing is judged on (checks/_postprocess_logits.py: i.i.d., dominated, the photo's label
map), at the Engine check's geometry scaled down by 8: every pixel's label is the CPU op's, with exact ties (a class
and a copy of it, or a copy except where the original's upper bound is the larger: the lower index wins) and near ties
(a copy 0.01 below: the original wins) among the classes it
evaluates first; and the classes it evaluates per tile (``kept``, counted by the emulated build) fall where a few
classes win (the tiled kernel's min/max rule keeps most of them there).
On the emulated build (CI) and on a GPU the same decisions are checked (the counters are zero on a GPU: checked only
emulated)."""

from __future__ import annotations

import numpy as np
import pytest
from cuda_support import EMULATED, cuda_testing, device, requires_cuda, to_host

from checks import _postprocess_logits as pl
from checks import postprocess_variants as pv
from zsseg_rt import ops

SCALE, CLASSES = 8, 64  # the photo's geometry at 1/8 (two windows of 4x4 logits, 64x85 -> 47x63); 8 chunks of classes
WINDOWS = pv._windows(SCALE)
HEAD, SCALED, OUT = pv._geometry(SCALE)
GRID = pv.GRID // SCALE


@pytest.fixture
def variants():
    testing = cuda_testing()
    before = testing.segment_windows_variant()
    yield testing, testing.segment_windows_variants()
    testing.segment_windows_variant(before)


def _run(testing, name: str, logits: np.ndarray, bias: np.ndarray):
    testing.segment_windows_variant(name)
    testing.segment_windows_counters(True)
    labels, scores = (to_host(a) for a in ops.segment_windows(device(logits), WINDOWS, HEAD, SCALED, OUT,
                                                             class_bias=device(bias)))  # fmt: skip
    return labels, scores, testing.segment_windows_counters(True)


def _with_twins(logits: np.ndarray, want_labels: np.ndarray) -> np.ndarray:
    """The three classes above 2 winning most pixels get a twin each at 0, 1, 2: the first an exact copy (a tie
    everywhere: the copy must win); the second a copy except in window 0's first logit column, there 1 above the
    original's largest logit in the original and 0.5 above it in the twin (the original's upper bound is the larger
    where a tile's footprint reaches that column, so ``ordered`` evaluates it first, and the two tie at every pixel whose taps miss the column: the twin
    must win those); the third a copy 0.01 below (a near tie, 1e-5 to 2.5e-3 in value: the original must win)."""
    wins = np.bincount(want_labels.ravel(), minlength=CLASSES)
    top = [int(c) + 3 for c in np.argsort(wins[3:])[::-1][:3]]  # classes 0-2 become the twins
    assert all(wins[c] > 0 for c in top)
    twinned = logits.copy()
    for which, original in enumerate(top):
        twin = which
        twinned[:, twin] = logits[:, original] - np.float32(0.01 if which == 2 else 0.0)
        if which == 1:
            highest = logits[:, original].max()
            twinned[0, original, :, 0] = highest + np.float32(1.0)
            twinned[0, twin, :, 0] = highest + np.float32(0.5)
    return twinned


@requires_cuda
@pytest.mark.cuda
@pytest.mark.parametrize("kind", pl.KINDS)
@pytest.mark.parametrize("twins", [False, True], ids=["plain", "ties"])
def test_every_candidate_gives_the_cpu_labels_on_each_kind_of_logits(variants, kind, twins):
    testing, names = variants
    assert "ordered" in names
    logits = pl.case_logits(kind, CLASSES, WINDOWS, GRID, SCALED, seed=86)
    bias = np.zeros(CLASSES, np.float32) if twins else pl.case_bias(CLASSES)
    want = ops.segment_windows(logits, WINDOWS, HEAD, SCALED, OUT, class_bias=bias)
    if twins:
        logits = _with_twins(logits, want[0])
        want = ops.segment_windows(logits, WINDOWS, HEAD, SCALED, OUT, class_bias=bias)
    for name in names:
        labels, scores, _ = _run(testing, name, logits, bias)
        np.testing.assert_allclose(scores, want[1], rtol=0, atol=2e-6, err_msg=name)
        assert np.array_equal(labels, want[0]), f"{name}: {int((labels != want[0]).sum())} labels differ"
    if twins:
        assert len(set(np.unique(want[0]))) >= 2


@requires_cuda
@pytest.mark.cuda
@pytest.mark.skipif(not EMULATED, reason="the emulated build counts the classes evaluated (zeros on a GPU)")
def test_ordered_evaluates_few_classes_where_few_win(variants):
    """Per tile, the classes evaluated (``kept``) by ``tiled`` (its min/max rule) and ``ordered`` (branch and
    bound), at C=171: on i.i.d. logits nearly all of them either way; on dominated and label-map logits ordered keeps
    a fraction (here at 1/8 scale, where a tile's footprint spans a quarter of a window: 8.0 and 25.0 of 171, tiled
    115 and 118); the labels are the same."""
    testing, _ = variants
    kept = {}
    for kind in pl.KINDS:
        logits = pl.case_logits(kind, pl.CLASSES, WINDOWS, GRID, SCALED)
        bias = pl.case_bias(pl.CLASSES)
        runs = {name: _run(testing, name, logits, bias) for name in ("tiled", "ordered")}
        assert np.array_equal(runs["tiled"][0], runs["ordered"][0]), kind
        assert np.array_equal(runs["tiled"][1], runs["ordered"][1]), kind  # the same bits
        for name, (_, _, counters) in runs.items():
            assert counters["tiles"] == counters["fast_tiles"] > 0, (kind, name, counters)  # the fast path ran
            kept[kind, name] = counters["kept"] / counters["tiles"]
    assert kept["iid", "tiled"] > 0.95 * pl.CLASSES and kept["iid", "ordered"] > 0.85 * pl.CLASSES
    for kind in ("dominated", "label_map"):
        assert kept[kind, "tiled"] > 0.5 * pl.CLASSES, kept  # the min/max rule keeps most (the tiles' edges)
        assert kept[kind, "ordered"] <= 0.2 * pl.CLASSES, kept
    assert kept["dominated", "ordered"] == 8.0  # one chunk: every other class below the tile's bound
