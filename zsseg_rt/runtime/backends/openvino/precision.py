"""The OpenVINO backend's precisions (its row's: "fp32", "bf16", "int8", "auto"): which one runs on this CPU and
under which accuracy-gate record. The compiled graphs are ``graphs.py``; the runner ``runner.py``.

* ``"fp32"`` asks for ``INFERENCE_PRECISION_HINT=f32`` explicitly (OpenVINO's CPU plugin computes in bf16 by
  default on CPUs with AVX-512-BF16 or AMX, which would change results silently; ``graphs.py`` reads the compiled
  model's precision back and refuses a model that does not report the requested one).
* ``"bf16"`` (CPUs with AMX-BF16 or AVX-512-BF16 only) compiles the image encoder with ``bf16``; the head (which
  computes the mask logits every label comes from) and the text encoder stay f32. It runs only after the accuracy
  gate passed for this bundle, CPU and OpenVINO version (``openvino_precision_record``: the record beside the bundle,
  ``runtime/precision_records.py``; prepared on first use by ``prepare/openvino.py``).
* ``"int8"`` (x86 CPUs with VNNI or AMX-INT8 only) runs the image encoder quantised by NNCF post-training
  quantisation (``prepare/openvino.py``: calibrated on the Engine's own windows of the sample photos plus the
  user's), its IR kept beside the record with its sha256; the rest of the graph and the other graphs stay f32.
* ``"auto"`` runs the fastest precision that passed the gate here (``AUTO_ORDER``, else fp32) and says which.

Nothing here imports torch; ``openvino`` is imported when the backend is built (``pip install 'zsseg_rt[openvino]'``).
"""

from __future__ import annotations

import functools
import logging
import os
from typing import Any, Dict, List, Optional, Tuple

from zsseg_rt.bundle import BundleMeta

from ...cpu_features import CpuFeatures, cpu_features
from ...file_verification import cached_sha256
from ...precision_records import (
    GatedChoice,
    PrecisionKey,
    PrecisionRecordError,
    gated_choices_of,
    gated_record,
    pick_recorded,
)
from ..table import check_precision

__all__ = [
    "AUTO_ORDER",
    "INT8_INSTRUCTIONS",
    "gate_key",
    "gated_choices",
    "openvino_precision_record",
    "openvino_version",
    "resolve_openvino_precision",
    "validate_openvino_precision",
]

NAME = "openvino"  # this module's backend row
# the reduced precisions "auto" tries. Among those with a gate record, the fastest by the speed measured when they
# were gated goes first (precision_records.rank_choices); without records they are gated on first use in this order
# (bf16 first: cheap to gate, no quantisation). A CPU without bf16 skips it and tries int8 (VNNI / AMX-INT8).
AUTO_ORDER = ("bf16", "int8")
INT8_INSTRUCTIONS = ("amx-int8", "avx512-vnni", "avx-vnni")
INT8_NEEDS = ("nncf", "quantising needs NNCF (pip install 'zsseg_rt[openvino-int8]')")  # what preparing int8 imports
GATE_RECIPE_VERSION = 1
# INFERENCE_PRECISION_HINT of each precision (OpenVINO's element type names)
# (int8: the NNCF-quantised IR's quantised operations run int8 whatever the hint; the rest of it stays f32)
PRECISION_HINT = {"fp32": "f32", "bf16": "bf16", "int8": "f32"}
# the graphs a reduced precision applies to; every other graph stays f32 (the head computes the mask logits)
REDUCED_ROLES = ("image",)
LOG = logging.getLogger("zsseg_rt.precision")


def _ov():
    try:
        import openvino
    except ImportError as exc:
        raise ImportError(
            f"the openvino backend needs OpenVINO ({exc}): pip install 'zsseg_rt[openvino]' (or pip install openvino), "
            "or use backend='onnxruntime'"
        ) from exc
    return openvino


def openvino_version() -> str:
    return str(_ov().__version__).split("-")[0]


def validate_openvino_precision(precision: str, features: Optional[CpuFeatures] = None) -> None:
    """Raise ValueError for a precision OpenVINO cannot run on this CPU, saying why and what to use."""
    check_precision(NAME, precision, " (int8 on the CPU: backend='onnxruntime' with precision='int8')")
    if precision == "bf16":
        features = features or cpu_features()
        if not (features.x86 and features.bf16 in ("amx-bf16", "avx512-bf16")):
            raise ValueError(
                f"precision='bf16' on the openvino backend needs an x86 CPU with AMX-BF16 or AVX-512-BF16 (bf16 "
                f"arithmetic in hardware); this CPU is {features.summary()}. Use Engine(..., precision='fp32'), or "
                "Engine(..., precision='auto') (the fastest precision that passed the accuracy gate on this CPU)"
            )
    if precision == "int8":
        features = features or cpu_features()
        if not (features.x86 and features.int8_dot_product in INT8_INSTRUCTIONS):
            raise ValueError(
                f"precision='int8' on the openvino backend needs an x86 CPU with VNNI or AMX-INT8 (int8 dot products "
                f"summed exactly in int32); this CPU is {features.summary()}. Use Engine(..., precision='fp32'), or "
                "Engine(..., precision='auto') (the fastest precision that passed the accuracy gate on this CPU)"
            )


def _cpu_name(core: Any) -> str:
    try:
        return str(core.get_property("CPU", "FULL_DEVICE_NAME"))
    except Exception:  # noqa: BLE001 - a property OpenVINO does not report: the flags still key the cache
        return "unknown"


def _device_class(features: Optional[CpuFeatures] = None) -> str:
    features = features or cpu_features()
    return f"cpu {_core_cpu_name()} {features.machine} int8 {features.int8_dot_product} bf16 {features.bf16}"


@functools.lru_cache(maxsize=1)
def _core_cpu_name() -> str:
    """The CPU's name as OpenVINO reports it (read once per process: the CPU does not change under it)."""
    return _cpu_name(_ov().Core())


def gate_key(meta: BundleMeta, precision: str, ov_version: Optional[str] = None, device: Optional[str] = None):
    """The accuracy-gate record key of ``precision`` for ``meta``'s image encoder on this CPU and OpenVINO version
    (threads are not in it: they do not change what is computed)."""
    recipe: Dict[str, Any] = {
        "version": GATE_RECIPE_VERSION,
        "inference_precision": {role: PRECISION_HINT[precision] for role in REDUCED_ROLES},
        "execution_mode": "ACCURACY",
        "other_graphs": "f32",
    }
    if precision == "int8":
        recipe["quantisation"] = dict(INT8_RECIPE)
    library = f"openvino {ov_version or openvino_version()}"
    return PrecisionKey.of_image_encoder(meta, NAME, precision, library, device or _device_class(), recipe)


# how the int8 image encoder is made (prepare/openvino.py; part of its record's key)
INT8_RECIPE = {
    "tool": "nncf.quantize (post-training, OpenVINO backend)",
    "model_type": "transformer",
    "preset": "mixed",
    "calibration": "the Engine's windows of the sample photos plus the user's calibration photos",
}
INT8_WEIGHTS_FIELD = "weights_sha256"  # the IR's .bin (the record's artefact is its .xml)


def openvino_precision_record(
    meta: BundleMeta, precision: str, cache_dir: Optional[str] = None, prepare: bool = True
) -> Tuple[Dict[str, Any], Optional[str]]:
    """``(record, artefact)``: the passing accuracy-gate record of ``precision`` ("bf16" / "int8") here and its
    artefact (int8: the quantised image encoder's IR ``.xml``, its ``.bin`` beside it; bf16: None); a missing record
    is prepared (gated) when ``prepare``, else refused.

    Raises:
        ValueError (the CPU cannot run it), PrecisionRecordError / PrecisionGateRefused (no passing record, or a
        modified artefact), EngineAccuracyError (the first-use gate failed; recorded refused).
    """
    validate_openvino_precision(precision)
    doing = "quantising" if precision == "int8" else "compiling"
    hint = (
        "gating an OpenVINO precision needs zsseg_rt.prepare's accuracy gate ({exc}); prepare it on another machine "
        "of the same CPU kind with `zsseg build-engine BUNDLE --backend openvino --precision bf16` and copy the "
        "bundle's engines/ folder"
    )
    record, artefact = gated_record(meta, gate_key(meta, precision), cache_dir, prepare, "OpenVINO", doing, hint)
    if artefact is not None:
        weights = os.path.splitext(artefact)[0] + ".bin"
        if not os.path.isfile(weights) or cached_sha256(weights) != record.get(INT8_WEIGHTS_FIELD):
            raise PrecisionRecordError(
                f"{weights!r} is missing or does not match the sha256 in its record (truncated or modified); delete "
                f"{os.path.dirname(artefact)!r} to have it made again"
            )
    return record, artefact


def resolve_openvino_precision(
    meta: BundleMeta,
    precision: str,
    cache_dir: Optional[str] = None,
    prepare: bool = True,
    features: Optional[CpuFeatures] = None,
) -> Tuple[str, Optional[Dict[str, Any]], Optional[str]]:
    """``(precision to run, its gate record, its image-encoder artefact)``: fp32 without a record; an explicit
    reduced precision needs its passing record; ``"auto"`` takes the first of ``AUTO_ORDER`` this CPU can run whose
    gate passed (gating it on first use when ``prepare``), else fp32, and logs which and why."""
    validate_openvino_precision(precision, features)
    if precision == "fp32":
        return "fp32", None, None
    if precision != "auto":
        return (precision, *openvino_precision_record(meta, precision, cache_dir, prepare))

    chosen, found = pick_recorded(
        meta,
        cache_dir,
        AUTO_ORDER,
        lambda candidate: validate_openvino_precision(candidate, features),
        lambda candidate: gate_key(meta, candidate),
        lambda candidate: openvino_precision_record(meta, candidate, cache_dir, prepare),
        "OpenVINO",
        LOG,
    )
    if found is None:
        return "fp32", None, None
    return (chosen, *found)


def gated_choices(
    meta: BundleMeta, cache_dir: Optional[str] = None, features: Optional[CpuFeatures] = None
) -> List[GatedChoice]:
    """The backend table row's ``gated_choices``: bf16 and int8 for this bundle, CPU and OpenVINO version, from their
    records (``precision_records.gated_choices_of``; nothing is prepared or compiled). Raises ImportError without
    OpenVINO."""
    _ov()
    features = features or cpu_features()
    device = _device_class(features)
    validate = lambda precision: validate_openvino_precision(precision, features)  # noqa: E731
    key_of = lambda precision: gate_key(meta, precision, device=device)  # noqa: E731
    return gated_choices_of(NAME, meta, cache_dir, AUTO_ORDER, validate, key_of, {"int8": INT8_NEEDS})
