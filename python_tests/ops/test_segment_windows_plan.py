"""``ops.SegmentWindowsPlan``: the prepared launch of the device pipeline's post-processing. Its results are the op's
(on the CPU and on CUDA, launch after launch, reading the arrays' current contents), it refuses what the op refuses
plus what a plan cannot take (no ``out``, a ``DeviceArray``), a CUDA bias is checked once when the plan is made
unless the caller checked it, a launch inside a stream capture is captured, and a plan that goes while its launch is
still pending keeps its arrays until the stream got there (AddressSanitizer on the emulated build sees a use after
free otherwise)."""

from __future__ import annotations

import gc

import numpy as np
import pytest
from cuda_support import Stream, cuda_testing, device, held, requires_cuda, requires_emulation, to_host

from zsseg_rt import ops, pipeline


@pytest.fixture
def stream():
    made = Stream()
    yield made
    made.close()


def _case(seed: int, classes: int = 5):
    rng = np.random.default_rng(seed)
    head, scaled, out = (8, 8), (8, 13), (11, 17)
    windows = pipeline.sliding_windows(scaled[0], scaled[1], head[0], 5)
    logits = rng.normal(0, 2, (len(windows), classes, 4, 4)).astype(np.float32)
    bias = rng.uniform(-0.05, 0.05, classes).astype(np.float32)
    return logits, [tuple(w) for w in windows], head, scaled, out, bias


def test_a_plan_computes_what_the_op_computes_launch_after_launch():
    logits, windows, head, scaled, out, bias = _case(0)
    results = (np.empty(out, np.int32), np.empty(out, np.float32))
    plan = ops.SegmentWindowsPlan(logits, windows, head, scaled, out, out=results, class_bias=bias)
    for seed in (1, 2):  # new contents in the same arrays: the plan reads them at each launch
        logits[...] = _case(seed)[0]
        plan.launch()
        expected = ops.segment_windows(logits, windows, head, scaled, out, class_bias=bias)
        np.testing.assert_array_equal(results[0], expected[0])
        np.testing.assert_array_equal(results[1], expected[1])
    assert plan.out[0] is results[0] and len(set(np.unique(results[0]))) > 1  # several classes won: not trivial


def test_a_plan_refuses_what_the_op_refuses_and_what_it_cannot_take():
    logits, windows, head, scaled, out, bias = _case(0)
    results = (np.empty(out, np.int32), np.empty(out, np.float32))
    with pytest.raises(ValueError, match=r"windows\[0\] = .* must lie inside"):
        ops.SegmentWindowsPlan(logits, [(0, 99, 0, 8)] + windows[1:], head, scaled, out, out=results)
    with pytest.raises(TypeError, match="'out' must be a tuple"):
        ops.SegmentWindowsPlan(logits, windows, head, scaled, out, out=None)
    with pytest.raises(ValueError, match="must hold both arrays"):
        ops.SegmentWindowsPlan(logits, windows, head, scaled, out, out=(results[0], None))
    bad = bias.copy()
    bad[2] = np.nan  # a host bias is always checked, whatever the caller says
    with pytest.raises(ValueError, match="class_bias' must be finite, got NaN at class 2"):
        ops.SegmentWindowsPlan(logits, windows, head, scaled, out, out=results, class_bias=bad, bias_checked=True)
    plan = ops.SegmentWindowsPlan(logits, windows, head, scaled, out, out=results, class_bias=bias)
    with pytest.raises(ValueError, match="stream must be 0 for a plan on the CPU"):
        plan.launch(7)
    with pytest.raises(ValueError, match="or -1 for the plan's own stream"):
        plan.launch(-2)


@requires_cuda
@pytest.mark.cuda
def test_a_cuda_plan_equals_the_op_and_checks_an_unchecked_bias_once(stream):
    logits, windows, head, scaled, out, bias = _case(3)
    d_logits, d_bias = device(logits), device(bias)
    results = (device(np.zeros(out, np.int32)), device(np.zeros(out, np.float32)))
    plan = ops.SegmentWindowsPlan(d_logits, windows, head, scaled, out, out=results, class_bias=d_bias,
                                  stream=int(stream))  # fmt: skip
    plan.launch()
    cuda_testing().stream_synchronize(int(stream))
    expected = ops.segment_windows(d_logits, windows, head, scaled, out, class_bias=d_bias, stream=int(stream))
    np.testing.assert_array_equal(to_host(results[0]), to_host(expected[0]))  # the same kernel on the same data
    np.testing.assert_array_equal(to_host(results[1]), to_host(expected[1]))
    bad = bias.copy()
    bad[4] = np.inf
    with pytest.raises(ValueError, match="class_bias' must be finite, got inf at class 4"):  # read back at creation
        ops.SegmentWindowsPlan(d_logits, windows, head, scaled, out, out=results, class_bias=device(bad),
                               stream=int(stream))  # fmt: skip
    # the caller says it checked the bias: not read back (the pipeline checks it on the host in set_vocabulary)
    ops.SegmentWindowsPlan(d_logits, windows, head, scaled, out, out=results, class_bias=device(bad),
                           stream=int(stream), bias_checked=True)  # fmt: skip
    d_out = ops.upsample(d_logits, head, stream=int(stream))  # a DeviceArray: ordered by its own events
    with pytest.raises(TypeError, match="not a DeviceArray"):
        ops.SegmentWindowsPlan(d_out, windows, head, scaled, out, out=results, stream=int(stream))


@requires_cuda
@pytest.mark.cuda
def test_a_launch_during_a_capture_is_replayed_by_the_graph(stream):
    t = cuda_testing()
    logits, windows, head, scaled, out, bias = _case(4)
    d_logits = device(logits)
    results = (device(np.zeros(out, np.int32)), device(np.zeros(out, np.float32)))
    plan = ops.SegmentWindowsPlan(d_logits, windows, head, scaled, out, out=results, class_bias=device(bias),
                                  stream=int(stream))  # fmt: skip
    t.begin_capture(int(stream))
    plan.launch()
    graph = t.end_capture(int(stream), keep=True)
    executable = t.graph_instantiate(graph)
    try:
        assert to_host(results[0]).max() == 0  # captured, not run
        t.graph_launch(executable, int(stream))
        t.stream_synchronize(int(stream))
        expected = ops.segment_windows(d_logits, windows, head, scaled, out, class_bias=device(bias),
                                       stream=int(stream))  # fmt: skip
        np.testing.assert_array_equal(to_host(results[0]), to_host(expected[0]))
        assert to_host(results[0]).max() > 0
    finally:
        t.graph_exec_destroy(executable)
        t.graph_destroy(graph)


@requires_emulation
@pytest.mark.cuda
def test_a_plan_that_goes_before_its_launch_ran_keeps_its_arrays_until_then(stream):
    logits, windows, head, scaled, out, bias = _case(5)
    expected = ops.segment_windows(device(logits), windows, head, scaled, out, class_bias=device(bias),
                                   stream=int(stream))  # fmt: skip
    expected = to_host(expected[0]), to_host(expected[1])
    scores_host = np.zeros(out, np.float32)
    results = (device(np.zeros(out, np.int32)), device(np.zeros(out, np.float32)))
    with held(int(stream)):
        # pool memory: freed without waiting for the device (a cudaMalloc'd array's free would finish the held work)
        plan = ops.SegmentWindowsPlan(device(logits, "pool"), windows, head, scaled, out, out=results,
                                      class_bias=device(bias, "pool"), stream=int(stream))  # fmt: skip
        plan.launch()
        del plan  # the logits and bias arrays had no other owner: kept until the held stream reaches the launch
        gc.collect()
    cuda_testing().stream_synchronize(int(stream))
    scores_host[...] = to_host(results[1])
    np.testing.assert_array_equal(to_host(results[0]), expected[0])
    np.testing.assert_array_equal(scores_host, expected[1])
