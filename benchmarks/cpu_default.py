#!/usr/bin/env python
"""What a new user gets on a CPU (issue 54): ``Engine(bundle)`` (backend "auto") against c783dbf's default, side by
side in one process on the VOC photo, the rows taking turns frame by frame (ratios compare like with like on a
loaded machine). c783dbf's ``auto`` ran ONNX Runtime fp32 on a CPU: that row is ``Engine(bundle,
backend="onnxruntime")``, the same graphs and session options.

Phases, in one run:

1. cold: ``Engine(bundle)`` with no record (what auto picks then, and its start-up time);
2. ``zsseg build-engine BUNDLE --backend auto`` (``prepare.auto.prepare_auto``): every reduced precision
   the CPU rows can run here quantised, gated and measured; each row's gate summary and measured speed;
3. warm: ``Engine(bundle)`` again (the record cached: what auto picks now, the log line, start-up time) and the
   frames, interleaved with the c783dbf default, labels compared with it;
4. resident memory (peak RSS) and time to the first frame of each default in a fresh process of its own, cold
   (no record: ``Engine(bundle)`` runs ONNX Runtime fp32) and warm (records cached), and of every (backend,
   precision) this CPU can run (fp32 of every CPU row installed, each reduced precision whose record passed);
5. ``zsseg camera`` side by side on a clip (``benchmarks/_cpu_default_camera.py``): ``--backend onnxruntime``
   against the default (auto, records cached, ``--prepare none``), a fresh process each, the rows taking turns;
6. the targets: ``Engine(bundle)`` and ``zsseg camera`` at least 2x c783dbf's default.

    .venv/bin/python -m benchmarks cpu_default --write        # exports a random ViT-B/16 bundle first
    .venv/bin/python -m benchmarks cpu_default --bundle B
    .venv/bin/python -m benchmarks cpu_default --quick        # tiny model: that the program runs, no numbers
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from ._cpu_default_camera import camera_lines, camera_rounds, camera_speedup, clip_size, pick_clip
from .common import PHOTO, section_head, show_section
from .precision import interleaved

SECTION = "## CPU default: `Engine(bundle)` (backend auto) vs c783dbf's default (ONNX Runtime fp32)"
OLD_DEFAULT = "c783dbf default: Engine(bundle, backend='onnxruntime') fp32"
NEW_DEFAULT = "Engine(bundle) (backend auto)"
CLASSES = ["background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow"]
CLASSES += ["table", "dog", "horse", "motorbike", "person", "plant", "sheep", "sofa", "train", "tv"]
TARGET = 2.0  # issue 54: Engine(bundle) and zsseg camera at least 2x c783dbf's default on this CPU
USABLE = ("passed", "accepted")  # a reduced precision's record that opens (prepare_auto's statuses)

# one fresh process: start-up and the first frame, then peak RSS (what an edge CPU has to hold): VmHWM of the process's
# own memory (getrusage's ru_maxrss would carry the parent's peak over the exec: every row the benchmark's own 1.6 GB)
_FIRST_FRAME = """
import json, sys, time
import cv2
start = time.perf_counter()
from zsseg_rt.runtime import Engine
from zsseg_rt.system_info import peak_rss_bytes
kwargs = json.loads(sys.argv[3])
engine = Engine(sys.argv[1], classes=json.loads(sys.argv[4]), verify=False, **kwargs)
built = time.perf_counter()
engine(cv2.imread(sys.argv[2], cv2.IMREAD_COLOR))
done = time.perf_counter()
choice = getattr(engine, "auto_choice", None)
print(json.dumps({"path": f"{engine.backend.name} {engine.backend.precision}", "start_s": built - start,
                  "why": choice.line() if choice else "",
                  "first_frame_s": done - start, "peak_rss_mb": peak_rss_bytes() / 2**20}))
"""
# every Engine here: no background preparation (Engine's prepare default may start one where no record is: it would
# race phase 2's records and load the machine under the timings); warm, nothing is left to prepare anyway
NO_PREPARE: Dict[str, Any] = {"prepare": None}


def first_frame(bundle: str, threads: int, **kwargs) -> Dict[str, Any]:
    """Start-up, time to the first frame and peak RSS of an Engine in a fresh process (imports included)."""
    options = {"threads": threads, **NO_PREPARE, **kwargs}
    argv = [sys.executable, "-c", _FIRST_FRAME, bundle, str(PHOTO), json.dumps(options)]
    argv.append(json.dumps(CLASSES))
    out = subprocess.run(argv, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"Engine({bundle!r}, **{kwargs}) in a fresh process failed: {_last_line(out.stderr)}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "(no message)"


def paths_here(prepared: List[Dict[str, Any]]) -> List[Tuple[str, str, str]]:
    """``(backend, precision, why skipped or "")`` of every CPU path this machine can be asked for: fp32 of every
    CPU row with gated choices (ONNX Runtime, OpenVINO; a row not installed is skipped with prepare_auto's note),
    then each reduced precision prepare_auto looked at (skipped unless its record passed the gate)."""
    from zsseg_rt.runtime.backends.table import REFERENCE_BACKEND, backend_rows

    rows = [row.name for row in backend_rows() if row.gated_choices and "cpu" in row.devices]
    rows = [REFERENCE_BACKEND] + [name for name in rows if name != REFERENCE_BACKEND]
    missing = {row["backend"]: row["reason"] for row in prepared if row["status"] == "cannot" and not row["precision"]}
    found = [(name, "fp32", missing.get(name, "")) for name in rows]
    for row in prepared:
        if not row["precision"] or row["precision"] == "fp32":
            continue
        skip = "" if row["status"] in USABLE else f"{row['status']}: {row['reason'] or 'no reason recorded'}"
        found.append((row["backend"], row["precision"], missing.get(row["backend"], skip)))
    return found


def memory_lines(args, prepared: List[Dict[str, Any]], old_first: Dict[str, Any]) -> List[str]:
    """Item 4: a fresh process per (backend, precision) this CPU can run: Engine built, first frame, peak RSS."""
    from zsseg_rt.runtime.backends.table import REFERENCE_BACKEND

    lines = [
        "",
        "### Memory and start-up per backend and precision (a fresh process each)",
        "",
        "Each: imports, `Engine(bundle, backend=B, precision=P)`, the first frame of the photo; peak RSS of the "
        "process (VmHWM); ONNX Runtime fp32 is the c783dbf default's process above. fp32 of every CPU row installed, "
        "then each reduced precision phase 2 looked at (run where its record passed the gate).",
        "",
        "| backend | precision | Engine built (s) | first frame (s) | peak RSS (MiB) |",
        "|---|---|---:|---:|---:|",
    ]
    for backend, precision, skip in paths_here(prepared):
        row: Dict[str, Any] = {}
        if not skip and (backend, precision) == (REFERENCE_BACKEND, "fp32"):
            row = old_first
        elif not skip:
            try:
                row = first_frame(args.bundle, args.threads, backend=backend, precision=precision)
            except RuntimeError as exc:
                skip = f"failed: {exc}"
        if skip:
            lines.append(f"| {backend} | {precision} | skipped: {skip.replace('|', '/')} | | |")
        else:
            lines.append(
                f"| {backend} | {precision} | {row['start_s']:.1f} | {row['first_frame_s']:.1f} | "
                f"{row['peak_rss_mb']:.0f} |"
            )
    return lines


def _engine(bundle: str, threads: int, log: List[str], **kwargs):
    from zsseg_rt.runtime import Engine

    handler = _ListHandler(log)
    logger = logging.getLogger("zsseg_rt")
    logger.addHandler(handler)
    before = logger.level
    logger.setLevel(logging.INFO)
    try:
        start = time.perf_counter()
        engine = Engine(bundle, classes=CLASSES, threads=threads, verify=False, **NO_PREPARE, **kwargs)
        return engine, time.perf_counter() - start
    finally:
        logger.removeHandler(handler)
        logger.setLevel(before)


class _ListHandler(logging.Handler):
    def __init__(self, into: List[str]):
        super().__init__(logging.INFO)
        self.into = into

    def emit(self, record: logging.LogRecord) -> None:
        if "backend='auto'" in record.getMessage():
            self.into.append(record.getMessage())


def run(args) -> List[str]:
    import cv2

    from zsseg_rt.prepare.auto import prepare_auto

    image = cv2.imread(str(PHOTO), cv2.IMREAD_COLOR)
    cold_log: List[str] = []
    cold, cold_s = _engine(args.bundle, args.threads, cold_log)
    cold_path = f"{cold.backend.name} {cold.backend.precision}"
    del cold
    cold_first = first_frame(args.bundle, args.threads)
    start = time.perf_counter()
    prepared = prepare_auto(args.bundle, threads=args.threads, keep_all=True)  # every path: each is run
    prepare_s = time.perf_counter() - start
    warm_log: List[str] = []
    new, warm_s = _engine(args.bundle, args.threads, warm_log)
    old, old_s = _engine(args.bundle, args.threads, [], backend="onnxruntime")
    runs = {OLD_DEFAULT: lambda: np.asarray(old(image).labels), NEW_DEFAULT: lambda: np.asarray(new(image).labels)}
    frames = interleaved(runs, args.iters, args.warmup)
    paths = {name: f"{e.backend.name} {e.backend.precision}" for name, e in ((OLD_DEFAULT, old), (NEW_DEFAULT, new))}
    choice = new.auto_choice
    del runs
    new = old = None  # their memory back before the fresh processes
    warm_first = first_frame(args.bundle, args.threads)
    old_first = first_frame(args.bundle, args.threads, backend="onnxruntime")
    clip, clip_what = pick_clip(args, args.work)
    camera = camera_rounds(args.bundle, clip, CLASSES, args.frames, args.rounds, args.work)
    lines = section_head(SECTION, "cpu_default --write", args.threads)
    lines += [
        f"- Bundle: {args.what}; photo {PHOTO.name} ({image.shape[1]}x{image.shape[0]}), {len(CLASSES)} VOC classes; "
        f"load average at the end {', '.join(f'{v:.1f}' for v in os.getloadavg())} (a shared machine: ratios, "
        "not absolute times).",
        "- Every Engine here is built with `prepare=None`: no background preparation (the default may start one "
        "where no record is; it would race phase 2 and load the machine under the timings; warm, nothing is left "
        "to prepare).",
        f"- Cold (no record): `Engine(bundle)` ran **{cold_path}** ({cold_s:.1f} s to build); log: "
        f"{' | '.join(cold_log) or '(none)'}",
        f"- `zsseg build-engine BUNDLE --backend auto` took {prepare_s:.0f} s:",
    ]
    for row in prepared:
        speed = f", image encoder {row['speedup']:.2f}x ONNX Runtime fp32's" if row["speedup"] is not None else ""
        lines.append(f"  - {row['backend']} {row['precision']}: {row['status']}{speed} {row['reason']}".rstrip())
    lines += [
        f"- Warm (records cached): `Engine(bundle)` runs **{choice.backend} {choice.precision}** "
        f"({warm_s:.1f} s to build); its log line: {' | '.join(warm_log)}",
        f"- The gate's record of the path auto picked ({choice.backend} {choice.precision}): "
        f"{choice.gate or 'none (the exact fp32 reference is not gated)'}",
        "",
        f"| row | path | ms/photo (median of {args.iters}, rows taking turns) | speed vs c783dbf default | "
        "labels = c783dbf default's |",
        "|---|---|---:|---:|---:|",
    ]
    old_ms, old_labels = frames[OLD_DEFAULT]
    for name in (OLD_DEFAULT, NEW_DEFAULT):
        ms, labels = frames[name]
        agree = 100 * float((labels == old_labels).mean())
        lines.append(f"| {name} | {paths[name]} | {ms:.0f} | {old_ms / ms:.2f}x | {agree:.2f} % |")
    lines += [
        "",
        "### Start-up of the defaults (a fresh process each)",
        "",
        "Imports, Engine, first frame of the photo; peak RSS of the process (VmHWM). Cold: no record yet; warm: the "
        "records of phase 2 cached.",
        "",
        "| default | path | Engine built (s) | first frame (s) | peak RSS (MiB) |",
        "|---|---|---:|---:|---:|",
    ]
    for name, row in (
        ("c783dbf default", old_first),
        ("Engine(bundle), cold (no record)", cold_first),
        ("Engine(bundle), warm (records cached)", warm_first),
    ):
        lines.append(
            f"| {name} | {row['path']} | {row['start_s']:.1f} | {row['first_frame_s']:.1f} | {row['peak_rss_mb']:.0f} |"
        )
    # the whole auto line of each fresh process: every path looked at with its status (a record it saw as missing or
    # of another setup) and why a candidate did not open or a row did not import
    lines += [
        f"- {name} fresh process: {row['why']}"
        for name, row in (("warm", warm_first), ("cold", cold_first))
        if row["why"]
    ]
    lines += memory_lines(args, prepared, old_first)
    lines += camera_lines(camera, clip_what, clip_size(clip))
    photo = old_ms / frames[NEW_DEFAULT][0]
    lines += ["", "### Targets", "", target_line("`Engine(bundle)`", "the photo", photo)]
    lines.append(target_line("`zsseg camera`", "the clip", camera_speedup(camera)))
    return lines


def target_line(what: str, where: str, ratio: Optional[float]) -> str:
    if ratio is None:
        return f"- {what} >= {TARGET:.0f}x c783dbf default on {where}: not measured (no frame rate) **MISS**"
    verdict = "**PASS**" if ratio >= TARGET else "**MISS**"
    return f"- {what} >= {TARGET:.0f}x c783dbf default on {where}: {ratio:.2f}x {verdict}"


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", default=None, help="a ViT-B/16 bundle (default: export one, random weights)")
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--clip", help="the camera rows' clip (default: opencv-doc's vtest.avi, else one made from the photo)"
    )
    parser.add_argument("--frames", type=int, default=None, help="frames of each camera run (default 6; --quick 2)")
    parser.add_argument("--rounds", type=int, default=2, help="camera runs of each row, taking turns")
    parser.add_argument("--quick", action="store_true", help="tiny model: that the program runs")
    parser.add_argument("--write", action="store_true", help="update the section in BENCHMARKS.md")
    args = parser.parse_args(argv)
    if args.quick and args.write:
        parser.error("--quick measures nothing worth writing")
    if args.quick:
        args.iters, args.warmup = 1, 0
    if args.frames is None:
        args.frames = 2 if args.quick else 6
    if args.frames < 2 or args.rounds < 1:
        parser.error("--frames >= 2 (the camera's fps needs two frames) and --rounds >= 1")
    with tempfile.TemporaryDirectory() as tmp:
        args.work = tmp
        if args.bundle:  # records are written beside it: a copy keeps the user's bundle as it was
            args.what = f"{args.bundle} (a copy)"
            args.bundle = shutil.copytree(args.bundle, os.path.join(tmp, "bundle"))
        else:
            import torch

            from zsseg_rt.export.onnx_export import export_bundle
            from zsseg_rt.models import create_model

            torch.manual_seed(0)
            name = "zegclip_tiny_test" if args.quick else "zegclip_vitb16_voc_inductive"
            args.what = f"{name}, random weights (seed 0), exported by the benchmark"
            model = create_model(name).eval()
            args.bundle = export_bundle(model, os.path.join(tmp, "bundle"), max_classes=256, overwrite=True)
            del model
        show_section(SECTION, "\n".join(run(args)), args.write)


if __name__ == "__main__":
    main()
