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
