"""What ``Engine(bundle, prepare=...)`` does about the faster CPU paths it could run but that are not prepared yet
(``backend="auto"`` on a CPU: the :class:`~zsseg_rt.runtime.backends.cpu_auto.BackendPlan` lists them).

Preparing (quantise, compile, gate, measure) is minutes of CPU and hundreds of MB of disk for a full-size model, so it
happens only where the user sees and agrees to it, as with the tools users know (``trtexec`` and ``zsseg build-engine``
build TensorRT engines, ONNX Runtime's and OpenVINO's quantisers run as a step of their own, ahead of use):

* ``"auto"`` (the default): ``$ZSSEG_AUTO_PREPARE`` (none / now / background) when set; else nothing is started, and
  one line (once per bundle and process) names the paths, what preparing them costs and buys, and the command that
  does it with a progress bar (``zsseg build-engine BUNDLE --backend auto``; ``zsseg demo`` runs it).
* ``None``: nothing, silently (what every measurement runs: one path from its first frame to its last).
* ``"now"``: prepared before the Engine returns, the progress shown, then the prepared path runs.
* ``"background"``: announced in one line (what, its cost, how to decline); ``python -m zsseg_rt.prepare.auto BUNDLE
  --background`` prepares on idle CPU only (``SCHED_IDLE``, nice 19, one thread: the app keeps its speed) while the
  current path runs, and the Engine switches between frames once the new path is open
  (``Pipeline.replace_backend``). :meth:`Engine.close`, leaving its ``with`` block, or the interpreter's exit stop it:
  no process outlives the Engine's program; the paths it finished are kept, the rest is prepared at a later start.

A preparation that fails writes why and where its log is (``auto-prepare.failed.json`` beside the records); it is
said once and not tried again at the next start (``zsseg build-engine BUNDLE --backend auto`` retries it). One that
ends without writing it (its disk full, the process gone) gets it from the Engine that ran it, beside the records or,
where they cannot be written, in zsseg_rt's cache folder (it was silent and tried at every start). A
disk without the room a preparation takes while it runs is said, and nothing starts. The runtime never imports
``zsseg_rt.prepare``: it runs it as a program.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import threading
import time
import weakref
from typing import Any, Callable, Dict, List, Optional, Set, Tuple

from zsseg_rt.bundle import graph_files
from zsseg_rt.options import ENGINE_OPTIONS

from .precision_records import precision_root

__all__ = [
    "BackgroundUpgrade",
    "PREPARE_ENV",
    "PREPARE_FAILED",
    "PREPARE_LOG",
    "PREPARE_MODES",
    "PREPARER_MODULE",
    "check_request",
    "clear_failure",
    "decide",
    "last_failure",
    "record_failure",
    "preparation_cost",
    "run_preparation",
]

LOG = logging.getLogger("zsseg_rt")
PREPARE_AUTO = "auto"  # Engine(prepare=)'s default
PREPARE_MODES = tuple(ENGINE_OPTIONS["prepare"].values() or ())  # Engine(prepare=...): its row's values
PREPARE_ENV = "ZSSEG_AUTO_PREPARE"  # none | now | background: what prepare="auto" means here (the test suite: none)
PREPARE_LOG = "auto-prepare.log"  # beside the records: what a background preparation printed
PREPARE_FAILED = "auto-prepare.failed.json"  # beside the records: why the last preparation failed, and its log
PREPARER_MODULE = "zsseg_rt.prepare.auto"  # run as ``python -m``: the preparation side, one layer above the runtime
_said: Set[Tuple[str, str]] = set()  # (bundle, what): the once-per-process lines already said
_children: "weakref.WeakSet[subprocess.Popen]" = weakref.WeakSet()  # running preparations (stopped at exit)


def _say_once(meta, what: str, message: str, level: int = logging.WARNING) -> None:
    key = (os.path.abspath(meta.path), what)
    if key not in _said:
        _said.add(key)
        LOG.log(level, "%s", message)


def _megabytes(meta, names) -> float:
    total = 0
    for name in names:
        try:
            total += os.path.getsize(meta.file(name))
        except OSError:
            continue
    return total / 1e6


def preparation_cost(meta, missing: List[Any]) -> str:
    """What preparing ``missing`` (gated choices) costs and buys, in words: CPU time, disk kept and at most while it
    runs, the preparing process's peak memory beside the memory free here (and the paths that would not fit it,
    which the preparation skips: ``runtime/preparation_cost.py``), the speed (an estimate from the bundle's graph
    sizes: docs/precision.md gives the measurements). CPU time and disk kept are the per-path estimates
    ``build-engine --dry-run`` prints (``preparation_cost.estimate``: one function; the note said 6 s
    and 14 MB for the tiny bundle where the dry-run said 1 s and 0 MB)."""
    from .preparation_cost import available_memory_mb, duration_words, estimate

    graphs = _megabytes(meta, graph_files(getattr(meta, "pipeline", "windowed")).values())
    costs = [estimate(meta, choice.backend, choice.precision) for choice in missing]
    when = duration_words(sum(cost.cpu_s for cost in costs))
    kept = max((cost.disk_mb for cost in costs), default=0.0)
    free = available_memory_mb()
    memory = ""
    if costs:
        each = ", ".join(f"{cost.name} {cost.peak_mb / 1024:.1f}" for cost in costs)
        here = f"{free / 1024:.1f} GiB free here" if free is not None else "free memory unknown here"
        memory = f", a peak of memory per path ({each} GiB; {here})"
        too_big = [cost.name for cost in costs if not cost.fits(free)]
        if too_big:
            memory += f": {', '.join(too_big)} would not fit and would not be prepared"
    return (
        f"{when} of CPU time, at most {kept:.0f} MB kept on disk (the fastest path only; up to {3 * graphs:.0f} MB "
        f"while it runs){memory}, for an image encoder typically 2-3x faster where a path passes its accuracy gate "
        "(kept only at >= 1.10x)"
    )


def _failure_paths(meta) -> List[str]:
    """Where the failure record of this bundle's preparation is kept: beside its records, else (they could not be
    written when it failed: a full or read-only disk) in zsseg_rt's cache folder, named after the bundle's path."""
    from .file_verification import cache_dir

    key = hashlib.sha256(os.path.realpath(meta.path).encode()).hexdigest()[:16]
    return [
        os.path.join(precision_root(meta), PREPARE_FAILED),
        os.path.join(cache_dir(), "auto-prepare", f"{key}.{PREPARE_FAILED}"),
    ]


def last_failure(meta) -> Optional[Dict[str, Any]]:
    """The failure record of the last preparation of this bundle here (same zsseg_rt), or None; ``where``: its file."""
    from zsseg_rt import __version__

    for path in _failure_paths(meta):
        try:
            with open(path, encoding="utf-8") as handle:
                failed = json.load(handle)
        except (OSError, ValueError):
            continue
        if isinstance(failed, dict) and failed.get("zsseg_rt") == __version__:
            return dict(failed, where=path)
    return None


def record_failure(meta, reason: str, log: str) -> Optional[str]:
    """Write the failure record (why, the log, the version) where :func:`last_failure` reads it: beside the records,
    else in the cache folder. Returns the file written, None where neither could be."""
    from zsseg_rt import __version__

    failed = {"reason": reason, "log": log, "when": time.strftime("%Y-%m-%d %H:%M:%S"), "zsseg_rt": __version__}
    for path in _failure_paths(meta):
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w", encoding="utf-8") as handle:
                json.dump(failed, handle, indent=2)
            return path
        except OSError:
            continue
    return None


def clear_failure(meta) -> None:
    """Forget the last failure (a preparation that ended well: ``zsseg build-engine BUNDLE --backend auto``)."""
    for path in _failure_paths(meta):
        try:
            os.remove(path)
        except OSError:
            pass


def _room(meta, root: str) -> Tuple[float, float, str]:
    """``(MB free, MB a preparation takes at most while it runs, where)`` on the disk of ``root``."""
    where = root
    while not os.path.exists(where) and os.path.dirname(where) != where:
        where = os.path.dirname(where)
    graphs = _megabytes(meta, graph_files(getattr(meta, "pipeline", "windowed")).values())
    try:
        free = shutil.disk_usage(where).free / 1e6
    except OSError:
        free = float("inf")
    return free, 3 * graphs, where


def _resolve(prepare: Optional[str]) -> Tuple[Optional[str], bool]:
    """``(mode, asked)``: what ``prepare`` means here, and whether someone chose it (an argument or the variable)."""
    ENGINE_OPTIONS["prepare"].check_value(prepare)
    if prepare != PREPARE_AUTO:
        return prepare, True
    wanted = os.environ.get(PREPARE_ENV, "").strip().lower()
    if not wanted:
        return None, False
    modes = {"none": None, "now": "now", "background": "background"}
    if wanted not in modes:
        raise ValueError(f"${PREPARE_ENV} must be one of {sorted(modes)}, got {wanted!r}")
    return modes[wanted], True


def check_cache_dir(cache_dir: Optional[str], backend: Any) -> None:
    """Refuse a ``cache_dir`` that cannot hold records (a file, or with ``backend="auto"`` a folder that does not
    exist, was accepted and the exact fp32 path ran, as if no record had been prepared). A named backend may write
    its first record there (it makes the folder), so a missing one is fine for it.

    Raises:
        ValueError: one line naming the path (``Engine(..., cache_dir=...)``: the flag on the command line).
    """
    if not cache_dir:
        return
    path = os.fspath(cache_dir)
    if os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(f"Engine(..., cache_dir={path!r}) is a file: give the folder of the prepared records")
    if not os.path.exists(path) and isinstance(backend, str) and backend == "auto":
        raise ValueError(
            f"Engine(..., cache_dir={path!r}) does not exist: with backend auto it holds the records that `zsseg "
            f"build-engine BUNDLE --backend auto --cache-dir {path}` writes (prepare them first, or give their folder)"
        )


def check_request(prepare: Optional[str], backend: Any, cache_dir: Optional[str] = None) -> None:
    """Refuse ``prepare`` where it cannot apply: it prepares the CPU paths ``backend="auto"`` chooses among (a named
    backend prepares its own reduced precision on first use), into the bundle (with ``cache_dir`` they are prepared
    ahead, by ``zsseg build-engine BUNDLE --backend auto --cache-dir DIR``)."""
    ENGINE_OPTIONS["prepare"].check_value(prepare)
    check_cache_dir(cache_dir, backend)
    if cache_dir and prepare in ("now", "background"):
        raise ValueError(
            f"prepare={prepare!r} with cache_dir={cache_dir!r}: the Engine prepares into the bundle; prepare ahead "
            f"into {cache_dir!r} with `zsseg build-engine BUNDLE --backend auto --cache-dir {cache_dir}`"
        )
    if prepare not in (None, PREPARE_AUTO) and not (isinstance(backend, str) and backend == "auto"):
        raise ValueError(
            f"prepare={prepare!r} applies to backend='auto' (it prepares the CPU paths auto chooses among); "
            f"backend={backend!r} prepares its own reduced precision on first use"
        )


def decide(meta, plan, prepare: Optional[str], cache_dir: Optional[str] = None) -> Optional[str]:
    """What to do about ``plan.missing`` (module docstring): None, "now" or "background"; says what it must say.
    ``cache_dir``: the records are kept there (``Engine(cache_dir=DIR)``): the Engine prepares nothing itself then
    (``check_request``), and the step it names writes there (``--cache-dir DIR``)."""
    mode, asked = _resolve(prepare)
    if plan.reopen is None or not plan.missing:
        return None
    if cache_dir:
        if not asked:
            _say_once(
                meta,
                "missing",
                f"zsseg_rt: this CPU could run faster paths of {meta.path} that are not prepared yet in {cache_dir} "
                f"({', '.join(f'{c.backend} {c.precision}' for c in plan.missing)}): `zsseg build-engine {meta.path} "
                f"--backend auto --cache-dir {cache_dir}` prepares them ({preparation_cost(meta, plan.missing)}); "
                "the exact fp32 path runs until then.",
            )
        return None
    root, paths = precision_root(meta), ", ".join(f"{c.backend} {c.precision}" for c in plan.missing)
    failed = last_failure(meta)
    if failed is not None and (mode is not None or not asked):
        _say_once(
            meta,
            "failed",
            f"zsseg_rt: the last preparation of {meta.path}'s faster CPU paths failed ({failed.get('reason')}; log "
            f"{failed.get('log')}); it is not tried again at each start: `zsseg build-engine {meta.path} --backend "
            "auto` retries it. The exact fp32 path runs.",
        )
        return None
    if mode is None:
        if not asked:
            step = f"`zsseg build-engine {meta.path} --backend auto` prepares them"
            if not _writable(root):  # a read-only bundle: the records go elsewhere
                step = (
                    f"its {root} cannot be written: `zsseg build-engine {meta.path} --backend auto --cache-dir DIR` "
                    "prepares them into a writable DIR, which --cache-dir DIR then runs"
                )
            _say_once(
                meta,
                "missing",
                f"zsseg_rt: this CPU could run faster paths of {meta.path} that are not prepared yet ({paths}): "
                f"{step} ({preparation_cost(meta, plan.missing)}); the exact fp32 path runs until then.",
            )
        return None
    free, needed, where = _room(meta, root)
    if free < needed:  # a preparation that cannot end well: said, not started (it failed silently at every start)
        _say_once(
            meta,
            "no-room",
            f"zsseg_rt: {meta.path}'s faster CPU paths ({paths}) are not prepared: preparing them takes up to "
            f"{needed:.0f} MB while it runs, and its disk has {free:.0f} MB free at {where!r}; free space there, then "
            f"`zsseg build-engine {meta.path} --backend auto`. The exact fp32 path runs.",
        )
        return None
    if not _writable(root):
        _say_once(
            meta,
            "read-only",
            f"backend='auto': {root} cannot be written, so the faster paths of this CPU are not prepared; prepare "
            "them into a writable folder (`zsseg build-engine BUNDLE --backend auto --cache-dir DIR`, then "
            "--cache-dir DIR), or where the bundle can be written, and copy its engines/ folder",
            logging.INFO,
        )
        return None
    if mode == "background":
        LOG.warning(
            "zsseg_rt: preparing %s's faster CPU paths (%s) in the background on idle CPU: %s. The exact fp32 path "
            "runs until one is ready; prepare=None (`--prepare none`, $%s=none) declines. Log: %s",
            meta.path,
            paths,
            preparation_cost(meta, plan.missing),
            PREPARE_ENV,
            os.path.join(root, PREPARE_LOG),
        )
    return mode


def _writable(path: str) -> bool:
    """Whether ``path`` (a folder, made if missing) can be written: its nearest existing ancestor is writable."""
    while not os.path.exists(path):
        parent = os.path.dirname(path)
        if parent == path:
            return False
        path = parent
    return os.path.isdir(path) and os.access(path, os.W_OK | os.X_OK)


def run_preparation(meta, stop: Optional[threading.Event] = None, foreground: bool = False) -> int:
    """Prepare the bundle's CPU paths in a child process, ``python -m zsseg_rt.prepare.auto BUNDLE``: in the
    foreground its progress on this terminal, waited for; else ``--background`` (idle CPU only, its output in
    ``auto-prepare.log`` beside the records), stopped (SIGTERM) when ``stop`` is set. Returns its exit status (-1:
    stopped first)."""
    root = precision_root(meta)
    os.makedirs(root, exist_ok=True)
    argv = [sys.executable, "-m", PREPARER_MODULE, meta.path] + ([] if foreground else ["--background"])
    if foreground:
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL)
    else:
        with open(os.path.join(root, PREPARE_LOG), "ab") as log:
            process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    _children.add(process)
    try:
        while process.poll() is None:
            if stop is not None and stop.wait(0.5):
                _end(process)
                return -1
            if stop is None:
                process.wait()
    except BaseException:  # interrupted while waiting in the foreground: the child goes with us
        _end(process)
        raise
    return int(process.returncode)


def _end(process: subprocess.Popen) -> None:
    """SIGTERM (the preparation keeps what it finished, removes what it was making), then SIGKILL after 30 s."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@atexit.register
def _end_all() -> None:  # an Engine not closed: its preparation does not outlive the program
    for process in list(_children):
        _end(process)


class BackgroundUpgrade:
    """A background preparation and, once it has finished, the next path: ``plan.reopen()`` (the ``auto`` policy
    again, now with the records) as :attr:`backend` and :attr:`plan` when it runs another path than ``plan``'s, else
    None. ``work(stop)`` prepares (default :func:`run_preparation`; an exit status, non-zero: failed, said in a
    warning with the reason and the log). All of it runs in one daemon thread: :meth:`ready` never blocks, a frame
    never waits; :meth:`stop` ends the thread and the preparation process."""

    def __init__(self, meta, plan, work: Optional[Callable[[threading.Event], int]] = None):
        self._meta, self._plan = meta, plan
        self._work = work or (lambda stop: run_preparation(meta, stop))
        self._stop, self._done = threading.Event(), threading.Event()
        self.backend: Any = None
        self.plan: Any = None
        self.error: Optional[str] = None
        self._thread = threading.Thread(target=self._run, name="zsseg-auto-prepare", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            status = self._work(self._stop)
            if self._stop.is_set():
                return
            if status != 0:
                failed = last_failure(self._meta) or self._record(status)
                self.error = str(failed.get("reason") or f"exit status {status}")
                LOG.warning(
                    "backend='auto': the background preparation failed (%s; log %s); the exact fp32 path goes on, "
                    "and the next start does not try again (`zsseg build-engine BUNDLE --backend auto` does)",
                    self.error,
                    failed.get("log") or os.path.join(precision_root(self._meta), PREPARE_LOG),
                )
                return
            backend, plan = self._plan.reopen()
            if plan.path != self._plan.path and not self._stop.is_set():
                self.backend, self.plan = backend, plan
        except Exception as exc:  # noqa: BLE001 - a failed upgrade leaves the current path running, said once
            self.error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            LOG.warning(
                "backend='auto': the background preparation failed (%s); the exact fp32 path goes on", self.error
            )
        finally:
            self._done.set()

    def _record(self, status: int) -> Dict[str, Any]:
        """The failure record of a preparation that ended without writing its own (its disk full, the process
        killed), written here so that the next start does not try again."""
        log = os.path.join(precision_root(self._meta), PREPARE_LOG)
        free, _, where = _room(self._meta, precision_root(self._meta))
        why = f"; its disk is full ({free:.0f} MB free at {where!r})" if free < 1 else ""
        try:
            empty = os.path.getsize(log) == 0
        except OSError:
            empty = True
        reason = f"the preparation process ended with exit status {status}{why}" + (
            "; its log is empty" if empty else ""
        )
        where_written = record_failure(self._meta, reason, log)
        return {"reason": reason, "log": log, "where": where_written}

    def ready(self) -> bool:
        """Whether it has finished (a backend to switch to, or nothing: :attr:`backend` None)."""
        return self._done.is_set()

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Block until it has finished (tests; never the frame loop). True once finished."""
        return self._done.wait(timeout)

    def stop(self) -> None:
        """End the thread and the preparation process (what it finished is kept for the next start)."""
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join()
