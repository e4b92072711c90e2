"""The ONNX Runtime backend's precisions (its row's: "fp32", "int8", "bf16", "auto"): which image-encoder graph
and session options its runner (``runner.py``) opens on the CPU execution provider.

* ``"fp32"`` (default): the bundle's graph, exact.
* ``"int8"``: the image encoder with its weight MatMuls dynamically quantised (int8 per-channel weights, uint8
  per-tensor activations quantised at run time; attention MatMuls, Softmax, LayerNorm and GELU stay float), made
  from the bundle's graph by ``zsseg_rt.prepare.onnxruntime`` and kept under ``<bundle>/engines/<digest>/`` with its
  sha256 and the accuracy gate's result (``runtime/precision_records.py``). On x86 CPUs without VNNI the weights are
  7-bit (``reduce_range``: no int16 saturation in ``vpmaddubsw``), so the key names the CPU's int8 instructions.
* ``"bf16"``: ONNX Runtime's fp32 GEMMs computed in bf16 (``mlas.enable_gemm_fastmath_arm64_bfloat16``), which
  exists on Arm64 CPUs with the bf16 extension only. On x86 ONNX Runtime (1.31) has no bf16 arithmetic (a bf16 MatMul
  is refused at load; the fast-math option is accepted and ignored: measured), so it is refused with the reason.

A precision without a passing record is prepared on first use (quantise + gate, logged as a warning) or, with
``prepare=False``, refused; ``zsseg build-engine BUNDLE --backend onnxruntime --precision int8`` prepares it ahead.
Nothing here imports torch.
"""

from __future__ import annotations

import logging
from typing import Dict, List, Optional, Tuple

from zsseg_rt.bundle import BundleMeta, Files

from ...cpu_features import CpuFeatures, cpu_features
from ...precision_records import (
    GatedChoice,
    PrecisionKey,
    gated_choices_of,
    gated_record,
    pick_recorded,
)
from ..table import check_precision

LOG = logging.getLogger("zsseg_rt.precision")
NAME = "onnxruntime"  # this module's backend row
# the reduced precisions "auto" tries, fastest first: bf16 where ONNX Runtime has it (Arm64 CPUs with bf16), then
# int8 (the weight MatMuls dynamically quantised: any x86-64 or Arm64 CPU). Each runs only after its gate passed.
ORT_AUTO_ORDER = ("bf16", "int8")
INT8_RECIPE_VERSION = 1
BF16_RECIPE_VERSION = 1
FASTMATH_BF16 = "mlas.enable_gemm_fastmath_arm64_bfloat16"
INT8_NEEDS = ("onnx", "quantising needs the onnx package (pip install onnx)")  # what preparing int8 imports

__all__ = [
    "ORT_AUTO_ORDER",
    "gated_choices",
    "image_encoder_graph",
    "resolve_ort_auto",
    "int8_recipe",
    "precision_key",
    "validate_ort_precision",
]


def validate_ort_precision(precision: str, features: Optional[CpuFeatures] = None) -> None:
    """Raise ValueError for a precision ONNX Runtime cannot run here, saying why and what to use."""
    check_precision(NAME, precision)
    features = features or cpu_features()
    if precision == "bf16" and not (features.arm64 and features.bf16 == "arm-bf16"):
        raise ValueError(
            f"precision='bf16' on ONNX Runtime needs an Arm64 CPU with bf16 ({FASTMATH_BF16}); this CPU is "
            f"{features.summary()}, and ONNX Runtime's x86 CPU execution provider has no bf16 arithmetic (a bf16 "
            "MatMul is refused, the fast-math option is ignored). Use precision='int8' here, or backend='torch' with "
            "precision='bf16' (its oneDNN kernels use AVX-512 BF16 / AMX)"
        )


def int8_recipe(features: CpuFeatures) -> Dict[str, object]:
    """The settings of the int8 image encoder on this CPU (recorded in its key)."""
    return {
        "version": INT8_RECIPE_VERSION,
        "method": "dynamic",
        "weights": "int8 symmetric per output channel",
        "activations": "uint8 per tensor, quantised at run time",
        "quantised": "MatMul with a constant weight (Gemm rewritten as MatMul + Add)",
        "float": "attention MatMuls, Softmax, LayerNormalization, GELU, Conv, everything else",
        "reduce_range": bool(features.int8_saturates),
    }


def bf16_recipe() -> Dict[str, object]:
    return {"version": BF16_RECIPE_VERSION, "session_config": {FASTMATH_BF16: "1"}, "graph": "the bundle's fp32"}


def precision_key(
    meta: BundleMeta, precision: str, features: Optional[CpuFeatures] = None, ort_version: Optional[str] = None
) -> PrecisionKey:
    """The record key of the image encoder at ``precision`` ("int8" / "bf16") for this bundle, CPU and ONNX Runtime."""
    features = features or cpu_features()
    if ort_version is None:
        import onnxruntime

        ort_version = str(onnxruntime.__version__)
    recipe = int8_recipe(features) if precision == "int8" else bf16_recipe()
    device = f"cpu {features.machine} int8 {features.int8_dot_product} bf16 {features.bf16}"
    return PrecisionKey.of_image_encoder(meta, NAME, precision, f"onnxruntime {ort_version}", device, recipe)


def image_encoder_graph(
    meta: BundleMeta, precision: str, cache_dir: Optional[str] = None, prepare: bool = True
) -> Tuple[str, Dict[str, str], Optional[dict]]:
    """``(graph path, session config entries, record)`` of the image encoder at ``precision``; fp32 is the bundle's
    graph without a record. A missing record is prepared (quantise + gate) when ``prepare``, else refused.

    Raises:
        ValueError (precision impossible here), PrecisionRecordError (no passing record), EngineAccuracyError (the
        first-use gate failed).
    """
    validate_ort_precision(precision)
    if precision == "auto":
        raise ValueError("image_encoder_graph needs a concrete precision; 'auto' is resolved by resolve_ort_auto")
    if precision == "fp32":
        return meta.file(Files.IMAGE_ENCODER), {}, None
    hint = (
        "preparing the int8 image encoder needs the onnx package and zsseg_rt.prepare ({exc}): pip install onnx, or "
        "prepare it on another machine of the same CPU kind with `zsseg build-engine BUNDLE --backend onnxruntime "
        "--precision int8` and copy the bundle's engines/ folder"
    )
    record, artefact = gated_record(
        meta, precision_key(meta, precision), cache_dir, prepare, "ONNX Runtime", "quantising", hint
    )
    options = dict(bf16_recipe()["session_config"]) if precision == "bf16" else {}  # type: ignore[call-overload]
    return (artefact or meta.file(Files.IMAGE_ENCODER)), options, record


def resolve_ort_auto(
    meta: BundleMeta, cache_dir: Optional[str] = None, prepare: bool = True
) -> Tuple[str, Optional[Tuple[str, Dict[str, str], Optional[dict]]]]:
    """``precision="auto"`` on ONNX Runtime (the CPU path where OpenVINO is absent): the first of ``ORT_AUTO_ORDER``
    this CPU can run whose accuracy gate passed (gated on first use when ``prepare``), with its
    :func:`image_encoder_graph`, else ``("fp32", None)``; logs which and why."""

    return pick_recorded(
        meta,
        cache_dir,
        ORT_AUTO_ORDER,
        validate_ort_precision,
        lambda candidate: precision_key(meta, candidate),
        lambda candidate: image_encoder_graph(meta, candidate, cache_dir, prepare),
        "ONNX Runtime",
        LOG,
    )


def gated_choices(
    meta: BundleMeta, cache_dir: Optional[str] = None, features: Optional[CpuFeatures] = None
) -> List[GatedChoice]:
    """The backend table row's ``gated_choices``: each reduced precision of ``ORT_AUTO_ORDER`` for this bundle, CPU
    and ONNX Runtime, from its record (``precision_records.gated_choices_of``; nothing is prepared). Raises
    ImportError without ONNX Runtime."""
    import onnxruntime

    features, version = features or cpu_features(), str(onnxruntime.__version__)
    validate = lambda precision: validate_ort_precision(precision, features)  # noqa: E731
    key_of = lambda precision: precision_key(meta, precision, features, version)  # noqa: E731
    return gated_choices_of(NAME, meta, cache_dir, ORT_AUTO_ORDER, validate, key_of, {"int8": INT8_NEEDS})
