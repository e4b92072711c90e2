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
import time
import warnings
from typing import Any, Callable, Dict, List, Optional, Sequence

import torch

from zsseg_rt.bundle import (
    BUNDLE_FORMAT_VERSION,
    GRAPH_FILES,
    Files,
    default_graph_io,
    sha256_file,
    weights_record,
    write_meta,
)
from zsseg_rt.console.progress import shown, stage_bar
from zsseg_rt.errors import with_path
from zsseg_rt.vocabulary import build_tokenizer_json

from .graphs import HeadGraph, ImageEncoderGraph, TextEncoderGraph, family_of, image_output_names
from .overwrite import ExportStaging, check_export_destination, remove_stale_staging, replace_directory
from .verify import verify_bundle

DEFAULT_OPSET = 18


class ExportError(RuntimeError):
    """The export failed its checks; nothing was written at the destination."""


def export_graph(module, args, path, input_names, output_names, dynamic_axes, opset, dynamo=False) -> None:
    """Export one graph. ``dynamo=True`` uses the torch.export-based exporter with symbolic dimensions: needed
    for the text encoder's sequence axis, which the TorchScript tracer bakes into the attention reshapes."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=DeprecationWarning)
        warnings.simplefilter("ignore", category=torch.jit.TracerWarning)
        # torch 2.11's exporter (the GPU image's) trips its own pytree deprecation (a LeafSpec copied): not the user's
        warnings.filterwarnings(
            "ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated", category=FutureWarning
        )
        if dynamo:  # symbolic dimensions for the dynamic axes of the inputs; the exporter prints progress lines
            dims: Dict[str, Any] = {}
            shapes = {
                name: {axis: dims.setdefault(label, torch.export.Dim(label)) for axis, label in axes.items()}
                for name, axes in dynamic_axes.items()
                if name in input_names
            }
            mode: Dict[str, Any] = dict(dynamic_shapes=shapes, external_data=False, verbose=False)
            quiet: Any = contextlib.redirect_stdout(io.StringIO())
        else:
            mode = dict(dynamic_axes=dynamic_axes, do_constant_folding=True)
            quiet = contextlib.nullcontext()
        with quiet:
            torch.onnx.export(
                module,
                args,
                path,
                input_names=list(input_names),
                output_names=list(output_names),
                opset_version=opset,
                dynamo=bool(dynamo),
                **mode,
            )


def check_graph(path: str) -> None:
    """ONNX's full checker on an exported graph file (raises onnx's ValidationError)."""
    import onnx

    onnx.checker.check_model(path, full_check=True)


def bundle_graph_io(model) -> Dict[str, Any]:
    """The "io" table of ``model``'s bundle: its image outputs, and any input size when its family declares
    whole-image inference for it (``Export.whole_image``)."""
    return default_graph_io(image_output_names(model), any_size=family_of(model).export.whole_image(model) is not None)


def export_graphs(model, out_dir: str, max_classes: int = 256, opset: int = DEFAULT_OPSET) -> None:
    """Export the image encoder, head and text encoder of ``model`` (eval mode, CPU, fp32) into ``out_dir``. The
    image graph is traced at the window size S x S; with dynamic height and width when the family declares
    whole-image inference (then everything size-dependent is computed from the input's shape in the graph)."""
    cfg = model.config
    size = int(cfg.image_size)
    grid = (size // cfg.patch_size, size // cfg.patch_size)
    dim = int(cfg.embed_dim)
    io = bundle_graph_io(model)
    image_graph = ImageEncoderGraph(model)
    image = torch.zeros(1, 3, size, size)
    with torch.no_grad():
        features = tuple(t.detach() for t in image_graph(image))
    jobs = [("image", image_graph, (image,))]
    text = torch.nn.functional.normalize(torch.randn(min(3, max_classes), dim), dim=-1)
    jobs.append(("head", HeadGraph(model, grid), (text,) + features))
    jobs.append(("text", TextEncoderGraph(model), (dummy_tokens(),)))
    export_graph_jobs(jobs, io, GRAPH_FILES, out_dir, opset)


def dummy_tokens() -> torch.Tensor:
    """The text encoder's tracing input: a short dummy sequence (start, end token), so that the traced graph bakes
    the context length into no reshape."""
    tokens = torch.zeros(2, 16, dtype=torch.int32)
    tokens[:, 0], tokens[:, 1] = 49406, 49407
    return tokens


def export_graph_jobs(jobs, io: Dict[str, Any], files: Dict[str, str], out_dir: str, opset: int) -> None:
    """Export each ``(role, module, example args)`` of ``jobs`` to ``out_dir/files[role]`` with the I/O names and
    dynamic axes of ``io[role]`` (the text encoder through torch's dynamo exporter), then check each graph
    (``onnx.checker`` and the opset asked). Every bundle layout's graphs are written by this one loop (a progress
    bar over the graphs while an export shows bars: ``zsseg_rt.console.progress``)."""
    with stage_bar(len(jobs), "ONNX graphs", unit="graph") as bar:
        for role, module, args in jobs:
            bar.set_postfix_str(role)
            entry = io[role]
            path = os.path.join(out_dir, files[role])
            dynamo = role == "text"
            export_graph(module, args, path, entry["inputs"], entry["outputs"], entry["dynamic_axes"], opset, dynamo)
            check_graph(path)
            _check_opset(path, opset)
            bar.update()


def _check_opset(path: str, opset: int) -> None:
    """Refuse a graph torch wrote at another opset than asked (its dynamo exporter starts at 18 and keeps 18 when
    converting down fails): meta.json would record an opset the graph does not have."""
    import onnx

    written = [o.version for o in onnx.load(path, load_external_data=False).opset_import if o.domain in ("", "ai.onnx")]
    if written != [int(opset)]:
        raise ExportError(
            f"{os.path.basename(path)}: torch's ONNX exporter wrote opset {', '.join(map(str, written))}, not the "
            f"{opset} asked for (it cannot convert this graph to {opset}); export with --opset {max(written + [18])}"
        )


def tensorrt_compatibility(out_dir: str) -> Dict[str, Any]:
    """Static TensorRT 10 check of every graph (TensorRT itself may be absent): recorded in meta.json.

    Findings do not fail the export (the bundle still runs with ONNX Runtime); ``zsseg build-engine`` is where
    TensorRT itself decides.
    """
    from zsseg_rt.prepare.tensorrt.compat import check_trt_compatibility

    result: Dict[str, Any] = {"checker": "zsseg_rt.prepare.tensorrt.compat (onnx-tensorrt 10.x operator list)"}
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
    family = family_of(model)
    names: List[str] = list(cfg.class_names)
    seen = [names[i] for i in cfg.seen_classes]
    meta = {
        "format_version": BUNDLE_FORMAT_VERSION,
        "architecture": {"family": family.name, "config": cfg.to_dict()},
        "pipeline": family.export.pipeline,
        "evaluation_protocol": family.evaluation.protocol,
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
        "io": bundle_graph_io(model),
        # the family's official synonym rule ("mean" / "max"), how the runtime scores a class with several names
        "postprocess": dict(family.export.postprocess(model), synonyms=family.export.synonym_rule),
        "exporter_versions": _versions(),
        "source_checkpoint": os.path.abspath(source) if source else None,
        # which weights (bundle.weights); exporters that know better pass "weights" in ``extra``
        "weights": weights_record(source, "checkpoint" if source else "unknown"),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    whole = family.export.whole_image(model)
    if whole is not None:  # the image graph takes any size: how whole images run (zsseg_rt.bundle.schema)
        meta["whole_image"] = whole
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
    weights: Optional[Dict[str, Any]] = None,
    progress: Optional[Callable[[str], None]] = None,
    overwrite_flag: str = "overwrite=True",
) -> str:
    """Export ``model`` to a verified bundle directory and return its path.

    Args:
        model: a model of any registered family: its family object (``zsseg_rt.contract.family.Family``) gives the
            graphs' members, or an exporter of its own (``exporter``; e.g. a two-stage bundle's graphs and checks).
        out_dir: destination directory (must not exist unless ``overwrite``).
        max_classes: the largest vocabulary the bundle (and its TensorRT profile) accepts; >= 1.
        opset: ONNX opset (>= 17 so LayerNormalization is a native op for TensorRT).
        source: path of the checkpoint the model came from (recorded; used by the torch backend).
        overwrite: replace an existing bundle (only a directory holding nothing but a bundle written by this
            function; never a file, a link, another directory or one that contains ``source``: see
            ``zsseg_rt.export.overwrite``).
        verify_images: real photos used (with random inputs) by the ORT-vs-PyTorch check.
        extra_meta: more meta.json fields.
        weights: which weights the model holds, meta.json ``weights`` (``zsseg_rt.bundle.weights_record``);
            default: a recorded ``source`` is a trained checkpoint, no source means random weights (say otherwise,
            e.g. for a model trained in this process: ``weights_record("my run", "checkpoint")``).
        progress: called with one line per stage ("exporting the ONNX graphs", "verifying ...", with the
            seconds each took), e.g. ``print``; None: silent.
        overwrite_flag: how a refusal names ``overwrite``: ``overwrite=True``, or ``--overwrite`` (``zsseg export``).
    Raises:
        ExportError when a check fails; the destination is left untouched.
        OverwriteRefused (a FileExistsError) when the destination may not be written.
    """
    family = family_of(model)
    exporter = family.export.writer(model)  # a family's own bundle writer, or None; refuses what it cannot export
    if opset < 17:
        raise ValueError(f"opset must be >= 17 (native LayerNormalization for TensorRT), got {opset}")
    if max_classes < 1:
        raise ValueError(f"max_classes must be >= 1, got {max_classes}")
    out_dir = os.path.abspath(out_dir)
    sources = [source, *verify_images]
    check_export_destination(out_dir, overwrite, sources, overwrite_flag)  # before any work: refuse what must not be
    parent = os.path.dirname(out_dir)
    os.makedirs(parent, exist_ok=True)
    model = model.eval().float().cpu()
    extra_meta = dict(extra_meta or {})
    if weights is not None:
        extra_meta["weights"] = dict(weights)
    step = _Progress(progress)
    # what exports killed before they finished left here (their staging folders: hundreds of MB each), said aloud
    remove_stale_staging(parent, say=progress or (lambda line: warnings.warn(line)))
    staging = ExportStaging(parent, out_dir)  # owned (locked) by this process until released
    tmp = staging.path
    try:
        with shown(progress is not None):  # bars on the long stages when the stages are said
            report = _write_bundle(
                model, family, exporter, tmp, max_classes, opset, source, verify_images, extra_meta, step
            )
        _make_readable(tmp)
        if not report["passed"]:
            raise ExportError(f"ONNX Runtime does not reproduce PyTorch: {json.dumps(report, indent=1)}")
        check_export_destination(out_dir, overwrite, sources, overwrite_flag)  # again: it may have changed meanwhile
        replace_directory(tmp, out_dir)
    except BaseException as exc:
        staging.release()  # the staging folder, then its lock
        named = with_path(exc, tmp, f"writing the bundle {out_dir} into its staging folder")  # a full disk: where
        if named is exc:
            raise
        raise named from exc
    staging.release()  # only the lock: the folder is the bundle now
    return out_dir


def _write_bundle(model, family, exporter, folder, max_classes, opset, source, verify_images, extra_meta, step):
    """Write the bundle's files into ``folder`` (the staging folder) and verify them; returns the verification report
    (meta.json records it, except a family's own writer's, ``exporter``, which writes its meta.json itself)."""
    if exporter is not None:  # the family writes its bundle itself (e.g. the two-stage pipeline's graphs)
        step("exporting the ONNX graphs and verifying them against PyTorch with ONNX Runtime")
        report = exporter(model, folder, max_classes, opset, source, verify_images, extra_meta)
        step.done()
        return report
    step("exporting the ONNX graphs (image encoder, head, text encoder)")
    export_graphs(model, folder, max_classes, opset)
    tok = model.text_encoder.tokenizer
    build_tokenizer_json(tok.encoder, tok.bpe_ranks, os.path.join(folder, Files.TOKENIZER))
    step.done()
    step("checking the graphs against TensorRT 10's operator list")
    meta = build_meta(model, max_classes, opset, source, extra_meta)
    meta["tensorrt_compatibility"] = tensorrt_compatibility(folder)
    meta["files"] = hash_bundle_files(folder)  # every file, ONNX external data included
    write_meta(os.path.join(folder, Files.META), meta)  # with meta_sha256 over meta.json itself
    step.done()
    step("verifying the bundle against PyTorch with ONNX Runtime")
    report = family.export.verify(model, folder, verify_images)  # a family's own check (e.g. the Engine end to end)
    if report is None:
        report = verify_bundle(folder, model, verify_images)
    step.done()
    meta["verification"] = report
    write_meta(os.path.join(folder, Files.META), meta)
    return report


class _Progress:
    """Stage lines of ``export_bundle``: ``step("what")`` announces a stage, ``step.done()`` says how long it took."""

    def __init__(self, report: Optional[Callable[[str], None]]):
        self.report = report
        self.start = 0.0
        self.what = ""

    def __call__(self, what: str) -> None:
        self.what, self.start = what, time.perf_counter()
        if self.report is not None:
            self.report(f"{what} ...")

    def done(self) -> None:
        if self.report is not None:
            self.report(f"  done in {time.perf_counter() - self.start:.1f} s")


def hash_bundle_files(folder: str) -> Dict[str, str]:
    """sha256 of every file in a fresh bundle except meta.json, by relative ``/``-separated name."""
    hashes = {}
    for root, _, names in os.walk(folder):
        for name in sorted(names):
            rel = os.path.relpath(os.path.join(root, name), folder).replace(os.sep, "/")
            if rel != Files.META:
                hashes[rel] = sha256_file(os.path.join(root, name))
    return dict(sorted(hashes.items()))


def _make_readable(folder: str) -> None:
    """Directories 0755 and files 0644 (``mkdtemp`` creates 0700: other users could not read the bundle)."""
    for root, _, names in os.walk(folder):
        os.chmod(root, 0o755)
        for name in names:
            os.chmod(os.path.join(root, name), 0o644)
