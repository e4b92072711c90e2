#!/usr/bin/env python
"""The CPU path against the hardware's limit (issue 42, item 3 and 4), one run on whatever CPU runs it.

Rows, all measured in the same process and run:

* the CPU's features (``zsseg_rt.runtime.cpu_features``: the int8 and bf16 instructions);
* the GEMM peak of each precision at the image encoder's shapes (ViT-B/16 at a 512x512 window: M = the encoder's
  token count, K x N = 768 x 2304 (qkv), 768 x 768 (attention out), 768 x 3072 (fc1), 3072 x 768 (fc2)): fp32 and
  bf16 through torch (oneDNN: AMX / AVX-512-BF16 where the CPU has them), int8 through ONNX Runtime's
  ``MatMulInteger`` (uint8 x int8 -> int32, the kernel its dynamic-int8 encoder runs) and ``torch._int_mm``;
  the peak of a precision is its best GFLOP/s over those paths, counted on the encoder's mix (the four GEMMs' FLOPs
  over their summed time);
* the image encoder's effective GFLOP/s per backend and precision on the photo's two windows (ONNX Runtime fp32 and
  dynamic int8, OpenVINO fp32 and bf16 = the bundle's encoder ONNX compiled with INFERENCE_PRECISION_HINT, torch
  fp32 and bf16 as the reference; OpenVINO int8 = the runtime's NNCF recipe, gated) and its % of that precision's
  measured peak (``honest_peaks``: the best of every path of this run, never above 100 %) and of the theoretical
  peak (``_cpu_peak``: cores x clock x the features' operations per cycle); the peak used is the larger. FLOPs counted
  analytically (``encoder_flops``; cross-checked against torch's FlopCounterMode on the model);
* where the int8 encoder's time goes per layer kind (``_cpu_peak.int8_profiles``: OpenVINO's PERF_COUNT, ONNX
  Runtime's profiler);
* the Engine vs zsseg_rt's own torch ``predict`` (``benchmarks.precision.REFERENCE``) at C = 20 and C = 171 on the
  VOC photo, label agreement with the Engine fp32 labels (the rows and the timing code are ``benchmarks.precision``'s);
* the Engine's exact post-processing at C = 171 (its "postprocess" stage) against the fastest encoder (item 4);
  with ``--post`` also ``ops.segment_windows`` alone on the photo's window logits and on peaked logits synthesised
  from its ground truth (``peaked_logits``: a trained model's kind, an illustration, not the benchmark).

    .venv/bin/python -m benchmarks cpu --write            # updates BENCHMARKS.md (exports a random bundle first)
    .venv/bin/python -m benchmarks cpu --quick            # tiny model and shapes: that the program runs, no numbers
"""

from __future__ import annotations

import argparse
import copy
import functools
import os
import pickle
import tempfile
import time
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

from ._cpu_peak import int8_profiles, render_peaks, render_profile, theory_cell, theory_of_this_machine, use_theory
from .common import PHOTO, encoder_crops, median_ms, save_window_logits, section_head, show_section
from .precision import REFERENCE, _engine_run, _torch_run, _vocabularies, interleaved

SECTION = "## CPU at the hardware's limit: GEMM peak, encoder GFLOP/s, Engine vs PyTorch, post-processing"
GROUND_TRUTH = PHOTO.parent.parent / "SegmentationClass" / (PHOTO.stem + ".png")  # the photo's VOC label map
TORCH_ROW = "torch fp32 (PyTorch pipeline)"
INT8_ONNX = "image_encoder_int8.onnx"  # ONNX Runtime's dynamic int8 encoder, in the run's temporary folder


# ---- FLOPs -------------------------------------------------------------------------------------------------------
def encoder_flops(tokens: int, width: int, layers: int, grid: int, patch: int, mlp: int = 4) -> float:
    """Multiply-adds x 2 of one window through a ViT image encoder: the patch embedding ``2 g^2 (3 p^2) D`` plus, per
    layer, ``2 N D (3D + D + 2 m D)`` (qkv, attention out, the MLP's two GEMMs) and ``4 N^2 D`` (QK^T and AV).
    LayerNorm, softmax, GELU, the final projection and the head are left out (small next to these)."""
    n, d = tokens, width
    per_layer = 2 * n * d * (3 * d + d + 2 * mlp * d) + 4 * n * n * d
    return float(2 * grid * grid * 3 * patch * patch * d + layers * per_layer)


def _vision(model) -> Tuple[int, int, int, int, int]:
    """(tokens, width, layers, grid, patch) of the model's image encoder at its window size, read off its modules."""
    backbone = model.backbone
    conv = backbone.conv1
    patch, width = int(conv.kernel_size[0]), int(conv.out_channels)
    grid = int(model.config.image_size) // patch
    prompts = int(getattr(backbone, "num_tokens", 0) or 0)
    return 1 + grid * grid + prompts, width, int(backbone.num_layers), grid, patch


def counted_flops(model, size: int) -> float:
    """torch's own FLOP count of ``encode_image`` on one window (the cross-check of ``encoder_flops``)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:  # with autograd on: the counter's module tracker needs grad_fn
        model.encode_image(torch.zeros(1, 3, size, size))
    return float(counter.get_total_flops())


# ---- GEMM peak ---------------------------------------------------------------------------------------------------
def gemm_shapes(tokens: int, width: int, mlp: int = 4) -> List[Tuple[int, int, int]]:
    d = width
    return [(tokens, d, 3 * d), (tokens, d, d), (tokens, d, mlp * d), (tokens, mlp * d, d)]


def _mix_gflops(calls: List[Tuple[Callable[[], object], float]], repeats: int) -> float:
    """GFLOP/s of a set of GEMMs: their FLOPs over the sum of their median times."""
    total_ms = sum(median_ms(fn, repeats, warmup=2) for fn, _ in calls)
    return sum(f for _, f in calls) / (total_ms * 1e6)


def gemm_peaks(shapes, threads: int, repeats: int) -> Dict[str, float]:
    """GFLOP/s on the encoder's GEMM mix per precision path."""
    import torch

    out: Dict[str, float] = {}
    rng = torch.Generator().manual_seed(0)
    for name, dtype in (("fp32 torch", torch.float32), ("bf16 torch", torch.bfloat16)):
        calls = []
        for m, k, n in shapes:
            a, b = torch.randn(m, k, generator=rng).to(dtype), torch.randn(k, n, generator=rng).to(dtype)
            calls.append(((lambda a=a, b=b: torch.matmul(a, b)), 2.0 * m * k * n))
        out[name] = _mix_gflops(calls, repeats)
    calls = []
    for m, k, n in shapes:
        a = torch.randint(-128, 128, (m, k), dtype=torch.int8, generator=rng)
        b = torch.randint(-128, 128, (k, n), dtype=torch.int8, generator=rng)
        calls.append(((lambda a=a, b=b: torch._int_mm(a, b)), 2.0 * m * k * n))
    try:
        out["int8 torch._int_mm"] = _mix_gflops(calls, repeats)
    except RuntimeError as exc:  # no CPU kernel in this torch
        print(f"torch._int_mm: {exc}")
    out["int8 onnxruntime MatMulInteger"] = _ort_int8_mix(shapes, threads, repeats)
    try:
        out.update(_openvino_mixes(shapes, threads, repeats))
    except ImportError as exc:
        print(f"openvino GEMMs: not measured ({exc})")
    return out


def _openvino_mixes(shapes, threads: int, repeats: int) -> Dict[str, float]:
    """OpenVINO's CPU plugin on the same GEMMs (a constant weight, as in the encoder): f32 and bf16 by
    ``INFERENCE_PRECISION_HINT``, int8 as NNCF's IR has it (FakeQuantize on the activation and on the weight in
    front of the MatMul: the plugin runs it as an int8 GEMM on VNNI / AMX-INT8)."""
    import openvino as ov
    import openvino.opset13 as ops

    rng = np.random.default_rng(0)
    core, out = ov.Core(), {}
    config = {"INFERENCE_NUM_THREADS": threads, "NUM_STREAMS": 1, "PERFORMANCE_HINT": "LATENCY"}

    def fq(node, limit: float):
        low, high = ops.constant(np.float32(-limit)), ops.constant(np.float32(limit))
        return ops.fake_quantize(node, low, high, low, high, 256)

    for name, hint, quantised in (("fp32", "f32", False), ("bf16", "bf16", False), ("int8", "f32", True)):
        calls = []
        for m, k, n in shapes:
            a = ops.parameter([m, k], np.float32, name="A")
            weight = ops.constant(rng.standard_normal((k, n)).astype(np.float32))
            left, right = (fq(a, 4.0), fq(weight, 4.0)) if quantised else (a, weight)
            model = ov.Model([ops.matmul(left, right, False, False)], [a])
            request = core.compile_model(model, "CPU", {**config, "INFERENCE_PRECISION_HINT": hint})
            infer = request.create_infer_request()
            x = rng.standard_normal((m, k)).astype(np.float32)
            calls.append(((lambda r=infer, x=x: r.infer([x])), 2.0 * m * k * n))
        out[f"{name} openvino MatMul" + (" (FakeQuantize int8)" if quantised else f" ({hint})")] = _mix_gflops(
            calls, repeats
        )
    return out


def _ort_int8_mix(shapes, threads: int, repeats: int) -> float:
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    calls = []
    for m, k, n in shapes:
        weight = numpy_helper.from_array(rng.integers(-128, 128, (k, n), dtype=np.int8), "B")
        node = helper.make_node("MatMulInteger", ["A", "B"], ["Y"])
        graph = helper.make_graph(
            [node],
            "g",
            [helper.make_tensor_value_info("A", TensorProto.UINT8, [m, k])],
            [helper.make_tensor_value_info("Y", TensorProto.INT32, [m, n])],
            [weight],
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        a = rng.integers(0, 256, (m, k), dtype=np.uint8)
        calls.append(((lambda s=session, a=a: s.run(None, {"A": a})), 2.0 * m * k * n))
    return _mix_gflops(calls, repeats)


# ---- the image encoder per backend and precision -----------------------------------------------------------------
def encoder_runs(bundle: str, model, crops: np.ndarray, threads: int, tmp: str) -> Dict[str, Callable[[], object]]:
    """One call of the image encoder on the photo's windows per (backend, precision) available here."""
    import onnxruntime as ort
    import torch

    from zsseg_rt.bundle import load_meta
    from zsseg_rt.bundle.meta import Files
    from zsseg_rt.prepare.onnxruntime import quantize_image_encoder
    from zsseg_rt.runtime.cpu_features import cpu_features

    meta = load_meta(bundle)
    source = meta.file(Files.IMAGE_ENCODER)
    int8 = os.path.join(tmp, INT8_ONNX)
    quantize_image_encoder(source, int8, reduce_range=cpu_features().int8_saturates)
    runs: Dict[str, Callable[[], object]] = {}
    for name, path in (("onnxruntime fp32", source), ("onnxruntime int8 (dynamic, the runtime's recipe)", int8)):
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        feed = {session.get_inputs()[0].name: crops}
        runs[name] = lambda s=session, f=feed: s.run(None, f)
    try:
        import openvino as ov

        core = ov.Core()
        for precision, hint in (("fp32", "f32"), ("bf16", "bf16")):
            compiled = core.compile_model(
                source,
                "CPU",
                {
                    "INFERENCE_PRECISION_HINT": hint,
                    "INFERENCE_NUM_THREADS": threads,
                    "NUM_STREAMS": 1,
                    "PERFORMANCE_HINT": "LATENCY",
                },
            )
            request = compiled.create_infer_request()
            runs[f"openvino {precision} (INFERENCE_PRECISION_HINT={hint})"] = lambda r=request: r.infer([crops])
        int8_ir = _openvino_int8_ir(bundle, threads)
        if int8_ir is not None:
            config = {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": threads, "NUM_STREAMS": 1}
            config.update(PERFORMANCE_HINT="LATENCY", DYNAMIC_QUANTIZATION_GROUP_SIZE="0")  # as the backend compiles
            request = core.compile_model(int8_ir[0], "CPU", config).create_infer_request()
            runs[f"openvino int8 (NNCF, the runtime's recipe; gate {int8_ir[1]})"] = lambda r=request: r.infer([crops])
    except ImportError as exc:
        print(f"openvino: not installed ({exc})")
    x = torch.from_numpy(crops)
    low = copy.deepcopy(model).to(torch.bfloat16).eval()
    xb = x.to(torch.bfloat16)

    def torch_fp32():
        with torch.inference_mode():
            return model.encode_image(x)

    def torch_bf16():
        with torch.inference_mode():
            return low.encode_image(xb)

    runs["torch fp32"] = torch_fp32
    runs["torch bf16 (model in bf16)"] = torch_bf16
    return runs


@functools.lru_cache(maxsize=None)  # encoder_runs and the profile use the same IR
def _openvino_int8_ir(bundle: str, threads: int) -> Optional[Tuple[str, str]]:
    """``(path, gate verdict)`` of the NNCF int8 image encoder the runtime runs (prepared and gated as
    ``zsseg build-engine --backend openvino --precision int8`` does; a refused one is timed too, its row says so),
    or None where this CPU or installation cannot make it (printed)."""
    from zsseg_rt.bundle import load_meta
    from zsseg_rt.prepare.gate import EngineAccuracyError
    from zsseg_rt.prepare.openvino import INT8_XML, prepare_openvino_precision
    from zsseg_rt.runtime.backends.openvino import gate_key
    from zsseg_rt.runtime.precision_records import precision_root, record_dir

    verdict = "passed"
    try:
        prepare_openvino_precision(bundle, "int8", threads=threads)
    except EngineAccuracyError as exc:
        verdict = "FAILED, timed anyway"
        print(f"openvino int8: {str(exc).splitlines()[0]}")
    except (ImportError, ValueError) as exc:
        print(f"openvino int8: not measured ({str(exc).splitlines()[0]})")
        return None
    meta = load_meta(bundle)
    return os.path.join(record_dir(precision_root(meta), gate_key(meta, "int8")), INT8_XML), verdict


def honest_peaks(r: dict) -> None:
    """``r["peak"][p]``: the best GFLOP/s of precision ``p`` over every path measured in this run, the GEMM
    microbenchmarks at the encoder's shapes and the encoders themselves (their analytic FLOPs over their time), so
    no row exceeds 100 %; ``r["peak_from"][p]`` names the path. ``_cpu_peak.use_theory`` then raises it to the
    theoretical peak where that is known and larger."""
    rates = {n: g for n, g in r["gemm"].items()}
    rates.update({n: r["windows"] * r["flops"] / (ms * 1e6) for n, ms in r["encoders"].items()})
    r["peak"], r["peak_from"] = {}, {}
    for precision in ("fp32", "bf16", "int8"):
        mine = {n: g for n, g in rates.items() if _precision_of(n) == precision}
        best = max(mine, key=lambda n: mine[n]) if mine else ""
        r["peak"][precision], r["peak_from"][precision] = (mine[best] if best else float("nan")), best


def _precision_of(name: str) -> str:
    return next(p for p in ("fp32", "bf16", "int8") if f" {p}" in f" {name}")


# ---- the Engine rows ---------------------------------------------------------------------------------------------
def engines(bundle: str, model, threads: int, notes: List[str], fp32_only: bool = False) -> Dict[str, object]:
    """The Engine per (backend, precision) this machine can build; what could not be built goes into ``notes``."""
    from zsseg_rt.bundle import load_meta
    from zsseg_rt.export.torch_backend import TorchBackend
    from zsseg_rt.runtime import Engine

    out: Dict[str, object] = {}
    out["Engine onnxruntime fp32"] = Engine(bundle, backend="onnxruntime", threads=threads, verify=False)
    if fp32_only:
        return out
    try:
        out["Engine onnxruntime int8"] = Engine(
            bundle, backend="onnxruntime", threads=threads, verify=False, precision="int8"
        )
    except Exception as exc:  # the gate's refusal: measured anyway, the row says so
        from zsseg_rt.prepare.onnxruntime import prepare_onnxruntime_precision

        notes.append(f"ONNX Runtime int8: the accuracy gate refused it ({str(exc).splitlines()[0][:160]})")
        prepare_onnxruntime_precision(bundle, "int8", force=True, accept_below_gate=True, threads=threads)
        out["Engine onnxruntime int8 (gate refused, accepted for the timing)"] = Engine(
            bundle, backend="onnxruntime", threads=threads, verify=False, precision="int8"
        )
    for precision in ("fp32", "bf16"):  # bf16: gated on first use (the accuracy gate against fp32); a refusal noted
        try:
            out[f"Engine openvino {precision}"] = Engine(
                bundle, backend="openvino", threads=threads, verify=False, precision=precision
            )
        except Exception as exc:
            notes.append(f"OpenVINO {precision} Engine: not built ({str(exc).splitlines()[0][:200]})")
    try:
        backend = TorchBackend(load_meta(bundle), device="cpu", model=model, precision="bf16", gate=False)
        out["Engine torch bf16 (gate skipped)"] = Engine(bundle, backend=backend, verify=False)
    except Exception as exc:
        notes.append(f"torch bf16 Engine: not built ({str(exc).splitlines()[0][:160]})")
    return out


# ---- rendering ---------------------------------------------------------------------------------------------------
def _verdict(ok: bool, reason: str) -> str:
    return "**PASS**" if ok else f"**MISS** ({reason})"


def render(r: dict, args) -> str:
    feats = r["features"]
    lines = section_head(SECTION, f"cpu {args.command_tail}", args.threads)
    lines += [
        f"- CPU features (`zsseg_rt.runtime.cpu_features`): {feats.summary()}; AMX: "
        f"{'yes' if {'amx_bf16', 'amx_int8'} & feats.flags else 'no'}, AVX-512F: "
        f"{'yes' if 'avx512f' in feats.flags else 'no'}, AVX2: {'yes' if 'avx2' in feats.flags else 'no'}.",
        f"- Libraries: {r['libraries']}. Weights random (seed 0; latency does not depend on them).",
        f"- Load: {r['load']} (a shared machine: absolute times drift; rows take turns, ratios compare like with like).",
        "",
        f"### GEMM peak per precision (encoder's shapes, M = {r['tokens']} tokens: "
        + ", ".join(f"{k}x{n}" for _, k, n in r["shapes"])
        + f"; FLOPs of the four over their summed median time, {args.repeats} repeats)",
        "",
        "| path | GFLOP/s |",
        "|---|---:|",
    ]
    lines += [f"| {name} | {g:.0f} |" for name, g in r["gemm"].items()]
    lines += [
        "",
        f"### Image encoder, the photo's {r['windows']} windows ({r['size']}x{r['size']}), median of {args.iters} "
        "calls, the rows taking turns (a phase of the run of its own: its load is not the Engine table's)",
        "",
        f"FLOPs per window (`encoder_flops`): 2 g^2 (3 p^2) D + L [2 N D (3D + D + 8D) + 4 N^2 D] with N = "
        f"{r['tokens']} tokens, D = {r['width']}, L = {r['layers']}, g = {r['grid']}, p = {r['patch']}: "
        f"{r['flops'] / 1e9:.2f} GFLOP. Cross-check: torch's FlopCounterMode on `encode_image` counts "
        f"{r['counted'] / 1e9:.2f} GFLOP without the attention kernel it runs on the CPU (not counted by it); with "
        f"the attention term 4 N^2 D L = {_attention(r) / 1e9:.2f} GFLOP added: "
        f"{(r['counted'] + _attention(r)) / 1e9:.2f} GFLOP.",
        "",
        "Measured peak of a precision: the best GFLOP/s of every path measured in this run (the GEMM rows above and "
        "the encoders below), so no row exceeds 100 % of it; the theoretical peak and the peak used (the larger of "
        "the two, the one the targets are judged against): the next subsection.",
        "",
        "| backend, precision | ms | GFLOP/s | % of the precision's measured peak | % of the theoretical peak |",
        "|---|---:|---:|---:|---:|",
    ]
    measured = r.get("peak_measured", r["peak"])
    for name, ms in r["encoders"].items():
        g, precision = r["windows"] * r["flops"] / (ms * 1e6), _precision_of(name)
        lines.append(
            f"| {name} | {ms:.0f} | {g:.0f} | {100 * g / measured[precision]:.0f} % | {theory_cell(r, precision, g)} |"
        )
    lines += [""] + render_peaks(r) + render_profile(r)
    lines += [
        f"### Engine vs {REFERENCE}, {PHOTO.name} as it is (two 512x512 windows), median of {args.iters} frames after "
        f"{args.warmup} warm-up, the rows taking turns (the timing code of `benchmarks.precision`)",
        "",
        "| C | row | ms/photo | vs torch fp32 | labels = Engine fp32 |",
        "|---:|---|---:|---:|---:|",
    ]
    for classes, name, ms, torch_ms, agree in r["rows"]:
        lines.append(f"| {classes} | {name} | {ms:.0f} | {torch_ms / ms:.2f}x | {100 * agree:.3f} % |")
    lines += [f"- {n}" for n in r["notes"]]
    post = r["post_ms"]
    lines += [
        "",
        f"### Post-processing (item 4): the Engine's exact post-processing at C = 171 (its `postprocess` stage, "
        f"`ops.segment_windows` on the photo's windows), median {post:.1f} ms; head {r['head_ms']:.1f} ms.",
        "",
        "### Targets",
        "",
    ]
    lines += r["targets"]
    return "\n".join(lines + [""])


def targets(r: dict) -> List[str]:
    feats, out = r["features"], []
    best = [row for row in r["rows"] if row[0] == 171 and row[1] != TORCH_ROW and "gate" not in row[1]]  # gated
    amx = bool({"amx_bf16", "amx_int8"} & feats.flags)
    if best:
        classes, name, ms, torch_ms, agree = min(best, key=lambda row: row[2])
        speed = torch_ms / ms
        goal = 8.0 if amx else 2.0
        out.append(
            f"- Engine >= {goal:g}x {REFERENCE} at C = 171 in the best gated precision ({'AMX' if amx else 'non-AMX'} CPU; "
            f"fastest row {name}, labels {100 * agree:.3f} % = fp32): {speed:.2f}x, "
            + _verdict(
                speed >= goal,
                f"of its {ms:.0f} ms per photo the head takes {r['head_ms']:.0f} ms and the exact post-processing "
                f"{r['post_ms']:.0f} ms (both measured on the fp32 Engine in the same frames); the rest is its encoder "
                "and preprocessing",
            )
        )
    for precision in ("fp32", "bf16", "int8"):
        rows = {n: ms for n, ms in r["encoders"].items() if _precision_of(n) == precision}
        if not rows:
            continue
        name = min(rows, key=lambda n: rows[n])
        share = r["windows"] * r["flops"] / (rows[name] * 1e6) / r["peak"][precision]
        used = r.get("peak_from", {}).get(precision, "")
        if used in rows:
            out.append(
                f"- Encoder >= 60 % of the {precision} peak used (the measured {used}; best: {name}): **UNJUDGED** "
                f"(no theoretical peak known and no GEMM microbenchmark of {precision} reached the encoder's own "
                "rate, so the peak is the encoder's: the ratio says nothing about the hardware's limit)"
            )
            continue
        used = used if used.startswith("theoretical") else f"measured: {used}" if used else "measured"
        out.append(
            f"- Encoder >= 60 % of the {precision} peak used ({used}, {r['peak'][precision]:.0f} GFLOP/s; best: "
            f"{name}): {100 * share:.0f} %, " + _verdict(share >= 0.6, _encoder_reason(r, precision, rows[name], name))
        )
    share = r["post_ms"] / r["fastest_ms"]
    out.append(
        f"- Post-processing <= 5 % of the fastest encoder ({r['fastest_name']}, {r['fastest_ms']:.0f} ms for the "
        f"photo): {r['post_ms']:.1f} ms = {100 * share:.1f} %, "
        + _verdict(
            share <= 0.05,
            f"the budget is {0.05 * r['fastest_ms']:.1f} ms; the fused exact op reads the C x h x w window logits "
            "and writes the photo's labels and scores, and that one op is the whole stage",
        )
    )
    return out


def _attention(r: dict) -> float:
    return float(r["layers"] * 4 * r["tokens"] ** 2 * r["width"])


def _encoder_reason(r: dict, precision: str, ms: float, name: str = "") -> str:
    """What the measured gap is made of, in numbers from this run: the GEMMs' own best against the peak used, and,
    where the row was profiled (``_cpu_peak.int8_profiles``), its largest layer kinds with the kernels they ran."""
    ideal = r["windows"] * r["flops"] / (r["peak"][precision] * 1e6)
    attention = _attention(r) / r["flops"]
    text = f"its FLOPs at the peak used would take {ideal:.0f} ms, measured {ms:.0f} ms"
    measured = r.get("peak_measured", {}).get(precision)
    if measured and r["peak"][precision] > measured:
        text += (
            f"; the best GEMM path measured here ({r.get('peak_measured_from', {}).get(precision, '')}) reaches "
            f"{measured:.0f} GFLOP/s on the encoder's own shapes, {100 * measured / r['peak'][precision]:.0f} % of the "
            "theory: the kernels are far from it before the encoder's other work is counted"
        )
    profiled = _profile_of(r, name)
    if profiled:
        text += "; where its time goes (profiled, below): " + ", ".join(
            f"{row['kind'].split(' (')[0]} {100 * row['share']:.0f} % ({row['kernels'].split(',')[0]})"
            for row in profiled[:4]
        )
    elif precision == "int8" and "openvino" in name:
        text += f"; the attention GEMMs are {100 * attention:.0f} % of the FLOPs (not profiled in this run)"
    elif precision == "int8":
        text += (
            f"; the dynamic-int8 recipe quantises only the weight MatMuls: the attention GEMMs ({100 * attention:.0f} %"
            " of the FLOPs) stay fp32 and every activation is quantised at run time"
        )
    else:
        text += (
            f"; attention GEMMs (N x N, {100 * attention:.0f} % of the FLOPs), softmax, LayerNorm and GELU run below it"
        )
    return text


def _profile_of(r: dict, name: str) -> List[dict]:
    """The profile rows of the encoder row ``name`` (its backend and precision, e.g. "openvino int8"), or []."""
    runs = (r.get("profile") or {}).get("runs", {})
    key = " ".join(name.split()[:2])
    return next((run["rows"] for profiled, run in runs.items() if profiled.startswith(key)), [])


# ---- main --------------------------------------------------------------------------------------------------------
def _bundle(args, model, tmp: str) -> str:
    from zsseg_rt.export.onnx_export import export_bundle

    if args.bundle and os.path.isfile(os.path.join(args.bundle, "meta.json")):
        return args.bundle
    start = time.perf_counter()
    path = export_bundle(model, args.bundle or os.path.join(tmp, "bundle"), max_classes=256, overwrite=True)
    print(f"exported {path} in {time.perf_counter() - start:.0f}s", flush=True)
    return path


def _load() -> str:
    try:
        return "load average " + ", ".join(f"{v:.1f}" for v in os.getloadavg()) + " at the end of the run"
    except OSError:
        return "unknown"


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", default=None, help="a full-size ZegCLIP bundle (default: export one, random)")
    parser.add_argument("--classes", default="20,171")
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5, help="GEMM microbenchmark repeats")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="tiny model, one frame: that the program runs")
    parser.add_argument("--write", action="store_true", help="update the section in BENCHMARKS.md")
    parser.add_argument("--save", default=None, help="keep the run's measurements in this pickle")
    parser.add_argument("--render", default=None, help="render a --save'd run again (no measuring)")
    parser.add_argument(
        "--post",
        action="store_true",
        help="only item 4's rows: the encoders and the fp32 Engine's post-processing at C = 171 (printed, not written)",
    )
    parser.add_argument("--save-logits", default=None, help="--post: keep the photo's window logits at C = 171 (npz)")
    args = parser.parse_args(argv)
    if args.render:
        _finish(_load_saved(args.render), args)
        return
    if args.quick and args.write:
        parser.error("--quick measures nothing worth writing")
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import cv2
    import onnxruntime
    import torch

    from zsseg_rt.models import create_model
    from zsseg_rt.runtime.cpu_features import cpu_features

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args.quick:
        args.iters, args.warmup, args.repeats = 1, 0, 1
    if args.post and args.write:
        parser.error("--post prints item 4's rows; the section is written by a full run")
    model = create_model("zegclip_tiny_test" if args.quick else "zegclip_vitb16_voc_inductive").eval()
    args.command_tail = "--write" if not args.bundle else "--bundle B --write"
    r: dict = {"features": cpu_features(), "notes": []}
    try:
        import openvino

        ov_version = openvino.__version__
    except ImportError:
        ov_version = "not installed"
    r["libraries"] = f"ONNX Runtime {onnxruntime.__version__}, OpenVINO {ov_version}"
    tokens, width, layers, grid, patch = _vision(model)
    r.update(tokens=tokens, width=width, layers=layers, grid=grid, patch=patch, size=int(model.config.image_size))
    r["shapes"] = gemm_shapes(tokens, width)
    r["gemm"] = {} if args.post else gemm_peaks(r["shapes"], args.threads, args.repeats)
    print(r["gemm"], flush=True)
    r["flops"] = encoder_flops(tokens, width, layers, grid, patch)
    r["counted"] = counted_flops(model, r["size"])
    image = cv2.imread(str(PHOTO), cv2.IMREAD_COLOR)
    with tempfile.TemporaryDirectory() as tmp:
        bundle = _bundle(args, model, tmp)
        built = engines(bundle, model, args.threads, r["notes"], fp32_only=args.post)
        meta = built["Engine onnxruntime fp32"].meta  # type: ignore[attr-defined]
        _, windows, crops = encoder_crops(image, meta)
        r["windows"] = len(windows)
        encoders = interleaved(encoder_runs(bundle, model, crops, args.threads, tmp), args.iters, 1)
        r["encoders"] = {name: ms for name, (ms, _) in encoders.items()}
        print(r["encoders"], flush=True)
        honest_peaks(r)
        r["theory"] = theory_of_this_machine(r["features"], args.threads)
        use_theory(r)
        if args.post:
            post_rows(r, built["Engine onnxruntime fp32"], model, image, crops, args)
            return
        ir = lambda: (_openvino_int8_ir(bundle, args.threads) or (None,))[0]  # noqa: E731
        r["profile"] = int8_profiles(ir, os.path.join(tmp, INT8_ONNX), crops, args.threads, args.iters, tmp)
        stages: Dict[str, List[float]] = {}
        rows: List[tuple] = []
        text = not args.quick  # the tiny model's text width is not the official embeddings'
        for classes, (names, emb) in _vocabularies(model, [int(c) for c in args.classes.split(",")]).items():
            emb = emb if text else None
            runs = {TORCH_ROW: _torch_run(model, names, emb, image)}
            for name, engine in built.items():
                runs[name] = _engine_run(engine, names, emb, image)
            fp32 = built["Engine onnxruntime fp32"]
            fp32.stage_hook = (  # type: ignore[attr-defined]
                (lambda stage, s: stages.setdefault(stage, []).append(s)) if classes == 171 else None
            )
            results = interleaved(runs, args.iters, args.warmup)
            torch_ms, exact = results[TORCH_ROW][0], results["Engine onnxruntime fp32"][1]
            for name, (ms, labels) in results.items():
                rows.append((classes, name, ms, torch_ms, float((labels == exact).mean())))
            print(rows[-len(results) :], flush=True)
    r["rows"], r["args"] = rows, {k: getattr(args, k) for k in ("iters", "warmup", "repeats", "threads", "bundle")}
    r["post_ms"] = 1e3 * float(np.median(stages.get("postprocess", [float("nan")])))
    r["head_ms"] = 1e3 * float(np.median(stages.get("head", [float("nan")])))
    r["fastest_name"] = min(r["encoders"], key=lambda n: r["encoders"][n])
    r["fastest_ms"] = r["encoders"][r["fastest_name"]]
    r["load"] = _load()
    if args.save:
        with open(args.save, "wb") as handle:
            pickle.dump(r, handle)
    _finish(r, args)


def post_rows(r: dict, engine, model, image: np.ndarray, crops: np.ndarray, args) -> None:
    """--post: the fp32 Engine's stages at C = 171 (frames alternating with nothing else), against the encoders
    just measured; prints the post-processing's share of the fastest encoder (item 4's bound: 5 %). Then
    ``ops.segment_windows`` alone on the photo's window logits (the benchmark's: a random-weight model) and, as an
    illustration only, on peaked logits synthesised from the photo's ground truth (``peaked_logits``)."""
    names, emb = _vocabularies(model, [171])[171]
    stages: Dict[str, List[float]] = {}
    engine.stage_hook = lambda stage, s: stages.setdefault(stage, []).append(s)
    interleaved({"Engine onnxruntime fp32": _engine_run(engine, names, emb, image)}, args.iters, args.warmup)
    post = 1e3 * float(np.median(stages["postprocess"][args.warmup :]))
    head = 1e3 * float(np.median(stages["head"][args.warmup :]))
    fastest = min(r["encoders"], key=lambda n: r["encoders"][n])
    share = post / r["encoders"][fastest]
    print(f"post-processing at C = 171: median {post:.1f} ms; head {head:.1f} ms ({args.iters} frames)")
    print(f"fastest encoder: {fastest}, {r['encoders'][fastest]:.0f} ms; post-processing = {100 * share:.1f} %")
    print(_load(), flush=True)
    logits = engine.backend.head(engine._vocab[1], engine.backend.encode_image(crops))
    scaled, windows, _ = encoder_crops(image, engine.meta)
    head_size = (engine.meta.image_size,) * 2
    op_args = (windows, head_size, scaled, image.shape[:2])
    bias = engine._vocab[2]
    peaked = peaked_logits(image.shape[:2], scaled, windows, logits.shape[1], logits.shape[2], head_size[0])
    runs = {
        "the photo's window logits (random-weight model: the benchmark's)": _op_run(logits, op_args, bias),
        "peaked logits from the photo's ground truth (a trained model's kind; illustration only)": _op_run(
            peaked, op_args, bias
        ),
    }
    repeats = max(7, 3 * args.iters)
    for name, (ms, _) in interleaved(runs, repeats, 1).items():
        print(
            f"ops.segment_windows alone, C = {logits.shape[1]}, median of {repeats} calls (alternating): {name}: "
            f"{ms:.1f} ms"
        )
    print(_load(), flush=True)
    if args.save_logits:  # the photo's window logits, for timing ops.segment_windows alone (builds side by side)
        save_window_logits(args.save_logits, engine, logits, image, scaled, windows)


def _op_run(logits: np.ndarray, op_args: tuple, bias) -> Callable[[], np.ndarray]:
    from zsseg_rt import ops

    return lambda: ops.segment_windows(logits, *op_args, class_bias=bias)[0]


def peaked_logits(
    size: Tuple[int, int], scaled: Tuple[int, int], windows, classes: int, grid: int, head: int, seed: int = 0
) -> np.ndarray:
    """Window logits ``[n, classes, grid, grid]`` like a trained model's, for timing only (not the benchmark): the
    photo's VOC ground truth (``GROUND_TRUTH``, ``size`` = its height and width; ids 0-20 used as class indices, void
    as 0) resized to the rescaled image (nearest), each window cut and zero-padded to the head size as its input
    was, and per logits cell the share p of each class: logit 8 p - 4 plus N(0, 0.5) noise (a region's class near
    +4, the others near -4)."""
    import cv2
    from PIL import Image

    truth = np.asarray(Image.open(GROUND_TRUTH), dtype=np.int64)
    if truth.shape != tuple(size):
        raise ValueError(f"{GROUND_TRUTH} is {truth.shape}, the photo {tuple(size)}")
    truth = np.where(truth == 255, 0, truth) % classes
    label = cv2.resize(truth.astype(np.uint8), (scaled[1], scaled[0]), interpolation=cv2.INTER_NEAREST)
    rng = np.random.default_rng(seed)
    cell = head // grid
    out = np.empty((len(windows), classes, grid, grid), np.float32)
    for k, w in enumerate(windows):
        crop = np.zeros((head, head), np.int64)
        crop[: w.y2 - w.y1, : w.x2 - w.x1] = label[w.y1 : w.y2, w.x1 : w.x2]
        cells = crop[: grid * cell, : grid * cell].reshape(grid, cell, grid, cell)
        share = np.zeros((classes, grid, grid))
        for c in np.unique(crop):
            share[c] = (cells == c).mean(axis=(1, 3))
        out[k] = 8 * share - 4 + rng.normal(0.0, 0.5, share.shape)
    return out


def _load_saved(path: str) -> dict:
    with open(path, "rb") as handle:
        return pickle.load(handle)  # noqa: S301 - the program's own --save file


def _finish(r: dict, args) -> None:
    for key, value in r.get("args", {}).items():
        setattr(args, key, value)
    args.command_tail = "--write" if not args.bundle else "--bundle B --write"
    r["targets"] = targets(r)
    show_section(SECTION, render(r, args), args.write)


if __name__ == "__main__":
    main()
