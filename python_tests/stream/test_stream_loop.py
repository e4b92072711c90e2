"""The stream loop with a fake engine: newest-frame dropping, reconnect after source loss, live vocabulary
changes, clean stop on SIGTERM, and no leaked threads."""

from __future__ import annotations

import logging
import os
import signal
import sys
import textwrap
import threading
import time

import cv2
import pytest
from processes import popen_text, says, signalled
from stream_fakes import FakeEngine, FlakyCamera, frame_number, numbered_frame

from zsseg_rt.stream import Backoff, CallableSource, FrameGrabber, NullSink, StreamRunner, parse_class_text

FAST = Backoff(initial=0.01, maximum=0.05)
HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # python_tests: stream_fakes.py


def live_counter(period: float = 0.002, limit: int = 100000):
    """A live source producing numbered frames every ``period`` seconds (a fast camera)."""

    def frames():
        for i in range(limit):
            time.sleep(period)
            yield numbered_frame(i)

    return CallableSource(frames, live=True, name="fake-camera")


def test_slow_consumer_gets_the_newest_frame_and_drops_are_counted(thread_guard):
    engine = FakeEngine(delay=0.03)
    processed = []
    stats = StreamRunner(
        engine,
        live_counter(0.002),
        [NullSink()],
        max_frames=10,
        on_result=lambda f, r, s: processed.append((f.index, frame_number(f.image))),
    ).run()
    assert stats.processed == 10
    assert stats.dropped > 10, stats  # ~15 frames arrive per 30 ms of processing
    assert stats.captured >= stats.processed + stats.dropped - 1
    indices = [index for index, _ in processed]
    assert all(index == number for index, number in processed)
    gaps = [b - a for a, b in zip(indices, indices[1:])]
    assert min(gaps) >= 2 and sum(gaps) / len(gaps) > 5, gaps  # skipped the stale frames in between


def test_every_frame_mode_drops_nothing(thread_guard):
    engine = FakeEngine(delay=0.005)
    seen = []
    source = CallableSource(lambda: (numbered_frame(i) for i in range(30)), live=False)
    stats = StreamRunner(
        engine, source, [], drop_stale=False, on_result=lambda f, r, s: seen.append(frame_number(f.image))
    ).run()
    assert seen == list(range(30)) and stats.dropped == 0


def test_source_lost_mid_stream_reconnects_with_backoff_and_logs(caplog, thread_guard):
    camera = FlakyCamera(outage=2)
    engine = FakeEngine()
    with caplog.at_level(logging.WARNING, logger="zsseg_rt.stream"):
        runner = StreamRunner(
            engine, CallableSource(camera, live=True, name="flaky"), [], drop_stale=False, backoff=FAST, max_frames=12
        )
        stats = runner.run()
    assert stats.processed == 12  # frames from three camera sessions: 5 + 5 + 2
    assert stats.reconnects >= 2 and camera.failed_opens >= 2
    assert "flaky lost; reconnecting" in caplog.text
    assert "unavailable" in caplog.text and "retrying" in caplog.text
    assert runner.grabber.error is None


def test_gives_up_after_max_reconnects_without_crashing(caplog, thread_guard):
    def never():
        raise OSError("no camera")

    with caplog.at_level(logging.ERROR, logger="zsseg_rt.stream"):
        runner = StreamRunner(
            FakeEngine(), CallableSource(never, live=True, name="dead"), [], backoff=FAST, max_reconnects=3
        )
        stats = runner.run()
    assert stats.processed == 0
    assert runner.grabber.error is not None and "giving up on dead after 3" in caplog.text


def test_backoff_doubles_and_caps():
    backoff = Backoff(initial=0.5, maximum=4.0)
    assert [backoff.delay(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 4.0, 4.0]


def test_vocabulary_change_through_the_python_api(thread_guard):
    engine = FakeEngine(["sky", "road"])
    box = {}

    def on_result(frame, result, stats):
        if stats.processed == 3:
            box["runner"].set_classes(["person", "car", "tree"])
        box.setdefault("names", []).append(tuple(result.class_names))

    source = CallableSource(lambda: (numbered_frame(i) for i in range(8)), live=False)
    runner = StreamRunner(engine, source, [], drop_stale=False, on_result=on_result)
    box["runner"] = runner
    stats = runner.run()
    assert box["names"][:3] == [("sky", "road")] * 3
    assert box["names"][3:] == [("person", "car", "tree")] * 5
    assert stats.vocabulary_changes == 1 and stats.classes == ["person", "car", "tree"]
    assert engine.thread_ids == {threading.get_ident()}  # segment() ran in the caller's thread only


def test_vocabulary_change_through_a_watched_file(tmp_path, caplog):
    class_file = tmp_path / "classes.txt"
    class_file.write_text("sky\nroad\n")
    engine = FakeEngine(["sky", "road"])

    def on_result(frame, result, stats):
        if stats.processed == 4:
            class_file.write_text("# live edit\nperson, car\ntree\n")
            os.utime(class_file, (time.time() + 5, time.time() + 5))
        if stats.processed == 8:
            class_file.write_text("car, car")  # refused by set_classes -> old vocabulary kept, a log line
            os.utime(class_file, (time.time() + 10, time.time() + 10))

    source = CallableSource(lambda: (numbered_frame(i) for i in range(12)), live=False)
    runner = StreamRunner(engine, source, [], drop_stale=False, class_file=str(class_file), on_result=on_result)
    runner.watcher.interval = 0.0
    with caplog.at_level(logging.INFO, logger="zsseg_rt.stream"):
        stats = runner.run()
    assert engine.seen_vocab[0] == ("sky", "road")  # the initial file content (unchanged vocabulary)
    assert engine.seen_vocab[4:] == [("person", "car", "tree")] * 8
    assert stats.classes == ["person", "car", "tree"]
    assert "vocabulary now person, car, tree" in caplog.text and "refused" in caplog.text
    assert stats.vocabulary_changes == 1


def test_parse_class_text():
    assert parse_class_text("a, b\n# comment\n\nc # trailing\n") == ["a", "b", "c"]


def test_stop_from_another_thread(thread_guard):
    """stop() from another thread, once 6 frames are processed, ends run(). No clock in it (it was a 0.3 s timer,
    more than 5 frames by then and run() back within 3 s, which a loaded machine can miss): the source is finite,
    so a stop that did not work shows as every frame captured, not as a hang."""
    limit = 2000
    six = threading.Event()

    def count(_frame, _result, stats):
        if stats.processed >= 6:
            six.set()

    source = live_counter(0.005, limit=limit)  # no reconnect: a live source that ends ends the run
    runner = StreamRunner(FakeEngine(), source, [NullSink()], on_result=count, max_reconnects=0)
    stopper = threading.Thread(target=lambda: six.wait() and runner.stop())
    stopper.start()
    stats = runner.run()
    six.set()  # releases the stopper if run() ended before 6 frames (the assertion below then says so)
    stopper.join()
    assert stats.processed >= 6 and stats.captured < limit, (stats.processed, stats.captured)


def test_grabber_stop_closes_the_source(thread_guard):
    closed = []

    class Source(CallableSource):
        def close(self):
            closed.append(True)
            super().close()

    grabber = FrameGrabber(Source(lambda: (numbered_frame(i) for i in range(10**6)), live=True)).start()
    assert grabber.get(timeout=2.0) is not None
    grabber.stop()
    grabber.get(timeout=0)  # drain the frame published before the stop, if any
    assert closed and grabber.finished and grabber.get(timeout=0.1) is None


SIGTERM_SCRIPT = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {here!r})
    from stream_fakes import FakeEngine, numbered_frame
    from zsseg_rt.stream import CallableSource, StreamRunner, VideoFileSink

    def frames():
        i = 0
        while True:
            time.sleep(0.005)
            i += 1
            yield numbered_frame(i, (96, 128))

    def on_result(frame, result, stats):
        if stats.processed == 20:
            print("STREAMING", flush=True)

    stats = StreamRunner(FakeEngine(), CallableSource(frames, live=True), [VideoFileSink({out!r}, fps=25)],
                         on_result=on_result).run()
    print("STOPPED", stats.processed, flush=True)
""")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_cleanly_and_the_mp4_stays_playable(tmp_path, sig):
    out = str(tmp_path / "live.mp4")
    script = SIGTERM_SCRIPT.format(here=HERE, out=out)
    proc = popen_text([sys.executable, "-c", script])
    out_text, err_text = signalled(proc, sig, says(proc, "STREAMING"), timeout=20)
    assert proc.returncode == 0, err_text
    processed = int(out_text.split()[-1])
    assert processed >= 20
    cap = cv2.VideoCapture(out)
    assert cap.isOpened(), "the mp4 was not finalised (moov atom missing?)"
    count = 0
    while cap.read()[0]:
        count += 1
    cap.release()
    assert count == processed


def test_the_signal_handler_takes_no_lock_and_logs_outside_it(caplog, thread_guard):
    """The handler only sets a flag: with the logging handler's lock held by another thread (as the preview's request
    log holds it while it waits for tqdm's write lock, which the interrupted main thread may hold), a handler that
    logged would wait for ever; run() stops at the flag and logs the signal afterwards."""
    runner = StreamRunner(FakeEngine(), live_counter(), [NullSink()], drop_stale=False)
    blocker, logger = logging.Handler(), logging.getLogger("zsseg_rt")
    level = logger.level
    logger.setLevel(logging.DEBUG)  # a log line of the handler would reach the blocked handler (-v)
    logger.addHandler(blocker)
    blocker.acquire()  # another thread's lock, as far as the handler is concerned
    try:
        caller = threading.Thread(target=runner._on_signal, args=(signal.SIGTERM, None), daemon=True)
        caller.start()
        caller.join(2.0)
        assert not caller.is_alive(), "the signal handler waited for a lock"
    finally:
        blocker.release()
        logger.removeHandler(blocker)
        logger.setLevel(level)
    with caplog.at_level(logging.INFO, logger="zsseg_rt"):
        stats = runner.run(handle_signals=False)
    assert stats.processed == 0  # the flag was up before the first step
    assert f"signal {int(signal.SIGTERM)} received: stopping the stream" in caplog.text
