"""``zsseg batch INPUT OUTPUT``: segmentation of many images on a Ray Data actor pool (:mod:`zsseg_rt.scale.batch`;
Ray is imported when it runs)."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Optional

from zsseg_rt.cli import command_parser
from zsseg_rt.cli.scale_options import (
    CLASSES_HELP,
    add_cluster_arguments,
    add_resource_arguments,
    local_cluster,
    local_cpus,
)
from zsseg_rt.console.arguments import add_engine_arguments, engine_kwargs, whole_number

__all__ = ["add_command"]


def _workers(text: str):
    """argparse type of --workers: N or MIN:MAX (whole numbers >= 1)."""
    try:
        if ":" in text:
            low, high = text.split(":", 1)
            value: Any = (int(low), int(high))
            ok = 1 <= value[0] <= value[1]
        else:
            value = int(text)
            ok = value >= 1
    except ValueError:
        ok = False
    if not ok:
        raise argparse.ArgumentTypeError(f"expected N or MIN:MAX with 1 <= MIN <= MAX, got {text!r}")
    return value


def _run_batch(args: argparse.Namespace) -> int:
    from zsseg_rt.outputs.kinds import objects_needed
    from zsseg_rt.scale.batch import prepare_batch

    job = prepare_batch(  # every argument checked before Ray starts (a Ray start takes 10-20 s)
        args.input,
        args.output,
        args.bundle,
        args.classes,
        workers=args.workers,
        gpus_per_worker=args.gpus_per_worker,
        cpus_per_worker=args.cpus_per_worker,
        batch_size=args.batch_size,
        resume=not args.no_resume,
        objects=bool(objects_needed(args)),  # --objects (the one decision of every command)
        **engine_kwargs(args, "batch"),  # every worker's Engine (zsseg_rt.options)
    )
    repeated = job.plan.repeated
    if repeated:  # a list file naming an image twice: one output, read once
        more = f" and {len(repeated) - 1} more" if len(repeated) > 1 else ""
        print(
            f"zsseg batch: note: {args.input} names {repeated[0]}{more} more than once: each is segmented once",
            file=sys.stderr,
        )
    outputs = _result_outputs(args, job)  # -o: the table's kinds batch takes, checked and claimed before Ray starts
    try:
        return _run_checked(args, job, outputs)
    finally:
        if outputs is not None:
            outputs.abort()  # (a no-op once finished) a stopped or failed run: nothing is put in place


def _result_outputs(args: argparse.Namespace, job) -> Optional[Any]:
    """The outputs of ``-o`` (kinds whose rows take ``batch``: :mod:`zsseg_rt.outputs.run_outputs`), checked,
    claimed and opened; None without ``-o``.

    Raises:
        CliError: one line naming the path and what to do; nothing was written.
    """
    if not getattr(args, "outputs", None):
        return None
    from zsseg_rt.console.errors import CliError
    from zsseg_rt.outputs.kinds import output_values
    from zsseg_rt.outputs.plan import OutputRefused
    from zsseg_rt.outputs.run_outputs import RunOutputs
    from zsseg_rt.scale.batch import MANIFEST

    taken = [os.path.join(job.output_dir, name) for name in (MANIFEST, "vocabulary.json")]
    values = output_values(args, "-o", "batch")
    try:
        return RunOutputs.opened("batch", args.outputs, args.overwrite, values, [args.input], taken)
    except OutputRefused as exc:
        raise CliError(str(exc)) from None


def _run_checked(args: argparse.Namespace, job, outputs) -> int:
    from zsseg_rt.scale import import_ray, init_ray
    from zsseg_rt.scale.batch import check_pool_fits, result_of_row, summarize_batch

    local = local_cluster(args.address)
    if local:
        check_pool_fits(job, cpus=local_cpus(args), gpus=float("inf"))  # GPUs: known once Ray has looked
    from zsseg_rt.console.signal_phases import phase

    phase("batch:checked")  # (a test hook: python_tests/scale/test_ray_signal_phases.py)
    init_ray(args.address, num_cpus=args.num_cpus)  # holds a signal while Ray starts; raises it with Ray shut down
    if local:
        resources = import_ray().cluster_resources()
        check_pool_fits(job, cpus=resources.get("CPU", 0.0), gpus=resources.get("GPU", 0.0))
    each = None
    if outputs is not None:
        from zsseg_rt.outputs.result_outputs import ResultFrame

        def each(row) -> None:  # an image's result, as the driver receives it, to the -o outputs
            if row["status"] == "ok":
                outputs.add(result_of_row(job, row), ResultFrame(outputs.results, path=row["image"]))

    more = {} if each is None else {"each": each}  # (without -o: the call as before, which recorders in tests take)
    summary = summarize_batch(job, progress=not args.no_progress, **more)
    print(
        f"{summary['ok']} segmented, {summary['skipped']} already done, {summary['error']} failed; "
        f"manifest: {summary['manifest']}"
    )
    if summary["worker_peak_rss_bytes"] is not None:
        growth = summary["worker_peak_growth_bytes"]
        print(
            f"worker memory: peak RSS {summary['worker_peak_rss_bytes'] / 2**20:.0f} MB"
            + (f" ({growth / 2**20:.0f} MB over the loaded Engine)" if growth is not None else "")
        )
    for row in summary["errors"]:
        print(f"  error: {row['image']}: {row['error']}")
    if outputs is not None:
        from zsseg_rt.outputs.kinds import wrote_line

        for kind, output in outputs.finish():
            line = wrote_line(output, kind)
            if line:
                print(f"zsseg batch: {line}", file=sys.stderr)
    return 1 if summary["error"] else 0


def add_command(subparsers) -> argparse.ArgumentParser:
    """Register ``batch`` on an argparse subparsers object (``zsseg batch``)."""
    p = command_parser(
        subparsers,
        "batch",
        description="Batch segmentation on Ray Data: an actor pool (one Engine per actor) segments every image; "
        "label PNGs (8-bit, 16-bit above 256 classes) and a JSON-lines manifest (class areas, timings) go to "
        "OUTPUT. Re-running resumes: images already done are skipped.",
    )
    p.add_argument("input", help="image folder (recursive), list file (.txt: one path per line), image, or URI/glob")
    p.add_argument(
        "output",
        help="output folder: a label PNG per image named after its path relative to INPUT, extension kept "
        "(a/cat.jpg -> OUTPUT/a/cat.jpg.png), and manifest.jsonl",
    )
    p.add_argument("--bundle", required=True, help="bundle directory (the same path on every node)")
    p.add_argument("--classes", required=True, help=CLASSES_HELP)
    p.add_argument(
        "--workers", type=_workers, default=1, help="actors in the pool: N, or MIN:MAX to autoscale (default 1)"
    )
    add_resource_arguments(p, "worker", "actor")  # --gpus-per-worker, --cpus-per-worker
    p.add_argument("--batch-size", type=whole_number(1), default=4, help="images per actor call (default 4)")
    p.add_argument("--no-resume", action="store_true", help="redo images whose outputs exist")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_result_outputs(p)  # -o SPEC, --overwrite and the kinds' own flags: only when a row takes batch
    from zsseg_rt.console.run_arguments import add_run_arguments

    add_run_arguments(p, "batch")  # --objects (the run options' rows that take batch)
    add_engine_arguments(p, "batch")  # --backend, --precision, --max-pixels, --bundle-digest, ... (zsseg_rt.options)
    add_cluster_arguments(p)
    p.set_defaults(func=_run_batch)
    return p


def _add_result_outputs(p: argparse.ArgumentParser) -> None:
    """``-o SPEC`` (repeatable) for the output kinds whose rows take ``batch`` (with their own flags and
    ``--overwrite``); none while no row does."""
    from zsseg_rt.outputs.kinds import kinds_for
    from zsseg_rt.outputs.result_outputs import add_result_outputs

    kinds = kinds_for("-o", "batch")
    if not kinds:
        return
    gather = add_result_outputs(p, "batch")
    words = ", ".join(kind.words or kind.example for kind in kinds)
    p.add_argument("-o", dest="outputs", action=gather, metavar="SPEC", help=f"also write the results as {words}")
    p.add_argument("--overwrite", action="store_true", help="replace -o outputs that exist already")
