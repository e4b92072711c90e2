"""The parts of ``checks/gpu_probe.py`` that measure on the device. Each runs in a child process of its own, gets a
``Context`` (``record(key, value)`` writes at once, so a part cut at its bound keeps what it measured; ``work``
holds the bundles; ``left()`` is what remains of its bound) and returns or records its measurements, the unit at the
end of each key (_ms, _us, _s, _mib). Nothing here judges: ``checks/gpu_engine.py`` does.

Only the standard library at import (the probe's parent imports ``Skip`` from here); numpy, torch and zsseg_rt are
imported inside the parts.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

from benchmarks._launch import checkout_module  # a child from any cwd, PYTHONSAFEPATH=1

REPO = Path(__file__).resolve().parent.parent
# the tiny ZegCLIP config the probe's tiny bundle comes from; the full-size one (checks/gpu_engine.FULL_CONFIG) can be
# replaced for a rehearsal on a CPU (never on the lent GPU: the parts then measure a toy)
FULL_CONFIG_ENV = "ZSSEG_PROBE_FULL_CONFIG"
NCU_SECTIONS = ["SpeedOfLight", "WarpStateStats", "SchedulerStats", "MemoryWorkloadAnalysis", "Occupancy"]
WINDOWS = [(0, 512, 0, 512), (0, 512, 171, 683)]  # the Engine's photo: 2 windows of the 683x512 rescale
SIZES = ((512, 512), (512, 683), (375, 500))  # head size, rescaled size, output size (as checks/postprocess_cuda.py)


class Skip(Exception):
    """A part that cannot run here says why (recorded as skipped, with the reason)."""


def _median(values) -> float:
    values = list(values)
    return float(statistics.median(values)) if values else float("nan")


def _module(name: str):
    import importlib

    return importlib.import_module(name)


def _engine_module():
    return _module("checks.gpu_engine")


def _full_config() -> str:
    return os.environ.get(FULL_CONFIG_ENV) or _engine_module().FULL_CONFIG


def _bundle(ctx, which: str) -> str:
    """The ``"full"`` or ``"tiny"`` bundle in ``ctx.work``: P2's, or exported now (within this part's bound)."""
    ge = _engine_module()
    if which == "tiny":
        return ge._export(ge.TINY_CONFIG, ctx.work, 32, scale_weights=True)
    return ge._export(_full_config(), ctx.work, 256, scale_weights=False)


def _photo():
    import cv2

    ge = _engine_module()
    return cv2.imread(str(next(p for p in ge.sample_images() if p.name == ge.PHOTO)), cv2.IMREAD_COLOR)


def _cuda_model(bundle: str):
    """The bundle's source model on CUDA, and the bundle's meta."""
    from zsseg_rt.bundle import load_meta
    from zsseg_rt.export.torch_backend import source_model

    meta = load_meta(bundle)
    return source_model(meta).eval().to("cuda"), meta


def _needs_zsseg_cuda() -> None:
    from zsseg_rt import ops

    if not ops.cuda_available():
        raise Skip(f"no CUDA: zsseg_rt's CUDA ops are not usable ({ops.cuda_unavailable_reason()})")


def _free() -> None:
    """Drop what the last engine held on the GPU (its graphs' memory pools) before the next one is made."""
    import gc

    import torch

    gc.collect()
    torch.cuda.empty_cache()


def _names(count: int) -> List[str]:
    return [f"class {i}" for i in range(count)]


def _compact(value: Any, limit: int = 4000) -> Any:
    """``value`` when its JSON is short, else its top-level scalars (a gate record can be long)."""
    text = json.dumps(value, default=str)
    if len(text) <= limit or not isinstance(value, dict):
        return value if len(text) <= limit else text[:limit]
    return {k: v for k, v in value.items() if isinstance(v, (str, int, float, bool, type(None)))}


# ---- P0: the machine ---------------------------------------------------------------------------------------------
def find_ncu() -> Optional[str]:
    found = shutil.which("ncu")
    candidates = [os.path.join(os.environ.get("CUDA_HOME", "/usr/local/cuda"), "bin", "ncu"), "/usr/local/cuda/bin/ncu"]
    return found or next((c for c in candidates if os.access(c, os.X_OK)), None)


def _run(command: List[str], timeout: float = 15) -> str:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        return (done.stdout + done.stderr).strip()
    except (OSError, subprocess.SubprocessError) as exc:
        return f"{type(exc).__name__}: {exc}"


def part_machine(ctx) -> dict:
    info: Dict[str, Any] = {"python": sys.version.split()[0], "cpu_count": os.cpu_count(), "device_asked": ctx.device}
    smi = shutil.which("nvidia-smi")
    if smi:
        query = "--query-gpu=name,driver_version,memory.total,clocks.max.sm"
        info["nvidia_smi"] = _run([smi, query, "--format=csv,noheader"])
    ncu = find_ncu()
    info["ncu"] = ncu
    if ncu:
        info["ncu_version"] = _run([ncu, "--version"]).splitlines()[-1:]
    try:
        import torch
    except ImportError as exc:
        return dict(info, cuda=False, cuda_reason=f"torch is not importable: {exc}")
    info.update(torch=torch.__version__, torch_cuda=torch.version.cuda, cuda=bool(torch.cuda.is_available()))
    if info["cuda"]:
        props = torch.cuda.get_device_properties(0)
        info.update(gpu=torch.cuda.get_device_name(0), capability=list(torch.cuda.get_device_capability(0)),
                    bf16=bool(torch.cuda.is_bf16_supported()), memory_mib=int(props.total_memory) >> 20,
                    multiprocessors=int(props.multi_processor_count))  # fmt: skip
    else:
        info["cuda_reason"] = "torch.cuda.is_available() is False"
    try:
        import zsseg_rt
        from zsseg_rt import ops

        info.update(zsseg_rt=getattr(zsseg_rt, "__version__", "?"), zsseg_cuda_ops=bool(ops.cuda_available()))
        if not info["zsseg_cuda_ops"]:
            info["zsseg_cuda_reason"] = ops.cuda_unavailable_reason()
    except Exception as exc:  # noqa: BLE001 - recorded
        info["zsseg_rt_error"] = f"{type(exc).__name__}: {exc}"
    return info


# ---- P2, P2F: the bundles -------------------------------------------------------------------------------------------
def _full_present(ctx) -> bool:
    return (ctx.work / f"{_full_config()}_bundle" / "meta.json").is_file()


def _bundle_here(ctx) -> str:
    """The full-size bundle where this command already has it (an earlier stage's or P2F's export, reused), else
    the tiny one (P2's, or exported now): the parts that measure the device path, not the encoder, take either and
    record which."""
    return _bundle(ctx, "full") if _full_present(ctx) else _bundle(ctx, "tiny")


def _tiny_here(ctx) -> str:
    """The tiny bundle (P2's, or the engine stage's export in the same command): the acceptance's P9 and P7 take it
    whatever else is there. They measure the device path, not the encoder; their times (gpu_probe.PARTS) are the tiny
    Engine's; and its 64-px input is the geometry whose class state the device filter once refused (P9 at b235fde:
    a 120x160 state over a 64x85 image)."""
    return _bundle(ctx, "tiny")


def part_export(ctx) -> dict:
    """P2: the tiny bundle (exported, or reused); the full-size one only noted when an earlier stage of the command
    exported it (P2F exports it: 34 s on the H100, too long for the acceptance's probe)."""
    ge = _engine_module()
    start = time.perf_counter()
    reused = (ctx.work / f"{ge.TINY_CONFIG}_bundle" / "meta.json").is_file()
    ctx.record("tiny_bundle", _bundle(ctx, "tiny"))
    ctx.record("tiny_export_s", round(time.perf_counter() - start, 2))
    return {"tiny_reused": reused, "full_present": _full_present(ctx), "full_config": _full_config()}


def part_full_export(ctx) -> dict:
    """P2F: the full-size bundle (P3's gates, P5E's Engine frame; P7, P7S and P9 take it when it is there)."""
    start = time.perf_counter()
    reused = _full_present(ctx)
    ctx.record("full_bundle", _bundle(ctx, "full"))
    return {
        "full_config": _full_config(),
        "full_export_s": round(time.perf_counter() - start, 2),
        "full_reused": reused,
    }


# ---- P3: the fp16/bf16 accuracy gates of the full encoder ------------------------------------------------------------
def _precisions(torch) -> List[str]:
    return ["fp16", "bf16"] if torch.cuda.is_bf16_supported() else ["fp16"]


def part_precisions(ctx) -> dict:
    """The gates only: the fp16/bf16 CUDA graphs of the full encoder are the engine stage's (checks/gpu_engine.py
    times fp16 and bf16 frames at C=171 and compares their labels with the CPU's)."""
    import torch

    _needs_zsseg_cuda()
    bundle = _bundle(ctx, "full")
    model, meta = _cuda_model(bundle)
    if not torch.cuda.is_bf16_supported():
        ctx.record("bf16", f"not measured: {torch.cuda.get_device_name()} does not support bf16")
    for precision in _precisions(torch):
        ctx.record(f"{precision}_gate", _gate(meta, model, precision, ctx.work / "engines"))
    return {}


def _gate(meta, model, precision: str, cache_dir: Path) -> dict:
    """The torch accuracy gate of ``precision`` on this GPU against ONNX Runtime fp32 (run now: ``force``)."""
    from zsseg_rt.export.torch_backend import TorchBackend
    from zsseg_rt.prepare.gate import EngineAccuracyError

    start = time.perf_counter()
    try:
        backend = TorchBackend(meta, device="cuda", model=model, precision=precision, cache_dir=str(cache_dir),
                               force=True)  # fmt: skip
        record = {"accepted": True, "record": _compact(backend.precision_record)}
    except EngineAccuracyError as exc:
        record = {"accepted": False, "refused": str(exc)[:1500]}
    record["seconds"] = round(time.perf_counter() - start, 2)
    return record


# ---- P6: the ctypes CudaDriver on real libcuda ---------------------------------------------------------------------
def _cuda_ops_model(memory, grid):
    """The capturable stand-in for the bundle's graphs of python_tests/runtime/test_device_graphs_cuda.py (copied:
    the probe does not import python_tests): the image encoder resizes the image to the patch grid, the head resizes
    that again and subtracts the text embedding's first column per class; 3 classes, one per colour channel."""
    import numpy as np

    from zsseg_rt import ops
    from zsseg_rt.bundle import Names
    from zsseg_rt.runtime.device.cuda_memory import CudaBuffer
    from zsseg_rt.runtime.device.device_pipeline import Executor

    class CudaOpsModel(Executor):
        def __init__(self):
            self.memory, self.grid, self.buffers = memory, tuple(int(g) for g in grid), {}

        def _buffer(self, key, shape):
            if key not in self.buffers:
                self.buffers[key] = self.memory.empty(shape, np.float32)
            return self.buffers[key]

        def run(self, role, inputs):
            stream = self.memory.stream
            if role == "image":
                image = inputs[Names.IMAGE]
                out = self._buffer(("features", image.shape[0]), (image.shape[0], 3) + self.grid)
                ops.upsample(image, self.grid, out=out, stream=stream)
                return {"features": out}
            features, text = inputs["features"], inputs[Names.TEXT_EMBEDDINGS]
            bias = CudaBuffer(text.pointer, (text.shape[0],), np.float32, stream)  # column 0 (D == 1)
            out = self._buffer(("logits", features.shape[0]), features.shape)
            ops.upsample(features, self.grid, class_bias=bias, out=out, stream=stream)
            return {Names.MASK_LOGITS: out}

    return CudaOpsModel()


def _driver_run(driver, meta, zero_copy: bool) -> dict:
    """The 7-frame replay-versus-eager run of the emulation test on the real driver, then 3 timed frames."""
    import numpy as np

    from zsseg_rt.runtime.device.cuda_graphs import DriverCudaGraphs, FrameGraphs
    from zsseg_rt.runtime.device.cuda_memory import CudaMemory
    from zsseg_rt.runtime.device.device_pipeline import DevicePipeline

    pipes = []
    for graphs in (True, False):
        memory = CudaMemory(driver, zero_copy=zero_copy)
        frame_graphs = FrameGraphs(DriverCudaGraphs(memory)) if graphs else None
        pipes.append(DevicePipeline(meta, _cuda_ops_model(memory, meta.grid), max_windows=2, graphs=frame_graphs))
    graphed, eager = pipes
    rng = np.random.default_rng(0)
    vocabulary = (rng.normal(0, 0.3, (3, 1)).astype(np.float32), rng.uniform(-0.05, 0.05, 3).astype(np.float32))
    small = [rng.integers(0, 256, (60, 90, 3), dtype=np.uint8) for _ in range(3)]
    large = rng.integers(0, 256, (70, 150, 3), dtype=np.uint8)
    out: Dict[str, Any] = {"equal_frames": []}
    try:
        for pipe in pipes:
            pipe.set_vocabulary(*vocabulary)
        for frame in [small[0], small[0], small[1], large, small[2], large, small[1]]:
            (a, sa), (b, sb) = graphed(frame), eager(frame)
            out["equal_frames"].append(bool(np.array_equal(a, b) and np.array_equal(sa, sb)))
        out["graph_stats"] = dict(graphed.graphs.stats)
        seen: List[tuple] = []
        for _ in range(3):
            graphed(large, stage_hook=lambda stage, seconds: seen.append((stage, 1e3 * seconds)))
        last = seen[-len(seen) // 3 :]
        out["timed_stages_ms"] = last
        out["graph_stats_after_timed"] = dict(graphed.graphs.stats)
    finally:
        for pipe in pipes:
            pipe.memory.synchronize()
            if pipe.graphs is not None:
                pipe.graphs.clear(pipe)
            pipe.memory.close()
    out["replay_equals_eager_all_frames"] = all(out["equal_frames"])
    return out


def part_ctypes_driver(ctx) -> dict:
    _needs_zsseg_cuda()
    from zsseg_rt.bundle import load_meta
    from zsseg_rt.runtime.device.cuda_driver import ATTR_CAN_MAP_HOST_MEMORY, ATTR_INTEGRATED, CudaDriver

    meta = load_meta(_bundle(ctx, "tiny"))
    driver = CudaDriver()
    driver.use_primary_context(0)
    info = driver.device_info(0)
    ctx.record("device", {"name": info.name, "sm": info.sm, "multiprocessors": info.multiprocessors,
                          "memory_mib": info.total_memory_mib, "driver_version": driver.driver_version(),
                          "integrated": driver.device_attribute(ATTR_INTEGRATED),
                          "can_map_host_memory": driver.device_attribute(ATTR_CAN_MAP_HOST_MEMORY)})  # fmt: skip
    for zero_copy in (False, True):
        ctx.record(f"zero_copy_{str(zero_copy).lower()}", _driver_run(driver, meta, zero_copy))
    driver.release_primary_context()
    return {}


# ---- P1: post-processing host cost -----------------------------------------------------------------------------------
def _api_counts(torch, call, calls: int = 20) -> dict:
    """CUDA runtime/driver API calls per ``call()`` seen by torch's profiler, and the kernel's device us per call."""
    activities = [torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA]
    with torch.profiler.profile(activities=activities) as prof:
        for _ in range(calls):
            call()
        torch.cuda.synchronize()
    counts, kernel_us = {}, None
    for item in prof.key_averages():
        if re.match(r"^cu(da)?[A-Z]", item.key):
            counts[item.key] = item.count / calls
        elif "segment_windows" in item.key:
            total = getattr(item, "device_time_total", None) or getattr(item, "cuda_time_total", 0.0)
            kernel_us = total / max(item.count, 1)
    return {"api_calls_per_call": counts, "kernel_us": kernel_us}


def _host_cost(torch, call, enqueued: int = 200, synced: int = 60) -> dict:
    for _ in range(5):
        call()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(enqueued):
        call()
    host = time.perf_counter() - start
    torch.cuda.synchronize()
    drained = time.perf_counter() - start
    samples = []
    for _ in range(synced):
        begin = time.perf_counter()
        call()
        torch.cuda.synchronize()
        samples.append(time.perf_counter() - begin)
    return {"host_us_per_call": 1e6 * host / enqueued, "drained_us_per_call": 1e6 * drained / enqueued,
            "call_and_sync_median_us": 1e6 * _median(samples)}  # fmt: skip


def part_host_cost(ctx) -> dict:
    import torch

    _needs_zsseg_cuda()
    from zsseg_rt import ops

    torch.manual_seed(0)
    own = torch.cuda.Stream()
    for count in (20, 171):
        logits = torch.randn(2, count, 32, 32, device="cuda") * 3
        bias = torch.rand(count, device="cuda") * 0.05
        out = (torch.empty(375, 500, dtype=torch.int32, device="cuda"), torch.empty(375, 500, device="cuda"))
        torch.cuda.synchronize()
        configs = {
            "default stream": (torch.cuda.current_stream(), bias),
            "own stream (as the Engine)": (own, bias),
            "own stream, no class_bias": (own, None),
        }
        for name, (stream, class_bias) in configs.items():

            def call(stream=stream, class_bias=class_bias, logits=logits, out=out):
                with torch.cuda.stream(stream):
                    ops.segment_windows(logits, WINDOWS, *SIZES, class_bias=class_bias, sigmoid=True,
                                        stream=stream.cuda_stream, out=out)  # fmt: skip

            row = _host_cost(torch, call)
            row.update(_api_counts(torch, call))
            ctx.record(f"c{count} {name}", row)
    return {"note": "kernel_us from the profiler's CUDA activity; api_calls_per_call: every cu*/cuda* call it saw "
            "(zsseg_rt's own runtime calls appear only where CUPTI sees its CUDA runtime)"}  # fmt: skip


# ---- P8: CUDA AMP training ---------------------------------------------------------------------------------------------
def part_amp_training(ctx) -> dict:
    from zsseg_rt.train.config import load_train_config
    from zsseg_rt.train.trainer import Trainer

    work = ctx.work / "amp_training"
    shutil.rmtree(work, ignore_errors=True)
    cfg = load_train_config("tiny_test", amp=True, amp_dtype="float16", iterations=10, work_dir=str(work),
                            save_native=False)  # fmt: skip
    start = time.perf_counter()
    trainer = Trainer(cfg, device=ctx.device, progress=False)
    trainer.train()
    ctx.record("train_s", round(time.perf_counter() - start, 2))
    with open(work / "log.csv", newline="", encoding="utf-8") as stream:
        losses = [float(row["loss"]) for row in csv.DictReader(stream)]
    scaler = trainer.scaler
    return {"device": str(trainer.device), "iterations": cfg.iterations, "losses": losses,
            "losses_finite": all(map(lambda x: x == x and abs(x) != float("inf"), losses)),
            "scaler_enabled": bool(scaler.is_enabled()),
            "scale": float(scaler.get_scale()) if scaler.is_enabled() else None}  # fmt: skip


# ---- P5: ncu of segment_windows ----------------------------------------------------------------------------------------
def ncu_target(target: str, work: Path) -> int:
    """What P5 runs under ncu: two segment_windows calls at C=171 (the first skipped by ``--launch-skip 1``), on
    i.i.d. logits (``iid``) or within two eager Engine frames (``engine``: the real encoder's logits)."""
    import torch

    if target == "iid":
        from zsseg_rt import ops

        torch.manual_seed(0)
        logits = torch.randn(2, 171, 32, 32, device="cuda") * 3
        bias = torch.rand(171, device="cuda") * 0.05
        out = (torch.empty(375, 500, dtype=torch.int32, device="cuda"), torch.empty(375, 500, device="cuda"))
        for _ in range(2):
            ops.segment_windows(logits, WINDOWS, *SIZES, class_bias=bias, sigmoid=True, out=out)
        torch.cuda.synchronize()
        return 0
    ge = _engine_module()
    bundle = str(work / f"{_full_config()}_bundle")
    model, _ = _cuda_model(bundle)
    engine = ge.torch_engine(bundle, model, "fp16", cuda_graphs=False)
    engine.set_classes(_names(171))
    image = _photo()
    for _ in range(2):
        engine(image)
    return 0


def _ncu(ctx, target: str, bound: float) -> dict:
    """One ncu run of ``target`` (``ncu_target``) within ``bound`` seconds, its text appended to the report."""
    ncu = find_ncu()
    if ncu is None:
        raise Skip("ncu not found (PATH, $CUDA_HOME/bin, /usr/local/cuda/bin): no kernel report")
    report = ctx.out / "ncu_segment_windows.txt"
    sections = [arg for name in NCU_SECTIONS for arg in ("--section", name)]
    child, env = checkout_module("checks.gpu_probe", "--ncu-target", target, "--work", ctx.work, repo=REPO)
    command = [ncu, "--target-processes", "all", "-k", "regex:segment_windows", "--launch-skip", "1", "-c", "1",
               *sections, *child]  # fmt: skip
    start = time.perf_counter()
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=bound, env=env)
        text, code = done.stdout + done.stderr, done.returncode
    except subprocess.TimeoutExpired as exc:
        text, code = f"ncu cut at {bound:.0f} s\n{exc.stdout or ''}", "timeout"
    with open(report, "a") as stream:
        stream.write(f"==== {target}: C=171, {'i.i.d. logits' if target == 'iid' else 'an Engine frame'}\n")
        stream.write(text if isinstance(text, str) else text.decode(errors="replace"))
    keys = ("Duration", "Throughput", "Occupancy", "Stall", "Warp Cycles", "Registers", "==ERROR==", "==PROF==")
    lines = [line.strip() for line in str(text).splitlines() if any(k in line for k in keys)][:40]
    return {"exit_code": code, "seconds": round(time.perf_counter() - start, 2), "lines": lines, "report": report.name}


def part_ncu(ctx) -> dict:
    """P5: ncu of segment_windows at C=171 on i.i.d. logits (9.9 s on the H100)."""
    _needs_zsseg_cuda()
    ctx.record("iid", _ncu(ctx, "iid", max(ctx.left() - 3, 1)))
    return {}


def part_ncu_engine(ctx) -> dict:
    """P5E: ncu of segment_windows within an eager Engine frame (the real encoder's logits); cut at 27 s on the H100
    (its bound then), never finished: an extra part with a bound of its own."""
    _needs_zsseg_cuda()
    _bundle(ctx, "full")  # the Engine target's bundle
    ctx.record("engine", _ncu(ctx, "engine", max(ctx.left() - 3, 1)))
    return {}


# ---- P7, P7S: batched call, multi-source streams ------------------------------------------------------------------------
STREAMS_CAP_S = 30  # P7S: the streams benchmark's run is cut here (the review: at most 30 s of the probe)


def part_batch(ctx) -> dict:
    """P7: ``engine([photo] * n)`` against n single calls (n = 4, 8) on the torch CUDA Engine (the tiny bundle,
    ``_tiny_here``: its images/s are the device path's, not the full encoder's), the batched calls replaying the
    graphs captured per batch size (runtime/device/frame_batches.py; checks/_gpu_engine_batch.time_batched)."""
    import torch

    from checks import _gpu_engine_batch as gb

    _needs_zsseg_cuda()
    ge = _engine_module()
    bundle = _tiny_here(ctx)
    ctx.record("bundle", Path(bundle).name)
    model, _ = _cuda_model(bundle)
    image = _photo()
    engine = ge.torch_engine(bundle, model, "fp16")
    engine.set_classes(_names(20))
    for count in (4, 8):
        row = gb.time_batched(engine, image, count, rounds=5, memory=torch.cuda.memory_allocated)
        for key in ("batched_ms", "singles_ms", "speedup", "labels_equal", "first_batch_allocated_mib"):
            if key in row:
                ctx.record(f"{key}_{count}", row[key])
    stats = engine.device_stats or {}
    return {"cuda_graphs": stats.get("cuda_graphs"), "batched_graphs": stats.get("batched_graphs")}


def part_compiled_encoder(ctx) -> dict:
    """P11 (an extra, run in the rerun room): ``encoder_variant="compiled"`` pinned (``auto`` never compiles behind a
    user's back, runtime/device/encoder_choice.py AUTO_CANDIDATES): the first frame's seconds (the cold torch.compile
    of the encoder and its capture), then the choice among every variant, compiled included, over the photo: each one's
    time per encoder run and its gate figure against the fp16 graph's labels. The full-size bundle where this command
    has it (an earlier stage's export), else the tiny one."""
    import numpy as np

    from zsseg_rt.runtime.device.encoder_choice import CANDIDATES, EncoderChoice

    _needs_zsseg_cuda()
    ge = _engine_module()
    bundle = _bundle_here(ctx)
    ctx.record("bundle", Path(bundle).name)
    model, _ = _cuda_model(bundle)
    image = _photo()
    engine = ge.torch_engine(bundle, model, "fp16", encoder_variant="compiled")
    engine.set_classes(_names(171))
    start = time.perf_counter()
    engine(image)
    ctx.record("compiled_first_frame_s", round(time.perf_counter() - start, 2))
    device = engine.pipeline.device
    every = EncoderChoice("auto", candidates=CANDIDATES)
    report = every.choose(device, [(np.ascontiguousarray(image), "bgr")])
    return {"encoder_variant": report}


def part_streams(ctx) -> dict:
    """P7S: ``benchmarks streams`` (multi-source camera) on the torch CUDA Engine, cut at STREAMS_CAP_S."""
    _needs_zsseg_cuda()
    bundle = _bundle_here(ctx)
    cap = min(STREAMS_CAP_S, ctx.left() - 3)
    command, env = checkout_module("benchmarks", "streams", "--bundle", bundle, "--backend", "torch", "--device",
                                   "cuda", "--frames", "3", "--rounds", "1", "--images", "4", repo=REPO)  # fmt: skip
    start = time.perf_counter()
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=cap, env=env)
        tail, code = (done.stdout + done.stderr).splitlines()[-30:], done.returncode
    except subprocess.TimeoutExpired:
        tail, code = [], "timeout"
    return {"streams": {"exit_code": code, "seconds": round(time.perf_counter() - start, 2), "cap_s": round(cap, 1),
                        "bundle": Path(bundle).name, "output_tail": tail}}  # fmt: skip
