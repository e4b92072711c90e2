"""``zsseg`` command line: thin wrappers over the library (each command imports what it needs lazily)."""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import List, Optional

from zsseg_rt.assets import SAMPLES_DIR
from zsseg_rt.cli_types import (
    DEMO_METHOD,
    PRECISION_CHOICES,
    add_engine_arguments,
    real_number,
    whole_number,
)
from zsseg_rt.runtime.backends.table import AUTO as _AUTO
from zsseg_rt.runtime.backends.table import prepared_rows as _prepared_rows

# zsseg build-engine --backend: the table's rows that prepare something; the default is the one that builds engines
_PREPARED = [row.name for row in _prepared_rows()] + [_AUTO]
_ENGINE_BUILDER = next(row.name for row in _prepared_rows() if row.builds_engines)

SAMPLE_DIR = str(SAMPLES_DIR)  # the VOC sample photos shipped with the package


TORCH_SIDE_INSTALL = 'pip install "zsseg_rt[torch,export]"'  # pyproject.toml: models (torch) + ONNX export


def _cmd_export(args) -> int:
    from zsseg_rt.export.overwrite import check_export_destination

    source_path = args.official or args.native or args.clip_weights
    # before loading anything: refuse a destination that is not a bundle of ours or that holds the source
    check_export_destination(os.path.abspath(args.output), args.overwrite, [source_path, args.config])
    _require_torch_side("export")

    from zsseg_rt.bundle import weights_banner
    from zsseg_rt.export.onnx_export import export_bundle

    start = time.perf_counter()
    model, source, weights = _export_model(args)
    print(f"model ready in {time.perf_counter() - start:.1f} s", flush=True)
    model = _prepare_export(model, args)
    out = export_bundle(
        model,
        args.output,
        max_classes=args.max_classes,
        opset=args.opset,
        source=source,
        overwrite=args.overwrite,
        verify_images=_sample_images(args.verify_images),
        weights=weights,
        progress=lambda line: print(line, flush=True),
    )
    from zsseg_rt.bundle import bundle_digest

    print(f"bundle written and verified in {time.perf_counter() - start:.1f} s: {out}")
    # integrity is not authenticity: a deployment pins this (Engine(expected_digest=...), --bundle-digest)
    print(f"digest {bundle_digest(out)}")
    banner = weights_banner(weights)
    if banner:
        print(
            f"*** {banner} ***\n"
            "This bundle runs, but its labels mean nothing. For real segmentations export trained weights "
            "(--official CHECKPOINT.pth or --native DIR) or, for a training-free method (--config sclip-vitb16), "
            "stock CLIP weights (--clip-weights openai or a local ViT-B-16.pt)."
        )
    return 0


def _require_torch_side(command: str) -> None:
    """Refuse in one plain line, before any work, when the PyTorch side (torch, open_clip, onnx) is not installed."""
    import importlib.util

    missing = [name for name in ("torch", "open_clip", "onnx") if importlib.util.find_spec(name) is None]
    if missing:
        from zsseg_rt.cli_errors import CliError

        raise CliError(
            f"zsseg {command} needs the PyTorch side of zsseg_rt, which this environment lacks ({', '.join(missing)} "
            f"not installed): {TORCH_SIDE_INSTALL} (the runtime-only install runs bundles; it cannot make them)"
        )


def _export_model(args):
    """``(model, source checkpoint or None, meta.json weights)`` for ``zsseg export``."""
    from zsseg_rt.bundle import weights_record
    from zsseg_rt.contract.registry import family_of_model
    from zsseg_rt.models import create_model, load_native, load_official_any  # the public face (commands layer)

    if args.official:  # ZegCLIP or CLIP-RC, told apart by the checkpoint's keys; config inferred unless given
        print(f"loading the official checkpoint {args.official} ...", flush=True)
        model, report = load_official_any(args.official, config=args.config, return_report=True)
        print(report.summary())
        return model, args.official, weights_record(args.official, "checkpoint")
    if args.native:
        print(f"loading the native checkpoint {args.native} ...", flush=True)
        return load_native(args.native), args.native, weights_record(args.native, "checkpoint")
    config = args.config or "zegclip_vitb16_voc_inductive"
    if args.clip_weights:
        from zsseg_rt.contract.common.weights import cache_only_when_offline

        cache_only_when_offline(args.clip_weights, say=lambda line: print(line, flush=True))
        print(f"building {config} with the CLIP weights {args.clip_weights} ...", flush=True)
    else:
        print(f"building {config} with random weights (no --official, --native or --clip-weights) ...", flush=True)
    model = create_model(config, pretrained=args.clip_weights)
    if not args.clip_weights:
        return model, None, weights_record(None, "none")
    trainable = bool(getattr(family_of_model(model), "trainable", True))
    source = args.clip_weights if os.path.exists(args.clip_weights) else None  # a file; a tag is no checkpoint
    return model, source, weights_record(args.clip_weights, "clip", trainable=trainable)


def _family_export_arguments():
    """``(family, FamilyArgument)`` of every family's own ``zsseg export`` flags (registry; torch-free)."""
    from zsseg_rt.contract.registry import family_arguments

    return family_arguments(lambda family: family.export.arguments())


def _prepare_export(model, args):
    """The model to export (its family's ``export.prepare`` with the family's own flags); a family's flag given for
    another family's checkpoint is refused."""
    from zsseg_rt.contract.registry import family_of_model

    family = family_of_model(model)
    foreign = [
        (owner, argument)
        for owner, argument in _family_export_arguments()
        if owner.name != family.name and getattr(args, argument.dest, None) is not None
    ]
    if foreign:
        flags = " / ".join(argument.flags[0] for _, argument in foreign)
        owners = ", ".join(dict.fromkeys(owner.label for owner, _ in foreign))
        raise SystemExit(f"zsseg export: error: {flags} apply to {owners} checkpoints")
    options = {argument.dest: getattr(args, argument.dest, None) for argument in family.export.arguments()}
    try:
        return family.export.prepare(model, options)
    except ValueError as exc:  # e.g. a checkpoint that needs one of its family's flags
        raise SystemExit(f"zsseg export: error: {exc}") from None


def _sample_images(paths: Optional[List[str]]) -> List[str]:
    from zsseg_rt.assets import verification_images

    return verification_images(paths)


def _named_vocabularies():
    from zsseg_rt.vocabulary import named_vocabularies

    return named_vocabularies()


def _cmd_segment(args) -> int:
    from zsseg_rt.cli_segment import run_segment

    return run_segment(args)


def _prepare_precision(args) -> int:
    """``zsseg build-engine --backend NAME`` of a backend whose row prepares a reduced precision (ONNX Runtime,
    OpenVINO, torch): prepare and gate it ahead of use."""
    from zsseg_rt.bundle import BundleError
    from zsseg_rt.export.accuracy_gate import EngineAccuracyError
    from zsseg_rt.runtime.backends.table import backend_row, load_reference
    from zsseg_rt.runtime.precision_records import PrecisionRecordError

    row = backend_row(args.backend)
    precision = args.precision or row.prepare_precisions[0]
    try:
        if precision not in row.prepare_precisions:
            raise ValueError(
                f"--precision {precision} is not one the {row.name} backend prepares; it prepares "
                f"{', '.join(row.prepare_precisions)}"
            )
        prepare = load_reference(str(row.prepare))
        record = prepare(args.bundle, precision, force=args.force, accept_below_gate=args.accept_below_gate) or {}
    except (ImportError, ValueError, BundleError, EngineAccuracyError, PrecisionRecordError) as exc:
        if getattr(args, "debug", False):
            raise
        from zsseg_rt.cli_errors import format_error

        print(f"zsseg build-engine: error: {format_error(exc)}", file=sys.stderr)
        return 2
    print(f"{args.backend} {precision}: {record.get('digest', '')}")
    print(record.get("accuracy_gate", {}).get("summary", "fp32: nothing to gate"))
    return 0


def _prepare_auto(args) -> int:
    """``zsseg build-engine --backend auto``: prepare, gate and measure every reduced precision the CPU rows can run
    here (what ``backend="auto"`` chooses among on a CPU), then say what auto runs."""
    from zsseg_rt.bundle import BundleError, graph_files, load_meta
    from zsseg_rt.runtime.backends.cpu_auto import cpu_policy

    if args.precision is not None:
        print(
            "zsseg build-engine: error: --backend auto prepares every gated CPU precision: give no --precision",
            file=sys.stderr,
        )
        return 2
    try:
        from zsseg_rt.export.auto_precision import prepare_auto

        results = prepare_auto(args.bundle, force=args.force)
        meta = load_meta(args.bundle)
        plan = cpu_policy(meta, tuple(graph_files(meta.pipeline)))
    except (ImportError, ValueError, BundleError) as exc:
        if getattr(args, "debug", False):
            raise
        from zsseg_rt.cli_errors import format_error

        print(f"zsseg build-engine: error: {format_error(exc)}", file=sys.stderr)
        return 2
    for result in results:
        speed = f" {result['speedup']:.2f}x" if result["speedup"] is not None else ""
        reason = f" ({result['reason']})" if result["reason"] else ""
        print(f"{result['backend']} {result['precision']}: {result['status']}{speed}{reason}")
    print(plan[0][2].line())
    return 0


MODE_HELP = (
    "post-processing order: exact (default; the papers' order: calibrate every window at crop resolution, average "
    "the windows, resize, argmax) or fast (single-window images: one fused upsample+calibration+argmax straight to "
    "the output size, less memory; multi-window images as exact). Windows always slide; this is not "
    "`zsseg eval --mode slide|whole`, which chooses the windows of PyTorch checkpoints"
)
BACKEND_HELP = (
    "auto (TensorRT when engines were built with `zsseg build-engine` and TensorRT imports; on a CPU the fastest "
    "path that passed the accuracy gate here, prepared by `zsseg build-engine BUNDLE --backend auto`, else ONNX "
    "Runtime fp32), "
    "tensorrt, onnxruntime, openvino (CPU; pip install openvino), or torch (needs the checkpoint the bundle was "
    "exported from)"
)
DEVICE_HELP = "auto (a GPU when the backend can use one), cpu or cuda (ONNX Runtime and torch backends)"


def _add_segment_command(sub) -> None:
    p = sub.add_parser(
        "segment",
        help="segment photos, folders or globs with a bundle: overlays, colour masks, label maps",
        description="Segment images with a bundle and the class names you give. IMAGES are files, folders (their "
        "images) or quoted globs ('photos/*.jpg'). Results go to a new numbered folder runs/segment/exp, exp2, ... "
        "(or -o DIR, or -o FILE.png for one image); an existing file is never replaced without --overwrite.",
    )
    p.add_argument("images", nargs="+", metavar="IMAGES", help="image files, folders of images, or quoted globs")
    p.add_argument("--bundle", required=True, help="bundle directory written by `zsseg export`")
    p.add_argument(
        "--classes",
        required=True,
        help='comma-separated class names, e.g. "cat,sofa,floor" (a trailing comma is ignored); synonyms of one '
        'class with ";" ("person; man; woman, sofa"); or a named vocabulary: the standard benchmarks\' official '
        "class files with their synonyms and background class (" + ", ".join(_named_vocabularies()) + ")",
    )
    p.add_argument(
        "-o",
        "--output",
        help="output folder (default: a new runs/segment/expN), or an image file such as out.png for one image",
    )
    p.add_argument(
        "--visualize",
        default="overlay",
        metavar="VIEWS",
        help="views to write, comma-separated: overlay (labels blended on the photo), mask (colour labels only); "
        "default overlay",
    )
    p.add_argument(
        "--save-labels",
        action="store_true",
        help="also write the label ids (STEM_labels.png: 8-bit up to 256 classes, else 16-bit) with their colour "
        "view (STEM_mask.png); classes.json maps the ids to class names",
    )
    p.add_argument("--alpha", type=float, default=0.5, help="overlay opacity in [0, 1] (default 0.5)")
    p.add_argument("--no-legend", action="store_true", help="no legend of the classes on the overlay and mask")
    p.add_argument("--overwrite", action="store_true", help="replace files that exist already in -o")
    p.add_argument(
        "--json",
        action="store_true",
        help='print the results as JSON on stdout (per image: output paths, "areas": class -> fraction of the '
        'pixels, "timing_ms") instead of lines',
    )
    add_engine_arguments(
        p,
        backend_help=BACKEND_HELP,
        device_help=DEVICE_HELP,
        mode_help=MODE_HELP,
        precision_help="default: the backend's (TensorRT fp16, else fp32). onnxruntime: int8 (CPU) or bf16 (Arm64); "
        "openvino: bf16 (AMX / AVX-512-BF16) or int8 (VNNI / AMX-INT8); auto on both: the fastest precision that "
        "passed the gate on this CPU, else fp32; "
        "torch: fp16/bf16; a reduced precision runs only after its accuracy gate passed (docs/precision.md)",
    )
    p.add_argument(
        "--inference",
        default="auto",
        choices=["auto", "whole", "windows"],
        help="whole: one pass over the whole rescaled image at its own size; windows: sliding windows of the "
        "bundle's input size; auto (default): the bundle's choice, its model's official test mode for the "
        "vocabulary; windows for bundles whose image graph has a fixed size",
    )
    p.add_argument(
        "--whole-fallback",
        default=None,
        choices=["windows"],
        help="whole-image inference of an image larger than the bundle's image graph was exported for: run it in "
        "windows instead of refusing it (default: refuse)",
    )
    p.add_argument(
        "--max-pixels",
        type=int,
        default=None,
        help="pixel limit, read from the file header before decoding. Not given (and $ZSSEG_MAX_PIXELS unset): a "
        "photo over 40 MP is segmented resized to fit it, with a note. Given: larger images are refused; 0 = no limit",
    )
    p.add_argument(
        "--allow-partial-images",
        action="store_true",
        help="segment what a truncated or damaged image file holds (the missing part filled) instead of "
        "refusing it (the default, as every zsseg command and the Engine do)",
    )
    p.set_defaults(func=_cmd_segment)


def _cmd_build_engine(args) -> int:
    from zsseg_rt.export.progress import shown

    with shown():  # progress bars on the long stages: quantisation, the engine builds, the accuracy gate
        return _build_engine(args)


def _build_engine(args) -> int:
    from zsseg_rt.bundle import BundleError, load_meta
    from zsseg_rt.export import tensorrt as trt_build
    from zsseg_rt.export.accuracy_gate import EngineAccuracyError
    from zsseg_rt.runtime.backends.table import backend_row

    if args.backend == _AUTO:
        return _prepare_auto(args)
    row = backend_row(args.backend)
    if not row.builds_engines:
        return _prepare_precision(args)
    if args.precision is not None and args.precision not in row.prepare_precisions:
        print(
            f"zsseg build-engine: error: --precision {args.precision} is not one the {row.name} backend builds "
            f"({', '.join(row.prepare_precisions)})",
            file=sys.stderr,
        )
        return 2
    try:
        max_batch = args.max_batch if args.max_batch is not None else trt_build.frame_windows(load_meta(args.bundle))
        report = trt_build.build_engine_set(
            args.bundle,
            precision=args.precision or row.prepare_precisions[0],
            max_batch=max_batch,
            opt_classes=args.opt_classes,
            workspace_gb=args.workspace,
            force=args.force,
            accept_below_gate=args.accept_below_gate,
        )
    except (ImportError, ValueError, BundleError, trt_build.EngineBuildError, EngineAccuracyError) as exc:
        if getattr(args, "debug", False):
            raise
        from zsseg_rt.cli_errors import format_error

        print(f"zsseg build-engine: error: {format_error(exc)}", file=sys.stderr)
        return 2
    for key, path in report.paths.items():
        print(f"{key}: {path}")
    print(report.summary())
    return 0


def _cmd_demo(args) -> int:
    from zsseg_rt.demo import run_demo

    return run_demo(args)


# Commands whose modules import torch (or other heavy packages) are imported only when that command runs, so
# `zsseg segment` with the onnxruntime / TensorRT backend never imports torch. Their one-line help for `zsseg -h`:
_LAZY_HELP = {
    "camera": "segment a live camera, RTSP/HTTP stream, video file or image folder",
    "train": "train a model of a trainable family (inductive / transductive / fully supervised recipes)",
    "eval": "evaluate a checkpoint or bundle: per-class IoU, mIoU(seen/unseen), hIoU, pAcc",
    "batch": "segment a folder / list file / URI of images on a Ray cluster: label PNGs + manifest.jsonl",
    "serve": "serve a bundle over HTTP on Ray Serve (request batching, metrics)",
    "profile": "per-stage latency profile of a bundle (p50/p90/p99, FPS), backends side by side",
}


def _description() -> str:
    """The top-level help: what zsseg does and every registered model family (the registry; torch-free)."""
    from zsseg_rt.contract.registry import families, get_family

    names = ", ".join(get_family(name).display_name for name in families())
    return f"Open-vocabulary semantic segmentation: label every pixel with class names given at run time. Families: {names}."


def _registers(name: str, command: Optional[str]) -> bool:
    """Whether the full parser of a lazily imported command is built: always when no command is known (e.g. a
    caller that parses several command lines), else only for the command being run."""
    return command is None or command == name


def _command_in(argv: List[str]) -> str:
    """The subcommand named on a command line ("" when none, e.g. `zsseg -h`)."""
    return next((token for token in argv if not token.startswith("-")), "")


def build_parser(command: Optional[str] = None) -> argparse.ArgumentParser:
    """The ``zsseg`` parser. ``command``: the subcommand about to run (the others whose modules import torch are
    then registered by name and help only); None registers every command in full."""
    import zsseg_rt

    parser = argparse.ArgumentParser(prog="zsseg", description=_description())
    parser.add_argument("--version", action="version", version=f"zsseg_rt {zsseg_rt.__version__}")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser(
        "export",
        help="export a verified ONNX bundle from a model checkpoint",
        description="Export a model as a bundle: ONNX graphs (image encoder, head, text encoder), the tokenizer and "
        "meta.json, verified against PyTorch with ONNX Runtime before anything is written to OUTPUT. The source is "
        "an official checkpoint (--official), a native one (--native, from `zsseg convert`), stock CLIP weights "
        "(--clip-weights; complete for the training-free methods), or none: random weights, which the bundle "
        "records and every result says. OUTPUT is written whole or not at all; --overwrite replaces only a bundle "
        "written by zsseg export, and staging folders an interrupted export left beside it are removed.",
    )
    p.add_argument("output", help="bundle directory to create")
    p.add_argument(
        "--config",
        default=None,
        help="model config name or JSON path (default: inferred from an --official checkpoint, "
        "else zegclip_vitb16_voc_inductive)",
    )
    src = p.add_mutually_exclusive_group()
    src.add_argument("--official", help="official checkpoint (.pth) to convert (its family found from the keys)")
    src.add_argument("--native", help="native checkpoint directory written by `zsseg convert`")
    src.add_argument(
        "--clip-weights",
        help="stock CLIP weights: an open_clip tag (openai; downloaded once, then from the cache) or a local file "
        "(ViT-B-16.pt, .safetensors). Complete for the training-free methods (--config sclip-vitb16); a trained "
        "family's head stays untrained. None of the three: random weights (the bundle says so)",
    )
    p.add_argument(
        "--max-classes", type=whole_number(1), default=256, help="largest vocabulary the bundle accepts (default 256)"
    )
    p.add_argument("--opset", type=whole_number(17), default=18, help="ONNX opset (>= 17; default 18)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing bundle at OUTPUT")
    p.add_argument("--verify-images", nargs="*", help="real photos for the ORT-vs-PyTorch check")
    for _, argument in _family_export_arguments():  # flags only some families take (their registrations)
        p.add_argument(*argument.flags, **dict(argument.options))
    p.set_defaults(func=_cmd_export)

    _add_segment_command(sub)

    p = sub.add_parser(
        "build-engine",
        help="build TensorRT 10 engines, or prepare a reduced precision of ONNX Runtime / OpenVINO / torch "
        "(accuracy-gated)",
    )
    p.add_argument("bundle", help="bundle directory written by `zsseg export`")
    p.add_argument(
        "--backend",
        default=_ENGINE_BUILDER,
        choices=_PREPARED,
        help="what to prepare ahead of use: "
        + "; ".join(f"{row.name}: {row.prepare_help}" for row in _prepared_rows())
        + f"; {_AUTO}: every gated CPU path this CPU can run, measured (what --backend auto chooses among)"
        + " (docs/precision.md)",
    )
    p.add_argument(
        "--precision",
        default=None,
        choices=sorted({p for row in _prepared_rows() for p in row.prepare_precisions}, key=PRECISION_CHOICES.index),
        help="default: the backend's first below. "
        + "; ".join(f"{row.name}: {', '.join(row.prepare_precisions)}" for row in _prepared_rows())
        + ". TensorRT fp16 = plain fp16 (L2-norm sums of squares in fp32); fp16-pinned: LayerNorm/Softmax also fp32; "
        "int8: explicitly quantised (Q/DQ) bundles only",
    )
    p.add_argument(
        "--max-batch", type=whole_number(1), default=None, help="windows per encoder call (default: a 4:3 frame's)"
    )
    p.add_argument("--opt-classes", type=whole_number(1), default=20, help="class count the head engine is tuned for")
    p.add_argument(
        "--workspace",
        type=real_number(above=0),
        default=None,
        help="builder workspace limit in GiB (default: TensorRT's)",
    )
    # twin (by shape): the demo's flags below, stream/cli.py's - argparse flags
    p.add_argument("--force", action="store_true", help="rebuild even if a matching engine is cached")
    p.add_argument(
        "--accept-below-gate",
        action="store_true",
        help="keep and use engines that fail the accuracy gate against ONNX Runtime fp32 (recorded as overridden)",
    )
    p.set_defaults(func=_cmd_build_engine)

    if _registers("convert", command):  # torch-free arguments: `zsseg convert --help` imports no torch
        from zsseg_rt.contract.common.convert_cli import add_convert_command

        add_convert_command(sub)
    else:
        from zsseg_rt.contract.common.convert_cli import convert_help

        sub.add_parser("convert", help=convert_help())

    _add_optional_commands(sub, command)

    p = sub.add_parser(
        "demo",
        help="end-to-end: export (or reuse) a bundle and segment a sample photo",
        description="Export a bundle (or reuse the one it exported before, under --workdir) and segment a photo "
        "with it, printing where the overlay went. Weights: an official checkpoint (--official), a native one "
        "(--native), or stock CLIP weights for a training-free method (--clip-weights, --method); with none of them "
        "to be had, --allow-random-weights runs the whole pipeline on random weights, clearly labelled as such.",
    )
    p.add_argument("--official", help="official checkpoint (.pth; its family found from the keys)")
    p.add_argument("--native", help="native checkpoint directory (from `zsseg convert`)")
    p.add_argument(
        "--clip-weights",
        default=None,
        help="stock CLIP weights for training-free mode: local file or open_clip tag (default: openai)",
    )
    p.add_argument(
        "--method",
        default=DEMO_METHOD,
        help="training-free method used with stock CLIP weights: scclip-vitb16 (default: SC-CLIP, the best "
        "published mIoU of them), naclip-vitb16, sclip-vitb16, clearclip-vitb16 or maskclip-vitb16",
    )
    p.add_argument(
        "--config",
        default=None,
        help="model config name or JSON path for an --official checkpoint (default: inferred from the checkpoint) "
        "and for the random-weights check (default: zegclip_vitb16_voc_inductive)",
    )
    p.add_argument("--image", default=None, help="photo to segment (default: a VOC sample)")
    p.add_argument("--classes", default=None, help="comma-separated classes (default: the 20 VOC classes)")
    p.add_argument("--workdir", default="out", help="where the bundle and the overlay go (default out)")
    p.add_argument(
        "--allow-random-weights",
        action="store_true",
        help="when no weights can be had, run a clearly labelled random-weights pipeline check",
    )
    p.set_defaults(func=_cmd_demo)
    for subparser in sub.choices.values():  # `zsseg CMD ... --debug` works as well as `zsseg --debug CMD ...`
        subparser.add_argument(
            "--debug", action="store_true", default=argparse.SUPPRESS, help="show the full traceback of an error"
        )
    return parser


def _add_optional_commands(sub, wanted: Optional[str] = None) -> None:
    """Commands whose modules need optional dependencies: registered when importable, else explained (only by
    name and help when ``wanted`` names another command: see ``_registers``)."""
    for module_name, function, command, needs in (
        ("zsseg_rt.stream.cli", "add_camera_command", "camera", "opencv-python-headless and onnxruntime"),
        ("zsseg_rt.train.cli", "add_train_command", "train", "the torch extra"),
        ("zsseg_rt.eval.cli", "add_eval_command", "eval", "the torch extra or onnxruntime"),
        ("zsseg_rt.scale.cli", "add_batch_command", "batch", "the scale extra (ray[data,serve])"),
        ("zsseg_rt.scale.cli", "add_serve_command", "serve", "the scale extra (ray[data,serve])"),
        ("zsseg_rt.profiling", "add_profile_command", "profile", "opencv-python-headless and onnxruntime"),
    ):
        if not _registers(command, wanted):
            sub.add_parser(command, help=_LAZY_HELP.get(command))
            continue
        try:
            import importlib

            getattr(importlib.import_module(module_name), function)(sub)
        except ImportError as exc:
            p = sub.add_parser(command, help=f"(unavailable: needs {needs})")
            p.set_defaults(func=lambda _a, _e=exc, _c=command, _n=needs: sys.exit(f"zsseg {_c} needs {_n}: {_e}"))


def main(argv: Optional[List[str]] = None) -> int:
    """``zsseg`` entry point. A failing command prints one line (``zsseg CMD: error: ...``) and returns non-zero;
    ``--debug`` shows the traceback instead."""
    from zsseg_rt.cli_errors import run_command

    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(_command_in(argv)).parse_args(argv)
    if getattr(args, "debug", False):
        os.environ["ZSSEG_RAY_LOGS"] = "1"  # zsseg_rt.scale: Ray's own log lines shown as well
    return run_command(args.func, args)


if __name__ == "__main__":
    sys.exit(main())
