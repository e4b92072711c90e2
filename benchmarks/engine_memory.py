"""Peak memory of one ``Engine`` call against the documented estimate (README "Input limits and memory").

Runs one image through an Engine in this process and prints one JSON line: the rise of the process's peak RSS
during the call (Linux: the peak is reset through ``/proc/self/clear_refs`` and read as ``VmHWM``, so it is not
inherited from a parent such as pytest; elsewhere ``ru_maxrss``), the estimate ``Engine`` checks against
``max_memory_mb``, and the outcome (``ok`` or the exception)::

    python -m benchmarks engine_memory BUNDLE --shape 1x1024 --classes 32 [--mode fast] [--max-windows N]
        [--inference whole]

``--inference whole`` (bundles whose image graph takes any size): one whole-image pass, whose estimate counts the
encoder's memory at the image's token count (``whole_image.encoder_bytes_*``).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from zsseg_rt.system_info import current_rss_bytes, peak_rss_bytes, reset_peak_rss


def measure(
    bundle: str,
    shape: str,
    classes: int,
    mode: str,
    backend: str,
    limits: dict,
    test_scale_short: int = 0,
    inference: str = "windows",
) -> dict:
    """Segment one random ``shape`` image with ``classes`` classes; returns the measurement as a dict."""
    from zsseg_rt import Engine
    from zsseg_rt.pipeline import estimate_bytes
    from zsseg_rt.pipeline.preprocess import rescaled_size, sliding_windows

    height, width = (int(v) for v in shape.lower().split("x"))
    names = [f"class {chr(97 + i % 26)}{i}" for i in range(classes)]
    engine = Engine(
        bundle, classes=names, backend=backend, device="cpu", mode=mode, inference=inference, prepare=None, **limits
    )
    engine(np.zeros((engine.meta.image_size, engine.meta.image_size, 3), np.uint8))  # warm up the sessions
    meta = engine.meta
    scaled = rescaled_size(height, width, meta.test_scale, max_pixels=None)
    windows = sliding_windows(scaled[0], scaled[1], meta.crop_size, meta.stride)
    estimate = estimate_bytes(
        (height, width),
        scaled,
        len(windows),
        classes,
        meta.image_size,
        meta.grid,
        engine.max_batch,
        activation=engine.postprocessor.activation,
        single_fast_window=engine.postprocessor.is_fast(windows),
        pamr_neighbours=engine.postprocessor.pamr_neighbours,
    )
    if inference == "whole":
        estimate = engine.pipeline.whole_estimate_bytes((height, width), scaled, classes)
        windows = windows[:1]  # one pass
    image = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    # the peak is reset to the current RSS where allowed (not inherited from a parent such as pytest)
    before = current_rss_bytes() if reset_peak_rss() else peak_rss_bytes()
    start = time.perf_counter()
    try:
        engine(image)
        outcome = "ok"
    except Exception as exc:  # noqa: BLE001 - reported, not hidden: the outcome is part of the measurement
        outcome = f"{type(exc).__name__}: {exc}"
    peak = peak_rss_bytes()
    # twin (by shape only): python_tests/train/conftest.py zegclip_fp32_learning - a dict of named fields, each its own
    return dict(
        shape=shape,
        classes=classes,
        mode=mode,
        backend=backend,
        inference=inference,
        rescaled=list(scaled),
        windows=len(windows),
        peak_rise_mib=round((peak - before) / 2**20, 1),
        estimate_mib=round(estimate / 2**20, 1),
        seconds=round(time.perf_counter() - start, 2),
        outcome=outcome,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bundle")
    parser.add_argument("--shape", required=True, help="HxW of the random test image, e.g. 1x1024")
    parser.add_argument("--classes", type=int, default=32)
    parser.add_argument("--mode", default="exact", choices=["exact", "fast"])
    parser.add_argument("--backend", default="onnxruntime", choices=["onnxruntime", "torch"])
    parser.add_argument("--inference", default="windows", choices=["windows", "whole"])
    for name in ("max_pixels", "max_rescaled_pixels", "max_windows", "max_memory_mb"):
        parser.add_argument("--" + name.replace("_", "-"), type=int, default=None)
    args = parser.parse_args()
    limits = {
        name: getattr(args, name)
        for name in ("max_pixels", "max_rescaled_pixels", "max_windows", "max_memory_mb")
        if getattr(args, name) is not None
    }
    measured = measure(args.bundle, args.shape, args.classes, args.mode, args.backend, limits, inference=args.inference)
    print(json.dumps(measured))


if __name__ == "__main__":
    main()
