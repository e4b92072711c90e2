"""The device pipeline's post-processing kernel, chosen by measurement on the device it runs on.

``ops.segment_windows``' CUDA sigmoid path has several exact kernels (``ops.segment_windows_kernels()``: tiled,
columns, columns_chain, warps, ordered, ordered_prebound; docs/gpu.md, "Post-processing candidates"); which one is
fastest depends on the GPU, the geometry, the class count and the logits (``ordered`` prunes most where a few classes
win; ``ordered_prebound`` is ``ordered`` with its tiles' bounds from a first launch), and a lease is
too rare to decide it for every user by a commit. So the Engine's
``postprocess_kernel`` option (``--postprocess-kernel``) says how a device pipeline picks its kernel:

* ``"auto"`` (default): the first time the pipeline post-processes a geometry (the window logits' shape
  ``[n, C, h, w]``, the windows, the rescaled and the output sizes), on the first frame of that kind, which runs
  eagerly BEFORE ``FrameGraphs`` captures its graph (a graph replays the kernel its plan named when captured), every
  candidate runs on that frame's logits into scratch outputs of its own (each downloaded, logged as
  ``kernel_check_labels`` / ``kernel_check_scores``);
* each candidate's labels and scores are checked against the reference candidate's (the first: ``tiled``, the
  kernel the library ran before): scores within :data:`SCORE_TOL` where both are numbers and NaN at the same pixels,
  at least :data:`LABELS_MIN` of the labels equal (the bounds of ``checks/postprocess_variants.py``); a candidate
  that raises or differs is never chosen (the report says why); the reference itself raising is the frame's error;
* the candidates that passed are timed by the pipeline's clock (:class:`EventTimer`: the device time between two
  timing events around ``repeats`` launches on the pipeline's stream; a memory without timing events: the stream
  synchronised around them, host time), alternating over ``rounds`` rounds, the median per candidate; the fastest is
  kept for that geometry (a tie: the earlier in the list);
* another class count (a new vocabulary) or frame size is another geometry: chosen again on its first frame;
* a candidate's name pins it: nothing is timed or checked.

The choice belongs to the pipeline (shared with its in-flight lanes, ``in_flight.py``), and every prepared launch
names its kernel (``ops.SegmentWindowsPlan(kernel=...)``): no process-wide setting is read or written, so another
Engine, or ``_C._testing.segment_windows_variant`` (``checks/postprocess_variants.py``), changes nothing under it.
It costs, once per geometry, ``len(candidates) * (1 + rounds * repeats)`` launches (48) and a few synchronisations,
on the first frame's post-processing stage (an estimate, never measured: ~5 ms at the 100-200 us a launch the H100 and
H200 measured for ``tiled`` at C=171).

:meth:`PostprocessKernels.report` is what ``Engine.device_stats["postprocess_kernel"]``, ``zsseg camera``'s summary
(``--stats-json`` and its closing line) and ``checks/gpu_engine.py``'s record show. Tested on the emulated CUDA
runtime with an injected timer (python_tests/runtime/test_postprocess_choice_cuda.py): no test depends on timing.
"""

from __future__ import annotations

import collections
import statistics
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from zsseg_rt.options import ENGINE_OPTIONS, POSTPROCESS_KERNELS

__all__ = ["AUTO", "CANDIDATES", "EventTimer", "PostprocessKernels", "check_setting", "describe", "where_it_applies"]

AUTO = "auto"
# ops.segment_windows_kernels() as the option's row lists them (zsseg_rt.options, read without the native module;
# python_tests/runtime/test_postprocess_choice.py checks they are the native list). The first is the reference.
CANDIDATES: Tuple[str, ...] = tuple(POSTPROCESS_KERNELS)
SCORE_TOL, LABELS_MIN = 2e-6, 0.999  # checks/postprocess_variants.py: the op's tolerance between kernels
REPEATS, ROUNDS = 5, 3
KEPT = 16  # geometries remembered (least recently chosen dropped first)

# timer.time(name, launch, repeats) -> seconds per launch of ``launch()`` (which enqueues one launch)
Timer = Any


def check_setting(setting: Any, candidates: Sequence[str] = CANDIDATES) -> None:
    """Refuse, in one line (ValueError), a ``postprocess_kernel`` its row does not take, in the row's words (the
    Engine's and the flag's: ``postprocess_kernel: expected one of 'auto', 'tiled', ..., got 'fastest'``); with
    fewer ``candidates`` (a test's), a name the row takes but not among them, in the same words."""
    ENGINE_OPTIONS["postprocess_kernel"].check_value(setting)
    if setting != AUTO and setting not in candidates:
        shown = ", ".join(repr(name) for name in (AUTO, *candidates))
        raise ValueError(f"postprocess_kernel: expected one of {shown}, got {setting!r}")


class EventTimer:
    """Device time per launch on ``memory``'s stream: timing events around ``repeats`` launches (``TorchMemory`` on
    CUDA, ``CudaMemory`` with a driver's events), else the stream synchronised around them (host time)."""

    def __init__(self, memory: Any):
        self.memory = memory
        api = ("timing_event", "record_timing_event", "elapsed_ms", "release_timing_event")
        clock = memory.stage_clock()  # EventClock where the memory has timing events
        self.events = bool(getattr(clock, "in_graph", False)) and all(hasattr(memory, name) for name in api)
        self.clock = "timing events" if self.events else "host perf_counter around a synchronised stream"

    def time(self, name: str, launch: Callable[[], None], repeats: int) -> float:
        memory = self.memory
        if not self.events:
            memory.synchronize()
            start = time.perf_counter()
            for _ in range(repeats):
                launch()
            memory.synchronize()
            return (time.perf_counter() - start) / repeats
        first, last = memory.timing_event(), memory.timing_event()
        try:
            memory.record_timing_event(first)
            for _ in range(repeats):
                launch()
            memory.record_timing_event(last)
            memory.synchronize()
            return memory.elapsed_ms(first, last) / 1e3 / repeats
        finally:
            memory.release_timing_event(first)
            memory.release_timing_event(last)


def mismatch(got: Tuple[np.ndarray, np.ndarray], want: Tuple[np.ndarray, np.ndarray]) -> Optional[str]:
    """Why a candidate's ``(labels, scores)`` are not the reference's (the bounds above), or None."""
    labels, scores = got
    nan = np.isnan(scores) != np.isnan(want[1])
    if nan.any():
        return f"{int(np.count_nonzero(nan))} scores are NaN in one kernel only"
    both = ~np.isnan(scores)
    diff = float(np.max(np.abs(scores[both] - want[1][both]), initial=0.0))
    if diff > SCORE_TOL:
        return f"scores differ from the reference's by up to {diff:.3g} (bound {SCORE_TOL:g})"
    equal = float(np.mean(labels == want[0])) if labels.size else 1.0
    if equal < LABELS_MIN:
        return f"{100 * equal:.3f} % of the labels equal the reference's (at least {100 * LABELS_MIN:g} % must)"
    return None


def _geometry_entry(geometry: tuple) -> Dict[str, Any]:
    shape, windows, _head, scaled, out = geometry
    return {"classes": int(shape[1]), "logits": list(shape), "windows": len(windows), "scaled": list(scaled),
            "output": list(out)}  # fmt: skip


class PostprocessKernels:
    """The post-processing kernel of one device pipeline per geometry (see the module docstring).

    Args:
        setting: "auto" or a candidate's name (the Engine's ``postprocess_kernel``).
        timer: ``time(name, launch, repeats) -> seconds per launch`` (None: an :class:`EventTimer` of the memory at
            each choice; tests inject one: no timing in a test).
        repeats, rounds: launches per timed sample, samples per candidate (alternating).
        candidates: the kernels (default: :data:`CANDIDATES`); the first is the reference.
    """

    def __init__(self, setting: str = AUTO, timer: Optional[Timer] = None, repeats: int = REPEATS,
                 rounds: int = ROUNDS, candidates: Optional[Sequence[str]] = None):  # fmt: skip
        self.candidates = tuple(CANDIDATES if candidates is None else candidates)
        check_setting(setting, self.candidates)
        if int(repeats) < 1 or int(rounds) < 1:
            raise ValueError(f"repeats and rounds must be >= 1, got {repeats} and {rounds}")
        self.setting = setting
        self.timer = timer
        self.repeats, self.rounds = int(repeats), int(rounds)
        self._chosen: "collections.OrderedDict[tuple, Dict[str, Any]]" = collections.OrderedDict()
        self._lock = threading.Lock()  # in-flight lanes share it: one choice per geometry, timed by one lane
        self.timed = 0  # choices made by timing (tests count them)

    def kernel_for(self, geometry: tuple, memory: Any, make_plan: Callable[[str, Tuple[Any, Any]], Any]) -> str:
        """The kernel of ``geometry`` = ``(logits shape, windows, head size, rescaled size, output size)``: the
        pinned one, the one chosen before, or chosen now by :meth:`_choose` (``make_plan(name, (labels, scores))``: a
        prepared launch of that kernel on this frame's logits into those outputs). Refused while ``memory`` is
        being captured into a CUDA graph (a choice is made on an eager frame, never inside a capture)."""
        with self._lock:
            entry = self._chosen.get(geometry)
            if entry is None:
                if self.setting != AUTO:
                    entry = dict(_geometry_entry(geometry), kernel=self.setting, how="pinned")
                elif getattr(memory, "capturing", False):
                    raise RuntimeError(
                        "postprocess_kernel='auto': a new geometry's kernel is chosen on an eager frame, not inside "
                        f"a CUDA graph capture (geometry {_geometry_entry(geometry)})"
                    )
                else:
                    entry = self._choose(geometry, memory, make_plan)
                self._chosen[geometry] = entry
                while len(self._chosen) > KEPT:
                    self._chosen.popitem(last=False)
            return str(entry["kernel"])

    def _choose(self, geometry: tuple, memory: Any, make_plan) -> Dict[str, Any]:
        out_hw = tuple(int(v) for v in geometry[4])
        timer = self.timer if self.timer is not None else EventTimer(memory)
        failed: Dict[str, str] = {}
        plans: Dict[str, Any] = {}
        buffers: List[Any] = []
        try:
            for name in self.candidates:  # each into outputs of its own, checked before any is timed
                results = (memory.empty(out_hw, np.int32), memory.empty(out_hw, np.float32))
                buffers += results
                try:
                    plan = make_plan(name, results)
                    with memory.stream_context():
                        plan.launch(memory.stream)
                except Exception as exc:  # noqa: BLE001 - a candidate that raises is never chosen (said why)
                    if name == self.candidates[0]:
                        raise RuntimeError(f"postprocess_kernel='auto': the reference kernel {name!r} failed: "
                                           f"{type(exc).__name__}: {exc}") from exc  # fmt: skip
                    failed[name] = f"{type(exc).__name__}: {exc}"
                    continue
                plans[name] = (plan, results)
            found = self._download(memory, {name: results for name, (_, results) in plans.items()}, out_hw)
            reference = found[self.candidates[0]]
            for name in list(plans):
                why = mismatch(found[name], reference)
                if why is not None:
                    failed[name] = why
                    del plans[name]
            samples: Dict[str, List[float]] = {name: [] for name in plans}
            with memory.stream_context():
                for _ in range(self.rounds):
                    for name, (plan, _) in plans.items():  # alternating: drift affects every candidate alike
                        launch = lambda plan=plan: plan.launch(memory.stream)  # noqa: E731
                        samples[name].append(float(timer.time(name, launch, self.repeats)))
        finally:
            memory.synchronize()
            for buffer in buffers:
                memory.release(buffer)
        us = {name: round(1e6 * statistics.median(values), 2) for name, values in samples.items()}
        best = min(us, key=lambda name: (us[name], self.candidates.index(name)))
        self.timed += 1
        clock = getattr(timer, "clock", type(timer).__name__)
        return dict(_geometry_entry(geometry), kernel=best, how="timed", us=us, failed=failed, clock=clock,
                    repeats=self.repeats, rounds=self.rounds)  # fmt: skip

    @staticmethod
    def _download(memory: Any, outputs: Dict[str, Tuple[Any, Any]], out_hw) -> Dict[str, Tuple[np.ndarray, np.ndarray]]:
        """Each candidate's ``(labels, scores)`` on the host (one synchronisation)."""
        hosts = {}
        with memory.stream_context():
            for name, (labels, scores) in outputs.items():
                host = (memory.host_buffer(out_hw, np.int32), memory.host_buffer(out_hw, np.float32))
                memory.download("kernel_check_labels", labels, host[0])
                memory.download("kernel_check_scores", scores, host[1])
                hosts[name] = host
        memory.synchronize()
        found: Dict[str, Tuple[np.ndarray, np.ndarray]] = {}
        for name, (labels, scores) in hosts.items():
            memory.host_access(labels, False, "kernel check labels")
            memory.host_access(scores, False, "kernel check scores")
            found[name] = (labels.copy(), scores.copy())
            memory.release(labels)
            memory.release(scores)
        return found

    def report(self) -> Dict[str, Any]:
        """The setting, the candidates and, per geometry post-processed (the latest last), the kernel and how it was
        chosen: ``how`` "pinned", or "timed" with ``us`` (each candidate that passed its check: the median device
        time per launch, microseconds), ``failed`` (candidate -> why) and the ``clock``."""
        with self._lock:
            chosen = [dict(entry) for entry in self._chosen.values()]
        return {"setting": self.setting, "candidates": list(self.candidates), "reference": self.candidates[0],
                "choices": chosen}  # fmt: skip


def describe(report: Optional[Dict[str, Any]]) -> str:
    """One line of a :meth:`PostprocessKernels.report` (``zsseg camera``'s closing lines), or "" without one."""
    if not report or not report.get("choices"):
        return ""
    parts = []
    for entry in report["choices"]:
        where = f"C={entry['classes']} {entry['output'][0]}x{entry['output'][1]}"
        if entry["how"] == "pinned":
            parts.append(f"{entry['kernel']} at {where} (pinned)")
            continue
        times = ", ".join(f"{name} {us:.1f} us" for name, us in entry["us"].items())
        fails = "".join(f"; {name} failed its check: {why}" for name, why in entry.get("failed", {}).items())
        parts.append(f"{entry['kernel']} at {where} (timed: {times}{fails})")
    return "post-processing kernel: " + "; ".join(parts)


def where_it_applies(setting: Any, device: Any, mode: str, flag: bool = False) -> Optional[str]:
    """The line a windowed pipeline logs when ``postprocess_kernel`` pins a kernel that nothing will launch (no
    device pipeline on a GPU, or a mode whose frames take the host path), else None ("auto" says nothing); ``flag``:
    in the flags' words (``--postprocess-kernel columns``, ``--mode fast``), the command line's."""
    if isinstance(setting, PostprocessKernels):
        return None
    check_setting(setting)
    if setting == AUTO:
        return None
    memory = getattr(device, "memory", None)
    if device is None or memory is None or memory.kind == "host" or not getattr(memory, "cuda", True):
        where = "this Engine post-processes its frames on the host (no device pipeline on a GPU)"
    elif mode != "exact":
        where = f"{'--mode ' + mode if flag else f'mode={mode!r}'} post-processes its frames on the host path"
    else:
        return None
    given = f"{ENGINE_OPTIONS['postprocess_kernel'].flag} {setting}" if flag else f"postprocess_kernel={setting!r}"
    return f"{given} picks the CUDA post-processing kernel of the device pipeline only: {where}, so it changes nothing here"
