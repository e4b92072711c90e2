"""The int8 image encoder for ONNX Runtime on the CPU (and the gated bf16 record on Arm): made from a bundle's graph,
checked by the accuracy gate against fp32, kept beside the bundle with its sha256
(``runtime/backends/onnxruntime/precision.py`` says what the runtime opens and why).

int8 is ONNX Runtime's dynamic quantisation (``onnxruntime.quantization.quantize_dynamic``) restricted to the MatMuls
whose second input is a constant weight: the Q/K/V and output projections of every attention block, both MLP
layers and the final projection (49 MatMuls in ViT-B/16). Their weights become int8 (symmetric, per output channel),
their activations uint8 per tensor, quantised at run time from each call's own range (no calibration data). The
attention score and value MatMuls, Softmax, LayerNormalization and GELU stay float. A Gemm with a constant weight
(how torch exports some Linear layers) is first rewritten as MatMul + Add so that it is quantised like the others.

    prepare_onnxruntime_precision("bundle", "int8")   # or: zsseg build-engine bundle --backend onnxruntime --precision int8
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

from zsseg_rt.bundle import Files, load_meta
from zsseg_rt.console.progress import stage_bar
from zsseg_rt.prepare.gated import prepare_gated_record, quieter
from zsseg_rt.runtime.backends.onnxruntime.precision import int8_recipe, precision_key, validate_ort_precision
from zsseg_rt.runtime.cpu_features import cpu_features

INT8_FILE = "image_encoder.int8.onnx"

__all__ = ["INT8_FILE", "prepare_onnxruntime_precision", "quantize_image_encoder", "weight_matmuls"]


def _constant_tensors(graph) -> set:
    """Names of tensors computable from initializers and Constant nodes alone (nodes are in topological order)."""
    known = {init.name for init in graph.initializer} | {""}
    for node in graph.node:
        if node.op_type == "Constant" or (node.input and all(name in known for name in node.input)):
            known.update(node.output)
    return known


def _gemm_as_matmul(graph, node, weights: Dict[str, object], constants: set):
    """``[MatMul, Add]`` nodes and the transposed weight replacing a Gemm ``A @ B^T + C`` with constant B and a
    non-constant A, or None when the Gemm is anything else."""
    from onnx import helper, numpy_helper

    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    plain = attrs.get("alpha", 1.0) == 1.0 and attrs.get("beta", 1.0) == 1.0 and not attrs.get("transA", 0)
    if not (plain and attrs.get("transB", 0) == 1 and node.input[1] in weights and node.input[0] not in constants):
        return None
    weight = numpy_helper.to_array(weights[node.input[1]]).T.copy()  # type: ignore[arg-type]
    name = f"{node.input[1]}_transposed_for_matmul"
    product = f"{node.output[0]}_matmul"
    nodes = [helper.make_node("MatMul", [node.input[0], name], [product], name=f"{node.name}_MatMul")]
    if len(node.input) > 2 and node.input[2]:
        nodes.append(helper.make_node("Add", [product, node.input[2]], [node.output[0]], name=f"{node.name}_Add"))
    else:
        nodes[0].output[0] = node.output[0]
    return nodes, numpy_helper.from_array(weight, name)


def weight_matmuls(model) -> Tuple[object, List[str]]:
    """``(model, names)``: the graph with plain constant-weight Gemms rewritten as MatMul + Add, and the names of
    the MatMuls to quantise (constant weight, non-constant activation). ``model`` is changed in place."""
    graph = model.graph
    weights = {init.name: init for init in graph.initializer}
    constants = _constant_tensors(graph)
    nodes, added = [], []
    for node in graph.node:
        replaced = _gemm_as_matmul(graph, node, weights, constants) if node.op_type == "Gemm" else None
        if replaced is None:
            nodes.append(node)
        else:
            nodes.extend(replaced[0])
            added.append(replaced[1])
    del graph.node[:]
    graph.node.extend(nodes)
    graph.initializer.extend(added)
    weights.update({init.name: init for init in added})
    names = [
        node.name
        for node in graph.node
        if node.op_type == "MatMul" and node.input[1] in weights and node.input[0] not in constants
    ]
    return model, names


def quantize_image_encoder(source: str, target: str, reduce_range: bool) -> Dict[str, object]:
    """Write the dynamically quantised int8 graph of ``source`` to ``target``; returns what was quantised."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    model, names = weight_matmuls(onnx.load(source))
    if not names:
        raise ValueError(f"{source!r} has no MatMul with a constant weight to quantise")
    with quieter(logging.getLogger(), logging.ERROR):  # the quantiser logs a pre-processing hint on the root logger
        quantize_dynamic(
            model,
            target,
            per_channel=True,
            reduce_range=reduce_range,
            weight_type=QuantType.QInt8,
            nodes_to_quantize=names,
            op_types_to_quantize=["MatMul"],
        )
    return {"quantised_matmuls": len(names), "reduce_range": bool(reduce_range)}


def prepare_onnxruntime_precision(
    bundle_dir: str,
    precision: str = "int8",
    cache_dir: Optional[str] = None,
    force: bool = False,
    accept_below_gate: bool = False,
    gate_images: Optional[Sequence] = None,
    threads: int = 0,
) -> Dict:
    """Make (or reuse) the gated ``precision`` image encoder of a bundle for this CPU and ONNX Runtime.

    Args:
        bundle_dir: an export bundle.
        precision: "int8" (any CPU; the fastest with VNNI / AMX / Arm dot product) or "bf16" (Arm64 with bf16).
        cache_dir: where the graph and its record go (default ``<bundle>/engines``).
        force: make it again even when a passing record exists.
        accept_below_gate: keep a result that fails the gate, marked as accepted (explicit override).
        gate_images: photos for the gate (default: the sample photos shipped with zsseg_rt).
        threads: ONNX Runtime intra-op threads of the gate's sessions (0: ONNX Runtime's choice).
    Returns:
        the record (``engine.json`` contents: key, artefact, sha256, ``accuracy_gate``).
    Raises:
        ValueError (precision impossible here), EngineAccuracyError (the gate failed, not accepted; the record is
        written, marked refused).
    """
    validate_ort_precision(precision)
    if precision == "fp32":
        raise ValueError("precision='fp32' is the bundle's own graph: nothing to prepare")
    if precision == "auto":
        raise ValueError(
            "precision='auto': nothing to prepare ('auto' picks among gated precisions when the Engine starts): "
            "prepare 'int8' (or 'bf16' on an Arm64 CPU with bf16)"
        )
    meta = load_meta(bundle_dir)

    def make(folder: str, extra: Dict[str, Any]) -> Tuple[Optional[str], Dict[str, Any]]:
        artefact = None
        start = time.perf_counter()
        if precision == "int8":
            artefact = os.path.join(folder, INT8_FILE)
            with tempfile.TemporaryDirectory(dir=folder) as scratch:  # the artefact appears complete or not at all
                partial = os.path.join(scratch, INT8_FILE)
                with stage_bar(1, "int8 quantisation of the image encoder", unit="graph") as bar:  # one long call
                    extra["quantisation"] = quantize_image_encoder(
                        meta.file(Files.IMAGE_ENCODER), partial, bool(int8_recipe(cpu_features())["reduce_range"])
                    )
                    bar.update()
                os.replace(partial, artefact)
        extra["prepare_seconds"] = round(time.perf_counter() - start, 1)
        return artefact, _gate(meta, precision, artefact, threads, accept_below_gate, gate_images)

    return prepare_gated_record(
        meta,
        precision_key(meta, precision),
        cache_dir,
        force,
        "preparing",
        make,
        "ONNX Runtime",
        # in Python and command-line words alike: Engine(...) becomes --precision fp32 on the CLI, and
        # accepting below the gate is build-engine's (segment has no --accept-below-gate, the Engine no such argument)
        f"Engine(..., precision='fp32'), or accept it explicitly: `zsseg build-engine BUNDLE --backend onnxruntime "
        f"--precision {precision} --force --accept-below-gate`",
    )


def _gate(meta, precision: str, artefact: Optional[str], threads: int, accept_below_gate: bool, images) -> Dict:
    """The accuracy gate of the reduced-precision image encoder against the bundle's fp32 graphs."""
    from zsseg_rt.prepare.gate import gate_reference, run_accuracy_gate
    from zsseg_rt.runtime.backends import open_backend
    from zsseg_rt.runtime.backends.onnxruntime.precision import NAME, bf16_recipe

    reference = gate_reference(meta, threads)
    options = dict(bf16_recipe()["session_config"]) if precision == "bf16" else {}  # type: ignore[call-overload]
    candidate = open_backend(meta, NAME, threads=threads, image_encoder=artefact, image_config=options)
    candidate.precision = precision
    report = run_accuracy_gate(
        meta, candidate, reference, precision, roles=("image",), images=images, accept_below_gate=accept_below_gate
    )
    return report.as_dict()
