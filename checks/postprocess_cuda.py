"""Where the device post-processing's time goes on a GPU: ``ops.segment_windows`` on torch CUDA tensors at the
Engine check's shapes (2 windows of 32x32 logits, the photo's 512x683 rescale, a 375x500 output), C=20 and C=171.

Usage (on a CUDA machine, with the installed package; the H200 run of 2026-11-26 ran this program's text from a
scratch copy after the sanitizers stage):
    python -m checks postprocess_cuda

Prints, per C: the median of call + ``torch.cuda.synchronize`` for the op with and without a class bias, ``out=`` and
an explicit stream; the same for torch's interpolate + sigmoid + max (the peer); the profiler's CUDA kernel times;
and the host time per call with 100 calls enqueued back to back. Measured there: kernel 47 us (C=20) and 209 us
(C=171, i.i.d. random logits: nothing to prune); 110-150 us of host time per call besides. Nothing is checked: a
diagnosis for the Engine check's post-processing target (checks/gpu_engine.py), not a test.

Every call here is on the legacy default stream (``stream`` = torch's current stream, 0), not on the pipeline's own
stream as the Engine runs it (review b991c98 section 3.1: DLPack exports on another stream add an event per tensor).
``python -m checks gpu_probe --parts P1`` measures both, with the profiler's CUDA API calls per call, and the
Engine's post-processing inside its frame graph (P4; ``checks/gpu_engine.py`` judges it).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

WINDOWS = [(0, 512, 0, 512), (0, 512, 171, 683)]
SIZES = ((512, 512), (512, 683), (375, 500))  # head size, rescaled size, output size


def _timed(torch, fn, n: int = 60) -> float:
    for _ in range(5):
        fn()
    torch.cuda.synchronize()
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        samples.append((time.perf_counter() - start) * 1e6)
    return statistics.median(samples)


def _measure(torch, ops, classes: int, stream: int) -> None:
    """One class count's rows (see the module docstring)."""
    logits = torch.randn(2, classes, 32, 32, device="cuda") * 3
    bias = torch.rand(classes, device="cuda") * 0.05
    labels = torch.empty(375, 500, dtype=torch.int32, device="cuda")
    scores = torch.empty(375, 500, dtype=torch.float32, device="cuda")

    def full():
        return ops.segment_windows(
            logits, WINDOWS, *SIZES, class_bias=bias, sigmoid=True, stream=stream, out=(labels, scores)
        )

    rows = {
        "no bias": lambda: ops.segment_windows(logits, WINDOWS, *SIZES, sigmoid=True),
        "bias": lambda: ops.segment_windows(logits, WINDOWS, *SIZES, class_bias=bias, sigmoid=True),
        "bias, out=, stream=": full,
        "torch interpolate + sigmoid + max (peer)": lambda: (
            torch.nn.functional.interpolate(logits, size=(512, 512), mode="bilinear", align_corners=False)
            .sigmoid()
            .max(1)
        ),
    }
    for name, fn in rows.items():
        print(f"C={classes} {name}: {_timed(torch, fn):.1f} us (call + sync, median)")
    activities = [torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA]
    with torch.profiler.profile(activities=activities) as prof:
        for _ in range(20):
            full()
        torch.cuda.synchronize()
    print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=8, max_name_column_width=50))
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(100):
        full()
    enqueued = time.perf_counter()
    torch.cuda.synchronize()
    drained = time.perf_counter()
    print(
        f"C={classes} 100 calls enqueued: {(enqueued - start) * 1e4:.1f} us host per call, "
        f"{(drained - start) * 1e4:.1f} us per call with the drain"
    )


def main(argv=None) -> int:
    argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args(argv)
    import torch

    from zsseg_rt import ops

    if not torch.cuda.is_available() or not ops.cuda_available():
        print(
            "postprocess_cuda: needs a CUDA device (torch and zsseg_rt's CUDA build): nothing measured", file=sys.stderr
        )
        return 1
    torch.manual_seed(0)
    print(f"sync only: {_timed(torch, lambda: None):.1f} us")
    stream = torch.cuda.current_stream().cuda_stream
    for classes in (20, 171):
        _measure(torch, ops, classes, stream)
    return 0


if __name__ == "__main__":
    sys.exit(main())
