"""The probe's parts for the video filter on the device (``checks/gpu_probe.py``): P10, the temporal kernels
(csrc/cuda/temporal.cu through ``ops.temporal_blend``, ``temporal_hold``, ``temporal_propagate``) against the CPU
kernels bit for bit, and P9, the device video filter (``VideoSegmenter`` on the torch CUDA Engine) and ``zsseg camera
--live`` on CUDA, timed on a clip.

P10 runs the must-run tests of these kernels and of the device filter on the GPU (``MUST_RUN``: pytest, one process,
their JUnit outcomes recorded) and, whatever they say, its own comparison of each op on the CPU and on the device
(``comparisons``): where a value differs, the first divergence (its index, both values with their bits, how many
differ, the inputs there), so that a lease which meets nvcc's FMA contraction (``python -m checks sass
--contraction`` checks the SASS before a lease) learns where. Nothing here judges: a divergence is a measurement.

Standard library only at import, like checks/_gpu_probe_parts.py (numpy, cv2 and zsseg_rt inside the parts).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from typing import Any, Callable, Dict, Optional

from checks._gpu_probe_parts import (
    REPO,
    _bundle_here,
    _compact,
    _cuda_model,
    _engine_module,
    _median,
    _needs_zsseg_cuda,
)

# The must-run tests of the ops stage that P10 runs again on its own (checks/gpu_stages.py: OPS_MUST_RUN), with the
# control of the device filter's equality
MUST_RUN = (
    "python_tests/ops/test_temporal_ops.py::test_cuda_matches_cpu",
    "python_tests/runtime/test_video_device_cuda.py",
)
PYTEST_CAP_S = 45
CLIP_FRAMES = 48  # the carried clip's (checks/gpu_artifacts.py clip) and the synthetic one's
CLASSES = "person,car,bicycle,road,building,tree,sky"
LIVE_CAP_S = 40


# ---- P10: the temporal kernels -------------------------------------------------------------------------------------
def _value(x: Any) -> Any:
    """A value as JSON: a float with its bits (``float.hex``: two values that print alike still differ there)."""
    if isinstance(x, float) or getattr(x, "dtype", None) is not None and x.dtype.kind == "f":
        return {"value": repr(float(x)), "hex": float(x).hex()}
    return x.item() if hasattr(x, "item") else x


def first_divergence(device, cpu, inputs: Optional[Dict[str, Any]] = None) -> Optional[dict]:
    """Where ``device`` differs from ``cpu`` (NaN equal to NaN, as ``assert_array_equal``), or None: how many
    values differ, the first index in C order, both values, the largest difference (in float32 ulps too), and each
    input's value there (an input of the same shape: the element; one whose last two axes match: those pixels)."""
    import numpy as np

    device, cpu = np.asarray(device), np.asarray(cpu)
    if device.shape != cpu.shape or device.dtype != cpu.dtype:
        return {"shape_or_dtype": [f"{device.shape} {device.dtype}", f"{cpu.shape} {cpu.dtype}"]}
    differ = device != cpu
    if device.dtype.kind == "f":
        differ &= ~(np.isnan(device) & np.isnan(cpu))
    if not differ.any():
        return None
    index = tuple(int(i) for i in np.unravel_index(int(np.flatnonzero(differ)[0]), device.shape))
    found: Dict[str, Any] = {"differing": int(differ.sum()), "of": int(device.size), "first_index": list(index),
                             "device": _value(device[index]), "cpu": _value(cpu[index])}  # fmt: skip
    if device.dtype.kind == "f":
        gap = np.abs(device.astype(np.float64) - cpu.astype(np.float64))[differ]
        found["max_abs_diff"] = float(np.nanmax(gap)) if np.isfinite(gap).any() else float("inf")
        if device.dtype == np.float32:
            bits = np.abs(device.view(np.int32).astype(np.int64) - cpu.view(np.int32).astype(np.int64))[differ]
            found["max_ulps"] = int(bits.max())
    there = {}
    for name, array in (inputs or {}).items():
        array = np.asarray(array)
        if array.shape == device.shape:
            there[name] = _value(array[index])
        elif array.ndim >= 2 and len(index) >= 2 and array.shape[-2:] == device.shape[-2:]:
            there[name] = [_value(v) for v in np.ravel(array[(Ellipsis, *index[-2:])])][:16]
    if there:
        found["inputs_there"] = there
    return found


def cases(scale: int = 1) -> Dict[str, dict]:
    """The ops' arguments: the must-run test's sizes (``scale`` 1: 5 classes, an 18 x 24 state, a 72 x 96 frame, with
    exact ties) and larger ones (more values: more chances for a rounding to differ)."""
    import numpy as np

    from zsseg_rt import ops
    from zsseg_rt.stream.temporal import _fill_maps

    c, h, w = 5 * scale, 18 * scale, 24 * scale
    fh, fw = 4 * h, 4 * w
    rng = np.random.default_rng(6 + scale)
    current = rng.uniform(0, 1, (c, h, w)).astype(np.float32)
    previous = (current + rng.normal(0, 0.05, (c, h, w))).astype(np.float32)
    current[1] = current[0]  # exact ties: the first maximum wins, on both sides
    current[3, :4] = current[2, :4]
    jitter = np.where(rng.uniform(size=(h, w)) < 0.7, rng.uniform(0, 0.01, (h, w)), 0).astype(np.float32)
    doubt = np.clip(rng.uniform(-0.3, 1.3, (h, w)), 0, 1).astype(np.float32)
    valid = (rng.uniform(size=(h, w)) < 0.8).astype(np.uint8)
    state = rng.uniform(0, 1, (c, h, w)).astype(np.float32)
    labels, scores = (a[0] for a in ops.segment(state[None], (fh, fw), None, sigmoid=False))
    anchor = np.where(rng.uniform(size=(fh, fw)) < 0.5, labels, rng.integers(0, c + 2, (fh, fw))).astype(np.int32)
    flow = rng.uniform(-3, 3, (fh, fw, 2)).astype(np.float32)
    flow[::5] = np.round(flow[::5] * 2) / 2  # half pixels: the nearest rule's rounding
    frame_valid = (rng.uniform(size=(fh, fw)) < 0.9).astype(np.uint8)
    noise = rng.uniform(0, 0.4, (h, w)).astype(np.float32)
    small = np.ones((fh // 2, fw // 2), bool)
    small[4 : 4 + 4 * scale, 10 : 10 + 5 * scale] = False
    maps = _fill_maps(small, (fh, fw))
    fill = tuple(maps[k] for k in ("fill", "rows_down", "cols_down", "rows_up", "cols_up"))
    return {
        "blend": {"current": current, "previous": previous, "jitter": jitter, "doubt": doubt, "valid": valid},
        "hold": {"labels": labels, "scores": scores, "state": state, "noise": noise, "anchor": anchor, "flow": flow,
                 "valid": frame_valid},
        "propagate": {"anchor": anchor, "scores": scores, "flow": flow, "fill": fill},
    }  # fmt: skip


def comparisons(put: Callable[[Any], Any], get: Callable[[Any], Any], scales=(1, 4)) -> Dict[str, dict]:
    """Each op on the CPU and with its arrays made by ``put`` (on a GPU: device copies), read back by ``get``: per op
    and case, ``equal`` and, where not, each output's first divergence."""
    import numpy as np

    from zsseg_rt import ops

    found: Dict[str, dict] = {}
    for scale in scales:
        case = cases(scale)
        b = case["blend"]
        args = (b["current"], b["previous"], b["jitter"], b["doubt"], b["valid"])
        cpu = ops.temporal_blend(*args, blend=0.2, hold_doubt=0.5)
        device = ops.temporal_blend(*(put(a) for a in args), blend=0.2, hold_doubt=0.5)
        names = ("state", "jitter", "noise", "measured")
        found[f"blend_x{scale}"] = _outcome(names, [get(d) for d in device], cpu, b)
        h = case["hold"]
        host = [np.array(h["labels"]), np.array(h["scores"])]
        on_device = [put(h["labels"]), put(h["scores"])]
        rest = (h["state"], h["noise"], h["anchor"], h["flow"], h["valid"])
        ops.temporal_hold(*on_device, *(put(a) for a in rest), 1.5, measured=put(np.ones(1, np.int32)))
        ops.temporal_hold(*host, *rest, 1.5)
        found[f"hold_x{scale}"] = _outcome(("labels", "scores"), [get(d) for d in on_device], host, h)
        p = case["propagate"]
        cpu = ops.temporal_propagate(p["anchor"], p["scores"], p["flow"], p["fill"])
        device = ops.temporal_propagate(put(p["anchor"]), put(p["scores"]), put(p["flow"]), tuple(map(put, p["fill"])))
        found[f"propagate_x{scale}"] = _outcome(("labels", "scores"), [get(d) for d in device], cpu, p)
    return found


def _outcome(names, device, cpu, inputs) -> dict:
    divergences = {n: first_divergence(d, c, inputs) for n, d, c in zip(names, device, cpu)}
    divergences = {n: d for n, d in divergences.items() if d is not None}
    return {"equal": not divergences, **({"divergences": divergences} if divergences else {})}


def junit_outcomes(xml: Path) -> Dict[str, str]:
    """``file::test[params]`` -> passed, failed, skipped (with the reason) from a JUnit report."""
    found = {}
    for case in ElementTree.parse(xml).getroot().iter("testcase"):
        name = f"{case.get('classname', '').replace('.', '/')}.py::{case.get('name')}"
        child = next((c for c in case if c.tag in ("failure", "error", "skipped")), None)
        if child is None:
            found[name] = "passed"
        else:
            message = (child.get("message") or "").strip().splitlines()
            found[name] = ("skipped" if child.tag == "skipped" else "failed") + (
                f": {message[0][:300]}" if message else ""
            )
    return found


def part_temporal_kernels(ctx) -> dict:
    """P10: the must-run tests of the temporal kernels and the device filter on this GPU, then each op's first
    divergence from the CPU kernel (if any)."""
    import numpy as np

    _needs_zsseg_cuda()
    from zsseg_rt import ops

    xml = ctx.work / "p10_junit.xml"
    xml.unlink(missing_ok=True)
    command = [sys.executable, "-m", "pytest", *(str(REPO / t) for t in MUST_RUN), "-q", "-p", "no:cacheprovider",
               "--rootdir", str(REPO), "-c", str(REPO / "pyproject.toml"), "-rfEs", f"--junitxml={xml}"]  # fmt: skip
    start = time.perf_counter()
    try:
        done = subprocess.run(command, cwd=ctx.work, capture_output=True, text=True,
                              timeout=max(min(PYTEST_CAP_S, ctx.left() - 10), 1))  # fmt: skip
        code, tail = done.returncode, (done.stdout + done.stderr).splitlines()[-25:]
    except subprocess.TimeoutExpired:
        code, tail = "timeout", []
    tests = junit_outcomes(xml) if xml.is_file() else {}
    ctx.record("must_run_tests", {"exit_code": code, "seconds": round(time.perf_counter() - start, 2),
                                  "outcomes": tests, **({"output_tail": tail} if code != 0 else {})})  # fmt: skip
    testing = ops.native_module()._testing
    compared = comparisons(lambda a: testing.DeviceMemory(np.ascontiguousarray(a)), lambda d: np.asarray(d.numpy()))
    ctx.record("cpu_vs_device", compared)
    return {"all_equal": all(c["equal"] for c in compared.values()),
            "tests_passed": bool(tests) and all(o == "passed" for o in tests.values())}  # fmt: skip


# ---- P9: the device video filter and --live on CUDA ----------------------------------------------------------------
def write_synthetic_clip(path: Path, frames: int = CLIP_FRAMES, size=(640, 480)) -> Path:
    """A clip of ``frames`` frames (MJPG AVI): a textured background panning and two squares moving across it."""
    import cv2
    import numpy as np

    rng = np.random.default_rng(0)
    width, height = size
    background = cv2.GaussianBlur(rng.integers(0, 256, (height, width + 4 * frames, 3), dtype=np.uint8), (0, 0), 3)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (width, height))
    try:
        for k in range(frames):
            frame = np.ascontiguousarray(background[:, 4 * k : 4 * k + width])
            cv2.rectangle(frame, (40 + 6 * k, 100), (160 + 6 * k, 220), (30, 60, 220), -1)
            cv2.rectangle(frame, (width - 200 - 3 * k, 260), (width - 80 - 3 * k, 400), (200, 200, 40), -1)
            writer.write(frame)
    finally:
        writer.release()
    return path


def clip_path(ctx) -> Path:
    """The carried clip (gpu_artifacts/clips: the first frames of OpenCV's vtest.avi), else a synthetic one."""
    carried = getattr(ctx, "clip", None)
    if carried and Path(carried).is_file():
        return Path(carried)
    return write_synthetic_clip(ctx.work / "synthetic_clip.avi")


def _frames(path: Path, count: int) -> list:
    import cv2

    capture = cv2.VideoCapture(str(path))
    frames = []
    while len(frames) < count:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    return frames


def part_video(ctx) -> dict:
    """P9: ``VideoSegmenter`` on the torch CUDA Engine with the filter on the device (``device=True``; a refusal is
    recorded with its reason), --stabilize and keyframes, against the same filter on the host; then ``zsseg camera
    --live --device cuda`` on the clip, end to end (its --stats-json)."""
    import numpy as np

    _needs_zsseg_cuda()
    from zsseg_rt.stream.video import VideoSegmenter

    ge = _engine_module()
    bundle = _bundle_here(ctx)
    clip = clip_path(ctx)
    ctx.record("bundle", Path(bundle).name)
    about = clip.with_name("live.json")  # what the artefacts say it is (checks/gpu_artifacts.py clip)
    ctx.record("clip", {"path": clip.name, "carried": clip.parent != ctx.work,
                        **(json.loads(about.read_text()) if about.is_file() else {})})  # fmt: skip
    model, _ = _cuda_model(bundle)
    frames = _frames(clip, 24)
    engine = ge.torch_engine(bundle, model, "fp16")
    engine.set_classes(CLASSES.split(","))
    for name, options in (("stabilize", {"stabilize": True}), ("keyframe_every_4", {"keyframe_every": 4})):
        runs: Dict[bool, dict] = {}
        for where in (True, False):
            try:
                segmenter = VideoSegmenter(engine, device=where, **options)
            except ValueError as refused:  # device=True: the filter cannot run on this Engine's device (the reason)
                runs[where] = {"refused": str(refused)[:500], "labels": []}
                continue
            with segmenter:
                labels, times = [], []
                for frame in frames:
                    start = time.perf_counter()
                    labels.append(segmenter(frame).labels)
                    times.append(time.perf_counter() - start)
                runs[where] = {"on_device": segmenter.on_device, "labels": labels, "first_ms": 1e3 * times[0],
                               "median_ms": 1e3 * _median(times[1:]), "stats": _compact(segmenter.stats())}  # fmt: skip
        device, host = runs[True], runs[False]
        agree = [float((a == b).mean()) for a, b in zip(device.pop("labels"), host.pop("labels"))]
        ctx.record(name, {"frames": len(frames), "device": device, "host": host,
                          **({"labels_equal_host_min": min(agree), "labels_equal_host_mean": float(np.mean(agree))}
                             if agree else {})})  # fmt: skip
    del engine, model
    return {"live": _live(ctx, bundle, clip)}


def _live(ctx, bundle: str, clip: Path) -> dict:
    """``zsseg camera CLIP --live --backend torch --device cuda`` (every frame of the file: nothing dropped; the
    probe's --device, cuda on the lease)."""
    out = ctx.work / "live"
    stats = out / "stats.json"
    command = [sys.executable, "-m", "zsseg_rt.cli", "camera", str(clip), "--bundle", bundle, "--classes", CLASSES,
               "--backend", "torch", "--device", ctx.device, "--live", "--labels-out", str(out / "labels"),
               "--stats-json", str(stats), "--no-progress", "--overwrite"]  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    stats.unlink(missing_ok=True)
    start = time.perf_counter()
    try:
        done = subprocess.run(command, cwd=ctx.work, capture_output=True, text=True,
                              timeout=max(min(LIVE_CAP_S, ctx.left() - 3), 1))  # fmt: skip
        code, tail = done.returncode, (done.stdout + done.stderr).splitlines()[-12:]
    except subprocess.TimeoutExpired:
        code, tail = "timeout", []
    found: Dict[str, Any] = {"exit_code": code, "seconds": round(time.perf_counter() - start, 2), "output_tail": tail}
    if stats.is_file():
        summary = json.loads(stats.read_text())
        scalars = lambda d: {k: v for k, v in d.items() if isinstance(v, (int, float, str, bool))}  # noqa: E731
        found["stats"] = scalars(summary)
        found["source"] = scalars((summary.get("sources") or [{}])[0])
    return found
