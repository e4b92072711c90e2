"""``zsseg train CONFIG``: argparse wiring for the training loop (``add_command``) and the torchrun entry
(``python -m zsseg_rt.train``); the loop is :mod:`zsseg_rt.train`."""

from __future__ import annotations

import argparse
import json
from typing import List, Optional

from zsseg_rt.cli import command_parser
from zsseg_rt.console.arguments import whole_number

__all__ = ["add_command", "build_parser", "main"]


def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "config",
        help="training recipe: a bundled name (voc_inductive, voc_transductive, voc_fully, "
        "coco_inductive, coco_transductive, coco_fully, tiny_test) or a JSON path",
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a recipe key (JSON value; dotted keys reach into dicts), e.g. "
        "--set dataset.root=/data/VOC2012 --set iterations=1000 (repeatable)",
    )
    p.add_argument("--data-root", default=None, help="dataset root directory (same as --set dataset.root=...)")
    p.add_argument("--work-dir", default=None, help="output directory for checkpoints, log.csv and final/")
    p.add_argument("--pretrained", default=None, help="CLIP weights: open_clip tag (openai) or a local file")
    p.add_argument("--init-from", default=None, help="start from these weights (e.g. an inductive checkpoint)")
    p.add_argument(
        "--iterations", type=whole_number(1), default=None, help="training iterations (default: the recipe's)"
    )
    p.add_argument("--batch-size", type=whole_number(1), default=None, help="GLOBAL batch (all GPUs x accumulation)")
    p.add_argument(
        "--grad-accum", type=whole_number(1), default=None, help="gradient accumulation steps (batch 16 on small GPUs)"
    )
    p.add_argument(
        "--num-workers", type=whole_number(0), default=None, help="data loader processes (default: the recipe's)"
    )
    p.add_argument("--seed", type=int, default=None, help="random seed (default: the recipe's)")
    p.add_argument("--amp", action="store_true", help="mixed precision (see --amp-dtype)")
    p.add_argument(
        "--amp-dtype", choices=["float16", "bfloat16"], default=None, help="--amp precision (default: the recipe's)"
    )
    p.add_argument("--device", default="auto", help="auto (cuda:LOCAL_RANK if available), cpu, cuda")
    p.add_argument("--dist-backend", default=None, help="torch.distributed backend under torchrun (nccl / gloo)")
    g = p.add_mutually_exclusive_group()
    g.add_argument(
        "--resume",
        default="auto",
        metavar="CHECKPOINT",
        help="checkpoint to resume from (default: the newest one in the work dir, if any)",
    )
    g.add_argument("--no-resume", action="store_true", help="start from iteration 0 even if checkpoints exist")
    c = p.add_mutually_exclusive_group()
    c.add_argument("--skip-corrupt", action="store_true", help="skip undecodable images/labels with a warning")
    c.add_argument("--fail-on-corrupt", action="store_true", help="stop at the first undecodable image/label")
    p.add_argument(
        "--stop-after", type=whole_number(1), default=None, help="run at most this many iterations, then stop"
    )
    p.add_argument("--no-progress", action="store_true", help="no tqdm progress bar")
    p.add_argument("--print-config", action="store_true", help="print the resolved recipe and exit")


def _run(args: argparse.Namespace) -> int:
    from zsseg_rt.train.config import load_train_config

    kw = {}
    for key in (
        "work_dir",
        "pretrained",
        "init_from",
        "iterations",
        "batch_size",
        "grad_accum",
        "num_workers",
        "seed",
        "amp_dtype",
    ):
        value = getattr(args, key)
        if value is not None:
            kw[key] = value
    if args.amp:
        kw["amp"] = True
    if args.skip_corrupt:
        kw["on_corrupt"] = "skip"
    if args.fail_on_corrupt:
        kw["on_corrupt"] = "raise"
    overrides: List[str] = list(args.overrides)
    if args.data_root:
        overrides.append(f"dataset.root={json.dumps(args.data_root)}")
    cfg = load_train_config(args.config, overrides, **kw)
    if args.print_config:
        print(json.dumps(cfg.to_dict(), indent=1))
        return 0
    from zsseg_rt.train.trainer import train

    resume = None if args.no_resume else args.resume
    summary = train(
        cfg,
        resume=resume,
        device=args.device,
        progress=not args.no_progress,
        stop_after=args.stop_after,
        dist_backend=args.dist_backend,
    )
    import os

    if int(os.environ.get("RANK", "0")) == 0:
        print(
            json.dumps(
                {k: (str(v) if v is not None and not isinstance(v, (int, float)) else v) for k, v in summary.items()},
                indent=1,
            )
        )
    return 0


def _description() -> str:
    """What ``zsseg train`` does, with the trainable families and the default recipe's family (registry)."""
    from zsseg_rt.contract.registry import default_family, families, get_family

    trained = ", ".join(get_family(name).label for name in families() if get_family(name).training is not None)
    return (
        f"Train a model of a trainable family ({trained}) with a recipe; the recipe defaults are the official "
        f"{default_family().label} recipe (AdamW lr 2e-4, wd 0.01, poly 0.9, 1500 warm-up iterations, batch 16). "
        "Multi-GPU: torchrun --nproc_per_node=N -m zsseg_rt.train CONFIG."
    )


def add_command(subparsers) -> argparse.ArgumentParser:
    """Register ``train`` on an argparse subparsers object (``zsseg train``)."""
    p = command_parser(subparsers, "train", description=_description())
    _add_arguments(p)
    p.set_defaults(func=_run)
    return p


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m zsseg_rt.train", description=_description())
    _add_arguments(p)
    return p


def main(argv: Optional[List[str]] = None) -> int:
    """``python -m zsseg_rt.train`` (and ``torchrun ... -m zsseg_rt.train``, which stops its workers with SIGTERM):
    errors are Python's, signals follow the rule of every command (``zsseg_rt.console.errors``: SIGTERM as Ctrl-C, exit code
    128 + the signal)."""
    from zsseg_rt.console.errors import interrupted, sigterm_interrupts

    args = build_parser().parse_args(argv)
    try:
        with sigterm_interrupts():
            return _run(args)
    except KeyboardInterrupt as exc:
        return interrupted(exc, "train")
