"""The device pipeline's image encoder, chosen by measurement on the device it runs on, as the
post-processing kernel is (``postprocess_choice.py``).

The encoder is 80 % of a frame on the H200 and ran at 29 % of the GPU's GEMM peak (the lease of 2026-11-28). Other
forms of the same graph may run faster on one GPU and not on another, and may change a few labels: so the Engine's
``encoder_variant`` option (``--encoder-variant``) says how a device pipeline picks its encoder, among the variants
its executor offers (:data:`CANDIDATES`, the option row's; the torch backend's, ``export/torch_encoders.py``):

* ``graph``: the bundle's graph at the Engine's precision, as before (fp16 on a GPU: "the fp16 graph"); the
  reference every other variant is checked against;
* ``compiled``: the same graph through ``torch.compile`` (its kernels then captured in the frame's CUDA graph);
* ``fp8``: the encoder's linear layers in FP8 (``torch._scaled_mm``, e4m3 with a per-tensor scale), on a GPU of
  compute capability 8.9 or more.

``"auto"`` (default): on the first frame the pipeline runs (eagerly, before any CUDA graph is captured), each variant
of :data:`AUTO_CANDIDATES` (every one but ``compiled``: a cold ``torch.compile`` of the encoder costs tens of seconds
to minutes of CPU and an on-disk cache, so it runs only where pinned) is built (a variant that cannot run here, :class:`Unavailable`, is skipped with its reason; one that raises is
failed, with the error) and segments that frame; its labels are compared with the reference's: at least
:data:`LABELS_MIN` of them must be equal (the accuracy gate; the figure is kept), else it fails. The reference and
the variants that passed are timed on that frame's encoder input by the pipeline's clock (``postprocess_choice.
EventTimer``: device time between timing events, else a synchronised host clock), alternating over ``rounds``, the
median kept, and the fastest is kept for the pipeline's life (a tie: the earlier). A name pins that variant: it is
built when the pipeline is made (a variant that cannot run here is refused then, in one line), nothing is timed.
An executor that offers no variants (ONNX Runtime, TensorRT) runs its one encoder: ``auto`` keeps ``graph`` with
no timing, and a pinned other variant is refused.

The choice is shared by the Engine's pipeline and its in-flight lanes (each lane's executor switched to it on its first
frame). :meth:`EncoderChoice.report` is ``Engine.device_stats["encoder_variant"]`` and what ``checks/gpu_engine.py``
records (the choice, each candidate's time and gate figure, why one was skipped or failed). Tested on the CPU with
an injected timer and fake executors (python_tests/runtime/test_encoder_choice.py): no test depends on timing.
"""

from __future__ import annotations

import statistics
import threading
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from zsseg_rt.bundle import Names
from zsseg_rt.options import ENCODER_VARIANTS, ENGINE_OPTIONS

from .postprocess_choice import EventTimer

__all__ = ["AUTO", "AUTO_CANDIDATES", "CANDIDATES", "LABELS_MIN", "EncoderChoice", "Unavailable", "describe"]

AUTO = "auto"
CANDIDATES: Tuple[str, ...] = tuple(ENCODER_VARIANTS)  # the option row's; the first is the reference
# What ``auto`` times: every variant but ``compiled``, whose first frame costs a cold torch.compile of the encoder
# (tens of seconds to minutes of CPU, and an inductor cache on disk, neither of which a user of ``auto`` was told
# about): compiled is the user's to pin (``encoder_variant="compiled"``), never run behind their back
AUTO_CANDIDATES: Tuple[str, ...] = tuple(name for name in CANDIDATES if name != "compiled")
LABELS_MIN = 0.995  # the accuracy gate: a variant's labels equal to the reference's on at least this share of pixels
REPEATS, ROUNDS = 5, 3


class Unavailable(Exception):
    """A variant that cannot run here (its message is the reason: no CUDA, a GPU below sm_89, no torch.compile):
    skipped, never chosen."""


def check_setting(setting: Any, candidates: Sequence[str] = CANDIDATES) -> None:
    if setting != AUTO and setting not in candidates:
        raise ValueError(f"encoder_variant must be 'auto' or one of {', '.join(candidates)}, got {setting!r}")


def offered(executor: Any) -> Tuple[str, ...]:
    """The variants ``executor`` can switch to (``encoder_variants()``), the reference alone for an executor without."""
    variants = getattr(executor, "encoder_variants", None)
    return tuple(variants()) if variants is not None else CANDIDATES[:1]


def skips(executor: Any, candidates: Sequence[str]) -> Dict[str, str]:
    """The candidates after the reference that cannot run on ``executor``, and why: not offered, or unavailable on
    its device (``encoder_unavailable(name)``: a reason, found without building the variant)."""
    available = offered(executor)
    check = getattr(executor, "encoder_unavailable", None)
    found: Dict[str, str] = {}
    for name in candidates[1:]:
        why = None if name in available else f"the {type(executor).__name__} runs one encoder (the bundle's graph)"
        if why is None and check is not None:
            why = check(name)
        if why:
            found[name] = str(why)
    return found


class EncoderChoice:
    """The image encoder variant of one device pipeline and its lanes (see the module docstring).

    Args:
        setting: "auto" or a variant's name (the Engine's ``encoder_variant``).
        timer: ``time(name, launch, repeats) -> seconds per launch`` (None: an ``EventTimer`` of the pipeline's
            memory; tests inject one).
        repeats, rounds: encoder runs per timed sample, samples per candidate (alternating).
        candidates: the variants (default :data:`CANDIDATES`); the first is the reference.
        labels_min: the accuracy gate's share of equal labels.
    """

    def __init__(self, setting: str = AUTO, timer: Any = None, repeats: int = REPEATS, rounds: int = ROUNDS,
                 candidates: Optional[Sequence[str]] = None, labels_min: float = LABELS_MIN):  # fmt: skip
        self.candidates = tuple(
            (AUTO_CANDIDATES if setting == AUTO else CANDIDATES) if candidates is None else candidates
        )
        check_setting(setting, self.candidates)
        if int(repeats) < 1 or int(rounds) < 1:
            raise ValueError(f"repeats and rounds must be >= 1, got {repeats} and {rounds}")
        self.setting, self.timer = setting, timer
        self.repeats, self.rounds, self.labels_min = int(repeats), int(rounds), float(labels_min)
        self.chosen: Optional[str] = None if setting == AUTO else setting
        self._report: Dict[str, Any] = {} if setting == AUTO else {"variant": setting, "how": "pinned"}
        self._lock = threading.RLock()  # lanes share it: one choice, made by one pipeline
        self._choosing = False

    @property
    def reference(self) -> str:
        return self.candidates[0]

    def attach(self, executor: Any) -> None:
        """A new pipeline's executor: a pinned variant switched to now (refused in one line where it cannot run)."""
        if self.setting == AUTO:
            return
        if self.setting not in offered(executor):
            raise ValueError(f"encoder_variant={self.setting!r}: the {type(executor).__name__} runs one encoder "
                             f"(the bundle's graph): only {self.reference!r} or 'auto' apply")  # fmt: skip
        try:
            self._use(executor, self.setting)
        except Unavailable as exc:
            raise ValueError(f"encoder_variant={self.setting!r} cannot run here: {exc}") from None

    def ensure(self, pipe: Any, frame: np.ndarray, color_order: str) -> None:
        """Before an eager frame of ``pipe``: its executor runs the chosen variant, chosen now on ``frame`` when
        ``auto`` has not chosen yet (never inside a CUDA graph capture)."""
        with self._lock:
            if self._choosing:  # the frames the choice itself runs
                return
            skipped = skips(pipe.executor, self.candidates) if self.chosen is None else {}
            if self.chosen is None and len(skipped) == len(self.candidates) - 1:  # nothing to choose among
                self.chosen = self.reference
                self._report = {"variant": self.reference, "how": "only candidate", "skipped": skipped}
            if self.chosen is None:
                if getattr(pipe.memory, "capturing", False):
                    raise RuntimeError(
                        "encoder_variant='auto' chooses on an eager frame, not inside a CUDA graph capture"
                    )
                self.choose(pipe, [(frame, color_order)])
            if getattr(pipe.executor, "encoder_variant", self.reference) != self.chosen:
                self._use(pipe.executor, str(self.chosen))

    @staticmethod
    def _use(executor: Any, name: str) -> float:
        """Switch ``executor`` to ``name`` (built on first use); the seconds it took."""
        start = time.perf_counter()
        use = getattr(executor, "use_encoder", None)
        if use is not None:
            use(name)
        elif name != CANDIDATES[0]:
            raise Unavailable(f"the {type(executor).__name__} runs one encoder (the bundle's graph)")
        return time.perf_counter() - start

    def choose(self, pipe: Any, frames: Sequence[Tuple[np.ndarray, str]]) -> Dict[str, Any]:
        """Build, gate and time every candidate on ``frames`` (``[(frame, colour order)]``: the first frame, or the
        engine check's photos) through ``pipe``, keep the fastest that passed; its report (see :meth:`report`)."""
        with self._lock:
            self._choosing = True
            try:
                report = self._choose(pipe, list(frames))
            finally:
                self._choosing = False
            self.chosen, self._report = report["variant"], report
            return dict(report)

    def _labels(self, pipe: Any, frames) -> List[np.ndarray]:
        return [pipe._segment_eagerly(np.ascontiguousarray(f), order, False)[0] for f, order in frames]

    def _choose(self, pipe: Any, frames) -> Dict[str, Any]:
        executor = pipe.executor
        skipped = skips(executor, self.candidates)
        failed: Dict[str, str] = {}
        gate: Dict[str, float] = {}
        build_s: Dict[str, float] = {}
        build_s[self.reference] = round(self._use(executor, self.reference), 3)
        reference = self._labels(pipe, frames)  # the reference raising is the frame's error
        passed = [self.reference]
        for name in (name for name in self.candidates[1:] if name not in skipped):
            try:
                build_s[name] = round(self._use(executor, name), 3)
                labels = self._labels(pipe, frames)
            except Unavailable as exc:
                skipped[name] = str(exc)
                continue
            except Exception as exc:  # noqa: BLE001 - a variant that raises is never chosen (said why)
                failed[name] = f"{type(exc).__name__}: {exc}"
                continue
            equal = sum(int(np.count_nonzero(a == b)) for a, b in zip(labels, reference))
            gate[name] = round(equal / max(sum(int(r.size) for r in reference), 1), 6)
            if gate[name] < self.labels_min:
                failed[name] = (f"{100 * gate[name]:.3f} % of the labels equal the {self.reference} encoder's (at "
                                f"least {100 * self.labels_min:g} % must)")  # fmt: skip
                continue
            passed.append(name)
        us, windows, clock = self._time(pipe, passed, frames[0])
        best = min(us, key=lambda name: (us[name], self.candidates.index(name)))
        self._use(executor, best)
        return {"variant": best, "how": "timed", "us": us, "gate": gate, "labels_min": self.labels_min,
                "skipped": skipped, "failed": failed, "build_s": build_s, "windows": windows, "clock": clock,
                "frames": len(frames), "repeats": self.repeats, "rounds": self.rounds}  # fmt: skip

    def _time(self, pipe: Any, names: Sequence[str], first: Tuple[np.ndarray, str]):
        """Each variant's median seconds per encoder run on ``first``'s windows (the input the last frame left in
        the pipeline's encoder buffer: its values do not change the work), in microseconds."""
        memory, executor = pipe.memory, pipe.executor
        windows = min(len(pipe.frame_plan(first[0])[1]), pipe.max_windows)
        batch = memory.leading(pipe._image, windows)
        timer = self.timer if self.timer is not None else EventTimer(memory)
        samples: Dict[str, List[float]] = {name: [] for name in names}
        with memory.stream_context():
            for _ in range(self.rounds):
                for name in names:  # alternating: drift affects every candidate alike
                    self._use(executor, name)
                    launch = lambda: executor.run("image", {Names.IMAGE: batch})  # noqa: E731
                    samples[name].append(float(timer.time(name, launch, self.repeats)))
        memory.synchronize()
        us = {name: round(1e6 * statistics.median(values), 2) for name, values in samples.items()}
        return us, windows, getattr(timer, "clock", type(timer).__name__)

    def report(self) -> Dict[str, Any]:
        """The setting, the candidates and, once chosen: ``variant``, ``how`` ("pinned", or "timed" with ``us`` (the
        median device time per encoder run, each candidate that passed), ``gate`` (each checked variant's share of
        labels equal to the reference's), ``skipped`` / ``failed`` (name -> why), ``build_s``, ``windows`` (per
        timed run), ``clock``)."""
        with self._lock:
            return {"setting": self.setting, "candidates": list(self.candidates), "reference": self.reference,
                    **self._report}  # fmt: skip


def describe(report: Optional[Dict[str, Any]]) -> str:
    """One line of an :meth:`EncoderChoice.report`, or "" before a choice."""
    if not report or "variant" not in report:
        return ""
    if report["how"] != "timed":
        return f"image encoder: {report['variant']} ({report['how']})"
    times = ", ".join(f"{name} {us:.1f} us" for name, us in report["us"].items())
    gates = "".join(f"; {name} labels {100 * g:.2f} % equal" for name, g in report["gate"].items())
    fails = "".join(f"; {name} failed: {why}" for name, why in report["failed"].items())
    skips = "".join(f"; {name} skipped: {why}" for name, why in report["skipped"].items())
    return f"image encoder: {report['variant']} (timed: {times}{gates}{fails}{skips})"


def where_it_applies(setting: Any, device: Any, flag: bool = False) -> Optional[str]:
    """The line a windowed pipeline logs when ``encoder_variant`` pins a variant where no device pipeline runs the
    frames (the host path: a CPU backend, torch's included), else None ("auto" and the reference say nothing);
    ``flag``: in the flag's words (``--encoder-variant fp8``), the command line's."""
    if isinstance(setting, EncoderChoice) or setting in (AUTO, CANDIDATES[0]) or device is not None:
        return None
    given = f"{ENGINE_OPTIONS['encoder_variant'].flag} {setting}" if flag else f"encoder_variant={setting!r}"
    return (f"{given} picks the image encoder of the device pipeline only: this Engine runs its frames on the host "
            "path, so it changes nothing here")  # fmt: skip
