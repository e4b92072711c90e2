"""``zsseg segment``: images -> overlays (+ label maps), torch-free unless the torch backend is asked for.

Output paths are planned and checked (extension, writable directory, no two inputs sharing an output, never an
input overwritten) before the bundle is loaded; an image that cannot be read is reported and skipped, and the
exit code is non-zero when any image failed.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from typing import Dict, List, Optional, Sequence

from .cli_errors import CliError, format_error

__all__ = ["plan_output_paths", "check_output_paths", "run_segment", "labels_path"]

OVERLAY_SUFFIX = "_seg"
WRITABLE_EXTENSIONS = ".png, .jpg, .bmp, .tif, .webp"


def labels_path(overlay_path: str) -> str:
    """Where ``--save-labels`` writes the label map of an overlay (16-bit PNG beside it)."""
    return os.path.splitext(overlay_path)[0] + "_labels.png"


def _wants_directory(output: Optional[str], count: int) -> bool:
    if output is None or count > 1 or os.path.isdir(output) or output.endswith(("/", os.sep)):
        return True
    return not os.path.splitext(output)[1]  # "-o results": a directory (a file needs an image extension)


def plan_output_paths(images: Sequence[str], output: Optional[str]) -> List[str]:
    """One overlay path per input image, all different and none of them an input (deterministic: the first image
    with a given stem gets ``STEM_seg.png``, later ones ``STEM_seg_2.png``, ``STEM_seg_3.png``... in input order).

    Args:
        images: the input paths, in order.
        output: ``-o``: None (current directory), a directory, or a file path (one image only).
    Returns:
        The overlay paths, in input order.
    Raises:
        CliError: ``output`` names a file but several images were given.
    """
    if not _wants_directory(output, len(images)):
        return [output]  # type: ignore[list-item]
    if output is not None and os.path.exists(output) and not os.path.isdir(output):
        raise CliError(f"-o {output!r} is an existing file but {len(images)} images were given: give a directory")
    if output is not None and len(images) > 1 and not os.path.exists(output) and _has_image_extension(output):
        raise CliError(
            f"-o {output!r} looks like an image file but {len(images)} images were given: "
            "give a directory for the overlays (e.g. -o out/)"
        )
    directory = output or "."
    inputs = {os.path.realpath(image) for image in images}
    used: set = set()
    paths = []
    for image in images:
        stem = os.path.splitext(os.path.basename(os.path.normpath(image)))[0]
        name, number = f"{stem}{OVERLAY_SUFFIX}.png", 2
        # lower(): also distinct on case-insensitive file systems; never the path of an input image
        while name.lower() in used or os.path.realpath(os.path.join(directory, name)) in inputs:
            name, number = f"{stem}{OVERLAY_SUFFIX}_{number}.png", number + 1
        used.add(name.lower())
        paths.append(os.path.join(directory, name))
    return paths


def _has_image_extension(path: str) -> bool:
    import cv2

    return bool(os.path.splitext(path)[1]) and bool(cv2.haveImageWriter(path))


def _ancestors(directory: str) -> List[str]:
    """``directory`` and its parents, nearest first."""
    chain, path = [], os.path.abspath(directory)
    while True:
        chain.append(path)
        parent = os.path.dirname(path)
        if parent == path:
            return chain
        path = parent


def _check_directory(directory: str) -> None:
    blocker = next((p for p in _ancestors(directory) if os.path.exists(p) and not os.path.isdir(p)), None)
    if blocker is not None:
        raise CliError(f"cannot create the output directory {directory!r}: {blocker!r} is a file, not a directory")
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as exc:
        raise CliError(f"cannot create the output directory {directory!r}: {exc.strerror or exc}") from None
    try:
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as exc:
        raise CliError(f"the output directory {directory!r} is not writable: {exc.strerror or exc}") from None


def check_output_paths(images: Sequence[str], outputs: Sequence[str], save_labels: bool) -> None:
    """Refuse output paths that cannot be written, before any inference; creates the output directories.

    Raises:
        CliError: unsupported extension, directory not creatable or not writable, an output that is a directory,
            or an output that would overwrite one of the input images.
    """
    inputs = {os.path.realpath(path) for path in images}
    targets = list(outputs) + ([labels_path(path) for path in outputs] if save_labels else [])
    for path in targets:
        if not _has_image_extension(path):
            raise CliError(
                f"cannot write the overlay {path!r}: OpenCV has no writer for "
                f"{os.path.splitext(path)[1] or 'a name without extension'!r}; use one of {WRITABLE_EXTENSIONS}"
            )
        if os.path.isdir(path):
            raise CliError(f"the output {path!r} is a directory; give a file name such as out.png")
        if os.path.realpath(path) in inputs:
            raise CliError(f"the output {path!r} is one of the input images; choose another -o")
    for directory in sorted({os.path.dirname(os.path.abspath(path)) for path in targets}):
        _check_directory(directory)
    for path in targets:
        if os.path.exists(path) and not os.access(path, os.W_OK):
            raise CliError(f"the output {path!r} exists and is not writable")


def _segment_one(engine, path: str, out_path: str, args) -> Dict:
    import cv2
    import numpy as np

    from .image_io import read_image_bgr

    image = read_image_bgr(path, args.max_pixels)
    start = time.perf_counter()
    result = engine(image)
    elapsed = time.perf_counter() - start
    if not cv2.imwrite(out_path, result.overlay(image, alpha=args.alpha)):
        raise OSError(f"OpenCV could not write {out_path!r} (disk full or path removed?)")
    if args.save_labels and not cv2.imwrite(labels_path(out_path), result.labels.astype(np.uint16)):
        raise OSError(f"OpenCV could not write {labels_path(out_path)!r} (disk full or path removed?)")
    counts = np.bincount(result.labels.ravel(), minlength=len(result.class_names))
    return {
        "image": path,
        "overlay": out_path,
        "seconds": round(elapsed, 3),
        "backend": engine.backend.name,
        "precision": getattr(engine.backend, "precision", None),
        "classes": {
            result.class_names[i]: round(float(counts[i]) / result.labels.size, 4) for i in result.present_classes()
        },
    }


def run_segment(args) -> int:
    """Entry point of ``zsseg segment`` (argparse namespace from ``zsseg_rt.cli``). Returns the exit code: 0 when
    every image was segmented, 1 when any failed (the others are still written and reported)."""
    from .image_io import max_pixels_limit

    if not 0.0 <= args.alpha <= 1.0:
        raise CliError(f"--alpha is the overlay opacity, between 0 and 1; got {args.alpha}")
    args.max_pixels = max_pixels_limit(args.max_pixels)
    outputs = plan_output_paths(args.images, args.output)
    check_output_paths(args.images, outputs, args.save_labels)

    from zsseg_rt.runtime import Engine

    engine = Engine(
        args.bundle,
        classes=args.classes,
        backend=args.backend,
        device=args.device,
        mode=args.mode,
        precision=getattr(args, "precision", None),
    )
    summaries = []
    failed = 0
    for path, out_path in zip(args.images, outputs):
        try:
            summary = _segment_one(engine, path, out_path, args)
        except (ValueError, OSError, MemoryError) as exc:  # this image only: report, skip, go on with the others
            failed += 1
            summaries.append({"image": path, "error": format_error(exc)})
            print(f"zsseg segment: skipped {path}: {format_error(exc)}", file=sys.stderr)
            continue
        summaries.append(summary)
        if not args.json:
            shares = ", ".join(f"{k} {v:.1%}" for k, v in summary["classes"].items())
            print(f"{path}: {summary['seconds']:.2f}s -> {out_path}  {shares}")
    if args.json:
        print(json.dumps(summaries, indent=1))
    if failed:
        print(f"zsseg segment: {failed} of {len(args.images)} images failed (see above)", file=sys.stderr)
    return 1 if failed else 0
