"""Backends run the three graphs of a windowed bundle; everything around them (pre/post-processing) is shared.

Each backend exposes ``encode_image``, ``head`` and ``encode_text`` on NumPy arrays. ONNX Runtime, TensorRT and
OpenVINO (``runtime/openvino_backend.py``, imported when asked for) are built in; other backends (the torch backend, which needs torch and the exporter's graph wrappers) are registered by
name and found on first use (:func:`backend_factory`), so nothing here imports torch.
"""

from __future__ import annotations

import logging
import threading
import weakref
from typing import Any, Callable, Dict, List, Optional

import numpy as np

from zsseg_rt.bundle import GRAPH_FILES, BundleError, BundleMeta, Names

from .file_verification import unreadable_graph_error

Features = Dict[str, np.ndarray]


class Backend:
    """Interface: NumPy in, NumPy out. Image features are a dict keyed by the bundle's image-encoder output
    names (ZegCLIP: ``image_global [B,D]``, ``patches [B,N,D]``), in meta.json's order."""

    name = "abstract"

    def encode_image(self, images: np.ndarray) -> Features:
        """``[B,3,S,S]`` float32 -> image features."""
        raise NotImplementedError

    def head(self, text: np.ndarray, features: Features) -> np.ndarray:
        """``text [C,D]`` + image features -> ``mask_logits [B,C,h,w]``."""
        raise NotImplementedError

    def encode_text(self, tokens: np.ndarray) -> np.ndarray:
        """``[P,L]`` int32 token ids -> ``[P,D]`` L2-normalised embeddings."""
        raise NotImplementedError


def _ort():
    try:
        import onnxruntime
    except ImportError as exc:
        raise ImportError("the onnxruntime backend needs onnxruntime: pip install onnxruntime") from exc
    return onnxruntime


def ort_providers(device: str) -> List[str]:
    """ONNX Runtime execution providers for ``device`` ("auto", "cpu" or "cuda"); refuses an unusable "cuda"."""
    available = _ort().get_available_providers()
    if device == "cpu":
        return ["CPUExecutionProvider"]
    if device == "cuda":
        if "CUDAExecutionProvider" not in available:
            raise RuntimeError(
                f"device='cuda' was requested but this onnxruntime has no CUDAExecutionProvider "
                f"(available: {available}); install onnxruntime-gpu or use device='cpu'"
            )
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if device != "auto":
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {device!r}")
    return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]


def open_ort_session(
    meta: BundleMeta, role: str, file_name: str, options: Any, providers: List[str], path: Optional[str] = None
) -> Any:
    """An ONNX Runtime session of bundle graph ``file_name`` (role ``role`` of meta.json's "io" table), checked to be
    a graph ONNX Runtime loads whose input and output names are the ones meta.json records. ``path``: another file
    standing for that graph (a reduced-precision image encoder prepared beside the bundle).

    Raises:
        BundleError: the file is not a loadable ONNX graph (e.g. a corrupt protobuf whose hash was recomputed) or
            its tensors are not the recorded ones, with the file named; never ONNX Runtime's raw error.
    """
    ort = _ort()
    path = path or meta.file(file_name)
    try:
        session = ort.InferenceSession(path, options, providers=providers)
    except Exception as exc:  # noqa: BLE001 - ONNX Runtime raises its own untyped errors (InvalidProtobuf, Fail...)
        raise unreadable_graph_error(path, "ONNX Runtime can load", exc) from None
    expected = meta.io.get(role, {})
    got = {"inputs": [i.name for i in session.get_inputs()], "outputs": [o.name for o in session.get_outputs()]}
    for key in ("inputs", "outputs"):
        if key in expected and sorted(expected[key]) != sorted(got[key]):
            raise BundleError(
                f"bundle file {path!r} has {key} {got[key]}, but meta.json records {list(expected[key])} for its "
                f"role {role!r}; the bundle is inconsistent: re-export it"
            )
    return session


class OnnxRuntimeBackend(Backend):
    """Runs the bundle's ONNX graphs with ONNX Runtime. ``InferenceSession.run`` is thread-safe.

    ``precision``: "fp32" (default, the bundle's graphs), "int8" (the image encoder's weight MatMuls dynamically
    quantised) or "bf16" (Arm64 CPUs with bf16: the image encoder's GEMMs in bf16); a reduced precision runs only
    after the accuracy gate passed for this CPU (``runtime/ort_precision.py``; prepared on first use unless
    ``prepare=False``). ``image_encoder`` / ``image_config`` open that graph with those session entries instead
    (the gate's candidate).
    """

    name = "onnxruntime"

    # twin (by shape only): OpenVinoBackend.__init__ below - the keyword parameters every backend takes, then its own
    def __init__(
        self,
        meta: BundleMeta,
        device: str = "auto",
        threads: int = 0,
        precision: str = "fp32",
        *,
        cache_dir: Optional[str] = None,
        prepare: bool = True,
        image_encoder: Optional[str] = None,
        image_config: Optional[Dict[str, str]] = None,
    ):
        ort = _ort()
        providers = ort_providers(device)
        self.providers = providers
        self.requested_precision = precision
        self.precision = precision
        self.precision_record: Optional[dict] = None  # the accuracy-gate record a reduced precision runs under
        image_path = image_encoder
        config = dict(image_config or {})
        if image_path is None and precision == "auto":
            from .ort_precision import resolve_ort_auto, validate_ort_precision

            validate_ort_precision(precision)
            if providers[0] != "CPUExecutionProvider":  # ONNX Runtime's reduced precisions are CPU ones
                logging.getLogger("zsseg_rt.precision").info(
                    "ONNX Runtime precision='auto' runs fp32 on %s (its reduced precisions are CPU ones)", providers[0]
                )
                self.precision = precision = "fp32"
            else:
                self.precision, found = resolve_ort_auto(meta, cache_dir, prepare)
                precision = self.precision
                if found is not None:
                    image_path, config, self.precision_record = found
                    config = dict(config)
        if image_path is None and precision != "fp32":
            if providers[0] != "CPUExecutionProvider":
                raise ValueError(
                    f"precision={precision!r} on the onnxruntime backend is a CPU precision; use device='cpu' (or "
                    "the torch / TensorRT backend on a GPU)"
                )
            from .ort_precision import image_encoder_graph

            image_path, config, self.precision_record = image_encoder_graph(meta, precision, cache_dir, prepare)
        self._io = meta.io
        self._sessions = {}
        for role, name in GRAPH_FILES.items():
            path = image_path if role == "image" and image_path is not None else meta.file(name)
            extra = config if role == "image" else {}
            self._sessions[role] = open_ort_session(
                meta, role, name, self._options(ort, threads, extra), providers, path=path
            )

    @staticmethod
    def _options(ort, threads: int, extra: Dict[str, str]):
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = int(threads)
        # ONNX Runtime's idle worker threads spin by default; on small CPUs (Jetson, small VMs) they then steal the
        # cores the native post-processing (OpenMP) runs on next: measured 4-30x slower post-processing here.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "0")
        for key, value in extra.items():
            options.add_session_config_entry(key, value)
        return options

    def encode_image(self, images):
        names = self._io["image"]["outputs"]
        outs = self._sessions["image"].run(names, {Names.IMAGE: np.ascontiguousarray(images, dtype=np.float32)})
        return dict(zip(names, outs))

    def head(self, text, features):
        feeds = dict(features, **{Names.TEXT_EMBEDDINGS: text})
        return self._sessions["head"].run(list(self._io["head"]["outputs"]), feeds)[0]

    def encode_text(self, tokens):
        feeds = {Names.TOKENS: np.ascontiguousarray(tokens, dtype=np.int32)}
        return self._sessions["text"].run(list(self._io["text"]["outputs"]), feeds)[0]


class TensorRTBackend(Backend):
    """Runs engines built by ``zsseg build-engine`` (TensorRT 10). One execution context per graph, so calls
    are serialised with a lock (a TensorRT execution context is not thread-safe)."""

    name = "tensorrt"

    def __init__(
        self,
        meta: BundleMeta,
        precision: str = "fp16",
        engine_paths: Optional[Dict[str, str]] = None,
        cuda_graphs: bool = False,
    ):
        """``engine_paths`` (role -> engine file) runs these engines, checked only against this machine's TensorRT
        and GPU (the accuracy gate uses it on a fresh build); default: ``find_engines`` for ``precision``.
        ``cuda_graphs``: the device pipeline captures each kind of frame as a CUDA graph and replays it
        (``runtime/cuda_graphs.DriverCudaGraphs``); off by default: it has not run on a GPU yet, and it costs a
        second execution context (activation memory) per engine (:meth:`device_executor`)."""
        from zsseg_rt.runtime import tensorrt as trt_run  # imports tensorrt itself lazily

        paths = dict(engine_paths) if engine_paths else trt_run.find_engines(meta.path, precision=precision)
        self._runners: Dict[str, Any] = {key: trt_run.TensorRTRunner(path) for key, path in paths.items()}
        self._io = meta.io
        self._lock = threading.Lock()
        self.cuda_graphs = bool(cuda_graphs)
        # the memories (streams) of the device executors that share the host path's execution contexts
        self._sharing: "weakref.WeakSet[Any]" = weakref.WeakSet()

    def device_executor(self):
        """An executor running these engines on device buffers (the device-resident pipeline), on the image runner's
        CUDA context and a stream of its own.

        It runs the host path's execution contexts: TensorRT allocates a context's activation memory when the
        context is made, sized for the engine's largest profile, so a second context per engine would hold it twice
        (docs/tensorrt.md, "Memory"). A context must not run on two streams at once, so the two paths take turns
        under this backend's lock: the device path enqueues under it (the host path's runs are synchronous), the
        host path first waits for the device path's stream (``_run``), and each puts the context on the
        optimisation profile its inputs need. With ``cuda_graphs`` the executor has contexts of its own (a second
        activation memory per engine): a graph replays the state its context had at the capture, which the host
        path must not change in between."""
        from .cuda_memory import CudaMemory, TensorRTExecutor

        driver = self._runners["image"]._cuda
        driver.make_current()
        memory = CudaMemory(driver)
        runners = {role: self._runners[role] for role in ("image", "head")}
        if not self.cuda_graphs:
            self._sharing.add(memory)
            return TensorRTExecutor(
                {role: runner.context for role, runner in runners.items()},
                memory,
                lock=self._lock,
                select_profile=lambda role, shapes, stream: runners[role].select_profile(shapes, stream),
            )
        contexts = {}
        for role, runner in runners.items():
            context = runner.engine.create_execution_context()
            if context is None:
                raise RuntimeError(f"TensorRT could not create an execution context for the {role!r} engine")
            contexts[role] = context
        return TensorRTExecutor(contexts, memory)

    def _run(self, key, feeds, outputs):
        with self._lock:
            if key in ("image", "head"):  # device work enqueued on these contexts finishes first
                for memory in list(self._sharing):
                    memory.activate()
                    memory.synchronize()
            result = self._runners[key].run(feeds)
        return [result[name] for name in outputs]

    def _limit(self, key: str, name: str) -> int:
        """Largest leading dimension the engine's optimisation profile accepts for input ``name``."""
        return int(self._runners[key].input_profile(name)[2][0])

    def encode_image(self, images):
        images = np.ascontiguousarray(images, dtype=np.float32)
        names = self._io["image"]["outputs"]
        step = self._limit("image", Names.IMAGE)
        parts = [self._run("image", {Names.IMAGE: images[i : i + step]}, names) for i in range(0, len(images), step)]
        return {name: np.concatenate([p[k] for p in parts]) for k, name in enumerate(names)}

    def head(self, text, features):
        step = self._limit("head", next(iter(features)))  # batch limit of the first image feature
        batch = len(next(iter(features.values())))
        outs = []
        for i in range(0, batch, step):
            feeds = {name: value[i : i + step] for name, value in features.items()}
            feeds[Names.TEXT_EMBEDDINGS] = text
            outs.append(self._run("head", feeds, self._io["head"]["outputs"])[0])
        return np.concatenate(outs)

    def encode_text(self, tokens):
        tokens = np.ascontiguousarray(tokens, dtype=np.int32)
        step = self._limit("text", Names.TOKENS)
        return np.concatenate(
            [
                self._run("text", {Names.TOKENS: tokens[i : i + step]}, self._io["text"]["outputs"])[0]
                for i in range(0, len(tokens), step)
            ]
        )


class OpenVinoBackend(Backend):
    """A windowed bundle's image encoder, head and text encoder compiled by OpenVINO for the CPU
    (``runtime/openvino_backend.py``: the precision asked for and checked, threads, one stream, the compiled-model
    cache). Each graph runs under a lock of its own (an OpenVINO infer request is not thread-safe). ``device`` must
    be "cpu" or "auto" (OpenVINO's other devices are not offered yet).

    ``precision``: "fp32" (default, exact), "bf16" (the image encoder in bf16 on a CPU with AMX-BF16 / AVX-512-BF16,
    the head and text encoder f32), "int8" (the image encoder quantised by NNCF, on a CPU with VNNI / AMX-INT8) or
    "auto" (the fastest precision whose gate passed on this CPU, else fp32); a reduced precision runs only after its
    accuracy gate passed here (prepared on first use unless ``prepare=False``). ``precision`` then
    holds what runs, ``requested_precision`` what was asked for, ``precision_record`` the gate record it runs under.
    ``gated=False`` skips the record check (the accuracy gate's own candidate, int8 with its ``image_model``)."""

    name = "openvino"

    def __init__(
        self,
        meta: BundleMeta,
        device: str = "auto",
        threads: int = 0,
        precision: str = "fp32",
        *,
        cache_dir: Optional[str] = None,
        prepare: bool = True,
        gated: bool = True,
        image_model: Optional[str] = None,
    ):
        from .openvino_backend import (  # imports openvino itself
            OpenVinoGraphs,
            check_openvino_device,
            resolve_openvino_precision,
            validate_openvino_precision,
        )
        from .signal_stack import ensure_signal_stack

        check_openvino_device(device)
        ensure_signal_stack()  # OpenVINO may use AMX tile state: Python's signal handlers must still fit their stack
        self.requested_precision = precision
        self.precision_record: Optional[dict] = None
        if gated:
            precision, self.precision_record, image_model = resolve_openvino_precision(
                meta, precision, cache_dir, prepare
            )
        else:
            validate_openvino_precision(precision)
        self.precision = precision
        self.graphs = OpenVinoGraphs(meta, precision, threads, cache_dir, image_model)
        self._io = meta.io

    def encode_image(self, images: np.ndarray) -> Features:
        names = list(self._io["image"]["outputs"])
        outs = self.graphs.run("image", {Names.IMAGE: np.ascontiguousarray(images, dtype=np.float32)}, names)
        return dict(zip(names, outs))

    def head(self, text: np.ndarray, features: Features) -> np.ndarray:
        feeds = dict(features, **{Names.TEXT_EMBEDDINGS: np.ascontiguousarray(text, dtype=np.float32)})
        return self.graphs.run("head", feeds, list(self._io["head"]["outputs"]))[0]

    def encode_text(self, tokens: np.ndarray) -> np.ndarray:
        feeds = {Names.TOKENS: np.ascontiguousarray(tokens, dtype=np.int32)}
        return self.graphs.run("text", feeds, list(self._io["text"]["outputs"]))[0]


# ---------------------------------------------------------------------------------------------- registry
# Backends other than the built-in ONNX Runtime, TensorRT and OpenVINO ones. The torch backend lives on the torch side
# (``zsseg_rt.export.torch_backend``): it is found through the ``zsseg_rt.backends`` entry points of the installed
# package (pyproject.toml), or registered by importing its module, so this module never imports it.
BACKEND_ENTRY_POINTS = "zsseg_rt.backends"
_BACKENDS: Dict[str, Callable[..., Backend]] = {}
BUILTIN_BACKENDS = ("onnxruntime", "tensorrt", "openvino")
KNOWN_BACKENDS = ("auto", "tensorrt", "onnxruntime", "openvino", "torch")


def register_backend(name: str, factory: Callable[..., Backend]) -> None:
    """Make ``backend=name`` build ``factory(meta, device=..., model=...)``."""
    if name in BUILTIN_BACKENDS or name == "auto":
        raise ValueError(f"backend name {name!r} is built in")
    _BACKENDS[name] = factory


def backend_factory(name: str) -> Callable[..., Backend]:
    """The factory of a registered backend (``register_backend``, or a ``zsseg_rt.backends`` entry point).

    Raises:
        ValueError: no such backend; ImportError: its module cannot be imported here (e.g. torch is missing).
    """
    if name not in _BACKENDS:
        from importlib.metadata import entry_points

        found = [entry for entry in entry_points(group=BACKEND_ENTRY_POINTS) if entry.name == name]
        if not found:
            raise ValueError(f"backend must be one of {list(KNOWN_BACKENDS)}, got {name!r}")
        try:
            _BACKENDS[name] = found[0].load()
        except ImportError as exc:
            raise ImportError(
                f"the {name} backend cannot be imported here ({exc}); install its extra (torch: pip install "
                "'zsseg_rt[torch]') or use backend='onnxruntime'"
            ) from exc
    return _BACKENDS[name]


def _onnxruntime_backend(meta: BundleMeta, device: str, threads: int, verify: bool, precision: str = "fp32") -> Backend:
    if verify:  # the graphs ONNX Runtime is about to open
        from .file_verification import verify_bundle_files

        verify_bundle_files(meta, sorted(GRAPH_FILES.values()))
    return OnnxRuntimeBackend(meta, device, threads, precision)


def _openvino_backend(meta: BundleMeta, device: str, threads: int, verify: bool, precision: str = "fp32") -> Backend:
    if verify:  # the graphs OpenVINO is about to compile
        from .file_verification import verify_bundle_files

        verify_bundle_files(meta, sorted(GRAPH_FILES.values()))
    return OpenVinoBackend(meta, device, threads, precision)


# The precision a backend runs when none is asked for: TensorRT's engines are fp16 by default; every other backend
# runs the exact fp32 graphs unless a reduced precision is asked for explicitly.
DEFAULT_PRECISION = {"tensorrt": "fp16"}


def default_precision(backend: str) -> str:
    return DEFAULT_PRECISION.get(backend, "fp32")


def make_backend(
    meta: BundleMeta,
    backend: Any,
    device: str,
    model: Any,
    precision: Optional[str],
    threads: int,
    verify: bool = True,
) -> Backend:
    """The backend running a windowed bundle's image encoder, head and text encoder graphs.

    ``backend``: a ready :class:`Backend` object, "onnxruntime", "tensorrt", "openvino" (CPU,
    ``runtime/openvino_backend.py``), "auto" (TensorRT when its engines
    exist and import, else ONNX Runtime: said with a warning when TensorRT is installed but cannot be used, at debug
    level when it is not installed, the normal state of a CPU machine) or a registered name such as "torch".
    ``precision``: None for the backend's default (``default_precision``: TensorRT fp16, else fp32).
    """
    if isinstance(backend, Backend):
        return backend
    if backend == "onnxruntime":
        return _onnxruntime_backend(meta, device, threads, verify, precision or "fp32")
    if backend == "tensorrt":
        return TensorRTBackend(meta, precision or default_precision("tensorrt"))
    if backend == "openvino":
        return _openvino_backend(meta, device, threads, verify, precision or "fp32")
    if backend == "auto":
        try:
            return TensorRTBackend(meta, precision or default_precision("tensorrt"))
        except ImportError as exc:  # no TensorRT on this machine: the normal case on a CPU, said at debug level only
            logging.getLogger("zsseg_rt").debug(
                "backend='auto': TensorRT is not installed (%s); running the bundle with ONNX Runtime", exc
            )
        except Exception as exc:  # noqa: BLE001 - TensorRT installed but unusable here -> ONNX Runtime, said out loud
            import warnings

            # engines missing or built for another device/TensorRT/bundle: the reason matters here
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            warnings.warn(  # fp32: ONNX Runtime's reduced precisions are asked for explicitly (backend='onnxruntime')
                f"backend='auto': TensorRT cannot be used ({reason}); running the bundle with ONNX Runtime instead "
                "(slower, fp32). Build engines with `zsseg build-engine`, or pass backend='onnxruntime' to "
                "silence this.",
                RuntimeWarning,
                stacklevel=4,
            )
        return _onnxruntime_backend(meta, device, threads, verify)
    if not isinstance(backend, str):
        raise ValueError(f"backend must be one of {list(KNOWN_BACKENDS)} or a Backend object, got {backend!r}")
    options = {} if precision is None else {"precision": precision}
    return backend_factory(backend)(meta, device=device, model=model, **options)
