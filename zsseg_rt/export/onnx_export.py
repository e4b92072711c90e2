"""``zsseg export``: write a verified bundle (ONNX graphs + tokenizer + meta.json) from a PyTorch model.

The bundle is written into a temporary directory beside the target and renamed into place only after every
graph passed ``onnx.checker`` and the numerical verification, so a failed export never leaves a partial bundle.
"""

from __future__ import annotations

import contextlib
import datetime
import io
import json
import os
import shutil
import tempfile
import warnings
from typing import Any, Dict, List, Optional, Sequence

import torch

from zsseg_rt.bundle import BUNDLE_FORMAT_VERSION, GRAPH_FILES, Files, default_graph_io, sha256_file
from zsseg_rt.bundle.tokenizer import build_tokenizer_json

from .graphs import HeadGraph, ImageEncoderGraph, TextEncoderGraph, image_output_names
from .verify import verify_bundle

DEFAULT_OPSET = 18


class ExportError(RuntimeError):
    """The export failed its checks; nothing was written at the destination."""


def _export_graph(module, args, path, input_names, output_names, dynamic_axes, opset, dynamo=False) -> None:
    """Export one graph. ``dynamo=True`` uses the torch.export-based exporter with symbolic dimensions: needed
    for the text encoder's sequence axis, which the TorchScript tracer bakes into the attention reshapes."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=DeprecationWarning)
        warnings.simplefilter("ignore", category=torch.jit.TracerWarning)
        if dynamo:
            dims = {}
            shapes = {}
            for name, axes in dynamic_axes.items():
                if name in input_names:
                    shapes[name] = {
                        axis: dims.setdefault(label, torch.export.Dim(label)) for axis, label in axes.items()
                    }
            with contextlib.redirect_stdout(io.StringIO()):  # the dynamo exporter prints progress lines
                torch.onnx.export(
                    module,
                    args,
                    path,
                    input_names=list(input_names),
                    output_names=list(output_names),
                    dynamic_shapes=shapes,
                    opset_version=opset,
                    dynamo=True,
                    external_data=False,
                    verbose=False,
                )
            return
        torch.onnx.export(
            module,
            args,
            path,
            input_names=list(input_names),
            output_names=list(output_names),
            dynamic_axes=dynamic_axes,
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )


def _check_graph(path: str) -> None:
    import onnx

    onnx.checker.check_model(path, full_check=True)


def export_graphs(model, out_dir: str, max_classes: int = 256, opset: int = DEFAULT_OPSET) -> None:
    """Export the image encoder, head and text encoder of ``model`` (eval mode, CPU, fp32) into ``out_dir``."""
    cfg = model.config
    size = int(cfg.image_size)
    grid = (size // cfg.patch_size, size // cfg.patch_size)
    dim = int(cfg.embed_dim)
    io = default_graph_io(image_output_names(model))
    image_graph = ImageEncoderGraph(model)
    image = torch.zeros(1, 3, size, size)
    with torch.no_grad():
        features = tuple(t.detach() for t in image_graph(image))
    jobs = [("image", image_graph, (image,))]
    text = torch.nn.functional.normalize(torch.randn(min(3, max_classes), dim), dim=-1)
    jobs.append(("head", HeadGraph(model, grid), (text,) + features))
    # a short dummy sequence: the traced graph must not bake the context length into any reshape
    tokens = torch.zeros(2, 16, dtype=torch.int32)
    tokens[:, 0], tokens[:, 1] = 49406, 49407
    jobs.append(("text", TextEncoderGraph(model), (tokens,)))
    for role, module, args in jobs:
        entry = io[role]
        path = os.path.join(out_dir, GRAPH_FILES[role])
        _export_graph(
            module, args, path, entry["inputs"], entry["outputs"], entry["dynamic_axes"], opset, dynamo=(role == "text")
        )
        _check_graph(path)


def tensorrt_compatibility(out_dir: str) -> Dict[str, Any]:
    """Static TensorRT 10 check of every graph (TensorRT itself may be absent): recorded in meta.json.

    Findings do not fail the export (the bundle still runs with ONNX Runtime); ``zsseg build-engine`` is where
    TensorRT itself decides.
    """
    from .trt_compat import check_trt_compatibility

    result: Dict[str, Any] = {"checker": "zsseg_rt.export.trt_compat (onnx-tensorrt 10.x operator list)"}
    for role, name in GRAPH_FILES.items():
        report = check_trt_compatibility(os.path.join(out_dir, name))
        result[role] = {
            "ok": report.ok,
            "errors": [str(f) for f in report.errors],
            "warnings": [str(f) for f in report.warnings],
        }
        if report.errors:
            warnings.warn(f"{name}: TensorRT 10 would likely reject this graph:\n{report.format()}")
    return result


def _versions() -> Dict[str, str]:
    import onnx

    import zsseg_rt

    versions = {"zsseg_rt": zsseg_rt.__version__, "torch": torch.__version__, "onnx": onnx.__version__}
    try:
        import onnxruntime

        versions["onnxruntime"] = onnxruntime.__version__
    except ImportError:  # pragma: no cover
        pass
    try:
        import open_clip

        versions["open_clip"] = open_clip.__version__
    except ImportError:  # pragma: no cover
        pass
    return versions


def build_meta(model, max_classes: int, opset: int, source: Optional[str], extra: Dict[str, Any]) -> Dict[str, Any]:
    """The ``meta.json`` content (without file hashes and verification)."""
    cfg = model.config
    names: List[str] = list(cfg.class_names)
    seen = [names[i] for i in cfg.seen_classes]
    meta = {
        "format_version": BUNDLE_FORMAT_VERSION,
        "architecture": {"family": getattr(model, "family", "zegclip"), "config": cfg.to_dict()},
        "image_size": int(cfg.image_size),
        "patch_size": int(cfg.patch_size),
        "embed_dim": int(cfg.embed_dim),
        "context_length": int(model.text_encoder.context_length),
        "mean": [float(v) for v in cfg.mean],
        "std": [float(v) for v in cfg.std],
        "templates": list(cfg.templates),
        "calibration_bias": float(cfg.calibration_bias),
        "seen_class_names": seen,
        "training_class_names": names,
        "max_classes": int(max_classes),
        "crop_size": int(getattr(cfg, "crop_size", cfg.image_size)),
        "test_scale": [None if v is None else int(v) for v in getattr(cfg, "test_scale", [None, cfg.image_size])],
        "stride": int(getattr(cfg, "stride", 426)),
        "opset": int(opset),
        "io": default_graph_io(image_output_names(model)),
        "postprocess": dict(getattr(model, "export_postprocess", None) or {"activation": "sigmoid"}),
        "exporter_versions": _versions(),
        "source_checkpoint": os.path.abspath(source) if source else None,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    meta.update(extra)
    return meta


def export_bundle(
    model,
    out_dir: str,
    max_classes: int = 256,
    opset: int = DEFAULT_OPSET,
    source: Optional[str] = None,
    overwrite: bool = False,
    verify_images: Sequence[str] = (),
    extra_meta: Optional[Dict[str, Any]] = None,
) -> str:
    """Export ``model`` to a verified bundle directory and return its path.

    Args:
        model: a ``zsseg_rt.models.ZegCLIP`` (any config).
        out_dir: destination directory (must not exist unless ``overwrite``).
        max_classes: the largest vocabulary the bundle (and its TensorRT profile) accepts; >= 1.
        opset: ONNX opset (>= 17 so LayerNormalization is a native op for TensorRT).
        source: path of the checkpoint the model came from (recorded; used by the torch backend).
        overwrite: replace an existing bundle.
        verify_images: real photos used (with random inputs) by the ORT-vs-PyTorch check.
    Raises:
        ExportError when a check fails; the destination is left untouched.
    """
    if getattr(getattr(model, "config", None), "family", "") == "zegformer":
        raise NotImplementedError(
            "ZegFormer (two-stage) has no bundle format yet: its CLIP crop branch needs its own graphs and runtime "
            "steps. Run it in PyTorch (zsseg_rt.models.zegformer.predict.predict_zegformer / `zsseg eval`)."
        )
    if opset < 17:
        raise ValueError(f"opset must be >= 17 (native LayerNormalization for TensorRT), got {opset}")
    if max_classes < 1:
        raise ValueError(f"max_classes must be >= 1, got {max_classes}")
    out_dir = os.path.abspath(out_dir)
    if os.path.exists(out_dir) and not overwrite:
        raise FileExistsError(f"{out_dir!r} exists; pass overwrite=True (CLI: --overwrite) to replace it")
    parent = os.path.dirname(out_dir)
    os.makedirs(parent, exist_ok=True)
    model = model.eval().float().cpu()
    tmp = tempfile.mkdtemp(prefix=".zsseg-export-", dir=parent)
    try:
        export_graphs(model, tmp, max_classes, opset)
        tok = model.text_encoder.tokenizer
        build_tokenizer_json(tok.encoder, tok.bpe_ranks, os.path.join(tmp, Files.TOKENIZER))
        meta = build_meta(model, max_classes, opset, source, extra_meta or {})
        meta["tensorrt_compatibility"] = tensorrt_compatibility(tmp)
        meta["files"] = {
            name: sha256_file(os.path.join(tmp, name))
            for name in (Files.IMAGE_ENCODER, Files.HEAD, Files.TEXT_ENCODER, Files.TOKENIZER)
        }
        _write_json(os.path.join(tmp, Files.META), meta)
        report = verify_bundle(tmp, model, verify_images)
        meta["verification"] = report
        _write_json(os.path.join(tmp, Files.META), meta)
        if not report["passed"]:
            raise ExportError(f"ONNX Runtime does not reproduce PyTorch: {json.dumps(report, indent=1)}")
        _replace_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def _write_json(path: str, data: Dict[str, Any]) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=1, sort_keys=False)
        handle.write("\n")


def _replace_dir(src: str, dst: str) -> None:
    """Move ``src`` to ``dst``, replacing an existing ``dst`` only once ``src`` is complete."""
    if os.path.exists(dst):
        old = dst + ".old-" + os.path.basename(src)
        os.replace(dst, old)
        os.replace(src, dst)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(src, dst)
