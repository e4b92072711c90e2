"""``zsseg eval CHECKPOINT|BUNDLE --dataset ...``: metrics table + JSON (``add_command``; ``python -m zsseg_rt.eval``);
the evaluation is :mod:`zsseg_rt.eval`."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, List, Optional, Tuple

from zsseg_rt.cli import command_parser
from zsseg_rt.console.arguments import add_engine_arguments, real_number, whole_number
from zsseg_rt.contract.family import EVALUATION_SETTINGS, FamilyArgument

__all__ = ["add_command", "family_evaluation_arguments", "main"]


def family_evaluation_arguments() -> List[Tuple[Any, FamilyArgument]]:
    """``(family, FamilyArgument)`` of every family's own evaluation options (registry; no family is imported)."""
    from zsseg_rt.contract.registry import family_arguments

    return family_arguments(lambda family: family.evaluation.arguments())


def _split_list(text: Optional[str]):
    if text is None:
        return None
    return [t.strip() for t in text.split(",") if t.strip()]


def _run(args: argparse.Namespace) -> int:
    from zsseg_rt.data import build_dataset
    from zsseg_rt.eval.evaluate import evaluate

    if args.dataset_config:
        with open(args.dataset_config, "r", encoding="utf-8") as f:
            spec = json.load(f)
    else:
        if args.dataset is None:
            raise SystemExit(
                "zsseg eval: error: give --dataset {voc,coco_stuff,context59,coco_object,ade150,folder,synthetic} or --dataset-config"
            )
        spec = {"type": args.dataset}
        if args.data_root:
            spec["root"] = args.data_root
        if args.split:
            spec["split"] = args.split
    if args.max_pixels is not None:  # dataset images are read with zsseg_rt.image_io's limit, from the environment
        from zsseg_rt.image_io import MAX_PIXELS_ENV, max_pixels_limit

        os.environ[MAX_PIXELS_ENV] = str(max_pixels_limit(args.max_pixels))
    spec["on_corrupt"] = "skip" if args.skip_corrupt else "raise"
    if args.ignore_bad_labels:
        spec["on_bad_label"] = "ignore"
    common = dict(  # what the serial and the parallel evaluation both take
        mode=args.mode,
        text_embeddings=args.text_embeddings,
        unseen=_split_list(args.unseen),
        device=args.device,
        backend=args.backend,
        limit=args.limit,
        progress=not args.no_progress,
        settings=args.settings,
        precision=args.precision,
    )
    if args.ray:  # the same evaluation on a Ray Data actor pool (zsseg_rt.eval.parallel): identical metrics
        own_protocol = [
            (owner, argument.flags[0])
            for owner, argument in family_evaluation_arguments()
            if getattr(args, argument.dest) != argument.default
        ]
        if own_protocol:  # a family's own protocol options: the actor pool runs the generic evaluation only
            names = sorted({owner.display_name for owner, _ in own_protocol})
            raise SystemExit(
                f"zsseg eval: error: {', '.join(flag for _, flag in own_protocol)} ({' / '.join(names)}'s own "
                f"protocol) cannot run with --ray: evaluate {' / '.join(names)} checkpoints without --ray"
            )
        from zsseg_rt.eval.parallel import evaluate_parallel
        from zsseg_rt.scale import init_ray

        if not os.path.exists(args.checkpoint):  # before Ray starts (10-20 s): refuse a missing path at once
            raise FileNotFoundError(f"checkpoint or bundle {args.checkpoint!r} does not exist")
        build_dataset(dict(spec))  # the same check: a wrong dataset root is reported before Ray starts
        init_ray(args.address)
        pool = dict(workers=args.workers, gpus_per_worker=args.gpus_per_worker, cpus_per_worker=args.cpus_per_worker)
        return _report(evaluate_parallel(args.checkpoint, spec, **pool, **common), args)
    family = {argument.dest: getattr(args, argument.dest) for _, argument in family_evaluation_arguments()}
    metrics = evaluate(args.checkpoint, build_dataset(spec), **common, **family)
    return _report(metrics, args)


def _report(metrics, args: argparse.Namespace) -> int:
    from zsseg_rt.eval.evaluate import save_json
    from zsseg_rt.eval.metrics import format_table

    path = args.save_json
    if isinstance(args.json, str):  # the old spelling `--json PATH`: still writes the file, says the new one
        print(f"zsseg eval: note: --json PATH is deprecated, use --save-json {args.json}", file=sys.stderr)
        path = path or args.json
    if args.json is True:  # --json: the metrics as JSON on stdout, nothing else (as `zsseg segment --json`)
        print(json.dumps(metrics, indent=1))
    else:
        if metrics.get("banner"):  # random weights: said before the numbers, which mean nothing
            print(metrics["banner"])
        print(format_table(metrics, per_class=not args.no_per_class))
        ran = (
            f", backend {metrics['backend']} {metrics.get('precision') or ''}".rstrip()
            if metrics.get("backend")
            else ""
        )
        print(
            f"{metrics['images']} images ({metrics['skipped']} skipped), mode {metrics['mode']}, {metrics['source']}"
            f"{ran}"
        )
        record = metrics.get("evaluation_settings")
        if record:  # a bundle whose family has per-dataset settings: which ran, and what the bundle could not follow
            print(record["summary"])
            for line in record.get("deviations", []):
                print(f"  deviation: {line}")
    speed = metrics.get("speed")
    if isinstance(speed, dict) and speed.get("images"):  # ms per image per stage, what ran (zsseg_rt.console.speed)
        from zsseg_rt.console.speed import speed_line

        line = speed_line(speed["ms_per_image"], speed.get("backend"), speed.get("precision"), speed.get("size") or "")
        print(line, file=sys.stderr if args.json is True else sys.stdout)
    if path:
        save_json(metrics, path)
        print(f"metrics written to {path}", file=sys.stderr if args.json is True else sys.stdout)
    return 0


def add_command(subparsers) -> argparse.ArgumentParser:
    """Register ``eval`` on an argparse subparsers object (``zsseg eval``)."""
    p = command_parser(
        subparsers,
        "eval",
        description="Evaluate a training checkpoint (.pt), a native checkpoint directory or an export bundle on "
        "a labelled dataset, with all classes predicted jointly (generalized zero-shot).",
    )
    p.add_argument("checkpoint", help="training checkpoint .pt, native checkpoint dir, or bundle dir")
    p.add_argument(
        "--dataset",
        choices=["voc", "coco_stuff", "context59", "coco_object", "ade150", "folder", "synthetic"],
        default=None,
        help="dataset layout (cross-dataset: any of them, with its own class names)",
    )
    p.add_argument("--data-root", default=None, help="dataset directory")
    p.add_argument("--split", default=None, help="dataset split (default: the layout's validation split)")
    p.add_argument("--dataset-config", default=None, help="JSON dataset spec instead of --dataset/--data-root")
    p.add_argument(
        "--mode",
        choices=["slide", "whole"],
        default="slide",
        help="windows of PyTorch checkpoints: slide (the official crop/stride windows; default) or whole (one window "
        "over the resized image). Bundles always slide; their post-processing order is `zsseg segment --mode "
        "exact|fast`",
    )
    p.add_argument("--text-embeddings", default=None, help="precomputed [C, D] class embeddings (.npy/.pt)")
    p.add_argument(
        "--unseen", default=None, help="comma-separated unseen classes (names or indices) overriding the dataset split"
    )
    for _, argument in family_evaluation_arguments():  # options of the families' own protocols (registrations)
        p.add_argument(*argument.flags, **dict(argument.options))
    p.add_argument(
        "--settings",
        choices=list(EVALUATION_SETTINGS),
        default="official",
        help="(bundles whose family has per-dataset test settings, e.g. training-free methods) official: the "
        "family's official settings for the dataset (recorded with what the bundle cannot follow); bundle: the "
        "bundle's own",
    )
    p.add_argument(
        "--json",
        nargs="?",
        const=True,
        default=None,
        metavar="PATH",
        help="print the metrics as JSON on stdout instead of the table (the old `--json PATH` still writes PATH, "
        "deprecated: use --save-json)",
    )
    p.add_argument("--save-json", default=None, metavar="PATH", help="also write the metrics to this JSON file")
    p.add_argument("--limit", type=whole_number(1), default=None, help="evaluate only the first N images (N >= 1)")
    p.add_argument("--device", default=None, help="torch device (default: the checkpoint's / auto for bundles)")
    p.add_argument("--skip-corrupt", action="store_true", help="skip undecodable files (counted) instead of failing")
    p.add_argument("--ignore-bad-labels", action="store_true", help="treat out-of-range label values as ignore")
    p.add_argument(
        "--max-pixels",
        type=int,
        default=None,
        help="refuse (or with --skip-corrupt skip) images with more pixels than this, checked before decoding "
        "(default: $ZSSEG_MAX_PIXELS or 40000000; 0 = no limit)",
    )
    p.add_argument("--no-per-class", action="store_true", help="print only the summary line")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--ray", action="store_true", help="evaluate on a Ray Data actor pool (zsseg_rt.scale)")
    p.add_argument("--workers", type=whole_number(1), default=1, help="(--ray) actors, one model/Engine each")
    p.add_argument("--gpus-per-worker", type=real_number(0), default=0.0, help="(--ray) GPUs per actor")
    p.add_argument("--cpus-per-worker", type=real_number(above=0), default=1.0, help="(--ray) CPUs per actor")
    p.add_argument("--address", default=None, help="(--ray) Ray cluster address (default: a local one, 127.0.0.1)")
    add_engine_arguments(p, "eval")  # a bundle's --backend and --precision (zsseg_rt.options; arguments.py says why)
    p.set_defaults(func=_run)
    return p


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m zsseg_rt.eval")
    sub = parser.add_subparsers(dest="command", required=True)
    add_command(sub)
    args = parser.parse_args(["eval"] + list(argv if argv is not None else __import__("sys").argv[1:]))
    from zsseg_rt.console.errors import run_command

    return run_command(args.func, args)
