#!/usr/bin/env python
"""The app's frame time while the background preparation runs (issue 63, item 4: at most 1.2x).

``Engine(bundle, prepare="background")`` prepares the faster CPU paths in a child process on idle CPU only
(``SCHED_IDLE``, nice 19, one thread; ``runtime/upgrade.py``) while the app runs the exact fp32 path. Here the app is
a camera loop's work, one frame after another (vtest.avi's 768x576 frames, ZegCLIP ViT-B/16 with random weights on
ONNX Runtime fp32, the path an unprepared bundle runs): its frame times before the preparation starts, while it runs
(each frame counted only while the child is alive) and after it is stopped (``Engine.close()``), in turns on one
machine. The ratio is the median frame time while preparing over the median of the frames before and after. The
child's CPU seconds in the window say how much work it got done meanwhile (the idle CPU the app left).

The bundle is a copy of ``out/bench_video``'s (``python -m benchmarks video`` exports it) without its records, so
there is something to prepare; the copy (~0.6 GB) is removed at the end, and the preparation is stopped before it
finishes (it keeps nothing in the copy that outlives the run).

    .venv/bin/python -m benchmarks prepare_load            # print the section
    .venv/bin/python -m benchmarks prepare_load --write    # also put it into BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, List, Optional

from .common import REPO, machine_description, show_section

SECTION = "## The app's frame time while the background preparation runs (issue 63)"
TARGET = 1.2  # the frames while preparing: at most 1.2x the frames without
CLIP = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")


def _children() -> List[Any]:
    from zsseg_rt.runtime import upgrade

    return [process for process in upgrade._children if process.poll() is None]


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux /proc), 0 when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _frames(count: int) -> List[Any]:
    import cv2

    if not CLIP.is_file():
        raise SystemExit(f"{CLIP} is missing: install Debian's opencv-doc (apt-get install opencv-doc)")
    capture = cv2.VideoCapture(str(CLIP))
    frames = [capture.read()[1] for _ in range(count)]
    capture.release()
    return frames


def _time(engine: Any, frames: List[Any], while_alive: bool = False) -> List[float]:
    """Seconds a frame, one after another; ``while_alive``: only the frames that began and ended while the
    preparation's child ran."""
    times = []
    for frame in frames:
        alive = bool(_children()) if while_alive else True
        begin = time.perf_counter()
        engine(frame)
        seconds = time.perf_counter() - begin
        if not while_alive or (alive and _children()):
            times.append(seconds)
    return times


def run(args) -> str:
    source = Path(args.bundle) if args.bundle else REPO / "out" / "bench_video" / "zegclip_vitb16_voc_inductive-seed0"
    if not (source / "meta.json").is_file():
        raise SystemExit(f"{source} is not a bundle: run `python -m benchmarks video` first (it exports it)")
    frames = _frames(args.frames)
    rows = [measure(source, frames, threads, args.settle) for threads in (0, 1)]
    lines = [
        SECTION,
        "",
        f"Regenerate: `.venv/bin/python -m benchmarks prepare_load --write` (about {args.frames * 3 * 6 // 60 + 3} "
        "min: a copy of the video benchmark's bundle without its records for each row, removed at the end).",
        "",
        *[line for line in machine_description(0) if not line.startswith("- Threads")],
        f"- App: `Engine(bundle, threads=T)` (backend auto, nothing prepared: {rows[0]['path']}) on vtest.avi's first "
        f"{args.frames} frames (768x576, ZegCLIP ViT-B/16, RANDOM WEIGHTS), one after another. T=0: ONNX Runtime's "
        "own choice (every core: no idle CPU while a frame runs); T=1: one core left idle, where the preparation "
        "runs at full speed beside the app (the case where it can slow the app most: shared caches and memory)",
        '- Preparation: `Engine(bundle, prepare="background")`: `python -m zsseg_rt.prepare.auto BUNDLE '
        "--background` in a child process (SCHED_IDLE, nice 19, one thread), stopped by `Engine.close()` after the "
        f"frames; {args.settle:.0f} s after its start before the first frame counted (past its imports)",
        "",
        "| app threads | median s / frame before | while preparing | after | while / without | target <= "
        f"{TARGET}x | the preparation's CPU s in the window | load (1 min) at its start |",
        "|---|---:|---:|---:|---:|---|---:|---:|",
    ]
    for row in rows:
        ratio = row["ratio"]
        lines.append(
            f"| {row['threads'] or 'ONNX Runtime default'} | {statistics.median(row['before']):.3f} | "
            f"{statistics.median(row['during']):.3f} ({len(row['during'])} frames) | "
            f"{statistics.median(row['after']):.3f} | **{ratio:.2f}x** | {'met' if ratio <= TARGET else '**missed**'} "
            f"| {row['child_cpu']:.1f} of {row['window']:.1f} | {row['load']:.1f} |"
        )
    lines += [
        "",
        'Medians of the frames before and after the preparation ran make the "without"; the frames while it runs '
        "count only when the child was alive at their start and end.",
        "",
    ]
    return "\n".join(lines)


def measure(source: Path, frames: List[Any], threads: int, settle: float) -> dict:
    """One row: the app's frames before, while and after a background preparation of a fresh copy of the bundle."""
    from zsseg_rt import Engine

    from ._video_clips import CLASSES

    work = Path(tempfile.mkdtemp(prefix="zsseg-prepare-load-"))
    bundle = work / "bundle"
    try:
        shutil.copytree(source, bundle, ignore=shutil.ignore_patterns("engines"))
        options = dict(classes=CLASSES, backend="auto", mode="fast", threads=threads)
        app = Engine(str(bundle), prepare=None, **options)
        path = f"{app.backend.name} {getattr(app.backend, 'precision', None) or 'fp32'}"
        app(frames[0])  # warm-up
        before = _time(app, frames)
        load = os.getloadavg()[0]
        preparing = Engine(str(bundle), prepare="background", **options)
        deadline = time.monotonic() + 60
        while not _children() and time.monotonic() < deadline:
            time.sleep(0.1)
        children = _children()
        if not children:
            raise SystemExit("the background preparation did not start (see BUNDLE/engines/auto-prepare.log)")
        pid, started = children[0].pid, time.monotonic()
        preparing(frames[0])  # warm (its sessions' first run), then the rest of the settling time
        time.sleep(max(0.0, settle - (time.monotonic() - started)))  # past its start-up, into the quantisation
        cpu_start, begin = _cpu_seconds(pid), time.perf_counter()
        during = _time(preparing, frames, while_alive=True)
        child_cpu, window = _cpu_seconds(pid) - cpu_start, time.perf_counter() - begin
        preparing.close()
        after = _time(app, frames)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if len(during) < 3:
        raise SystemExit(f"only {len(during)} frames ran while the preparation ran: too few to judge")
    ratio = statistics.median(during) / statistics.median(before + after)
    return dict(
        threads=threads,
        path=path,
        before=before,
        during=during,
        after=after,
        ratio=ratio,
        child_cpu=child_cpu,
        window=window,
        load=load,
    )


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", help="a ViT-B/16 bundle (default: the video benchmark's, out/bench_video)")
    parser.add_argument("--frames", type=int, default=8, help="frames in each phase")
    parser.add_argument("--settle", type=float, default=20.0, help="seconds after the preparation starts")
    parser.add_argument("--write", action="store_true", help="update the section in BENCHMARKS.md")
    args = parser.parse_args(argv)
    show_section(SECTION, run(args), args.write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
