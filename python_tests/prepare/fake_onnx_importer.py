"""Lower a real exported ONNX graph into the fake TensorRT network (``fake_tensorrt``) the way TensorRT's ONNX
importer (onnx-tensorrt ``onnxOpImporters.cpp``, release 10.1 GA, read for this) builds layers, for the ops the
bundles use. What matters to the precision recipes is reproduced exactly:

* ``ReduceL2`` -> ``ELEMENTWISE PROD(x, x)`` -> ``REDUCE SUM`` -> ``UNARY SQRT`` (the importer's ReduceSumSquare
  + sqrt); ``ReduceSumSquare`` -> PROD + REDUCE SUM;
* ``LayerNormalization`` -> one ``NORMALIZATION`` layer (plus constant scale/bias layers when absent);
* ``Shape`` -> ``SHAPE`` + ``CAST`` to INT64; ``Cast`` -> ``CAST``; weights -> ``CONSTANT`` layers on first use;
* elementwise / unary / reduce ops with their TensorRT operation; ``Softmax`` -> ``SOFTMAX`` + a reshape back.

Other ops become a layer of the kind the importer adds (SHUFFLE, GATHER, SLICE, ...), with the output types ONNX
shape inference gives. An op without a rule raises, so a new op in a bundle cannot be modelled silently.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import onnx
from onnx import TensorProto, shape_inference

ONNX_TO_DTYPE = {
    TensorProto.FLOAT: "FLOAT",
    TensorProto.FLOAT16: "HALF",
    TensorProto.BFLOAT16: "BF16",
    TensorProto.INT32: "INT32",
    TensorProto.INT64: "INT64",
    TensorProto.INT8: "INT8",
    TensorProto.UINT8: "UINT8",
    TensorProto.BOOL: "BOOL",
    TensorProto.DOUBLE: "FLOAT",  # the importer casts DOUBLE down to FLOAT
}

ELEMENTWISE = {
    "Add": "SUM",
    "Sum": "SUM",
    "Sub": "SUB",
    "Mul": "PROD",
    "Div": "DIV",
    "Pow": "POW",
    "Max": "MAX",
    "Min": "MIN",
    "Equal": "EQUAL",
    "Greater": "GREATER",
    "Less": "LESS",
    "And": "AND",
    "Or": "OR",
    "Xor": "XOR",
}
UNARY = {
    "Sqrt": "SQRT",
    "Exp": "EXP",
    "Log": "LOG",
    "Abs": "ABS",
    "Neg": "NEG",
    "Reciprocal": "RECIP",
    "Erf": "ERF",
    "Not": "NOT",
    "IsNaN": "ISNAN",
    "Floor": "FLOOR",
    "Ceil": "CEIL",
    "Sin": "SIN",
    "Cos": "COS",
}
REDUCE = {"ReduceSum": "SUM", "ReduceMean": "AVG", "ReduceMax": "MAX", "ReduceMin": "MIN", "ReduceProd": "PROD"}
ACTIVATION = ("Relu", "Sigmoid", "Tanh", "Clip", "LeakyRelu", "Elu", "Softplus", "HardSigmoid")
# op -> the single layer kind the importer adds for it (shape/indexing/data movement)
PLAIN = {
    "Reshape": "SHUFFLE",
    "Transpose": "SHUFFLE",
    "Flatten": "SHUFFLE",
    "Squeeze": "SHUFFLE",
    "Unsqueeze": "SHUFFLE",
    "Identity": "IDENTITY",
    "Gather": "GATHER",
    "GatherND": "GATHER",
    "GatherElements": "GATHER",
    "Slice": "SLICE",
    "Expand": "SLICE",
    "Tile": "SLICE",
    "Pad": "SLICE",  # the importer: shape arithmetic on the pads, then one ISliceLayer in a FILL/CLAMP/REFLECT mode
    "Concat": "CONCATENATION",
    "Where": "SELECT",
    "ConstantOfShape": "FILL",
    "Range": "FILL",
    "ArgMax": "TOPK",
    "ArgMin": "TOPK",
    "TopK": "TOPK",
    "Conv": "CONVOLUTION",
    "Resize": "RESIZE",
    "Einsum": "EINSUM",
    "OneHot": "ONE_HOT",
    "Mod": "ELEMENTWISE",  # FLOOR_DIV + PROD + SUB in the importer; elementwise layers either way
    "BatchNormalization": "SCALE",
    "InstanceNormalization": "NORMALIZATION",  # kNATIVE_INSTANCENORM (on by default in TensorRT 10)
    "MaxPool": "POOLING",
    "AveragePool": "POOLING",
    "ScatterElements": "SCATTER",
    "ScatterND": "SCATTER",
    "CumSum": "LOOP_OUTPUT",  # an ILoop (iterator, recurrence, sum, loop output) in the importer
}


@dataclass
class LoweredGraph:
    """Network inputs ``(name, dtype, shape)`` (-1 for dynamic dims) and layer specs ``(name, kind, op, inputs,
    outputs, dtypes)`` in the order the importer adds them."""

    inputs: List[Tuple[str, str, Tuple[int, ...]]]
    layers: List[Tuple[str, str, Optional[str], List[str], List[str], List[str]]] = field(default_factory=list)
    onnx_nodes: int = 0

    def count(self, kind: str, op: Optional[str] = None) -> int:
        return sum(1 for layer in self.layers if layer[1] == kind and (op is None or layer[2] == op))


class _Lowering:
    def __init__(self, model):
        self.graph = model.graph
        self.types: Dict[str, str] = {}
        for info in list(model.graph.value_info) + list(model.graph.input) + list(model.graph.output):
            if info.type.HasField("tensor_type"):
                self.types[info.name] = ONNX_TO_DTYPE.get(info.type.tensor_type.elem_type, "FLOAT")
        self.weights = {init.name: ONNX_TO_DTYPE.get(init.data_type, "FLOAT") for init in model.graph.initializer}
        self.available = set()  # tensors that exist in the network (inputs, layer outputs, constants added)
        self.layers: List = []

    def dtype(self, name: str) -> str:
        return self.types.get(name) or self.weights.get(name) or "FLOAT"

    def tensor(self, name: str) -> str:
        """The network tensor for ``name``: weights become a CONSTANT layer on first use (convertToTensor)."""
        if name and name not in self.available:
            self.add(f"{name} [Constant]", "CONSTANT", None, [], [name], [self.dtype(name)])
        return name

    def add(self, name, kind, op, inputs, outputs, dtypes) -> None:
        self.layers.append((name, kind, op, list(inputs), list(outputs), list(dtypes)))
        self.available.update(outputs)

    def node(self, node) -> None:  # noqa: C901 - one branch per importer rule
        label = node.name or f"{node.op_type}_{len(self.layers)}"
        inputs = [self.tensor(name) for name in node.input if name]
        outputs = [name for name in node.output if name]
        dtypes = [self.dtype(name) for name in outputs]
        op = node.op_type
        if op == "Constant":
            self.add(label, "CONSTANT", None, [], outputs, dtypes)
        elif op in ELEMENTWISE:
            self.add(label, "ELEMENTWISE", ELEMENTWISE[op], inputs, outputs, dtypes)
        elif op in UNARY:
            self.add(label, "UNARY", UNARY[op], inputs, outputs, dtypes)
        elif op in REDUCE:
            self.add(label, "REDUCE", REDUCE[op], inputs[:1], outputs, dtypes)
        elif op in ("ReduceL2", "ReduceSumSquare"):
            square, summed = f"{label}/square", f"{label}/sum_of_squares"
            self.add(f"{label} [PROD]", "ELEMENTWISE", "PROD", [inputs[0], inputs[0]], [square], dtypes)
            last = op == "ReduceSumSquare"
            self.add(f"{label} [REDUCE]", "REDUCE", "SUM", [square], outputs if last else [summed], dtypes)
            if not last:
                self.add(label, "UNARY", "SQRT", [summed], outputs, dtypes)
        elif op in ("GreaterOrEqual", "LessOrEqual"):  # the importer's greaterLessOrEqual: (a > b) or (a == b)
            compare = "GREATER" if op == "GreaterOrEqual" else "LESS"
            strict, equal = f"{label}/{compare.lower()}", f"{label}/equal"
            self.add(f"{label} [{compare}]", "ELEMENTWISE", compare, inputs[:2], [strict], ["BOOL"])
            self.add(f"{label} [EQUAL]", "ELEMENTWISE", "EQUAL", inputs[:2], [equal], ["BOOL"])
            self.add(label, "ELEMENTWISE", "OR", [strict, equal], outputs, dtypes)
        elif op == "Split":  # one ISliceLayer per output
            for name, dtype in zip(outputs, dtypes):
                self.add(f"{label} [{name}]", "SLICE", None, inputs, [name], [dtype])
        elif op == "LayerNormalization":
            self.add(label, "NORMALIZATION", None, inputs, outputs[:1], dtypes[:1])
        elif op == "Softmax":
            self.add(label, "SOFTMAX", None, inputs, [f"{label}/softmax"], dtypes)
            self.add(f"{label} [reshape back]", "SHUFFLE", None, [f"{label}/softmax"], outputs, dtypes)
        elif op == "Shape":
            self.add(label, "SHAPE", None, inputs, [f"{label}/shape"], ["INT64"])
            self.add(f"{label} [cast INT64]", "CAST", None, [f"{label}/shape"], outputs, ["INT64"])
        elif op == "Cast":
            self.add(label, "CAST", None, inputs, outputs, dtypes)
        elif op in ("MatMul", "Gemm"):
            product = outputs if op == "MatMul" or len(inputs) < 3 else [f"{label}/product"]
            self.add(label, "MATRIX_MULTIPLY", None, inputs[:2], product, dtypes)
            if product != outputs:
                self.add(f"{label} [bias]", "ELEMENTWISE", "SUM", [product[0], inputs[2]], outputs, dtypes)
        elif op in ACTIVATION:
            self.add(label, "ACTIVATION", None, inputs[:1], outputs, dtypes)
        elif op in PLAIN:
            self.add(label, PLAIN[op], None, inputs, outputs, dtypes)
        else:
            raise NotImplementedError(f"fake importer: no lowering rule for ONNX op {op!r} (node {label!r})")


def lower_onnx(path: str) -> LoweredGraph:
    """The fake network of the ONNX file at ``path`` (weights are not loaded: only names and types matter)."""
    model = onnx.load(path, load_external_data=False)
    model = shape_inference.infer_shapes(model, strict_mode=False)
    lowering = _Lowering(model)
    initializers = {init.name for init in model.graph.initializer}
    inputs = []
    for info in model.graph.input:
        if info.name in initializers:
            continue
        dims = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in info.type.tensor_type.shape.dim)
        inputs.append((info.name, lowering.dtype(info.name), dims))
        lowering.available.add(info.name)
    for node in model.graph.node:
        lowering.node(node)
    return LoweredGraph(inputs, lowering.layers, onnx_nodes=len(model.graph.node))


def lower_bundle(bundle_dir: str, files: Sequence[str]) -> Dict[str, LoweredGraph]:
    """``{onnx path: LoweredGraph}`` for the named graph files of a bundle (what ``make_module(graphs=...)`` takes)."""
    import os

    return {os.path.join(bundle_dir, name): lower_onnx(os.path.join(bundle_dir, name)) for name in files}
