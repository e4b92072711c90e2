"""CUDA graphs of the device pipeline (``FrameGraphs`` + ``DriverCudaGraphs``, the TensorRT path's opt-in) over the
CUDA runtime: each kind of frame is captured once and replayed. Runs on a real GPU and, in CI, on the emulated CUDA
runtime, whose stream capture records a graph that runs ONLY when launched (issue 36): a frame not copied into the
graph's frame buffer before a replay, an address baked in at capture that the pipeline later replaces, or results
read before the replay finished show as wrong labels here.

The bundle's graphs are replaced by a stand-in model made of CUDA ops only (capturable, unlike a host round trip):
the image encoder resizes the image to the patch grid (``ops.upsample``), the head resizes that again and subtracts
the text embedding's first column per class (so the vocabulary matters); 3 classes, one per colour channel.
"""

import numpy as np
import pytest
from cuda_support import (
    CudaOpsModel,
    RuntimeDriver,
    cuda_emulation,
    cuda_testing,
    held,
    requires_cuda,
    requires_emulation,
)

from zsseg_rt.runtime import Engine
from zsseg_rt.runtime.device.cuda_graphs import DriverCudaGraphs, FrameGraphs
from zsseg_rt.runtime.device.cuda_memory import CudaMemory
from zsseg_rt.runtime.device.device_pipeline import DevicePipeline

pytestmark = [pytest.mark.cuda, requires_cuda]


@pytest.fixture(scope="module")
def meta(tiny_bundle):
    return Engine(tiny_bundle, backend="onnxruntime").meta


def _pipelines(meta, zero_copy):
    made = []
    for graphs in (True, False):
        memory = CudaMemory(RuntimeDriver(), zero_copy=zero_copy)
        model = CudaOpsModel(memory, meta.grid)
        frame_graphs = FrameGraphs(DriverCudaGraphs(memory)) if graphs else None
        made.append(DevicePipeline(meta, model, max_windows=2, graphs=frame_graphs))
    return made


def _vocabulary(seed):
    rng = np.random.default_rng(seed)
    return rng.normal(0, 0.3, (3, 1)).astype(np.float32), rng.uniform(-0.05, 0.05, 3).astype(np.float32)


@pytest.mark.parametrize("zero_copy", [False, True])
def test_replayed_frames_equal_the_eager_pipeline_frame_after_frame(meta, zero_copy):
    graphed, eager = _pipelines(meta, zero_copy)
    for pipe in (graphed, eager):
        pipe.set_vocabulary(*_vocabulary(0))
    rng = np.random.default_rng(1)
    small = [rng.integers(0, 256, (60, 90, 3), dtype=np.uint8) for _ in range(3)]
    large = rng.integers(0, 256, (70, 150, 3), dtype=np.uint8)  # more windows than max_windows: two chunks
    frames = [small[0], small[0], small[1], large, small[2], large, small[1]]
    try:
        for index, frame in enumerate(frames):
            labels, scores = graphed(frame)
            expected_labels, expected_scores = eager(frame)
            # the same kernels on the same data: equal, replay or not (a stale frame or result would differ)
            np.testing.assert_array_equal(labels, expected_labels, err_msg=f"frame {index}")
            np.testing.assert_array_equal(scores, expected_scores, err_msg=f"frame {index}")
        stats = graphed.graphs.stats
        assert stats["captured"] == 2 and stats["replayed"] == len(frames) - 2 and stats["capture_failed"] == 0
        # the frames differ from each other: a replay that did not read its new frame would have repeated one
        assert len({eager(f)[0].tobytes() for f in small}) == 3
        # a new vocabulary drops the graphs (they read its buffers) and the next frames are captured again
        for pipe in (graphed, eager):
            pipe.set_vocabulary(*_vocabulary(2))
        for frame in (small[0], small[0]):
            np.testing.assert_array_equal(graphed(frame)[0], eager(frame)[0])
        assert graphed.graphs.stats["dropped"] == 2 and graphed.graphs.stats["captured"] == 3
    finally:
        for pipe in (graphed, eager):
            pipe.memory.synchronize()
            if pipe.graphs is not None:
                pipe.graphs.clear(pipe)
            pipe.memory.close()


@requires_emulation
@pytest.mark.parametrize("graphs", [True, False])
def test_results_read_before_the_frame_is_synchronised_are_a_reported_race(meta, graphs, monkeypatch):
    """Review experiment D: the staging buffers read on the host without the synchronize that orders them after the
    replay (or the eager frame's downloads) are a race report naming the staging buffer (CudaMemory.host_access),
    not only wrong labels; the same frame with the synchronize reports nothing."""
    emu = cuda_emulation()
    pipes = _pipelines(meta, zero_copy=False)
    pipe = pipes[0] if graphs else pipes[1]
    pipe.set_vocabulary(*_vocabulary(0))
    frame = np.random.default_rng(3).integers(0, 256, (60, 90, 3), dtype=np.uint8)
    try:
        pipe(frame)  # eager (and captured, with graphs), synchronised
        pipe(frame)  # replayed (or eager again), synchronised
        assert emu.take_reports() == []
        with monkeypatch.context() as patched:
            patched.setattr(pipe.memory, "synchronize", lambda: None)  # the missing synchronize
            pipe(frame)
        pipe.memory.synchronize()
        reports = emu.take_reports()
    finally:
        for each in pipes:
            each.memory.synchronize()
            if each.graphs is not None:
                each.graphs.clear(each)
            each.memory.close()
    assert pipe.graphs is None or pipe.graphs.stats["replayed"] == 2
    assert reports and {kind for kind, _ in reports} == {"race"}, reports
    assert any("host read of labels staging buffer" in message for _, message in reports), reports


# ---- stage timing inside the graph (stage_timing.EventClock over the driver's timing events) ----------------------
class NoEventsDriver(RuntimeDriver):
    """A driver without timing events: CudaMemory's stage clock is then the former, synchronising one."""

    event_create = event_record = event_elapsed_ms = event_destroy = None


def _stage_names(pipe, frame):
    windows = len(pipe.frame_plan(frame)[1])
    chunks = -(-windows // pipe.max_windows)
    return ["upload"] + ["preprocess", "image_encoder", "head"] * chunks + ["postprocess", "download"]


def _hooked(pipe, frame):
    """One timed frame: (labels, scores, [(stage, seconds)], synchronisations of the pipeline's stream)."""
    seen, synced = [], []
    original = pipe.memory.synchronize
    pipe.memory.synchronize = lambda: (synced.append(1), original())[1]
    try:
        labels, scores = pipe(frame, stage_hook=lambda stage, seconds: seen.append((stage, seconds)))
    finally:
        del pipe.memory.synchronize
    return labels, scores, seen, len(synced)


def _close(pipes):
    for pipe in pipes:
        pipe.memory.synchronize()
        if pipe.graphs is not None:
            pipe.graphs.clear(pipe)
        pipe.memory.close()


@pytest.mark.parametrize("zero_copy", [False, True])
def test_timed_frames_are_replayed_with_their_stage_events(meta, zero_copy):
    """A timed frame runs as deployed: captured with its stage boundaries as event-record nodes, replayed, one
    synchronisation per replayed frame, every stage handed to the hook from the events the replay recorded; its
    results equal the eager pipeline's."""
    graphed, eager = _pipelines(meta, zero_copy)
    for pipe in (graphed, eager):
        pipe.set_vocabulary(*_vocabulary(0))
    rng = np.random.default_rng(5)
    small = [rng.integers(0, 256, (60, 90, 3), dtype=np.uint8) for _ in range(2)]
    large = rng.integers(0, 256, (70, 150, 3), dtype=np.uint8)  # two chunks of windows
    try:
        for index, frame in enumerate([small[0], small[0], small[1], large, large]):
            labels, scores, seen, syncs = _hooked(graphed, frame)
            expected_labels, expected_scores = eager(frame)
            np.testing.assert_array_equal(labels, expected_labels, err_msg=f"frame {index}")
            np.testing.assert_array_equal(scores, expected_scores, err_msg=f"frame {index}")
            assert [stage for stage, _ in seen] == _stage_names(graphed, frame), index
            assert all(np.isfinite(seconds) and seconds >= 0 for _, seconds in seen), seen  # start before end
            if index in (1, 2, 4):  # replays: the replay's own synchronisation only
                assert syncs == 1, (index, syncs)
        stats = graphed.graphs.stats
        assert (stats["captured"], stats["replayed"], stats["checked"], stats["check_failed"]) == (2, 3, 2, 0)
    finally:
        _close((graphed, eager))


def test_without_timing_events_timed_frames_run_eagerly_synchronised(meta):
    """The control: a driver without events keeps the former measure (two synchronisations per stage, no graph)."""
    memory = CudaMemory(NoEventsDriver(), zero_copy=False)
    graphs = FrameGraphs(DriverCudaGraphs(memory))
    pipe = DevicePipeline(meta, CudaOpsModel(memory, meta.grid), max_windows=2, graphs=graphs)
    pipe.set_vocabulary(*_vocabulary(0))
    frame = np.random.default_rng(6).integers(0, 256, (60, 90, 3), dtype=np.uint8)
    try:
        for _ in range(2):
            _, _, seen, syncs = _hooked(pipe, frame)
            assert [stage for stage, _ in seen] == _stage_names(pipe, frame)
            assert syncs == 2 * len(seen) + 1
        assert pipe.graphs.stats["captured"] == 0 and pipe.graphs.stats["replayed"] == 0
    finally:
        _close((pipe,))


@requires_emulation
def test_the_stage_events_are_nodes_that_each_launch_records(meta):
    """The timed graph's events are recorded by its launches (event-record nodes), not once at capture: launched on a
    held stream, they stay pending until the stream runs; then they are complete and readable."""
    testing = cuda_testing()
    graphed, _ = _pipelines(meta, zero_copy=False)
    graphed.set_vocabulary(*_vocabulary(0))
    frame = np.random.default_rng(7).integers(0, 256, (60, 90, 3), dtype=np.uint8)
    try:
        _hooked(graphed, frame)  # eager, captured, checked
        entry = next(iter(graphed.graphs._entries.values()))
        events = entry.clock._events
        assert entry.clock.marks == len(events) == len(_stage_names(graphed, frame)) + 1
        graphed.memory.synchronize()
        assert all(testing.event_query(e) for e in events)
        with held(graphed.memory.stream):
            graphed.graphs.backend.replay(entry.handle)
            assert not any(testing.event_query(e) for e in events)  # recorded by this launch: pending with it
        graphed.memory.synchronize()
        assert all(testing.event_query(e) for e in events)
        assert [stage for stage, _ in entry.clock.times()] == _stage_names(graphed, frame)
    finally:
        _close((graphed,))
