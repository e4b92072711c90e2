"""ONNX graphs held to onnx-tensorrt's operator support matrix for the target TensorRT (10.3, JetPack 6), statically.

The table is data (``zsseg_rt/prepare/tensorrt/data/onnx_tensorrt_operators.json``, extracted by
``tools/extract_onnx_trt_operators.py`` from onnx/onnx-tensorrt ``docs/operators.md``; its ``source`` names the tag
and commit). For every node: the op is in the table and supported, its data inputs have a type the table lists, and
the restrictions its row states hold (written here as checks, each quoting the row); for the model: the default-domain
opset within the documented range, the IR version not newer than the parser's ONNX knows, and no DOUBLE or BF16
graph input/output. Used by ``zsseg_rt.prepare.tensorrt.compat.check_trt_compatibility``.
"""

from __future__ import annotations

import functools
import json
import os
from typing import Callable, Dict, List, Mapping, Optional, Set

TABLE_PATH = os.path.join(os.path.dirname(__file__), "data", "onnx_tensorrt_operators.json")

# ONNX TensorProto element types -> the table's type names
ONNX_TYPE_NAMES = {
    1: "FP32",
    2: "UINT8",
    3: "INT8",
    6: "INT32",
    7: "INT64",
    9: "BOOL",
    10: "FP16",
    11: "DOUBLE",
    16: "BF16",
    17: "FP8",
    18: "FP8",
    19: "FP8",
    20: "FP8",
    22: "INT4",
}
IO_TYPES_REFUSED = {"DOUBLE", "BF16"}  # graph I/O the runtime never feeds TensorRT (no DOUBLE; BF16 not pre-Ampere)

# the Reduce* ops: their input #1 (axes, opset 18) is not data, and must be a constant for the TensorRT parser
REDUCE_OPS = (
    "ReduceL1",
    "ReduceL2",
    "ReduceLogSum",
    "ReduceLogSumExp",
    "ReduceMax",
    "ReduceMean",
    "ReduceMin",
    "ReduceProd",
    "ReduceSum",
    "ReduceSumSquare",
)
# op -> input indices that are indices, shapes, axes or quantisation parameters rather than the op's data: the
# table's "Supported Types" column is about the data inputs.
NON_DATA_INPUTS: Dict[str, tuple] = {
    "Reshape": (1,),
    "Expand": (1,),
    "Tile": (1,),
    "Slice": (1, 2, 3, 4),
    "Gather": (1,),
    "GatherElements": (1,),
    "GatherND": (1,),
    "Scatter": (1,),
    "ScatterElements": (1,),
    "ScatterND": (1,),
    "Resize": (1, 2, 3),
    "Upsample": (1,),
    "Pad": (1, 3),
    "Squeeze": (1,),
    "Unsqueeze": (1,),
    "TopK": (1,),
    "CumSum": (1,),
    "OneHot": (0, 1),
    "ConstantOfShape": (0,),
    "Split": (1,),
    "Trilu": (1,),
    "Dropout": (1, 2),
    "QuantizeLinear": (1, 2),
    "DequantizeLinear": (1, 2),
    "Where": (0,),
    "If": (0,),
    "Loop": (0, 1),
    "NonMaxSuppression": (2, 3, 4),
    "RoiAlign": (1, 2),
    "Range": (),
    **{op: (1,) for op in REDUCE_OPS},
}


@functools.lru_cache(maxsize=None)
def load_operator_table(path: str = TABLE_PATH) -> Mapping:
    """The operator table (see the module docstring)."""
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def supported_ops(table: Optional[Mapping] = None) -> Set[str]:
    table = table or load_operator_table()
    return {op for op, row in table["operators"].items() if row["supported"]}


def table_source(table: Optional[Mapping] = None) -> str:
    table = table or load_operator_table()
    source = table["source"]
    return f"onnx-tensorrt {source['ref']} ({source['commit'][:10]}) docs/operators.md, for TensorRT {table['target_tensorrt']}"


# ---------------------------------------------------------------------------------------------- per-op restrictions
class NodeView:
    """What a restriction check needs about one node: its attributes, which inputs are initializers/Constants, the
    values of small constant inputs, and the rank of its first input (None where unknown)."""

    def __init__(self, node, constants: Set[str], values: Mapping[str, List], ranks: Mapping[str, int]):
        from onnx import helper

        self.node = node
        self.attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        self.constants, self.values, self.ranks = constants, values, ranks

    def attr(self, name, default=None):
        value = self.attributes.get(name, default)
        return value.decode() if isinstance(value, bytes) else value

    def input(self, index: int) -> str:
        return self.node.input[index] if index < len(self.node.input) else ""

    def is_constant(self, index: int) -> bool:
        return not self.input(index) or self.input(index) in self.constants

    def value(self, index: int):
        return self.values.get(self.input(index))

    def rank(self, index: int = 0) -> Optional[int]:
        return self.ranks.get(self.input(index))


def _resize(view: NodeView) -> Optional[str]:
    # "Supported resize transformation modes: half_pixel, pytorch_half_pixel, tf_half_pixel_for_nn, asymmetric,
    # and align_corners. Supported resize modes: nearest, linear. Supported nearest modes: floor, ceil,
    # round_prefer_floor, round_prefer_ceil. Supported aspect ratio policy: stretch. Antialiasing is not supported."
    modes = ("half_pixel", "pytorch_half_pixel", "tf_half_pixel_for_nn", "asymmetric", "align_corners")
    transform = view.attr("coordinate_transformation_mode", "half_pixel")
    if transform not in modes:
        return f"coordinate_transformation_mode {transform!r} (supported: {', '.join(modes)})"
    if view.attr("mode", "nearest") not in ("nearest", "linear"):
        return f"mode {view.attr('mode')!r} (supported: nearest, linear; not cubic)"
    nearest = view.attr("nearest_mode", "round_prefer_floor")
    if nearest not in ("floor", "ceil", "round_prefer_floor", "round_prefer_ceil"):
        return f"nearest_mode {nearest!r}"
    if view.attr("keep_aspect_ratio_policy", "stretch") != "stretch":
        return f"keep_aspect_ratio_policy {view.attr('keep_aspect_ratio_policy')!r} (only stretch)"
    if view.attr("antialias", 0):
        return "antialias=1 (antialiasing is not supported)"
    return None


def _topk(view: NodeView) -> Optional[str]:
    # "`sorted` must be 1. `K` input must be less than 3840."
    if view.attr("sorted", 1) != 1:
        return "sorted=0 (must be 1)"
    k = view.value(1)  # a computed K is compat.s constant_input_required
    if k is not None and int(k[0]) >= 3840:
        return f"K={int(k[0])} (must be less than 3840)"
    return None


def _pooling(view: NodeView) -> Optional[str]:
    # AveragePool/MaxPool: "2D or 3D Pooling only. `dilations` must be empty or all ones"; MaxPool: "`Indices` output
    # tensor unsupported"; LpPool: "`dilations` must be empty or all ones".
    kernel = view.attr("kernel_shape") or []
    if view.node.op_type != "LpPool" and len(kernel) not in (2, 3):
        return f"{len(kernel)}D pooling (2D or 3D only)"
    if any(d != 1 for d in (view.attr("dilations") or [])):
        return "dilations other than 1"
    if view.node.op_type == "MaxPool" and len([o for o in view.node.output if o]) > 1:
        return "the Indices output is requested"
    return None


def _zero_point(index: int, name: str) -> Callable[[NodeView], Optional[str]]:
    # DequantizeLinear: "`x_zero_point` must be zero"; QuantizeLinear: "`y_zero_point` must be 0"
    def check(view: NodeView) -> Optional[str]:
        if not view.input(index):
            return None
        if not view.is_constant(index):
            return f"{name} is not an initializer (it must be zero)"
        value = view.value(index)
        if value is not None and any(float(v) != 0.0 for v in value):
            return f"{name} is not zero"
        return None

    return check


def _constant_input(index: int, what: str) -> Callable[[NodeView], Optional[str]]:
    def check(view: NodeView) -> Optional[str]:
        return None if view.is_constant(index) else f"{what} is computed in the graph (must be an initializer)"

    return check


def _constant_node(view: NodeView) -> Optional[str]:
    # "`sparse_value`, `value_string`, and `value_strings` attributes are unsupported."
    bad = {"sparse_value", "value_string", "value_strings"} & set(view.attributes)
    return f"attribute {sorted(bad)[0]!r} is unsupported" if bad else None


def _dropout(view: NodeView) -> Optional[str]:
    # "`is_traning` must be an initializer and evaluate to False."
    if not view.input(2):
        return None
    value = view.value(2)
    if not view.is_constant(2) or (value is not None and any(bool(v) for v in value)):
        return "training_mode must be an initializer evaluating to False"
    return None


def _lstm(view: NodeView) -> Optional[str]:
    # "`input_forget` attribute must be 0. `layout` attribute must be 0."
    if view.attr("input_forget", 0) or view.attr("layout", 0):
        return "input_forget and layout must be 0"
    return None


def _grid_sample(view: NodeView) -> Optional[str]:
    # "Input must be 4D input."
    rank = view.rank(0)
    return None if rank in (None, 4) else f"a {rank}D input (must be 4D)"


def _layernorm(view: NodeView) -> Optional[str]:
    # "Only the first output `Y` is supported."
    return "Mean/InvStdDev outputs are requested (only Y)" if len([o for o in view.node.output if o]) > 1 else None


def _scatter_nd(view: NodeView) -> Optional[str]:
    # "`reduction` is not supported"
    return None if view.attr("reduction", "none") == "none" else f"reduction={view.attr('reduction')!r}"


RESTRICTIONS: Dict[str, Callable[[NodeView], Optional[str]]] = {
    "Resize": _resize,
    "TopK": _topk,
    "AveragePool": _pooling,
    "MaxPool": _pooling,
    "LpPool": _pooling,
    "DequantizeLinear": _zero_point(2, "x_zero_point"),
    "QuantizeLinear": _zero_point(2, "y_zero_point"),
    "Constant": _constant_node,
    "Dropout": _dropout,
    "LSTM": _lstm,
    "GridSample": _grid_sample,
    "LayerNormalization": _layernorm,
    "ScatterND": _scatter_nd,
}  # constant axes / K / depth inputs: compat.CONSTANT_INPUTS ("constant_input_required")
# restrictions the 10.1 table states that TensorRT 10.3 lifted (table["relaxed_in_target"]): still reported, as a
# warning, because zsseg_rt accepts TensorRT 10.0-10.2 too
RELAXED: Dict[str, Callable[[NodeView], Optional[str]]] = {"Slice": _constant_input(3, "axes")}


def check_node(op: str, view: NodeView, types: Mapping[str, int], table: Mapping) -> List[tuple]:
    """``(severity, code, message)`` findings of one standard-domain node against the table."""
    row = table["operators"].get(op)
    where = table_source(table)
    if row is None or not row["supported"]:
        state = "is not in" if row is None else "is marked unsupported in"
        return [("error", "unsupported_op", f"{op} {state} the TensorRT operator table ({where})")]
    findings = []
    allowed = set(row["types"])
    skip = NON_DATA_INPUTS.get(op, ())
    for index, name in enumerate(view.node.input):
        type_name = ONNX_TYPE_NAMES.get(types.get(name, 0)) if name else None
        if type_name is None or index in skip or not allowed:
            continue
        if type_name not in allowed:
            findings.append(
                (
                    "error",
                    "unsupported_type",
                    f"{op} input #{index} ({name!r}) is {type_name}; TensorRT {table['target_tensorrt']} supports "
                    f"{', '.join(row['types'])} for {op} ({where})",
                )
            )
    if op == "Cast":
        target = ONNX_TYPE_NAMES.get(int(view.attr("to", 0)))
        if target is not None and target not in allowed:
            findings.append(("error", "unsupported_type", f"Cast to {target} (supported: {', '.join(row['types'])})"))
    rule = RESTRICTIONS.get(op)
    problem = rule(view) if rule else None
    if problem:
        findings.append(("error", "op_restriction", f"{op}: {problem} (restriction: {row['restrictions']!r}, {where})"))
    relaxed = RELAXED.get(op)
    problem = relaxed(view) if relaxed else None
    if problem:
        findings.append(
            (
                "warning",
                "op_restriction",
                f"{op}: {problem}; accepted from TensorRT {table['target_tensorrt']} "
                f"({table['relaxed_in_target'].get(op, '')}) but refused by TensorRT 10.0-10.2",
            )
        )
    return findings


def check_model_limits(model, table: Mapping) -> List[tuple]:
    """Opset range, IR version and graph I/O types of the model against the target's limits."""
    findings = []
    low, high = table["documented_opsets"]
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx") and not low <= int(entry.version) <= high:
            findings.append(
                (
                    "error",
                    "opset_out_of_range",
                    f"default-domain opset {entry.version} is outside {low}..{high}, the range the TensorRT "
                    f"{table['target_tensorrt']} ONNX parser documents ({table_source(table)}); export at opset {high} "
                    "or lower",
                )
            )
    limit = table.get("onnx_ir_version_max")
    if limit is not None and int(model.ir_version) > int(limit):
        findings.append(
            (
                "error",
                "ir_version_out_of_range",
                f"ONNX IR version {model.ir_version} is newer than {limit}, the newest the TensorRT "
                f"{table['target_tensorrt']} parser's ONNX (1.16) reads; export with an older onnx / lower ir_version",
            )
        )
    initializers = {init.name for init in model.graph.initializer}
    for kind, infos in (("input", model.graph.input), ("output", model.graph.output)):
        for info in infos:
            if info.name in initializers or not info.type.HasField("tensor_type"):
                continue
            type_name = ONNX_TYPE_NAMES.get(info.type.tensor_type.elem_type)
            if type_name in IO_TYPES_REFUSED:
                findings.append(
                    (
                        "error",
                        "unsupported_io_type",
                        f"graph {kind} {info.name!r} is {type_name}: TensorRT has no DOUBLE tensors and BF16 I/O needs "
                        "Ampere or newer; export it as float32 (or float16)",
                    )
                )
    return findings
