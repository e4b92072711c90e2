"""The stream loop with frames in flight (zsseg_rt/stream/loop/flight.py, issue 72 item 3), on an engine-like fake whose
``in_flight`` has lanes (what an Engine on a GPU's device pipeline gives; the lanes themselves are tested on the
emulated CUDA runtime: python_tests/runtime/test_in_flight_cuda.py): each step is submitted before the previous
step's results are taken, at most two frames of a source are in flight, results come out in order and each to its
source, a result is never held back waiting for the next frame, a source's frames in flight count against its
writer's queue, ``max_frames`` submits no frame more, and the lanes are closed at the end. The controls: the same
runs with ``in_flight=1``, and an engine without lanes (a CPU), run each step waited for, with the same results.

No test depends on timing: where the loop must not wait, the source itself waits (with a long safety bound) for the
result the loop must deliver first."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from stream_fakes import FakeEngine, frame_number, numbered_frame

from zsseg_rt.stream import CallableSource, MultiStreamRunner, NullSink, StreamRunner, VideoSegmenter
from zsseg_rt.stream.loop.runner import QUEUE_SIZE

SAFETY = 60.0  # seconds a source waits for a result the loop must deliver (reached only by a defect)


class Flight:
    """``Engine.in_flight`` stand-in: frames queue up, results come back in order; counts what was in flight."""

    def __init__(self, engine, depth, lanes):
        self.engine, self.depth, self.lanes = engine, depth, lanes
        self.why_synchronous = None if lanes else "the host path (a CPU)"
        self.queue, self.most, self.submits, self.closed = [], 0, 0, False

    def submit(self, image, color_order=None):
        self.submits += 1
        self.queue.append(image)
        self.most = max(self.most, len(self.queue))
        self.engine.on_submit(self)
        return self.submits - 1

    def result(self):
        return self.engine([self.queue.pop(0)])[0]

    def __len__(self):
        return len(self.queue)

    def close(self):
        self.closed = True


class FlightEngine(FakeEngine):
    """FakeEngine with ``in_flight(depth)`` (``lanes``: 2, or 0 for an engine that cannot keep frames in flight)."""

    def __init__(self, lanes=2, **kwargs):
        super().__init__(**kwargs)
        self.lanes, self.flights = lanes, []
        self.on_submit = lambda flight: None

    def in_flight(self, depth, color_order=None):
        self.flights.append(Flight(self, depth, self.lanes))
        return self.flights[-1]


def capture_keeps_up(engine, runner):
    """Each submit returns only once every source's next frame is ready (or the source ended), as with a decoder
    faster than the device: the loop then always finds the next frame and keeps two in flight."""
    grabbers = [stream.grabber for stream in runner.streams]

    def ready(grabber):
        with grabber._cond:
            return grabber._cond.wait_for(lambda: grabber._latest is not None or grabber._finished, SAFETY)

    def wait(flight):
        assert all(ready(grabber) for grabber in grabbers)

    engine.on_submit = wait
    return runner


def _zero_flow(current, previous):  # the flow between two frames of a fake clip: none (test_video_filter.py's)
    return np.zeros(current.shape + (2,), np.float32)


def _file(count):
    return CallableSource(lambda: (numbered_frame(i) for i in range(count)), live=False, name="file")


@pytest.mark.parametrize("lanes, in_flight", [(2, 2), (2, 1), (0, 2)], ids=["in flight", "in_flight=1", "no lanes"])
def test_every_frame_comes_out_in_order_with_two_in_flight(thread_guard, lanes, in_flight):
    engine = FlightEngine(lanes=lanes)
    seen, labels = [], []
    runner = StreamRunner(
        engine,
        _file(30),
        [NullSink()],
        drop_stale=False,
        in_flight=in_flight,
        on_result=lambda f, r, s: (seen.append(frame_number(f.image)), labels.append(r.labels)),
    )
    stats = capture_keeps_up(engine, runner).run()
    assert seen == list(range(30)) and stats.processed == 30 and stats.dropped == 0
    want = FakeEngine()([numbered_frame(i) for i in range(30)])
    assert all(np.array_equal(got, w.labels) for got, w in zip(labels, want))
    if in_flight == 1:
        assert engine.flights == []  # each step waited for, as before
        return
    flight = engine.flights[0]
    assert flight.closed  # the lanes (or the flight that had none) freed
    if lanes:
        assert flight.submits == 30 and flight.most == 2  # the next frame submitted before the last is taken
        assert stats.engine_calls == 30
    else:
        assert flight.submits == 0 and engine.calls == 30  # the control: no lanes, each step waited for


def test_a_result_is_never_held_back_for_the_next_frame(thread_guard):
    """The source gives frame k+1 only once frame k's result came out: a loop that kept frame k in flight until the
    next frame arrived would wait for ever (here: until the safety bound, then fail)."""
    engine = FlightEngine()
    out = {i: threading.Event() for i in range(6)}
    late = []

    def frames():
        for i in range(6):
            yield numbered_frame(i)
            if not out[i].wait(SAFETY):
                late.append(i)

    StreamRunner(
        engine,
        CallableSource(frames, live=False, name="camera"),
        [NullSink()],
        drop_stale=False,
        on_result=lambda f, r, s: out[frame_number(f.image)].set(),
    ).run()
    assert late == [] and all(event.is_set() for event in out.values())
    assert engine.flights[0].submits == 6


def test_frames_in_flight_count_against_the_writers_queue(thread_guard, monkeypatch):
    """A writer stuck on its first frame: the loop stops taking the source's frames once its queue and its frames
    in flight together fill QUEUE_SIZE, and goes idle instead of blocking on a full queue (a put never waits).
    Mutant run when written: gated on ``queue.full()`` alone (frames in flight not counted), the loop puts a result
    into the full queue (the checked put fails the run)."""
    engine = FlightEngine()
    go, entered = threading.Event(), threading.Event()
    seen = []

    class StuckSink(NullSink):
        def write(self, frame):
            entered.set()
            go.wait(SAFETY)

    runner = capture_keeps_up(engine, StreamRunner(engine, _file(12), [StuckSink()], drop_stale=False))
    stream = runner.streams[0]
    put, idle = stream.queue.put, runner._ready.wait

    def checked_put(item, *args, **kwargs):
        assert not stream.queue.full(), "the loop's put would have waited for the writer"
        put(item, *args, **kwargs)

    def idle_wait(timeout=None):
        if not go.is_set() and entered.is_set() and stream.in_flight == 0 and stream.queue.full():
            seen.append((engine.flights[0].submits, stream.queue.qsize(), stream.in_flight))
            go.set()  # the loop went idle with the writer stuck: back-pressure held; let the writer go on
        return idle(timeout)

    monkeypatch.setattr(stream.queue, "put", checked_put)
    monkeypatch.setattr(runner._ready, "wait", idle_wait)
    stats = runner.run()
    assert stats.processed == 12
    # the writer holds frame 0; frames 1 and 2 wait in its queue: 3 submitted, none in flight
    assert seen == [(1 + QUEUE_SIZE, QUEUE_SIZE, 0)], seen


def test_max_frames_submits_no_frame_more(thread_guard, monkeypatch):
    """Mutant run when written: without the loop's check of the frames submitted, a sixth frame goes in flight.
    (A long writer queue: the writer's pace never holds a frame back here.)"""
    from zsseg_rt.stream.loop import runner as runner_module

    monkeypatch.setattr(runner_module, "QUEUE_SIZE", 100)
    engine = FlightEngine()
    seen = []
    runner = StreamRunner(
        engine, _file(30), [], drop_stale=False, max_frames=5, on_result=lambda f, r, s: seen.append(f.index)
    )
    stats = capture_keeps_up(engine, runner).run()
    assert stats.processed == 5 and seen == [0, 1, 2, 3, 4]
    assert engine.flights[0].submits == 5 and engine.flights[0].closed


def test_several_sources_each_get_their_own_results_in_order(thread_guard):
    engine = FlightEngine()
    seen = {0: [], 1: []}
    sources = [_file(10), _file(10)]
    runner = MultiStreamRunner(
        engine, sources, [[], []], drop_stale=False, on_result=lambda f, r, s: seen[f.stream].append(f.index)
    )
    stats = capture_keeps_up(engine, runner).run()
    assert seen == {0: list(range(10)), 1: list(range(10))} and stats.processed == 20
    assert engine.flights[0].submits == 20


def test_a_video_segmenter_keeps_frames_in_flight_only_with_its_filter_off(thread_guard):
    """Filter off: the Engine's frames in flight, each result a VideoResult of its source; filter on (keyframes):
    no frames in flight (each keyframe's result feeds the next frame's), the loop waits for each step."""
    plain = FlightEngine()
    results = []
    StreamRunner(
        VideoSegmenter(plain), _file(8), [], drop_stale=False, on_result=lambda f, r, s: results.append(r)
    ).run()
    assert plain.flights[0].submits == 8 and [r.stream for r in results] == [0] * 8
    assert all(r.keyframe and r.reason == "interval" for r in results)
    filtered = FlightEngine()
    segmenter = VideoSegmenter(filtered, keyframe_every=2, flow_function=_zero_flow)
    assert segmenter.in_flight(2) is None
    StreamRunner(segmenter, _file(4), [], drop_stale=False).run()
    assert filtered.flights == []


def test_a_bad_in_flight_is_refused_in_one_line():
    for bad in (0, True, 1.5, "2"):
        with pytest.raises(ValueError, match=f"in_flight must be a whole number >= 1, got {bad!r}"):
            StreamRunner(FlightEngine(), _file(1), [], in_flight=bad)


def test_video_segmenter_stream_yields_each_frames_result_in_order():
    """``VideoSegmenter.stream``: with the filter off, the Engine's frames in flight (two at most), VideoResults of
    the stream asked for; with keyframes, one frame at a time as ``video(frame)`` gives them (the control)."""
    frames = [numbered_frame(i) for i in range(7)]
    engine = FlightEngine()
    results = list(VideoSegmenter(engine).stream(frames, stream=3))
    want = FakeEngine()(frames)
    assert all(np.array_equal(r.labels, w.labels) for r, w in zip(results, want)) and len(results) == 7
    assert all(r.stream == 3 and r.keyframe and r.reason == "interval" for r in results)
    assert engine.flights[0].submits == 7 and engine.flights[0].most == 2 and engine.flights[0].closed
    keyframes = dict(keyframe_every=3, flow_function=_zero_flow)
    streamed = list(VideoSegmenter(FlightEngine(), **keyframes).stream(frames))
    called = VideoSegmenter(FlightEngine(), **keyframes)
    one_by_one = [called(frame) for frame in frames]
    assert [r.keyframe for r in streamed] == [r.keyframe for r in one_by_one] == [True, False, False] * 2 + [True]
    assert all(np.array_equal(a.labels, b.labels) for a, b in zip(streamed, one_by_one))
