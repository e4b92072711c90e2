"""The TensorRT device path run on the host, to test its chunking, buffers and memory without a GPU or TensorRT.

* ``HostCudaDriver``: the ``CudaDriver`` surface ``CudaMemory`` uses, on host memory: allocations are real NumPy
  blocks at their own addresses, copies are ``memmove``s, streams are in-order (everything is synchronous). It counts
  what is allocated and freed, device and page-locked, so tests can prove what a frame leaves behind.
* ``OrtEngine`` / ``OrtContext``: a TensorRT 10 ``ICudaEngine`` / ``IExecutionContext`` stand-in that runs one bundle
  graph with ONNX Runtime on the buffers bound by address (``set_tensor_address``), with optimisation profiles
  (``get_tensor_profile_shape``, ``set_optimization_profile_async``) that ``set_input_shape`` enforces as TensorRT
  does (returns False outside the active one).
* ``host_ops``: ``zsseg_rt.ops`` for ``CudaBuffer`` arguments, running the CPU kernels on the host memory behind them
  (the CUDA kernels themselves are tested elsewhere against the same reference).

Only the TensorRT and CUDA API calls are stand-ins: ``CudaMemory``, ``TensorRTExecutor`` and ``DevicePipeline`` run
unchanged, with the graphs' real numerics.
"""

from __future__ import annotations

import ctypes
import types
from typing import Callable, Dict, Mapping, Optional, Sequence, Tuple

import numpy as np

from zsseg_rt import ops as real_ops
from zsseg_rt.bundle import BundleMeta, graph_files
from zsseg_rt.runtime.backends import Backend
from zsseg_rt.runtime.device.cuda_memory import CudaBuffer

TRT_DTYPES = {"FLOAT": np.float32, "INT32": np.int32, "HALF": np.float16}


class HostCudaDriver:
    """``CudaDriver`` on host memory (see the module docstring)."""

    def __init__(self, integrated: bool = False):
        self.integrated = integrated
        self.device: Dict[int, np.ndarray] = {}
        self.host: Dict[int, np.ndarray] = {}
        self.sizes: Dict[int, int] = {}  # address -> bytes asked for
        self.allocations = {"device": 0, "host": 0}
        self.stream_flags = []

    @staticmethod
    def _block(nbytes: int) -> Tuple[int, np.ndarray]:
        block = np.zeros(max(int(nbytes), 1) + 256, np.uint8)
        address = block.ctypes.data
        return address + (-address) % 256, block  # 256-byte aligned, as cuMemAlloc

    def stream_create(self, flags: int = 1) -> int:
        self.stream_flags.append(flags)
        return 7

    def stream_destroy(self, stream: int) -> None:
        pass

    def release_primary_context(self) -> None:
        pass

    def device_attribute(self, attribute: int, index: int = 0) -> int:
        return int(self.integrated)

    def mem_alloc(self, nbytes: int) -> int:
        address, block = self._block(nbytes)
        self.device[address], self.sizes[address] = block, int(nbytes)
        self.allocations["device"] += 1
        return address

    def mem_free(self, pointer: int) -> None:
        del self.device[pointer]  # KeyError: a double free or a pointer this driver never gave out

    def host_alloc(self, nbytes: int, mapped: bool = False) -> int:
        address, block = self._block(nbytes)
        self.host[address], self.sizes[address] = block, int(nbytes)
        self.allocations["host"] += 1
        return address

    def host_free(self, pointer: int) -> None:
        del self.host[pointer]

    def host_device_pointer(self, host_pointer: int) -> int:
        return host_pointer

    def live_bytes(self, kind: str) -> int:
        """Bytes asked for by the allocations of ``kind`` ("device" or "host": page-locked) not yet freed."""
        return sum(self.sizes[address] for address in (self.device if kind == "device" else self.host))

    def copy_to_device(self, pointer: int, array: np.ndarray, stream: int) -> None:
        ctypes.memmove(pointer, np.ascontiguousarray(array).ctypes.data, array.nbytes)

    def copy_to_host(self, array: np.ndarray, pointer: int, stream: int) -> None:
        ctypes.memmove(array.ctypes.data, pointer, array.nbytes)

    def copy_device_to_device(self, destination: int, source: int, nbytes: int, stream: int) -> None:
        ctypes.memmove(destination, source, nbytes)

    def stream_synchronize(self, stream: int) -> None:
        pass

    def make_current(self) -> None:
        pass


def host_view(buffer) -> np.ndarray:
    """The NumPy array over the host memory behind a ``CudaBuffer`` (or an array, as it is)."""
    if isinstance(buffer, np.ndarray):
        return buffer
    raw = (ctypes.c_uint8 * max(buffer.nbytes, 1)).from_address(buffer.pointer)
    return np.frombuffer(raw, np.uint8, count=buffer.nbytes).view(buffer.dtype).reshape(buffer.shape)


def host_ops() -> types.SimpleNamespace:
    """``zsseg_rt.ops`` as the device pipeline calls it, for ``CudaBuffer`` arguments on host memory."""

    def preprocess(image, scaled_size, windows, crop, mean, std, color_order="bgr", out=None, stream=None):
        real_ops.preprocess(
            host_view(image), scaled_size, windows, crop, mean, std, color_order=color_order, out=host_view(out)
        )
        return out

    def segment_windows(
        logits, windows, head_size, scaled_size, output_size, class_bias=None, sigmoid=None, stream=None, out=None
    ):
        real_ops.segment_windows(
            host_view(logits),
            windows,
            head_size,
            scaled_size,
            output_size,
            class_bias=host_view(class_bias),
            sigmoid=sigmoid,
            out=tuple(host_view(b) for b in out),
        )
        return out

    class SegmentWindowsPlan:  # the prepared launch (runtime/device/postprocess_plans.py) over the same host views
        def __init__(self, logits, windows, head_size, scaled_size, output_size, out, class_bias=None, sigmoid=True,
                     stream=None, bias_checked=False, kernel=None):  # fmt: skip
            self._plan = real_ops.SegmentWindowsPlan(
                host_view(logits), windows, head_size, scaled_size, output_size,
                out=tuple(host_view(b) for b in out), class_bias=host_view(class_bias), sigmoid=sigmoid, kernel=kernel,
            )  # fmt: skip

        def launch(self, stream=-1):
            self._plan.launch()

    return types.SimpleNamespace(preprocess=preprocess, segment_windows=segment_windows,
                                 SegmentWindowsPlan=SegmentWindowsPlan, cuda_available=lambda: True)  # fmt: skip


def fake_tensorrt_module() -> types.SimpleNamespace:
    """The ``tensorrt`` names the executor uses (``TensorIOMode``, ``nptype``)."""
    return types.SimpleNamespace(
        TensorIOMode=types.SimpleNamespace(INPUT="INPUT", OUTPUT="OUTPUT"), nptype=lambda dtype: TRT_DTYPES[dtype]
    )


class OrtEngine:
    """``ICudaEngine`` of one bundle graph: I/O names from meta.json, dtypes from the ONNX graph, the optimisation
    profiles as built by ``zsseg_rt.prepare.tensorrt.build`` for ``ranges`` (``axis_ranges(meta, max_batch, ...)``: one, or
    two for the graphs of an image graph of any size)."""

    def __init__(self, meta: BundleMeta, role: str, ranges: Mapping[str, Tuple[int, int, int]]):
        import onnxruntime

        from zsseg_rt.runtime.engine_cache import (
            dynamic_input_axes,
            graph_profile,
            profile_count,
            profile_ranges,
            profile_shapes,
        )

        self.role = role
        graph = graph_files(getattr(meta, "pipeline", "windowed"))[role]
        self.session = onnxruntime.InferenceSession(meta.file(graph), providers=["CPUExecutionProvider"])
        self.inputs = list(meta.io[role]["inputs"])
        self.outputs = list(meta.io[role]["outputs"])
        kinds = {i.name: i for i in self.session.get_inputs()}
        self.dtypes = {n: ("INT32" if "int32" in kinds[n].type else "FLOAT") for n in self.inputs}
        self.dtypes.update({n: "FLOAT" for n in self.outputs})
        axes = dynamic_input_axes(meta, role)
        self.profiles = [
            {
                name: profile_shapes(
                    name,
                    tuple(d if isinstance(d, int) else -1 for d in kinds[name].shape),
                    axes.get(name, {}),
                    profile_ranges(ranges, index),
                )
                for name in self.inputs
            }
            for index in range(profile_count(graph_profile(meta, role, ranges)))
        ]
        self.profile = self.profiles[0]
        self.num_optimization_profiles = len(self.profiles)
        # execution contexts made: TensorRT allocates each one's activation memory (sized for the largest profile)
        # when it is made, so this counts the engine's activation memories
        self.contexts_made = 0
        self.num_io_tensors = len(self.inputs) + len(self.outputs)
        self.transform: Optional[Callable[[Dict[str, np.ndarray]], Dict[str, np.ndarray]]] = None

    def get_tensor_name(self, index: int) -> str:
        return (self.inputs + self.outputs)[index]

    def get_tensor_mode(self, name: str) -> str:
        return "INPUT" if name in self.inputs else "OUTPUT"

    def get_tensor_dtype(self, name: str) -> str:
        return self.dtypes[name]

    def get_tensor_profile_shape(self, name: str, profile_index: int):
        return [list(shape) for shape in self.profiles[profile_index][name]]

    def create_execution_context(self) -> "OrtContext":
        self.contexts_made += 1
        return OrtContext(self)


class OrtContext:
    """``IExecutionContext``: runs the graph with ONNX Runtime on the bound addresses when executed."""

    def __init__(self, engine: OrtEngine):
        self.engine = engine
        self.active_profile = 0  # TensorRT starts a context on profile 0
        self.shapes: Dict[str, Tuple[int, ...]] = {}
        self.addresses: Dict[str, int] = {}
        self.log = []
        self._output_shapes: Dict[Tuple, Dict[str, Tuple[int, ...]]] = {}  # input shapes -> output shapes

    def set_optimization_profile_async(self, profile_index: int, stream_handle: int) -> bool:
        if not 0 <= profile_index < len(self.engine.profiles):
            return False
        self.log.append(("set_optimization_profile_async", profile_index, stream_handle))
        self.active_profile, self.shapes = profile_index, {}  # shapes are set again for the new profile
        return True

    def set_input_shape(self, name: str, shape) -> bool:
        low, _, high = self.engine.profiles[self.active_profile][name]
        shape = tuple(int(d) for d in shape)
        self.log.append(("set_input_shape", name, shape))
        if len(shape) != len(low) or any(not lo <= d <= hi for d, lo, hi in zip(shape, low, high)):
            return False  # TensorRT logs an error and returns False outside the profile
        self.shapes[name] = shape
        return True

    def set_tensor_address(self, name: str, memory: int) -> bool:
        self.addresses[name] = int(memory)
        return True

    def _inputs(self) -> Dict[str, np.ndarray]:
        feeds = {}
        for name in self.engine.inputs:
            dtype = np.dtype(TRT_DTYPES[self.engine.dtypes[name]])
            view = CudaBuffer(self.addresses[name], self.shapes[name], dtype)
            feeds[name] = host_view(view).copy()
        return feeds

    def _run(self) -> Dict[str, np.ndarray]:
        outputs = dict(zip(self.engine.outputs, self.engine.session.run(self.engine.outputs, self._inputs())))
        return self.engine.transform(outputs) if self.engine.transform else outputs

    def get_tensor_shape(self, name: str):
        """Output shapes follow from the input shapes: found by running the graph once per input-shape set."""
        key = tuple(self.shapes[n] for n in self.engine.inputs)
        if key not in self._output_shapes:
            self._output_shapes[key] = {n: v.shape for n, v in self._run().items()}
        return list(self._output_shapes[key][name])

    def execute_async_v3(self, stream_handle: int) -> bool:
        self.log.append(("execute_async_v3", stream_handle))
        for name, value in self._run().items():
            buffer = CudaBuffer(self.addresses[name], value.shape, np.float32)
            host_view(buffer)[...] = value
        return True


def ort_contexts(meta: BundleMeta, ranges, roles: Sequence[str] = ("image", "head")) -> Dict[str, OrtContext]:
    return {role: OrtEngine(meta, role, ranges).create_execution_context() for role in roles}


class StandInTensorRTBackend(Backend):
    """A "tensorrt" backend for Engine: NumPy graphs through ONNX Runtime on the host path, and a device executor
    that is the real ``TensorRTExecutor`` + ``CudaMemory`` on stand-in engines built for ``max_batch`` (profiles as
    ``build_engine_set(max_batch=...)`` builds them) and a ``HostCudaDriver``. ``device_transform(role, outputs)``
    alters what the stand-in engines return (to model an engine that differs from ONNX Runtime)."""

    name = "tensorrt"
    runs_on_gpu = True  # as the TensorRT runner: the device pipeline takes it

    def __init__(
        self, meta: BundleMeta, max_batch: int, driver: Optional[HostCudaDriver] = None, device_transform=None
    ):
        from zsseg_rt.runtime.backends import open_reference

        self.inner = open_reference(meta)
        self.meta, self.max_batch = meta, int(max_batch)
        self.driver = driver if driver is not None else HostCudaDriver()
        self.device_transform = device_transform
        self.contexts: Optional[Dict[str, OrtContext]] = None

    def encode_image(self, images):
        return self.inner.encode_image(images)

    def head(self, text, features):
        return self.inner.head(text, features)

    def encode_text(self, tokens):
        return self.inner.encode_text(tokens)

    def device_executor(self):
        from zsseg_rt.runtime.device.cuda_memory import CudaMemory, TensorRTExecutor
        from zsseg_rt.runtime.engine_cache import axis_ranges

        self.contexts = ort_contexts(self.meta, axis_ranges(self.meta, self.max_batch, opt_classes=8))
        if self.device_transform is not None:
            for role, context in self.contexts.items():
                context.engine.transform = (lambda r: lambda outputs: self.device_transform(r, outputs))(role)
        return TensorRTExecutor(self.contexts, CudaMemory(self.driver, zero_copy=False))


def tensorrt_backend_on_stand_ins(monkeypatch, meta: BundleMeta, max_batch: int, driver, **kwargs):
    """The real TensorRT backend (a ``TrtRunner`` in its role object; ``kwargs``: its own, e.g. ``cuda_graphs``) whose
    ``TensorRTRunner``s are real too,
    on ``OrtEngine`` stand-ins built for ``max_batch`` and ``driver`` (each runner with a stream of its own); returns
    ``(backend, {role: its OrtEngine})``."""
    from zsseg_rt.runtime.backends import WindowedGraphs
    from zsseg_rt.runtime.backends.tensorrt import TrtRunner
    from zsseg_rt.runtime.backends.tensorrt import engines as trt_run
    from zsseg_rt.runtime.engine_cache import axis_ranges

    engines = {}
    _keep_real_runner()

    def runner(role: str):
        engine = engines[role] = OrtEngine(meta, role, axis_ranges(meta, max_batch, opt_classes=8))
        return stand_in_runner(engine, driver, role)

    monkeypatch.setattr(trt_run, "TensorRTRunner", runner)
    paths = {role: role for role in WindowedGraphs.roles}
    backend = WindowedGraphs(TrtRunner(meta, engine_paths=paths, roles=WindowedGraphs.roles, **kwargs), meta)
    return backend, engines


def stand_in_runner(engine: OrtEngine, driver, engine_path: str):
    """A real ``TensorRTRunner`` (its ``run``, ``select_profile``...) whose constructor's state is set on the stand-in
    ``engine`` and ``driver`` (a stream of its own)."""
    from zsseg_rt.runtime.backends.tensorrt.engines import TensorRTRunner

    runner_class = TensorRTRunner if isinstance(TensorRTRunner, type) else _REAL_RUNNER[0]
    made = object.__new__(runner_class)  # what its constructor sets, on the stand-ins
    made._cuda, made._stream, made._buffers, made.engine_path = driver, driver.stream_create(), {}, engine_path
    made.engine, made.context = engine, engine.create_execution_context()
    made.input_names, made.output_names = list(engine.inputs), list(engine.outputs)
    made.dtypes = {name: np.dtype(TRT_DTYPES[engine.dtypes[name]]) for name in engine.inputs + engine.outputs}
    made.profiles, made._profile = engine.num_optimization_profiles, 0
    return made


_REAL_RUNNER: list = []  # the real TensorRTRunner class, kept before a test replaces it


def _keep_real_runner() -> None:
    from zsseg_rt.runtime.backends.tensorrt.engines import TensorRTRunner

    if not _REAL_RUNNER and isinstance(TensorRTRunner, type):
        _REAL_RUNNER.append(TensorRTRunner)


def engine_files_on_stand_ins(monkeypatch, meta: BundleMeta, tensorrt_version: str, device, transform=None):
    """Make ``zsseg_rt.runtime.backends.tensorrt.engines`` (``find_engines``, ``TensorRTRunner``) take the engine files a fake
    toolchain wrote for ``meta``'s bundle as TensorRT engines of this machine (``tensorrt_version``, ``device``): each
    runs as an ``OrtEngine`` of the graph its ``engine.json`` names, with the optimisation profiles recorded there
    (what the builder asked TensorRT for). ``transform(role, engine bytes, outputs) -> outputs`` models an engine
    that computes something else. Returns the ``OrtEngine``s opened, in order."""
    import types as _types

    from zsseg_rt.runtime.backends.tensorrt import engines as trt_run
    from zsseg_rt.runtime.engine_cache import read_engine_record

    _keep_real_runner()
    driver, opened = HostCudaDriver(), []
    roles = {name: role for role, name in graph_files(getattr(meta, "pipeline", "windowed")).items()}

    def runner(engine_path: str, expected_key=None, device_index: int = 0):
        key, _ = read_engine_record(engine_path)
        role = roles[key.graph]
        engine = OrtEngine(meta, role, dict(key.profile))
        if transform is not None:
            with open(engine_path, "rb") as handle:
                data = handle.read()
            engine.transform = lambda outputs: transform(role, data, outputs)
        opened.append(engine)
        return stand_in_runner(engine, driver, engine_path)

    class Driver:
        def device_info(self, index: int = 0):
            return device

    monkeypatch.setattr(trt_run, "TensorRTRunner", runner)
    monkeypatch.setattr(trt_run, "import_tensorrt", lambda: _types.SimpleNamespace(__version__=tensorrt_version))
    monkeypatch.setattr(trt_run, "CudaDriver", Driver)
    return opened


def install_host_gpu(monkeypatch) -> None:
    """Make the device pipeline's TensorRT and CUDA-op calls land on the host stand-ins (for one test)."""
    from zsseg_rt.runtime.device import device_pipeline

    monkeypatch.setitem(__import__("sys").modules, "tensorrt", fake_tensorrt_module())
    monkeypatch.setattr(device_pipeline, "ops", host_ops())
