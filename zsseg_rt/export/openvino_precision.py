"""OpenVINO's reduced precision through the one accuracy gate (``export/accuracy_gate.py``): bf16 on CPUs with
AMX-BF16 / AVX-512-BF16 (the image encoder compiled with ``INFERENCE_PRECISION_HINT=bf16``; the head, which computes
the mask logits every label comes from, and the text encoder stay f32) compared with ONNX Runtime fp32 on the sample
photos (plus the user's, ``gate_images``) and random inputs; the result is kept beside the bundle like the ONNX
Runtime int8 record (``<bundle>/engines/<digest>/engine.json``, key: ``runtime/openvino_backend.gate_key``: the
image encoder's sha256, the OpenVINO version, the CPU's name and int8 / bf16 instructions, the recipe). A failed gate
is recorded refused and not run unless accepted explicitly.

    prepare_openvino_precision("bundle", "bf16")   # or: zsseg build-engine bundle --backend openvino --precision bf16

Nothing here imports torch (OpenVINO, ONNX Runtime, numpy, OpenCV).
"""

from __future__ import annotations

import logging
import time
from typing import Dict, Optional, Sequence

from zsseg_rt.bundle import load_meta
from zsseg_rt.runtime.cpu_features import cpu_features
from zsseg_rt.runtime.file_verification import verify_bundle_files
from zsseg_rt.runtime.openvino_backend import (
    REDUCED_ROLES,
    gate_key,
    validate_openvino_precision,
)
from zsseg_rt.runtime.precision_records import (
    PrecisionRecordError,
    find_record,
    precision_root,
    record_dir,
    write_record,
)

LOG = logging.getLogger("zsseg_rt.precision")

__all__ = ["prepare_openvino_precision"]


def prepare_openvino_precision(
    bundle_dir: str,
    precision: str = "bf16",
    cache_dir: Optional[str] = None,
    force: bool = False,
    accept_below_gate: bool = False,
    gate_images: Optional[Sequence] = None,
    threads: int = 0,
) -> Dict:
    """Gate (or reuse the gate of) OpenVINO ``precision`` for a bundle on this CPU and OpenVINO version.

    Args:
        bundle_dir: an export bundle (windowed pipeline).
        precision: "bf16" (x86 with AMX-BF16 or AVX-512-BF16).
        cache_dir: where the record goes (default ``<bundle>/engines``).
        force: gate again even when a record exists.
        accept_below_gate: keep a result that fails the gate, marked as accepted (explicit override).
        gate_images: photos for the gate, paths or BGR arrays (default: the sample photos shipped with zsseg_rt).
        threads: threads of both sides of the gate (0: the libraries' choice).
    Returns:
        the record (``engine.json`` contents: key, ``accuracy_gate``).
    Raises:
        ValueError (precision impossible here), EngineAccuracyError (the gate failed, not accepted; the record is
        written, marked refused).
    """
    from zsseg_rt.bundle import Files
    from zsseg_rt.runtime.backends import OnnxRuntimeBackend, OpenVinoBackend

    from .accuracy_gate import EngineAccuracyError, run_accuracy_gate

    if precision in ("fp32", "auto"):
        raise ValueError(
            f"precision={precision!r}: nothing to gate (fp32 is the bundle's own graphs; 'auto' picks among gated "
            "ones): prepare 'bf16'"
        )
    validate_openvino_precision(precision)
    meta = load_meta(bundle_dir)
    key = gate_key(meta, precision)
    root = precision_root(meta, cache_dir)
    if not force:
        try:
            return find_record(root, key)[0]
        except PrecisionRecordError as exc:
            LOG.info("gating openvino %s (%s)", precision, str(exc).splitlines()[0])
    verify_bundle_files(meta, [Files.IMAGE_ENCODER, Files.HEAD, Files.TEXT_ENCODER])
    start = time.perf_counter()
    candidate = OpenVinoBackend(meta, "cpu", threads, precision, cache_dir=cache_dir, gated=False)
    reference = OnnxRuntimeBackend(meta, "cpu", threads)
    report = run_accuracy_gate(
        meta,
        candidate,
        reference,
        precision,
        roles=REDUCED_ROLES,
        images=gate_images,
        accept_below_gate=accept_below_gate,
    )
    gate = report.as_dict()
    extra = {"cpu": cpu_features().summary(), "gate_seconds": round(time.perf_counter() - start, 1)}
    extra["compiled"] = {role: candidate.graphs.inference_precision(role) for role in ("image", "head", "text")}
    write_record(root, key, gate, extra=extra)
    if not gate["accepted"]:
        raise EngineAccuracyError(
            f"{gate['summary']}. OpenVINO {precision} is refused on this CPU (recorded in "
            f"{record_dir(root, key)!r}); use precision='fp32' (or 'auto', which runs fp32 here now), or accept it "
            "with accept_below_gate=True (`--accept-below-gate`)"
        )
    return find_record(root, key)[0]
