"""``zsseg build-engine BUNDLE``: TensorRT 10 engines (:mod:`zsseg_rt.prepare.tensorrt.build`), or a reduced
precision of ONNX Runtime / OpenVINO / torch prepared and gated ahead of use (:mod:`zsseg_rt.prepare.onnxruntime`,
:mod:`zsseg_rt.prepare.openvino`, :class:`zsseg_rt.export.torch_backend.TorchBackend`), or every CPU path
``backend="auto"`` chooses among (:mod:`zsseg_rt.prepare.auto`)."""

from __future__ import annotations

import argparse
import sys

from zsseg_rt.cli import command_parser
from zsseg_rt.cli_types import PRECISION_CHOICES, real_number, whole_number
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
    from zsseg_rt.prepare.gate import EngineAccuracyError
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
        from zsseg_rt.prepare.auto import prepare_and_keep

        report = prepare_and_keep(args.bundle, force=args.force)
        meta = load_meta(args.bundle)
        plan = cpu_policy(meta, tuple(graph_files(meta.pipeline)))
    except (ImportError, ValueError, BundleError) as exc:
        if getattr(args, "debug", False):
            raise
        from zsseg_rt.cli_errors import format_error

        print(f"zsseg build-engine: error: {format_error(exc)}", file=sys.stderr)
        return 2
    for result in report.results:
        speed = f" {result['speedup']:.2f}x" if result["speedup"] is not None else ""
        reason = f" ({result['reason']})" if result["reason"] else ""
        print(f"{result['backend']} {result['precision']}: {result['status']}{speed}{reason}")
    print(report.summary())
    print(plan[0][2].line())
    return 0


def _cmd_build_engine(args) -> int:
    import os

    from zsseg_rt.errors import naming_path
    from zsseg_rt.progress import shown

    engines = os.path.join(args.bundle, "engines")  # where every engine, graph and record of the bundle is written
    # a full disk raised by a writer that names no file (onnx.save, a compiled cache) names the engines folder
    with shown(), naming_path(engines, "writing the bundle's engines and records"):
        return _build_engine(args)


def _build_engine(args) -> int:
    from zsseg_rt.bundle import BundleError, load_meta
    from zsseg_rt.prepare.gate import EngineAccuracyError
    from zsseg_rt.prepare.tensorrt import build as trt_build
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
        from zsseg_rt.cli_errors import format_error

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
    # twin (by shape): cli/demo.py's flags, cli/camera.py's - argparse flags
    p.add_argument("--force", action="store_true", help="rebuild even if a matching engine is cached")
    p.add_argument(
        "--accept-below-gate",
        action="store_true",
        help="keep and use engines that fail the accuracy gate against ONNX Runtime fp32 (recorded as overridden)",
    )
    p.set_defaults(func=_cmd_build_engine)
    return p
