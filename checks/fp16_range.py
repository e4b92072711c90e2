"""Where can a bundle's graphs overflow in fp16? Runs each ONNX graph with ONNX Runtime (fp32) on the sample photos
and random inputs, records every float intermediate's max magnitude, and evaluates each L2 normalisation's sum of
squares (the ReduceL2 input) in numpy float16 the way an fp16 engine would: squares and sum in fp16.

fp16's largest finite value is 65504, so x*x overflows once |x| > 255.9 and the sum of squares once ||x|| > 255.9.

Usage: python -m checks fp16_range BUNDLE [--random 2] [--json out.json] [--ops Add,MatMul] [--max-windows N]
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Dict, List, Optional, Set

import numpy as np

FP16_MAX = float(np.finfo(np.float16).max)


def _with_all_outputs(path: str, ops: Optional[Set[str]] = None):
    """The graph with float intermediates exposed as outputs: all of them, or (``ops``) those produced by nodes of
    these types plus every ReduceL2 input (a full-size graph's every tensor at once would need gigabytes)."""
    import onnx

    model = onnx.load(path)
    inferred = onnx.shape_inference.infer_shapes(model)
    known = {o.name for o in model.graph.output}
    l2_inputs = {node.input[0]: node.name for node in model.graph.node if node.op_type == "ReduceL2"}
    wanted = None
    if ops is not None:
        wanted = set(l2_inputs) | {out for node in model.graph.node if node.op_type in ops for out in node.output}
    floats = [
        info
        for info in inferred.graph.value_info
        if info.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
        and info.name not in known
        and (wanted is None or info.name in wanted)
    ]
    model.graph.output.extend(floats)
    return model, l2_inputs


def _session(model):
    import onnxruntime as ort

    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def _fp16_sum_of_squares(x: np.ndarray) -> np.ndarray:  # [..., D] -> [...] float16, as an fp16 engine computes it
    half = x.astype(np.float16)
    with np.errstate(over="ignore"):  # an overflow to inf is what this measures
        return np.sum(half * half, axis=-1, dtype=np.float16)


def graph_report(path: str, feeds_list: List[Dict[str, np.ndarray]], ops: Optional[Set[str]] = None) -> Dict:
    """Max |finite value| of the float intermediates (all, or those of ``ops`` nodes), which of them hold +-inf
    already in fp32, and the fp16 sum of squares before every ReduceL2."""
    model, l2_inputs = _with_all_outputs(path, ops)
    session = _session(model)
    names = [o.name for o in session.get_outputs()]
    peak: Dict[str, float] = {}  # max |finite value|
    infinite: Set[str] = set()
    l2: Dict[str, Dict] = {}
    for feeds in feeds_list:
        for name, value in zip(names, session.run(names, feeds)):
            if value.dtype != np.float32 or value.size == 0:
                continue
            finite = np.isfinite(value)
            if not finite.all():  # e.g. the text tower's causal mask (-inf by design, already in fp32)
                infinite.add(name)
            peak[name] = max(peak.get(name, 0.0), float(np.abs(value[finite]).max(initial=0.0)))
            if name in l2_inputs:
                entry = l2.setdefault(l2_inputs[name], {"input": name, "max_norm": 0.0, "fp16_inf": False})
                entry["max_norm"] = max(entry["max_norm"], float(np.linalg.norm(value, axis=-1).max()))
                entry["max_abs"] = max(entry.get("max_abs", 0.0), float(np.abs(value).max()))
                entry["fp16_inf"] = entry["fp16_inf"] or not np.isfinite(_fp16_sum_of_squares(value)).all()
    top = sorted(peak.items(), key=lambda item: -item[1])[:5]
    return {
        "max_intermediate": top,
        "over_fp16_max": [name for name, value in peak.items() if value > FP16_MAX],
        "infinite_in_fp32": sorted(infinite),
        "reduce_l2": l2,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle")
    parser.add_argument("--random", type=int, default=2, help="random-normal image batches besides the photos")
    parser.add_argument("--json", help="write the report here too")
    parser.add_argument("--ops", help="comma-separated node types whose outputs to record (default: every tensor)")
    parser.add_argument("--max-windows", type=int, default=0, help="use at most this many photo windows (0: all)")
    parser.add_argument("--graphs", default="image,text,head", help="which graphs to measure")
    args = parser.parse_args(argv)
    ops = set(args.ops.split(",")) if args.ops else None

    from zsseg_rt import Engine
    from zsseg_rt.assets import sample_images
    from zsseg_rt.bundle import Files, Names, load_meta

    meta = load_meta(args.bundle)
    engine = Engine(args.bundle, backend="onnxruntime", device="cpu", device_pipeline=False)
    size = int(meta.image_size)
    rng = np.random.default_rng(0)
    crops = [rng.standard_normal((1, 3, size, size)).astype(np.float32) for _ in range(args.random)]
    windows = _sample_windows(engine, [str(p) for p in sample_images()])
    if args.max_windows:
        windows = windows[: args.max_windows]
    crops += windows
    tokens = engine.tokenizer([f"a photo of a {c}." for c in ("person", "sofa", "chair", "bus", "bottle", "car")])
    graphs = args.graphs.split(",")
    report = {}
    if "image" in graphs:
        report["image"] = graph_report(meta.file(Files.IMAGE_ENCODER), [{Names.IMAGE: c} for c in crops], ops)
    if "text" in graphs:
        report["text"] = graph_report(meta.file(Files.TEXT_ENCODER), [{Names.TOKENS: tokens}], ops)
    if "head" in graphs:
        text = engine.backend.encode_text(tokens)
        head_feeds = [dict(engine.backend.encode_image(c), **{Names.TEXT_EMBEDDINGS: text}) for c in crops]
        report["head"] = graph_report(meta.file(Files.HEAD), head_feeds, ops)
    report["inputs"] = {"random_batches": args.random, "photo_windows": len(windows), "prompts": len(tokens)}
    print(json.dumps(report, indent=1))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(report, handle, indent=1)
    return 0


def _sample_windows(engine, paths: List[str]) -> List[np.ndarray]:
    """Every sliding window of the sample photos, pre-processed as the Engine does: ``[1, 3, S, S]`` each."""
    import cv2

    from zsseg_rt import pipeline

    meta, size, out = engine.meta, engine.meta.image_size, []
    for path in paths:
        rgb = pipeline.to_rgb_uint8(cv2.imread(path, cv2.IMREAD_COLOR), "bgr")
        chw = pipeline.normalize_image(pipeline.rescale_keep_ratio(rgb, meta.test_scale), meta.mean, meta.std)
        for w in pipeline.sliding_windows(chw.shape[1], chw.shape[2], meta.crop_size, meta.stride):
            crop = pipeline.pad_to_multiple(chw[:, w.y1 : w.y2, w.x1 : w.x2], meta.patch_size, (size, size))
            out.append(np.ascontiguousarray(crop[None], dtype=np.float32))
    return out


if __name__ == "__main__":
    sys.exit(main())
