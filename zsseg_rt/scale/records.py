"""What ``zsseg batch`` (manifest rows) and ``zsseg serve`` (answers) say about one segmented image: one helper, so
the names and units are those of the rest of the package and change in one place.

The names follow the result's JSON form (``Result.to_dict`` / ``zsseg segment --json``): ``height``/``width`` in
pixels, ``areas`` the fraction of the image's pixels each present class labels (most frequent first, summing to 1),
``pixels`` the same as pixel counts, ``timing_ms`` milliseconds per stage, ``backend``, and ``random_weights`` (true
when the bundle says its weights are random or untrained: its labels mean nothing) where the bundle records it.
Torch-free and Ray-free.
"""

from __future__ import annotations

from typing import Any, Dict, Mapping, Optional, Sequence

import numpy as np

__all__ = [
    "image_record",
    "random_weights",
    "milliseconds",
    "label_png_bytes",
    "STAT_COUNTERS",
    "OUTCOME_COUNTERS",
    "outcome_of",
    "counted_requests",
]

# the counters of ``zsseg serve``'s GET /stats (besides in_flight, in_flight_limit, bad_by_status, mean_batch_size, pid
# and rss_bytes), all 0 on a fresh replica. Every HTTP request a replica gets lands in exactly one outcome counter
# (OUTCOME_COUNTERS): a POST /segment ("requests") in "ok" (200), "bad_requests" (4xx; "bad_by_status" splits them by
# status), "overloaded" (503: more requests than the replica's bound, with Retry-After), "aborted" (the client went
# away before its answer: a closed upload, or a request Ray Serve's proxy cancelled for that reason) or "errors" (5xx:
# failures of the server itself), once answered (``requests`` = their sum + ``in_flight``); any request addressed to a
# foreign host name in "forbidden" (403, DNS rebinding); GET /, /app.js, /info, /stats in "pages"; any other in
# "not_found" (404). Not outcomes: "images" segmented, "batches", "batched_requests", "refused_images" (of the
# bad_requests, the images the Engine refused inside a batch).
OUTCOME_COUNTERS = ("ok", "bad_requests", "overloaded", "aborted", "errors", "forbidden", "pages", "not_found")
STAT_COUNTERS = (
    "requests",
    "images",
    "batches",
    "batched_requests",
    "refused_images",
) + OUTCOME_COUNTERS


def random_weights(meta: Any) -> Optional[bool]:
    """Whether a bundle's weights are random or untrained (meta.json ``weights.random``); None when the bundle does
    not say (bundles exported before that field)."""
    raw = getattr(meta, "raw", {}) or {}
    weights = raw.get("weights")
    if isinstance(weights, Mapping) and isinstance(weights.get("random"), bool):
        return bool(weights["random"])
    return None


def milliseconds(seconds: Mapping[str, float]) -> Dict[str, float]:
    """``{stage: seconds}`` -> ``{stage: milliseconds}`` rounded to microseconds."""
    return {stage: round(1000.0 * float(value), 3) for stage, value in seconds.items()}


def image_record(
    labels: np.ndarray,
    class_names: Sequence[str],
    timing_s: Optional[Mapping[str, float]] = None,
    backend: Optional[str] = None,
    meta: Any = None,
) -> Dict[str, Any]:
    """The JSON-ready description of one segmentation (no arrays).

    Args:
        labels: ``[H, W]`` integer label map indexing ``class_names``.
        class_names: the names the labels index.
        timing_s: seconds per stage (reported as ``timing_ms``).
        backend: the backend that ran the graphs.
        meta: the bundle's ``BundleMeta`` (for ``random_weights``), or None.
    Returns:
        ``{"height", "width", "areas", "pixels", "timing_ms", "backend", "random_weights"}`` (the last three only
        when known).
    """
    from zsseg_rt.runtime.result import UNKNOWN_NAME

    height, width = (int(v) for v in labels.shape)
    counts = np.bincount(np.asarray(labels).ravel(), minlength=len(class_names))
    order = [int(i) for i in np.argsort(-counts, kind="stable") if counts[i] > 0]
    total = max(height * width, 1)

    def name(index: int) -> str:  # an id past the classes: the unknown label's (--unknown-below)
        return str(class_names[index]) if index < len(class_names) else UNKNOWN_NAME

    record: Dict[str, Any] = {
        "height": height,
        "width": width,
        "areas": {name(i): round(float(counts[i]) / total, 6) for i in order},
        "pixels": {name(i): int(counts[i]) for i in order},
    }
    if timing_s is not None:
        record["timing_ms"] = milliseconds(timing_s)
    if backend:
        record["backend"] = backend
    flag = random_weights(meta) if meta is not None else None
    if flag is not None:
        record["random_weights"] = flag
    return record


def label_png_bytes(labels: np.ndarray, num_classes: int) -> bytes:
    """PNG bytes of a ``[H, W]`` label map: 8-bit when ``num_classes <= 256``, else 16-bit (as ``zsseg segment``
    writes label maps)."""
    import cv2

    dtype = np.uint8 if num_classes <= 256 else np.uint16
    ok, encoded = cv2.imencode(".png", np.ascontiguousarray(labels.astype(dtype)))
    if not ok:
        raise RuntimeError(f"OpenCV could not encode a {labels.shape} label map as PNG")
    return encoded.tobytes()


def outcome_of(status: int) -> str:
    """The outcome counter of a POST /segment answered with HTTP ``status`` (see OUTCOME_COUNTERS): 200 "ok", 499
    (the client closed) "aborted", 503 "overloaded", other 4xx "bad_requests", anything else "errors"."""
    if status == 200:
        return "ok"
    if status == 499:
        return "aborted"
    if status == 503:
        return "overloaded"
    return "bad_requests" if 400 <= status < 500 else "errors"


def counted_requests(stats: Mapping[str, Any]) -> int:
    """Every HTTP request a replica's ``/stats`` accounts for: the outcome counters plus the requests still in flight
    (a check of "every request in exactly one counter": it equals the requests sent to the replica)."""
    return int(sum(stats[name] for name in OUTCOME_COUNTERS) + stats.get("in_flight", 0))
