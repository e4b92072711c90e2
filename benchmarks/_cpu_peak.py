"""The theoretical peak per precision and where the int8 encoder's time goes (issue 54 items 2 and 3), for
``python -m benchmarks cpu`` (``benchmarks/cpu.py``; not a program of its own).

**Theoretical peak** = cores x clock x operations per cycle per core (one multiply-add counted as 2):

* cores: the threads the benchmark runs, at most the CPUs of this process's affinity (``os.sched_getaffinity``);
  where /proc/cpuinfo shows SMT (``siblings`` > ``cpu cores``) two threads may share one core's pipes, said so;
* clock: ``/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq`` where present (the highest clock: AVX-512 and
  AMX code may run at a lower licence clock, so the peak is an upper bound), else the first ``cpu MHz`` of
  /proc/cpuinfo (the clock the kernel reports: in a VM (``hypervisor`` flag) usually the TSC / base clock, not the
  turbo or the AVX-512 / AMX clock); the source is printed;
* operations per cycle per core: ``PER_CYCLE``, the first row of the precision whose flags (``cpu_features()``)
  the CPU has. The number of FMA pipes is not readable from the kernel, so every row states its assumption:

  ========= =============== ====================================================== ======
  precision flag            per cycle per core                                      ops
  ========= =============== ====================================================== ======
  fp32      avx512f         2 pipes x 16 fp32 lanes x 2 (FMA)                          64
  fp32      avx2 + fma      2 pipes x 8 fp32 lanes x 2 (FMA)                           32
  fp32      asimd (arm64)   2 pipes x 4 fp32 lanes x 2 (FMA)                           16
  bf16      amx_bf16        AMX-BF16 TMUL (Intel's figure)                           1024
  bf16      avx512_bf16     2 pipes x 32 bf16 products x 2 (vdpbf16ps)                128
  bf16      bf16 (arm64)    unknown (BFDOT / BFMMLA rates differ between cores)
  int8      amx_int8        AMX-INT8 TMUL (Intel's figure)                           2048
  int8      avx512_vnni     2 pipes x 64 u8 x s8 products x 2 (vpdpbusd)              256
  int8      avx_vnni        2 pipes x 32 u8 x s8 products x 2 (256-bit vpdpbusd)      128
  int8      avx512bw        2 pipes x 64 u8 x s8 products x 2 (vpmaddubsw)            256
  int8      avx2            2 pipes x 32 u8 x s8 products x 2 (vpmaddubsw)            128
  int8      i8mm (arm64)    unknown (SMMLA rates differ between cores)
  int8      asimddp (arm64) 2 pipes x 16 int8 products x 2 (SDOT / UDOT)               64
  ========= =============== ====================================================== ======

  Two 512-bit FMA pipes: server Intel Xeon (Skylake-SP Gold / Platinum and later) and AMD Zen 5; Zen 4 runs 512-bit
  instructions as 2 x 256 (half: fp32 32, bf16 64, VNNI 128) and some Xeon Silver / Bronze have one 512-bit pipe.
  Two 256-bit pipes: Intel since Haswell, AMD since Zen 2. Two 128-bit NEON pipes: Cortex-A78AE (Jetson Orin),
  A78, A76 (Neoverse V1 / V2 and Cortex-X have four). AMX: one tile multiply (16 x 16 x 32 bf16 or 16 x 16 x 64
  int8 multiply-adds) per 16 cycles and core, Intel's 1024 bf16 / 2048 int8 operations per cycle and core.
  ``vpmaddubsw`` without VNNI: an upper bound (the ``vpmaddwd`` + ``vpaddd`` that widen its int16 pair sums share
  those pipes, and the pair sums saturate: zsseg_rt quantises 7-bit weights there).

``use_theory`` then makes each precision's peak the larger of the measured best (``cpu.honest_peaks``) and the
theory: no row exceeds 100 %, and the table names the peak used.

**Where the int8 encoder's time goes**: the OpenVINO NNCF int8 encoder compiled again with ``PERF_COUNT``
(``request.get_profiling_info()``: node, type, kernel, time per executed node) and ONNX Runtime's dynamic int8
encoder run with ``SessionOptions.enable_profiling`` (its JSON trace), each node's time put into a kind (``KINDS``).
"""

from __future__ import annotations

import datetime
import json
import os
import time
from collections import defaultdict
from typing import Callable, Dict, FrozenSet, Iterable, List, Optional, Sequence, Tuple

import numpy as np

PRECISIONS = ("fp32", "bf16", "int8")
CPUFREQ = "/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq"
CPUINFO = "/proc/cpuinfo"
TWO_512 = (
    "2 x 512-bit pipes per core: server Xeon (Skylake-SP Gold/Platinum and later), AMD Zen 5; Zen 4 (2 x 256 per "
    "512-bit op) and 1-pipe Xeon Silver/Bronze: half"
)
TWO_256 = "2 x 256-bit pipes per core: Intel since Haswell, AMD since Zen 2"
TWO_NEON = "2 x 128-bit NEON pipes per core: Cortex-A78AE (Jetson Orin), A78, A76; Neoverse V1/V2, Cortex-X: 4"
AMX = "Intel's figure: one 16-cycle tile multiply per core (16 x 16 x {k} multiply-adds), tiles fed from cache"
SATURATES = "an upper bound: the vpmaddwd + vpaddd widening its int16 sums share those pipes; the sums saturate"

# (precision, architecture, flags all required, operations per cycle per core or None = unknown, how, assumption)
PER_CYCLE: Tuple[Tuple[str, str, Tuple[str, ...], Optional[int], str, str], ...] = (
    ("fp32", "x86", ("avx512f",), 64, "2 pipes x 16 fp32 lanes x 2 (FMA)", TWO_512),
    ("fp32", "x86", ("avx2", "fma"), 32, "2 pipes x 8 fp32 lanes x 2 (FMA)", TWO_256),
    ("fp32", "arm64", ("asimd",), 16, "2 pipes x 4 fp32 lanes x 2 (FMA)", TWO_NEON),
    ("bf16", "x86", ("amx_bf16",), 1024, "AMX-BF16 TMUL", AMX.format(k=32)),
    ("bf16", "x86", ("avx512_bf16",), 128, "2 pipes x 32 bf16 products x 2 (vdpbf16ps)", TWO_512),
    ("bf16", "arm64", ("bf16",), None, "", "BFDOT / BFMMLA rates differ between Arm cores: not in the table"),
    ("int8", "x86", ("amx_int8",), 2048, "AMX-INT8 TMUL", AMX.format(k=64)),
    ("int8", "x86", ("avx512_vnni",), 256, "2 pipes x 64 u8 x s8 products x 2 (vpdpbusd)", TWO_512),
    ("int8", "x86", ("avx_vnni",), 128, "2 pipes x 32 u8 x s8 products x 2 (256-bit vpdpbusd)", TWO_256),
    ("int8", "x86", ("avx512bw",), 256, "2 pipes x 64 u8 x s8 products x 2 (vpmaddubsw)", f"{TWO_512}; {SATURATES}"),
    ("int8", "x86", ("avx2",), 128, "2 pipes x 32 u8 x s8 products x 2 (vpmaddubsw)", f"{TWO_256}; {SATURATES}"),
    ("int8", "arm64", ("i8mm",), None, "", "SMMLA rates differ between Arm cores: not in the table"),
    ("int8", "arm64", ("asimddp",), 64, "2 pipes x 16 int8 products x 2 (SDOT/UDOT)", TWO_NEON),
)


# ---- the theoretical peak ----------------------------------------------------------------------------------------
def read_clock(cpufreq: str = CPUFREQ, cpuinfo: str = CPUINFO, vm: bool = False) -> Tuple[Optional[float], str]:
    """``(GHz or None, where it was read and what it is)``: cpufreq's maximum, else /proc/cpuinfo's ``cpu MHz``."""
    try:
        with open(cpufreq, encoding="utf-8") as handle:
            khz = float(handle.read().strip())
        return khz / 1e6, f"{cpufreq} (the highest clock; AVX-512 / AMX code may run slower: an upper bound)"
    except (OSError, ValueError):
        pass
    try:
        with open(cpuinfo, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                if key.strip() == "cpu MHz":
                    where = "a VM (hypervisor flag): " if vm else ""
                    return float(value) / 1e3, (
                        f"/proc/cpuinfo `cpu MHz` (no cpufreq; {where}often the TSC / base clock, not the turbo or "
                        "the AVX-512 / AMX clock)"
                    )
    except (OSError, ValueError):
        pass
    return None, f"no clock readable (no {cpufreq}, no `cpu MHz` in {cpuinfo})"


def cores_used(threads: int, cpuinfo: str = CPUINFO) -> Tuple[int, str]:
    """``(cores counted, how)``: the benchmark's threads, at most this process's CPUs; an SMT note where present."""
    try:
        available = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        available = os.cpu_count() or 1
    cores = max(1, min(threads, available))
    text = f"{cores} (the benchmark's threads: {threads}; CPUs in this process's affinity: {available})"
    fields: Dict[str, str] = {}
    try:
        with open(cpuinfo, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    siblings, physical = fields.get("siblings", ""), fields.get("cpu cores", "")
    if siblings.isdigit() and physical.isdigit() and int(siblings) > int(physical):
        text += f"; SMT ({siblings} threads on {physical} cores): two threads may share one core's pipes"
    return cores, text


def theoretical_peaks(features, ghz: Optional[float], cores: int) -> Dict[str, dict]:
    """Per precision: ``{"gflops": float or None, "formula", "assumption", "reason"}`` (``reason``: why None).

    ``features``: a ``zsseg_rt.runtime.cpu_features.CpuFeatures`` (``.flags``, ``.x86``, ``.arm64``); ``ghz``: the
    clock (None: unknown); ``cores``: the cores counted. GFLOP/s = cores x GHz x ``PER_CYCLE`` operations."""
    arch = "x86" if features.x86 else "arm64" if features.arm64 else features.machine
    out: Dict[str, dict] = {}
    for precision in PRECISIONS:
        rows = [row for row in PER_CYCLE if row[0] == precision and row[1] == arch]
        row = next((row for row in rows if set(row[2]) <= features.flags), None)
        entry: dict = {"gflops": None, "formula": "", "assumption": "", "reason": ""}
        if not features.flags:
            entry["reason"] = "no CPU flags readable (/proc/cpuinfo)"
        elif row is None:
            wanted = "; ".join("+".join(r[2]) for r in rows) or f"none for {arch}"
            entry["reason"] = f"no row of the table matches this CPU's flags (rows: {wanted})"
        elif row[3] is None:
            entry.update(assumption=row[5], reason=f"{'+'.join(row[2])}: {row[5]}")
        elif ghz is None:
            entry.update(assumption=row[5], reason="the clock is not readable")
        else:
            entry.update(
                gflops=cores * ghz * row[3],
                formula=f"{cores} {'core' if cores == 1 else 'cores'} x {ghz:.2f} GHz x {row[3]} per cycle "
                f"({'+'.join(row[2])}: {row[4]})",
                assumption=row[5],
            )
        out[precision] = entry
    return out


def theory_of_this_machine(features, threads: int) -> dict:
    """``r["theory"]`` of a run: the clock and cores read here and ``theoretical_peaks`` per precision."""
    ghz, clock = read_clock(vm="hypervisor" in features.flags)
    cores, how = cores_used(threads)
    return {"peaks": theoretical_peaks(features, ghz, cores), "clock": clock, "ghz": ghz, "cores": how}


def use_theory(r: dict) -> None:
    """After ``honest_peaks``: keep the measured peaks as ``r["peak_measured"]`` / ``r["peak_measured_from"]`` and
    make ``r["peak"][p]`` the larger of the measured best and the theory (``r["theory"]``), ``r["peak_from"][p]``
    the measured path's name or ``"theoretical: <formula>"``."""
    r["peak_measured"], r["peak_measured_from"] = dict(r["peak"]), dict(r["peak_from"])
    for precision, entry in (r.get("theory") or {}).get("peaks", {}).items():
        theory = entry.get("gflops")
        measured = r["peak"].get(precision, float("nan"))
        if theory is not None and precision in r["peak"] and not measured >= theory:  # NaN: the theory
            r["peak"][precision], r["peak_from"][precision] = theory, f"theoretical: {entry['formula']}"


def theory_cell(r: dict, precision: str, gflops: float) -> str:
    """The encoder table's "% of the theoretical peak" cell: blank where the theory is unknown, never above 100 %
    (a rate above the theory says its assumptions do not hold here)."""
    theory = ((r.get("theory") or {}).get("peaks", {}).get(precision) or {}).get("gflops")
    if not theory:
        return ""
    if gflops > theory:
        return "above it (assumption wrong here)"
    return f"{100 * gflops / theory:.1f} %"


def render_peaks(r: dict) -> List[str]:
    """The "### Peak per precision" subsection: theory and measured side by side, and the peak used."""
    theory = r.get("theory") or {}
    measured = r.get("peak_measured", r["peak"])
    measured_from = r.get("peak_measured_from", r.get("peak_from", {}))
    lines = ["### Peak per precision: the measured best, the theoretical, and the one used (the larger)", ""]
    if not theory:
        lines += ["Theoretical peak: not recorded in this run (it predates it); the peaks are the measured ones.", ""]
    else:
        lines += [
            f"Theoretical peak = cores x clock x operations per cycle per core (`benchmarks/_cpu_peak.py`, `PER_CYCLE`; "
            f"a multiply-add counts 2). Cores counted: {theory['cores']}. Clock: "
            + (f"{theory['ghz']:.2f} GHz from {theory['clock']}." if theory.get("ghz") else f"{theory['clock']}.")
            + " The FMA-pipe count is not readable from the kernel: each row's assumption is printed.",
            "",
        ]
    lines += [
        "| precision | measured best GFLOP/s (path) | theoretical GFLOP/s | formula, assumption | peak used |",
        "|---|---:|---:|---|---|",
    ]
    for precision in PRECISIONS:
        if precision not in r["peak"]:
            continue
        entry = (theory.get("peaks") or {}).get(precision) or {}
        value = measured.get(precision, float("nan"))
        best = f"{value:.0f} ({measured_from.get(precision)})" if measured_from.get(precision) else "none measured"
        gflops = entry.get("gflops")
        cell = f"{gflops:.0f}" if gflops else "unknown"
        how = f"{entry['formula']}; {entry['assumption']}" if gflops else entry.get("reason", "not recorded")
        used = r.get("peak_from", {}).get(precision) or ""
        if not used:
            used = "none (nothing measured, no theory)"
        elif used.startswith("theoretical"):
            used = f"theoretical ({r['peak'][precision]:.0f})"
        else:
            below = " (the theory is below it: its assumption does not hold here)" if gflops else ""
            used = f"measured: {used} ({r['peak'][precision]:.0f}){below}"
        lines.append(f"| {precision} | {best} | {cell} | {how} | {used} |")
    return lines + [""]


# ---- where the int8 encoder's time goes --------------------------------------------------------------------------
WEIGHT, ATTENTION, SOFTMAX, NORM, QUANT, ELTWISE, LAYOUT, OTHER = KINDS = (
    "weight GEMMs (FullyConnected / MatMul or Conv with a constant weight)",
    "attention GEMMs (activation x activation MatMul, MHA)",
    "softmax",
    "layer norm (MVN)",
    "quantise / dequantise",
    "GELU and element-wise",
    "layout (Reorder, Transpose, Reshape, Split, Concat, ...)",
    "other",
)
_LAYOUT = {"Reorder", "Transpose", "Reshape", "Split", "VariadicSplit", "Concatenation", "Concat", "Gather"}
_LAYOUT |= {"StridedSlice", "Slice", "Broadcast", "Expand", "Squeeze", "Unsqueeze", "Shape", "ShapeOf", "Flatten"}
_QUANT = {"FakeQuantize", "Convert", "Cast", "QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear"}
_ELTWISE = {"Eltwise", "Gelu", "BiasGelu", "FastGelu", "Erf", "Add", "Mul", "Multiply", "Sub", "Subtract", "Div"}
_ELTWISE |= {"Divide", "Sqrt", "Pow", "Power", "Tanh", "Sigmoid", "Relu", "Clip", "Where", "Select", "QuickGelu"}


def openvino_kind(
    node_type: str, originals: FrozenSet[str] = frozenset(), constant_input: bool = False, kernel: str = ""
) -> str:
    """The kind of one executed OpenVINO CPU node: ``node_type`` its type (``ProfilingInfo.node_type``),
    ``originals`` the types of the model's layers fused into it (``originalLayersNames``: a ``Subgraph`` with a
    MatMul is the snippets MHA, its softmax inside; a Multiply with a FakeQuantize is NNCF's SmoothQuant scale and
    the activation's quantisation), ``constant_input`` whether its second input is a constant (a MatMul with a
    constant weight), ``kernel`` its ``exec_type`` (a Convert of int32 is shape arithmetic, not quantisation)."""
    if node_type.startswith("FullyConnected") or node_type in ("Convolution", "Deconvolution"):
        return WEIGHT
    if node_type == "MatMul":
        return WEIGHT if constant_input else ATTENTION
    if node_type in ("ScaledDotProductAttention", "MHA") or (node_type == "Subgraph" and "MatMul" in originals):
        return ATTENTION
    if node_type == "Softmax" or (node_type == "Subgraph" and "Softmax" in originals):
        return SOFTMAX
    if node_type in ("MVN", "LayerNorm", "RMS", "NormalizeL2") or "MVN" in originals:
        return NORM
    if node_type == "Convert" and kernel.lower().endswith(("_i32", "_i64")):
        return OTHER
    if node_type in _QUANT or (originals and originals <= _QUANT | {"Subtract", "Multiply"} and originals & _QUANT):
        return QUANT
    if node_type in _ELTWISE or node_type == "Subgraph":
        return ELTWISE
    return LAYOUT if node_type in _LAYOUT else OTHER


def onnxruntime_kind(op_type: str, weight_matmul: bool = False) -> str:
    """The kind of one ONNX Runtime node (its trace's ``args.op_name``); ``weight_matmul``: a float MatMul whose
    second input is a constant (the dynamic recipe quantises those: one left float is still a weight GEMM)."""
    if op_type in ("MatMulInteger", "MatMulIntegerToFloat", "DynamicQuantizeMatMul", "ConvInteger", "Conv", "Gemm"):
        return WEIGHT
    if op_type in ("MatMul", "FusedMatMul"):
        return WEIGHT if weight_matmul else ATTENTION
    if op_type in ("Attention", "MultiHeadAttention"):
        return ATTENTION
    if op_type == "Softmax":
        return SOFTMAX
    if op_type in ("LayerNormalization", "SkipLayerNormalization", "SimplifiedLayerNormalization"):
        return NORM
    if op_type in _QUANT:
        return QUANT
    if op_type in _ELTWISE:
        return ELTWISE
    return LAYOUT if op_type in _LAYOUT else OTHER


def _precision_word(kernel: str) -> str:
    return kernel.rsplit("_", 1)[-1] if "_" in kernel else kernel


def group_times(entries: Iterable[Tuple[str, float, str]], calls: int) -> List[dict]:
    """``entries``: ``(kind, ms, kernel)`` of every executed node over ``calls`` calls. Returns one row per kind,
    largest first: ``{"kind", "ms"`` (per call), ``"share"`` (of the summed node times), ``"kernels"`` (the kernels
    by their share of the kind's time, e.g. ``brgemm_avx512_amx_I8 96 %``)}."""
    ms: Dict[str, float] = defaultdict(float)
    kernels: Dict[str, Dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for kind, t, kernel in entries:
        ms[kind] += t
        kernels[kind][kernel or "?"] += t
    total = sum(ms.values()) or 1.0
    rows = []
    for kind in sorted(ms, key=lambda k: -ms[k]):
        mine = sorted(kernels[kind].items(), key=lambda kv: -kv[1])
        seen = ", ".join(f"{k} {100 * t / (ms[kind] or 1.0):.0f} %" for k, t in mine[:3])
        rows.append({"kind": kind, "ms": ms[kind] / calls, "share": ms[kind] / total, "kernels": seen})
    return rows


def _seconds(value) -> float:
    return value.total_seconds() if isinstance(value, datetime.timedelta) else float(value)


def openvino_entries(
    infos: Sequence, runtime_model=None, original_model=None, mean_of: int = 1, minus: Optional[Dict[str, float]] = None
) -> List[Tuple[str, float, str]]:
    """``(kind, ms, kernel)`` of each executed ``ProfilingInfo`` (``real_time``: a ``datetime.timedelta``), the
    kinds refined by the compiled model's runtime graph (fused layers, constant inputs) where given. The CPU
    plugin's ``real_time`` is each node's mean over every call since the compile (OpenVINO 2026.4, measured: it
    falls as calls add up): ``mean_of`` calls so far, ``minus`` the seconds per node of calls to leave out."""
    fused, constant = _runtime_graph(runtime_model, original_model)
    out = []
    for info in infos:
        name = info.node_name
        seconds = _seconds(info.real_time) * mean_of - (minus or {}).get(name, 0.0)
        if seconds <= 0:
            continue
        kind = openvino_kind(info.node_type, fused.get(name, frozenset()), name in constant, str(info.exec_type))
        out.append((kind, 1e3 * seconds, str(info.exec_type)))
    return out


def _runtime_graph(runtime_model, original_model) -> Tuple[Dict[str, FrozenSet[str]], set]:
    """(runtime node -> types of the original layers fused into it, runtime nodes with a constant input)."""
    if runtime_model is None:
        return {}, set()
    types = {op.get_friendly_name(): op.get_type_name() for op in original_model.get_ops()} if original_model else {}
    fused, constant, layer = {}, set(), {}
    for op in runtime_model.get_ordered_ops():
        info = op.get_rt_info()
        layer[op.get_friendly_name()] = str(info["layerType"].astype(str)) if "layerType" in info else ""
        names = str(info["originalLayersNames"].astype(str)) if "originalLayersNames" in info else ""
        fused[op.get_friendly_name()] = frozenset(types.get(n, "") for n in names.split(",") if n) - {""}
        sources = [i.get_source_output().get_node().get_friendly_name() for i in op.inputs()]
        if any(_is_constant(s, runtime_model, layer) for s in sources[1:2]):
            constant.add(op.get_friendly_name())
    return fused, constant


def _is_constant(name: str, model, layer: Dict[str, str], depth: int = 0) -> bool:
    """Whether a runtime node is a constant, or a layout / convert node of constants only (the weight's path)."""
    kind = layer.get(name, "")
    if kind == "Const":
        return True
    if depth > 3 or kind not in _LAYOUT | _QUANT:
        return False
    op = next(o for o in model.get_ordered_ops() if o.get_friendly_name() == name)
    inputs = [i.get_source_output().get_node().get_friendly_name() for i in op.inputs()]
    return bool(inputs) and all(_is_constant(n, model, layer, depth + 1) for n in inputs)


def profile_openvino(ir: str, crops: np.ndarray, threads: int, calls: int) -> dict:
    """The NNCF int8 IR compiled as the benchmark's row is, with ``PERF_COUNT`` on; one warm-up call, then
    ``calls`` calls on the photo's windows ``crops`` ``[n, 3, S, S]`` float32, their node times grouped."""
    import openvino as ov

    core = ov.Core()
    model = core.read_model(ir)
    config = {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": threads, "NUM_STREAMS": 1}
    config.update(PERFORMANCE_HINT="LATENCY", DYNAMIC_QUANTIZATION_GROUP_SIZE="0")  # as cpu.encoder_runs compiles
    compiled = core.compile_model(model, "CPU", {**config, ov.properties.enable_profiling(): True})
    request = compiled.create_infer_request()
    request.infer([crops])
    warm = {info.node_name: _seconds(info.real_time) for info in request.get_profiling_info()}
    wall = 0.0
    for _ in range(calls):
        start = time.perf_counter()
        request.infer([crops])
        wall += time.perf_counter() - start
    infos = request.get_profiling_info()  # each node's mean over the warm-up and the calls: the warm-up taken out
    entries = openvino_entries(infos, compiled.get_runtime_model(), model, calls + 1, warm)
    return {
        "rows": group_times(entries, calls),
        "calls": calls,
        "wall_ms": 1e3 * wall / calls,
        "tool": "PERF_COUNT",
        "note": "A fused node counts as its kind: a FullyConnected with its dequantisation and bias, the snippets MHA "
        "subgraph with its softmax; the plugin's counters are each node's mean since the compile (the warm-up is "
        "taken out)",
    }


def profile_onnxruntime(path: str, crops: np.ndarray, threads: int, calls: int, tmp: str) -> dict:
    """ONNX Runtime's dynamic int8 encoder ``path`` with ``enable_profiling``: one warm-up call, then ``calls``
    calls; the trace's node events (``cat == "Node"``) grouped by ``args.op_name``."""
    import onnx
    import onnxruntime as ort

    from zsseg_rt.prepare.onnxruntime import weight_matmuls

    _, float_weights = weight_matmuls(onnx.load(path))  # MatMuls the recipe left float with a constant weight
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.enable_profiling = True
    options.profile_file_prefix = os.path.join(tmp, "ort_int8_profile")
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: crops}
    session.run(None, feed)  # the warm-up: its events end with the trace's first "model_run"
    wall = 0.0
    for _ in range(calls):
        start = time.perf_counter()
        session.run(None, feed)
        wall += time.perf_counter() - start
    with open(session.end_profiling(), encoding="utf-8") as handle:
        trace = json.load(handle)
    return {
        "rows": group_times(onnxruntime_entries(trace, set(float_weights)), calls),
        "calls": calls,
        "wall_ms": 1e3 * wall / calls,
        "tool": "SessionOptions.enable_profiling",
        "note": "ONNX Runtime's optimiser fuses each activation's quantisation, MatMulInteger and the dequantisation "
        "into DynamicQuantizeMatMul: counted as a weight GEMM",
    }


def onnxruntime_entries(trace: List[dict], float_weights: set) -> List[Tuple[str, float, str]]:
    """``(kind, ms, kernel)`` of the trace's node kernel events (``"cat": "Node"``, ``"dur"`` in microseconds) after
    its first ``model_run`` (the warm-up call), ``kernel`` = op type and execution provider."""
    runs = sorted(float(e["ts"]) + float(e.get("dur", 0)) for e in trace if e.get("name") == "model_run")
    after = runs[0] if len(runs) > 1 else float("-inf")
    out = []
    for event in trace:
        if event.get("cat") != "Node" or not str(event.get("name", "")).endswith("_kernel_time"):
            continue
        if float(event.get("ts", 0)) < after:
            continue
        node = str(event["name"])[: -len("_kernel_time")]
        args = event.get("args", {})
        op_type = str(args.get("op_name", ""))
        kernel = f"{op_type} ({str(args.get('provider', '')).replace('ExecutionProvider', '')})"
        out.append((onnxruntime_kind(op_type, node in float_weights), float(event.get("dur", 0)) / 1e3, kernel))
    return out


def int8_profiles(ir: Callable[[], Optional[str]], ort_int8: str, crops, threads: int, calls: int, tmp: str) -> dict:
    """``r["profile"]``: ``{"runs": {row name: profile}, "notes": [why a runtime was not profiled]}``. ``ir``: the
    OpenVINO NNCF int8 IR's path (None: not made here, the reason printed when it was tried), ``ort_int8``: ONNX
    Runtime's dynamic int8 encoder; ``crops``: the photo's windows ``[n, 3, S, S]`` float32."""
    runs: Dict[str, dict] = {}
    notes: List[str] = []
    jobs: List[Tuple[str, Callable[[], Optional[str]], Callable[[str], dict]]] = [
        ("openvino int8 (NNCF)", ir, lambda p: profile_openvino(p, crops, threads, calls)),
        ("onnxruntime int8 (dynamic)", lambda: ort_int8, lambda p: profile_onnxruntime(p, crops, threads, calls, tmp)),
    ]
    for name, where, job in jobs:
        try:
            path = where()
            if path is None or not os.path.isfile(path):
                notes.append(f"{name}: not profiled (its int8 encoder could not be prepared here: see the log)")
                continue
            runs[name] = job(path)
        except Exception as exc:  # a profile is a side table: the run goes on, the reason is printed
            notes.append(f"{name}: not profiled ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})")
    for note in notes:
        print(note, flush=True)
    return {"runs": runs, "notes": notes}


def render_profile(r: dict) -> List[str]:
    """The "### Where the int8 encoder's time goes" subsection (absent from runs that predate it: said so)."""
    profile = r.get("profile")
    lines = ["### Where the int8 encoder's time goes (per layer kind, the photo's windows, a profiled run)", ""]
    if profile is None:
        return lines + ["Not recorded in this run (it predates the profile).", ""]
    for name, run in profile["runs"].items():
        node_ms = sum(row["ms"] for row in run["rows"])
        lines += [
            f"{name}: {run['tool']}, mean of {run['calls']} calls after a warm-up; the nodes' times sum to "
            f"{node_ms:.1f} ms of {run['wall_ms']:.1f} ms per call (profiling on: may be slower than the table above; "
            f"the rest is the runtime between nodes). {run.get('note', '')}",
            "",
            "| kind | ms per call | % of the encoder's node time | kernels seen (share of the kind's time) |",
            "|---|---:|---:|---|",
        ]
        lines += [f"| {w['kind']} | {w['ms']:.1f} | {100 * w['share']:.1f} % | {w['kernels']} |" for w in run["rows"]]
        lines.append("")
    lines += [f"- {note}" for note in profile["notes"]]
    return lines + ([""] if profile["notes"] else [])
