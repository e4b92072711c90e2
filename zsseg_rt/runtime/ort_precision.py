"""Reduced precision for the image encoder on ONNX Runtime's CPU execution provider: which graph and session
options ``OnnxRuntimeBackend(precision=...)`` opens.

* ``"fp32"`` (default): the bundle's graph, exact.
* ``"int8"``: the image encoder with its weight MatMuls dynamically quantised (int8 per-channel weights, uint8
  per-tensor activations quantised at run time; attention MatMuls, Softmax, LayerNorm and GELU stay float), made
  from the bundle's graph by ``zsseg_rt.export.ort_quantize`` and kept under ``<bundle>/engines/<digest>/`` with its
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

import importlib.util
import logging
from typing import Dict, List, Optional, Tuple

from zsseg_rt.bundle import BundleMeta, Files

from .cpu_features import CpuFeatures, cpu_features
from .precision_records import (
    GatedChoice,
    PrecisionKey,
    find_or_prepare,
    gated_choice,
    load_preparer,
    pick_gated_precision,
    precision_root,
)

LOG = logging.getLogger("zsseg_rt.precision")
NAME = "onnxruntime"  # this module's backend row
ORT_PRECISIONS = ("fp32", "int8", "bf16", "auto")
# the reduced precisions "auto" tries, fastest first: bf16 where ONNX Runtime has it (Arm64 CPUs with bf16), then
# int8 (the weight MatMuls dynamically quantised: any x86-64 or Arm64 CPU). Each runs only after its gate passed.
ORT_AUTO_ORDER = ("bf16", "int8")
INT8_RECIPE_VERSION = 1
BF16_RECIPE_VERSION = 1
FASTMATH_BF16 = "mlas.enable_gemm_fastmath_arm64_bfloat16"
# the export side that quantises and gates (found by name: the runtime never imports the exporter)
PREPARER = "zsseg_rt.export.ort_quantize:prepare_onnxruntime_precision"

__all__ = [
    "ORT_PRECISIONS",
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
    if precision not in ORT_PRECISIONS:
        raise ValueError(f"the onnxruntime backend's precision must be one of {ORT_PRECISIONS}, got {precision!r}")
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
    return PrecisionKey.of_image_encoder(meta, "onnxruntime", precision, f"onnxruntime {ort_version}", device, recipe)


def _preparer():
    return load_preparer(
        PREPARER,
        "preparing the int8 image encoder needs the onnx package and the exporter ({exc}): pip install onnx, or "
        "prepare it on another machine of the same CPU kind with `zsseg build-engine BUNDLE --backend onnxruntime "
        "--precision int8` and copy the bundle's engines/ folder",
    )


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
    key = precision_key(meta, precision)
    root = precision_root(meta, cache_dir)
    record, artefact = find_or_prepare(
        root,
        key,
        prepare,
        lambda: _preparer()(meta.path, precision=precision, cache_dir=cache_dir),
        lambda why: LOG.warning(
            "ONNX Runtime precision=%r has no gated record for this CPU yet (%s): preparing it now (quantise + "
            "accuracy gate against fp32, once; `zsseg build-engine --backend onnxruntime` does it ahead)",
            precision,
            why,
        ),
    )
    options = dict(bf16_recipe()["session_config"]) if precision == "bf16" else {}  # type: ignore[call-overload]
    return (artefact or meta.file(Files.IMAGE_ENCODER)), options, record


def resolve_ort_auto(
    meta: BundleMeta, cache_dir: Optional[str] = None, prepare: bool = True
) -> Tuple[str, Optional[Tuple[str, Dict[str, str], Optional[dict]]]]:
    """``precision="auto"`` on ONNX Runtime (the CPU path where OpenVINO is absent): the first of ``ORT_AUTO_ORDER``
    this CPU can run whose accuracy gate passed (gated on first use when ``prepare``), with its
    :func:`image_encoder_graph`, else ``("fp32", None)``; logs which and why."""

    def try_one(candidate: str):
        validate_ort_precision(candidate)
        return image_encoder_graph(meta, candidate, cache_dir, prepare)

    def existing(candidate: str) -> GatedChoice:
        validate_ort_precision(candidate)
        return gated_choice(precision_root(meta, cache_dir), precision_key(meta, candidate))

    return pick_gated_precision(ORT_AUTO_ORDER, try_one, "ONNX Runtime", LOG, existing)


def gated_choices(
    meta: BundleMeta, cache_dir: Optional[str] = None, features: Optional[CpuFeatures] = None
) -> List[GatedChoice]:
    """The backend table row's ``gated_choices`` (the CPU ``auto`` policy, ``runtime/backends/cpu_auto.py``): each
    reduced precision of ``ORT_AUTO_ORDER`` for this bundle, CPU and ONNX Runtime, from its record (nothing is
    prepared); a windowed bundle's image encoder only (other pipelines: none). Raises ImportError without ONNX
    Runtime."""
    import onnxruntime

    if getattr(meta, "pipeline", "windowed") != "windowed":
        return []
    features = features or cpu_features()
    root = precision_root(meta, cache_dir)
    choices = []
    for precision in ORT_AUTO_ORDER:
        try:
            validate_ort_precision(precision, features)
        except ValueError as exc:
            choices.append(GatedChoice(NAME, precision, "cannot", str(exc).split(". Use ")[0].splitlines()[0]))
            continue
        choice = gated_choice(root, precision_key(meta, precision, features, str(onnxruntime.__version__)))
        if choice.status == "missing" and precision == "int8" and importlib.util.find_spec("onnx") is None:
            choice = GatedChoice(NAME, precision, "cannot", "quantising needs the onnx package (pip install onnx)")
        choices.append(choice)
    return choices
