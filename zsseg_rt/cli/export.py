"""``zsseg export OUTPUT``: a verified ONNX bundle from an official, native or stock-CLIP checkpoint (or random
weights); the work is :func:`zsseg_rt.export.onnx_export.export_bundle`."""

from __future__ import annotations

import argparse
import os
import time
from typing import List, Optional

from zsseg_rt.cli import command_parser
from zsseg_rt.console.arguments import whole_number

__all__ = ["add_command", "run"]


def run(args) -> int:
    from zsseg_rt.export.overwrite import check_export_destination

    source_path = args.official or args.native or args.clip_weights
    # before loading anything: refuse a destination that is not a bundle of ours or that holds the source
    check_export_destination(os.path.abspath(args.output), args.overwrite, [source_path, args.config], "--overwrite")

    from zsseg_rt.bundle import weights_banner
    from zsseg_rt.console.signal_phases import phase
    from zsseg_rt.export.onnx_export import export_bundle

    start = time.perf_counter()
    phase("export:model-load")  # (a test hook: python_tests/test_signal_phases.py)
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
        overwrite_flag="--overwrite",
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


def add_command(subparsers) -> argparse.ArgumentParser:
    """Register ``export`` on an argparse subparsers object (``zsseg export``)."""
    p = command_parser(
        subparsers,
        "export",
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
    p.set_defaults(func=run)
    return p
