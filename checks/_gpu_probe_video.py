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
import os
import subprocess
import sys
import time
import traceback
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from checks._gpu_probe_parts import (
    REPO,
    _bundle,
    _compact,
    _cuda_model,
    _engine_module,
    _median,
    _needs_zsseg_cuda,
    _tiny_here,
)
from checks._harness import PYTEST_ARGS

# The must-run tests of the ops stage that P10 runs again on its own (checks/gpu_stages.py: OPS_MUST_RUN), with the
# control of the device filter's equality
MUST_RUN = (
    "python_tests/ops/test_temporal_ops.py::test_cuda_matches_cpu",
    "python_tests/runtime/test_video_device_cuda.py",
)
PYTEST_CAP_S = 45
# python_tests/conftest.py's tiny_bundle fixture copies the bundle this names instead of exporting its own: P10's
# pytest run takes P2's (the probe runs P2 first), so a lease exports the tiny bundle once (the H200 run of b235fde
# exported it twice: 27.9 s in P2, again in P10's pytest)
TINY_BUNDLE_ENV = "ZSSEG_TEST_TINY_BUNDLE"
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
    from zsseg_rt.stream.video_filter.temporal import _fill_maps

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


def _device_io() -> Tuple[Callable[[Any], Any], Callable[[Any], Any]]:
    """(put, get): an array to a device copy (the native module's DeviceMemory) and back."""
    import numpy as np

    from zsseg_rt import ops

    testing = ops.native_module()._testing
    return lambda a: testing.DeviceMemory(np.ascontiguousarray(a)), lambda d: np.asarray(d.numpy())


def tiny_bundle_for_tests(ctx) -> Tuple[str, bool]:
    """(the tiny bundle P10's pytest run copies, whether it was there): P2's in ``ctx.work`` (the probe runs P2
    first), else exported now (P10 run alone)."""
    ge = _engine_module()
    there = (ctx.work / f"{ge.TINY_CONFIG}_bundle" / "meta.json").is_file()
    return _bundle(ctx, "tiny"), there


def part_temporal_kernels(ctx) -> dict:
    """P10: the must-run tests of the temporal kernels and the device filter on this GPU (their tiny bundle P2's:
    ``TINY_BUNDLE_ENV``), then each op's first divergence from the CPU kernel (if any)."""
    _needs_zsseg_cuda()
    bundle, reused = tiny_bundle_for_tests(ctx)
    ctx.record("tiny_bundle", {"path": bundle, "reused": reused})
    xml = ctx.work / "p10_junit.xml"
    xml.unlink(missing_ok=True)
    # the stages' harness options (checks/_harness.PYTEST_ARGS): the image's autoloading plugins stay out here too
    command = [sys.executable, "-m", "pytest", *PYTEST_ARGS, *(str(REPO / t) for t in MUST_RUN), "-q",
               "-p", "no:cacheprovider", "--rootdir", str(REPO), "-c", str(REPO / "pyproject.toml"), "-rfEs",
               f"--junitxml={xml}"]  # fmt: skip
    start = time.perf_counter()
    try:
        done = subprocess.run(command, cwd=ctx.work, capture_output=True, text=True,
                              timeout=max(min(PYTEST_CAP_S, ctx.left() - 10), 1),
                              env=dict(os.environ, **{TINY_BUNDLE_ENV: bundle}))  # fmt: skip
        code, tail = done.returncode, (done.stdout + done.stderr).splitlines()[-25:]
    except subprocess.TimeoutExpired:
        code, tail = "timeout", []
    tests = junit_outcomes(xml) if xml.is_file() else {}
    ctx.record("must_run_tests", {"exit_code": code, "seconds": round(time.perf_counter() - start, 2),
                                  "outcomes": tests, **({"output_tail": tail} if code != 0 else {})})  # fmt: skip
    compared = comparisons(*_device_io())
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


# VideoSegmenter's modes P9 compares, the filter on the device against the host's
MODES: Tuple[Tuple[str, Dict[str, Any]], ...] = (("stabilize", {"stabilize": True}),
                                                 ("keyframe_every_4", {"keyframe_every": 4}))  # fmt: skip


def _error(exc: BaseException) -> dict:
    """An exception as a record: its type, message and the last lines of its traceback (where it was raised)."""
    lines = "".join(traceback.format_exception(exc)).strip().splitlines()
    return {"type": type(exc).__name__, "message": str(exc)[:500], "traceback_tail": lines[-6:]}


def _says(segmenter) -> dict:
    """The segmenter's ``on_device`` and ``stats()`` (compact), each "unavailable: ..." where it cannot say."""
    found = {}
    for key, value in (("on_device", lambda: segmenter.on_device), ("stats", lambda: _compact(segmenter.stats()))):
        try:
            found[key] = value()
        except Exception as exc:  # noqa: BLE001 - after an error the segmenter may not say
            found[key] = f"unavailable: {type(exc).__name__}: {str(exc)[:200]}"
    return found


def _one_run(make: Callable[[bool, dict], Any], where: bool, options: dict, frames: Sequence[Any]) -> dict:
    """One segmenter (``make(device, options)``) over ``frames``: its labels (for the agreement), first and median
    ms, stats; a refusal (``ValueError`` from ``make``: the filter cannot run on this device) or an error at frame k
    (``failed_at_frame``, ``error``) recorded with what it made before, never raised."""
    try:
        segmenter = make(where, options)
    except ValueError as refused:  # device=True: the filter cannot run on this Engine's device (the reason)
        return {"refused": str(refused)[:500], "labels": []}
    except Exception as exc:  # noqa: BLE001 - recorded; the other side and the other modes still run
        return {"error": _error(exc), "failed_at_frame": None, "labels": []}
    labels: List[Any] = []
    times: List[float] = []
    found: Dict[str, Any] = {}
    try:
        with segmenter:
            try:
                for frame in frames:
                    start = time.perf_counter()
                    labels.append(segmenter(frame).labels)
                    times.append(time.perf_counter() - start)
            finally:  # what it says before it closes, after an error too
                found.update(_says(segmenter))
    except Exception as exc:  # noqa: BLE001 - the frame's error (or the close's), with the frames before it kept
        found["error"] = _error(exc)
        found["failed_at_frame" if len(labels) < len(frames) else "failed_at_close"] = len(labels)
    found["frames_done"] = len(labels)
    if times:
        found["first_ms"] = 1e3 * times[0]
        if len(times) > 1:
            found["median_ms"] = 1e3 * _median(times[1:])
    return {**found, "labels": labels}


def compare_modes(make: Callable[[bool, dict], Any], frames: Sequence[Any], modes=MODES,
                  record: Optional[Callable[[str, Any], None]] = None) -> Dict[str, dict]:  # fmt: skip
    """Each mode with the filter on the device and on the host (``make(device, options)``: a VideoSegmenter), one
    after the other whatever the other did (a refusal, an error at some frame: recorded by ``_one_run``), and their
    labels' agreement over the frames both made; ``record(name, value)`` as each mode ends."""
    import numpy as np

    found: Dict[str, dict] = {}
    for name, options in modes:
        device, host = (_one_run(make, where, options, frames) for where in (True, False))
        agree = [float((a == b).mean()) for a, b in zip(device.pop("labels"), host.pop("labels"))]
        found[name] = {"frames": len(frames), "device": device, "host": host,
                       **({"labels_equal_host_min": min(agree), "labels_equal_host_mean": float(np.mean(agree)),
                           "frames_compared": len(agree)} if agree else {})}  # fmt: skip
        if record is not None:
            record(name, found[name])
    return found


def run_errors(measured: Dict[str, Any]) -> List[str]:
    """What raised in P9's comparisons (``filter_error``, a mode's device or host run), one line each."""
    found = []
    if "filter_error" in measured:
        error = measured["filter_error"]
        found.append(f"the comparisons' Engine: {error['type']}: {error['message']}")
    for name, _ in MODES:
        for side in ("device", "host"):
            run = (measured.get(name) or {}).get(side) or {}
            if "error" in run:
                where = (f"at frame {run['failed_at_frame']}" if run.get("failed_at_frame") is not None
                         else "closing" if "failed_at_close" in run else "making it")  # fmt: skip
                found.append(f"{name} on the {side} {where}: {run['error']['type']}: {run['error']['message']}")
    return found


def part_video(ctx) -> dict:
    """P9: ``VideoSegmenter`` on the torch CUDA Engine with the filter on the device (``device=True``; a refusal is
    recorded with its reason), --stabilize and keyframes, against the same filter on the host (``compare_modes``: an
    error in one mode or at one frame is recorded and the rest still runs); then ``zsseg camera --live --device
    cuda`` on the clip, end to end (its --stats-json), whatever the comparisons did. Every number recorded, the
    part then fails (raises) when any run raised: an error is not a measurement."""
    _needs_zsseg_cuda()
    bundle = _tiny_here(ctx)
    clip = clip_path(ctx)
    ctx.record("bundle", Path(bundle).name)
    about = clip.with_name("live.json")  # what the artefacts say it is (checks/gpu_artifacts.py clip)
    ctx.record("clip", {"path": clip.name, "carried": clip.parent != ctx.work,
                        **(json.loads(about.read_text()) if about.is_file() else {})})  # fmt: skip
    try:
        _filter_modes(ctx, bundle, clip)
    except Exception as exc:  # noqa: BLE001 - the Engine could not be made (or the clip read): --live still runs
        ctx.record("filter_error", _error(exc))
    ctx.record("live", _live(ctx, bundle, clip))
    errors = run_errors(ctx.measured)
    if errors:
        raise RuntimeError(f"P9: {len(errors)} run(s) raised (each recorded; the rest ran): " + "; ".join(errors))
    return {}


def _filter_modes(ctx, bundle: str, clip: Path) -> None:
    """``compare_modes`` on the bundle's torch CUDA Engine (fp16) and the clip's first 24 frames (the Engine and its
    model go when this returns, before --live starts its own)."""
    from zsseg_rt.stream.video_filter.video import VideoSegmenter

    ge = _engine_module()
    model, _ = _cuda_model(bundle)
    frames = _frames(clip, 24)
    engine = ge.torch_engine(bundle, model, "fp16")
    engine.set_classes(CLASSES.split(","))
    compare_modes(lambda where, options: VideoSegmenter(engine, device=where, **options), frames, record=ctx.record)


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
