"""``zsseg build-engine BUNDLE``: TensorRT 10 engines (:mod:`zsseg_rt.prepare.tensorrt.build`), or a reduced
precision of ONNX Runtime / OpenVINO / torch prepared and gated ahead of use (:mod:`zsseg_rt.prepare.onnxruntime`,
:mod:`zsseg_rt.prepare.openvino`, :class:`zsseg_rt.export.torch_backend.TorchBackend`), or every CPU path
``backend="auto"`` chooses among (:mod:`zsseg_rt.prepare.auto`)."""

from __future__ import annotations

import argparse
import os
import sys

from zsseg_rt.cli import command_parser
from zsseg_rt.console.arguments import PRECISION_CHOICES, real_number, whole_number
from zsseg_rt.runtime.backends.table import AUTO as _AUTO
from zsseg_rt.runtime.backends.table import prepared_rows as _prepared_rows

__all__ = ["add_command"]

# zsseg build-engine --backend: the table's rows that prepare something; the default is the one that builds engines
_PREPARED = [row.name for row in _prepared_rows()] + [_AUTO]
_ENGINE_BUILDER = next(row.name for row in _prepared_rows() if row.builds_engines)


def _prepare_precision(args) -> int:
    """``zsseg build-engine --backend NAME`` of a backend whose row prepares a reduced precision (ONNX Runtime,
    OpenVINO, torch): prepare and gate it ahead of use."""
    from zsseg_rt.bundle import BundleError
    from zsseg_rt.prepare.gate import EngineAccuracyError, gate_classes
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
        if not _fits_or_said(args, row, precision):
            return 2
        if args.dry_run:
            return 0
        prepare = load_reference(str(row.prepare))
        where = {"cache_dir": args.cache_dir} if args.cache_dir else {}
        with gate_classes(_gate_classes(args)):  # the gate judges these names too (VOC, COCO-Stuff: always)
            record = prepare(
                args.bundle, precision, force=args.force, accept_below_gate=args.accept_below_gate, **where
            )
        record = record or {}
    except (ImportError, ValueError, BundleError, EngineAccuracyError, PrecisionRecordError) as exc:
        if getattr(args, "debug", False):
            raise
        from zsseg_rt.console.errors import format_error

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
        from zsseg_rt.prepare.auto import plan_paths, prepare_and_keep, result_line
        from zsseg_rt.prepare.gate import gate_classes

        if args.dry_run:
            return _print_plan(plan_paths(args.bundle, args.cache_dir, args.force))
        with gate_classes(_gate_classes(args)):  # the gates judge these names too (VOC, COCO-Stuff: always)
            report = prepare_and_keep(args.bundle, args.cache_dir, force=args.force)
        meta = load_meta(args.bundle)
        plan = cpu_policy(meta, tuple(graph_files(meta.pipeline)), None, args.cache_dir)
    except (ImportError, ValueError, BundleError) as exc:
        if getattr(args, "debug", False):
            raise
        from zsseg_rt.console.errors import format_error

        print(f"zsseg build-engine: error: {format_error(exc)}", file=sys.stderr)
        return 2
    for result in report.results:
        print(result_line(result))
    print(report.summary())
    print(plan[0][2].line())
    return 0


def _gate_classes(args):
    """``--classes``' names (a named vocabulary: its labels), or None."""
    if not args.classes:
        return None
    from zsseg_rt.vocabulary import Vocabulary

    return list(Vocabulary.parse(args.classes).labels)


def _print_plan(plan) -> int:
    """``--dry-run``: each CPU path with what preparing it costs here (measured before, or estimated) and whether it
    fits the memory free now; nothing is prepared. Exit status 0."""
    from zsseg_rt.runtime.preparation_cost import PathCost, total_line

    free = plan["free_mb"]
    todo = []
    for path in plan["paths"]:
        if "cost" not in path:
            print(f"{path['backend']} {path['precision']}: {path['status']} ({path['reason']})".replace("  ", " "))
            continue
        what = "to prepare" if path["will_prepare"] else path["status"]
        print(f"{path['line']} [{what}]")
        if path["will_prepare"]:
            cost = dict(path["cost"])
            todo.append(PathCost(cost.pop("backend"), cost.pop("precision"), **cost))
    here = f"{free / 1024:.1f} GiB free memory here" if free is not None else "free memory unknown here"
    print(f"records: {plan['root']}; {here} (this process holds {plan['resident_mb']:.0f} MiB)")
    print(f"to prepare: {total_line(todo, free)}" if todo else "nothing to prepare: every path has its record")
    return 0


def _fits_or_said(args, row, precision: str) -> bool:
    """``--dry-run`` of one CPU backend's precision prints its cost; a preparation whose peak memory would not fit
    the memory free now is refused in one line (False). Rows without gated CPU records (torch): True, nothing said."""
    if not row.gated_choices:
        if args.dry_run:
            raise ValueError(f"--dry-run estimates the CPU paths (auto, onnxruntime, openvino), not {row.name}")
        return True
    from zsseg_rt.bundle import load_meta
    from zsseg_rt.runtime.backends.table import load_reference
    from zsseg_rt.runtime.precision_records import read_record, record_dir
    from zsseg_rt.runtime.preparation_cost import available_memory_mb, path_cost, resident_mb

    meta = load_meta(args.bundle)
    choices = load_reference(str(row.gated_choices))(meta, args.cache_dir)
    choice = next((c for c in choices if c.precision == precision), None)
    record = {}
    if choice is not None and choice.key is not None and choice.status not in ("missing", "cannot"):
        record = read_record(record_dir(choice.root, choice.key))
    cost = path_cost(meta, row.name, precision, record)
    free, resident = available_memory_mb(), resident_mb()
    if args.dry_run:
        print(cost.line(free, resident))
        return True
    if cost.fits(free, resident):
        return True
    print(f"zsseg build-engine: error: {cost.refusal(free, resident)}", file=sys.stderr)
    return False


def _cmd_build_engine(args) -> int:
    import os

    from zsseg_rt.console.progress import shown
    from zsseg_rt.errors import naming_path

    engines = os.path.join(args.bundle, "engines")  # where every engine, graph and record of the bundle is written
    # a full disk raised by a writer that names no file (onnx.save, a compiled cache) names the engines folder
    with shown(), naming_path(engines, "writing the bundle's engines and records"):
        return _build_engine(args)


def _unwritable(args) -> str:
    """Why the records or engines cannot be written where they go, in one line, or "": ``--cache-dir`` a file;
    the folder (``--cache-dir DIR``, else the bundle's ``engines/``; a folder still to be made: the one it is made in)
    on a read-only file system or not writable (the run failed with "Read-only file system: '.../engines'" after its
    start, and the dry-run planned records there)."""
    cache_dir = getattr(args, "cache_dir", None)
    if cache_dir and os.path.exists(cache_dir) and not os.path.isdir(cache_dir):
        return f"--cache-dir {cache_dir}: is a file, not a folder for the records"
    target = cache_dir or os.path.join(args.bundle, "engines")
    existing = os.path.abspath(target)
    while not os.path.exists(existing) and os.path.dirname(existing) != existing:
        existing = os.path.dirname(existing)
    if os.access(existing, os.W_OK | os.X_OK):
        return ""
    where = f"--cache-dir {cache_dir}" if cache_dir else f"the bundle's engines folder ({target})"
    advice = "give another --cache-dir"
    if not cache_dir:
        advice = (
            "give --cache-dir DIR (a writable folder; then --cache-dir DIR on segment, camera, batch, serve runs them)"
        )
    return f"{where} cannot be written ({existing!r} is read-only or not writable): {advice}"


def _build_engine(args) -> int:
    from zsseg_rt.bundle import BundleError, load_meta
    from zsseg_rt.prepare.gate import EngineAccuracyError
    from zsseg_rt.prepare.tensorrt import build as trt_build
    from zsseg_rt.runtime.backends.table import backend_row

    refused = _unwritable(args)
    if refused:
        print(f"zsseg build-engine: error: {refused}", file=sys.stderr)
        return 2
    if args.backend == _AUTO:
        return _prepare_auto(args)
    row = backend_row(args.backend)
    if not row.builds_engines:
        return _prepare_precision(args)
    for given, flag in ((args.dry_run, "--dry-run"), (args.cache_dir, "--cache-dir")):
        if given:
            print(
                f"zsseg build-engine: error: {flag} applies to the CPU paths (--backend auto, onnxruntime, openvino); "
                f"{row.name} engines are built into the bundle's engines/ folder",
                file=sys.stderr,
            )
            return 2
    if args.precision is not None and args.precision not in row.prepare_precisions:
        print(
            f"zsseg build-engine: error: --precision {args.precision} is not one the {row.name} backend builds "
            f"({', '.join(row.prepare_precisions)})",
            file=sys.stderr,
        )
        return 2
    try:
        max_batch = (
            args.max_batch if args.max_batch is not None else trt_build.default_max_batch(load_meta(args.bundle))
        )
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
        from zsseg_rt.console.errors import format_error

        print(f"zsseg build-engine: error: {format_error(exc)}", file=sys.stderr)
        return 2
    for key, path in report.paths.items():
        print(f"{key}: {path}")
    print(report.summary())
    return 0


def add_command(subparsers) -> argparse.ArgumentParser:
    """Register ``build-engine`` on an argparse subparsers object (``zsseg build-engine``)."""
    p = command_parser(
        subparsers,
        "build-engine",
        description="Prepare a bundle for this machine ahead of use, into BUNDLE/engines/ (an engine or path "
        "prepared before is reused unless --force): TensorRT 10 engines (--backend tensorrt, the default; needs a "
        "GPU), or a reduced precision of ONNX Runtime, OpenVINO or torch, each kept only if it passes the accuracy "
        "gate against ONNX Runtime fp32 (docs/precision.md). --backend auto prepares, gates and measures every CPU "
        "path that `--backend auto` chooses among: quantising and gating take minutes of CPU (about 6 for the "
        "ViT-B/16 demo bundle's three paths), announced with their cost before they start; the Engine, `zsseg "
        "segment` and `zsseg camera` then run the fastest path that passed.",
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
        "--max-batch",
        type=whole_number(1),
        default=None,
        help="windows per encoder call (default: a 4:3 frame's); two-stage bundles: crops per CLIP encoder call "
        "(default 32)",
    )
    p.add_argument("--opt-classes", type=whole_number(1), default=20, help="class count the head engine is tuned for")
    p.add_argument(
        "--workspace",
        type=real_number(above=0),
        default=None,
        help="builder workspace limit in GiB (default: TensorRT's)",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="(CPU paths) prepare nothing: print each path with what preparing it costs here, CPU time, disk kept "
        "and the preparing process's peak memory (measured here before, else estimated from the image encoder's "
        "size), beside the memory free now; a path that would not fit it is not prepared",
    )
    p.add_argument(
        "--cache-dir",
        metavar="DIR",
        help="(CPU paths) keep the prepared paths' records in DIR instead of BUNDLE/engines (the bundle is left "
        "untouched); run them with --cache-dir DIR on segment, camera, batch, serve, or Engine(cache_dir=DIR)",
    )
    p.add_argument(
        "--classes",
        metavar="NAMES",
        help="the names you will segment with (comma-separated, or a named vocabulary): the accuracy gate judges "
        "them too, beside the 20 VOC names and the 171 COCO-Stuff classes, and keeps the worst",
    )
    p.add_argument("--force", action="store_true", help="rebuild even if a matching engine is cached")
    p.add_argument(
        "--accept-below-gate",
        action="store_true",
        help="keep and use engines that fail the accuracy gate against ONNX Runtime fp32 (recorded as overridden)",
    )
    p.set_defaults(func=_cmd_build_engine)
    return p
