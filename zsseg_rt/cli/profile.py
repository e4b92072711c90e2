"""``zsseg profile --bundle B ...``: the per-stage latency profile of a bundle (``python -m zsseg_rt.profiling`` and
``python tools/profile.py`` are the same command). The profiler is :mod:`zsseg_rt.profiling`; its docstring is this
command's help."""

from __future__ import annotations

import argparse
from typing import List, Optional

from zsseg_rt import profiling
from zsseg_rt.cli import command_parser
from zsseg_rt.console.arguments import add_engine_arguments
from zsseg_rt.console.errors import CliError
from zsseg_rt.runtime.backends.table import REFERENCE_BACKEND

__all__ = ["add_command", "build_parser", "main", "run"]

# --help is zsseg_rt.profiling's docstring: its first paragraph the description, the rest (usage examples, what is
# measured, outputs) the epilog: each printed once
_HELP_DESCRIPTION, _HELP_EPILOG = (profiling.__doc__ or "").split("\n\n", 1)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="zsseg profile",
        description=_HELP_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=_HELP_EPILOG,
    )
    return add_profile_arguments(p)


def add_command(subparsers) -> argparse.ArgumentParser:
    """Register ``zsseg profile`` on an argparse subparsers object."""
    p = command_parser(
        subparsers,
        "profile",
        description=_HELP_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=_HELP_EPILOG,
    )
    add_profile_arguments(p)
    p.set_defaults(func=run)
    return p


def add_profile_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--bundle", required=True, help="bundle directory (zsseg export)")
    p.add_argument(
        "--classes", type=profiling.parse_int_list, default=[20], help="class counts C, e.g. 1,20,150 (default 20)"
    )
    p.add_argument(
        "--resolutions",
        type=lambda t: [profiling.parse_resolution(x) for x in t.split(",")],
        default=[(640, 480)],
        help="input image sizes WxH, comma-separated (default 640x480)",
    )
    p.add_argument(
        "--batch-sizes", type=profiling.parse_int_list, default=[1], help="images per call, e.g. 1,4 (default 1)"
    )
    p.add_argument(
        "--backends",
        "--compare",
        dest="backends",
        type=lambda t: [profiling.parse_backend(x) for x in t.split(",") if x.strip()],
        default=[profiling.parse_backend(REFERENCE_BACKEND)],
        help="backend[:device|:precision] list profiled side by side, e.g. onnxruntime,torch or "
        "tensorrt:fp16,tensorrt:int8,onnxruntime:cuda (ratios vs the first; default onnxruntime)",
    )
    p.add_argument("--iters", type=int, default=50, help="timed iterations per configuration (default 50)")
    p.add_argument("--warmup", type=int, default=5, help="untimed warm-up iterations per configuration (default 5)")
    p.add_argument("--text-iters", type=int, default=3, help="fresh vocabularies timed per class count (default 3)")
    p.add_argument(
        "--timing",
        default="auto",
        choices=["auto", "wall", "cuda"],
        help="auto (default): CUDA events for GPU backends when torch+CUDA exist, else wall-clock",
    )
    p.add_argument("--image", help="photo to resize to each resolution (default: a VOC sample or noise)")
    p.add_argument("--out", default="out/profile", help="directory for profile.json/.csv/.png (default out/profile)")
    p.add_argument("--no-plot", action="store_true", help="skip the PNG (no matplotlib needed)")
    p.add_argument("--no-verify", action="store_true", help="skip the bundle's sha256 check on load")
    p.add_argument("--quiet", action="store_true", help="only the final table")
    add_engine_arguments(p, "profile")  # --mode (zsseg_rt.options; console.arguments says why only it)
    return p


def main(argv: Optional[List[str]] = None) -> int:
    """``python -m zsseg_rt.profiling`` / ``python tools/profile.py``: as ``zsseg profile`` (an error is one line;
    ``--debug`` shows the traceback)."""
    from zsseg_rt.console.errors import run_command

    parser = build_parser()
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    args = parser.parse_args(argv)
    args.command = "profile"
    return run_command(run, args)


def run(args) -> int:
    if args.iters < 1 or args.warmup < 0 or args.text_iters < 1:
        raise CliError("--iters and --text-iters must be >= 1 and --warmup >= 0")
    report = profiling.run_profile(args)
    paths = profiling.write_outputs(report, args.out, plot=not args.no_plot)
    print(profiling.format_table(report))
    print("wrote " + ", ".join(paths.values()))
    return 0
