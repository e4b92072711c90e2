"""``zsseg camera`` side by side for ``python -m benchmarks cpu_default`` (issue 54): the same clip through c783dbf's
default (``--backend onnxruntime``: ONNX Runtime fp32) and today's (``--backend auto`` with the records cached,
``--prepare none``: no background preparation), each run a fresh ``zsseg camera`` process, the rows taking turns
(old, new, old, new, ...) so that a load drift hits both; frames per second read from ``--stats-json``."""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ._video_clips import CLIPS, DATA
from .common import PHOTO

OLD_CAMERA = "c783dbf default: zsseg camera --backend onnxruntime"
NEW_CAMERA = "zsseg camera (backend auto, records cached, --prepare none)"
# the camera's INFO line of backend auto on a CPU (zsseg_rt.runtime.backends.cpu_auto.AutoChoice.line)
_AUTO_LINE = re.compile(r"backend='auto' runs (\S+) (\S+) on this CPU")


def pick_clip(args: Any, work: str) -> Tuple[str, str]:
    """``(path, what)``: ``--clip``, else opencv-doc's vtest.avi where installed (not with ``--quick``), else a clip
    of ``args.frames`` frames made from the VOC photo (shifted a few pixels a frame) in ``work``."""
    import cv2

    if args.clip:
        return args.clip, f"{args.clip} (--clip)"
    vtest = DATA / CLIPS["vtest"][0]
    if vtest.is_file() and not args.quick:
        return str(vtest), f"{vtest} (opencv-doc)"
    image = cv2.imread(str(PHOTO), cv2.IMREAD_COLOR)
    height, width = image.shape[0] // 2 * 2, image.shape[1] // 2 * 2  # even sides (a video encoder's 4:2:0)
    image = image[:height, :width]
    path = os.path.join(work, "photo_clip.avi")
    writer = cv2.VideoWriter(path, cv2.VideoWriter.fourcc(*"MJPG"), 10.0, (width, height))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {path} (Motion JPEG)")
    for index in range(args.frames):
        writer.write(cv2.warpAffine(image, _shift(2.0 * index), (width, height), borderMode=cv2.BORDER_REFLECT))
    writer.release()
    why = "quick run" if args.quick else f"{vtest} is missing (apt-get install opencv-doc)"
    return path, f"{args.frames} frames made from {PHOTO.name} (shifted 2 px a frame; {why}), {path}"


def _shift(dx: float) -> Any:
    import numpy as np

    return np.array([[1, 0, dx], [0, 1, 0]], dtype=np.float32)


def clip_size(path: str) -> Tuple[int, int, int]:
    """``(width, height, frames the container declares)`` of a video file."""
    import cv2

    capture = cv2.VideoCapture(path)
    try:
        return tuple(int(capture.get(p)) for p in (3, 4, 7))  # type: ignore[return-value]
    finally:
        capture.release()


def camera_once(
    bundle: str, clip: str, classes: Sequence[str], frames: int, work: str, tag: str, extra: Sequence[str]
) -> Dict[str, Any]:
    """One ``zsseg camera CLIP`` process: its frames, fps (the stream's own rate, the first frame excluded), elapsed
    time and the path it ran (the auto log line, else the stats' backend with its default precision fp32)."""
    stats = os.path.join(work, f"{tag}.json")
    argv = [sys.executable, "-m", "zsseg_rt.cli", "camera", clip, "--bundle", bundle, "--classes", ",".join(classes)]
    argv += ["--max-frames", str(frames), "--stats-json", stats, "-o", os.path.join(work, f"{tag}.mp4")]
    argv += ["--no-progress", "--overwrite", *extra]
    proc = subprocess.run(argv, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    summary = json.loads(Path(stats).read_text())
    source = summary["sources"][0]
    found = _AUTO_LINE.search(proc.stderr)
    auto_line = next((line for line in proc.stderr.splitlines() if "backend='auto' runs" in line), "")
    return {
        "path": f"{found.group(1)} {found.group(2)}" if found else f"{summary['backend']} fp32",
        "frames": int(source["processed"]),
        "fps": float(source["fps"]),
        "elapsed_s": float(summary["elapsed_s"]),
        "auto_line": auto_line.split(" INFO ", 1)[-1],
    }


def camera_rounds(
    bundle: str, clip: str, classes: Sequence[str], frames: int, rounds: int, work: str
) -> Dict[str, List[Dict[str, Any]]]:
    """``{row: [run, ...]}``, the rows taking turns: old, new, old, new, ... (``rounds`` each)."""
    rows = {OLD_CAMERA: ["--backend", "onnxruntime"], NEW_CAMERA: ["--prepare", "none"]}
    runs: Dict[str, List[Dict[str, Any]]] = {name: [] for name in rows}
    for index in range(rounds):
        for number, (name, extra) in enumerate(rows.items()):
            runs[name].append(camera_once(bundle, clip, classes, frames, work, f"camera{index}_{number}", extra))
    return runs


def median_fps(runs: List[Dict[str, Any]]) -> float:
    return statistics.median(run["fps"] for run in runs)


def camera_lines(runs: Dict[str, List[Dict[str, Any]]], clip_what: str, size: Tuple[int, int, int]) -> List[str]:
    """The section's camera part: the clip, the table (median fps of the rounds) and the auto line of the new row."""
    rounds = len(runs[OLD_CAMERA])
    old_fps = median_fps(runs[OLD_CAMERA])
    lines = [
        "",
        "### `zsseg camera` side by side (a fresh process each run)",
        "",
        f"- Clip: {clip_what} ({size[0]}x{size[1]}); `zsseg camera CLIP --bundle B --classes ... --max-frames N "
        "--stats-json F -o out.mp4`, c783dbf's default with `--backend onnxruntime`, today's with the default "
        "backend (auto) and `--prepare none` (the records cached by phase 2; nothing prepared in the background).",
        f"- {rounds} round{'s' if rounds > 1 else ''}, the rows taking turns ({', '.join(['old, new'] * rounds)}); "
        "fps: the stream's own rate from the stats JSON (`sources[0].fps`: the frames after the first over their "
        "span), median of the rounds; `zsseg camera` has no thread option (the runtime's own thread count).",
        "",
        "| row | path picked | frames | fps (median) | stream s (median) | x c783dbf default |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for name in (OLD_CAMERA, NEW_CAMERA):
        rows = runs[name]
        paths = sorted({run["path"] for run in rows})
        fps = median_fps(rows)
        elapsed = statistics.median(run["elapsed_s"] for run in rows)
        ratio = fps / old_fps if old_fps > 0 else float("nan")
        lines.append(
            f"| {name} | {', '.join(paths)} | {rows[0]['frames']} | {fps:.2f} | {elapsed:.1f} | {ratio:.2f}x |"
        )
    auto = next((run["auto_line"] for run in runs[NEW_CAMERA] if run["auto_line"]), "")
    lines.append("")
    lines.append(f"- The camera's auto log line: {auto or '(none)'}")
    return lines


def camera_speedup(runs: Dict[str, List[Dict[str, Any]]]) -> Optional[float]:
    old = median_fps(runs[OLD_CAMERA])
    return median_fps(runs[NEW_CAMERA]) / old if old > 0 else None
