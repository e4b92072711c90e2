"""Frames in flight (``Engine.in_flight`` / ``Engine.stream``, runtime/device/in_flight.py) on CUDA memory: two lanes,
each a device pipeline with its own stream, buffers and CUDA graphs, frame N+1 launched before frame N is waited for.

Runs on a GPU and, in CI, on the emulated CUDA runtime, where streams run asynchronously to the host and a race
detector checks every host read of a staging buffer and every host write of a frame buffer against the device work
the host has not synchronised with (docs/gpu.md, "An emulator that fails the way a GPU fails"): a lane reused before
its frame was waited for, or a result read before its wait, is a reported race, and any report fails the test
(python_tests/conftest.py). The Engine's device pipeline and its lanes are the stand-in model of CUDA ops
(``CudaOpsModel``: capturable, asynchronous), so the results in flight are compared bit for bit with the Engine's
synchronous call through the same kind of pipeline (``LaneModel``: no device-side bias check, see there). The controls show the detector sees what the lanes prevent: a
lane given a second frame before its first was waited for, and a result read without its wait.
"""

from __future__ import annotations

import numpy as np
import pytest
from cuda_support import RuntimeDriver, cuda_emulation, held, requires_cuda, requires_emulation
from test_device_graphs_cuda import CudaOpsModel
from test_frame_api_calls import ALLOCATIONS, EVENT_LIFETIME, SYNCHRONISATIONS, _count

from zsseg_rt import ops
from zsseg_rt.bundle import Names
from zsseg_rt.runtime import Engine
from zsseg_rt.runtime.device.cuda_graphs import DriverCudaGraphs, FrameGraphs, replay_mismatch
from zsseg_rt.runtime.device.cuda_memory import CudaMemory
from zsseg_rt.runtime.device.device_pipeline import DevicePipeline
from zsseg_rt.runtime.device.in_flight import InFlight

pytestmark = [pytest.mark.cuda, requires_cuda]

CLASSES = ["person", "bottle", "cat"]  # 3: the stand-in model's classes (one per colour channel)


class LaneModel(CudaOpsModel):
    """``CudaOpsModel`` whose head resizes without a class bias: the generic op checks a CUDA class_bias with a
    kernel that writes a slot of one page-locked slab shared by every pending check (``PinnedSlots``); two lanes'
    streams each running one write distinct slots of that one allocation, which the emulator's allocation-granular
    race detector reports as a race (a false positive: csrc/emu/cuda_emu_runtime.h lists the slab as not seen). The
    deployed frame has no such check (its post-processing is a prepared launch whose bias was checked on the host);
    the vocabulary still reaches the results through that post-processing's bias."""

    def run(self, role, inputs):
        if role == "image":
            return super().run(role, inputs)
        features = inputs["features"]
        out = self._buffer(("logits", features.shape[0]), features.shape)
        ops.upsample(features, self.grid, out=out, stream=self.memory.stream)
        return {Names.MASK_LOGITS: out}


def _factory(meta, graphs: bool):
    def lane() -> DevicePipeline:
        memory = CudaMemory(RuntimeDriver(), zero_copy=False)  # a stream of its own
        frame_graphs = FrameGraphs(DriverCudaGraphs(memory)) if graphs else None
        return DevicePipeline(meta, LaneModel(memory, meta.grid), max_windows=2, graphs=frame_graphs)

    return lane


@pytest.fixture
def engine_of(tiny_bundle):
    """``engine_of(graphs)``: an Engine whose device pipeline and lanes are the stand-in model on CUDA memory."""
    made = []

    def make(graphs: bool = True) -> Engine:
        engine = Engine(tiny_bundle, classes=CLASSES, backend="onnxruntime")
        factory = _factory(engine.meta, graphs)
        engine.pipeline.device, engine.pipeline._device_vocab = factory(), None
        engine.pipeline.make_device_lane = factory
        made.append(engine)
        return engine

    yield make
    for engine in made:
        pipe = engine.pipeline.device
        pipe.memory.synchronize()
        if pipe.graphs is not None:
            pipe.graphs.clear(pipe)
        pipe.memory.close()


def _frames(seed: int = 1):
    rng = np.random.default_rng(seed)
    small = [rng.integers(0, 256, (60, 90, 3), dtype=np.uint8) for _ in range(4)]
    large = [rng.integers(0, 256, (70, 150, 3), dtype=np.uint8) for _ in range(2)]  # two chunks of windows
    return [small[0], small[1], large[0], small[2], small[3], large[1], small[0], large[0], small[1], small[2]]


@pytest.mark.parametrize("graphs", [True, False], ids=["graphs", "eager"])
def test_frames_in_flight_equal_the_synchronous_call_in_order(engine_of, graphs):
    engine = engine_of(graphs)
    frames = _frames()
    expected = [engine(frame) for frame in frames]  # the synchronous path (the Engine's own device pipeline)
    assert len({r.labels.tobytes() for r in expected}) >= 6  # the frames differ: an out-of-order result would show
    results = list(engine.stream(frames, in_flight=2))
    assert len(results) == len(frames)
    for index, (got, want) in enumerate(zip(results, expected)):
        np.testing.assert_array_equal(got.labels, want.labels, err_msg=f"frame {index}")
        np.testing.assert_array_equal(got.scores, want.scores, err_msg=f"frame {index}")
        assert got.class_names == want.class_names and got.image is frames[index]
        assert got.backend == want.backend and got.inference == "windows"
        assert set(got.timing) == {"device_pipeline", "total"}


def test_lanes_take_the_frames_in_turn_and_replay_their_graphs(engine_of):
    """Two lanes, each its own stream; each frame kind captured once per lane, then replayed; the staging buffers
    a lane downloads into stay the same buffers frame after frame (reused, not reallocated)."""
    engine = engine_of(graphs=True)
    frames = _frames()
    with engine.in_flight(2) as flight:
        assert flight.lanes == 2 and flight.why_synchronous is None
        lanes = [lane.pipe for lane in flight._lanes]
        assert lanes[0].memory.stream != lanes[1].memory.stream
        staging = None
        for index, frame in enumerate(frames):
            flight.submit(frame)
            if len(flight) == 2:
                flight.result()
            if index == 7:  # both kinds warm on both lanes: the graphs' staging buffers, by address
                staging = _staging_addresses(lanes)
        while len(flight):
            flight.result()
        assert _staging_addresses(lanes) == staging
        for pipe in lanes:
            stats = pipe.graphs.stats
            assert stats["captured"] == 2 and stats["check_failed"] == 0 and stats["capture_failed"] == 0
        assert sum(pipe.graphs.stats["replayed"] for pipe in lanes) >= len(frames) - 4


def _staging_addresses(lanes):
    return sorted(
        array.__array_interface__["data"][0]
        for pipe in lanes
        for entry in pipe.graphs._entries.values()
        for array in entry.outputs
        if array is not None
    )


@requires_emulation
def test_a_frame_is_launched_while_the_other_lane_still_runs(engine_of):
    """Lane 0's stream held (its frame still "running"): submitting the next frame returns, on lane 1, without
    waiting for lane 0; the results, once lane 0 runs, are the synchronous call's."""
    engine = engine_of(graphs=True)
    frame_a, frame_b = _frames()[:2]
    want_a, want_b = engine(frame_a), engine(frame_b)
    with engine.in_flight(2) as flight:
        for _ in range(2):  # the kind captured on both lanes (captures synchronise)
            flight.submit(frame_a)
        flight.result(), flight.result()
        lane0 = flight._lanes[0].pipe
        with held(lane0.memory.stream):
            flight.submit(frame_a)  # lane 0: launched, held
            flight.submit(frame_b)  # lane 1: returns although lane 0 has not run
            assert flight._lanes[0].frame is not None and flight._lanes[1].frame is not None
        got_a, got_b = flight.result(), flight.result()
    np.testing.assert_array_equal(got_a.labels, want_a.labels)
    np.testing.assert_array_equal(got_b.labels, want_b.labels)


@requires_emulation
def test_a_warm_frame_in_flight_allocates_nothing_and_synchronises_once(engine_of):
    """After warm-up, N frames in flight make N graph launches and N synchronisations (each frame's wait for its
    results), no kernel launch outside the graphs, no allocation or free, no event created or destroyed."""
    emu = cuda_emulation()
    engine = engine_of(graphs=True)
    frames = _frames()
    with engine.in_flight(2) as flight:
        for frame in frames[:6] + frames[:6]:  # every kind captured on both lanes
            flight.submit(frame)
            if len(flight) == 2:
                flight.result()
        while len(flight):
            flight.result()
        emu.settle()
        emu.reset_api_calls()
        steady = frames[:8]
        for frame in steady:
            flight.submit(frame)
            if len(flight) == 2:
                flight.result()
        while len(flight):
            flight.result()
        calls = emu.api_calls()
    print(calls)
    assert _count(calls, ALLOCATIONS) == 0, calls
    assert _count(calls, EVENT_LIFETIME) == 0, calls
    assert _count(calls, SYNCHRONISATIONS) == len(steady), calls
    assert calls.get("cudaGraphLaunch", 0) == len(steady) and calls.get("cudaLaunchKernel", 0) == 0, calls


@requires_emulation
def test_control_an_extra_synchronisation_per_frame_fails_the_count(engine_of):
    """Control of the count above: a lane that synchronises once more per frame (as a submit that waited would)
    is seen."""
    emu = cuda_emulation()
    engine = engine_of(graphs=True)
    frame = _frames()[0]
    with engine.in_flight(2) as flight:
        for _ in range(4):
            flight.submit(frame)
            if len(flight) == 2:
                flight.result()
        while len(flight):
            flight.result()
        lane = flight._lanes[0].pipe
        start = lane.graphs.start
        lane.graphs.start = lambda pipe, *a: (start(pipe, *a), pipe.memory.synchronize())[0]
        emu.settle()
        emu.reset_api_calls()
        for _ in range(4):
            flight.submit(frame)
            if len(flight) == 2:
                flight.result()
        while len(flight):
            flight.result()
        calls = emu.api_calls()
        del lane.graphs.start
    assert _count(calls, SYNCHRONISATIONS) == 4 + 2, calls


@requires_emulation
def test_control_a_lane_given_a_second_frame_before_its_wait_is_a_race(engine_of, monkeypatch):
    """What the lanes prevent: a frame copied into a graph's frame buffer while that graph's previous replay may
    still read it (every frame sent to lane 0, none waited for) is a reported race on the frame buffer."""
    emu = cuda_emulation()
    engine = engine_of(graphs=True)
    frame = _frames()[0]
    with engine.in_flight(2) as flight:
        for _ in range(2):
            flight.submit(frame)
        flight.result(), flight.result()
        assert emu.take_reports() == []
        lane0 = flight._lanes[0]
        monkeypatch.setattr(flight, "_free_lane", lambda: lane0)  # no wait for the frame it holds
        with held(lane0.pipe.memory.stream):
            flight.submit(frame)
            flight.submit(frame)
        monkeypatch.undo()
        lane0.pipe.memory.synchronize()
        reports = emu.take_reports()
        flight._queue.clear()
        lane0.frame = None
    assert reports and {kind for kind, _ in reports} == {"race"}, reports
    assert any("host write of frame" in message for _, message in reports), reports


@requires_emulation
def test_control_a_result_read_before_its_wait_is_a_race(engine_of, monkeypatch):
    """A lane's staging buffers read without the synchronisation that orders them after its replay: a race report
    naming the staging buffer; with the synchronisation (the tests above) nothing is reported."""
    emu = cuda_emulation()
    engine = engine_of(graphs=True)
    frame = _frames()[0]
    with engine.in_flight(2) as flight:
        for _ in range(2):
            flight.submit(frame)
        flight.result(), flight.result()
        lane0 = flight._lanes[0].pipe
        with held(lane0.memory.stream):
            flight.submit(frame)
            monkeypatch.setattr(lane0.memory, "synchronize", lambda: None)  # the missing wait
            flight.result()
        monkeypatch.undo()
        lane0.memory.synchronize()
        reports = emu.take_reports()
    assert reports and {kind for kind, _ in reports} == {"race"}, reports
    assert any("host read of labels staging buffer" in message for _, message in reports), reports


@requires_emulation
def test_close_frees_everything_the_lanes_held(engine_of):
    """From the InFlight's start to its close: every allocation freed (device and page-locked), every event and
    stream it made destroyed, every graph executable destroyed; results not taken are dropped."""
    emu = cuda_emulation()
    engine = engine_of(graphs=True)
    frames = _frames()
    engine(frames[0])  # the Engine's own pipeline warm: nothing of it counted below
    emu.settle()
    emu.reset_api_calls()
    flight = InFlight(engine, 2)
    for frame in frames:
        flight.submit(frame)
        if len(flight) == 2:
            flight.result()
    flight.submit(frames[2])  # left in flight: close waits for it
    flight.close()
    flight.close()  # idempotent
    calls = emu.api_calls()
    print(calls)
    assert calls.get("cudaMalloc", 0) > 0 and calls.get("cudaMalloc", 0) == calls.get("cudaFree", 0), calls
    assert calls.get("cudaHostAlloc", 0) > 0 and calls.get("cudaHostAlloc", 0) == calls.get("cudaFreeHost", 0), calls
    made = calls.get("cudaStreamCreateWithFlags", 0) + calls.get("cudaStreamCreate", 0)
    assert made == 2 and calls.get("cudaStreamDestroy", 0) == 2, calls
    assert calls.get("cudaGraphInstantiate", 0) == calls.get("cudaGraphExecDestroy", 0) > 0, calls
    assert _count(calls, ("cudaEventCreate", "cudaEventCreateWithFlags")) == calls.get("cudaEventDestroy", 0), calls
    with pytest.raises(RuntimeError, match="closed"):
        flight.submit(frames[0])


def test_a_new_vocabulary_reaches_the_lanes_and_frames_in_flight_keep_theirs(engine_of):
    """``set_classes`` between submits: the frames already submitted keep the vocabulary they were submitted with
    (their results name its classes); the next frames run with the new one, uploaded to each lane once."""
    engine = engine_of(graphs=True)
    frames = _frames()[:4]
    with engine.in_flight(2) as flight:
        flight.submit(frames[0])
        flight.submit(frames[1])
        engine.set_classes(["dog", "tree", "car"])
        flight.submit(frames[2])
        flight.submit(frames[3])
        results = [flight.result() for _ in range(4)]
    assert [r.class_names for r in results] == [CLASSES, CLASSES, ["dog", "tree", "car"], ["dog", "tree", "car"]]
    for frame, got in zip(frames[2:], results[2:]):
        np.testing.assert_array_equal(got.labels, engine(frame).labels)


def test_real_torch_lanes_equal_the_synchronous_call(tiny_bundle):  # GPU only: has not run yet (no GPU here)
    """The deployed path: the torch backend on CUDA with graphs, two lanes made by the Engine itself (each a
    TorchExecutor with its own stream and graphs); results in order, equal to the synchronous call's within the
    bound a graph's first replay is held to (each lane captures its own graphs, and cuBLAS may pick another GEMM
    algorithm per capture: ``cuda_graphs.replay_mismatch``), and every warm frame a replay on a lane."""
    pytest.importorskip("torch")
    from cuda_support import torch_cuda_available

    from zsseg_rt.bundle import load_meta
    from zsseg_rt.export.torch_backend import TorchBackend

    if not (torch_cuda_available() and ops.cuda_available()):
        pytest.skip("needs a CUDA GPU, torch's CUDA build and zsseg_rt's CUDA ops (never run here: no GPU)")
    engine = Engine(tiny_bundle, classes=CLASSES, backend=TorchBackend(load_meta(tiny_bundle), device="cuda"))
    rng = np.random.default_rng(3)
    frames = [rng.integers(0, 256, (60 + 20 * (i // 2 % 2), 90, 3), dtype=np.uint8) for i in range(8)]  # AABBAABB
    expected = [engine(frame) for frame in frames]
    with engine.in_flight(2) as flight:
        assert flight.lanes == 2, flight.why_synchronous
        streams = {lane.pipe.memory.stream for lane in flight._lanes} | {engine.pipeline.device.memory.stream}
        assert len(streams) == 3  # each lane on a stream of its own, none the Engine's
        results = []
        for frame in frames:
            flight.submit(frame)
            if len(flight) == 2:
                results.append(flight.result())
        while len(flight):
            results.append(flight.result())
        stats = flight.graph_stats
    for index, (got, want) in enumerate(zip(results, expected)):
        assert replay_mismatch((want.labels, want.scores), (got.labels, got.scores)) is None, index
    assert len({r.scores.tobytes() for r in expected}) == len(frames)  # distinct: an out-of-order result shows
    assert stats["captured"] == 4 and stats["check_failed"] == 0 and stats["replayed"] == len(frames) - 4
