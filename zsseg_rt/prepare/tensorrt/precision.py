"""Which layers of a parsed TensorRT network the fp16 recipes keep in fp32, and which of those pins held in the built
engine (no TensorRT import here: the ``tensorrt`` module is passed in, so a test fake can stand in for it).

* ``fp16``: only the sum of squares of each L2 normalisation (ReduceL2 = x*x -> ReduceSum -> Sqrt, as the ONNX
  importer lowers it) is preferred in fp32 (``l2_sum_of_squares_layers``).
* ``fp16-pinned``: LayerNorm/Softmax/reductions/Pow/Sqrt and up to two elementwise hops after them are obeyed in fp32
  (``keep_numerics_in_fp32``), except on shape-only chains: layers computed from tensor *shapes* and constants
  (the attention scale ``Shape -> Gather -> Cast -> Sqrt -> Div`` of every attention block) are not data, so a pin
  there changes nothing numerically but forces fp32 onto the data path it feeds (the ``q * scale`` multiply).
* ``pins_as_built``: after the build, the engine inspector's per-layer JSON (``ProfilingVerbosity.DETAILED``) says
  which pinned layers run in fp32 (held), in fp16 (ignored: TensorRT may fuse a pinned layer into a kernel of another
  precision, NVIDIA/TensorRT#3889) or could not be seen (inside a Myelin "ForeignNode" region, whose member layers the
  inspector does not list).
"""

from __future__ import annotations

import json
import re
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Set


def _layers(network) -> List:
    return [network.get_layer(i) for i in range(network.num_layers)]


def _producers(layers: Sequence) -> Dict[str, int]:
    """tensor name -> index of the layer producing it."""
    producers = {}
    for index, layer in enumerate(layers):
        for j in range(layer.num_outputs):
            producers[layer.get_output(j).name] = index
    return producers


# layer types whose output values come only from some inputs (the others set shapes, indices or sizes): SLICE
# (Slice, Expand, Tile: input 0), SHUFFLE (Reshape: input 0), GATHER (data: input 0), RESIZE (input 0), FILL (Range /
# ConstantOfShape: alpha/beta 1, 2; input 0 is the output's dimensions)
VALUE_INPUTS = {"SLICE": (0,), "SHUFFLE": (0,), "GATHER": (0,), "RESIZE": (0,), "FILL": (1, 2)}


def shape_only_layers(network, trt) -> Set[int]:
    """Indices of the layers whose output values are computed from tensor shapes: ``Shape`` layers, and every layer
    whose value inputs (``VALUE_INPUTS``) all come from such layers or constants, at least one from a shape (the
    attention scale ``Shape -> Slice -> Cast -> Sqrt -> Div``). Constants merely reshaped or expanded by a shape (a
    decoder's learned queries repeated over the batch) are not: their values are data, not shapes. Network layers are
    in topological order, as the ONNX importer adds them."""
    layers = _layers(network)
    producers = _producers(layers)
    value_inputs = {getattr(trt.LayerType, name): indices for name, indices in VALUE_INPUTS.items()}
    constant: Set[int] = set()
    found: Set[int] = set()
    for index, layer in enumerate(layers):
        if layer.type == trt.LayerType.SHAPE:
            found.add(index)
            continue
        if layer.type == trt.LayerType.CONSTANT:
            constant.add(index)
            continue
        picks = value_inputs.get(layer.type, range(layer.num_inputs))
        tensors = [layer.get_input(k) for k in picks if k < layer.num_inputs]
        sources = [producers.get(t.name) for t in tensors if t is not None]
        if not sources or not all(s in found or s in constant for s in sources):
            continue
        (found if any(s in found for s in sources) else constant).add(index)
    return found


def _fp32_sensitive(layer, trt) -> bool:
    """LayerNorm, Softmax, reductions, Pow and Sqrt: what overflows or loses precision in fp16."""
    kind = layer.type
    if kind in (trt.LayerType.NORMALIZATION, trt.LayerType.SOFTMAX, trt.LayerType.REDUCE):
        return True
    if kind == trt.LayerType.UNARY:
        layer.__class__ = trt.IUnaryLayer
        return layer.op == trt.UnaryOperation.SQRT
    if kind == trt.LayerType.ELEMENTWISE:
        layer.__class__ = trt.IElementWiseLayer
        return layer.op == trt.ElementWiseOperation.POW
    return False


def _is_float_layer(layer, trt) -> bool:
    floats = (trt.float32, trt.float16)
    return layer.num_outputs > 0 and all(layer.get_output(j).dtype in floats for j in range(layer.num_outputs))


def keep_numerics_in_fp32(network, trt, hops: int = 2) -> List[str]:
    """The "fp16-pinned" recipe: pin LayerNorm (native or decomposed), Softmax and L2-normalisation layers to fp32.

    The decomposed forms (ReduceMean/Pow/Sqrt/Div, x / ||x||) are found by marking reductions, Pow and Sqrt and
    then the elementwise/activation layers up to ``hops`` consumers downstream of a reduction or Sqrt (x - mean,
    var + eps, the divide, a clamp before it). Shape-only layers (``shape_only_layers``) are never marked, nor
    followed. Returns the names of the pinned layers.
    """
    layers = _layers(network)
    shape_only = shape_only_layers(network, trt)
    consumers: Dict[str, List[int]] = {}
    for index, layer in enumerate(layers):
        for k in range(layer.num_inputs):
            tensor = layer.get_input(k)
            if tensor is not None:
                consumers.setdefault(tensor.name, []).append(index)
    marked = {i for i, layer in enumerate(layers) if i not in shape_only and _fp32_sensitive(layer, trt)}
    followers = (trt.LayerType.ELEMENTWISE, trt.LayerType.UNARY, trt.LayerType.ACTIVATION)
    frontier = {i for i in marked if layers[i].type in (trt.LayerType.REDUCE, trt.LayerType.UNARY)}
    for _ in range(hops):
        nxt: Set[int] = set()
        for index in frontier:
            for j in range(layers[index].num_outputs):
                nxt.update(
                    c
                    for c in consumers.get(layers[index].get_output(j).name, [])
                    if layers[c].type in followers and c not in shape_only
                )
        marked |= nxt
        frontier = nxt
    return pin_to_fp32([layers[index] for index in sorted(marked)], trt)  # int (shape) layers are skipped


def _is_square(layer, trt) -> bool:
    """x * x (the ONNX importer's ReduceSumSquare / ReduceL2 lowering) or x ** 2 (a decomposed norm)."""
    if layer is None or layer.type != trt.LayerType.ELEMENTWISE:
        return False
    layer.__class__ = trt.IElementWiseLayer
    if layer.op == trt.ElementWiseOperation.PROD:
        return layer.get_input(0).name == layer.get_input(1).name
    return layer.op == trt.ElementWiseOperation.POW


def l2_sum_of_squares_layers(network, trt) -> List[object]:
    """The layers of every L2 norm: square -> ReduceSum -> Sqrt (how the ONNX parser lowers ReduceL2), the one
    place in these graphs whose values grow with the square of the features."""
    layers = _layers(network)
    producers = _producers(layers)
    shape_only = shape_only_layers(network, trt)
    found = []
    for index, sqrt in enumerate(layers):
        if sqrt.type != trt.LayerType.UNARY or index in shape_only:
            continue
        sqrt.__class__ = trt.IUnaryLayer
        if sqrt.op != trt.UnaryOperation.SQRT:
            continue
        reduce_index = producers.get(sqrt.get_input(0).name)
        reduce = layers[reduce_index] if reduce_index is not None else None
        if reduce is None or reduce.type != trt.LayerType.REDUCE:
            continue
        reduce.__class__ = trt.IReduceLayer
        square_index = producers.get(reduce.get_input(0).name)
        square = layers[square_index] if square_index is not None else None
        if reduce.op == trt.ReduceOperation.SUM and _is_square(square, trt):
            found.extend([square, reduce, sqrt])
    return found


def pin_to_fp32(layers: Iterable, trt) -> List[str]:
    """Set precision and output types of float ``layers`` to fp32; returns their names."""
    pinned = []
    for layer in layers:
        if not _is_float_layer(layer, trt):
            continue
        layer.precision = trt.float32
        for j in range(layer.num_outputs):
            layer.set_output_type(j, trt.float32)
        pinned.append(layer.name)
    return pinned


# ---------------------------------------------------------------------------------------------- as built
_FOREIGN = re.compile(r"\{ForeignNode\[(.*)\]\}")


def _precision_of(format_datatype: str) -> Optional[str]:
    """Precision of an inspector "Format/Datatype": "Row major linear FP32" -> "fp32", "... FP16 ..." -> "fp16"."""
    text = format_datatype.upper()
    for token, name in (("FP32", "fp32"), ("FLOAT", "fp32"), ("FP16", "fp16"), ("HALF", "fp16"), ("BF16", "bf16")):
        if re.search(rf"\b{token}\b", text):
            return name
    if re.search(r"\bINT(8|32|64)\b", text):
        return "int"
    return None


def pins_as_built(engine_information: str, pinned: Sequence[str]) -> Dict[str, object]:
    """Classify ``pinned`` layer names by the engine inspector's JSON (``get_engine_information(JSON)`` of an
    engine built with ``ProfilingVerbosity.DETAILED``, shapes set through an execution context).

    Returns:
        ``{"requested": n, "held": [...], "not_held": [...], "unverified": [...], "method": "engine inspector"}``:
        held = every output of the engine layer containing the pin is fp32; not_held = an output is fp16/bf16;
        unverified = the pin is inside a Myelin ForeignNode region or was removed/merged beyond recognition.
    """
    layers = json.loads(engine_information).get("Layers", [])  # dicts of the inspector's JSON
    outputs_by_name: Dict[str, List[Optional[str]]] = {}
    for entry in layers:  # one engine layer (possibly several network layers fused: "a + b + c")
        if not isinstance(entry, Mapping) or _FOREIGN.search(str(entry.get("Name", ""))):
            continue
        precisions = [_precision_of(str(out.get("Format/Datatype", ""))) for out in entry.get("Outputs", [])]
        for part in str(entry.get("Name", "")).split(" + "):
            outputs_by_name.setdefault(part.strip(), []).extend(precisions)
    held, not_held, unverified = [], [], []
    for name in pinned:
        precisions = [p for p in outputs_by_name.get(name, []) if p is not None]
        if not precisions:
            unverified.append(name)
        elif all(p == "fp32" for p in precisions):
            held.append(name)
        else:
            not_held.append(name)
    return {
        "requested": len(pinned),
        "held": held,
        "not_held": not_held,
        "unverified": unverified,
        "method": "engine inspector (ProfilingVerbosity.DETAILED)",
    }


def pins_unverified(pinned: Sequence[str], reason: str) -> Dict[str, object]:
    """The record when the built engine could not be inspected (``reason`` says why)."""
    return {"requested": len(pinned), "held": [], "not_held": [], "unverified": list(pinned), "method": reason}


def summarize_pins(record: Mapping) -> str:
    """One line: how many fp32 pins held, were ignored, could not be seen."""
    return (
        f"{record.get('requested', 0)} fp32 pins: {len(record.get('held', []))} held, "
        f"{len(record.get('not_held', []))} ignored by TensorRT, {len(record.get('unverified', []))} not visible"
    )


def inspect_pins(trt, logger, serialized: bytes, profile_opt: Mapping[str, Sequence[int]], pinned: Sequence[str]):
    """Deserialise a freshly built engine, set its inputs to the profile's opt shapes on a context without device
    memory, and classify ``pinned`` with ``pins_as_built``. Any failure gives ``pins_unverified`` with the reason
    (the inspector is optional: its absence must not fail a build)."""
    if not pinned:
        return pins_as_built('{"Layers": []}', pinned)
    try:
        engine = trt.Runtime(logger).deserialize_cuda_engine(serialized)
        if engine is None:
            return pins_unverified(pinned, "not inspected: the engine could not be deserialised for inspection")
        context = engine.create_execution_context_without_device_memory()
        for name, shape in profile_opt.items():
            context.set_input_shape(name, tuple(int(d) for d in shape))
        inspector = engine.create_engine_inspector()
        inspector.execution_context = context
        information = inspector.get_engine_information(trt.LayerInformationFormat.JSON)
        return pins_as_built(information, pinned)
    except Exception as exc:  # noqa: BLE001 - an inspection problem is recorded, never fatal
        return pins_unverified(pinned, f"not inspected: {type(exc).__name__}: {exc}")
