"""``zsseg convert SRC DST``: the command's arguments, torch-free, so that ``zsseg convert --help`` answers without
importing torch (the conversion itself, :func:`zsseg_rt.contract.common.convert.run_convert`, is imported when the
command runs)."""

from __future__ import annotations

import argparse
from typing import Any, List, Tuple

from zsseg_rt.cli import command_parser, converting_families

__all__ = ["add_command", "family_conversion_arguments"]


def family_conversion_arguments() -> List[Tuple[Any, Any]]:
    """``(family, FamilyArgument)`` of every family's own ``zsseg convert`` flags (registry; torch-free)."""
    from zsseg_rt.contract.registry import family_arguments

    return family_arguments(lambda family: family.checkpoints.conversion_arguments())


def _run(args: argparse.Namespace) -> int:
    from zsseg_rt.contract.common.convert import run_convert  # torch: the row's needs are checked before

    return run_convert(
        args, {argument.dest: getattr(args, argument.dest) for _, argument in family_conversion_arguments()}
    )


def add_command(subparsers) -> argparse.ArgumentParser:
    """Register ``convert SRC DST`` on an argparse subparsers object (``zsseg convert``)."""
    p = command_parser(
        subparsers,
        "convert",
        description=f"Convert an official {converting_families()} checkpoint (the family is detected from the "
        "keys) into a native checkpoint directory "
        "(model.safetensors + config.json). The file is read with torch.load(weights_only=True).",
    )
    p.add_argument("src", help="official checkpoint (.pth)")
    p.add_argument("dst", help="output directory")
    p.add_argument(
        "--config", default=None, help="model config name or JSON path (default: inferred from the checkpoint)"
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing checkpoint in DST")
    p.add_argument(
        "--allow-missing-text-encoder", action="store_true", help="accept checkpoints without text_encoder.* weights"
    )
    for _, argument in family_conversion_arguments():  # flags only some families take (their registrations)
        p.add_argument(*argument.flags, **dict(argument.options))
    p.set_defaults(func=_run)
    return p
