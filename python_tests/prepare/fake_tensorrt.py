"""A recording fake of the part of the TensorRT 10 Python API that zsseg_rt's builder uses.

It checks call order and arguments only: every method below has the parameter list of the TensorRT 10 Python
bindings (docs.nvidia.com/deeplearning/tensorrt/latest/_static/python-api, ``tensorrt.Builder``,
``IBuilderConfig``, ``OnnxParser``, ``INetworkDefinition``, ``ILayer``, ``IOptimizationProfile``), so a call with a
wrong arity or keyword fails here as it would there. It computes nothing: numerics need real TensorRT on a GPU.

``make_module(version, graphs)`` returns a module-like object; ``graphs`` maps an ONNX path to the layers
``OnnxParser.parse_from_file`` "parses" into the network: ``(name, LayerType name, op name or None, inputs,
outputs, dtype)`` tuples, or a ``fake_onnx_importer.LoweredGraph`` (a real exported graph lowered as TensorRT's
importer does). Every call is appended to ``module.calls`` as ``(qualified name, args)``.

Every class, method, parameter and enum member here must exist in the Python bindings of every TensorRT version
the package accepts (``test_trt_static_checks.py`` checks it against ``python_tests/data/trt_reference/python_api_10.3.json``
and ``test_trt_api_versions.py`` against every 10.x, ``python_api_used_by_version.json``). The engine inspector's
JSON follows NVIDIA's documented layout (``EngineInspector``; ``test_fake_engine_inspector.py``).
"""

from __future__ import annotations

import enum
import json
import types
import weakref
from typing import Dict, List, Optional, Sequence, Tuple


class DataType(enum.Enum):
    FLOAT = "float32"
    HALF = "float16"
    BF16 = "bfloat16"
    INT32 = "int32"
    INT64 = "int64"
    INT8 = "int8"
    UINT8 = "uint8"
    BOOL = "bool"


LayerType = enum.Enum(
    "LayerType",
    "ELEMENTWISE UNARY REDUCE NORMALIZATION SOFTMAX ACTIVATION QUANTIZE DEQUANTIZE MATRIX_MULTIPLY CONSTANT SHUFFLE "
    "SHAPE CAST IDENTITY GATHER SLICE CONCATENATION SELECT FILL TOPK CONVOLUTION RESIZE EINSUM ONE_HOT SCALE POOLING "
    "SCATTER LOOP_OUTPUT",
)
ElementWiseOperation = enum.Enum(
    "ElementWiseOperation", "SUM PROD MAX MIN SUB DIV POW FLOOR_DIV AND OR XOR EQUAL GREATER LESS"
)
UnaryOperation = enum.Enum("UnaryOperation", "EXP LOG SQRT RECIP ABS NEG SIN COS FLOOR CEIL ERF NOT ISNAN")
ReduceOperation = enum.Enum("ReduceOperation", "SUM PROD MAX MIN AVG")
ProfilingVerbosity = enum.Enum("ProfilingVerbosity", "LAYER_NAMES_ONLY NONE DETAILED")
LayerInformationFormat = enum.Enum("LayerInformationFormat", "ONELINE JSON")
TensorIOMode = enum.Enum("TensorIOMode", "NONE INPUT OUTPUT")
BuilderFlag = enum.Enum("BuilderFlag", "FP16 BF16 INT8 TF32 OBEY_PRECISION_CONSTRAINTS PREFER_PRECISION_CONSTRAINTS")
MemoryPoolType = enum.Enum("MemoryPoolType", "WORKSPACE DLA_MANAGED_SRAM TACTIC_DRAM")
NetworkDefinitionCreationFlag = enum.Enum("NetworkDefinitionCreationFlag", "EXPLICIT_BATCH STRONGLY_TYPED")

LayerSpec = Tuple[str, str, object, Sequence[str], Sequence[str], str]


class ITensor:
    def __init__(self, name: str, dtype: DataType, shape=(-1, -1)):
        self.name, self.dtype, self.shape = name, dtype, tuple(shape)


class ILayer:
    def __init__(self, calls: List, name: str, kind, op, inputs: List[ITensor], outputs: List[ITensor]):
        self._calls, self.name, self.type, self.op = calls, name, kind, op
        self._inputs, self._outputs = inputs, outputs
        self._precision: Optional[DataType] = None
        self.output_types: Dict[int, DataType] = {}

    @property
    def num_inputs(self) -> int:
        return len(self._inputs)

    @property
    def num_outputs(self) -> int:
        return len(self._outputs)

    def get_input(self, index: int) -> ITensor:
        return self._inputs[index]

    def get_output(self, index: int) -> ITensor:
        return self._outputs[index]

    @property
    def precision(self):
        return self._precision

    @precision.setter
    def precision(self, dtype: DataType) -> None:
        self._calls.append(("ILayer.precision", (self.name, dtype)))
        self._precision = dtype

    def set_output_type(self, index: int, dtype: DataType) -> None:
        self._calls.append(("ILayer.set_output_type", (self.name, index, dtype)))
        self.output_types[index] = dtype


class IUnaryLayer(ILayer):
    pass


class IElementWiseLayer(ILayer):
    pass


class IReduceLayer(ILayer):
    pass


class INetworkDefinition:
    def __init__(self, calls: List):
        self._calls, self.layers, self.inputs = calls, [], []  # type: ignore[var-annotated]

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    @property
    def num_inputs(self) -> int:
        return len(self.inputs)

    def get_layer(self, index: int) -> ILayer:
        return self.layers[index]

    def get_input(self, index: int) -> ITensor:
        return self.inputs[index]


class IOptimizationProfile:
    def __init__(self, calls: List):
        self._calls = calls

    def set_shape(self, input: str, min, opt, max) -> None:  # noqa: A002 - TensorRT's parameter names
        self._calls.append(("IOptimizationProfile.set_shape", (input, tuple(min), tuple(opt), tuple(max))))


class ITimingCache:
    def serialize(self) -> bytes:
        return b"timing"


class IBuilderConfig:
    def __init__(self, calls: List):
        self._calls, self.flags = calls, set()  # type: ignore[var-annotated]

    def set_flag(self, flag: BuilderFlag) -> None:
        self._calls.append(("IBuilderConfig.set_flag", (flag,)))
        self.flags.add(flag)

    def clear_flag(self, flag: BuilderFlag) -> None:
        self._calls.append(("IBuilderConfig.clear_flag", (flag,)))
        self.flags.discard(flag)

    def get_flag(self, flag: BuilderFlag) -> bool:
        return flag in self.flags

    def set_memory_pool_limit(self, pool: MemoryPoolType, pool_size: int) -> None:
        self._calls.append(("IBuilderConfig.set_memory_pool_limit", (pool, pool_size)))

    def add_optimization_profile(self, profile: IOptimizationProfile) -> int:
        self._calls.append(("IBuilderConfig.add_optimization_profile", (profile,)))
        return 0

    def create_timing_cache(self, serialized_timing_cache) -> ITimingCache:
        self._calls.append(("IBuilderConfig.create_timing_cache", (bytes(serialized_timing_cache),)))
        return ITimingCache()

    def set_timing_cache(self, cache: ITimingCache, ignore_mismatch: bool) -> bool:
        self._calls.append(("IBuilderConfig.set_timing_cache", (cache, ignore_mismatch)))
        return True

    @property
    def profiling_verbosity(self) -> ProfilingVerbosity:
        return getattr(self, "_verbosity", ProfilingVerbosity.LAYER_NAMES_ONLY)

    @profiling_verbosity.setter
    def profiling_verbosity(self, value: ProfilingVerbosity) -> None:
        self._calls.append(("IBuilderConfig.profiling_verbosity", (value,)))
        self._verbosity = value


def _op_enum(kind: str, op):
    if op is None:
        return None
    return {"ELEMENTWISE": ElementWiseOperation, "UNARY": UnaryOperation, "REDUCE": ReduceOperation}[kind][op]


def _add_layers(calls, network: INetworkDefinition, specs, input_shapes, declared=()) -> None:
    """Add layer specs to ``network``; a tensor first seen as an input (and not declared) is a float network input."""
    tensors: Dict[str, ITensor] = {}
    for name, dtype, shape in declared:
        tensors[name] = ITensor(name, DataType[dtype], shape)
        network.inputs.append(tensors[name])
    for name, kind, op, inputs, outputs, dtypes in specs:
        ins = []
        for tensor in inputs:
            if tensor not in tensors:  # a network input
                tensors[tensor] = ITensor(tensor, DataType.FLOAT, input_shapes.get(tensor, (-1, -1)))
                network.inputs.append(tensors[tensor])
            ins.append(tensors[tensor])
        dtypes = [dtypes] * len(outputs) if isinstance(dtypes, str) else list(dtypes)
        outs = [tensors.setdefault(t, ITensor(t, DataType[d])) for t, d in zip(outputs, dtypes)]
        network.layers.append(ILayer(calls, name, LayerType[kind], _op_enum(kind, op), ins, outs))


# The "Format/Datatype" TensorRT prints for a row-major tensor of each type (strings of NVIDIA's TREx table,
# python_tests/data/trt_reference/engine_inspector_format.json; FP32/FP16 as in NVIDIA's example engine JSON files).
FORMATS = {
    DataType.FLOAT: "Row major linear FP32",
    DataType.HALF: "Row major linear FP16 format",
    DataType.BF16: "Row major linear BFloat16 format",
    DataType.INT32: "Row major linear Int32",
    DataType.INT64: "Row major linear Int64 format",
    DataType.INT8: "Row major Int8 format",
    DataType.UINT8: "Row major linear UInt8 format",
    DataType.BOOL: "Row major linear BOOL",
}
_PARAMETER_TYPES = {  # the network layer kind -> a ParameterType name of TREx's layer table
    "ELEMENTWISE": "ElementWise",
    "UNARY": "PointWise",
    "ACTIVATION": "PointWise",
    "REDUCE": "Reduce",
    "SOFTMAX": "SoftMax",
    "MATRIX_MULTIPLY": "MatrixMultiply",
    "SHUFFLE": "Shuffle",
    "SLICE": "Slice",
    "CONVOLUTION": "Convolution",
    "POOLING": "Pooling",
    "SCALE": "Scale",
    "QUANTIZE": "Quantize",
    "DEQUANTIZE": "Quantize",
}


class EngineInspector:
    """``EngineInspector`` of a fake engine, writing the JSON layout NVIDIA documents and publishes (see
    ``trt_inspector_format.py``; ``test_fake_engine_inspector.py`` holds this fake to it):

    * ``{"Layers": [...], "Bindings": [...]}``; with ``ProfilingVerbosity.LAYER_NAMES_ONLY`` (the default) the layers
      are their names (strings); ``DETAILED``: objects with ``Name``, ``LayerType``, ``ParameterType``, ``Inputs``,
      ``Outputs`` (each tensor ``Name``, ``Location``, ``Dimensions``, ``Format/Datatype``) and ``TacticValue``;
      ``NONE``: "no layer information will be printed" (the documentation gives no JSON for it: the fake writes an
      empty ``Layers``);
    * without an execution context, shape-dependent dimensions are -1 and no tensor has ``Format/Datatype``;
    * a layer fused with the next one is one engine layer named "a + b" (NVIDIA's "Conv_0 + Relu_1"), and where a
      float layer reads a tensor of another float precision a "Reformatting CopyNode for Input Tensor k to <layer>"
      layer comes before it (as in NVIDIA's examples).

    Precisions: a layer pinned to fp32 under a precision-constraint flag runs in FP32 unless its name is in
    ``ignored`` (then fused with its neighbour into an FP16 kernel, as TensorRT does when it ignores a preference) or
    ``foreign`` (merged into one Myelin ``{ForeignNode[first...last]}`` layer, whose tensors it does not describe);
    other float layers run in FP16 when the FP16 flag is set. Shapes are not computed (the fake computes nothing):
    network inputs have the context's shapes, other tensors the shapes they were declared with."""

    def __init__(self, network, config, ignored=(), foreign=()):
        self._network, self._config, self._ignored, self._foreign = network, config, set(ignored), set(foreign)
        self._context = None

    @property
    def execution_context(self):
        return self._context

    @execution_context.setter
    def execution_context(self, context) -> None:
        self._context = context

    def _float_precision(self, layer) -> DataType:
        constrained = self._config.get_flag(BuilderFlag.OBEY_PRECISION_CONSTRAINTS) or self._config.get_flag(
            BuilderFlag.PREFER_PRECISION_CONSTRAINTS
        )
        if constrained and layer.precision == DataType.FLOAT and layer.name not in self._ignored:
            return DataType.FLOAT
        return DataType.HALF if self._config.get_flag(BuilderFlag.FP16) else DataType.FLOAT

    def _groups(self) -> List[List]:
        """The network layers (outside the Myelin region) grouped into engine layers, in network order: an ignored
        pin is fused with a neighbour in the data flow that runs in FP16 (its consumer, else its producer), as
        TensorRT fuses a layer whose fp32 preference it ignores into an fp16 kernel; other layers stand alone."""
        layers = [layer for layer in self._network.layers if layer.name not in self._foreign]
        outputs = {id(layer): {layer.get_output(j).name for j in range(layer.num_outputs)} for layer in layers}
        inputs = {id(layer): {layer.get_input(k).name for k in range(layer.num_inputs)} for layer in layers}
        partner_of: Dict[int, object] = {}
        taken = set()
        for layer in layers:
            if layer.name not in self._ignored:
                continue
            fp16 = [o for o in layers if o is not layer and id(o) not in taken and o.name not in self._ignored
                    and self._is_float(o) and self._float_precision(o) == DataType.HALF]  # fmt: skip
            consumers = [o for o in fp16 if inputs[id(o)] & outputs[id(layer)]]
            producers = [o for o in fp16 if outputs[id(o)] & inputs[id(layer)]]
            for partner in consumers[:1] or producers[:1]:
                partner_of[id(layer)] = partner
                taken |= {id(layer), id(partner)}
        groups: List[List] = []
        placed = set()
        for layer in layers:
            if id(layer) in placed:
                continue
            partner = partner_of.get(id(layer)) or next((l for l in layers if partner_of.get(id(l)) is layer), None)
            group = sorted([layer, partner], key=layers.index) if partner is not None else [layer]
            placed |= {id(l) for l in group}
            groups.append(group)
        return groups

    @staticmethod
    def _is_float(layer) -> bool:
        return all(layer.get_output(j).dtype in (DataType.FLOAT, DataType.HALF) for j in range(layer.num_outputs))

    def _tensor(self, tensor, dtype: DataType, name=None) -> Dict[str, object]:
        shapes = self._context.shapes if self._context is not None else {}
        dims = list(shapes.get(tensor.name, tensor.shape))
        entry: Dict[str, object] = {"Name": name or tensor.name, "Location": "Device", "Dimensions": dims}
        if self._context is not None:  # without one, TensorRT shows no format information
            entry["Format/Datatype"] = FORMATS[dtype]
        return entry

    def _detailed(self) -> List[Dict[str, object]]:
        out: List[Dict[str, object]] = []
        foreign = [layer.name for layer in self._network.layers if layer.name in self._foreign]
        if foreign:
            out.append({"Name": f"{{ForeignNode[{foreign[0]}...{foreign[-1]}]}}", "LayerType": "Myelin",
                        "Inputs": [], "Outputs": [], "TacticValue": "0x0000000000000000"})  # fmt: skip
        produced: Dict[str, DataType] = {}  # tensor name -> the type it has in the engine
        for group in self._groups():
            last, kind = group[-1], group[-1].type.name
            float_group = all(self._is_float(layer) for layer in group)
            precision = (
                DataType.HALF if any(self._float_precision(l) == DataType.HALF for l in group) else DataType.FLOAT
            )
            name = " + ".join(layer.name for layer in group)
            inputs = []
            for k in range(group[0].num_inputs):
                tensor = group[0].get_input(k)
                have = produced.get(tensor.name, tensor.dtype)
                if float_group and have in (DataType.FLOAT, DataType.HALF) and have != precision:
                    reformatted = f"Reformatted Input Tensor {k} to {name}"
                    out.append({
                        "Name": f"Reformatting CopyNode for Input Tensor {k} to {name}",
                        "LayerType": "Reformat", "ParameterType": "Reformat",
                        "Inputs": [self._tensor(tensor, have)],
                        "Outputs": [self._tensor(tensor, precision, reformatted)],
                        "TacticValue": "0x0000000000000000",
                    })  # fmt: skip
                    inputs.append(self._tensor(tensor, precision, reformatted))
                else:
                    inputs.append(self._tensor(tensor, have))
            outputs = []
            for j in range(last.num_outputs):
                tensor = last.get_output(j)
                dtype = precision if tensor.dtype in (DataType.FLOAT, DataType.HALF) else tensor.dtype
                produced[tensor.name] = dtype
                outputs.append(self._tensor(tensor, dtype))
            parameter = _PARAMETER_TYPES.get(kind, kind.title())
            out.append({"Name": name, "LayerType": parameter, "ParameterType": parameter, "Inputs": inputs,
                        "Outputs": outputs, "TacticValue": "0x0000000000000000"})  # fmt: skip
        return out

    def _bindings(self) -> List[str]:
        consumed = {layer.get_input(k).name for layer in self._network.layers for k in range(layer.num_inputs)}
        outputs = [
            layer.get_output(j).name
            for layer in self._network.layers
            for j in range(layer.num_outputs)
            if layer.get_output(j).name not in consumed
        ]
        return [tensor.name for tensor in self._network.inputs] + outputs

    def get_engine_information(self, format: LayerInformationFormat) -> str:  # noqa: A002 - TensorRT's name
        if format != LayerInformationFormat.JSON:
            raise NotImplementedError("the fake inspector writes JSON only (ONELINE is not modelled)")
        verbosity = self._config.profiling_verbosity
        if verbosity == ProfilingVerbosity.DETAILED:
            layers: List[object] = list(self._detailed())
        elif verbosity == ProfilingVerbosity.NONE:
            layers = []
        else:  # LAYER_NAMES_ONLY: the names only
            layers = [entry["Name"] for entry in self._detailed()]
        return json.dumps({"Layers": layers, "Bindings": self._bindings()})


class ICudaEngine:
    def __init__(self, inspector: EngineInspector):
        self._inspector = inspector

    def create_execution_context_without_device_memory(self):
        return IExecutionContext()

    def create_engine_inspector(self) -> EngineInspector:
        return self._inspector


class IExecutionContext:
    def __init__(self):
        self.shapes: Dict[str, Tuple[int, ...]] = {}

    def set_input_shape(self, name: str, shape) -> bool:
        self.shapes[name] = tuple(shape)
        return True


def make_module(version: str = "10.3.0", graphs: Dict[str, List[LayerSpec]] = None, input_shapes=None):
    """A fake ``tensorrt`` module (see the module docstring); ``input_shapes``: network input name -> shape
    (default ``(-1, -1)``). ``module.live_builders`` holds the Builder objects still alive; ``module.built`` the
    (network, config) of each build; ``module.ignored_pins`` / ``module.foreign_layers`` shape what the fake engine
    inspector reports (see ``EngineInspector``)."""
    calls: List = []
    graphs = dict(graphs or {})
    input_shapes = dict(input_shapes or {})
    live_builders: "weakref.WeakSet" = weakref.WeakSet()
    built: List = []
    settings = types.SimpleNamespace(ignored_pins=set(), foreign_layers=set())

    class Logger:
        WARNING, VERBOSE = "WARNING", "VERBOSE"

        def __init__(self, min_severity="WARNING"):
            calls.append(("Logger", (min_severity,)))
            self._min_severity = min_severity

        @property
        def min_severity(self):
            return self._min_severity

        @min_severity.setter
        def min_severity(self, value) -> None:
            calls.append(("Logger.min_severity", (value,)))
            self._min_severity = value

    class OnnxParser:
        def __init__(self, network: INetworkDefinition, logger):
            self.network = network
            calls.append(("OnnxParser", ()))

        def parse_from_file(self, model: str) -> bool:
            calls.append(("OnnxParser.parse_from_file", (model,)))
            graph = graphs[model]
            if hasattr(graph, "layers"):  # a LoweredGraph (fake_onnx_importer): a real exported graph
                _add_layers(calls, self.network, graph.layers, input_shapes, declared=graph.inputs)
            else:
                _add_layers(calls, self.network, graph, input_shapes)
            return True

        @property
        def num_errors(self) -> int:
            return 0

        def get_error(self, index: int):
            raise IndexError(index)

    class Builder:
        def __init__(self, logger):
            calls.append(("Builder", ()))
            live_builders.add(self)

        def create_network(self, flags: int = 0) -> INetworkDefinition:
            calls.append(("Builder.create_network", (flags,)))
            return INetworkDefinition(calls)

        def create_builder_config(self) -> IBuilderConfig:
            calls.append(("Builder.create_builder_config", ()))
            return IBuilderConfig(calls)

        def create_optimization_profile(self) -> IOptimizationProfile:
            return IOptimizationProfile(calls)

        def build_serialized_network(self, network: INetworkDefinition, config: IBuilderConfig):
            calls.append(("Builder.build_serialized_network", (network, config)))
            built.append((network, config))
            return b"serialized engine"

    class Runtime:
        def __init__(self, logger):
            calls.append(("Runtime", ()))

        def deserialize_cuda_engine(self, serialized_engine):
            calls.append(("Runtime.deserialize_cuda_engine", (bytes(serialized_engine),)))
            network, config = built[-1]
            inspector = EngineInspector(network, config, settings.ignored_pins, settings.foreign_layers)
            return ICudaEngine(inspector)

    module = types.SimpleNamespace(
        __version__=version,
        calls=calls,
        graphs=graphs,
        input_shapes=input_shapes,
        Logger=Logger,
        Builder=Builder,
        OnnxParser=OnnxParser,
        Runtime=Runtime,
        live_builders=live_builders,
        built=built,
        settings=settings,
        ProfilingVerbosity=ProfilingVerbosity,
        LayerInformationFormat=LayerInformationFormat,
        TensorIOMode=TensorIOMode,
        BuilderFlag=BuilderFlag,
        MemoryPoolType=MemoryPoolType,
        NetworkDefinitionCreationFlag=NetworkDefinitionCreationFlag,
        LayerType=LayerType,
        ElementWiseOperation=ElementWiseOperation,
        UnaryOperation=UnaryOperation,
        ReduceOperation=ReduceOperation,
        ILayer=ILayer,
        IUnaryLayer=IUnaryLayer,
        IElementWiseLayer=IElementWiseLayer,
        IReduceLayer=IReduceLayer,
        float32=DataType.FLOAT,
        float16=DataType.HALF,
        int32=DataType.INT32,
        int64=DataType.INT64,
        DataType=DataType,
    )
    return module


def l2_norm_layers(prefix: str, source: str, output: str) -> List[LayerSpec]:
    """ReduceL2 as the TensorRT ONNX parser lowers it (x * x -> ReduceSum -> Sqrt), then the division."""
    return [
        (f"{prefix}/square", "ELEMENTWISE", "PROD", [source, source], [f"{prefix}/sq"], "FLOAT"),
        (f"{prefix}/sum", "REDUCE", "SUM", [f"{prefix}/sq"], [f"{prefix}/sumsq"], "FLOAT"),
        (f"{prefix}/sqrt", "UNARY", "SQRT", [f"{prefix}/sumsq"], [f"{prefix}/norm"], "FLOAT"),
        (f"{prefix}/div", "ELEMENTWISE", "DIV", [source, f"{prefix}/norm"], [output], "FLOAT"),
    ]


def encoder_layers(input_name: str, with_qdq: bool = False) -> List[LayerSpec]:
    """A miniature transformer block + L2 normalisation, as parsed layers (``input_name``: the network input)."""
    layers: List[LayerSpec] = [("shape_const", "CONSTANT", None, [], ["shape_a"], "INT32")]
    if with_qdq:
        layers += [
            ("q", "QUANTIZE", None, [input_name], ["xq"], "INT8"),
            ("dq", "DEQUANTIZE", None, ["xq"], ["x"], "FLOAT"),
        ]
    else:
        layers += [("in", "ACTIVATION", None, [input_name], ["x"], "FLOAT")]
    layers += [
        ("ln", "NORMALIZATION", None, ["x"], ["ln_out"], "FLOAT"),
        ("qk", "MATRIX_MULTIPLY", None, ["ln_out", "ln_out"], ["scores"], "FLOAT"),
        ("softmax", "SOFTMAX", None, ["scores"], ["probs"], "FLOAT"),
        ("av", "MATRIX_MULTIPLY", None, ["probs", "ln_out"], ["attn"], "FLOAT"),
        ("shape_mul", "ELEMENTWISE", "PROD", ["shape_a", "shape_a"], ["shape_b"], "INT32"),
    ]
    return layers + l2_norm_layers("l2", "attn", "text_embeddings")
