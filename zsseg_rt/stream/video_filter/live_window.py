"""``--live``'s window on the exact CPU path (docs/video.md, "Live video"): where no reduced precision passed the
accuracy gate (ONNX Runtime fp32 on the CPU), the encoder's window is chosen on the first frame from a measured
warm-up so that the loop reaches :data:`LIVE_FPS_TARGET` frames a second, and said in one line.

The warm-up times, on this machine and this frame, one propagated frame (the frame again on a stream of its own:
the flow, its check and the propagation) and one keyframe (the Engine's call, after one untimed call that opens the
window's graphs) at each window the bundle can run (``window_candidates``: 512, 448, 384, 320, 256), largest first;
the expected rate at a
window is ``K / (keyframe + (K - 1) * propagated)`` with a keyframe every K frames. It keeps the largest window
whose expected rate reaches the target (the smallest measured when none does, said so), and stops measuring there.
``Engine(window_size=N)`` (``--window-size N``) pins the window: nothing is measured. On a reduced precision that
passed the gate, a GPU or a device pipeline nothing changes unless a window is pinned.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any, Callable, Dict, Optional, Sequence

__all__ = ["LIVE_FPS_TARGET", "WindowChoice", "choose_window", "expected_fps", "live_window_reason", "measure_window"]

LIVE_FPS_TARGET = 5.0  # frames a second end to end on 2 cores (--live's target)
TIMED_CALLS = 2  # keyframe calls timed at each window after the untimed one (the fastest kept: a loaded machine)
MISSED_SPANS = 2  # LoopCheck: spans in a row below the target that step the window down (one: maybe a pause)
CLOCK: Callable[[], float] = time.perf_counter  # the warm-up's clock, seconds (tests give their own: no timing)
log = logging.getLogger("zsseg_rt")


def expected_fps(keyframe: float, propagated: float, every: int) -> float:
    """Frames a second with a keyframe (``keyframe`` seconds) every ``every`` frames and ``propagated`` seconds for
    each frame between."""
    every = max(1, int(every))
    total = keyframe + (every - 1) * propagated
    return every / total if total > 0 else float("inf")


@dataclasses.dataclass
class WindowChoice:
    """The window ``--live`` chose: ``size``, its ``fps`` (expected), the full window's (``full_size``,
    ``full_fps``), each measured window's expected rate (``measured``), whether the target is ``met``, ``path``
    (backend and precision) and ``line``, the sentence said at the start."""

    size: int
    fps: float
    full_size: int
    full_fps: float
    measured: Dict[int, float]
    met: bool
    every: int
    path: str
    target: float = LIVE_FPS_TARGET
    unavailable: str = ""  # why no smaller window was measured (no onnx package to rewrite the graphs)
    loop_fps: Optional[float] = None  # the loop's own rate at ``stepped_from`` that missed the target (LoopCheck)
    stepped_from: Optional[int] = None

    @property
    def line(self) -> str:
        full = f"{self.full_size}x{self.full_size}"
        goal = (
            f"target {self.target:g}{'' if self.met else ' not met on this CPU'}, a keyframe every {self.every} frames"
        )
        where = f"measured on the first frame on this CPU ({self.path})"
        if self.size == self.full_size:
            line = f"live window: the full {full}: expected {self.fps:.1f} fps ({goal}), {where}"
            return line + (f"; a smaller window {self.unavailable}" if self.unavailable and not self.met else "")
        if self.stepped_from is not None:
            return (
                f"live window: {self.size}x{self.size} instead of {full}: the loop ran {self.loop_fps:.1f} fps at "
                f"{self.stepped_from}x{self.stepped_from} (target {self.target:g}; expected {self.fps:.1f} from the "
                f"warm-up, the loop's other work not in it), so one size smaller; labels at {self.size} differ from the "
                f'full window\'s (docs/video.md, "Live video"); --window-size {self.full_size} keeps it'
            )
        smallest = "" if self.met else ", the smallest measured"
        return (
            f"live window: {self.size}x{self.size} instead of {full}{smallest}: expected {self.fps:.1f} fps ({full}: "
            f"{self.full_fps:.1f} fps; {goal}), {where}; labels at {self.size} differ from the full window's "
            f'(docs/video.md, "Live video"); --window-size {self.full_size} keeps it'
        )

    def as_dict(self) -> Dict[str, Any]:
        """For ``--stats-json`` (``"preset"`` ``"window_choice"``)."""
        return {
            "size": self.size,
            "fps": round(self.fps, 3),
            "full_size": self.full_size,
            "full_fps": round(self.full_fps, 3),
            "measured": {str(size): round(fps, 3) for size, fps in self.measured.items()},
            "met": self.met,
            "loop_fps": None if self.loop_fps is None else round(self.loop_fps, 3),
            "stepped_from": self.stepped_from,
            "path": self.path,
            "line": self.line,
        }


def choose_window(
    candidates: Sequence[int],
    keyframe_seconds: Callable[[int], float],
    propagated: float,
    every: int,
    path: str = "onnxruntime fp32",
    target: float = LIVE_FPS_TARGET,
) -> WindowChoice:
    """The largest of ``candidates`` (largest first) whose expected rate (:func:`expected_fps` of
    ``keyframe_seconds(size)``, called once per window, largest first, none after the first that meets the target)
    reaches ``target``; the smallest when none does."""
    if not candidates:
        raise ValueError("choose_window: no window to measure")
    measured: Dict[int, float] = {}
    for size in candidates:
        measured[size] = expected_fps(keyframe_seconds(size), propagated, every)
        if measured[size] >= target:
            break
    size = next((s for s, fps in measured.items() if fps >= target), list(measured)[-1])
    first = candidates[0]
    return WindowChoice(
        size, measured[size], first, measured[first], measured, measured[size] >= target, every, path, target
    )


def live_window_reason(engine: Any, preset: Any) -> Optional[str]:
    """None where ``--live`` chooses the window (the live preset's Engine on ONNX Runtime fp32 on the CPU, host
    path, no window pinned), else why not (a debug line)."""
    pipeline = getattr(engine, "pipeline", None)
    options = getattr(engine, "options", None)
    if preset is None or pipeline is None or not hasattr(pipeline, "use_window") or options is None:
        return "not the live preset's Engine"
    if options.window_size is not None:
        return f"window_size={options.window_size} pinned"
    if getattr(pipeline, "window_choice", None) is not None:
        return "chosen on this Engine's first live frame already"
    backend = getattr(pipeline.backend, "runner", pipeline.backend)
    path = f"{getattr(backend, 'name', '?')} {getattr(backend, 'precision', None) or 'fp32'}"
    if path != "onnxruntime fp32" or getattr(backend, "runs_on_gpu", False) or pipeline.device is not None:
        return f"{path}{' on a GPU' if getattr(backend, 'runs_on_gpu', False) else ''}: the full window runs"
    return None


def missing_rewrite(pipeline: Any) -> str:
    """Why no smaller window can run here: a fixed-size graph and no onnx package to rewrite it ("needs the onnx
    package (...), which this environment lacks (onnx not installed): pip install ..."), else ""."""
    from zsseg_rt.runtime.pipelines.window import NEEDS, any_size

    missing = NEEDS.missing() if not any_size(pipeline.bundle_meta) else []
    return NEEDS.refusal("", missing, who="a smaller window").removeprefix("a smaller window ") if missing else ""


def measure_window(
    engine: Any,
    keyframe: Callable[[], Any],
    propagated: Callable[[], Any],
    every: int,
    clock: Optional[Callable[[], float]] = None,
    target: float = LIVE_FPS_TARGET,
) -> WindowChoice:
    """Measure (module docstring) and set the chosen window on ``engine.pipeline`` (``use_window``; the choice kept
    as its ``window_choice``). ``keyframe()``: one keyframe's Engine call on the first frame; ``propagated()``: that
    frame through the segmenter on a stream of the warm-up's own, called twice (the first is its keyframe, the second,
    timed, a propagated frame: the flow, its check and the propagation); ``clock``: the time in seconds (None:
    :data:`CLOCK`)."""
    from zsseg_rt.runtime.pipelines.window import window_candidates

    clock = clock or CLOCK
    pipeline = engine.pipeline
    between = 0.0
    if every > 1:
        propagated()  # (untimed: the warm-up stream's keyframe)
        start = clock()
        propagated()
        between = clock() - start

    def keyframe_seconds(size: int) -> float:
        pipeline.use_window(size)
        keyframe()  # untimed: opens the window's sessions
        times = []
        for _ in range(TIMED_CALLS):
            begin = clock()
            keyframe()
            times.append(clock() - begin)
        return min(times)

    backend = getattr(pipeline.backend, "runner", pipeline.backend)
    path = f"{getattr(backend, 'name', '?')} {getattr(backend, 'precision', None) or 'fp32'}"
    candidates = window_candidates(pipeline.bundle_meta)
    unavailable = missing_rewrite(pipeline)
    if unavailable:  # the full window needs no rewrite: measured, and kept where it reaches the rate
        candidates = candidates[:1]
    log.info(
        "live window: timing the encoder at %s on the first frame (%s on this CPU; the largest that reaches %g fps "
        "is kept)",
        ", ".join(map(str, candidates)),
        path,
        target,
    )
    choice = choose_window(candidates, keyframe_seconds, between, every, path, target)
    choice = dataclasses.replace(choice, unavailable=unavailable)
    if pipeline.window_size != choice.size:
        pipeline.use_window(choice.size)
    pipeline.window_choice = choice  # one choice per Engine: its next segmenters run it as it is
    log.log(logging.WARNING if unavailable and not choice.met else logging.INFO, "%s", choice.line)
    return choice


class LoopCheck:
    """After the warm-up, the loop's own rate judged: the warm-up times the segmenter alone, the loop also reads its
    source and writes its outputs. Over each span of ``span`` frames of the first stream (from the first frame after
    the warm-up; everything between two frames counted), a rate below the target in two spans in a row steps the
    window one candidate down (said in one line), until the rate is met or the smallest candidate runs: one span that
    misses is not enough, since an application that pauses once (a breakpoint, a dialog: time between two frames that
    is not the loop's) would otherwise shrink the window for the rest of the run. ``tick`` is called at each call of
    the segmenter (kept on the pipeline as ``loop_check``, removed from it once nothing is left to check)."""

    def __init__(self, choice: WindowChoice, candidates: Sequence[int], span: int, clock: Callable[[], float]):
        self.choice, self.span, self.clock = choice, max(1, int(span)), clock
        self.smaller = [size for size in candidates if size < choice.size]
        self.start: Optional[float] = None
        self.frames = 0
        self.stream: Any = None  # the first stream seen: its frames are counted
        self.owner: Any = None  # the segmenter whose loop the span times
        self.missed = 0  # spans in a row below the target at this size (MISSED_SPANS of them step it down)

    def tick(self, pipeline: Any, streams: Sequence[Any], owner: Any = None) -> bool:
        """At a call of the segmenter ``owner`` with frames of ``streams``: False once the check is over (then
        removed from the pipeline). Another segmenter of the Engine (another loop: the time between the two loops is
        no frame's) starts the span again."""
        now = self.clock()
        if self.start is None or owner is not self.owner:
            self.start, self.frames, self.stream, self.owner, self.missed = now, 0, streams[0], owner, 0
            return True
        self.frames += list(streams).count(self.stream)
        if self.frames < self.span:
            return True
        fps = self.frames / max(now - self.start, 1e-9)
        if fps >= self.choice.target or not self.smaller:
            pipeline.loop_check = None
            return False
        self.missed += 1
        if self.missed < MISSED_SPANS:  # once may be a pause of the application's: the next span decides
            self.start, self.frames = now, 0
            return True
        self.missed = 0
        stepped = self.choice.size
        size = self.smaller.pop(0)
        pipeline.use_window(size)
        self.choice = dataclasses.replace(self.choice, size=size, loop_fps=fps, stepped_from=stepped)
        pipeline.window_choice = self.choice
        log.warning("%s", self.choice.line)
        self.start, self.frames = now, 0
        if not self.smaller:
            pipeline.loop_check = None
        return bool(self.smaller)
