"""What the stream loop tells once a frame is written (``MultiStreamRunner.on_written``: in the source's writer thread,
after every sink has the frame; never after a failed write; its exception fails the run as a writer's does), and
``in_order``'s order at a sink every source shares (source k+1's first frame after source k's last one was written)."""

from __future__ import annotations

import threading

import pytest
from stream_fakes import FakeEngine, numbered_frame

from zsseg_rt.stream import CallableSource, FrameSink, MultiStreamRunner, SinkError

HANG = 60.0  # s: a bounded wait that fails the test instead of hanging it (a guard, never a measured time)


class ResultRecorder(FrameSink):
    """A sink of results that keeps ``(source name, frame index)`` of each write; ``fail_at``: the write number that
    raises; ``before_write``: called with the frame before it is recorded."""

    def __init__(self, name, fail_at=None, before_write=None):
        self.name, self.fail_at, self.before_write = name, fail_at, before_write
        self.seen = []
        self.closed = self.aborted = False
        self._lock = threading.Lock()

    def write_result(self, frame, result):
        if self.before_write is not None:
            self.before_write(frame)
        if self.fail_at is not None and len(self.seen) == self.fail_at:
            raise SinkError("disk full (test)")
        with self._lock:
            self.seen.append((frame.stream, frame.index))

    def close(self):
        self.closed = True

    def abort(self):
        self.aborted = True


def file_source(name, count, on_frame=None):
    """A file-like (not live) source of ``count`` numbered frames; ``on_frame(i)`` before frame ``i`` is given."""

    def frames():
        for index in range(count):
            if on_frame is not None:
                on_frame(index)
            yield numbered_frame(index)

    return CallableSource(frames, live=False, name=name)


def _runner(sources, sinks, shared=(), **options):
    return MultiStreamRunner(
        FakeEngine(), sources, sinks, shared_sinks=list(shared), alpha=0.0, legend=False, **options
    )


def test_on_written_comes_after_every_sink_has_the_frame(thread_guard):
    """Two sources of 4 frames, each with its own sink, and one sink both share: ``on_written`` is called once per
    frame, in its source's writer thread, when its own sink and the shared one hold that frame already."""
    own = [ResultRecorder("a"), ResultRecorder("b")]
    shared = ResultRecorder("both")
    runner = _runner([file_source("a", 4), file_source("b", 4)], [[own[0]], [own[1]]], [shared])
    told = []

    def on_written(frame, result):
        held = (0, frame.index) in own[frame.stream].seen and (frame.stream, frame.index) in shared.seen
        told.append((frame.stream, frame.index, held, threading.current_thread().name, result.labels.shape))

    runner.on_written = on_written
    runner.run()
    assert sorted((stream, index) for stream, index, *_ in told) == [(s, i) for s in (0, 1) for i in range(4)]
    assert all(held for _, _, held, _, _ in told), told
    assert {thread for *_, thread, _ in told} == {"zsseg-writer[a]", "zsseg-writer[b]"}
    assert all(shape == (48, 64) for *_, shape in told)
    assert [index for stream, index, *_ in told if stream == 0] == [0, 1, 2, 3]  # a source's frames in order


def test_on_written_is_not_called_for_a_frame_whose_write_failed(thread_guard):
    """A sink that fails at its third write: the run raises the sink's error, ``on_written`` was called for the two
    frames written and for none after, and the sinks are aborted."""
    sink = ResultRecorder("a", fail_at=2)
    runner = _runner([file_source("a", 6)], [[sink]])
    told = []
    runner.on_written = lambda frame, result: told.append(frame.index)
    with pytest.raises(SinkError, match="disk full"):
        runner.run()
    assert told == [0, 1]
    assert sink.aborted and not sink.closed


def test_an_exception_out_of_on_written_fails_the_run_as_a_failed_write(thread_guard):
    """``on_written`` raising at the second frame: run() raises it, after the cleanup (the sinks aborted, nothing
    put in place), and no later frame is told."""
    sink = ResultRecorder("a")
    runner = _runner([file_source("a", 6)], [[sink]])
    told = []

    def on_written(frame, result):
        told.append(frame.index)
        if frame.index == 1:
            raise KeyError("the app's callback failed")

    runner.on_written = on_written
    with pytest.raises(KeyError, match="the app's callback failed"):
        runner.run()
    assert told == [0, 1]
    assert sink.aborted and not sink.closed


def test_in_order_takes_the_next_source_only_once_every_result_of_the_earlier_ones_is_written(thread_guard):
    """``in_order`` with one sink both sources share (a ``views:`` folder, an MCAP or COCO file): source 1's frames
    are taken only once source 0's last result is written by its own writer thread, so the shared sink gets every
    frame of source 0 before any of source 1.

    No sleeps order it: source 1's first frame is in its capture before source 0 gives any (source 0's generator
    waits until source 1's asks for its second frame); source 0's last write waits until either a frame of source 1
    reached the shared sink (what a loop that does not wait for the writer does: the order is then broken, always)
    or the loop went idle, source 0 done, without taking source 1's frame (the loop waiting for the writer). Each
    wait is bounded: a stuck run fails the test instead of hanging it."""
    second_ready, release = threading.Event(), threading.Event()
    segmented = []  # the sources of the frames segmented, in order (on_result, the loop's thread)

    def first_waits(index):
        if index == 0:
            assert second_ready.wait(HANG), "source 1 never read its first frame"

    def second_reads(index):
        if index == 1:  # asked for its second frame: its first one is in its capture, ready to be taken
            second_ready.set()

    def before_write(frame):
        if frame.stream == 1:
            release.set()  # a frame of source 1 is at the shared sink
        elif frame.index == 2:  # source 0's last frame
            assert release.wait(HANG), "source 0's last write was never released"

    shared = ResultRecorder("shared", before_write=before_write)
    sources = [file_source("first", 3, first_waits), file_source("second", 2, second_reads)]
    runner = _runner(sources, [[], []], [shared], in_order=True)
    runner.on_result = lambda frame, result, stats: segmented.append(frame.stream)
    idle = runner._ready.wait

    def idle_wait(timeout=None):  # the loop has nothing to take: with source 0 done, source 1 was held back
        if runner.streams[0].done and 1 not in segmented:
            release.set()
        return idle(timeout)

    runner._ready.wait = idle_wait
    runner.run()
    assert shared.seen == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1)]
    assert segmented == [0, 0, 0, 1, 1]
