"""``backend="auto"`` on a CPU: the fastest path that passed the accuracy gate on this CPU, read from the records.

Every row of the backend table with ``gated_choices`` (ONNX Runtime, OpenVINO) lists its reduced precisions for the
bundle on this CPU from their gate records (``runtime/precision_records.py``); nothing is prepared or compiled to
choose. A record that passed (or that the user accepted below the gate) and carries the speed measured when it was
gated (its image encoder's time over ONNX Runtime fp32's, measured side by side: ``record["speed"]``) is a
candidate; the exact fp32 reference counts as 1.0x. The fastest runs; one log line says what, why and the gate it
passed. A refused record, one of another setup, or a row that is not installed is not a candidate (the log line
says why); a candidate that cannot be opened (e.g. its artefact was modified) gives way to the next.

Where no faster path is recorded yet the exact fp32 path runs and :func:`cpu_policy` lists what is missing: the
:class:`BackendPlan` that ``make_backend`` returns beside the backend carries it, and the Engine decides what to do
about it (``runtime/upgrade.py``: say how to prepare them, prepare them now, or in the background when asked). This
module only reads records: nothing here prepares, starts or imports anything of ``zsseg_rt.prepare``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable, List, Optional, Sequence, Tuple

from ..precision_records import GatedChoice, rank_choices
from .table import AUTO, REFERENCE_BACKEND, BackendSpec, backend_row, backend_rows, load_reference

__all__ = ["AutoChoice", "BackendPlan", "MIN_SPEEDUP", "cpu_candidates", "cpu_policy"]

LOG = logging.getLogger("zsseg_rt")
# A reduced precision replaces the exact fp32 path only when its record measured it at least this much faster: the
# speed is measured once, when gated, often on a busy machine; a gain within that noise is not worth exactness.
MIN_SPEEDUP = 1.10


@dataclass
class AutoChoice:
    """What ``backend="auto"`` chose on a CPU and why (``engine.auto_choice``, ``BackendPlan.choice``)."""

    backend: str
    precision: str
    why: str
    gate: str = ""  # the accuracy gate's summary of the chosen record ("" for the exact fp32 path)
    speedup: float = 1.0  # measured when gated, against ONNX Runtime fp32 (1.0: the reference itself)
    choices: List[GatedChoice] = field(default_factory=list)  # every (backend, precision) looked at
    notes: List[str] = field(default_factory=list)  # rows not installed, candidates that would not open

    @property
    def missing(self) -> List[GatedChoice]:
        """The reduced precisions this CPU can run that have no record yet (what preparing would add)."""
        return [choice for choice in self.choices if choice.status == "missing"]

    def line(self) -> str:
        """The one log line: what runs, why, the gate it passed, what else was looked at."""
        head = f"backend='auto' runs {self.backend} {self.precision} on this CPU: {self.why}"
        if self.gate:
            head += f" ({self.gate})"
        others = [c.describe() for c in self.choices if (c.backend, c.precision) != (self.backend, self.precision)]
        tail = "; ".join(others + self.notes)
        text = f"{head}; looked at: {tail}" if tail else head
        if self.precision != "fp32":
            text += "; exact fp32: precision='fp32'"
        return text


def cpu_candidates(
    meta, roles: Sequence[str], cache_dir: Optional[str] = None
) -> Tuple[List[Tuple[BackendSpec, GatedChoice]], List[str]]:
    """``([(row, choice)], notes)``: every CPU row with ``gated_choices`` that serves ``roles`` and is installed,
    with each of its choices; ``notes`` say which rows are not installed."""
    found: List[Tuple[BackendSpec, GatedChoice]] = []
    notes: List[str] = []
    for row in backend_rows():
        if not (row.gated_choices and "cpu" in row.devices and row.serves(roles)):
            continue
        try:
            choices = load_reference(row.gated_choices)(meta, cache_dir)
        except ImportError as exc:
            # why, in the note: "not installed" also covers an installed library that failed to import here
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            notes.append(f"{row.name}: not installed ({reason})")
            LOG.debug("backend='auto': %s is not installed (%s)", row.name, exc)
            continue
        found += [(row, choice) for choice in choices]
    return found, notes


def cpu_policy(
    meta, roles: Sequence[str], precision: Optional[str] = None, cache_dir: Optional[str] = None
) -> List[Tuple[BackendSpec, Optional[str], AutoChoice]]:
    """What to open, in order: ``[(row, precision, choice)]``, the fastest gated path first and the exact fp32
    reference last (``precision`` None: the row's default); the caller opens the first that opens. ``precision``:
    None / "auto" (any), "fp32" (the exact reference only) or a reduced one (its fastest gated row; without a record,
    the first row that can run it, prepared on first use as an explicit precision is)."""
    reference = backend_row(REFERENCE_BACKEND)
    if precision == "fp32":
        why = "exact, as precision='fp32' asks"
        return [(reference, "fp32", AutoChoice(reference.name, "fp32", why))]
    found, notes = cpu_candidates(meta, roles, cache_dir)
    choices = [choice for _, choice in found]
    rows = {(row.name, choice.precision): row for row, choice in found}
    wanted = [c for c in choices if precision in (None, AUTO) or c.precision == precision]
    ranked = [c for c in rank_choices(wanted) if c.speedup is not None and c.speedup >= MIN_SPEEDUP]
    notes += [
        f"{c.backend} {c.precision}: {c.speedup:.2f}x is below the {MIN_SPEEDUP:.2f}x that replaces exact fp32"
        for c in rank_choices(wanted)
        if c.speedup is not None and 1.0 <= c.speedup < MIN_SPEEDUP
    ]
    unmeasured = [c for c in rank_choices(wanted) if c.speedup is None]
    notes += [f"{c.backend} {c.precision}: gated before speeds were recorded (not ranked)" for c in unmeasured]
    plan: List[Tuple[BackendSpec, Optional[str], AutoChoice]] = []
    for choice in ranked:
        why = (
            f"the fastest path that passed the accuracy gate here (image encoder {choice.speedup:.2f}x ONNX Runtime "
            "fp32's, measured when gated)"
        )
        chosen = AutoChoice(choice.backend, choice.precision, why, choice.gate_summary, float(choice.speedup or 1.0))
        plan.append((rows[(choice.backend, choice.precision)], choice.precision, chosen))
    if precision not in (None, AUTO):  # an explicit reduced precision: the first row that can run it, else refused
        runnable = [c for c in wanted if c.status != "cannot"]
        if not ranked and runnable:
            row = rows[(runnable[0].backend, runnable[0].precision)]
            why = f"precision={precision!r} asked for; no gated record of it yet (prepared on first use)"
            plan.append((row, precision, AutoChoice(row.name, precision, why)))
        if not plan:
            plan.append((reference, precision, AutoChoice(reference.name, precision, "precision asked for")))
    if precision not in (None, AUTO):
        for _, _, chosen in plan:
            chosen.choices, chosen.notes = choices, notes
        return plan  # nothing else runs what was asked for: a failure to open it is the caller's error
    fallback = "exact: no faster path has passed the accuracy gate on this CPU yet" if not ranked else "exact"
    if any(c.status == "missing" for c in choices):
        fallback += " (`zsseg build-engine BUNDLE --backend auto` prepares the missing ones: quantise + gate, once)"
    plan.append((reference, "fp32", AutoChoice(reference.name, "fp32", fallback)))
    for _, _, chosen in plan:
        chosen.choices, chosen.notes = choices, notes
    return plan


@dataclass
class BackendPlan:
    """What ``make_backend`` opened and what could follow, handed back beside the backend (never planted on it).

    ``path``: the (backend, precision) that runs. ``choice``: why, where the ``auto`` policy chose it on a CPU (None
    for a named backend, a GPU, a ready object). ``missing``: the faster gated paths this CPU could run that have no
    record yet (what a preparation would add). ``reopen()``: the same policy again, the records read anew: ``(backend,
    plan)`` after a preparation has written them (None where nothing can change)."""

    path: Tuple[str, str]
    choice: Optional[AutoChoice] = None
    missing: List[GatedChoice] = field(default_factory=list)
    reopen: Optional[Callable[[], Tuple[Any, "BackendPlan"]]] = None

    @classmethod
    def of(cls, backend: Any) -> "BackendPlan":
        """The plan of a backend opened as named (or given): it runs what it runs."""
        return cls((str(getattr(backend, "name", type(backend).__name__)), str(getattr(backend, "precision", ""))))
