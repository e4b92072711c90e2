"""``python -m benchmarks video --exact-live``: ``--live`` on the exact CPU path (ONNX Runtime fp32, where no reduced
precision passed the accuracy gate), the full window against the window ``--live`` chooses from its warm-up
(issue 90 item 3; ``zsseg_rt/stream/video_filter/live_window.py``), on the machine at hand.

Per clip, through the camera loop as ``zsseg camera CLIP --live --labels-out DIR`` runs it (``video.run_mode``), every
frame processed: the per-frame run at the bundle's official resize (the reference of the agreement), ``--live
--window-size S`` (the full window: what ``--live`` ran before on this path) and ``--live`` (the window chosen on the
first frame of the first clip: the warm-up is timed apart, before the rows, as the Engines' first calls are). The fps
are the loop's own end-to-end figures, the two ``--live`` rows taking turns (``ROUNDS``, the faster of each kept: a
shared machine's load falls on both); the agreement is with the per-frame labels (docs/video.md, "Metrics"), so it
counts the lower resolution and the propagation together.
"""

from __future__ import annotations

import os
import re
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List

SECTION = "## Live video on the exact CPU path: the window `--live` chooses (issue 90)"
ROUNDS = 2  # turns of the two --live rows (full window, chosen), the faster of each kept


def cpu_features() -> str:
    """The CPU's vector extensions that matter to ONNX Runtime's fp32 GEMMs: AVX-512 (with VNNI, BF16), else AVX2."""
    flags = set(re.search(r"flags\s*:(.*)", Path("/proc/cpuinfo").read_text()).group(1).split())
    if "avx512f" in flags:
        extra = [name for name, flag in (("VNNI", "avx512_vnni"), ("BF16", "avx512_bf16")) if flag in flags]
        return "AVX-512" + (f" ({', '.join(extra)})" if extra else "")
    return "AVX2" if "avx2" in flags else "neither AVX2 nor AVX-512"


def run_exact(bundle: str, args: Any) -> Dict[str, Any]:
    """The rows of every clip of ``args.clips`` (module docstring)."""
    from zsseg_rt import Engine
    from zsseg_rt.options import LIVE
    from zsseg_rt.stream import VideoSegmenter
    from zsseg_rt.stream.loop.live import live_options

    from ._video_clips import CLASSES, ClipMotion, clip_frames, measure, run_mode

    names = [name.strip() for name in args.clips.split(",") if name.strip()]
    begin, load_before = time.perf_counter(), os.getloadavg()[0]
    exact = dict(classes=CLASSES, backend="onnxruntime", precision="fp32", device="cpu", mode="fast", prepare=None)
    reference = Engine(bundle, **exact)
    size = int(reference.meta.image_size)
    full = Engine(bundle, preset=LIVE, window_size=size, **exact)
    chosen = Engine(bundle, preset=LIVE, **exact)
    work = Path(tempfile.mkdtemp(prefix="zsseg-bench-live-window-"))
    warm = clip_frames(names[0], 1, Path(tempfile.mkdtemp(dir=work)))[0]
    for engine in (reference, full):  # sessions and allocations (not timed)
        engine([warm])
    started = time.perf_counter()
    VideoSegmenter(chosen, **live_options())(warm)  # --live's warm-up: the window chosen on this frame
    warmup = time.perf_counter() - started
    choice = chosen.pipeline.window_choice
    clips = []
    for name in names:
        folder = work / name / "frames"
        folder.mkdir(parents=True)
        frames = clip_frames(name, args.frames, folder)
        motion = ClipMotion(frames)
        rows: List[Dict[str, Any]] = []
        out = work / name / "per_frame"
        rows.append(dict(mode="per frame", window=None, **run_mode(reference, folder, out, {})))
        rows[-1].update(measure(frames, out, None, motion))
        live = [(f"--live --window-size {size}", full), ("--live", chosen)]
        runs: Dict[str, List[Dict[str, Any]]] = {label: [] for label, _ in live}
        for turn in range(ROUNDS):  # the rows taking turns: a shared machine's load falls on both alike
            for label, engine in live:
                mine = work / name / f"{label.replace(' ', '_').replace('-', '')}_{turn}"
                runs[label].append(dict(run_mode(engine, folder, mine, live_options()), folder=mine))
        for label, engine in live:
            best = max(runs[label], key=lambda stats: stats["fps_end_to_end"])  # (the same labels every turn)
            fps = [round(stats["fps_end_to_end"], 3) for stats in runs[label]]
            window = int(engine.pipeline.window_size)
            rows.append(
                dict(mode=label, window=window, turns=fps, **best, **measure(frames, best["folder"], out, motion))
            )
        for row in rows:
            print(
                f"{name} {row['mode']}: {row['fps_end_to_end']:.3f} fps, agreement {row['agreement']:.2f} %", flush=True
            )
        clips.append({"name": name, "size": frames[0].shape[:2], "frames": len(frames), "rows": rows})
    return {
        "clips": clips,
        "choice": choice,
        "final": chosen.pipeline.window_choice,  # (after the loop's own rate was judged: LoopCheck)
        "warmup": warmup,
        "size": size,
        "load": (load_before, os.getloadavg()[0]),
        "seconds": time.perf_counter() - begin,
    }


def render_exact(result: Dict[str, Any], bundle_text: str) -> str:
    from ._video_clips import LIVE_FPS_TARGET
    from .common import machine_description

    choice, size = result["choice"], result["size"]
    measured = ", ".join(f"{window}: {fps:.2f} fps" for window, fps in choice.measured.items())
    lines = [
        SECTION,
        "",
        "Regenerate: `.venv/bin/python -m benchmarks video --exact-live --write` (`--clips vtest` for one clip; needs "
        f"Debian's `opencv-doc`). This run took {result['seconds']:.0f} s.",
        "",
        *[line for line in machine_description(0) if not line.startswith("- Threads")],
        f"- CPU vector extensions: {cpu_features()}; ONNX Runtime's own thread count (2 cores)",
        f"- Load average (1 min) before / after: {result['load'][0]:.1f} / {result['load'][1]:.1f} (other work shares "
        "this machine: the frame rates are loaded ones, and so is the warm-up that chose the window)",
        f"- Bundle: {bundle_text}, **RANDOM WEIGHTS**; every row on `--backend onnxruntime --precision fp32` on the "
        "CPU (the exact path: where no reduced precision passed the accuracy gate), `mode=fast`",
        f"- `--live`'s warm-up on the first frame of the first clip took {result['warmup']:.1f} s (each window's "
        f"graphs rewritten and opened, one untimed and two timed keyframes): {measured} expected at a keyframe "
        f"every {choice.every} frames; its line: `{choice.line}`",
    ]
    final = result.get("final")
    if final is not None and final.stepped_from is not None:
        lines.append(
            f"- Then the loop's own rate (`LoopCheck`, over the first frames after the warm-up, in the first turn of "
            f"the first clip, which also opened the smaller window's graphs): `{final.line}`"
        )
    lines += [
        "",
    ]
    for clip in result["clips"]:
        rows = clip["rows"]
        full = next(row for row in rows if row["window"] == size)
        lines += [
            f"### {clip['name']} ({clip['size'][1]}x{clip['size'][0]}, {clip['frames']} frames)",
            "",
            "| mode | window | encoder runs | fps end to end | each turn | x the full window | flow ms / frame "
            "| agreement with per frame % |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for row in rows:
            window = "the bundle's resize" if row["window"] is None else f"{row['window']}x{row['window']}"
            flow = row.get("flow_ms_mean")
            ratio = "-" if row["window"] is None else f"{row['fps_end_to_end'] / full['fps_end_to_end']:.2f}"
            lines.append(
                f"| {row['mode']} | {window} | {row['keyframes']} | {row['fps_end_to_end']:.3f} "
                f"| {' / '.join(f'{fps:.3f}' for fps in row.get('turns', [])) or '-'} | {ratio} "
                f"| {'-' if flow is None else f'{flow:.0f}'} | {row['agreement']:.2f} |"
            )
        live = rows[-1]
        met = "met" if live["fps_end_to_end"] >= LIVE_FPS_TARGET else "**missed**"
        lines += [
            "",
            f"- `--live` ({live['window']}x{live['window']}, the window it ran): {live['fps_end_to_end']:.2f} fps end to end "
            f"(target >= {LIVE_FPS_TARGET:.0f}): {met}; the full window {full['fps_end_to_end']:.2f} fps; labels agree "
            f"{live['agreement']:.2f} % with the per-frame labels ({full['agreement']:.2f} % at the full window): "
            "what the smaller window trades, with random weights (trained weights' smaller regions lose more)",
            "",
        ]
    return "\n".join(lines)
