"""What ``backend="auto"`` on a CPU chooses among, prepared ahead (``zsseg build-engine BUNDLE --backend auto``,
``Engine(prepare="now" / "background")``): every reduced precision a CPU row of the backend table can run here
(``BackendSpec.gated_choices``: ONNX Runtime int8 / bf16, OpenVINO bf16 / int8) is prepared and gated through its
row's own preparer, once (a record that exists is reused; a failed gate is recorded refused, its reason kept), and
each usable one gets the speed of its image encoder against ONNX Runtime fp32's measured side by side on this CPU
(``record["speed"]``: the ranking ``runtime/backends/cpu_auto.py`` reads).

The speed is the median over ``rounds`` interleaved calls (candidate, reference, candidate, ...) on the same
window, after one warm-up call each: interleaving puts both under the same machine load, so the ratio holds on a
busy machine better than either time does; the times are kept beside the ratio.
"""

from __future__ import annotations

import logging
import statistics
import time
from typing import Any, Dict, List, Optional

import numpy as np

from zsseg_rt.bundle import graph_files, load_meta
from zsseg_rt.runtime.backends.table import load_reference
from zsseg_rt.runtime.precision_records import SPEED_FIELD, GatedChoice, update_record

from .accuracy_gate import EngineAccuracyError
from .progress import stage_bar

__all__ = ["SPEED_ROUNDS", "measure_encoder_speed", "prepare_auto"]

LOG = logging.getLogger("zsseg_rt.precision")
SPEED_ROUNDS = 5  # interleaved timed calls per side (after one warm-up each)


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
    from zsseg_rt.runtime.backends import make_backend

    options: Dict[str, Any] = {"cache_dir": cache_dir} if cache_dir else {}
    return make_backend(meta, row_name, "cpu", None, precision, threads, False, prepare=False, **options)


def _prepare_one(row, meta, choice: GatedChoice, cache_dir, threads, force: bool) -> str:
    """Prepare ``choice`` through its row's preparer; returns "" or why it is not usable (recorded refused...)."""
    try:
        load_reference(str(row.prepare))(meta.path, choice.precision, cache_dir=cache_dir, force=force, threads=threads)
    except EngineAccuracyError as exc:
        return str(exc).splitlines()[0]
    except (ImportError, ValueError) as exc:
        return f"cannot be prepared here: {str(exc).splitlines()[0]}"
    return ""


def prepare_auto(
    bundle_dir: str, cache_dir: Optional[str] = None, threads: int = 0, force: bool = False
) -> List[Dict[str, Any]]:
    """Prepare, gate and measure every reduced precision the CPU rows can run here for a bundle; returns one
    ``{"backend", "precision", "status", "speedup", "reason"}`` per (row, precision), as :func:`cpu_policy` sees it
    afterwards. A record already there is reused (``force``: prepared and measured again); one without a speed is
    measured."""
    from zsseg_rt.runtime.backends.cpu_auto import cpu_candidates
    from zsseg_rt.runtime.backends.onnxruntime import OnnxRuntimeBackend

    meta = load_meta(bundle_dir)
    found, notes = cpu_candidates(meta, tuple(graph_files(meta.pipeline)), cache_dir)
    todo = [(row, c) for row, c in found if c.status in ("missing", "passed", "accepted") or force]
    todo = [(row, c) for row, c in todo if c.status != "cannot"]
    reference = None
    results = []
    with stage_bar(len(todo), "CPU paths: quantise, gate, measure", unit="path") as bar:
        for row, choice in todo:
            reason = ""
            if choice.status == "missing" or force:
                reason = _prepare_one(row, meta, choice, cache_dir, threads, force)
            speed = None
            if not reason:
                reference = reference or OnnxRuntimeBackend(meta, "cpu", threads)
                candidate = _open(row.name, meta, choice.precision, cache_dir, threads)
                speed = measure_encoder_speed(candidate, reference, int(meta.image_size))
                update_record(choice.root, choice.key, SPEED_FIELD, speed)
                LOG.info("%s %s: %.2fx ONNX Runtime fp32's image encoder", row.name, choice.precision, speed["speedup"])
            results.append(
                {
                    "backend": row.name,
                    "precision": choice.precision,
                    "status": "refused" if reason else "passed",
                    "speedup": speed["speedup"] if speed else None,
                    "reason": reason,
                }
            )
            bar.update()
    for row, choice in found:
        if (row, choice) not in todo:
            results.append(
                {
                    "backend": row.name,
                    "precision": choice.precision,
                    "status": choice.status,
                    "speedup": None,
                    "reason": choice.reason,
                }
            )
    results += [
        {"backend": note.split(":")[0], "precision": "", "status": "cannot", "speedup": None, "reason": note}
        for note in notes
    ]
    return results
