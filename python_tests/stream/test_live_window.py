"""``--live``'s window on the exact CPU path (issue 90 item 3; ``zsseg_rt/stream/video_filter/live_window.py``): the
window chosen from a warm-up measured with an injected clock (no timing here), the line that says what it trades, a
pinned window (``Engine(window_size=N)``, ``--window-size N``) and a bad one refused in one line."""

import importlib.util
import itertools
import logging
from types import SimpleNamespace

import numpy as np
import pytest

from zsseg_rt.stream.video_filter import live_window
from zsseg_rt.stream.video_filter.live_window import choose_window, live_window_reason, measure_window

CLASSES = "a,b,c"
# the tiny bundle's graphs are fixed-size: a smaller window rewrites them with onnx (the window extra), which a
# runtime-only install lacks (there the test below checks what --live does without it)
needs_onnx = pytest.mark.skipif(
    importlib.util.find_spec("onnx") is None, reason='a smaller window needs onnx: pip install "zsseg_rt[window]"'
)
# seconds of one keyframe at each window of a 512 graph (ViT-B/16-like), and of one propagated frame
COSTS = {512: 1.0, 448: 0.8, 384: 0.6, 320: 0.45, 256: 0.3}
PROPAGATED = 0.05


class _Pipeline:
    """A windowed pipeline's face to the chooser: its window, set by ``use_window`` (each call recorded)."""

    def __init__(self, size=512, patch=16):
        from zsseg_rt.bundle import Names

        any_size = {"image": {"dynamic_axes": {Names.IMAGE: {"2": "height", "3": "width"}}}}  # (no rewrite needed)
        self.bundle_meta = SimpleNamespace(image_size=size, patch_size=patch, io=any_size)
        self.window_size, self.set = size, []

    def use_window(self, size):
        self.window_size = size
        self.set.append(size)


class _Clock:
    """The injected clock: a keyframe call and a propagated frame advance it by their cost (at the current window)."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def _measure(costs, every=4, target=5.0):
    clock, pipeline = _Clock(), _Pipeline()
    engine = SimpleNamespace(pipeline=pipeline, backend=SimpleNamespace(name="onnxruntime", precision="fp32"))
    pipeline.backend = engine.backend

    def keyframe():
        clock.now += costs[pipeline.window_size]

    def propagated():
        clock.now += PROPAGATED

    choice = measure_window(engine, keyframe, propagated, every, clock=clock, target=target)
    return choice, pipeline


def test_the_largest_window_that_reaches_the_rate_is_kept(caplog):
    """512: 4 / (1.0 + 3 * 0.05) = 3.5 fps, 448: 4.2, 384: 5.3 >= 5: 384 is kept, and 320 and 256 are never
    measured; the line says the window, its expected rate, the full window's and how to keep it."""
    with caplog.at_level(logging.INFO, logger="zsseg_rt"):
        choice, pipeline = _measure(COSTS)
    assert (choice.size, choice.full_size, choice.met) == (384, 512, True)
    assert pipeline.set == [512, 448, 384] and pipeline.window_size == 384  # measured largest first, then kept
    assert list(choice.measured) == [512, 448, 384]
    assert choice.fps == pytest.approx(4 / 0.75) and choice.full_fps == pytest.approx(4 / 1.15)
    line = choice.line
    assert line == caplog.records[-1].getMessage() and "\n" not in line
    assert line == (
        "live window: 384x384 instead of 512x512: expected 5.3 fps (512x512: 3.5 fps; target 5, a keyframe every 4 "
        "frames), measured on the first frame on this CPU (onnxruntime fp32); labels at 384 differ from the full "
        'window\'s (docs/video.md, "Live video"); --window-size 512 keeps it'
    )
    assert choice.as_dict()["measured"] == {"512": 3.478, "448": 4.211, "384": 5.333}


def test_the_full_window_is_kept_where_it_reaches_the_rate():
    """A machine where 512 already reaches 5 fps: nothing smaller is measured, the full window runs."""
    choice, pipeline = _measure({size: cost / 4 for size, cost in COSTS.items()})
    assert choice.size == 512 and pipeline.set == [512] and choice.met
    assert choice.line == (
        "live window: the full 512x512: expected 10.0 fps (target 5, a keyframe every 4 frames), measured on the "
        "first frame on this CPU (onnxruntime fp32)"
    )


def test_where_no_window_reaches_the_rate_the_smallest_runs_and_the_line_says_so():
    choice, pipeline = _measure({size: cost * 4 for size, cost in COSTS.items()})
    assert choice.size == 256 and not choice.met and pipeline.set == [512, 448, 384, 320, 256]
    assert choice.line.startswith(
        "live window: 256x256 instead of 512x512, the smallest measured: expected 3.0 fps (512x512: 1.0 fps; target 5 "
        "not met on this CPU, a keyframe every 4 frames)"
    )


def test_the_rate_counts_the_keyframe_interval():
    """Every frame a keyframe (``--live --keyframe-every 1``): the rate is one over the keyframe's time."""
    choice = choose_window([512, 448, 384, 320, 256], COSTS.__getitem__, PROPAGATED, every=1)
    assert choice.size == 256 and choice.fps == pytest.approx(1 / 0.3)  # 3.3 < 5: none reaches it


def test_only_the_exact_cpu_path_of_the_live_preset_chooses():
    """Where a reduced precision passed the gate, a GPU or a device pipeline, or a window is pinned: nothing is
    chosen (the reason, for the debug log)."""
    from zsseg_rt.options import LIVE

    def engine(name="onnxruntime", precision="fp32", gpu=False, device=None, window_size=None):
        runner = SimpleNamespace(name=name, precision=precision, runs_on_gpu=gpu)
        pipeline = SimpleNamespace(backend=SimpleNamespace(runner=runner), device=device, use_window=None)
        return SimpleNamespace(pipeline=pipeline, options=SimpleNamespace(window_size=window_size))

    assert live_window_reason(engine(), LIVE) is None
    assert live_window_reason(engine(), None) == "not the live preset's Engine"
    assert live_window_reason(engine("openvino", "int8"), LIVE) == "openvino int8: the full window runs"
    assert live_window_reason(engine(gpu=True), LIVE) == "onnxruntime fp32 on a GPU: the full window runs"
    assert live_window_reason(engine(device=object()), LIVE) == "onnxruntime fp32: the full window runs"
    assert live_window_reason(engine(window_size=384), LIVE) == "window_size=384 pinned"


class _WarmUpClock:
    """The injected clock of a real segmenter's warm-up: it reads the clock in pairs, a propagated frame's span
    (0.01 s) first, then each keyframe's (``times`` at the window running); once ``loop`` is set, each read is the
    next frame of the loop, ``period`` seconds after the last."""

    def __init__(self, engine, times, period=0.0):
        self.engine, self.times, self.period = engine, times, period
        self.calls, self.now, self.loop = itertools.count(), 0.0, False

    def __call__(self):
        if self.loop:
            self.now += self.period
            return self.now
        index = next(self.calls)
        if index % 2:
            self.now += 0.01 if index == 1 else self.times[self.engine.pipeline.window_size]
        return self.now


def _frames(count=6, size=(120, 160)):
    """A still camera: one frame again and again (the flow is confident: keyframes by the interval only)."""
    frame = np.random.default_rng(0).integers(0, 256, size + (3,), dtype=np.uint8)
    return [frame] * count


@needs_onnx
def test_live_chooses_the_window_on_the_first_frame(tiny_bundle, monkeypatch, caplog):
    """``VideoSegmenter(Engine(bundle, preset=LIVE))`` on ONNX Runtime fp32: the first frame measures the tiny
    bundle's windows (64, 48, 32) with the injected clock, keeps 48 (64 misses the rate, 48 reaches it) and runs
    every frame at 48, labels at the frame's size; ``trades()`` holds the choice. The engine's own test resize is
    then one window of 48, and another segmenter of that Engine measures nothing."""
    from zsseg_rt import Engine
    from zsseg_rt.options import LIVE
    from zsseg_rt.stream import VideoSegmenter

    engine = Engine(tiny_bundle, classes=CLASSES, backend="onnxruntime", device="cpu", preset=LIVE)
    # seconds a keyframe at each window: 4 / 1.03 fps, 4 / 0.53, (not reached)
    monkeypatch.setattr(live_window, "CLOCK", _WarmUpClock(engine, {64: 1.0, 48: 0.5, 32: 0.1}))
    video = VideoSegmenter(engine)
    with caplog.at_level(logging.INFO, logger="zsseg_rt"):
        results = [video(frame) for frame in _frames()]
    choice = video.window_choice
    assert (choice.size, list(choice.measured)) == (48, [64, 48]) and engine.pipeline.window_size == 48
    assert engine.pipeline.test_scale == [48, 48] and engine.pipeline.meta.image_size == 48
    assert [r.labels.shape for r in results] == [(120, 160)] * 6
    assert [r.keyframe for r in results] == [True, False, False, False, True, False]
    assert "live window: 48x48 instead of 64x64" in caplog.text
    trades = video.trades()
    assert trades["window"] == [48, 48] and trades["window_choice"]["size"] == 48
    # one choice per Engine: another segmenter of it (the benchmark's modes, a second stream) measures nothing
    monkeypatch.setattr(live_window, "CLOCK", lambda: pytest.fail("chosen already: not measured again"))
    again = VideoSegmenter(engine)
    assert again(_frames(1)[0]).labels.shape == (120, 160) and again.window_choice is choice


@needs_onnx
def test_a_pinned_window_is_run_and_nothing_is_measured(tiny_bundle, monkeypatch):
    """``Engine(window_size=32)`` (``--window-size 32``): the Engine runs one window of 32 from its first frame,
    with the LIVE preset too, and the segmenter measures nothing (a clock that fails if read)."""
    from zsseg_rt import Engine
    from zsseg_rt.options import LIVE
    from zsseg_rt.stream import VideoSegmenter

    monkeypatch.setattr(live_window, "CLOCK", lambda: pytest.fail("a pinned window is not measured"))
    for preset in (None, LIVE):
        engine = Engine(
            tiny_bundle, classes=CLASSES, backend="onnxruntime", device="cpu", window_size=32, preset=preset
        )
        assert engine.pipeline.window_size == 32 and engine.pipeline.test_scale == [32, 32]
        video = VideoSegmenter(engine)
        result = video(_frames(1)[0])
        assert result.labels.shape == (120, 160) and video.window_choice is None
    full = Engine(tiny_bundle, classes=CLASSES, backend="onnxruntime", device="cpu", window_size=64)
    assert full.pipeline.window_size == 64 and full.pipeline.test_scale == [64, 64]


@pytest.mark.parametrize(
    "value, words",
    [
        (40, "window_size: expected a multiple of 16 in [16, 64] (this bundle's patch and graph window), got 40"),
        (80, "window_size: expected a multiple of 16 in [16, 64] (this bundle's patch and graph window), got 80"),
        (0, "window_size: expected a whole number >= 1 or None, got 0"),
        ("big", "window_size: expected a whole number >= 1 or None, got 'big'"),
    ],
)
def test_a_bad_window_is_refused_in_one_line(tiny_bundle, value, words):
    from zsseg_rt import Engine

    with pytest.raises(ValueError) as refused:
        Engine(tiny_bundle, classes=CLASSES, backend="onnxruntime", device="cpu", window_size=value)
    assert str(refused.value) == words


def test_a_window_with_another_resize_is_refused(tiny_bundle):
    from zsseg_rt import Engine

    with pytest.raises(ValueError, match=r"^window_size=32 fits each image in one window of that size: it takes "):
        Engine(tiny_bundle, classes=CLASSES, backend="onnxruntime", window_size=32, test_scale=(None, 48))


@needs_onnx
def test_a_new_path_runs_the_bundles_window(tiny_bundle):
    """A path switched to between frames (the background preparation's upgrade, ``replace_backend``) runs the bundle's
    own window again: the window's graphs were the old path's."""
    from zsseg_rt import Engine
    from zsseg_rt.options import LIVE
    from zsseg_rt.runtime.backends import WindowedGraphs, make_backend

    engine = Engine(tiny_bundle, classes=CLASSES, backend="onnxruntime", device="cpu", preset=LIVE)
    pipeline = engine.pipeline
    pipeline.use_window(32)
    assert (pipeline.window_size, pipeline.test_scale, pipeline.meta.image_size) == (32, [32, 32], 32)
    backend, plan = make_backend(pipeline.bundle_meta, pipeline.options, roles=pipeline.roles, adapter=WindowedGraphs)
    pipeline.replace_backend(backend, plan)
    assert (pipeline.window_size, pipeline.test_scale, pipeline.meta.image_size) == (64, [64, 64], 64)
    assert engine(_frames(1)[0]).labels.shape == (120, 160)


def test_without_onnx_live_runs_the_full_window_and_says_so(tiny_bundle, monkeypatch, caplog):
    """No onnx package (a runtime-only install): ``--live`` on the exact CPU path cannot rewrite the fixed-size graphs
    for a smaller window; it measures the full window only, runs it, and where it misses the rate says so once at
    warning level with the install line (never a silent fallback); a pinned ``window_size=32`` is refused in one line
    naming the extra."""
    from zsseg_rt import Engine
    from zsseg_rt.options import LIVE
    from zsseg_rt.stream import VideoSegmenter

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnx" else real(name, *a))
    engine = Engine(tiny_bundle, classes=CLASSES, backend="onnxruntime", device="cpu", preset=LIVE)
    # a propagated frame 0.01 s, each keyframe at the full window 1 s (3.9 fps: missed)
    monkeypatch.setattr(live_window, "CLOCK", _WarmUpClock(engine, {64: 1.0}))
    with caplog.at_level(logging.INFO, logger="zsseg_rt"):
        video = VideoSegmenter(engine)
        results = [video(frame) for frame in _frames(3)]
    choice = video.window_choice
    assert engine.pipeline.window_size == 64 and list(choice.measured) == [64] and not choice.met
    assert [r.labels.shape for r in results] == [(120, 160)] * 3
    warned = [
        r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "live window" in r.getMessage()
    ]
    assert warned == [choice.line] and choice.line.startswith(
        "live window: the full 64x64: expected 3.9 fps (target 5 not met on this CPU"
    )
    assert choice.line.endswith(
        "; a smaller window needs the onnx package (a fixed-size graph rewritten for a smaller window), which this "
        'environment lacks (onnx not installed): pip install "zsseg_rt[window]"'
    )
    with pytest.raises(ImportError, match=r'needs the onnx package .*: pip install "zsseg_rt\[window\]"$'):
        Engine(tiny_bundle, classes=CLASSES, backend="onnxruntime", device="cpu", window_size=32)


def test_the_loop_s_own_rate_steps_the_window_down_where_it_misses(caplog):
    """The warm-up times the segmenter alone; the loop also reads its source and writes its outputs. ``LoopCheck``
    judges the loop's own rate over spans of frames after the warm-up: below the target in two spans in a row it steps
    the window one candidate down and says so in one line (the choice kept on the pipeline), until met or the smallest
    runs. Controls: a loop that meets the target keeps the window; so does one that pauses once (one span missed)."""
    from zsseg_rt.stream.video_filter.live_window import LoopCheck, WindowChoice

    def run(period, spans=3, pause_at=None):
        choice = WindowChoice(48, 5.5, 64, 3.0, {64: 3.0, 48: 5.5}, True, 4, "onnxruntime fp32")
        pipeline, now = _Pipeline(size=64), [0.0]
        pipeline.window_size = 48
        check = LoopCheck(choice, [64, 48, 32], span=4, clock=lambda: now[0])
        going = [check.tick(pipeline, [0])]  # the first frame after the warm-up: the span starts
        for index in range(4 * spans):
            now[0] += period + (2.0 if index == pause_at else 0.0)
            going.append(check.tick(pipeline, [0, 1]))  # (stream 0's frames are counted)
        return check, pipeline, going

    with caplog.at_level(logging.INFO, logger="zsseg_rt"):
        check, pipeline, going = run(0.25)  # 4 fps: one size down, then nothing smaller is left
    # (the first span's miss alone steps nothing: the second one's does)
    assert pipeline.set == [32] and pipeline.window_size == 32 and going[4] is True and going[8] is False
    assert pipeline.loop_check is None
    assert pipeline.window_choice is check.choice and (check.choice.size, check.choice.stepped_from) == (32, 48)
    assert check.choice.loop_fps == pytest.approx(4.0) and check.choice.as_dict()["stepped_from"] == 48
    line = (
        "live window: 32x32 instead of 64x64: the loop ran 4.0 fps at 48x48 (target 5; expected 5.5 from the "
        "warm-up, the loop's other work not in it), so one size smaller; labels at 32 differ from the full window's "
        '(docs/video.md, "Live video"); --window-size 64 keeps it'
    )
    assert check.choice.line == line and [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING] == [
        line
    ]
    check, pipeline, going = run(0.15)  # 6.7 fps: met, the window kept, the check done after one span
    assert pipeline.set == [] and pipeline.window_size == 48 and going[:5] == [True] * 4 + [False]
    # the application pauses 2 s once in the first span (1.5 fps there): the next span meets the rate, nothing steps
    check, pipeline, going = run(0.15, pause_at=1)
    assert pipeline.set == [] and pipeline.window_size == 48 and going[:9] == [True] * 8 + [False]
    assert check.choice.stepped_from is None and pipeline.loop_check is None
    # another segmenter's loop starts the span again: the time between two loops is no frame's (a benchmark's rows)
    choice = WindowChoice(48, 5.5, 64, 3.0, {64: 3.0, 48: 5.5}, True, 4, "onnxruntime fp32")
    pipeline, now = _Pipeline(size=64), [0.0]
    check = LoopCheck(choice, [64, 48, 32], span=4, clock=lambda: now[0])
    first, second = object(), object()
    check.tick(pipeline, [0], owner=first)
    now[0] += 100.0  # (the first loop ends; much later another segmenter of the Engine runs)
    going = []
    for _ in range(5):
        going.append(check.tick(pipeline, [0], owner=second))
        now[0] += 0.15
    assert pipeline.set == [] and going == [True] * 4 + [False]  # (without the restart: 0.04 fps, a step down)
    check, pipeline, going = run(0.15)
    assert pipeline.set == [] and pipeline.window_size == 48 and going[:5] == [True] * 4 + [False]
    assert check.choice.stepped_from is None and pipeline.loop_check is None


@needs_onnx
def test_a_slow_loop_after_the_warm_up_runs_a_smaller_window(tiny_bundle, monkeypatch):
    """Through ``VideoSegmenter``: the warm-up keeps 48 (its expected rate reaches 5 fps), the loop's frames then
    come 0.3 s apart (3.3 fps: the source and outputs cost what the warm-up did not time), so after two spans of 8
    frames the window is 32; the choice on the pipeline says why, ``trades()`` too."""
    from zsseg_rt import Engine
    from zsseg_rt.options import LIVE
    from zsseg_rt.stream import VideoSegmenter

    engine = Engine(tiny_bundle, classes=CLASSES, backend="onnxruntime", device="cpu", preset=LIVE)
    clock = _WarmUpClock(engine, {64: 1.0, 48: 0.5, 32: 0.1}, period=0.3)
    monkeypatch.setattr(live_window, "CLOCK", clock)
    video = VideoSegmenter(engine)
    frames = _frames(20)
    sizes = []
    for frame in frames:
        video(frame)
        clock.loop = True  # (after the first frame's warm-up: each read is the next frame's start)
        sizes.append(engine.pipeline.window_size)
    assert sizes == [48] * 16 + [32] * 4  # (the 17th frame, two spans of 8 missed, runs at 32)
    choice = video.window_choice
    assert (choice.size, choice.stepped_from, round(choice.loop_fps, 2)) == (32, 48, 3.33)
    assert video.trades()["window_choice"]["size"] == 32 and engine.pipeline.loop_check is None
