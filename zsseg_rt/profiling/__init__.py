"""Per-stage latency profile of a zsseg_rt bundle: text encoding (once per vocabulary), pre-processing, image
encoder, head, post-processing and end-to-end, with p50/p90/p99/mean and FPS, at chosen input resolutions,
batch sizes and class counts, for one or several backends side by side.

    zsseg profile --bundle B --classes 20 --iters 50 --out out/profile
        (the same: python -m zsseg_rt.profiling ..., or python tools/profile.py ... in a source checkout)
    python tools/profile.py --bundle B --classes 1,20,150 --resolutions 640x480,1280x720 \\
        --compare onnxruntime,torch --out out/profile

What is measured
  * wall (default on CPU): ``time.perf_counter`` around each stage through ``Engine.stage_hook``. Every backend
    returns NumPy arrays, so a stage's wall time includes its host<->device copies and its synchronisation.
  * cuda (default when the backend runs on a GPU and torch with CUDA is importable): CUDA events recorded
    around the image-encoder, head and text-encoder calls (the device timeline between the call's start and the
    moment its outputs are back on the host); pre/post-processing run on the host (NumPy) and stay wall-clock.
  * stream-sync (whenever the Engine runs the device-resident pipeline: TensorRT, torch on CUDA, or
    ``device_pipeline=True``): the pipeline's own stages as device time, from timing events recorded on its stream
    at each stage boundary (inside the frame's CUDA graph when graphs are on, so a timed frame runs as deployed;
    read after the frame's one synchronisation; a host pipeline times them with perf_counter): upload (the frame),
    preprocess, image_encoder, head, postprocess, download (labels and scores); "copies" in the table is upload +
    download. The name is kept for the JSON's readers; nothing is synchronised per stage any more.
  * end-to-end: wall time of ``engine(images)``; ``other`` = end-to-end minus the sum of the stages (array
    stacking, result construction, the hook itself). The JSON records the stage-sum coverage.
  * memory: peak host RSS per configuration (VmHWM, reset through /proc/self/clear_refs where allowed, else the
    process peak) and device memory where measurable (torch allocator peak for the torch backend; NVML/nvidia-smi
    process usage otherwise; "n/a" on CPU and on Jetson unified memory).

Outputs (in --out): profile.json, profile.csv, profile.png (stage breakdown + latency histogram; matplotlib,
Agg backend), and a table on the terminal. The JSON records the system (CPU/GPU, Jetson power mode, ONNX
Runtime / TensorRT / CUDA versions), precision, input size and class count. While it runs, a progress bar per
configuration on stderr (none with --quiet), updated between calls, outside the timed spans.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np

from zsseg_rt.assets import SAMPLES_DIR
from zsseg_rt.console.errors import CliError
from zsseg_rt.system_info import (
    current_rss_bytes,
    jetson_info,
    peak_rss_bytes,
    reset_peak_rss,
    run_quietly,
    system_info,
)

STAGES = ("preprocess", "image_encoder", "head", "postprocess")
COPY_STAGES = ("upload", "download")  # the device pipeline's host<->device copies (profiled as their own stages)
DEVICE_STAGES = ("image_encoder", "head", "text_encoder")
SAMPLE_IMAGE = str(SAMPLES_DIR / "JPEGImages")


# ---- small helpers ------------------------------------------------------------------------------------------
def percentiles(values_s: Sequence[float]) -> Dict[str, float]:
    """Milliseconds: p50/p90/p99/mean/std/min/max of ``values_s`` (seconds)."""
    arr = np.asarray(values_s, dtype=np.float64) * 1000.0
    if arr.size == 0:
        return {k: float("nan") for k in ("p50", "p90", "p99", "mean", "std", "min", "max")}
    return {
        "p50": float(np.percentile(arr, 50)),
        "p90": float(np.percentile(arr, 90)),
        "p99": float(np.percentile(arr, 99)),
        "mean": float(arr.mean()),
        "std": float(arr.std()),
        "min": float(arr.min()),
        "max": float(arr.max()),
    }


def parse_resolution(text: str):
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not match:
        raise argparse.ArgumentTypeError(f"resolution must look like 640x480 (width x height), got {text!r}")
    return int(match.group(1)), int(match.group(2))


def parse_int_list(text: str) -> List[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from exc
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def parse_backend(text: str) -> Dict[str, str]:
    """``NAME[:OPTION]``, NAME a backend of the table (``zsseg_rt/runtime/backends/table.py``) or auto; OPTION the
    precision of a GPU-only backend (``tensorrt:fp16`` / ``tensorrt:int8``), else the device (``onnxruntime:cpu``,
    ``torch:cuda``)."""
    from zsseg_rt.runtime.backends.table import AUTO, backend_names, backend_row

    name, _, option = text.strip().partition(":")
    if name not in backend_names():
        raise argparse.ArgumentTypeError(f"backend must be one of {', '.join(backend_names())}, got {name!r}")
    row = backend_row(name) if name != AUTO else None
    if row is not None and row.devices == ("cuda",):  # a GPU-only backend: the option is its precision
        precision = option or row.default_precision
        if precision not in row.precisions:
            raise argparse.ArgumentTypeError(
                f"{name} precision must be one of {', '.join(row.precisions)}, got {precision!r}"
            )
        return {"label": text.strip(), "backend": name, "device": "cuda", "precision": precision}
    device = option or "auto"
    devices = ("auto", *(row.devices if row is not None else ("cpu", "cuda")))  # the row's own: openvino is cpu only
    if device not in devices:
        raise argparse.ArgumentTypeError(f"{name} device must be {', '.join(devices)}, got {device!r}")
    return {"label": text.strip(), "backend": name, "device": device, "precision": "fp32"}


# ---- timing ---------------------------------------------------------------------------------------------------
class CudaEventTimer:
    """Wraps a backend's graph calls with CUDA events (torch), collecting device milliseconds per stage."""

    def __init__(self, backend):
        import torch

        self.torch = torch
        self.pending: List[tuple] = []
        for method, stage in (("encode_image", "image_encoder"), ("head", "head"), ("encode_text", "text_encoder")):
            setattr(backend, method, self._wrap(getattr(backend, method), stage))

    def _wrap(self, fn, stage):
        def timed(*args, **kwargs):
            start = self.torch.cuda.Event(enable_timing=True)
            end = self.torch.cuda.Event(enable_timing=True)
            start.record()
            out = fn(*args, **kwargs)
            end.record()
            self.pending.append((stage, start, end))
            return out

        return timed

    def collect(self) -> Dict[str, float]:
        """Seconds per stage for the calls since the last collect (synchronises)."""
        self.torch.cuda.synchronize()
        totals: Dict[str, float] = {}
        for stage, start, end in self.pending:
            totals[stage] = totals.get(stage, 0.0) + start.elapsed_time(end) / 1000.0
        self.pending.clear()
        return totals


def _backend_on_gpu(engine) -> bool:
    return bool(getattr(engine.backend, "runs_on_gpu", False))  # the runner's own answer (backends/table.py)


def uses_device_pipeline(engine) -> bool:
    """Whether frames go through the device-resident pipeline (which reports its stages itself, copies included)."""
    return getattr(engine.pipeline, "device", None) is not None and engine.mode == "exact"


def stages_of(engine) -> tuple:
    """The stages a frame of ``engine`` reports through its stage hook."""
    return STAGES + COPY_STAGES if uses_device_pipeline(engine) else STAGES


def choose_timing(requested: str, engine) -> str:
    if requested == "wall":
        return "wall"
    if uses_device_pipeline(engine):
        if requested == "cuda":
            raise SystemExit(
                "--timing cuda: this Engine runs the device pipeline, which times its own stages between "
                "synchronisations of its stream (--timing auto reports them as stream-sync)"
            )
        return "stream-sync"
    on_gpu = _backend_on_gpu(engine)
    cuda_ok = False
    if on_gpu:
        try:
            import torch

            cuda_ok = torch.cuda.is_available()
        except ImportError:
            cuda_ok = False
    if requested == "cuda" and not cuda_ok:
        raise CliError(
            f"--timing cuda needs the backend on a GPU and torch with CUDA for the events; "
            f"{engine.backend.name} runs on {'GPU' if on_gpu else 'CPU'} here. Use --timing wall."
        )
    return "cuda" if cuda_ok else "wall"


def device_memory(engine) -> dict:
    """Device memory in use / peak for this process where measurable."""
    if not _backend_on_gpu(engine):
        return {"bytes": None, "how": "n/a (backend on CPU)"}
    if jetson_info() is not None:
        return {"bytes": None, "how": "n/a (Jetson: unified memory, see host RSS)"}
    peak = getattr(engine.backend, "device_memory_peak", None)  # a backend that knows its own (torch's allocator)
    if peak is not None:
        found = peak()
        if found is not None:
            return found
    out = run_quietly(["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"])
    if out:
        for line in out.splitlines():
            parts = [p.strip() for p in line.split(",")]
            if parts and parts[0] == str(os.getpid()):
                return {"bytes": int(float(parts[1]) * 1024 * 1024), "how": "nvidia-smi process used_memory"}
    return {"bytes": None, "how": "n/a (nvidia-smi unavailable or process not listed)"}


# ---- the profile ----------------------------------------------------------------------------------------------
def make_engine(bundle: str, spec: Dict[str, str], mode: str, verify: bool):
    from zsseg_rt.runtime import Engine
    from zsseg_rt.runtime.backends.table import AUTO, backend_row

    # prepare=None: one path from the first call to the last (no background preparation switching it)
    kwargs: Dict[str, Any] = dict(
        backend=spec["backend"], device=spec["device"], mode=mode, verify=verify, prepare=None
    )
    if spec["backend"] != AUTO and backend_row(spec["backend"]).devices == ("cuda",):  # GPU-only: its precision
        kwargs.pop("device")
        kwargs["precision"] = spec["precision"]
    return Engine(bundle, **kwargs)


def load_image(path: Optional[str]) -> np.ndarray:
    import cv2

    if path is None and os.path.isdir(SAMPLE_IMAGE):
        names = sorted(n for n in os.listdir(SAMPLE_IMAGE) if n.lower().endswith((".jpg", ".png")))
        path = os.path.join(SAMPLE_IMAGE, names[0]) if names else None
    if path is not None:
        image = cv2.imread(path, cv2.IMREAD_COLOR)
        if image is None:
            raise CliError(f"cannot read image {path!r}")
        return image
    rng = np.random.default_rng(0)
    return cv2.GaussianBlur(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8), (0, 0), 3)


def class_names(count: int, tag: str = "") -> List[str]:
    """``count`` distinct, tokenizable class names (suffix ``tag`` makes a fresh, uncached vocabulary)."""
    base = [
        "person",
        "car",
        "road",
        "tree",
        "sky",
        "building",
        "dog",
        "cat",
        "chair",
        "table",
        "floor",
        "wall",
        "grass",
        "water",
        "bicycle",
        "bus",
        "train",
        "boat",
        "bird",
        "bottle",
    ]
    names = [base[i] if i < len(base) else f"{base[i % len(base)]} {i // len(base)}" for i in range(count)]
    return [f"{name} {tag}".strip() for name in names]


def profile_text(engine, count: int, iters: int, timer, on_step: Optional[Callable[[], Any]] = None) -> dict:
    """A warm-up vocabulary, then ``iters`` fresh vocabularies of ``count`` classes timed through the text encoder;
    ``on_step()`` after each (a progress bar's ``update``)."""
    samples: List[float] = []
    device: List[float] = []
    templates = len(engine.meta.templates)
    for rep in range(iters + 1):
        seen: Dict[str, float] = {}
        engine.stage_hook = lambda stage, sec: seen.__setitem__(stage, seen.get(stage, 0.0) + sec)  # noqa: B023 (used within this iteration)
        engine.set_classes(class_names(count, f"v{rep}"))
        engine.stage_hook = None
        if timer is not None:
            device.append(timer.collect().get("text_encoder", 0.0))
        if rep > 0:  # the first vocabulary is warm-up
            samples.append(seen["text_encoder"])
        if on_step is not None:
            on_step()
    result = {
        "stage": "text_encoder",
        "classes": count,
        "prompts": count * templates,
        "n": len(samples),
        "wall": percentiles(samples),
    }
    if timer is not None:
        result["device"] = percentiles(device[1:])
    return result


def profile_config(
    engine, image: np.ndarray, batch: int, warmup: int, iters: int, timer, on_call: Optional[Callable[[], Any]] = None
) -> dict:
    """Warm-up then ``iters`` timed calls of ``engine([image] * batch)``; per-stage and end-to-end samples.
    ``on_call()`` after each call, outside the timed span (a progress bar's ``update``)."""
    import cv2

    step = on_call if on_call is not None else (lambda: None)
    images = [image] * batch if batch > 1 else image
    engine.max_batch = max(batch, 1)
    for _ in range(warmup):
        engine(images)
        step()
    if timer is not None:
        timer.collect()
    stages = stages_of(engine)
    per_stage: Dict[str, List[float]] = {stage: [] for stage in stages}
    device: Dict[str, List[float]] = {stage: [] for stage in ("image_encoder", "head")}
    e2e: List[float] = []
    sink: Dict[str, float] = {}
    engine.stage_hook = lambda stage, sec: sink.__setitem__(stage, sink.get(stage, 0.0) + sec)
    reset_peak_rss()
    try:
        for _ in range(iters):
            sink.clear()
            start = time.perf_counter()
            engine(images)
            e2e.append(time.perf_counter() - start)
            for stage in stages:
                per_stage[stage].append(sink.get(stage, 0.0))
            if timer is not None:
                measured = timer.collect()
                for stage in device:
                    device[stage].append(measured.get(stage, 0.0))
            step()
    finally:
        engine.stage_hook = None
    stage_sum = np.sum([per_stage[s] for s in stages], axis=0)
    e2e_arr = np.asarray(e2e)
    other = np.maximum(e2e_arr - stage_sum, 0.0)
    out = {
        "stages": {stage: percentiles(per_stage[stage]) for stage in stages},
        "other": percentiles(other),
        "end_to_end": percentiles(e2e),
        "fps": float(batch / e2e_arr.mean()),
        "fps_p50": float(batch / np.median(e2e_arr)),
        "stage_sum_coverage": float(stage_sum.sum() / e2e_arr.sum()),
        # per call, then the median: one call the OS preempted in the glue between stages does not move it
        "stage_sum_coverage_p50": float(np.median(stage_sum / np.maximum(e2e_arr, 1e-12))),
        "samples_ms": {"end_to_end": [round(v * 1000.0, 4) for v in e2e]},
        "peak_host_rss_bytes": peak_rss_bytes(),
        "device_memory": device_memory(engine),
    }
    if set(COPY_STAGES) <= set(stages):
        out["copies"] = percentiles([u + d for u, d in zip(per_stage["upload"], per_stage["download"])])
    if timer is not None:
        out["device_stages"] = {stage: percentiles(vals) for stage, vals in device.items()}
    del cv2
    return out


def _bar(args, total: int, desc: str, unit: str):
    """The progress bar of one configuration (stderr; none with --quiet): minutes each at the defaults on a CPU. It is
    updated between calls, never inside a timed one."""
    from zsseg_rt.console.progress import progress_bar

    return progress_bar(total=total, desc=desc, unit=unit, disable=bool(args.quiet), leave=False, dynamic_ncols=True)


def run_profile(args) -> dict:
    """Profile every (backend, classes, resolution, batch) combination; returns the JSON-able report."""
    import cv2

    from zsseg_rt.bundle import load_meta

    meta = load_meta(args.bundle)
    base_image = load_image(args.image)
    report = {
        "tool": "tools/profile.py",
        "bundle": os.path.abspath(args.bundle),
        "system": system_info(),
        "settings": {
            "iters": args.iters,
            "warmup": args.warmup,
            "text_iters": args.text_iters,
            "mode": args.mode,
            "image_size": meta.image_size,
            "max_classes": meta.max_classes,
            "peak_rss_resettable": reset_peak_rss(),
        },
        "backends": [],
        "skipped": [],
        "results": [],
        "text_encoder": [],
    }
    for spec in args.backends:
        rss_before = current_rss_bytes()
        start = time.perf_counter()
        try:
            engine = make_engine(args.bundle, spec, args.mode, verify=not args.no_verify)
        except (ImportError, OSError, ValueError, RuntimeError) as exc:
            if len(args.backends) == 1:
                raise
            from zsseg_rt.console.errors import format_error

            # e.g. the torch backend of a bundle whose checkpoint is not here: the other backends still run
            print(f"skipping {spec['label']}: {format_error(exc)}", file=sys.stderr, flush=True)
            report["skipped"].append({"backend": spec["label"], "reason": format_error(exc)})
            continue
        load_s = time.perf_counter() - start
        timing = choose_timing(args.timing, engine)
        timer = CudaEventTimer(engine.backend) if timing == "cuda" else None
        report["backends"].append(
            {
                **spec,
                "name": engine.backend.name,
                "runs": " ".join(engine.plan.path),  # the path every timed call ran on
                "timing": timing,
                "providers": getattr(engine.backend, "providers", None),
                "load_seconds": load_s,
                "load_rss_delta_bytes": (current_rss_bytes() or 0) - (rss_before or 0),
            }
        )
        for count in args.classes:
            if count > meta.max_classes:
                raise CliError(f"--classes {count} exceeds the bundle's max_classes {meta.max_classes}")
            with _bar(args, args.text_iters + 1, f"{spec['label']} text encoder C={count}", "vocabulary") as bar:
                text = profile_text(engine, count, args.text_iters, timer, on_step=bar.update)
            report["text_encoder"].append({"backend": spec["label"], **text})
            engine.set_classes(class_names(count))
            for width, height in args.resolutions:
                image = cv2.resize(base_image, (width, height), interpolation=cv2.INTER_AREA)
                for batch in args.batch_sizes:
                    desc = f"{spec['label']} {width}x{height} B={batch} C={count}"
                    with _bar(args, args.warmup + args.iters, desc, "call") as bar:
                        result = profile_config(engine, image, batch, args.warmup, args.iters, timer, bar.update)
                    result.update(
                        {
                            "backend": spec["label"],
                            "precision": spec["precision"],
                            "timing": timing,
                            "resolution": [width, height],
                            "batch": batch,
                            "classes": count,
                            # what was profiled really segments: classes winning somewhere in the frame
                            "distinct_labels": int(len(np.unique(engine(image).labels))),
                        }
                    )
                    report["results"].append(result)
                    if not args.quiet:
                        print(
                            f"  {spec['label']:<18} {width}x{height} B={batch} C={count}: "
                            f"p50 {result['end_to_end']['p50']:.2f} ms, {result['fps']:.1f} img/s",
                            flush=True,
                        )
        del engine, timer
    if not report["backends"]:
        raise RuntimeError(
            "no backend could run: " + "; ".join(f"{s['backend']}: {s['reason']}" for s in report["skipped"])
        )
    report["comparison"] = compare(report["results"])
    return report


def compare(results: List[dict]) -> List[dict]:
    """Ratios against the first backend for every (resolution, batch, classes) present in several backends."""
    rows = []
    groups: Dict[tuple, List[dict]] = {}
    for res in results:
        groups.setdefault((tuple(res["resolution"]), res["batch"], res["classes"]), []).append(res)
    for key, members in groups.items():
        if len(members) < 2:
            continue
        base = members[0]
        for other in members[1:]:
            row = {
                "baseline": base["backend"],
                "backend": other["backend"],
                "resolution": list(key[0]),
                "batch": key[1],
                "classes": key[2],
                "speedup_end_to_end_p50": base["end_to_end"]["p50"] / other["end_to_end"]["p50"],
                "latency_ratio_end_to_end_p50": other["end_to_end"]["p50"] / base["end_to_end"]["p50"],
            }
            for stage in STAGES:  # the stages every pipeline reports (copies exist on the device pipeline only)
                b, o = base["stages"][stage]["p50"], other["stages"][stage]["p50"]
                row[f"{stage}_latency_ratio_p50"] = o / b if b > 0 else float("nan")
            rows.append(row)
    return rows


# ---- output ---------------------------------------------------------------------------------------------------
def cuda_text(sysinfo: dict) -> str:
    """What the CUDA version of ``system_info`` is: with a GPU, "CUDA 12.4"; without one it is only what torch was
    built for (or the toolkit installed), not a device: "CUDA: none usable (no GPU; torch built for CUDA 13.0)"."""
    version = sysinfo.get("cuda")
    if not version:
        return "CUDA: none"
    text = str(version)
    if sysinfo.get("gpu"):
        return f"CUDA {text}"
    if text.endswith("(torch build)"):
        what = f"torch built for CUDA {text[: -len('(torch build)')].strip()}"
    else:
        what = f"CUDA {text} toolkit installed"
    return f"CUDA: no device (no GPU; {what})"


def format_table(report: dict) -> str:
    lines = []
    sysinfo = report["system"]
    gpus = ", ".join(g["name"] for g in sysinfo["gpu"]) if sysinfo["gpu"] else "none"
    lines.append(
        f"system: {sysinfo['cpu']} ({sysinfo['cpu_count']} cores), GPU: {gpus}, ORT "
        f"{sysinfo['onnxruntime']}, TensorRT {sysinfo['tensorrt']}, {cuda_text(sysinfo)}"
    )
    if sysinfo.get("jetson"):
        lines.append(f"jetson: {sysinfo['jetson']['model']}, power mode: {sysinfo['jetson']['power_mode']}")
    settings = report["settings"]
    lines.append(
        f"bundle image size {settings['image_size']}, mode {settings['mode']}, {settings['iters']} iters "
        f"after {settings['warmup']} warm-up; times in ms (p50 / p90 / p99 / mean)"
    )
    head = (
        f"{'backend':<16} {'prec':<5} {'input':>9} {'B':>2} {'C':>4} {'stage':<14} "
        f"{'p50':>8} {'p90':>8} {'p99':>8} {'mean':>8}  {'FPS':>7}"
    )
    lines += [head, "-" * len(head)]
    for res in report["results"]:
        prefix = (
            f"{res['backend']:<16} {res['precision']:<5} {res['resolution'][0]:>4}x{res['resolution'][1]:<4} "
            f"{res['batch']:>2} {res['classes']:>4}"
        )
        rows = [(s, res["stages"][s]) for s in STAGES]
        if "copies" in res:  # the device pipeline: its host<->device copies, and the sum of both
            rows += [(s, res["stages"][s]) for s in COPY_STAGES] + [("copies", res["copies"])]
        rows += [("other", res["other"]), ("end_to_end", res["end_to_end"])]
        for i, (stage, st) in enumerate(rows):
            fps = f"{res['fps']:>7.1f}" if stage == "end_to_end" else ""
            lines.append(
                f"{prefix if i == 0 else ' ' * len(prefix)} {stage:<14} {st['p50']:>8.3f} "
                f"{st['p90']:>8.3f} {st['p99']:>8.3f} {st['mean']:>8.3f}  {fps}"
            )
        rss = res["peak_host_rss_bytes"]
        lines.append(
            f"{' ' * len(prefix)} stage sum covers {res['stage_sum_coverage']:.1%} of end-to-end "
            f"({res['stage_sum_coverage_p50']:.1%} per call, median); "
            f"peak host RSS {rss / 2**20:.0f} MiB; device memory "
            f"{res['device_memory']['bytes'] if res['device_memory']['bytes'] is not None else 'n/a'}"
        )
    lines.append("text encoder (once per vocabulary change):")
    for row in report["text_encoder"]:
        st = row["wall"]
        lines.append(
            f"  {row['backend']:<16} C={row['classes']:<4} ({row['prompts']} prompts): p50 {st['p50']:.3f}"
            f" ms, mean {st['mean']:.3f} ms over {row['n']} vocabularies"
        )
    if report["comparison"]:
        lines.append("comparison (vs the first backend; speedup > 1 = faster):")
        for row in report["comparison"]:
            stages = ", ".join(f"{s} x{row[f'{s}_latency_ratio_p50']:.2f}" for s in STAGES)
            lines.append(
                f"  {row['backend']} vs {row['baseline']} {row['resolution'][0]}x{row['resolution'][1]} "
                f"B={row['batch']} C={row['classes']}: end-to-end speedup "
                f"{row['speedup_end_to_end_p50']:.2f}x (p50 latency ratios, < 1 = faster: {stages})"
            )
    return "\n".join(lines)


CSV_FIELDS = [
    "backend",
    "precision",
    "timing",
    "width",
    "height",
    "batch",
    "classes",
    "stage",
    "n",
    "p50_ms",
    "p90_ms",
    "p99_ms",
    "mean_ms",
    "std_ms",
    "min_ms",
    "max_ms",
    "fps",
    "peak_host_rss_bytes",
]


def write_csv(report: dict, path: str) -> None:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_FIELDS)
        writer.writeheader()
        n = report["settings"]["iters"]
        for res in report["results"]:
            rows = [(s, st) for s, st in res["stages"].items()] + [
                ("other", res["other"]),
                ("end_to_end", res["end_to_end"]),
            ]
            for stage, st in rows:
                writer.writerow(
                    {
                        "backend": res["backend"],
                        "precision": res["precision"],
                        "timing": res["timing"],
                        "width": res["resolution"][0],
                        "height": res["resolution"][1],
                        "batch": res["batch"],
                        "classes": res["classes"],
                        "stage": stage,
                        "n": n,
                        **{f"{k}_ms": round(st[k], 4) for k in ("p50", "p90", "p99", "mean", "std", "min", "max")},
                        "fps": round(res["fps"], 3) if stage == "end_to_end" else "",
                        "peak_host_rss_bytes": res["peak_host_rss_bytes"],
                    }
                )
        for row in report["text_encoder"]:
            st = row["wall"]
            writer.writerow(
                {
                    "backend": row["backend"],
                    "classes": row["classes"],
                    "stage": "text_encoder",
                    "n": row["n"],
                    **{f"{k}_ms": round(st[k], 4) for k in ("p50", "p90", "p99", "mean", "std", "min", "max")},
                }
            )


def write_plot(report: dict, path: str) -> None:
    """Stage breakdown (stacked mean ms per configuration) and end-to-end latency histograms (Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = report["results"]
    labels = [
        f"{r['backend']}\n{r['resolution'][0]}x{r['resolution'][1]} B{r['batch']} C{r['classes']}" for r in results
    ]
    fig, (bars, hist) = plt.subplots(1, 2, figsize=(max(10, 2.2 * len(results) + 6), 5))
    bottom = np.zeros(len(results))
    present = [s for s in STAGES + COPY_STAGES if any(s in r["stages"] for r in results)]
    for stage in present + ["other"]:
        values = np.array(
            [(r["other"] if stage == "other" else r["stages"].get(stage, {"mean": 0.0}))["mean"] for r in results]
        )
        bars.bar(range(len(results)), values, bottom=bottom, label=stage)
        bottom += values
    bars.set_xticks(range(len(results)))
    bars.set_xticklabels(labels, fontsize=7)
    bars.set_ylabel("mean latency per call (ms)")
    bars.set_title("stage breakdown")
    bars.legend(fontsize=8)
    for r, label in zip(results, labels):
        hist.hist(r["samples_ms"]["end_to_end"], bins=30, alpha=0.5, label=label.replace("\n", " "))
    hist.set_xlabel("end-to-end latency (ms)")
    hist.set_ylabel("calls")
    hist.set_title("latency histogram")
    hist.legend(fontsize=7)
    fig.suptitle(f"zsseg_rt profile: {report['system']['cpu']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_outputs(report: dict, out_dir: str, plot: bool = True) -> Dict[str, str]:
    """profile.json, profile.csv and (``plot``) profile.png in ``out_dir``; a write the disk refuses (full) raises an
    ``OSError`` naming the file."""
    from zsseg_rt.errors import naming_path

    os.makedirs(out_dir, exist_ok=True)
    paths = {"json": os.path.join(out_dir, "profile.json"), "csv": os.path.join(out_dir, "profile.csv")}
    with naming_path(paths["json"], "writing the report"), open(paths["json"], "w", encoding="utf-8") as handle:
        json.dump(report, handle, indent=1)
    with naming_path(paths["csv"], "writing the report"):
        write_csv(report, paths["csv"])
    if plot:
        paths["png"] = os.path.join(out_dir, "profile.png")
        with naming_path(paths["png"], "writing the plot"):
            write_plot(report, paths["png"])
    return paths
