"""OpenVINO's reduced precision through the one accuracy gate (``prepare/gate.py``): bf16 on CPUs with
AMX-BF16 / AVX-512-BF16 (the image encoder compiled with ``INFERENCE_PRECISION_HINT=bf16``; the head, which computes
the mask logits every label comes from, and the text encoder stay f32) compared with ONNX Runtime fp32 on the sample
photos (plus the user's, ``gate_images``) and random inputs; the result is kept beside the bundle like the ONNX
Runtime int8 record (``<bundle>/engines/<digest>/engine.json``, key: ``runtime/backends/openvino/precision.gate_key``: the
image encoder's sha256, the OpenVINO version, the CPU's name and int8 / bf16 instructions, the recipe). A failed gate
is recorded refused and not run unless accepted explicitly.

int8 on CPUs with VNNI / AMX-INT8: NNCF post-training quantisation (``nncf.quantize``, transformer model type, mixed
preset: int8 weights and activations with calibrated ranges, SmoothQuant and bias correction as NNCF applies them)
of the image encoder, calibrated on the model's own inputs: the windows the Engine cuts from the sample photos plus
the user's ``calibration_images``. The quantised IR (``image_encoder.int8.xml`` / ``.bin``) is kept in the record's
folder with both sha256s; the gate then decides as for bf16. NNCF is optional (``pip install 'zsseg_rt[openvino-int8]'``;
requirements.txt pins it) and torch-free with the OpenVINO backend.

    prepare_openvino_precision("bundle", "bf16")   # or: zsseg build-engine bundle --backend openvino --precision bf16

Nothing here imports torch (OpenVINO, ONNX Runtime, NNCF, numpy, OpenCV).
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from zsseg_rt.bundle import load_meta
from zsseg_rt.prepare.gated import prepare_gated_record, quieter
from zsseg_rt.runtime.backends.openvino.precision import (
    INT8_RECIPE,
    INT8_WEIGHTS_FIELD,
    NAME,
    REDUCED_ROLES,
    gate_key,
    validate_openvino_precision,
)
from zsseg_rt.runtime.file_verification import cached_sha256

__all__ = ["INT8_XML", "calibration_windows", "prepare_openvino_precision", "quantize_image_encoder"]
INT8_XML = "image_encoder.int8.xml"


def prepare_openvino_precision(
    bundle_dir: str,
    precision: str = "bf16",
    cache_dir: Optional[str] = None,
    force: bool = False,
    accept_below_gate: bool = False,
    gate_images: Optional[Sequence] = None,
    threads: int = 0,
    calibration_images: Optional[Sequence] = None,
) -> Dict:
    """Gate (or reuse the gate of) OpenVINO ``precision`` for a bundle on this CPU and OpenVINO version.

    Args:
        bundle_dir: an export bundle (windowed pipeline).
        precision: "bf16" (x86 with AMX-BF16 or AVX-512-BF16) or "int8" (x86 with VNNI or AMX-INT8; needs NNCF).
        cache_dir: where the record goes (default ``<bundle>/engines``).
        force: gate again even when a record exists.
        accept_below_gate: keep a result that fails the gate, marked as accepted (explicit override).
        gate_images: photos for the gate, paths or BGR arrays (default: the sample photos shipped with zsseg_rt).
        threads: threads of both sides of the gate (0: the libraries' choice).
        calibration_images: int8: photos calibrated on besides the sample photos (paths or BGR arrays).
    Returns:
        the record (``engine.json`` contents: key, ``accuracy_gate``).
    Raises:
        ValueError (precision impossible here), EngineAccuracyError (the gate failed, not accepted; the record is
        written, marked refused).
    """
    from zsseg_rt.prepare.gate import gate_reference, run_accuracy_gate
    from zsseg_rt.runtime.backends import open_backend

    if precision in ("fp32", "auto"):
        raise ValueError(
            f"precision={precision!r}: nothing to gate (fp32 is the bundle's own graphs; 'auto' picks among gated "
            "ones): prepare 'bf16'"
        )
    validate_openvino_precision(precision)
    meta = load_meta(bundle_dir)

    def make(folder: str, extra: Dict[str, Any]) -> Tuple[Optional[str], Dict[str, Any]]:
        start = time.perf_counter()
        artefact = None
        if precision == "int8":
            artefact = os.path.join(folder, INT8_XML)
            extra["quantisation"] = quantize_image_encoder(meta, artefact, calibration_images, threads, cache_dir)
            extra[INT8_WEIGHTS_FIELD] = cached_sha256(os.path.splitext(artefact)[0] + ".bin")
        extra["prepare_seconds"] = round(time.perf_counter() - start, 1)
        candidate = open_backend(
            meta, NAME, precision=precision, threads=threads, cache_dir=cache_dir, gated=False, image_model=artefact
        )
        reference = gate_reference(meta, threads)
        report = run_accuracy_gate(
            meta,
            candidate,
            reference,
            precision,
            roles=REDUCED_ROLES,
            images=gate_images,
            accept_below_gate=accept_below_gate,
        )
        extra["gate_seconds"] = round(time.perf_counter() - start, 1)
        extra["compiled"] = {role: candidate.graphs.inference_precision(role) for role in ("image", "head", "text")}
        return artefact, report.as_dict()

    return prepare_gated_record(
        meta,
        gate_key(meta, precision),
        cache_dir,
        force,
        "gating",
        make,
        "OpenVINO",
        f"Engine(..., precision='fp32') (or Engine(..., precision='auto'), which runs fp32 here now), or accept it "
        f"explicitly: `zsseg build-engine BUNDLE --backend openvino --precision {precision} --force "
        "--accept-below-gate`",
    )


def calibration_windows(meta, images: Optional[Sequence] = None, threads: int = 0, cache_dir=None) -> List[np.ndarray]:
    """The image encoder's inputs (``[1, 3, S, S]`` float32 each) for the sample photos plus ``images``: the windows
    the Engine cuts and normalises from them (fp32 OpenVINO Engine, recorded at the encoder's input)."""
    from zsseg_rt.prepare.gate import VOC_CLASSES, _read_photos
    from zsseg_rt.runtime.backends import open_backend
    from zsseg_rt.runtime.engine import Engine

    photos = _read_photos(None) + (_read_photos(list(images)) if images else [])
    inner = open_backend(meta, NAME, precision="fp32", threads=threads, cache_dir=cache_dir)
    windows: List[np.ndarray] = []
    encode = inner.encode_image

    def recording(batch):
        windows.extend(np.array(window[None], dtype=np.float32) for window in batch)
        return encode(batch)

    inner.encode_image = recording  # type: ignore[method-assign]
    engine = Engine(meta.path, VOC_CLASSES[: int(meta.max_classes)], backend=inner, verify=False)
    for photo in photos:
        engine(photo)
    return windows


def quantize_image_encoder(meta, target: str, images=None, threads: int = 0, cache_dir=None) -> Dict[str, object]:
    """Write the NNCF-quantised image encoder IR to ``target`` (``.xml``, ``.bin`` beside it); returns what was done.

    Raises:
        ImportError saying how to install NNCF.
    """
    try:
        import nncf
    except ImportError as exc:
        raise ImportError(
            f"precision='int8' on the openvino backend needs NNCF ({exc}): pip install 'zsseg_rt[openvino-int8]' "
            "(requirements.txt pins nncf), or use precision='bf16' / 'auto'"
        ) from exc
    import openvino as ov

    from zsseg_rt.bundle import Files

    windows = calibration_windows(meta, images, threads, cache_dir)
    model = ov.Core().read_model(meta.file(Files.IMAGE_ENCODER))
    with quieter(logging.getLogger("nncf"), logging.WARNING):
        quantised = nncf.quantize(
            model,
            nncf.Dataset(windows),
            model_type=nncf.ModelType.TRANSFORMER,
            preset=nncf.QuantizationPreset.MIXED,
            subset_size=len(windows),
        )
    folder = os.path.dirname(os.path.abspath(target))
    with tempfile.TemporaryDirectory(dir=folder) as scratch:  # complete files or none (the record is written last)
        partial = os.path.join(scratch, os.path.basename(target))
        ov.save_model(quantised, partial)
        os.replace(os.path.splitext(partial)[0] + ".bin", os.path.splitext(target)[0] + ".bin")
        os.replace(partial, target)
    fake = sum(op.get_type_name() == "FakeQuantize" for op in quantised.get_ops())
    return {**INT8_RECIPE, "calibration_windows": len(windows), "nncf": str(nncf.__version__), "fake_quantize": fake}
