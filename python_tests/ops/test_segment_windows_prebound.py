"""The ``ordered_prebound`` candidate of CUDA ``segment_windows``' sigmoid path (issue 86 item 2, "the fixed per-call
cost cut": csrc/cuda/segment_windows_prebound.cuh): a first launch writes per logit the min and max of its 2x2 block,
and each tile's bound pass reads those blocks instead of every logit of its footprint. On the three kinds of logits
the post-processing is judged on (checks/_postprocess_logits.py) it gives ``ordered``'s labels and scores bit for bit
and keeps the same classes (the emulated build's counters), with fewer global loads in the tiles' bound passes
(``bound_loads``); a prepared plan (the Engine's way: its scratch allocated once, by the plan) gives the op's results
launch after launch and inside a captured graph. The control that fails when the bound is wrong (blocks of one
logit) is the emulated C++ test SegmentWindowsEmulated.PreboundControlWithTooTightBoundsFails (the pruning mode is
not reachable from Python)."""

from __future__ import annotations

import numpy as np
import pytest
from cuda_support import EMULATED, Stream, cuda_testing, device, requires_cuda, to_host

from checks import _postprocess_logits as pl
from checks import postprocess_variants as pv
from zsseg_rt import ops

SCALE = 8  # the photo's geometry at 1/8, as test_segment_windows_ordered.py
WINDOWS = pv._windows(SCALE)
HEAD, SCALED, OUT = pv._geometry(SCALE)
GRID = pv.GRID // SCALE


@pytest.fixture
def stream():
    made = Stream()
    yield made
    made.close()


@pytest.fixture
def testing():
    t = cuda_testing()
    before = t.segment_windows_variant()
    yield t
    t.segment_windows_variant(before)


def _op(testing, name: str, logits: np.ndarray, bias: np.ndarray):
    testing.segment_windows_variant(name)
    testing.segment_windows_counters(True)
    labels, scores = (to_host(a) for a in ops.segment_windows(device(logits), WINDOWS, HEAD, SCALED, OUT,
                                                             class_bias=device(bias)))  # fmt: skip
    return labels, scores, testing.segment_windows_counters(True)


@requires_cuda
@pytest.mark.cuda
@pytest.mark.parametrize("kind", pl.KINDS)
def test_prebound_gives_ordereds_bits_and_keeps_the_same_classes(testing, kind):
    assert "ordered_prebound" in ops.segment_windows_kernels()
    logits = pl.case_logits(kind, pl.CLASSES, WINDOWS, GRID, SCALED, seed=86)
    bias = pl.case_bias(pl.CLASSES)
    want = ops.segment_windows(logits, WINDOWS, HEAD, SCALED, OUT, class_bias=bias)
    ordered = _op(testing, "ordered", logits, bias)
    prebound = _op(testing, "ordered_prebound", logits, bias)
    assert np.array_equal(prebound[0], want[0]), f"{int((prebound[0] != want[0]).sum())} labels differ from the CPU's"
    np.testing.assert_allclose(prebound[1], want[1], rtol=0, atol=2e-6)
    assert np.array_equal(prebound[0], ordered[0]) and np.array_equal(prebound[1], ordered[1])  # the same bits
    if EMULATED:
        a, b = ordered[2], prebound[2]
        assert (a["tiles"], a["kept"], a["fast_tiles"]) == (b["tiles"], b["kept"], b["fast_tiles"]) and b["tiles"] > 0
        assert a["prebound_loads"] == 0 and b["prebound_loads"] > 0
        assert 0 < 2 * b["bound_loads"] < a["bound_loads"], (a, b)


# Other logit grids and placements (the review of 21e18ae): (name, grid rows, grid columns, windows, scaled, output,
# fp16). "pair": the photo's two windows side by side at 1/8; "four": four windows at odd offsets (rows 11, columns
# 21), whose footprints' slot rectangles start at odd logit rows and columns and meet up to four windows.
PAIR, PAIR_SCALED, PAIR_OUT = [(0, 64, 0, 64), (0, 64, 21, 85)], (64, 85), (47, 63)
FOUR, FOUR_SCALED, FOUR_OUT = PAIR + [(11, 75, 0, 64), (11, 75, 21, 85)], (75, 85), (55, 63)
GRIDS = [
    ("grid2", 2, 2, PAIR, PAIR_SCALED, PAIR_OUT, False),
    ("grid3", 3, 3, PAIR, PAIR_SCALED, PAIR_OUT, False),
    ("grid5", 5, 5, PAIR, PAIR_SCALED, PAIR_OUT, False),
    ("grid3x5", 3, 5, PAIR, PAIR_SCALED, PAIR_OUT, False),
    ("grid5x3-fp16", 5, 3, PAIR, PAIR_SCALED, PAIR_OUT, True),
    ("grid5-four-odd-offsets", 5, 5, FOUR, FOUR_SCALED, FOUR_OUT, False),
    ("grid3-four-odd-offsets-fp16", 3, 3, FOUR, FOUR_SCALED, FOUR_OUT, True),
]


def _grid_logits(kind: str, count: int, classes: int, rows: int, cols: int, seed: int) -> np.ndarray:
    """``iid`` (N(0, 3)) or ``dominated`` (a class at +3 per 2 x 2 cells, the rest in [-9, -4]) logits, or
    ``wild``: dominated with a NaN, a +inf and a 1e31 (tiles that are not tame)."""
    rng = np.random.default_rng(seed)
    if kind == "iid":
        return (rng.standard_normal((count, classes, rows, cols)) * 3).astype(np.float32)
    logits = rng.uniform(-9, -4, (count, classes, rows, cols)).astype(np.float32)
    for k in range(count):
        for y in range(0, rows, 2):
            for x in range(0, cols, 2):
                logits[k, rng.integers(classes), y : y + 2, x : x + 2] = 3.0
    if kind == "wild":
        logits[0, 2, rows - 1, 0], logits[1, 4, 0, cols - 1], logits[-1, 6, rows // 2, cols // 2] = np.nan, np.inf, 1e31
    return logits


def _op_at(testing, name: str, logits, windows, scaled, out, bias):
    testing.segment_windows_variant(name)
    testing.segment_windows_counters(True)
    head = (64, 64)
    labels, scores = (to_host(a) for a in ops.segment_windows(device(logits), windows, head, scaled, out,
                                                             class_bias=device(bias)))  # fmt: skip
    return labels, scores, testing.segment_windows_counters(True)


@requires_cuda
@pytest.mark.cuda
@pytest.mark.parametrize("kind", ["iid", "dominated", "wild"])
@pytest.mark.parametrize("case", GRIDS, ids=[g[0] for g in GRIDS])
def test_prebound_gives_ordereds_bits_and_classes_on_other_grids_and_offsets(testing, case, kind):
    """Grids 2, 3, 5, non-square ones, fp16 and windows at odd offsets: ``ordered``'s bits, and (emulated) the same
    classes kept and the same tiles tame: a bound too loose or too tight changes those counts where the labels may
    survive. (The control that must fail: the emulated C++ test PreboundGivesOrderedsResultsOnOtherGridsAndOffsets
    runs each such case with blocks of one logit.)"""
    _, rows, cols, windows, scaled, out, half = case
    classes = 24
    logits = _grid_logits(kind, len(windows), classes, rows, cols, seed=rows * 10 + cols)
    if half:
        with np.errstate(over="ignore"):  # wild: 1e31 is +inf in fp16 (not tame either way)
            logits = logits.astype(np.float16)
    bias = pl.case_bias(classes)
    want = ops.segment_windows(logits.astype(np.float32), windows, (64, 64), scaled, out, class_bias=bias)
    ordered = _op_at(testing, "ordered", logits, windows, scaled, out, bias)
    prebound = _op_at(testing, "ordered_prebound", logits, windows, scaled, out, bias)
    assert np.array_equal(prebound[0], want[0]), f"{int((prebound[0] != want[0]).sum())} labels differ from the CPU's"
    np.testing.assert_allclose(prebound[1], want[1], rtol=0, atol=2e-6)
    assert np.array_equal(prebound[0], ordered[0]) and np.array_equal(
        prebound[1].view(np.uint32), ordered[1].view(np.uint32)
    )
    if EMULATED:
        a, b = ordered[2], prebound[2]
        assert b["tiles"] > 0 and (a["tiles"], a["kept"], a["fast_tiles"]) == (b["tiles"], b["kept"], b["fast_tiles"])
        assert b["prebound_loads"] == len(windows) * classes * (2 * rows - 1) * (2 * cols - 1)
        assert b["bound_loads"] <= a["bound_loads"]


@requires_cuda
@pytest.mark.cuda
def test_a_prebound_plan_gives_the_ops_results_launch_after_launch_and_in_a_graph(stream):
    logits = pl.case_logits("label_map", pl.CLASSES, WINDOWS, GRID, SCALED, seed=3)
    bias = pl.case_bias(pl.CLASSES)
    want = ops.segment_windows(logits, WINDOWS, HEAD, SCALED, OUT, class_bias=bias)
    t = cuda_testing()
    d_logits, d_bias = device(logits), device(bias)
    results = (device(np.zeros(OUT, np.int32)), device(np.zeros(OUT, np.float32)))
    plan = ops.SegmentWindowsPlan(d_logits, WINDOWS, HEAD, SCALED, OUT, out=results, class_bias=d_bias,
                                  stream=int(stream), kernel="ordered_prebound")  # fmt: skip
    assert plan.kernel == "ordered_prebound"
    for _ in range(2):
        plan.launch()
        t.stream_synchronize(int(stream))
        assert np.array_equal(to_host(results[0]), want[0])
        np.testing.assert_allclose(to_host(results[1]), want[1], rtol=0, atol=2e-6)
    zeros = (device(np.zeros(OUT, np.int32)), device(np.zeros(OUT, np.float32)))
    captured = ops.SegmentWindowsPlan(d_logits, WINDOWS, HEAD, SCALED, OUT, out=zeros, class_bias=d_bias,
                                      stream=int(stream), kernel="ordered_prebound")  # fmt: skip
    t.begin_capture(int(stream))
    captured.launch()  # both launches captured: no allocation here (the plan made its scratch)
    graph = t.end_capture(int(stream), keep=True)
    executable = t.graph_instantiate(graph)
    try:
        assert to_host(zeros[0]).max() == 0  # captured, not run
        t.graph_launch(executable, int(stream))
        t.stream_synchronize(int(stream))
        assert np.array_equal(to_host(zeros[0]), want[0])
        np.testing.assert_allclose(to_host(zeros[1]), want[1], rtol=0, atol=2e-6)
    finally:
        t.graph_exec_destroy(executable)
        t.graph_destroy(graph)
