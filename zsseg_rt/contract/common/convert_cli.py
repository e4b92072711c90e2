"""``zsseg convert SRC DST``: the command's arguments, torch-free, so that ``zsseg convert --help`` answers without
importing torch (the conversion itself, :func:`zsseg_rt.contract.common.convert.run_convert`, is imported when the
command runs)."""

from __future__ import annotations

import argparse
from typing import Any, List, Tuple

__all__ = ["add_convert_command", "family_conversion_arguments", "convert_help", "converting_families"]

TORCH_SIDE_INSTALL = 'pip install "zsseg_rt[torch,export]"'  # as zsseg_rt.cli says it


def family_conversion_arguments() -> List[Tuple[Any, Any]]:
    """``(family, FamilyArgument)`` of every family's own ``zsseg convert`` flags (registry; torch-free)."""
    from zsseg_rt.contract.registry import family_arguments

    return family_arguments(lambda family: family.checkpoints.conversion_arguments())


def _run(args: argparse.Namespace) -> int:
    try:
        from zsseg_rt.contract.common.convert import run_convert
    except ImportError as exc:  # the runtime-only install: no torch
        from zsseg_rt.cli_errors import CliError

        raise CliError(
            f"zsseg convert needs the PyTorch side of zsseg_rt, which this environment lacks ({exc}): "
            f"{TORCH_SIDE_INSTALL}"
        ) from None
    return run_convert(
        args, {argument.dest: getattr(args, argument.dest) for _, argument in family_conversion_arguments()}
    )


def converting_families() -> str:
    """The families whose official checkpoints ``zsseg convert`` takes, as prose ("A, B or C"; registry)."""
    from zsseg_rt.contract.registry import families, get_family

    labels = [get_family(name).label for name in families() if get_family(name).checkpoints.converts_official]
    return " or ".join([", ".join(labels[:-1]), labels[-1]]) if len(labels) > 1 else "".join(labels)


def convert_help() -> str:
    """``zsseg convert``'s one-line help (also ``zsseg -h``'s line when the command is not built in full)."""
    return f"convert an official {converting_families()} checkpoint to a native one"


def add_convert_command(subparsers) -> argparse.ArgumentParser:
    """Register ``convert SRC DST`` on an argparse subparsers object (``zsseg convert``)."""
    p = subparsers.add_parser(
        "convert",
        help=convert_help(),
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
