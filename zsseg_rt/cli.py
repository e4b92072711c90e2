"""``zsseg`` command line: thin wrappers over the library (each command imports what it needs lazily)."""

from __future__ import annotations

import argparse
import os
import sys
from typing import List, Optional

from zsseg_rt.assets import SAMPLES_DIR

SAMPLE_DIR = str(SAMPLES_DIR)  # the VOC sample photos shipped with the package


def _cmd_export(args) -> int:
    from zsseg_rt.export.overwrite import check_export_destination

    source_path = args.official or args.native or args.clip_weights
    # before loading anything: refuse a destination that is not a bundle of ours or that holds the source
    check_export_destination(os.path.abspath(args.output), args.overwrite, [source_path, args.config])

    from zsseg_rt.export.onnx_export import export_bundle
    from zsseg_rt.models import create_model, load_native, load_official_any

    if args.official:  # ZegCLIP or CLIP-RC, told apart by the checkpoint's keys; config inferred unless given
        model, report = load_official_any(args.official, config=args.config, return_report=True)
        print(report.summary())
        source = args.official
    elif args.native:
        model, source = load_native(args.native), args.native
    else:
        model = create_model(args.config or "zegclip_vitb16_voc_inductive", pretrained=args.clip_weights)
        source = args.clip_weights
    model = _prepare_export(model, args)
    out = export_bundle(
        model,
        args.output,
        max_classes=args.max_classes,
        opset=args.opset,
        source=source,
        overwrite=args.overwrite,
        verify_images=_sample_images(args.verify_images),
    )
    from zsseg_rt.bundle import bundle_digest

    print(f"bundle written and verified: {out}")
    # integrity is not authenticity: a deployment pins this (Engine(expected_digest=...), --bundle-digest)
    print(f"digest {bundle_digest(out)}")
    return 0


def _family_export_arguments():
    """``(family, ExportArgument)`` of every family's own ``zsseg export`` flags (registry; torch-free)."""
    from zsseg_rt.models.registry import families, get_family

    return [(get_family(name), argument) for name in families() for argument in get_family(name).export_arguments()]


def _prepare_export(model, args):
    """The model to export (its family's ``prepare_export`` with the family's own flags); a family's flag given for
    another family's checkpoint is refused."""
    from zsseg_rt.models.registry import family_of_model

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
    options = {argument.dest: getattr(args, argument.dest, None) for argument in family.export_arguments()}
    try:
        return family.prepare_export(model, options)
    except ValueError as exc:  # e.g. a checkpoint that needs one of its family's flags
        raise SystemExit(f"zsseg export: error: {exc}") from None


def _sample_images(paths: Optional[List[str]]) -> List[str]:
    from zsseg_rt.assets import verification_images

    return verification_images(paths)


def _cmd_segment(args) -> int:
    from zsseg_rt.cli_segment import run_segment

    return run_segment(args)


def _cmd_build_engine(args) -> int:
    from zsseg_rt.bundle import BundleError, load_meta
    from zsseg_rt.export import tensorrt as trt_build
    from zsseg_rt.export.accuracy_gate import EngineAccuracyError

    try:
        max_batch = args.max_batch if args.max_batch is not None else trt_build.frame_windows(load_meta(args.bundle))
        report = trt_build.build_engine_set(
            args.bundle,
            precision=args.precision,
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
    "convert": "convert an official ZegCLIP or CLIP-RC checkpoint to a native one",
    "camera": "segment a live camera, RTSP/HTTP stream, video file or image folder",
    "train": "train a ZegCLIP model (inductive / transductive / fully supervised)",
    "eval": "evaluate a checkpoint or bundle: per-class IoU, mIoU(seen/unseen), hIoU, pAcc",
}


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
    parser = argparse.ArgumentParser(prog="zsseg", description="Open-vocabulary semantic segmentation (ZegCLIP).")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("export", help="export a verified ONNX bundle from a model checkpoint")
    p.add_argument("output", help="bundle directory to create")
    p.add_argument(
        "--config",
        default=None,
        help="model config name or JSON path (default: inferred from an --official checkpoint, "
        "else zegclip_vitb16_voc_inductive)",
    )
    src = p.add_mutually_exclusive_group()
    src.add_argument("--official", help="official ZegCLIP checkpoint (.pth) to convert")
    src.add_argument("--native", help="native checkpoint directory written by `zsseg convert`")
    src.add_argument("--clip-weights", help="CLIP weights only (open_clip tag or local file): head untrained")
    p.add_argument("--max-classes", type=int, default=256)
    p.add_argument("--opset", type=int, default=18)
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--verify-images", nargs="*", help="real photos for the ORT-vs-PyTorch check")
    for _, argument in _family_export_arguments():  # flags only some families take (their registrations)
        p.add_argument(*argument.flags, **dict(argument.options))
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser("segment", help="segment images with a bundle")
    p.add_argument("images", nargs="+")
    p.add_argument("--bundle", required=True)
    p.add_argument("--classes", required=True, help='comma-separated class names, e.g. "cat,sofa,floor"')
    p.add_argument("-o", "--output", help="overlay path (or directory for several images)")
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    p.add_argument("--save-labels", action="store_true", help="also write the label map as 16-bit PNG")
    p.add_argument("--backend", default="auto", choices=["auto", "tensorrt", "onnxruntime", "torch"])
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--mode", default="exact", choices=["exact", "fast"])
    p.add_argument("--alpha", type=float, default=0.5, help="overlay opacity in [0, 1]")
    p.add_argument(
        "--max-pixels",
        type=int,
        default=None,
        help="refuse images with more pixels than this, read from the file header before decoding "
        "(default: $ZSSEG_MAX_PIXELS or 40000000; 0 = no limit)",
    )
    p.set_defaults(func=_cmd_segment)

    p = sub.add_parser("build-engine", help="build TensorRT 10 engines for a bundle on this device (accuracy-gated)")
    p.add_argument("bundle")
    p.add_argument(
        "--precision",
        default="fp16",
        choices=["fp16", "fp16-pinned", "fp32", "int8"],
        help="fp16: plain fp16 (L2-norm sums of squares in fp32); fp16-pinned: LayerNorm/Softmax also fp32; "
        "int8: explicitly quantised (Q/DQ) bundles only",
    )
    p.add_argument("--max-batch", type=int, default=None, help="windows per encoder call (default: a 4:3 frame's)")
    p.add_argument("--opt-classes", type=int, default=20, help="class count the head engine is tuned for")
    p.add_argument("--workspace", type=float, default=None, help="builder workspace limit in GiB (default: TensorRT's)")
    p.add_argument("--force", action="store_true", help="rebuild even if a matching engine is cached")
    p.add_argument(
        "--accept-below-gate",
        action="store_true",
        help="keep and use engines that fail the accuracy gate against ONNX Runtime fp32 (recorded as overridden)",
    )
    p.set_defaults(func=_cmd_build_engine)

    if _registers("convert", command):
        try:
            from zsseg_rt.models.common.convert import add_convert_command

            add_convert_command(sub)
        except ImportError as exc:  # torch missing: the runtime-only install
            p = sub.add_parser("convert", help="convert an official ZegCLIP checkpoint (needs torch)")
            p.set_defaults(func=lambda _a, _e=exc: sys.exit(f"zsseg convert needs the torch extra: {_e}"))
    else:
        sub.add_parser("convert", help=_LAZY_HELP["convert"])

    _add_optional_commands(sub, command)

    p = sub.add_parser("demo", help="end-to-end: export (or reuse) a bundle and segment a sample photo")
    p.add_argument("--official", help="official ZegCLIP checkpoint (.pth)")
    p.add_argument("--native", help="native checkpoint directory (from `zsseg convert`)")
    p.add_argument(
        "--clip-weights",
        default=None,
        help="stock CLIP weights for training-free mode: local file or open_clip tag (default: openai)",
    )
    p.add_argument(
        "--method",
        default="sclip-vitb16",
        help="training-free method used with stock CLIP weights (maskclip/sclip/clearclip/naclip-vitb16)",
    )
    p.add_argument(
        "--config",
        default="zegclip_vitb16_voc_inductive",
        help="ZegCLIP config for --official checkpoints and for the random-weights check",
    )
    p.add_argument("--image", default=None, help="photo to segment (default: a VOC sample)")
    p.add_argument("--classes", default=None, help="comma-separated classes (default: the 20 VOC classes)")
    p.add_argument("--workdir", default="out", help="where the bundle and the overlay go")
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
    return run_command(args.func, args)


if __name__ == "__main__":
    sys.exit(main())
