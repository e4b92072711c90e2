"""Load and run TensorRT engines built for an export bundle (runtime side; needs no torch and no exporter).

``import tensorrt`` happens inside functions, so this module imports anywhere; calls that need TensorRT raise an
``ImportError`` with install guidance. ``find_engines`` picks the engines recorded (``engine.json``) for this
bundle, precision, TensorRT version and GPU; ``TensorRTRunner`` executes one with numpy inputs/outputs through
the CUDA driver shim (:mod:`zsseg_rt.runtime.device.cuda_driver`). Engines are built by
:mod:`zsseg_rt.prepare.tensorrt.build`.
"""

from __future__ import annotations

import os
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from zsseg_rt.bundle import BundleMeta, Files, load_meta

from ...device.cuda_driver import CudaDriver, DeviceInfo
from ...engine_cache import (
    BUILD_RECIPE_VERSION,
    ENGINE_SUFFIX,
    EngineKey,
    EngineMismatchError,
    Shape,
    bundle_graph_files,
    check_engine,
    check_engine_platform,
    graph_precision,
    platform_fields,
    read_engine_record,
    validate_precision,
)

__all__ = [
    "import_tensorrt",
    "find_engines",
    "load_engine",
    "TensorRTRunner",
    "INSTALL_HINT",
    "install_hint",
    "MIN_TENSORRT",
    "MAX_TENSORRT",
    "check_tensorrt_version",
    "tensorrt_logger",
]

# Supported: TensorRT 10.x. Below: bundles are exported at opset 18, beyond the TensorRT 8.x ONNX parsers.
# 11.0 and later: removed BuilderFlag.FP16/INT8 and OBEY_PRECISION_CONSTRAINTS (strongly typed networks only),
# which this builder uses; `pip install tensorrt` resolves to 11.x today while JetPack 6 stays on 10.x.
MIN_TENSORRT = (10, 0)
MAX_TENSORRT = (11, 0)  # exclusive

JETSON_HINT = (
    "Jetson: JetPack 6.1 or 6.2 (both ship TensorRT 10.3; Python bindings from `sudo apt install python3-libnvinfer`); "
    "JetPack 5 ships TensorRT 8.5 and JetPack 6.0 TensorRT 8.6, which are not supported."
)
CU13_WHEEL = 'pip install "tensorrt-cu13>=10.13,<11"'  # CUDA 13 builds of TensorRT 10 start at 10.13
CU12_WHEEL = 'pip install "tensorrt-cu12>=10,<11"'
DESKTOP_HINT = (
    "Desktop/server: choose NVIDIA's wheel by your driver (`nvidia-smi` shows it): driver r580 or newer (CUDA 13): "
    f"`{CU13_WHEEL}`; a CUDA 12 driver (r535+): `{CU12_WHEEL}`. A bare `pip install tensorrt` installs the CUDA 13 "
    "variant (and today TensorRT 11), which an older driver cannot run (wheels also on "
    "`--extra-index-url https://pypi.nvidia.com`)."
)
INSTALL_HINT = "TensorRT 10.x is required for this (it is imported lazily; nothing else in zsseg_rt needs it). " + (
    f"{JETSON_HINT} {DESKTOP_HINT}"
)


def _on_jetson() -> bool:
    return os.path.exists("/etc/nv_tegra_release")


def install_hint(driver_cuda_version: Optional[int] = None, jetson: Optional[bool] = None) -> str:
    """How to install TensorRT 10 here: the JetPack line on a Jetson; elsewhere the wheel that matches the driver
    (``cuDriverGetVersion``: 13000+ means an r580+ driver, which runs the CUDA 13 wheels; 12000+ the CUDA 12 ones);
    both lines when the driver cannot be asked."""
    jetson = _on_jetson() if jetson is None else jetson
    if jetson:
        return f"TensorRT 10.x is required for this. {JETSON_HINT}"
    if driver_cuda_version is None:
        try:
            driver_cuda_version = CudaDriver().driver_version()
        except Exception:  # noqa: BLE001 - no driver / no GPU: give the generic advice
            return INSTALL_HINT
    major, minor = divmod(int(driver_cuda_version) // 10, 100)
    seen = f"your driver supports CUDA {major}.{minor}"
    if driver_cuda_version >= 13000:
        return f"TensorRT 10.x is required for this; {seen} (r580+): `{CU13_WHEEL}` (or `{CU12_WHEEL}`)."
    if driver_cuda_version >= 12000:
        return (
            f"TensorRT 10.x is required for this; {seen}: `{CU12_WHEEL}` (the CUDA 13 wheels, which a bare "
            "`pip install tensorrt` picks, need an r580+ driver)."
        )
    return (
        f"TensorRT 10.x needs a CUDA 12 or 13 driver and {seen}: update the NVIDIA driver (r535+ for `{CU12_WHEEL}`, "
        f"r580+ for `{CU13_WHEEL}`)."
    )


# ---------------------------------------------------------------------------------------------- TensorRT import
def parse_version(text: str) -> Tuple[int, ...]:
    parts = []
    for piece in text.split(".")[:3]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


def check_tensorrt_version(version: str) -> None:
    """Raise ImportError (one line, with the fix) unless ``version`` is a TensorRT 10.x release."""
    parsed = parse_version(str(version))[:2]
    if parsed < MIN_TENSORRT:
        raise ImportError(
            f"TensorRT {version} is too old: zsseg_rt supports TensorRT 10.x only (bundles use ONNX opset 18, beyond "
            f"the TensorRT 8.x parsers); use JetPack 6.1/6.2 (TensorRT 10.3), or on a desktop `{CU12_WHEEL}` "
            f"(CUDA 12 driver) / `{CU13_WHEEL}` (r580+ driver)"
        )
    if parsed >= MAX_TENSORRT:
        raise ImportError(
            f"TensorRT {version} is not supported: zsseg_rt supports TensorRT 10.x only (11 removed the fp16/int8 "
            f"builder flags it uses); install `{CU12_WHEEL}` (CUDA 12 driver) or `{CU13_WHEEL}` (r580+ driver), "
            "or use JetPack 6.1/6.2 (TensorRT 10.3)"
        )


def import_tensorrt():
    """``import tensorrt``, checking that it is 10.x. Raises ImportError with install guidance."""
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise ImportError(f"cannot import tensorrt ({exc}). {install_hint()}") from exc
    check_tensorrt_version(getattr(trt, "__version__", "0"))
    return trt


_LOGGERS: Dict[int, Any] = {}  # id(tensorrt module) -> its process-wide trt.Logger


def tensorrt_logger(trt=None, verbose: bool = False):
    """The process's one ``trt.Logger`` (TensorRT expects a single logger per process: every builder, runtime and
    parser shares it). ``verbose`` lowers its threshold to VERBOSE; it never raises it again.

    Args:
        trt: the imported ``tensorrt`` module (default: ``import_tensorrt()``).
    """
    trt = trt if trt is not None else import_tensorrt()
    logger = _LOGGERS.get(id(trt))
    if logger is None:
        logger = _LOGGERS[id(trt)] = trt.Logger(trt.Logger.VERBOSE if verbose else trt.Logger.WARNING)
    elif verbose:
        logger.min_severity = trt.Logger.VERBOSE
    return logger


def engine_root(meta: BundleMeta, cache_dir: Optional[str]) -> str:
    return os.path.abspath(cache_dir) if cache_dir else os.path.join(meta.path, Files.ENGINE_DIR)


def graph_roles(meta: BundleMeta, graphs: Optional[Sequence[str]]) -> List[str]:
    """The roles of ``graphs`` (default: every graph the bundle holds), checked against the bundle's pipeline
    (windowed: image, head, text; two-stage: mask, clip_image, text)."""
    files = bundle_graph_files(meta)
    if graphs is None:
        return [role for role, name in files.items() if name in meta.files]
    unknown = [role for role in graphs if role not in files]
    if unknown:
        kind = getattr(meta, "pipeline", "windowed")
        raise ValueError(f"graphs of a {kind} bundle must be among {sorted(files)}, got {unknown}")
    return list(graphs)


def find_engines(
    bundle_dir: str,
    precision: str = "fp16",
    cache_dir: Optional[str] = None,
    *,
    graphs: Optional[Sequence[str]] = None,
    tensorrt_version: Optional[str] = None,
    device: Optional[DeviceInfo] = None,
) -> Dict[str, str]:
    """Engines already built for this bundle, precision, TensorRT version and GPU (any profile; the one with
    the largest profile wins). Never builds.

    Args:
        tensorrt_version, device: this machine's (default: from tensorrt and the CUDA driver; tests inject them).
    Raises:
        EngineMismatchError listing the engines found and why each does not fit, and how to build one.
    """
    if tensorrt_version is None:  # first: a machine without TensorRT is told so, whatever the precision
        tensorrt_version = str(import_tensorrt().__version__)
    validate_precision(precision)
    meta = load_meta(bundle_dir)
    if device is None:
        device = CudaDriver().device_info(0)
    root = engine_root(meta, cache_dir)
    found = {}
    for role in graph_roles(meta, graphs):
        found[role] = _find_engine(root, meta, role, graph_precision(precision, role), tensorrt_version, device)
    return found


def _find_engine(root: str, meta: BundleMeta, role: str, precision: str, version: str, device: DeviceInfo) -> str:
    graph = bundle_graph_files(meta)[role]
    wanted = {
        "graph": graph,
        "onnx_sha256": meta.files.get(graph),
        "precision": precision,
        **platform_fields(version, device),
        "recipe": BUILD_RECIPE_VERSION,
    }
    candidates, rejected = [], []
    for entry in sorted(os.listdir(root)) if os.path.isdir(root) else []:
        engine_path = os.path.join(root, entry, os.path.splitext(graph)[0] + ENGINE_SUFFIX)
        if not os.path.isfile(engine_path):
            continue
        try:
            key, _ = read_engine_record(engine_path)
        except EngineMismatchError as exc:
            rejected.append(str(exc))
            continue
        diffs = [
            f"{name}={getattr(key, name)!r} (need {value!r})"
            for name, value in wanted.items()
            if getattr(key, name) != value
        ]
        if diffs:
            rejected.append(f"{engine_path}: " + ", ".join(diffs))
            continue
        try:
            check_engine(engine_path, key)
        except EngineMismatchError as exc:
            rejected.append(str(exc))
            continue
        candidates.append((sorted(rng[2] for _, rng in key.profile), engine_path))
    if not candidates:
        why = ("\n  - " + "\n  - ".join(rejected)) if rejected else " (no engines in " + repr(root) + ")"
        raise EngineMismatchError(
            f"no usable {precision} TensorRT engine for {graph} on {device.name} (sm {device.sm}) with TensorRT "
            f"{version}:{why}\nBuild one with `zsseg build-engine {meta.path} --precision {precision}`"
        )
    return max(candidates)[1]


# ---------------------------------------------------------------------------------------------- load / run
def load_engine(
    engine_path: str,
    expected_key: Optional[EngineKey] = None,
    *,
    logger=None,
    device_index: int = 0,
    cuda: Optional[CudaDriver] = None,
):
    """Deserialise an engine after checking its ``engine.json``.

    With ``expected_key`` every key field must match; without it the engine must at least be recorded for this
    TensorRT version and GPU. Raises EngineMismatchError (before touching TensorRT when the key differs).
    """
    if expected_key is not None:
        check_engine(engine_path, expected_key)
    trt = import_tensorrt()
    if expected_key is None:
        cuda = cuda if cuda is not None else CudaDriver()
        check_engine_platform(engine_path, str(trt.__version__), cuda.device_info(device_index))
    runtime = trt.Runtime(logger if logger is not None else tensorrt_logger(trt))
    with open(engine_path, "rb") as handle:
        engine = runtime.deserialize_cuda_engine(handle.read())
    if engine is None:
        raise EngineMismatchError(
            f"TensorRT could not deserialise {engine_path!r} (see its log); rebuild with "
            "`zsseg build-engine <bundle> --force`"
        )
    return engine


class TensorRTRunner:
    """Runs one engine with numpy inputs and outputs: ``TensorRTRunner(path).run({name: array}) -> {name: array}``.

    Device buffers are allocated with the CUDA driver API (ctypes) and grown on demand; copies and execution
    use one stream (``execute_async_v3``). Not thread-safe: use one runner per thread or a lock.
    """

    def __init__(self, engine_path: str, expected_key: Optional[EngineKey] = None, device_index: int = 0):
        self._trt = trt = import_tensorrt()
        self._cuda = CudaDriver()
        self._cuda.use_primary_context(device_index)
        self.engine_path = engine_path
        self.engine = load_engine(engine_path, expected_key, device_index=device_index, cuda=self._cuda)
        self.context = self.engine.create_execution_context()
        self._stream = self._cuda.stream_create()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.input_names = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.output_names = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        self.dtypes = {n: np.dtype(trt.nptype(self.engine.get_tensor_dtype(n))) for n in names}
        self._buffers: Dict[str, Tuple[int, int]] = {}  # name -> (device pointer, capacity in bytes)
        # optimisation profiles: one, or two for the graphs of an image graph of any size (wide and tall images)
        self.profiles = int(self.engine.num_optimization_profiles)
        self._profile = 0  # the execution context's (TensorRT starts it on profile 0)

    def input_profile(self, name: str, profile: int = 0) -> Tuple[Shape, Shape, Shape]:
        """(min, opt, max) shape of an input in the engine's optimisation profile ``profile``."""
        shapes = self.engine.get_tensor_profile_shape(name, profile)
        low, opt, high = (tuple(int(d) for d in shape) for shape in shapes)
        return low, opt, high

    def _fits(self, name: str, shape: Tuple[int, ...], profile: int) -> bool:
        low, _, high = self.input_profile(name, profile)
        return len(shape) == len(low) and all(lo <= d <= hi for d, lo, hi in zip(shape, low, high))

    def select_profile(self, shapes: Mapping[str, Tuple[int, ...]], stream: Optional[int] = None) -> None:
        """Switch the execution context to the first profile that holds every input shape (the current one when it
        does), enqueued on ``stream`` (default: this runner's; the device pipeline's executor, which shares this
        context, passes its own). Raises ValueError naming the shapes and the profiles when none does."""
        order = [self._profile] + [p for p in range(self.profiles) if p != self._profile]
        stream = self._stream if stream is None else stream
        for profile in order:
            if all(self._fits(name, shape, profile) for name, shape in shapes.items()):
                if profile != self._profile:
                    if not self.context.set_optimization_profile_async(profile, stream):
                        raise RuntimeError(f"TensorRT could not switch {self.engine_path!r} to profile {profile}")
                    self._profile = profile
                return
        ranges = "; ".join(
            f"profile {p}: "
            + ", ".join(f"{n} {list(self.input_profile(n, p)[0])}..{list(self.input_profile(n, p)[2])}" for n in shapes)
            for p in range(self.profiles)
        )
        given = ", ".join(f"{name} {list(shape)}" for name, shape in shapes.items())
        raise ValueError(
            f"inputs {given} are outside the engine's optimisation profiles ({ranges}); split the call or rebuild "
            "with a larger profile"
        )

    def _device_buffer(self, name: str, nbytes: int) -> int:
        pointer, capacity = self._buffers.get(name, (0, 0))
        if nbytes > capacity or not pointer:
            if pointer:
                self._cuda.mem_free(pointer)
            pointer, capacity = self._cuda.mem_alloc(max(nbytes, 256)), max(nbytes, 256)
            self._buffers[name] = (pointer, capacity)
        return pointer

    def _prepare_input(self, name: str, array: np.ndarray) -> np.ndarray:
        expected = self.dtypes[name]
        array = np.asarray(array)
        if array.dtype != expected:
            if not np.can_cast(array.dtype, expected, casting="same_kind"):
                raise TypeError(f"input {name!r} must be {expected}, got {array.dtype}")
            array = array.astype(expected)
        array = np.ascontiguousarray(array)
        if not self.context.set_input_shape(name, array.shape):
            raise ValueError(f"TensorRT rejected shape {list(array.shape)} for input {name!r}")
        return array

    def run(self, inputs: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
        """Execute the engine. ``inputs`` must hold exactly the engine's inputs; returns every output."""
        self._cuda.make_current()  # this thread may not be the one that created the runner
        missing, extra = set(self.input_names) - set(inputs), set(inputs) - set(self.input_names)
        if missing or extra:
            raise KeyError(
                f"engine {self.engine_path!r} takes inputs {self.input_names}; missing "
                f"{sorted(missing)}, unexpected {sorted(extra)}"
            )
        self.select_profile({name: tuple(np.shape(inputs[name])) for name in self.input_names})
        host = {name: self._prepare_input(name, inputs[name]) for name in self.input_names}
        for name, array in host.items():
            pointer = self._device_buffer(name, array.nbytes)
            self._cuda.copy_to_device(pointer, array, self._stream)
            self.context.set_tensor_address(name, pointer)
        outputs = {}
        for name in self.output_names:
            shape = tuple(int(d) for d in self.context.get_tensor_shape(name))
            if any(d < 0 for d in shape):
                raise RuntimeError(f"output {name!r} has a data-dependent shape {shape}; not supported")
            outputs[name] = np.empty(shape, dtype=self.dtypes[name])
            self.context.set_tensor_address(name, self._device_buffer(name, outputs[name].nbytes))
        if not self.context.execute_async_v3(self._stream):
            raise RuntimeError(f"TensorRT execution of {self.engine_path!r} failed (see its log)")
        for name, array in outputs.items():
            self._cuda.copy_to_host(array, self._buffers[name][0], self._stream)
        self._cuda.stream_synchronize(self._stream)  # also keeps `host` alive until the copies are done
        return outputs

    def close(self) -> None:
        """Free device buffers and the stream (also on garbage collection)."""
        cuda = getattr(self, "_cuda", None)
        if cuda is None:
            return
        cuda.make_current()
        for pointer, _ in self._buffers.values():
            cuda.mem_free(pointer)
        self._buffers = {}
        if getattr(self, "_stream", None):
            cuda.stream_destroy(self._stream)
            self._stream = None  # type: ignore[assignment]  # closed
        self.context = None
        self.engine = None
        cuda.release_primary_context()
        self._cuda = None  # type: ignore[assignment]  # closed

    def __enter__(self) -> "TensorRTRunner":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass
