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

__all__ = ["image_record", "random_weights", "milliseconds", "label_png_bytes", "STAT_COUNTERS"]

# the counters of ``zsseg serve``'s GET /stats (besides mean_batch_size, pid and rss_bytes), all 0 on a fresh replica:
# "bad_requests" 4xx answers, "refused_images" images the Engine refused in a batch, "errors" failures of the server
# itself (5xx), "aborted" uploads the client gave up before the body arrived, "forbidden" requests addressed to a
# foreign host name (403, DNS rebinding)
STAT_COUNTERS = (
    "requests",
    "images",
    "batches",
    "batched_requests",
    "bad_requests",
    "refused_images",
    "errors",
    "aborted",
    "forbidden",
)


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
    height, width = (int(v) for v in labels.shape)
    counts = np.bincount(np.asarray(labels).ravel(), minlength=len(class_names))
    order = [int(i) for i in np.argsort(-counts, kind="stable") if counts[i] > 0]
    total = max(height * width, 1)
    record: Dict[str, Any] = {
        "height": height,
        "width": width,
        "areas": {class_names[i]: round(float(counts[i]) / total, 6) for i in order},
        "pixels": {class_names[i]: int(counts[i]) for i in order},
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
