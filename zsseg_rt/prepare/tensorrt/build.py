"""TensorRT engines from an export bundle: build (TensorRT Python API, no trtexec) and cache. Loading and running
engines lives on the runtime side (:mod:`zsseg_rt.runtime.tensorrt`, re-exported here).

Supported: TensorRT 10.x (JetPack 6.1+ and NVIDIA's desktop wheels, `pip install "tensorrt>=10,<11"`). TensorRT 8.x
(JetPack 5: 8.5, JetPack 6.0: 8.6) is refused with a clear message: bundles are exported at ONNX opset 18 (native
LayerNormalization), beyond what those parsers accept. TensorRT 11+ is refused too: it removed the fp16/int8
builder flags and precision constraints this builder uses (weakly typed networks).

Precision policy: "fp16" is plain fp16 (the ONNX importer computes opset-17+ LayerNormalization in fp32 by itself)
with only the sum of squares of each L2 normalisation (ReduceL2 = square -> sum -> sqrt) preferred in fp32: it is the
one place where a value grows with the square of the features (x*x overflows fp16 once |x| > 255.9, the sum once
||x|| > 255.9). "fp16-pinned" is the former recipe (LayerNorm/Softmax/reductions pinned to fp32 with
OBEY_PRECISION_CONSTRAINTS), "fp32" the reference, "int8" explicit quantisation only (Q/DQ nodes in the graph). Every
build then passes the accuracy gate (:mod:`zsseg_rt.prepare.gate`) before its engines are used.

``import tensorrt`` happens inside functions, so this module imports anywhere; calls that need TensorRT raise an
``ImportError`` with install guidance. Engines live in ``<bundle>/engines/<key>/`` where ``key`` hashes
(graph, ONNX sha256 from meta.json, precision, shape profile, TensorRT version, GPU name, compute capability,
multiprocessor count, total memory);
an ``engine.json`` beside each engine records those fields, and an engine whose record does not match this
machine is rebuilt (``build_engines``) or refused (``load_engine``, ``find_engines``), never used silently.
"""

from __future__ import annotations

import gc
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence

from zsseg_rt.bundle import BundleMeta, load_meta
from zsseg_rt.console.progress import stage_bar
from zsseg_rt.pipeline.preprocess import rescaled_size, sliding_windows
from zsseg_rt.prepare.tensorrt.memory import PeakMemory, default_workspace_bytes, summarize_memory
from zsseg_rt.prepare.tensorrt.precision import (  # noqa: F401  (re-exported: the precision recipes' public API)
    inspect_pins,
    keep_numerics_in_fp32,
    l2_sum_of_squares_layers,
    pin_to_fp32,
    shape_only_layers,
    summarize_pins,
)
from zsseg_rt.runtime.backends.tensorrt.engines import (  # noqa: F401  (re-exported: the builder's public API includes the runner)
    INSTALL_HINT,
    MAX_TENSORRT,
    MIN_TENSORRT,
    TensorRTRunner,
    check_tensorrt_version,
    engine_root,
    find_engines,
    graph_roles,
    import_tensorrt,
    load_engine,
    parse_version,
    tensorrt_logger,
)
from zsseg_rt.runtime.device.cuda_driver import CudaDriver, DeviceInfo
from zsseg_rt.runtime.engine_cache import (  # noqa: F401  (re-exported: the engine-cache API lives here too)
    BUILD_RECIPE_VERSION,
    DEFAULT_MAX_CROPS,
    DEFAULT_MAX_PROMPTS,
    ENGINE_RECORD,
    ENGINE_SUFFIX,
    GRAPH_FILES,
    AxisRange,
    EngineBuildError,
    EngineKey,
    EngineMismatchError,
    Shape,
    accuracy_gate_problem,
    atomic_write,
    axis_ranges,
    bundle_graph_files,
    cached_engine_problem,
    check_engine,
    check_engine_platform,
    dynamic_input_axes,
    engine_path_for,
    graph_precision,
    graph_profile,
    is_two_stage,
    make_engine_key,
    profile_count,
    profile_ranges,
    profile_shapes,
    read_engine_record,
    record_accuracy_gate,
    update_engine_record,
    validate_precision,
    write_engine_record,
)
from zsseg_rt.runtime.file_verification import verify_bundle_files

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


def has_explicit_quantization(network, trt) -> bool:
    """True when the parsed network has QuantizeLinear/DequantizeLinear layers (an explicitly quantised graph)."""
    kinds = (trt.LayerType.QUANTIZE, trt.LayerType.DEQUANTIZE)
    return any(network.get_layer(i).type in kinds for i in range(network.num_layers))


class TensorRTToolchain:
    """The real TensorRT + CUDA backend of ``build_engines`` (tests substitute a fake with the same members:
    ``version``, ``device`` and ``build(job)``)."""

    def __init__(self, device_index: int = 0, verbose: bool = False, cuda: Optional[CudaDriver] = None):
        self.trt = import_tensorrt()
        self.cuda = cuda if cuda is not None else CudaDriver()
        self.device_index = device_index
        self.logger = tensorrt_logger(self.trt, verbose)

    @property
    def version(self) -> str:
        return str(self.trt.__version__)

    @property
    def device(self) -> DeviceInfo:
        return self.cuda.device_info(self.device_index)

    def backend(self, meta: BundleMeta, engine_paths: Dict[str, str]):
        """A runtime backend running these freshly built engines (for the accuracy gate): the windowed pipeline's
        role object over the :class:`TrtRunner` of these engines, or for a two-stage bundle that runner itself."""
        from zsseg_rt.runtime.backends import WindowedGraphs
        from zsseg_rt.runtime.backends.tensorrt import TrtRunner

        if is_two_stage(meta):
            return TrtRunner(meta, engine_paths=engine_paths, roles=list(engine_paths))
        return WindowedGraphs(TrtRunner(meta, engine_paths=engine_paths, roles=WindowedGraphs.roles), meta)

    @property
    def integrated(self) -> bool:
        """True on an integrated-memory GPU (Jetson: one DRAM shared by the CPU and the GPU)."""
        from zsseg_rt.runtime.device.cuda_driver import ATTR_INTEGRATED

        return bool(self.cuda.device_attribute(ATTR_INTEGRATED, self.device_index))

    def device_memory_used(self) -> Optional[int]:
        """Bytes of device memory in use now (``cuMemGetInfo``: total - free), for the build's memory report."""
        free, total = self.cuda.mem_get_info()
        return int(total - free)

    def build(self, job: BuildJob) -> Dict[str, object]:
        """Parse ``job.onnx_path`` (streamed from file), build with the job's profile/precision, write the engine.

        Returns:
            what goes into the engine record besides its key: ``{"precision_pins": ...}`` (which fp32 pins held,
            read back with the engine inspector) when the recipe pinned layers, else ``{}``.
        """
        self.cuda.use_primary_context(self.device_index)
        serialized, pinned, opt_shapes, timing_cache = self._build_serialized(job)
        # the builder, network, parser and config are gone here: only the engine bytes are held
        if job.timing_cache_path and timing_cache is not None:
            atomic_write(job.timing_cache_path, timing_cache)
        atomic_write(job.engine_path, serialized)
        if not pinned:
            return {}
        record = inspect_pins(self.trt, self.logger, serialized, opt_shapes, pinned)
        LOG.info("%s: %s", os.path.basename(job.engine_path), summarize_pins(record))
        return {"precision_pins": record}

    def _build_serialized(self, job: BuildJob):
        """(engine bytes, pinned layer names, opt input shapes, timing-cache bytes); every TensorRT builder object is
        released before this returns (on a Jetson the accuracy gate runs next in the same memory)."""
        trt = self.trt
        builder = trt.Builder(self.logger)
        network = parser = config = None
        try:
            network = builder.create_network(0)  # TensorRT 10: explicit batch is the only mode
            parser = trt.OnnxParser(network, self.logger)
            if not parser.parse_from_file(job.onnx_path):
                errors = "\n  ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
                raise EngineBuildError(
                    f"TensorRT could not parse {job.onnx_path!r}:\n  {errors}\n"
                    "Run zsseg_rt.prepare.tensorrt.compat.check_trt_compatibility on it for a diagnosis."
                )
            config = builder.create_builder_config()
            if job.workspace_bytes:
                config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(job.workspace_bytes))
            opt_shapes: Dict[str, Any] = {}
            # one profile, or two for the graphs of an image graph of any size (wide and tall images)
            for index in range(profile_count(dict(job.key.profile))):
                profile, shapes = self._profile(builder, network, job, profile_ranges(job.ranges, index))
                config.add_optimization_profile(profile)
                opt_shapes = opt_shapes or shapes  # the inspector reads profile 0's
            pinned = self._set_precision(network, config, job)
            if pinned:  # layer precisions in the engine, for the inspector (no effect on speed)
                config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
            timing_cache = self._load_timing_cache(config, job.timing_cache_path)
            LOG.warning("building TensorRT %s engine for %s (this takes minutes)", job.key.precision, job.onnx_path)
            serialized = builder.build_serialized_network(network, config)
            if serialized is None:
                raise EngineBuildError(
                    f"TensorRT failed to build {job.onnx_path!r} ({job.key.precision}); see the "
                    "TensorRT log above; precision='fp32' or a smaller profile may build"
                )
            cache_bytes = bytes(timing_cache.serialize()) if job.timing_cache_path else None
            return bytes(serialized), pinned, opt_shapes, cache_bytes
        finally:
            del parser, network, config, builder
            gc.collect()  # TensorRT objects held by reference cycles (e.g. a traceback) go now, not later

    def _profile(self, builder, network, job: BuildJob, ranges: Dict[str, AxisRange]):
        """(optimisation profile of ``ranges``, opt shape of every input)."""
        profile = builder.create_optimization_profile()
        opt_shapes = {}
        for i in range(network.num_inputs):
            tensor = network.get_input(i)
            axes = job.dynamic_axes.get(tensor.name)
            if axes is None:
                raise EngineBuildError(
                    f"{job.onnx_path!r} has an unexpected input {tensor.name!r}; expected "
                    f"{sorted(job.dynamic_axes)}; re-export the bundle"
                )
            shapes = profile_shapes(tensor.name, tuple(tensor.shape), axes, ranges)
            profile.set_shape(tensor.name, *shapes)
            opt_shapes[tensor.name] = shapes[1]
        return profile, opt_shapes

    def _set_precision(self, network, config, job: BuildJob) -> List[str]:
        """Builder flags and layer precisions of ``job.key.precision`` (see the module docstring); returns the names of
        the layers pinned to fp32."""
        trt, precision = self.trt, job.key.precision
        if precision == "fp32":
            config.clear_flag(trt.BuilderFlag.TF32)  # fp32 means reference numerics, not TF32 matmuls
            return []
        if precision == "int8" and not has_explicit_quantization(network, trt):
            raise EngineBuildError(
                f"precision='int8' needs an explicitly quantised graph (QuantizeLinear/DequantizeLinear nodes), "
                f"and {job.onnx_path!r} has none. zsseg_rt does not calibrate implicitly (deprecated in TensorRT 10, "
                "removed in 11); quantise the ONNX graph (e.g. NVIDIA Model Optimizer) or use precision='fp16'"
            )
        config.set_flag(trt.BuilderFlag.FP16)
        if precision == "int8":
            config.set_flag(trt.BuilderFlag.INT8)  # runs the graph's Q/DQ pairs in int8
        if precision == "fp16-pinned":
            pinned = keep_numerics_in_fp32(network, trt)
            if pinned:
                config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
            LOG.info("%d layers pinned to fp32 (LayerNorm/Softmax/normalisation, obeyed)", len(pinned))
            return pinned
        pinned = pin_to_fp32(l2_sum_of_squares_layers(network, trt), trt)
        if pinned:  # a preference: TensorRT may still fuse them (with a warning) rather than fail the build
            config.set_flag(trt.BuilderFlag.PREFER_PRECISION_CONSTRAINTS)
        LOG.info("%d L2-norm layers (sum of squares) preferred in fp32", len(pinned))
        return pinned

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
def refuse_unsupported_family(meta: BundleMeta) -> None:
    """Raise ValueError for a bundle whose runtime pipeline has no TensorRT path (the pipeline says which backends
    it supports: ``zsseg_rt.runtime.pipelines``)."""
    from zsseg_rt.runtime.pipelines import pipeline_class

    kind = getattr(meta, "pipeline", "windowed")  # stand-ins without one (tests) are windowed bundles
    pipeline = pipeline_class(kind)
    if not pipeline.supports("tensorrt"):
        raise ValueError(
            f"{meta.path!r} is a bundle of the {kind} pipeline ({pipeline.description}): TensorRT engines are not "
            f"built for it (it runs with {', '.join(pipeline.backend_names())})"
        )


def default_max_batch(meta: BundleMeta) -> int:
    """``zsseg build-engine``'s default ``max_batch``: a windowed bundle's :func:`frame_windows`; a two-stage bundle's
    crops per CLIP encoder call, ``DEFAULT_MAX_CROPS`` (32, the Engine's default ``max_batch`` for that pipeline)."""
    refuse_unsupported_family(meta)
    return DEFAULT_MAX_CROPS if is_two_stage(meta) else frame_windows(meta)


def frame_windows(meta: BundleMeta, width: int = 640, height: int = 480) -> int:
    """Sliding windows of a ``width x height`` frame (default 4:3) at the bundle's test scale, crop and stride:
    the default ``max_batch`` of ``zsseg build-engine`` (one encoder call per camera frame)."""
    refuse_unsupported_family(meta)
    scaled_h, scaled_w = rescaled_size(int(height), int(width), meta.test_scale)
    return len(sliding_windows(scaled_h, scaled_w, int(meta.crop_size), int(meta.stride)))


@dataclass
class EngineBuildReport:
    """What ``build_engine_set`` did: the engines, which were built now, their size, and the accuracy gate."""

    paths: Dict[str, str]
    precision: str
    built: List[str] = field(default_factory=list)
    seconds: float = 0.0
    gate: Optional[Dict] = None  # the accuracy_gate record (None: no engine built and none recorded)
    tensorrt_version: str = ""
    device: Optional[DeviceInfo] = None
    max_batch: int = 1
    memory: Optional[Dict] = None  # PeakMemory.as_dict() of the build + gate (None: nothing built now)

    @property
    def total_bytes(self) -> int:
        return sum(os.path.getsize(path) for path in self.paths.values() if os.path.isfile(path))

    def summary(self) -> str:
        """One line: what was built (or reused), its size, and the accuracy-gate result."""
        built = "+".join(self.built) if self.built else "nothing (all cached)"
        roles = "+".join(self.paths)
        where = f"{self.device.name} sm {self.device.sm}" if self.device else "this GPU"
        gate = self.gate.get("summary", "accuracy gate: not run") if self.gate else "accuracy gate: not run"
        return (
            f"{self.precision} engines {roles} (batch <= {self.max_batch}) for TensorRT {self.tensorrt_version} on "
            f"{where}: built {built} in {self.seconds:.0f} s, {self.total_bytes / 2**20:.1f} MiB; {gate}; "
            f"{summarize_memory(self.memory)}"
        )


def build_engines(bundle_dir: str, precision: str = "fp16", **kwargs) -> Dict[str, str]:
    """``build_engine_set(...).paths``: ``{"image": path, "head": path, "text": path}`` (see ``build_engine_set``)."""
    return build_engine_set(bundle_dir, precision, **kwargs).paths


def build_engine_set(
    bundle_dir: str,
    precision: str = "fp16",
    max_batch: int = 1,
    opt_classes: int = 20,
    workspace_gb: Optional[float] = None,
    cache_dir: Optional[str] = None,
    force: bool = False,
    *,
    max_prompts: int = DEFAULT_MAX_PROMPTS,
    graphs: Optional[Sequence[str]] = None,
    toolchain=None,
    accuracy_gate: bool = True,
    accept_below_gate: bool = False,
    gate_images: Optional[Sequence] = None,
) -> EngineBuildReport:
    """Build (or reuse) TensorRT engines for a bundle's graphs on this machine, then gate them on accuracy.

    Args:
        bundle_dir: an export bundle (``zsseg export``).
        precision: "fp16" (plain fp16, L2-norm sums of squares in fp32), "fp16-pinned" (LayerNorm/Softmax/
            normalisation obeyed in fp32), "fp32", or "int8" (explicitly quantised image encoder only; the head
            and text encoder are then fp16).
        max_batch: batch profile 1..max_batch (opt = max_batch) of the image encoder and head; for a two-stage
            bundle the crops per CLIP encoder call (``num_crops``; the mask branch's profile takes one image of any
            size the pipeline makes, :func:`~zsseg_rt.runtime.engine_cache.two_stage_ranges`).
        opt_classes: class-count profile of the head: 1 / opt_classes / meta.max_classes.
        workspace_gb: builder workspace limit (default: on an integrated-memory GPU (Jetson) min(memory / 8, 2 GiB),
            elsewhere TensorRT's, i.e. the device memory).
        cache_dir: engine root (default ``<bundle>/engines``).
        force: rebuild even when a matching engine is cached.
        max_prompts: prompt-count profile max of the text encoder (callers chunk larger vocabularies).
        graphs: subset of the bundle's roles (windowed: "image", "head", "text"; two-stage: "mask", "clip_image",
            "text"); default: every graph in the bundle.
        toolchain: a ``TensorRTToolchain`` (default: a new one; tests pass a fake).
        accuracy_gate: run the gate after a build. False skips it and records ``SKIPPED_GATE`` in engine.json (for
            tests of the cache logic on fake bundles; the CLI always runs the gate).
        accept_below_gate: keep and use engines that fail the gate (recorded as overridden).
        gate_images: photos for the gate (default: the sample photos shipped with zsseg_rt).
    Returns:
        an ``EngineBuildReport`` (``.paths``: engines valid for this TensorRT and GPU; ``.summary()``).
    Raises:
        ValueError (arguments), ImportError (no TensorRT 10, with install guidance), BundleError,
        EngineBuildError, EngineAccuracyError (the gate failed; the engines stay on disk, marked refused).
    """
    validate_precision(precision)
    meta = load_meta(bundle_dir)
    refuse_unsupported_family(meta)
    if precision == "int8" and is_two_stage(meta):
        raise ValueError(
            "precision='int8' quantises a windowed bundle's image encoder; two-stage bundles build fp16, "
            "fp16-pinned or fp32 engines"
        )
    ranges = axis_ranges(meta, max_batch, opt_classes, max_prompts)
    roles = graph_roles(meta, graphs)
    toolchain = toolchain if toolchain is not None else TensorRTToolchain()
    version, device = toolchain.version, toolchain.device
    root = engine_root(meta, cache_dir)
    report = EngineBuildReport({}, precision, tensorrt_version=str(version), device=device, max_batch=int(max_batch))
    workspace = _workspace_bytes(workspace_gb, toolchain, device)
    start = time.perf_counter()
    with PeakMemory(getattr(toolchain, "device_memory_used", None)) as peak:
        with stage_bar(len(roles), f"TensorRT {precision} engines", unit="engine") as bar:  # zsseg build-engine's
            for role in roles:
                bar.set_postfix_str(role)
                key = make_engine_key(meta, role, precision, ranges, version, device)
                job = _build_job(meta, role, key, engine_path_for(root, key), ranges, workspace, root, device)
                _build_or_reuse(toolchain, meta, job, force, report)
                bar.update()
        report.seconds = time.perf_counter() - start
        if report.built and accuracy_gate:
            report.gate = _gate(meta, toolchain, report, max_batch, accept_below_gate, gate_images)
    if report.built:
        report.memory = dict(peak.as_dict(), workspace_mib=None if workspace is None else workspace // (1 << 20))
        for path in report.paths.values():
            update_engine_record(path, "build_memory", report.memory)
    if report.built and not accuracy_gate:
        report.gate = dict(SKIPPED_GATE)
        for path in report.paths.values():
            record_accuracy_gate(path, report.gate)
    elif not report.built and report.paths:
        record = read_engine_record(next(iter(report.paths.values())))[1]
        report.gate, report.memory = record.get("accuracy_gate"), record.get("build_memory")
    return report


def _build_or_reuse(toolchain, meta: BundleMeta, job: BuildJob, force: bool, report: EngineBuildReport) -> None:
    """Reuse the cached engine of ``job`` when its record matches, else build it and write its record."""
    problem = "rebuild forced" if force else cached_engine_problem(job.engine_path, job.key)
    if problem is None:
        LOG.info("reusing cached %s engine %s", job.role, job.engine_path)
    else:
        LOG.info("building %s engine (%s)", job.role, problem.splitlines()[0])
        verify_bundle_files(meta, [job.key.graph])
        extra = toolchain.build(job)
        write_engine_record(job.engine_path, job.key, extra=extra or None)
        report.built.append(job.role)
    report.paths[job.role] = job.engine_path


def _workspace_bytes(workspace_gb: Optional[float], toolchain, device: DeviceInfo) -> Optional[int]:
    """The builder workspace limit: the caller's, else ``default_workspace_bytes`` (capped on integrated GPUs)."""
    if workspace_gb:
        return int(workspace_gb * (1 << 30))
    workspace = default_workspace_bytes(int(device.total_memory_mib), bool(getattr(toolchain, "integrated", False)))
    if workspace is not None:
        LOG.info("integrated GPU: builder workspace limited to %d MiB (pass workspace_gb to change)", workspace >> 20)
    return workspace


SKIPPED_GATE = {
    "accepted": True,
    "passed": None,
    "skipped": True,
    "summary": "accuracy gate skipped by the caller (build_engine_set(accuracy_gate=False))",
}


def _gate(meta, toolchain, report: EngineBuildReport, max_batch, accept_below_gate, gate_images) -> Dict:
    """Run the accuracy gate on a fresh build, record it in every engine.json of the set, raise when refused."""
    from zsseg_rt.prepare.gate import EngineAccuracyError

    verify_bundle_files(meta, sorted(bundle_graph_files(meta).values()))  # the reference opens every graph
    options = dict(images=gate_images, max_batch=max_batch, accept_below_gate=accept_below_gate)
    if is_two_stage(meta):
        result = _two_stage_gate(meta, toolchain, report, options)
    else:
        result = _windowed_gate(meta, toolchain, report, options)
    for path in report.paths.values():
        record_accuracy_gate(path, result)
    if not result["accepted"]:
        raise EngineAccuracyError(
            f"{result['summary']}. The {report.precision} engines are refused (kept on disk, marked in engine.json); "
            "build with --precision fp16-pinned or fp32, or accept them with --accept-below-gate"
        )
    return result


def _windowed_gate(meta, toolchain, report: EngineBuildReport, options) -> Dict:
    """The gate of a windowed bundle's engines: the built engines' graphs, ONNX Runtime's elsewhere."""
    from zsseg_rt.prepare.gate import MixedBackend, run_accuracy_gate
    from zsseg_rt.runtime.backends import open_reference

    reference = open_reference(meta)
    roles = list(report.paths)
    candidate = MixedBackend(toolchain.backend(meta, report.paths), reference, roles)
    return run_accuracy_gate(meta, candidate, reference, report.precision, roles=roles, **options).as_dict()


def _two_stage_gate(meta, toolchain, report: EngineBuildReport, options) -> Dict:
    """The gate of a two-stage bundle's engines: the built engines' graphs, ONNX Runtime's elsewhere (one runner of
    the pipeline's roles each), through the two-stage pipeline as ``Engine`` runs it on TensorRT (the host path)."""
    from zsseg_rt.prepare.gate_two_stage import run_two_stage_gate
    from zsseg_rt.runtime.backends import TwoStageGraphs, open_reference

    reference = open_reference(meta, roles=TwoStageGraphs.roles, adapter=TwoStageGraphs).runner
    made = toolchain.backend(meta, report.paths)
    candidate = getattr(made, "runner", made)  # a role object's runner, or the runner itself
    roles = list(report.paths)
    return run_two_stage_gate(meta, candidate, reference, report.precision, roles=roles, **options).as_dict()


def _build_job(meta, role, key, engine_path, ranges, workspace_bytes, root, device) -> BuildJob:
    return BuildJob(
        role=role,
        onnx_path=meta.file(key.graph),
        engine_path=engine_path,
        key=key,
        dynamic_axes=dynamic_input_axes(meta, role),
        ranges=dict(ranges),
        workspace_bytes=workspace_bytes,
        timing_cache_path=timing_cache_path(root, key.tensorrt_version, device),
    )
