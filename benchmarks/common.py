"""Shared pieces of the benchmark scripts: machine description, timing one call with its memory, and BENCHMARKS.md
section writing; and the ``python -m PACKAGE NAME`` dispatcher of this package and of ``checks``."""

from __future__ import annotations

import argparse
import datetime
import os
import pkgutil
import platform
import re
import runpy
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

REPO = Path(__file__).resolve().parent.parent
PHOTO = REPO / "zsseg_rt" / "assets" / "samples" / "JPEGImages" / "2011_000006.jpg"  # the benchmarks' VOC photo
_NOT_PROGRAMS = ("common",)  # shared helpers, not programs


class Programs:
    """``python -m PACKAGE NAME [ARGS]`` for a repository package of programs (``benchmarks``, ``checks``): run its
    module NAME as a program; without NAME (or with ``-h``), the list of names."""

    def __init__(self, package: str):
        self.package = package

    def names(self) -> List[str]:
        """The programs of the package: every module except ``_private`` ones and shared helpers."""
        found = pkgutil.iter_modules([str(REPO / self.package)])
        return sorted(m.name for m in found if not m.name.startswith("_") and m.name not in _NOT_PROGRAMS)

    def main(self, argv: Optional[List[str]] = None) -> int:
        package = self.package
        argv = list(sys.argv[1:] if argv is None else argv)
        if not argv or argv[0] in ("-h", "--help"):
            print(f"usage: python -m {package} NAME [ARGS]   (python -m {package} NAME --help for its options)")
            print("names: " + ", ".join(self.names()))
            return 0 if argv else 2
        name = argv[0]
        if name not in self.names():
            print(f"python -m {package}: unknown name {name!r}; known: {', '.join(self.names())}", file=sys.stderr)
            return 2
        sys.argv = [f"python -m {package} {name}", *argv[1:]]
        runpy.run_module(f"{package}.{name}", run_name="__main__", alter_sys=True)
        return 0


def machine_description(threads: int) -> List[str]:
    """Markdown bullet lines naming the CPU, cores, OS, thread count and versions."""
    cpu = "unknown CPU"
    try:
        cpu = re.search(r"model name\s*:\s*(.*)", Path("/proc/cpuinfo").read_text()).group(1).strip()
    except (OSError, AttributeError):
        pass
    try:
        import torch

        torch_version = torch.__version__
    except ImportError:
        torch_version = "not installed"
    return [
        f"- Machine: {cpu}, {os.cpu_count()} logical cores, {platform.system()} {platform.release()}",
        f"- Threads: {threads} (OMP_NUM_THREADS for zsseg_rt, torch.set_num_threads for PyTorch)",
        f"- PyTorch {torch_version}, Python {platform.python_version()}, date {datetime.date.today().isoformat()}",
    ]


def torch_op(case: str, t: Dict[str, Any], size: Any) -> Callable[[], object]:
    """The PyTorch eager side of an op case of ``benchmarks.ops`` (CPU) and ``benchmarks.cuda`` (GPU): segment*,
    upsample_calibrate*, upsample*, similarity_norm*, similarity_scale*, else the relation descriptor; ``t``: the
    case's input tensors, ``size``: the upsampled (H, W) (None for the cases that upsample nothing)."""
    import torch
    import torch.nn.functional as F

    if case.startswith("segment"):

        def run():
            v = F.interpolate(t["logits"], size=size, mode="bilinear", align_corners=False)
            v = v.sigmoid() - t["bias"][None, :, None, None]
            labels = v.argmax(dim=1)
            return labels, v.gather(1, labels[:, None])

        return run
    if case.startswith("upsample_calibrate"):
        return lambda: (
            torch.sigmoid(F.interpolate(t["logits"], size=size, mode="bilinear", align_corners=False))
            - t["bias"][None, :, None, None]
        )
    if case.startswith("upsample"):
        return lambda: F.interpolate(t["logits"], size=size, mode="bilinear", align_corners=False)
    if case.startswith("similarity_norm"):  # (the _fp16 cases too: the inputs' dtype makes torch's matmul fp16)
        return lambda: F.normalize(t["text"], dim=-1) @ F.normalize(t["patches"], dim=-1).transpose(1, 2)
    if case.startswith("similarity_scale"):
        return lambda: 100.0 * (t["text"] @ t["patches"].transpose(1, 2))

    def relation():
        text, g = t["text"], t["image_global"]
        cat = torch.cat([text[None] * g[:, None], text[None].expand(g.shape[0], -1, -1)], dim=-1)
        return F.linear(cat, t["weight"], t["bias"])

    return relation


def section_head(section: str, command: str, threads: int) -> List[str]:
    """The first lines of a BENCHMARKS.md section: its heading, how to regenerate it (``python -m benchmarks
    COMMAND``) and the machine (:func:`machine_description`)."""
    return [section, "", f"Regenerate: `.venv/bin/python -m benchmarks {command}`", "", *machine_description(threads)]


def measure_call(
    fn: Callable[[], Any], warmup: int = 0, repeats: int = 5, first: Optional[Callable[[Any], None]] = None
) -> Dict[str, float]:
    """``{"median_ms", "peak_extra_mb"}`` of ``fn()``: the peak RSS the first call adds over the RSS before it
    (Linux: the peak mark is reset first, so it is not inherited from earlier work), then the median wall time of
    ``repeats`` calls after ``warmup`` more. ``first`` gets the first call's result (to save it); the result is
    dropped before the timed calls."""
    from zsseg_rt.system_info import current_rss_bytes, peak_rss_bytes, reset_peak_rss

    if not reset_peak_rss():
        raise RuntimeError("the peak-RSS measurement needs Linux's /proc/self/clear_refs")
    before = current_rss_bytes() or 0
    result = fn()
    peak_extra_mb = ((peak_rss_bytes() or 0) - before) / 2**20
    if first is not None:
        first(result)
    del result
    return {"median_ms": median_ms(fn, repeats, warmup), "peak_extra_mb": peak_extra_mb}


def median_ms(fn: Callable[[], Any], repeats: int, warmup: int = 0) -> float:
    """The median wall time of ``repeats`` calls of ``fn()`` after ``warmup`` untimed ones, in ms."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def encoder_crops(image: Any, meta: Any) -> Tuple[Tuple[int, int], List[Any], Any]:
    """The image encoder's input for a BGR photo, prepared as the Engine does with a bundle's ``meta``: ``(the
    rescaled size (H, W), the sliding windows, the padded crops [N, 3, S, S] float32)``."""
    import numpy as np

    from zsseg_rt import pipeline

    rgb = pipeline.to_rgb_uint8(image, "bgr")
    chw = pipeline.normalize_image(pipeline.rescale_keep_ratio(rgb, meta.test_scale), meta.mean, meta.std)
    windows = pipeline.sliding_windows(chw.shape[1], chw.shape[2], meta.crop_size, meta.stride)
    crops = np.stack(
        [
            pipeline.pad_to_multiple(chw[:, w.y1 : w.y2, w.x1 : w.x2], meta.patch_size, (meta.image_size,) * 2)
            for w in windows
        ]
    )
    return (int(chw.shape[1]), int(chw.shape[2])), windows, crops


def save_window_logits(path: str, engine: Any, logits: Any, image: Any, scaled: Any, windows: List[Any]) -> None:
    """Keep a photo's window logits ``[N, C, h, w]`` with what ``ops.segment_windows`` needs beside them (the
    Engine's class bias, the windows, the head's input size, the rescaled and the output size), for timing the op
    alone, builds side by side."""
    import numpy as np

    np.savez(
        path,
        logits=logits,
        bias=engine._vocab[2],
        windows=np.array([tuple(w) for w in windows]),
        head=np.array([engine.meta.image_size] * 2),
        scaled=np.array(scaled),
        out=np.array(image.shape[:2]),
    )


def show_section(section: str, text: str, write: bool) -> None:
    """Print a section's ``text``; with ``write`` (``--write``) also put it into BENCHMARKS.md and say where."""
    print(text)
    if write:
        print(f"wrote {write_section(section, text)}")


def run_lines_program(doc: str, section: str, run: Callable[[int, int, int], List[str]]) -> int:
    """``main()`` of a benchmark whose ``run(iters, warmup, threads)`` returns its section's lines (zegformer,
    zegformer_engine): ``--iters``, ``--warmup``, ``--threads``; prints the section, ``--write`` also puts it into
    BENCHMARKS.md. ``doc``: the module's docstring (its first paragraph is the description)."""
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--write", action="store_true", help="update BENCHMARKS.md")
    args = ap.parse_args()
    text = "\n".join(run(args.iters, args.warmup, args.threads)) + "\n"
    print(text)
    if args.write:
        write_section(section, text)
    return 0


def write_section(section: str, text: str) -> Path:
    """Replace (or append) the ``section`` heading's block of BENCHMARKS.md with ``text``."""
    path = REPO / "BENCHMARKS.md"
    if not path.exists():
        path.write_text("# Benchmarks\n\nEach section says how to regenerate it.\n\n" + text)
        return path
    content = path.read_text()
    pattern = re.compile(re.escape(section) + r".*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(content):
        content = pattern.sub(lambda _: text + "\n", content)
    else:
        content = content.rstrip() + "\n\n" + text
    path.write_text(content)
    return path
