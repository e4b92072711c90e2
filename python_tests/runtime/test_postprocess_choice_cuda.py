"""The device pipeline's post-processing kernel chosen on the device (``Engine(postprocess_kernel=...)``, issue 78
item 4; ``runtime/device/postprocess_choice.py``) with the real CUDA kernels: on a GPU and, in CI, on the emulated
CUDA runtime. A scripted timer stands for the device's clock (no test depends on timing).

The pipeline is ``DevicePipeline`` over ``CudaMemory`` with a capturable stand-in model (CUDA ops only,
cuda_support.CudaOpsModel: 3 classes, one per colour channel), its frames captured into CUDA graphs; the Engine
test runs the tiny bundle's graphs by ONNX Runtime on host copies (any class count). The emulated build counts the
rows the ``columns_chain`` kernel chains (``_testing.segment_windows_counters``): which kernel ran, seen from
outside."""

from __future__ import annotations

import numpy as np
import pytest
from cuda_support import CudaOpsModel, RuntimeDriver, cuda_testing, requires_cuda, requires_emulation

from zsseg_rt import ops
from zsseg_rt.options import POSTPROCESS_KERNELS
from zsseg_rt.runtime import Engine
from zsseg_rt.runtime.device.cuda_graphs import DriverCudaGraphs, FrameGraphs
from zsseg_rt.runtime.device.cuda_memory import CudaMemory
from zsseg_rt.runtime.device.device_pipeline import DevicePipeline, Executor, OnnxRuntimeExecutor
from zsseg_rt.runtime.device.postprocess_choice import SCORE_TOL, PostprocessKernels

pytestmark = [pytest.mark.cuda, requires_cuda]


class HostGraphExecutor(Executor):
    """The bundle's graphs by ONNX Runtime on host copies of the device buffers (any class count)."""

    def __init__(self, backend, memory):
        self.inner, self.memory = OnnxRuntimeExecutor(backend), memory

    def run(self, role, inputs):
        host = {}
        for name, buffer in inputs.items():
            host[name] = np.empty(buffer.shape, buffer.dtype)
            self.memory.driver.copy_to_host(host[name], buffer.pointer, self.memory.stream)
        self.memory.driver.stream_synchronize(self.memory.stream)
        outputs = {}
        for name, value in self.inner.run(role, host).items():
            value = np.ascontiguousarray(value)
            outputs[name] = self.memory.empty(value.shape, value.dtype)
            self.memory.driver.copy_to_device(outputs[name].pointer, value, self.memory.stream)
        return outputs


class ScriptedTimer:
    """The device's clock in a test: launches as told, answers the scripted time of each kernel (us); records
    whether the memory was capturing and how many graphs were captured when it was asked."""

    clock = "scripted"

    def __init__(self, us, memory=None, graphs=None):
        self.us, self.memory, self.graphs, self.calls = dict(us), memory, graphs, []

    def time(self, name, launch, repeats):
        for _ in range(repeats):
            launch()
        captured = self.graphs.stats["captured"] if self.graphs is not None else None
        self.calls.append((name, getattr(self.memory, "capturing", False), captured))
        return self.us[name] * 1e-6


@pytest.fixture(scope="module")
def meta(tiny_bundle):
    return Engine(tiny_bundle, backend="onnxruntime").meta


def _frame(seed=1, shape=(60, 90, 3)):
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def _vocabulary():
    rng = np.random.default_rng(0)
    return rng.normal(0, 0.3, (3, 1)).astype(np.float32), rng.uniform(-0.05, 0.05, 3).astype(np.float32)


def _pipe(meta, kernel, graphs=False):
    memory = CudaMemory(RuntimeDriver())
    frame_graphs = FrameGraphs(DriverCudaGraphs(memory)) if graphs else None
    pipe = DevicePipeline(meta, CudaOpsModel(memory, meta.grid), 2, frame_graphs, postprocess_kernel=kernel)
    pipe.set_vocabulary(*_vocabulary())
    return pipe


def _close(pipe):
    pipe.memory.synchronize()
    if pipe.graphs is not None:
        pipe.graphs.clear(pipe)
    pipe.memory.close()


def _plan_kernels(pipe):
    return {plan.kernel for plan in pipe._post_plans._plans.values()}


def test_the_kernel_is_timed_on_the_first_frame_before_its_graph_is_captured(meta):
    """auto: every candidate checked (all pass: the same decisions) and timed on the first frame, eagerly, before
    any capture; the fastest by the clock is the plan's kernel, which the captured graph replays (its first replay
    checked against the eager frame)."""
    times = {
        "tiled": 30.0,
        "columns": 20.0,
        "columns_chain": 10.0,
        "warps": 40.0,
        "ordered": 50.0,
        "ordered_prebound": 60.0,
    }
    pipe = _pipe(meta, PostprocessKernels("auto", repeats=1, rounds=2), graphs=True)
    timer = pipe.kernels.timer = ScriptedTimer(times, pipe.memory, pipe.graphs)
    frame = _frame()
    try:
        first = pipe(frame)
        second = pipe(frame)
        assert [name for name, _, _ in timer.calls] == list(POSTPROCESS_KERNELS) * 2
        assert all(not capturing and captured == 0 for _, capturing, captured in timer.calls)
        stats = pipe.graphs.stats
        assert stats["captured"] == 1 and stats["replayed"] == 1 and stats["checked"] == 1
        assert _plan_kernels(pipe) == {"columns_chain"}
        (entry,) = pipe.kernels.report()["choices"]
        assert entry["kernel"] == "columns_chain" and entry["failed"] == {} and entry["us"] == times
        assert entry["classes"] == 3 and entry["output"] == [60, 90]
        np.testing.assert_array_equal(first[0], second[0])
    finally:
        _close(pipe)


def test_every_candidate_gives_the_same_labels(meta):
    """Each kernel pinned on its own pipeline, the same frames: the reference's labels, scores within the op's
    tolerance between kernels."""
    frames = [_frame(seed) for seed in (1, 2)] + [_frame(3, (70, 150, 3))]
    pipes = {name: _pipe(meta, name) for name in POSTPROCESS_KERNELS}
    try:
        want = [pipes["tiled"](frame) for frame in frames]
        for name, pipe in pipes.items():
            for frame, (labels, scores) in zip(frames, want):
                got_labels, got_scores = pipe(frame)
                np.testing.assert_array_equal(got_labels, labels, err_msg=name)
                np.testing.assert_allclose(got_scores, scores, rtol=0, atol=SCORE_TOL, err_msg=name)
            assert _plan_kernels(pipe) == {name}
        assert len({labels.tobytes() for labels, _ in want}) == 3  # the frames differ
    finally:
        for pipe in pipes.values():
            _close(pipe)


def test_a_candidate_that_fails_is_never_chosen(meta, monkeypatch):
    """columns raises when its plan is made and is the fastest by the clock: the next fastest that passed runs.
    Control: without the injected failure, columns is chosen."""
    real = ops.SegmentWindowsPlan

    def failing(*args, kernel=None, **kwargs):
        if kernel == "columns":
            raise RuntimeError("injected: the kernel cannot launch here")
        return real(*args, kernel=kernel, **kwargs)

    times = {
        "tiled": 30.0,
        "columns": 1.0,
        "columns_chain": 10.0,
        "warps": 40.0,
        "ordered": 50.0,
        "ordered_prebound": 60.0,
    }
    for inject, chosen in ((True, "columns_chain"), (False, "columns")):
        with monkeypatch.context() as patched:
            if inject:
                patched.setattr(ops, "SegmentWindowsPlan", failing)
            pipe = _pipe(meta, PostprocessKernels("auto", timer=ScriptedTimer(times), repeats=1, rounds=1))
            try:
                pipe(_frame())
                (entry,) = pipe.kernels.report()["choices"]
            finally:
                _close(pipe)
        assert entry["kernel"] == chosen and _plan_kernels(pipe) == {chosen}
        if inject:
            assert entry["failed"] == {"columns": "RuntimeError: injected: the kernel cannot launch here"}
            assert "columns" not in entry["us"]


def test_a_pinned_kernel_is_kept_without_timing_the_others(meta):
    timer = ScriptedTimer({name: 1.0 for name in POSTPROCESS_KERNELS})
    pipe = _pipe(meta, PostprocessKernels("columns", timer=timer), graphs=True)
    try:
        pipe(_frame())
        pipe(_frame())
        assert timer.calls == [] and _plan_kernels(pipe) == {"columns"}
        assert pipe.graphs.stats["replayed"] == 1
        assert not [name for _, name, _ in pipe.memory.transfers.entries if name.startswith("kernel_check")]
    finally:
        _close(pipe)


@requires_emulation
def test_the_plan_runs_its_own_kernel_whatever_the_process_wide_setting(meta):
    """The chosen kernel is the pipeline's, not the process's: with the testing hook set to columns_chain a pipeline
    pinned to tiled chains no row, and one pinned to columns_chain chains rows with the hook at tiled (also in its
    replayed graph). Control: a plan naming no kernel follows the hook (what every plan did before)."""
    testing = cuda_testing()
    before = testing.segment_windows_variant()
    frame = _frame()
    pipes = {}
    try:
        for pinned, hook in (("tiled", "columns_chain"), ("columns_chain", "tiled")):
            testing.segment_windows_variant(hook)
            pipe = pipes[pinned] = _pipe(meta, pinned, graphs=True)
            pipe(frame)  # eager, captured, first replay checked
            testing.segment_windows_counters(reset=True)
            pipe(frame)  # replayed
            chained = testing.segment_windows_counters()["chained_rows"]
            assert (chained > 0) == (pinned == "columns_chain"), (pinned, chained)
        testing.segment_windows_variant("columns_chain")
        logits = np.random.default_rng(0).standard_normal((1, 3, 4, 4)).astype(np.float32)
        out = (testing.DeviceMemory(np.zeros((64, 64), np.int32)), testing.DeviceMemory(np.zeros((64, 64), np.float32)))
        plan = ops.SegmentWindowsPlan(testing.DeviceMemory(logits), [(0, 64, 0, 64)], (64, 64), (64, 64), (64, 64),
                                      out=out, stream=0)  # fmt: skip
        assert plan.kernel is None
        testing.segment_windows_counters(reset=True)
        plan.launch()
        testing.device_synchronize()
        assert testing.segment_windows_counters()["chained_rows"] > 0
    finally:
        testing.segment_windows_variant(before)
        for pipe in pipes.values():
            _close(pipe)


def test_the_engine_chooses_again_for_a_new_class_count_and_reports_it(tiny_bundle):
    """The Engine's device pipeline: a vocabulary of another size is chosen again on its first frame; the choices and
    their times are in ``Engine.device_stats``."""
    engine = Engine(tiny_bundle, classes=["person", "cat", "sofa"], backend="onnxruntime")
    memory = CudaMemory(RuntimeDriver())
    timer = ScriptedTimer(
        {"tiled": 3.0, "columns": 2.0, "columns_chain": 1.0, "warps": 5.0, "ordered": 6.0, "ordered_prebound": 7.0}
    )
    kernels = PostprocessKernels("auto", timer=timer, repeats=1, rounds=1)
    engine.pipeline.device = DevicePipeline(engine.meta, HostGraphExecutor(engine.backend, memory), 4,
                                            postprocess_kernel=kernels)  # fmt: skip
    frame = _frame(shape=(50, 60, 3))
    try:
        engine(frame)
        engine(frame)
        assert kernels.timed == 1
        timer.us["columns_chain"] = 9.0
        engine.set_classes(["person", "cat", "sofa", "tv", "bottle"])
        engine(frame)
        assert kernels.timed == 2
        stats = engine.device_stats
        assert stats["cuda_graphs"] is None
        report = stats["postprocess_kernel"]
        assert report["setting"] == "auto" and report["candidates"] == list(POSTPROCESS_KERNELS)
        assert [(e["classes"], e["kernel"], e["how"]) for e in report["choices"]] == [
            (3, "columns_chain", "timed"),
            (5, "columns", "timed"),
        ]
        assert report["choices"][1]["us"] == {
            "tiled": 3.0,
            "columns": 2.0,
            "columns_chain": 9.0,
            "warps": 5.0,
            "ordered": 6.0,
            "ordered_prebound": 7.0,
        }
    finally:
        memory.synchronize()
        memory.close()
