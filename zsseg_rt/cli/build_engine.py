"""``zsseg build-engine BUNDLE``: TensorRT 10 engines (:mod:`zsseg_rt.export.tensorrt`), or a reduced precision of
ONNX Runtime / OpenVINO / torch prepared and gated ahead of use (:mod:`zsseg_rt.export.ort_quantize`,
:mod:`zsseg_rt.export.openvino_precision`, :class:`zsseg_rt.export.torch_backend.TorchBackend`)."""

from __future__ import annotations

import argparse
import sys

from zsseg_rt.cli import command_parser
from zsseg_rt.cli_types import real_number, whole_number

__all__ = ["add_command"]


def _prepare_precision(args) -> int:
    """``zsseg build-engine --backend onnxruntime|openvino|torch``: prepare and gate a reduced precision ahead of use."""
    from zsseg_rt.bundle import BundleError, load_meta
    from zsseg_rt.export.accuracy_gate import EngineAccuracyError
    from zsseg_rt.runtime.precision_records import PrecisionRecordError

    precision = args.precision or {"onnxruntime": "int8", "openvino": "bf16"}.get(args.backend, "fp16")
    try:
        if args.backend == "openvino":
            from zsseg_rt.export.openvino_precision import prepare_openvino_precision

            record = prepare_openvino_precision(
                args.bundle, precision, force=args.force, accept_below_gate=args.accept_below_gate
            )
        elif args.backend == "onnxruntime":
            from zsseg_rt.export.ort_quantize import prepare_onnxruntime_precision

            record = prepare_onnxruntime_precision(
                args.bundle, precision, force=args.force, accept_below_gate=args.accept_below_gate
            )
        else:
            from zsseg_rt.export.torch_backend import TorchBackend

            backend = TorchBackend(
                load_meta(args.bundle), precision=precision, accept_below_gate=args.accept_below_gate, force=args.force
            )
            record = backend.precision_record or {}
    except (ImportError, ValueError, BundleError, EngineAccuracyError, PrecisionRecordError) as exc:
        if getattr(args, "debug", False):
            raise
        from zsseg_rt.cli_errors import format_error

        print(f"zsseg build-engine: error: {format_error(exc)}", file=sys.stderr)
        return 2
    print(f"{args.backend} {precision}: {record.get('digest', '')}")
    print(record.get("accuracy_gate", {}).get("summary", "fp32: nothing to gate"))
    return 0


def _cmd_build_engine(args) -> int:
    from zsseg_rt.export.progress import shown

    with shown():  # progress bars on the long stages: quantisation, the engine builds, the accuracy gate
        return _build_engine(args)


def _build_engine(args) -> int:
    from zsseg_rt.bundle import BundleError, load_meta
    from zsseg_rt.export import tensorrt as trt_build
    from zsseg_rt.export.accuracy_gate import EngineAccuracyError

    if args.backend != "tensorrt":
        return _prepare_precision(args)
    if args.precision in ("bf16",):
        print("zsseg build-engine: error: --precision bf16 is for --backend onnxruntime / torch", file=sys.stderr)
        return 2
    try:
        max_batch = args.max_batch if args.max_batch is not None else trt_build.frame_windows(load_meta(args.bundle))
        report = trt_build.build_engine_set(
            args.bundle,
            precision=args.precision or "fp16",
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
    p = command_parser(subparsers, "build-engine")
    p.add_argument("bundle", help="bundle directory written by `zsseg export`")
    p.add_argument(
        "--backend",
        default="tensorrt",
        choices=["tensorrt", "onnxruntime", "openvino", "torch"],
        help="tensorrt: build engines; onnxruntime: quantise the image encoder for this CPU (int8) or gate bf16 "
        "(Arm64); openvino: gate bf16 on this CPU (AMX / AVX-512-BF16); torch: gate fp16/bf16 on this device "
        "(docs/precision.md)",
    )
    p.add_argument(
        "--precision",
        default=None,
        choices=["fp16", "fp16-pinned", "fp32", "int8", "bf16"],
        help="TensorRT (default fp16): fp16 = plain fp16 (L2-norm sums of squares in fp32); fp16-pinned: "
        "LayerNorm/Softmax also fp32; int8: explicitly quantised (Q/DQ) bundles only. onnxruntime (default int8): "
        "int8 or bf16. openvino (default bf16): bf16. torch (default fp16): fp16 or bf16",
    )
    p.add_argument(
        "--max-batch", type=whole_number(1), default=None, help="windows per encoder call (default: a 4:3 frame's)"
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
