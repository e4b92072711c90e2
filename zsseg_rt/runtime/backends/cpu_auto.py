"""``backend="auto"`` on a CPU: the fastest path that passed the accuracy gate on this CPU, read from the records.

Every row of the backend table with ``gated_choices`` (ONNX Runtime, OpenVINO) lists its reduced precisions for the
bundle on this CPU from their gate records (``runtime/precision_records.py``); nothing is prepared or compiled to
choose. A record that passed (or that the user accepted below the gate) and carries the speed measured when it was
gated (its image encoder's time over ONNX Runtime fp32's, measured side by side: ``record["speed"]``) is a
candidate; the exact fp32 reference counts as 1.0x. The fastest runs; one log line says what, why and the gate it
passed. A refused record, one of another setup, or a row that is not installed is not a candidate (the log line
says why); a candidate that cannot be opened (e.g. its artefact was modified) gives way to the next.

Where no faster path is recorded yet the exact fp32 path runs and :func:`cpu_policy` lists what is missing;
``prepare`` decides what happens then (``Engine(prepare=...)``): "auto" (the default, :func:`resolve_prepare`:
"background" where the records' folder is writable, unless ``$ZSSEG_AUTO_PREPARE`` says otherwise), None (run fp32;
``zsseg build-engine BUNDLE --backend auto`` prepares them), "now" (prepare them before returning: quantise + gate +
measure, with a progress bar) or "background" (:class:`BackgroundUpgrade`: a niced process prepares them while the
fp32 path runs, and the Engine switches at a frame boundary once the new path is open: a live camera never waits for
quantisation). One preparation per records folder runs at a time (a lock file held by the preparing process).
"""

from __future__ import annotations

import errno
import logging
import os
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, List, Optional, Sequence, Tuple

from ..precision_records import GatedChoice, load_preparer, precision_root, rank_choices
from .table import AUTO, AUTO_PREPARER, REFERENCE_BACKEND, BackendSpec, backend_row, backend_rows, load_reference

__all__ = [
    "AutoChoice",
    "BackgroundUpgrade",
    "MIN_SPEEDUP",
    "PREPARE_MODES",
    "cpu_candidates",
    "cpu_policy",
    "prepare_now",
    "resolve_prepare",
]

LOG = logging.getLogger("zsseg_rt")
PREPARE_AUTO = "auto"  # Engine(prepare=)'s default: resolve_prepare decides
PREPARE_MODES = (None, "now", "background", PREPARE_AUTO)
PREPARE_ENV = "ZSSEG_AUTO_PREPARE"  # none | now | background: what prepare="auto" means here (tests: none)
PREPARE_LOG = "auto-prepare.log"  # beside the records: what the background preparation printed
PREPARE_LOCK = "auto-prepare.lock"  # beside the records: held (flock) by the process that prepares them
# A reduced precision replaces the exact fp32 path only when its record measured it at least this much faster: the
# speed is measured once, when gated, often on a busy machine; a gain within that noise is not worth exactness.
MIN_SPEEDUP = 1.10


@dataclass
class AutoChoice:
    """What ``backend="auto"`` chose on a CPU and why (``engine.backend.auto_choice``)."""

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


def prepare_now(meta, cache_dir: Optional[str] = None, threads: int = 0) -> None:
    """Prepare (quantise, gate, measure) every missing reduced precision of the CPU rows now, with a progress bar
    (the exporter's :data:`~zsseg_rt.runtime.backends.table.AUTO_PREPARER`)."""
    prepare = load_preparer(
        AUTO_PREPARER,
        "preparing the CPU's gated precisions needs the exporter ({exc}); prepare them on another machine of the "
        "same CPU kind with `zsseg build-engine BUNDLE --backend auto` and copy the bundle's engines/ folder",
    )
    prepare(meta.path, cache_dir=cache_dir, threads=threads)


def resolve_prepare(prepare: Optional[str], meta, cache_dir: Optional[str] = None) -> Optional[str]:
    """What ``prepare="auto"`` (the Engine's default) means here: ``$ZSSEG_AUTO_PREPARE`` when set ("none", "now" or
    "background"; anything else is refused), else "background" where the records' folder can be written (a bundle
    on a read-only disk runs what is recorded: said at INFO). Any other value is returned as it is."""
    if prepare != PREPARE_AUTO:
        return prepare
    wanted = os.environ.get(PREPARE_ENV, "").strip().lower()
    if wanted:
        modes = {"none": None, "now": "now", "background": "background"}
        if wanted not in modes:
            raise ValueError(f"${PREPARE_ENV} must be one of {sorted(modes)}, got {wanted!r}")
        return modes[wanted]
    root = precision_root(meta, cache_dir)
    if not _writable(root):
        LOG.info(
            "backend='auto': %s cannot be written, so the faster paths of this CPU are not prepared in the "
            "background; prepare them where it can (`zsseg build-engine BUNDLE --backend auto`)",
            root,
        )
        return None
    return "background"


def _writable(path: str) -> bool:
    """Whether ``path`` (a folder, made if missing) can be written: its nearest existing ancestor is writable."""
    while not os.path.exists(path):
        parent = os.path.dirname(path)
        if parent == path:
            return False
        path = parent
    return os.path.isdir(path) and os.access(path, os.W_OK | os.X_OK)


def _try_lock(fd: int) -> bool:
    """An exclusive flock on ``fd`` without waiting (True: taken). Where flock does not exist, always True."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: no lock, a second preparation only costs time
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return False
        raise
    return True


def run_preparation(meta, stop: threading.Event) -> int:
    """The background preparation: ``zsseg build-engine BUNDLE --backend auto`` in a niced process of its own
    session (it goes on, and writes its records, after the Engine is gone), its output in ``auto-prepare.log``
    beside the records (``<bundle>/engines``). One at a time per records folder: the process holds
    ``auto-prepare.lock``; an Engine that finds it held waits (never a frame: this runs in the upgrade's thread) for
    the other preparation, then reads what it wrote. Returns the exit status (0 after waiting for another), or -1
    when ``stop`` was set first."""
    root = precision_root(meta)
    os.makedirs(root, exist_ok=True)
    lock = os.open(os.path.join(root, PREPARE_LOCK), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if not _try_lock(lock):
            LOG.info(
                "backend='auto': another process is preparing this bundle's CPU paths (%s held); waiting for its "
                "records while the exact fp32 path runs",
                os.path.join(root, PREPARE_LOCK),
            )
            while not _try_lock(lock):
                if stop.wait(0.5):
                    return -1
            return 0
        # niced: the live path keeps the cores' priority
        code = "import os, sys\nos.nice(10)\nfrom zsseg_rt.cli import main\nsys.exit(main(sys.argv[1:]))\n"
        argv = [sys.executable, "-c", code, "build-engine", meta.path, "--backend", AUTO]
        with open(os.path.join(root, PREPARE_LOG), "ab") as log:
            # the child inherits the locked descriptor: the lock is held until the preparation ends, also after
            # this process has gone
            process = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, pass_fds=(lock,)
            )
    finally:
        os.close(lock)
    LOG.info(
        "backend='auto': preparing the faster gated paths of this CPU in the background (pid %d, log %s); the exact "
        "fp32 path runs until they are ready",
        process.pid,
        os.path.join(root, PREPARE_LOG),
    )
    while process.poll() is None:
        if stop.wait(0.5):  # the Engine is closing: leave the process to finish its records
            return -1
    return int(process.returncode)


class BackgroundUpgrade:
    """A background preparation and, once it has finished, the backend ``rebuild()`` opens (the ``auto`` policy
    again, now with the records): :attr:`backend` when it differs from what runs (``current``), else None.

    ``work(stop)`` prepares (default :func:`run_preparation`; returns an exit status, non-zero: failed, said in a
    warning). Everything runs in one daemon thread; :meth:`ready` never blocks; :meth:`stop` ends the thread (not a
    preparation process, which finishes its records)."""

    def __init__(self, work: Callable[[threading.Event], int], rebuild: Callable[[], Any], current: Tuple[str, str]):
        self._work, self._rebuild, self._current = work, rebuild, current
        self._stop, self._done = threading.Event(), threading.Event()
        self.backend: Any = None
        self.error: Optional[str] = None
        self._thread = threading.Thread(target=self._run, name="zsseg-auto-prepare", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            status = self._work(self._stop)
            if self._stop.is_set():
                return
            if status != 0:
                self.error = f"the background preparation exited with status {status}"
                LOG.warning("backend='auto': %s; the exact fp32 path goes on", self.error)
                return
            backend = self._rebuild()
            chosen = (str(backend.name), str(getattr(backend, "precision", "")))
            if chosen != self._current and not self._stop.is_set():
                self.backend = backend
        except Exception as exc:  # noqa: BLE001 - a failed preparation leaves the exact path running, said once
            self.error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            LOG.warning(
                "backend='auto': the background preparation failed (%s); the exact fp32 path goes on", self.error
            )
        finally:
            self._done.set()

    def ready(self) -> bool:
        """Whether it has finished (a backend to switch to, or nothing: :attr:`backend` None)."""
        return self._done.is_set()

    def wait(self) -> None:
        """Block until it has finished (tests, ``zsseg build-engine``-like callers; never the frame loop)."""
        self._done.wait()

    def stop(self) -> None:
        """End the thread (a preparation process goes on and writes its records for the next start)."""
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join()
