"""What ``backend="auto"`` on a CPU chooses among, prepared ahead (``zsseg build-engine BUNDLE --backend auto``,
``zsseg demo``, ``Engine(prepare="now" / "background")``, ``python -m zsseg_rt.prepare.auto BUNDLE``): every reduced
precision a CPU row of the backend table can run here (``BackendSpec.gated_choices``: ONNX Runtime int8 / bf16,
OpenVINO bf16 / int8) is prepared and gated through its row's own preparer, once (a record that exists is reused; a
failed gate is recorded refused, its reason kept), and each usable one gets the speed of its image encoder against
ONNX Runtime fp32's measured side by side on this CPU (``record["speed"]``: the ranking ``runtime/backends/cpu_auto.py``
reads). Then only what the ranking chose is kept (:func:`keep_chosen`): the other paths' artefacts and compiled
caches are removed, their records kept (marked ``pruned``: not prepared again unless forced). One preparation per
records folder runs at a time (``auto-prepare.lock``).

The speed is the median over ``rounds`` interleaved calls (candidate, reference, candidate, ...) on the same
window, after one warm-up call each: interleaving puts both under the same machine load, so the ratio holds on a
busy machine better than either time does; the times are kept beside the ratio.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import shutil
import statistics
import time
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Optional, Tuple

import numpy as np

from zsseg_rt.bundle import graph_files, load_meta
from zsseg_rt.console.progress import stage_bar
from zsseg_rt.prepare.gate import EngineAccuracyError, shared_reference
from zsseg_rt.runtime.backends.table import load_reference
from zsseg_rt.runtime.precision_records import (
    PREPARATION_FIELD,
    PRUNED_FIELD,
    SPEED_FIELD,
    GatedChoice,
    precision_root,
    read_record,
    record_dir,
    update_record,
)
from zsseg_rt.runtime.preparation_cost import PathCost, available_memory_mb, path_cost, resident_mb
from zsseg_rt.runtime.upgrade import PREPARE_FAILED, clear_failure

from .footprint import folder_bytes, measured

__all__ = [
    "AutoReport",
    "SPEED_ROUNDS",
    "keep_chosen",
    "measure_encoder_speed",
    "plan_paths",
    "prepare_and_keep",
    "prepare_auto",
    "result_line",
]

LOG = logging.getLogger("zsseg_rt.precision")
SPEED_ROUNDS = 5  # interleaved timed calls per side (after one warm-up each)
PREPARE_LOCK = "auto-prepare.lock"  # beside the records: held (flock) by the process that prepares them
RECORD_FILES = ("engine.json", "openvino.json")  # what says what a folder of the records root holds


def _encode_seconds(backend: Any, window: np.ndarray) -> float:
    start = time.perf_counter()
    backend.encode_image(window)
    return time.perf_counter() - start


def measure_encoder_speed(
    candidate: Any, reference: Any, image_size: int, rounds: int = SPEED_ROUNDS
) -> Dict[str, Any]:
    """The image encoder's speed of ``candidate`` over ``reference`` (Backend objects), one ``[1, 3, S, S]`` window,
    ``rounds`` interleaved calls each after a warm-up: ``{"speedup", "candidate_ms", "reference_ms", "rounds",
    "how"}`` (medians)."""
    window = np.random.default_rng(0).standard_normal((1, 3, image_size, image_size)).astype(np.float32)
    _encode_seconds(candidate, window), _encode_seconds(reference, window)  # warm-up: first-call allocations
    mine, theirs = [], []
    for _ in range(rounds):
        mine.append(_encode_seconds(candidate, window))
        theirs.append(_encode_seconds(reference, window))
    candidate_s, reference_s = statistics.median(mine), statistics.median(theirs)
    return {
        "speedup": round(reference_s / candidate_s, 3),
        "candidate_ms": round(1000 * candidate_s, 1),
        "reference_ms": round(1000 * reference_s, 1),
        "rounds": int(rounds),
        "how": f"image encoder, one {image_size}x{image_size} window, median of {rounds} interleaved calls "
        "against ONNX Runtime fp32 on this CPU",
    }


def _open(row_name: str, meta, precision: str, cache_dir: Optional[str], threads: int) -> Any:
    """The backend of a gated record, opened from it (never prepared here)."""
    from zsseg_rt.runtime.backends import open_backend

    options: Dict[str, Any] = {"cache_dir": cache_dir} if cache_dir else {}
    return open_backend(meta, row_name, precision=precision, threads=threads, prepare=False, **options)


def _prepare_one(row, meta, choice: GatedChoice, cache_dir, threads, force: bool) -> str:
    """Prepare ``choice`` through its row's preparer; returns "" or why it is not usable (recorded refused...)."""
    try:
        load_reference(str(row.prepare))(meta.path, choice.precision, cache_dir=cache_dir, force=force, threads=threads)
    except EngineAccuracyError as exc:
        return str(exc).splitlines()[0]
    except (ImportError, ValueError) as exc:
        return f"cannot be prepared here: {str(exc).splitlines()[0]}"
    return ""


@contextlib.contextmanager
def preparation_lock(root: str) -> Iterator[None]:
    """Hold ``auto-prepare.lock`` in ``root`` (flock): one preparation per records folder; a second one waits for
    the first (it then finds the records written), said at INFO."""
    os.makedirs(root, exist_ok=True)
    with open(os.path.join(root, PREPARE_LOCK), "a+b") as handle:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX: no lock, a second preparation only costs time
            yield
            return
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            LOG.info("another process is preparing %s (%s held); waiting for its records", root, PREPARE_LOCK)
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


@dataclass
class AutoReport:
    """What :func:`prepare_and_keep` did: one result per (row, precision) (``prepare_auto``'s), the path ``auto``
    runs now, the bytes of the records folder before, and after keeping only that path, what was removed, the time."""

    results: List[Dict[str, Any]]
    chosen: Tuple[str, str] = ("", "")
    bytes_before: int = 0
    bytes_after: int = 0
    removed: List[str] = field(default_factory=list)
    seconds: float = 0.0
    where: str = "the bundle's engines/ folder"  # the records folder, in words (--cache-dir: "the cache folder DIR")

    def summary(self) -> str:
        """One line: what runs, the disk the preparation added, what it removed, how long it took."""
        added = (self.bytes_after - self.bytes_before) / 1e6
        removed = f"; removed {', '.join(self.removed)} (not chosen)" if self.removed else ""
        return (
            f"prepared in {self.seconds:.0f} s: backend='auto' runs {' '.join(self.chosen)}; "
            f"{self.where} holds {self.bytes_after / 1e6:.0f} MB ({added:+.0f} MB){removed}"
        )


def prepare_auto(
    bundle_dir: str, cache_dir: Optional[str] = None, threads: int = 0, force: bool = False, keep_all: bool = False
) -> List[Dict[str, Any]]:
    """:func:`prepare_and_keep`'s results: one ``{"backend", "precision", "status", "speedup", "reason"}`` per (row,
    precision), as :func:`cpu_policy` sees it afterwards."""
    return prepare_and_keep(bundle_dir, cache_dir, threads, force, keep_all).results


def prepare_and_keep(
    bundle_dir: str, cache_dir: Optional[str] = None, threads: int = 0, force: bool = False, keep_all: bool = False
) -> AutoReport:
    """Prepare, gate and measure every reduced precision the CPU rows can run here for a bundle, then keep only the
    path the ranking chose (:func:`keep_chosen`; ``keep_all``: every path, for a benchmark that runs each). A record
    already there is reused (``force``: prepared and measured again; a record gated under an older rule is gated
    again); one without a speed is measured. A failure record of an earlier preparation is removed once this one
    ends well."""
    from zsseg_rt.runtime.backends.cpu_auto import cpu_candidates

    start = time.perf_counter()
    meta = load_meta(bundle_dir)
    root = precision_root(meta, cache_dir)
    with preparation_lock(root):
        before = folder_bytes(root)
        found, notes = cpu_candidates(meta, tuple(graph_files(meta.pipeline)), cache_dir)
        with shared_reference():  # the paths' gates share the fp32 reference's outputs (computed once)
            results = _prepare_found(meta, found, cache_dir, threads, force)
        results += [
            {"backend": note.split(":")[0], "precision": "", "status": "cannot", "speedup": None, "reason": note}
            for note in notes
        ]
        chosen, removed = keep_chosen(meta, cache_dir, dry_run=keep_all)
        with contextlib.suppress(FileNotFoundError):
            os.remove(os.path.join(root, PREPARE_FAILED))
        clear_failure(meta)  # and the one a full disk sent to the cache folder
        after = folder_bytes(root)
    where = f"the cache folder {root}" if cache_dir else "the bundle's engines/ folder"
    return AutoReport(results, chosen, before, after, removed, time.perf_counter() - start, where)


def _todo(found, force: bool) -> List[Tuple[Any, GatedChoice]]:
    """The choices a preparation works on: the missing ones (with ``force`` every one this CPU can run), and the
    usable ones (a speed to measure)."""
    return [(row, c) for row, c in found if c.status != "cannot" and (force or c.status == "missing" or c.usable)]


def _cost(meta, row, choice: GatedChoice) -> PathCost:
    """What preparing ``choice`` costs here (its record's measurement, else the estimate)."""
    folder = record_dir(choice.root, choice.key) if choice.key is not None else ""
    record = read_record(folder) if folder and os.path.isfile(os.path.join(folder, RECORD_FILES[0])) else {}
    return path_cost(meta, row.name, choice.precision, record)


def plan_paths(bundle_dir: str, cache_dir: Optional[str] = None, force: bool = False) -> Dict[str, Any]:
    """What :func:`prepare_and_keep` would do, nothing prepared (``zsseg build-engine --backend auto --dry-run``):
    ``{"paths": [{backend, precision, status, reason, will_prepare, fits, cost: PathCost.as_dict(), line}], "free_mb",
    "resident_mb", "root"}``, each path's cost measured here before or estimated, and whether it fits the memory free
    now."""
    from zsseg_rt.runtime.backends.cpu_auto import cpu_candidates

    meta = load_meta(bundle_dir)
    found, notes = cpu_candidates(meta, tuple(graph_files(meta.pipeline)), cache_dir)
    available, resident = available_memory_mb(), resident_mb()
    todo = {(row.name, c.precision) for row, c in _todo(found, force)}
    paths = []
    for row, choice in found:
        entry: Dict[str, Any] = {"backend": row.name, "precision": choice.precision, "status": choice.status}
        entry["reason"] = choice.reason
        if choice.status != "cannot":
            cost = _cost(meta, row, choice)
            prepares = (row.name, choice.precision) in todo and (choice.status == "missing" or force)
            entry.update(will_prepare=prepares, fits=cost.fits(available, resident), cost=cost.as_dict())
            entry["line"] = cost.line(available, resident)
        paths.append(entry)
    paths += [{"backend": note.split(":")[0], "precision": "", "status": "cannot", "reason": note} for note in notes]
    return {"paths": paths, "free_mb": available, "resident_mb": resident, "root": precision_root(meta, cache_dir)}


def _prepare_found(meta, found, cache_dir, threads, force: bool) -> List[Dict[str, Any]]:
    """Prepare the missing choices (and, with ``force``, every one), measure each usable one without a speed. A path
    whose peak memory would not fit the memory free now is skipped with one line (``PathCost.refusal``); what each
    prepared path took is measured (``footprint.measured``) and written into its record."""
    todo = _todo(found, force)
    reference = None
    results = []
    with stage_bar(len(todo), "CPU paths: quantise, gate, measure", unit="path") as bar:
        for row, choice in todo:
            reason, speedup = "", choice.speedup
            prepares = choice.status == "missing" or force
            cost = _cost(meta, row, choice)
            available, resident = available_memory_mb(), resident_mb()
            if prepares and not cost.fits(available, resident):
                refusal = cost.refusal(available, resident)
                LOG.warning("%s", refusal)
                entry = {"backend": row.name, "precision": choice.precision, "status": "skipped"}
                results.append(dict(entry, speedup=None, reason=refusal))
                bar.update()
                continue
            key = choice.key
            assert key is not None  # (a choice this CPU cannot run is not to do)
            folder = record_dir(choice.root, key)
            with measured(choice.root) as footprint:  # what the records folder gains: artefact, compiled caches
                if prepares:
                    again = force or os.path.isfile(os.path.join(folder, RECORD_FILES[0]))
                    reason = _prepare_one(row, meta, choice, cache_dir, threads, again)
                    speedup = None
                if not reason and speedup is None:
                    reference = reference or _open_reference(meta, threads)
                    candidate = _open(row.name, meta, choice.precision, cache_dir, threads)
                    speed = measure_encoder_speed(candidate, reference, int(meta.image_size))
                    update_record(choice.root, key, SPEED_FIELD, speed)
                    speedup = speed["speedup"]
                    LOG.info("%s %s: %.2fx ONNX Runtime fp32's image encoder", row.name, choice.precision, speedup)
            took = ""
            if prepares and os.path.isfile(os.path.join(folder, RECORD_FILES[0])):
                update_record(choice.root, key, PREPARATION_FIELD, footprint.as_dict())
                took = _footprint_words(footprint.as_dict())
                LOG.info("%s %s: prepared in %s", row.name, choice.precision, took)
            status = "refused" if reason else "passed" if choice.status != "accepted" else "accepted"
            results.append(
                {
                    "backend": row.name,
                    "precision": choice.precision,
                    "status": status,
                    "speedup": speedup,
                    "reason": reason,
                    "took": took,
                }
            )
            bar.update()
    done = {(row.name, c.precision) for row, c in todo}
    results += [
        {"backend": row.name, "precision": c.precision, "status": c.status, "speedup": None, "reason": c.reason}
        for row, c in found
        if (row.name, c.precision) not in done
    ]
    return results


def result_line(result: Dict[str, Any]) -> str:
    """A path's line of a preparation's report: ``"openvino int8: passed 2.91x (prepared in 41 s wall, ...)"``."""
    speed = f" {result['speedup']:.2f}x" if result.get("speedup") is not None else ""
    notes = [text for text in (result.get("reason"), result.get("took") and f"prepared in {result['took']}") if text]
    said = f" ({'; '.join(notes)})" if notes else ""
    return f"{result['backend']} {result['precision']}: {result['status']}{speed}{said}".replace("  ", " ")


def _footprint_words(measure: Dict[str, Any]) -> str:
    """ "41 s wall, 66 CPU-s, 96 MB on disk, a peak of 1.9 GiB resident (15.2 GiB was free)"."""
    free = measure.get("free_mb_before")
    peak = float(measure["peak_mb"])
    return (
        f"{measure['wall_s']:.0f} s wall, {measure['cpu_s']:.0f} CPU-s, {measure['disk_mb']:.0f} MB on disk, a peak "
        f"of {peak / 1024:.1f} GiB resident" + (f" ({free / 1024:.1f} GiB was free)" if free is not None else "")
    )


def _open_reference(meta, threads: int) -> Any:
    from zsseg_rt.runtime.backends import open_reference

    return open_reference(meta, threads)


def keep_chosen(meta, cache_dir: Optional[str] = None, dry_run: bool = False) -> Tuple[Tuple[str, str], List[str]]:
    """Keep only what ``backend="auto"`` runs now (the ranking's first, ``cpu_policy``): the artefacts of every
    other gated CPU path (its int8 graph, IR) and every compiled cache not of that path are removed; their records
    stay, marked ``pruned`` (a passing one) so that they are not prepared again unless forced, and a refused one stays
    refused. TensorRT engines and the torch backend's records are not touched. Returns ``(the chosen (backend,
    precision), what was removed: "openvino bf16 (589 MB)", ...)``; ``dry_run``: the chosen path only, nothing
    removed."""
    from zsseg_rt.runtime.backends.cpu_auto import cpu_candidates, cpu_policy

    roles = tuple(graph_files(meta.pipeline))
    chosen = cpu_policy(meta, roles, None, cache_dir)[0][2]
    path = (chosen.backend, chosen.precision)
    found, _ = cpu_candidates(meta, roles, cache_dir)
    ours = {c.key.digest(): c for _, c in found if c.key is not None}
    rows = {row.name for row, _ in found}
    removed: List[str] = []
    root = precision_root(meta, cache_dir)
    for name in sorted(os.listdir(root)) if os.path.isdir(root) and not dry_run else []:
        folder = os.path.join(root, name)
        key = _folder_key(folder)
        if key is None or key.get("backend") not in rows or (key.get("backend"), key.get("precision")) == path:
            continue
        size = folder_bytes(folder)
        what = f"{key.get('backend')} {key.get('precision')}"
        if name not in ours:  # a compiled cache (or a record of another setup): a cache, made again on demand
            shutil.rmtree(folder, ignore_errors=True)
        else:
            choice = ours[name]
            for entry in os.listdir(folder):
                if entry not in RECORD_FILES:
                    _remove(os.path.join(folder, entry))
            if choice.usable and choice.key is not None:
                why = f"not kept: {path[0]} {path[1]} runs (the fastest gated path here)"
                update_record(choice.root, choice.key, PRUNED_FIELD, why)
        freed = size - folder_bytes(folder)
        if freed > 0:
            removed.append(f"{what} ({freed / 1e6:.0f} MB)")
    return path, removed


def _folder_key(folder: str) -> Optional[Dict[str, Any]]:
    """The key of what ``folder`` holds (its ``engine.json`` or compiled-cache record), or None."""
    for name in RECORD_FILES:
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            try:
                with open(path, encoding="utf-8") as handle:
                    key = json.load(handle).get("key")
            except (OSError, ValueError):
                return None
            return key if isinstance(key, dict) else None
    return None


def _remove(path: str) -> None:
    if os.path.isdir(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)


# ------------------------------------------------------------------------------------ python -m zsseg_rt.prepare.auto
def _yield_cpu() -> None:
    """Run on idle CPU only, before any thread exists (threads made later inherit it): ``SCHED_IDLE`` (the kernel
    runs this process only where no other wants the core), nice 19, idle I/O priority; each where this OS has it."""
    with contextlib.suppress(AttributeError, OSError):
        os.nice(19)
    with contextlib.suppress(AttributeError, OSError):
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))  # type: ignore[attr-defined]
    numbers = {"x86_64": 251, "aarch64": 30}  # ioprio_set
    number = numbers.get(os.uname().machine) if hasattr(os, "uname") else None
    if number is not None:
        with contextlib.suppress(Exception):
            import ctypes

            ctypes.CDLL(None, use_errno=True).syscall(number, 1, 0, 3 << 13)  # IOPRIO_WHO_PROCESS, self, CLASS_IDLE


def _follow_parent() -> None:
    """End (SIGTERM to itself: what it finished is kept) when the process that started it has gone."""
    import signal
    import threading

    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="zsseg-prepare-parent", daemon=True).start()


def _record_failure(meta_path: str, log: str, exc: BaseException, cache_dir: Optional[str] = None) -> str:
    """Write ``auto-prepare.failed.json`` (why, the log, the version) and the traceback into the log; the reason."""
    import traceback

    from zsseg_rt import __version__
    from zsseg_rt.console.errors import format_error

    reason = format_error(exc)
    root = precision_root(load_meta(meta_path), cache_dir)
    with contextlib.suppress(OSError):
        os.makedirs(root, exist_ok=True)
        with open(log, "a", encoding="utf-8") as handle:
            handle.write("".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
        failed = {"reason": reason, "log": log, "when": time.strftime("%Y-%m-%d %H:%M:%S"), "zsseg_rt": __version__}
        with open(os.path.join(root, PREPARE_FAILED), "w", encoding="utf-8") as handle:
            json.dump(failed, handle, indent=2)
    return reason


def main(argv: Optional[List[str]] = None) -> int:
    """``python -m zsseg_rt.prepare.auto BUNDLE [--background]``: prepare the bundle's CPU paths (what the Engine
    runs for ``prepare="now"`` / ``"background"``: ``runtime/upgrade.py``); ``--background``: on idle CPU only, one
    thread, ending when the process that started it ends. Prints what it prepared, how long it took and what it
    added on disk; a failure says why and where its log is, and is recorded so that it is not retried at every start.
    Exit status 0, or 1 on failure."""
    import argparse
    import signal
    import sys
    import threading

    from zsseg_rt.console.progress import shown
    from zsseg_rt.runtime.upgrade import PREPARE_LOG

    parser = argparse.ArgumentParser(prog="python -m zsseg_rt.prepare.auto", description=main.__doc__)
    parser.add_argument("bundle")
    parser.add_argument("--background", action="store_true", help="idle CPU only, one thread, follow the parent")
    parser.add_argument("--threads", type=int, default=None, help="threads (default: 1 with --background, else all)")
    parser.add_argument("--cache-dir", default=None, help="where the records go (default: BUNDLE/engines)")
    args = parser.parse_args(argv)
    if args.background:
        _yield_cpu()
        _follow_parent()
    if threading.current_thread() is threading.main_thread():  # (a test calls it in a thread)
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwind: temporary files go, finished records stay
    threads = args.threads if args.threads is not None else (1 if args.background else 0)
    log = os.path.join(precision_root(load_meta(args.bundle), args.cache_dir), PREPARE_LOG)
    try:
        with shown(not args.background):
            report = prepare_and_keep(args.bundle, args.cache_dir, threads=threads)
    except Exception as exc:  # noqa: BLE001 - said in one line, recorded, and the traceback in the log
        reason = _record_failure(args.bundle, log, exc, args.cache_dir)
        print(f"zsseg_rt.prepare.auto: error: {reason} (log: {log})", file=sys.stderr)
        return 1
    for row in report.results:
        print(result_line(row))
    print(report.summary())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
