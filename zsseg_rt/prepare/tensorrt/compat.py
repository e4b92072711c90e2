"""Static TensorRT-compatibility check of an ONNX graph (no TensorRT, no GPU needed).

TensorRT cannot run on every machine that exports a bundle, so this module reads the graph with ``onnx``, runs
ONNX shape inference and reports what the TensorRT 10 ONNX parser is known to reject or mishandle:

* ``unsupported_op`` (error): an operator the parser does not implement (onnx-tensorrt's support matrix for the
  target TensorRT, checked in as data: ``op_rules``), or one from a custom domain (it would need a TensorRT
  plugin registered under that name);
* ``unsupported_type`` / ``op_restriction`` (error; a restriction lifted in the target but not in TensorRT 10.0-10.2
  is a warning): a data input of a type the op's row does not list, or a restriction of its row broken (Resize
  modes, TopK's sorted/K, pooling dims, zero points, LayerNormalization's extra outputs, ...);
* ``ir_version_out_of_range`` / ``unsupported_io_type`` (error): an IR version newer than the parser's ONNX, a
  DOUBLE or BF16 graph input/output;
* ``data_dependent_shape`` (error): an output whose shape depends on tensor *values*: NonZero, Unique, ... or a
  shape input (Reshape's shape, Expand's shape, Resize's sizes, Range's limits, ...) computed from data rather
  than from initializers/constants and ``Shape`` of tensors. TensorRT 10 can build some of these, but the
  zsseg_rt runner pre-allocates outputs from the input shapes and cannot run them;
* ``constant_input_required`` (error): an input the parser needs as an initializer (TopK's K, Reduce axes, ...);
* ``int64_index_op`` (warning): an INT64 tensor feeding ArgMax/ArgMin/TopK (the CLIP text tower's EOT argmax):
  TensorRT 8.x rejects it and TensorRT 10 handles it with casts; export it as int32;
* ``old_opset`` (warning) / ``opset_out_of_range`` (error): opset < 17 has no LayerNormalization op, so
  LayerNorm is decomposed into Reduce/Pow/Sqrt/Div (fp16 overflow risk); the TensorRT 10 parser documents
  opsets 9..20;
* ``unnamed_dynamic_dim`` (warning): a graph input/output dimension that is dynamic but has no name;
* ``shape_inference_failed`` (warning): ONNX shape inference raised; other checks ran on partial information.

This is an approximation: the only real test is a TensorRT build on the target (``zsseg build-engine``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Dict, Iterable, Iterator, List, Optional, Set, Tuple, Union

from zsseg_rt.prepare.tensorrt.op_rules import (
    REDUCE_OPS,
    NodeView,
    check_model_limits,
    check_node,
    load_operator_table,
    supported_ops,
)

# Operators the TensorRT 10 ONNX parser implements ("Y" rows of onnx-tensorrt's support matrix, read from the table
# checked in as data: zsseg_rt/prepare/tensorrt/data/onnx_tensorrt_operators.json, see op_rules.table_source()).
TRT10_SUPPORTED_OPS = frozenset(supported_ops())

TRT10_MIN_OPSET, TRT10_MAX_DOCUMENTED_OPSET = load_operator_table()["documented_opsets"]
NATIVE_LAYERNORM_OPSET = 17

# Ops whose output shape depends on input values by definition.
DATA_DEPENDENT_OUTPUT_OPS = frozenset({"NonZero", "NonMaxSuppression", "Unique", "Compress", "StringSplit"})

# op -> input indices that determine an output shape (must be computable from constants and input shapes).
SHAPE_INPUTS: Dict[str, Tuple[int, ...]] = {
    "Reshape": (1,),
    "Expand": (1,),
    "Tile": (1,),
    "ConstantOfShape": (0,),
    "Range": (0, 1, 2),
    "Resize": (1, 2, 3),
    "Upsample": (1,),
    "Slice": (1, 2, 3, 4),
    "Pad": (1, 3),
    "Split": (1,),
    "OneHot": (1,),
    "CenterCropPad": (1,),
}  # TopK's K and (Un)Squeeze's axes are covered by CONSTANT_INPUTS

# op -> input indices the TensorRT parser requires to be initializers / constants (docs/operators.md restrictions).
CONSTANT_INPUTS: Dict[str, Tuple[int, ...]] = {
    "TopK": (1,),
    "CumSum": (1,),
    "Squeeze": (1,),
    "Unsqueeze": (1,),
    "Pad": (3,),
    "OneHot": (1,),
    **{op: (1,) for op in REDUCE_OPS},
}

INDEX_OPS = frozenset({"ArgMax", "ArgMin", "TopK"})

# Ops whose outputs are never constant-foldable (random) even from constant inputs.
_NONDETERMINISTIC_OPS = frozenset(
    {"RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike", "Bernoulli", "Multinomial"}
)
_SHAPE_SOURCE_OPS = frozenset({"Shape", "Size"})
_STANDARD_DOMAINS = ("", "ai.onnx")

if TYPE_CHECKING:  # the annotation's module only: onnx is imported lazily (_onnx)
    import onnx

ModelOrPath = Union[str, "onnx.ModelProto"]


@dataclass(frozen=True)
class Finding:
    """One compatibility problem: ``severity`` is "error" (the build will fail or the engine cannot be run) or
    "warning" (it builds, but with a known risk)."""

    severity: str
    code: str
    message: str
    node: Optional[str] = None

    def __str__(self) -> str:
        where = f" [node {self.node!r}]" if self.node else ""
        return f"{self.severity}: {self.code}{where}: {self.message}"


@dataclass
class CompatReport:
    """The findings of ``check_trt_compatibility`` for one graph."""

    source: str
    opset: Optional[int]
    findings: List[Finding] = field(default_factory=list)

    @property
    def errors(self) -> List[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def warnings(self) -> List[Finding]:
        return [f for f in self.findings if f.severity == "warning"]

    @property
    def ok(self) -> bool:
        """True when there is no error (warnings allowed)."""
        return not self.errors

    def codes(self) -> Set[str]:
        return {f.code for f in self.findings}

    def format(self) -> str:
        head = (
            f"TensorRT compatibility of {self.source} (opset {self.opset}): "
            f"{len(self.errors)} error(s), {len(self.warnings)} warning(s)"
        )
        return "\n".join([head] + [f"  - {f}" for f in self.findings])


class TrtCompatibilityError(ValueError):
    """An ONNX graph has constructs the TensorRT 10 ONNX parser cannot build or the runner cannot run."""

    def __init__(self, report: CompatReport):
        super().__init__(report.format())
        self.report = report


def _onnx():
    try:
        import onnx
    except ImportError as exc:  # pragma: no cover
        raise ImportError("the TensorRT compatibility check needs onnx: pip install 'zsseg_rt[export]'") from exc
    return onnx


def _load(model: ModelOrPath):
    onnx = _onnx()
    if isinstance(model, (str, bytes)) or hasattr(model, "__fspath__"):
        # Weights are not needed: which tensors are initializers is known without their values.
        return onnx.load(model, load_external_data=False), str(model)
    return model, f"<ModelProto {model.graph.name or 'graph'}>"


def _default_opset(model) -> Optional[int]:
    for entry in model.opset_import:
        if entry.domain in _STANDARD_DOMAINS:
            return int(entry.version)
    return None


def _node_label(node) -> str:
    return node.name or f"{node.op_type}({', '.join(node.output)})"


def _iter_nodes(graph) -> Iterator:
    """All nodes, including those of If/Loop/Scan subgraphs."""
    for node in graph.node:
        yield node
        for attr in node.attribute:
            if attr.g is not None and attr.HasField("g"):
                yield from _iter_nodes(attr.g)
            for sub in attr.graphs:
                yield from _iter_nodes(sub)


def _tensor_types(model) -> Dict[str, int]:
    """tensor name -> ONNX elem_type, from inputs, outputs, value_info (shape inference) and initializers."""
    graph = model.graph
    types = {init.name: init.data_type for init in graph.initializer}
    for info in list(graph.input) + list(graph.output) + list(graph.value_info):
        if info.type.HasField("tensor_type"):
            types[info.name] = info.type.tensor_type.elem_type
    for node in graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    types[node.output[0]] = attr.t.data_type
    return types


def _constant_tensors(graph) -> Set[str]:
    names = {init.name for init in graph.initializer}
    names.update(node.output[0] for node in graph.node if node.op_type == "Constant" and node.output)
    return names


def _shape_computable_tensors(graph) -> Set[str]:
    """Tensors whose values are known once the input *shapes* are: constants, Shape/Size outputs, and anything
    computed only from those (graph nodes are topologically sorted by the ONNX spec)."""
    known = _constant_tensors(graph)
    for node in graph.node:
        if node.op_type in _SHAPE_SOURCE_OPS:
            known.update(node.output)
        elif node.op_type in _NONDETERMINISTIC_OPS or node.op_type in DATA_DEPENDENT_OUTPUT_OPS:
            continue
        elif all(name in known for name in node.input if name):
            known.update(node.output)
    return known


def _constant_values(graph) -> Dict[str, List]:
    """Values of small integer/bool/float initializers and Constants (<= 64 elements): K, zero points, flags."""
    from onnx import numpy_helper

    values = {}
    tensors = [(init.name, init) for init in graph.initializer]
    tensors += [
        (n.output[0], a.t) for n in graph.node if n.op_type == "Constant" for a in n.attribute if a.name == "value"
    ]
    for name, tensor in tensors:
        size = 1
        for dim in tensor.dims:
            size *= int(dim)
        if tensor.data_location == 1 or size > 64:  # external data is not loaded; weights are not needed
            continue
        try:
            array = numpy_helper.to_array(tensor)
        except Exception:  # noqa: BLE001 - an unreadable constant is simply not known
            continue
        values[name] = array.reshape(-1).tolist()
    return values


def _ranks(model) -> Dict[str, int]:
    ranks = {}
    for info in list(model.graph.input) + list(model.graph.output) + list(model.graph.value_info):
        if info.type.HasField("tensor_type") and info.type.tensor_type.HasField("shape"):
            ranks[info.name] = len(info.type.tensor_type.shape.dim)
    return ranks


def _check_ops(model, findings: List[Finding]) -> None:
    """Every node against the target's operator table: support, data-input types, the row's restrictions."""
    table = load_operator_table()
    types, constants = _tensor_types(model), _constant_tensors(model.graph)
    values, ranks = _constant_values(model.graph), _ranks(model)
    for node in _iter_nodes(model.graph):
        if node.domain not in _STANDARD_DOMAINS:
            findings.append(
                Finding(
                    "error",
                    "unsupported_op",
                    f"custom-domain op {node.domain}::{node.op_type} is not an ONNX standard op; TensorRT can build it "
                    "only if a plugin of that name is registered; export it with standard ops instead",
                    _node_label(node),
                )
            )
            continue
        view = NodeView(node, constants, values, ranks)
        for severity, code, message in check_node(node.op_type, view, types, table):
            findings.append(Finding(severity, code, message, _node_label(node)))


def _check_shapes(model, findings: List[Finding]) -> None:
    graph = model.graph
    # (inputs per op, the tensors that satisfy them, finding code, what an input that is not one of them does)
    rules = (
        (
            SHAPE_INPUTS,
            _shape_computable_tensors(graph),
            "data_dependent_shape",
            "sets an output shape but depends on tensor values, not only on constants and input shapes",
        ),
        (
            CONSTANT_INPUTS,
            _constant_tensors(graph),
            "constant_input_required",
            "must be an initializer or Constant for the TensorRT parser",
        ),
    )
    for node in graph.node:
        label = _node_label(node)
        if node.domain not in _STANDARD_DOMAINS:
            continue
        if node.op_type in DATA_DEPENDENT_OUTPUT_OPS:
            findings.append(
                Finding(
                    "error",
                    "data_dependent_shape",
                    f"{node.op_type} has an output shape that depends on tensor values; the runner pre-allocates "
                    "outputs from input shapes and cannot run it (pad to a fixed size instead)",
                    label,
                )
            )
            continue
        for table, known, code, needs in rules:
            for index in table.get(node.op_type, ()):
                if index < len(node.input) and node.input[index] and node.input[index] not in known:
                    message = f"{node.op_type} input #{index} ({node.input[index]!r}) {needs}"
                    findings.append(Finding("error", code, message, label))


def _check_index_ops(model, findings: List[Finding]) -> None:
    int64 = _onnx().TensorProto.INT64
    types = _tensor_types(model)
    for node in model.graph.node:
        if node.op_type in INDEX_OPS and node.input and types.get(node.input[0]) == int64:
            findings.append(
                Finding(
                    "warning",
                    "int64_index_op",
                    f"{node.op_type} reads INT64 tensor {node.input[0]!r}: TensorRT 8.x rejects it and TensorRT 10 "
                    "inserts casts; cast to int32 before it in the export (e.g. token ids before the EOT argmax)",
                    _node_label(node),
                )
            )


def _check_opset(opset: Optional[int], findings: List[Finding]) -> None:
    if opset is None:
        findings.append(Finding("error", "opset_out_of_range", "the model imports no default-domain opset"))
        return
    if opset < TRT10_MIN_OPSET:
        findings.append(
            Finding(
                "error",
                "opset_out_of_range",
                f"opset {opset} is below {TRT10_MIN_OPSET}, the oldest the TensorRT 10 parser supports; re-export",
            )
        )
    elif opset < NATIVE_LAYERNORM_OPSET:
        findings.append(
            Finding(
                "warning",
                "old_opset",
                f"opset {opset} < {NATIVE_LAYERNORM_OPSET}: LayerNormalization is decomposed into ReduceMean/Pow/Sqrt/"
                "Div, which overflows in fp16 unless kept in fp32 (`zsseg build-engine --precision fp16-pinned`); "
                "export with opset >= 17",
            )
        )
    # an opset above the documented range: op_rules.check_model_limits (an error for the target)


def _dynamic_dims(value_infos: Iterable) -> Iterator[Tuple[str, int]]:
    for info in value_infos:
        if not info.type.HasField("tensor_type") or not info.type.tensor_type.HasField("shape"):
            continue
        for axis, dim in enumerate(info.type.tensor_type.shape.dim):
            name = dim.dim_param if dim.HasField("dim_param") else ""
            if not dim.HasField("dim_value") and (not name or name.startswith("unk__")):
                yield info.name, axis


def _check_dynamic_dims(model, findings: List[Finding]) -> None:
    graph = model.graph
    initializers = {init.name for init in graph.initializer}
    inputs = [info for info in graph.input if info.name not in initializers]
    for kind, infos in (("input", inputs), ("output", graph.output)):
        for tensor, axis in _dynamic_dims(infos):
            findings.append(
                Finding(
                    "warning",
                    "unnamed_dynamic_dim",
                    f"graph {kind} {tensor!r} axis {axis} is dynamic but unnamed; name it (dynamic_axes / dynamic_shapes) "
                    "so profiles and Triton configs can refer to it, or make it static",
                )
            )


def check_trt_compatibility(model: ModelOrPath) -> CompatReport:
    """Statically check an ONNX graph against the TensorRT 10 ONNX parser.

    Args:
        model: path of an ``.onnx`` file (external weights are not loaded) or an ``onnx.ModelProto``.
    Returns:
        a ``CompatReport``; ``report.ok`` is False when any finding has severity "error".
    """
    onnx = _onnx()
    proto, source = _load(model)
    opset = _default_opset(proto)
    findings: List[Finding] = []
    try:
        inferred = onnx.shape_inference.infer_shapes(proto, strict_mode=False)
    except Exception as exc:  # noqa: BLE001 - any inference failure is reported, not fatal
        inferred = proto
        findings.append(Finding("warning", "shape_inference_failed", f"ONNX shape inference failed: {exc}"))
    _check_opset(opset, findings)
    findings.extend(
        Finding(severity, code, message) for severity, code, message in check_model_limits(proto, load_operator_table())
    )
    _check_ops(inferred, findings)
    _check_shapes(inferred, findings)
    _check_index_ops(inferred, findings)
    _check_dynamic_dims(inferred, findings)
    return CompatReport(source=source, opset=opset, findings=findings)


def assert_trt_compatible(model: ModelOrPath, allow_warnings: bool = True) -> CompatReport:
    """``check_trt_compatibility``, raising ``TrtCompatibilityError`` (listing every finding) on errors, or also on
    warnings when ``allow_warnings`` is False. Returns the report otherwise."""
    report = check_trt_compatibility(model)
    if report.errors or (report.warnings and not allow_warnings):
        raise TrtCompatibilityError(report)
    return report
