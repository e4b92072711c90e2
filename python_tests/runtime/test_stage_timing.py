"""Stage timing of the device pipeline (runtime/device/stage_timing.py) as deployed, on the CPU: a timed frame is
captured and replayed like an untimed one, its stage boundaries are timing events recorded on the stream (event-record
nodes of the graph: recorded while capturing, never created then), the hook gets each stage after the frame's ONE
synchronisation, and the untimed graph of the same frame has no events. A memory without timing events keeps the
former measure (a synchronisation around each stage, frames eager): the control showing what the counts catch.

Durations are never asserted: the stand-in's "device clock" counts operations, and the tests check which events were
recorded, when, how many synchronisations a frame made and which stages the hook got, in which order.
"""

import numpy as np
import pytest
from test_cuda_graphs import CLASSES, StandInGraphs, _frames

from zsseg_rt.runtime import Engine
from zsseg_rt.runtime.device.cuda_graphs import FrameGraphs
from zsseg_rt.runtime.device.cuda_memory import CudaMemory
from zsseg_rt.runtime.device.device_pipeline import DevicePipeline, HostMemory, OnnxRuntimeExecutor
from zsseg_rt.runtime.device.stage_timing import EventClock, HostClock, SyncClock

ONE_WINDOW = ["upload", "preprocess", "image_encoder", "head", "postprocess", "download"]


class EventHostMemory(HostMemory):
    """Host memory with stand-in timing events, as TorchMemory on CUDA has real ones: an event is recorded at the
    count of operations enqueued so far (uploads, downloads, records), so elapsed "times" are operation counts. The
    log says what happened, in order: ("create", id, capturing), ("record", id, capturing), ("sync",)."""

    def __init__(self):
        super().__init__()
        self.log, self.ops, self.made = [], 0, 0

    def stage_clock(self):
        return EventClock(self)

    def timing_event(self):
        self.made += 1
        event = {"id": self.made, "at": None}
        self.log.append(("create", event["id"], self.capturing))
        return event

    def record_timing_event(self, event):
        self.ops += 1
        event["at"] = self.ops
        self.log.append(("record", event["id"], self.capturing))

    def elapsed_ms(self, start, end):
        assert start["at"] is not None and end["at"] is not None, "an event read before it was recorded"
        return float(end["at"] - start["at"])

    def release_timing_event(self, event):
        self.log.append(("release", event["id"], self.capturing))

    def _copy_up(self, host, buffer):
        self.ops += 1
        super()._copy_up(host, buffer)

    def synchronize(self):
        self.log.append(("sync",))


class SyncCountingMemory(HostMemory):
    """Host memory without timing events whose clock synchronises around each stage (the former measure)."""

    def __init__(self):
        super().__init__()
        self.log = []

    def stage_clock(self):
        return SyncClock(self)

    def synchronize(self):
        self.log.append(("sync",))


@pytest.fixture(scope="module")
def engine(tiny_bundle):
    return Engine(tiny_bundle, classes=CLASSES, backend="onnxruntime")


def _pipe(engine, memory, graphs=True, max_windows=4):
    stand_in = StandInGraphs()
    pipe = DevicePipeline(
        engine.meta, OnnxRuntimeExecutor(engine.backend, memory), max_windows, FrameGraphs(stand_in) if graphs else None
    )
    stand_in.pipe = pipe
    pipe.set_vocabulary(engine._vocab[1], engine._vocab[2])
    return pipe, stand_in


def _timed(pipe, frame, **kwargs):
    """One frame with a hook: (labels, the hook's calls, the memory's log of this frame)."""
    seen, start = [], len(pipe.memory.log)
    pipe.memory.log.append(("frame",))

    def hook(stage, seconds):
        seen.append(stage)
        pipe.memory.log.append(("hook", stage))

    labels, _ = pipe(frame, stage_hook=hook, **kwargs)
    return labels, seen, pipe.memory.log[start + 1 :]


def test_a_timed_frame_is_replayed_with_its_stage_events_as_graph_nodes(engine):
    pipe, stand_in = _pipe(engine, EventHostMemory())
    eager = DevicePipeline(engine.meta, OnnxRuntimeExecutor(engine.backend), 4)
    eager.set_vocabulary(engine._vocab[1], engine._vocab[2])
    wide, _ = _frames()  # two windows, one chunk
    first_labels, first_stages, first_log = _timed(pipe, wide)  # eager, then captured and checked
    assert first_stages == ONE_WINDOW
    captured = [e for e in first_log if e[0] == "record" and e[2]]  # recorded while capturing: graph nodes
    assert len(captured) == len(ONE_WINDOW) + 1  # a start and each stage's end (stages share their boundaries)
    assert not [e for e in first_log if e[0] == "create" and e[2]], "an event was created inside the capture"
    for _ in range(2):
        labels, stages, log = _timed(pipe, wide)
        np.testing.assert_array_equal(labels, eager(wide)[0])  # timing changes no result
        assert stages == ONE_WINDOW
        # the replay's one synchronisation, then the hook: no synchronisation per stage, nothing created
        assert [e for e in log if e[0] in ("sync", "hook")] == [("sync",)] + [("hook", s) for s in ONE_WINDOW]
        assert not [e for e in log if e[0] == "create"]
        # the stand-in re-runs the captured body; a real replay records the same events: those of the capture
        assert sorted({e[1] for e in log if e[0] == "record"}) == sorted({e[1] for e in captured})
    stats = pipe.graphs.stats
    assert (stats["captured"], stats["checked"], stats["replayed"], stats["check_failed"]) == (1, 1, 2, 0)
    np.testing.assert_array_equal(first_labels, eager(wide)[0])


def test_a_timed_frame_with_several_chunks_reports_each_chunk(engine):
    pipe, _ = _pipe(engine, EventHostMemory(), max_windows=1)
    wide, _ = _frames()
    chunks = ["preprocess", "image_encoder", "head"]
    want = ["upload"] + chunks * 2 + ["postprocess", "download"]
    for _ in range(3):
        _, stages, log = _timed(pipe, wide)
        assert stages == want
    assert len([e for e in log if e[0] == "record"]) == len(want) + 1
    assert pipe.graphs.stats["replayed"] == 2


def test_timed_and_untimed_frames_are_graphs_of_their_own(engine):
    pipe, stand_in = _pipe(engine, EventHostMemory())
    wide, _ = _frames()
    pipe.memory.log.clear()
    pipe(wide)  # untimed: captured without events
    pipe(wide)
    assert not [e for e in pipe.memory.log if e[0] in ("record", "create")], "an untimed frame recorded events"
    assert [e for e in pipe.memory.log if e[0] == "sync"].count(("sync",)) >= 2
    _, stages, _ = _timed(pipe, wide)  # a new kind: eager, captured with its events
    assert stages == ONE_WINDOW
    _, stages, _ = _timed(pipe, wide)
    assert stages == ONE_WINDOW
    before = len(pipe.memory.log)
    pipe(wide)  # the untimed graph again: still no events
    assert not [e for e in pipe.memory.log[before:] if e[0] == "record"]
    stats = pipe.graphs.stats
    assert (stats["captured"], stats["replayed"]) == (2, 3)
    # a dropped timed graph releases its events (after the graph itself)
    pipe.graphs.clear(pipe)
    released = [e for e in pipe.memory.log if e[0] == "release"]
    assert len(released) == len(ONE_WINDOW) + 1


def test_a_memory_without_timing_events_synchronises_around_each_stage_eagerly(engine):
    """The control: the former measure. Each stage is bracketed by two synchronisations and the frame bypasses the
    graphs (a capture cannot synchronise); the counts above would fail for it."""
    pipe, stand_in = _pipe(engine, SyncCountingMemory())
    wide, _ = _frames()
    for _ in range(2):
        _, stages, log = _timed(pipe, wide)
        assert stages == ONE_WINDOW
        assert log.count(("sync",)) == 2 * len(ONE_WINDOW) + 1  # two per stage and the frame's own
    assert pipe.graphs.stats["captured"] == 0 and stand_in.events == []
    pipe(wide)  # untimed: graphs as usual
    pipe(wide)
    assert pipe.graphs.stats["replayed"] == 1


def test_host_memory_times_on_the_host_with_one_synchronisation(engine):
    pipe, _ = _pipe(engine, SyncCountingMemory(), graphs=False)
    pipe.memory.stage_clock = lambda: HostClock()  # what HostMemory gives: no synchronisation per stage
    wide, _ = _frames()
    _, stages, log = _timed(pipe, wide)
    assert stages == ONE_WINDOW and log.count(("sync",)) == 1
    assert isinstance(HostMemory().stage_clock(), HostClock)


def test_the_batched_call_reports_after_each_frames_synchronisation(engine):
    pipe, _ = _pipe(engine, EventHostMemory(), graphs=False, max_windows=2)
    wide, gray = _frames()  # 2 windows, 1 window
    seen, log = [], pipe.memory.log
    log.clear()

    def hook(stage, seconds):
        seen.append(stage)
        log.append(("hook", stage))

    results = pipe.segment_many([gray, wide, gray], ["bgr"] * 3, stage_hook=hook)
    assert len(results) == 3
    # every synchronisation is a frame's own (one per frame): the hook's stages come after one
    assert log.count(("sync",)) == 3
    order = [e for e in log if e[0] in ("sync", "hook")]
    assert order[0] == ("sync",) and order[-1][0] == "hook"
    assert seen.count("postprocess") == 3 and seen.count("download") == 3 and seen.count("upload") == 3
    assert seen.count("image_encoder") == 2  # 4 windows in batches of 2
    assert not [e for e in log if e[0] == "record" and e[2]]  # eager: nothing captured


class _EventDriver:
    """What CudaMemory asks of a driver for timing events, recorded."""

    def __init__(self, events=True):
        self.calls = []
        if events:
            self.event_create = lambda timing=True: self.calls.append(("create", timing)) or len(self.calls)
            self.event_record = lambda e, s, external=False: self.calls.append(("record", e, s, external))
            self.event_elapsed_ms = lambda a, b: self.calls.append(("elapsed", a, b)) or 0.5
            self.event_destroy = lambda e: self.calls.append(("destroy", e))

    def stream_synchronize(self, stream):
        self.calls.append(("sync", stream))


def test_cuda_memory_times_with_driver_events_external_only_while_capturing():
    memory = CudaMemory(_EventDriver(), stream=7, zero_copy=False)
    clock = memory.stage_clock()
    assert isinstance(clock, EventClock) and clock.in_graph
    clock.restart()
    clock.begin("upload")
    clock.end("upload")
    memory.capturing = True
    clock.begin("postprocess")  # adjacent: starts at the previous end, no new record
    clock.end("postprocess")
    memory.capturing = False
    records = [c for c in memory.driver.calls if c[0] == "record"]
    assert [(c[2], c[3]) for c in records] == [(7, False), (7, False), (7, True)]
    assert clock.times() == [("upload", 0.5e-3), ("postprocess", 0.5e-3)]
    assert all(c[1] is True for c in memory.driver.calls if c[0] == "create")  # timing on
    memory.close()  # destroys the events it made
    assert sorted(c[1] for c in memory.driver.calls if c[0] == "destroy") == sorted({r[1] for r in records})
    # a driver without events: the former, synchronising measure (never captured)
    fallback = CudaMemory(_EventDriver(events=False), stream=7, zero_copy=False).stage_clock()
    assert isinstance(fallback, SyncClock) and not fallback.in_graph


def test_torch_memory_on_the_cpu_times_on_the_host():
    pytest.importorskip("torch")
    from zsseg_rt.runtime.device.device_pipeline import TorchMemory

    assert isinstance(TorchMemory("cpu").stage_clock(), HostClock)


def _checks_module(name):
    """``checks.NAME`` of this checkout (its root at the END of sys.path while importing, as tools/gpu_check.sh's
    launcher has it)."""
    import importlib
    import sys
    from pathlib import Path

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sys, "path", [*sys.path, str(Path(__file__).resolve().parents[2])])
        return importlib.import_module(f"checks.{name}")


@pytest.mark.parametrize("events", [True, False], ids=["in-graph events", "host clock (control)"])
def test_the_engine_check_counts_only_replayed_timed_frames(tiny_bundle, events):
    """checks/gpu_engine.py's ``time_engine`` on the CPU, with stand-in graphs: with timing events every measured
    frame is a replay and each stage has a median; with a clock that cannot be captured (the control) the timed
    frames bypass the graphs, and the row says so (``replayed_all`` False: the check fails it)."""
    gpu_engine = _checks_module("gpu_engine")
    engine = Engine(tiny_bundle, classes=CLASSES, backend="onnxruntime", device_pipeline=True)
    device = engine.pipeline.device
    if events:
        device.memory = device.executor.memory = EventHostMemory()
    stand_in = StandInGraphs()
    device.graphs, device.static_outputs, stand_in.pipe = FrameGraphs(stand_in), True, device
    wide, _ = _frames()
    row = gpu_engine.time_engine(engine, wide, frames=4)
    assert row["frames"] == 4 and list(row["stage_median_ms"]) == ONE_WINDOW
    assert row["replayed_all"] is events and row["timed_replays"] == (4 if events else 0)
    assert row["graphs"]["check_failed"] == 0 and engine.stage_hook is None
