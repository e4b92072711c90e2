"""TensorRT engines from an export bundle: build (TensorRT Python API, no trtexec) and cache. Loading and running
engines lives on the runtime side (:mod:`zsseg_rt.runtime.tensorrt`, re-exported here).

Supported: TensorRT 10.x (JetPack 6.1+ and NVIDIA's desktop wheels). TensorRT 8.x (JetPack 5: 8.5, JetPack 6.0:
8.6) is refused with a clear message: bundles are exported at ONNX opset 18 (native LayerNormalization), beyond
what those parsers accept.

``import tensorrt`` happens inside functions, so this module imports anywhere; calls that need TensorRT raise an
``ImportError`` with install guidance. Engines live in ``<bundle>/engines/<key>/`` where ``key`` hashes
(graph, ONNX sha256 from meta.json, precision, shape profile, TensorRT version, GPU name, compute capability);
an ``engine.json`` beside each engine records those fields, and an engine whose record does not match this
machine is rebuilt (``build_engines``) or refused (``load_engine``, ``find_engines``), never used silently.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Callable, Dict, Iterator, List, Optional, Sequence

import numpy as np

from zsseg_rt.bundle import load_meta, verify_files
from zsseg_rt.runtime.cuda_driver import CudaDriver, DeviceInfo
from zsseg_rt.runtime.engine_cache import (  # noqa: F401  (re-exported: the engine-cache API lives here too)
    BUILD_RECIPE_VERSION,
    DEFAULT_MAX_PROMPTS,
    ENGINE_RECORD,
    ENGINE_SUFFIX,
    GRAPH_FILES,
    PRECISIONS,
    AxisRange,
    EngineBuildError,
    EngineKey,
    EngineMismatchError,
    Shape,
    _atomic_write,
    _cached_engine_problem,
    axis_ranges,
    calibration_batches,
    calibration_sha256,
    check_engine,
    check_engine_platform,
    dynamic_input_axes,
    engine_path_for,
    graph_precision,
    graph_profile,
    make_engine_key,
    preprocess_calibration_image,
    profile_shapes,
    read_engine_record,
    validate_precision,
    write_engine_record,
)
from zsseg_rt.runtime.tensorrt import (  # noqa: F401  (re-exported: the builder's public API includes the runner)
    INSTALL_HINT,
    MIN_TENSORRT,
    TensorRTRunner,
    _engine_root,
    _parse_version,
    _roles,
    find_engines,
    import_tensorrt,
    load_engine,
)

LOG = logging.getLogger("zsseg_rt.tensorrt")


# ---------------------------------------------------------------------------------------------- TensorRT builder
@dataclass
class BuildJob:
    """One engine to build: what ``TensorRTToolchain.build`` (or a test double) receives."""

    role: str
    onnx_path: str
    engine_path: str
    key: EngineKey
    dynamic_axes: Dict[str, Dict[int, str]]
    ranges: Dict[str, AxisRange]
    workspace_bytes: Optional[int] = None
    timing_cache_path: Optional[str] = None
    calibration: Optional[Callable[[], Iterator[np.ndarray]]] = None  # int8: yields [1, 3, S, S] float32
    calibration_cache_path: Optional[str] = None


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
    """Pin LayerNorm (native or decomposed), Softmax and L2-normalisation layers to fp32.

    The decomposed forms (ReduceMean/Pow/Sqrt/Div, x / ||x||) are found by marking reductions, Pow and Sqrt and
    then the elementwise/activation layers up to ``hops`` consumers downstream of a reduction or Sqrt (x - mean,
    var + eps, the divide, a clamp before it). Returns the names of the pinned layers.
    """
    layers = [network.get_layer(i) for i in range(network.num_layers)]
    consumers: Dict[str, List[int]] = {}
    for index, layer in enumerate(layers):
        for k in range(layer.num_inputs):
            tensor = layer.get_input(k)
            if tensor is not None:
                consumers.setdefault(tensor.name, []).append(index)
    marked = {i for i, layer in enumerate(layers) if _fp32_sensitive(layer, trt)}
    followers = (trt.LayerType.ELEMENTWISE, trt.LayerType.UNARY, trt.LayerType.ACTIVATION)
    frontier = {i for i in marked if layers[i].type in (trt.LayerType.REDUCE, trt.LayerType.UNARY)}
    for _ in range(hops):
        nxt = set()
        for index in frontier:
            for j in range(layers[index].num_outputs):
                nxt.update(
                    c for c in consumers.get(layers[index].get_output(j).name, []) if layers[c].type in followers
                )
        marked |= nxt
        frontier = nxt
    pinned = []
    for index in sorted(marked):
        layer = layers[index]
        if not _is_float_layer(layer, trt):
            continue  # shape arithmetic on int tensors
        layer.precision = trt.float32
        for j in range(layer.num_outputs):
            layer.set_output_type(j, trt.float32)
        pinned.append(layer.name)
    return pinned


def _make_calibrator(trt, cuda: CudaDriver, batches: Iterator[np.ndarray], cache_path: Optional[str]):
    """An IInt8EntropyCalibrator2 fed from preprocessed images (implicit quantisation; deprecated but present
    in TensorRT 10.x)."""

    class ImageEntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self):
            trt.IInt8EntropyCalibrator2.__init__(self)
            self._batches, self._device, self._capacity, self._current = batches, 0, 0, None

        def get_batch_size(self):
            return 1

        def get_batch(self, names):
            batch = next(self._batches, None)
            if batch is None:
                return None
            self._current = np.ascontiguousarray(batch, dtype=np.float32)
            if self._current.nbytes > self._capacity:
                if self._device:
                    cuda.mem_free(self._device)
                self._device, self._capacity = cuda.mem_alloc(self._current.nbytes), self._current.nbytes
            cuda.copy_to_device(self._device, self._current, 0)
            cuda.stream_synchronize(0)
            return [self._device] * len(names)

        def read_calibration_cache(self):
            if cache_path and os.path.isfile(cache_path):
                with open(cache_path, "rb") as handle:
                    return handle.read()
            return None

        def write_calibration_cache(self, cache):
            if cache_path:
                _atomic_write(cache_path, bytes(cache))

        def free(self):
            if self._device:
                cuda.mem_free(self._device)
                self._device = 0

    return ImageEntropyCalibrator()


class TensorRTToolchain:
    """The real TensorRT + CUDA backend of ``build_engines`` (tests substitute a fake with the same members:
    ``version``, ``device`` and ``build(job)``)."""

    def __init__(self, device_index: int = 0, verbose: bool = False):
        self.trt = import_tensorrt()
        self.cuda = CudaDriver()
        self.device_index = device_index
        self.logger = self.trt.Logger(self.trt.Logger.VERBOSE if verbose else self.trt.Logger.WARNING)

    @property
    def version(self) -> str:
        return str(self.trt.__version__)

    @property
    def device(self) -> DeviceInfo:
        return self.cuda.device_info(self.device_index)

    def build(self, job: BuildJob) -> None:
        """Parse ``job.onnx_path`` (streamed from file), build with the job's profile/precision, write the engine."""
        trt = self.trt
        self.cuda.use_primary_context(self.device_index)
        builder = trt.Builder(self.logger)
        explicit_batch = (
            0 if _parse_version(self.version)[0] >= 10 else 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
        )
        network = builder.create_network(explicit_batch)
        parser = trt.OnnxParser(network, self.logger)
        if not parser.parse_from_file(job.onnx_path):
            errors = "\n  ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise EngineBuildError(
                f"TensorRT could not parse {job.onnx_path!r}:\n  {errors}\n"
                "Run zsseg_rt.export.trt_compat.check_trt_compatibility on it for a diagnosis."
            )
        config = builder.create_builder_config()
        if job.workspace_bytes:
            config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(job.workspace_bytes))
        config.add_optimization_profile(self._profile(builder, network, job))
        calibrator = self._set_precision(builder, network, config, job)
        timing_cache = self._load_timing_cache(config, job.timing_cache_path)
        LOG.warning("building TensorRT %s engine for %s (this takes minutes)", job.key.precision, job.onnx_path)
        try:
            serialized = builder.build_serialized_network(network, config)
        finally:
            if calibrator is not None:
                calibrator.free()
        if serialized is None:
            raise EngineBuildError(
                f"TensorRT failed to build {job.onnx_path!r} ({job.key.precision}); see the "
                "TensorRT log above; precision='fp32' or a smaller profile may build"
            )
        if job.timing_cache_path:
            _atomic_write(job.timing_cache_path, bytes(timing_cache.serialize()))
        _atomic_write(job.engine_path, bytes(serialized))

    def _profile(self, builder, network, job: BuildJob):
        profile = builder.create_optimization_profile()
        for i in range(network.num_inputs):
            tensor = network.get_input(i)
            axes = job.dynamic_axes.get(tensor.name)
            if axes is None:
                raise EngineBuildError(
                    f"{job.onnx_path!r} has an unexpected input {tensor.name!r}; expected "
                    f"{sorted(job.dynamic_axes)}; re-export the bundle"
                )
            profile.set_shape(tensor.name, *profile_shapes(tensor.name, tuple(tensor.shape), axes, job.ranges))
        return profile

    def _set_precision(self, builder, network, config, job: BuildJob):
        trt, precision = self.trt, job.key.precision
        if precision == "fp32":
            config.clear_flag(trt.BuilderFlag.TF32)  # fp32 means reference numerics, not TF32 matmuls
            return None
        config.set_flag(trt.BuilderFlag.FP16)
        pinned = keep_numerics_in_fp32(network, trt)
        if pinned:
            config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
        LOG.info("%d layers pinned to fp32 (LayerNorm/Softmax/normalisation)", len(pinned))
        if precision != "int8":
            return None
        config.set_flag(trt.BuilderFlag.INT8)
        calib_profile = builder.create_optimization_profile()
        for i in range(network.num_inputs):
            tensor = network.get_input(i)
            _, _, high = profile_shapes(
                tensor.name,
                tuple(tensor.shape),
                job.dynamic_axes[tensor.name],
                {axis: (1, 1, 1) for axis in job.ranges},
            )
            calib_profile.set_shape(tensor.name, high, high, high)
        config.set_calibration_profile(calib_profile)
        calibrator = _make_calibrator(trt, self.cuda, job.calibration(), job.calibration_cache_path)
        config.int8_calibrator = calibrator
        return calibrator

    def _load_timing_cache(self, config, path: Optional[str]):
        data = b""
        if path and os.path.isfile(path):
            with open(path, "rb") as handle:
                data = handle.read()
        cache = config.create_timing_cache(data)
        if not config.set_timing_cache(cache, False):
            LOG.warning("timing cache %s does not match this TensorRT/GPU; starting a new one", path)
            cache = config.create_timing_cache(b"")
            config.set_timing_cache(cache, False)
        return cache


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in text).strip("-").lower() or "gpu"


def timing_cache_path(engine_root: str, tensorrt_version: str, device: DeviceInfo) -> str:
    return os.path.join(engine_root, f"timing-trt{tensorrt_version}-{_slug(device.name)}-sm{device.sm}.cache")


# ---------------------------------------------------------------------------------------------- build
def build_engines(
    bundle_dir: str,
    precision: str = "fp16",
    calibration_images: Optional[Sequence] = None,
    max_batch: int = 1,
    opt_classes: int = 20,
    workspace_gb: Optional[float] = None,
    cache_dir: Optional[str] = None,
    force: bool = False,
    *,
    max_prompts: int = DEFAULT_MAX_PROMPTS,
    graphs: Optional[Sequence[str]] = None,
    toolchain=None,
) -> Dict[str, str]:
    """Build (or reuse) TensorRT engines for a bundle's graphs on this machine.

    Args:
        bundle_dir: an export bundle (``zsseg export``).
        precision: "fp32", "fp16" (LayerNorm/Softmax/normalisation kept fp32) or "int8" (image encoder only,
            needs ``calibration_images``; head and text encoder are then fp16).
        calibration_images: int8 only: file paths or ``[H, W, 3]`` uint8 RGB arrays.
        max_batch: batch profile 1..max_batch (opt = max_batch) of the image encoder and head.
        opt_classes: class-count profile of the head: 1 / opt_classes / meta.max_classes.
        workspace_gb: builder workspace limit (default: TensorRT's, i.e. the device memory).
        cache_dir: engine root (default ``<bundle>/engines``).
        force: rebuild even when a matching engine is cached.
        max_prompts: prompt-count profile max of the text encoder (callers chunk larger vocabularies).
        graphs: subset of ("image", "head", "text"); default: every graph in the bundle.
        toolchain: a ``TensorRTToolchain`` (default: a new one; tests pass a fake).
    Returns:
        ``{"image": path, "head": path, "text": path}`` of engines valid for this TensorRT and GPU.
    Raises:
        ValueError (arguments), ImportError (no TensorRT, with install guidance), BundleError, EngineBuildError.
    """
    validate_precision(precision, calibration_images)
    meta = load_meta(bundle_dir)
    ranges = axis_ranges(meta, max_batch, opt_classes, max_prompts)
    roles = _roles(meta, graphs)
    toolchain = toolchain if toolchain is not None else TensorRTToolchain()
    version, device = toolchain.version, toolchain.device
    root = _engine_root(meta, cache_dir)
    calib_sha = calibration_sha256(calibration_images) if precision == "int8" else ""
    paths = {}
    for role in roles:
        key = make_engine_key(meta, role, precision, ranges, version, device, calib_sha)
        engine_path = engine_path_for(root, key)
        problem = "rebuild forced" if force else _cached_engine_problem(engine_path, key)
        if problem is None:
            LOG.info("reusing cached %s engine %s", role, engine_path)
        else:
            LOG.info("building %s engine (%s)", role, problem.splitlines()[0])
            verify_files(meta, [key.graph])
            toolchain.build(
                _build_job(meta, role, key, engine_path, ranges, workspace_gb, root, device, calibration_images)
            )
            write_engine_record(engine_path, key)
        paths[role] = engine_path
    return paths


def _build_job(meta, role, key, engine_path, ranges, workspace_gb, root, device, calibration_images) -> BuildJob:
    int8 = key.precision == "int8"
    return BuildJob(
        role=role,
        onnx_path=meta.file(key.graph),
        engine_path=engine_path,
        key=key,
        dynamic_axes=dynamic_input_axes(meta, role),
        ranges=dict(ranges),
        workspace_bytes=int(workspace_gb * (1 << 30)) if workspace_gb else None,
        timing_cache_path=timing_cache_path(root, key.tensorrt_version, device),
        calibration=(lambda: calibration_batches(calibration_images, meta)) if int8 else None,
        calibration_cache_path=os.path.join(os.path.dirname(engine_path), "calibration.cache") if int8 else None,
    )
