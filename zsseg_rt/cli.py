"""``zsseg`` command line: thin wrappers over the library (each command imports what it needs lazily)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import List, Optional

from zsseg_rt.assets import SAMPLES_DIR

SAMPLE_DIR = str(SAMPLES_DIR)  # the VOC sample photos shipped with the package


def _cmd_export(args) -> int:
    from zsseg_rt.export.onnx_export import export_bundle
    from zsseg_rt.models import create_model, load_native, load_official_any

    if args.official:  # ZegCLIP or CLIP-RC, told apart by the checkpoint's keys; config inferred unless given
        model, report = load_official_any(args.official, config=args.config, return_report=True)
        print(report.summary())
        source = args.official
    elif args.native:
        model, source = load_native(args.native), args.native
    else:
        model = create_model(args.config or "zegclip_vitb16_voc_inductive", pretrained=args.clip_weights)
        source = args.clip_weights
    out = export_bundle(
        model,
        args.output,
        max_classes=args.max_classes,
        opset=args.opset,
        source=source,
        overwrite=args.overwrite,
        verify_images=_sample_images(args.verify_images),
    )
    print(f"bundle written and verified: {out}")
    return 0


def _sample_images(paths: Optional[List[str]]) -> List[str]:
    if paths:
        return list(paths)
    folder = os.path.join(SAMPLE_DIR, "JPEGImages")
    if os.path.isdir(folder):
        return [os.path.join(folder, name) for name in sorted(os.listdir(folder))[:2]]
    return []


def _cmd_segment(args) -> int:
    import cv2
    import numpy as np

    from zsseg_rt.runtime import Engine

    engine = Engine(args.bundle, classes=args.classes, backend=args.backend, device=args.device, mode=args.mode)
    outputs = []
    for index, path in enumerate(args.images):
        image = cv2.imread(path, cv2.IMREAD_COLOR)
        if image is None:
            raise SystemExit(f"cannot read image {path!r} (missing or not an image)")
        start = time.perf_counter()
        result = engine(image)
        elapsed = time.perf_counter() - start
        out_path = _output_path(args.output, path, index, len(args.images))
        cv2.imwrite(out_path, result.overlay(image, alpha=args.alpha))
        if args.save_labels:
            cv2.imwrite(os.path.splitext(out_path)[0] + "_labels.png", result.labels.astype(np.uint16))
        counts = np.bincount(result.labels.ravel(), minlength=len(result.class_names))
        summary = {
            "image": path,
            "overlay": out_path,
            "seconds": round(elapsed, 3),
            "backend": engine.backend.name,
            "classes": {
                result.class_names[i]: round(float(counts[i]) / result.labels.size, 4) for i in result.present_classes()
            },
        }
        outputs.append(summary)
        if not args.json:
            print(
                f"{path}: {elapsed:.2f}s -> {out_path}  "
                + ", ".join(f"{k} {v:.1%}" for k, v in summary["classes"].items())
            )
    if args.json:
        print(json.dumps(outputs, indent=1))
    return 0


def _output_path(output: Optional[str], image_path: str, index: int, count: int) -> str:
    stem = os.path.splitext(os.path.basename(image_path))[0]
    if output is None:
        return f"{stem}_seg.png"
    if count > 1 or os.path.isdir(output):
        os.makedirs(output, exist_ok=True)
        return os.path.join(output, f"{stem}_seg.png")
    parent = os.path.dirname(output)
    if parent:
        os.makedirs(parent, exist_ok=True)
    return output


def _cmd_build_engine(args) -> int:
    from zsseg_rt.export import tensorrt as trt_build

    paths = trt_build.build_engines(
        args.bundle,
        precision=args.precision,
        calibration_images=args.calibration,
        max_batch=args.max_batch,
        force=args.force,
    )
    for key, path in paths.items():
        print(f"{key}: {path}")
    return 0


def _cmd_demo(args) -> int:
    from zsseg_rt.demo import run_demo

    return run_demo(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="zsseg", description="Open-vocabulary semantic segmentation (ZegCLIP).")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("export", help="export a verified ONNX bundle from a model checkpoint")
    p.add_argument("output", help="bundle directory to create")
    p.add_argument(
        "--config",
        default=None,
        help="model config name or JSON path (default: inferred from an --official checkpoint, "
        "else zegclip_vitb16_voc_inductive)",
    )
    src = p.add_mutually_exclusive_group()
    src.add_argument("--official", help="official ZegCLIP checkpoint (.pth) to convert")
    src.add_argument("--native", help="native checkpoint directory written by `zsseg convert`")
    src.add_argument("--clip-weights", help="CLIP weights only (open_clip tag or local file): head untrained")
    p.add_argument("--max-classes", type=int, default=256)
    p.add_argument("--opset", type=int, default=18)
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--verify-images", nargs="*", help="real photos for the ORT-vs-PyTorch check")
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser("segment", help="segment images with a bundle")
    p.add_argument("images", nargs="+")
    p.add_argument("--bundle", required=True)
    p.add_argument("--classes", required=True, help='comma-separated class names, e.g. "cat,sofa,floor"')
    p.add_argument("-o", "--output", help="overlay path (or directory for several images)")
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    p.add_argument("--save-labels", action="store_true", help="also write the label map as 16-bit PNG")
    p.add_argument("--backend", default="auto", choices=["auto", "tensorrt", "onnxruntime", "torch"])
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--mode", default="exact", choices=["exact", "fast"])
    p.add_argument("--alpha", type=float, default=0.5)
    p.set_defaults(func=_cmd_segment)

    p = sub.add_parser("build-engine", help="build TensorRT engines for a bundle on this device")
    p.add_argument("bundle")
    p.add_argument("--precision", default="fp16", choices=["fp32", "fp16", "int8"])
    p.add_argument("--calibration", nargs="*", help="calibration images (required for int8)")
    p.add_argument("--max-batch", type=int, default=1)
    p.add_argument("--force", action="store_true", help="rebuild even if a matching engine is cached")
    p.set_defaults(func=_cmd_build_engine)

    try:
        from zsseg_rt.models.convert import add_convert_command

        add_convert_command(sub)
    except ImportError as exc:  # torch missing: the runtime-only install
        p = sub.add_parser("convert", help="convert an official ZegCLIP checkpoint (needs torch)")
        p.set_defaults(func=lambda _a, _e=exc: sys.exit(f"zsseg convert needs the torch extra: {_e}"))

    _add_optional_commands(sub)

    p = sub.add_parser("demo", help="end-to-end: export (or reuse) a bundle and segment a sample photo")
    p.add_argument("--official", help="official ZegCLIP checkpoint (.pth)")
    p.add_argument("--native", help="native checkpoint directory (from `zsseg convert`)")
    p.add_argument(
        "--clip-weights",
        default=None,
        help="stock CLIP weights for training-free mode: local file or open_clip tag (default: openai)",
    )
    p.add_argument(
        "--method",
        default="sclip-vitb16",
        help="training-free method used with stock CLIP weights (maskclip/sclip/clearclip/naclip-vitb16)",
    )
    p.add_argument(
        "--config",
        default="zegclip_vitb16_voc_inductive",
        help="ZegCLIP config for --official checkpoints and for the random-weights check",
    )
    p.add_argument("--image", default=None, help="photo to segment (default: a VOC sample)")
    p.add_argument("--classes", default=None, help="comma-separated classes (default: the 20 VOC classes)")
    p.add_argument("--workdir", default="out", help="where the bundle and the overlay go")
    p.add_argument(
        "--allow-random-weights",
        action="store_true",
        help="when no weights can be had, run a clearly labelled random-weights pipeline check",
    )
    p.set_defaults(func=_cmd_demo)
    return parser


def _add_optional_commands(sub) -> None:
    """Commands whose modules need optional dependencies: registered when importable, else explained."""
    for module_name, function, command, needs in (
        ("zsseg_rt.stream.cli", "add_camera_command", "camera", "opencv-python-headless and onnxruntime"),
        ("zsseg_rt.train.cli", "add_train_command", "train", "the torch extra"),
        ("zsseg_rt.eval.cli", "add_eval_command", "eval", "the torch extra or onnxruntime"),
        ("zsseg_rt.scale.cli", "add_batch_command", "batch", "the scale extra (ray[data,serve])"),
        ("zsseg_rt.scale.cli", "add_serve_command", "serve", "the scale extra (ray[data,serve])"),
    ):
        try:
            import importlib

            getattr(importlib.import_module(module_name), function)(sub)
        except ImportError as exc:
            p = sub.add_parser(command, help=f"(unavailable: needs {needs})")
            p.set_defaults(func=lambda _a, _e=exc, _c=command, _n=needs: sys.exit(f"zsseg {_c} needs {_n}: {_e}"))


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
