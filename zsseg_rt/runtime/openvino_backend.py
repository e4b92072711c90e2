"""The OpenVINO backend: a bundle's ONNX graphs compiled by OpenVINO for the CPU (``backend="openvino"``). The
windowed pipeline's ``OpenVinoBackend`` is in ``runtime/backends.py`` beside the others; the compiled graphs
(:class:`OpenVinoGraphs`) and the two-stage pipeline's backend are here (this module never imports ``backends``).

OpenVINO reads the bundle's ONNX graphs as they are (every bundle kind: the windowed families' image encoder, head
and text encoder; the two-stage pipeline's mask branch, CLIP image tower and text encoder) and compiles them for the
CPU with its oneDNN kernels (AVX2, AVX-512, AMX).

* Precision: ``"fp32"`` asks for ``INFERENCE_PRECISION_HINT=f32`` explicitly. OpenVINO's CPU plugin computes in bf16
  by default on CPUs with AVX-512-BF16 or AMX, which would change results silently; here the compiled model's
  precision is read back after compilation and a model that does not report f32 is refused.
* Threads: ``threads`` (the Engine's) sets ``INFERENCE_NUM_THREADS`` (0: OpenVINO's choice, all cores); one stream
  (``NUM_STREAMS=1``, latency), as the Engine runs one frame at a time; ``ENABLE_CPU_PINNING=NO`` so the native
  post-processing's OpenMP threads are not fenced off the cores between calls.
* Compiled models are cached on disk (OpenVINO's ``CACHE_DIR``) in a directory of the bundle's ``engines/`` folder
  named by a :class:`~zsseg_rt.runtime.precision_records.PrecisionKey` digest: the bundle's digest (meta.json's
  sha256, which covers every graph), the OpenVINO version, the CPU (its name and its int8 / bf16 instructions) and
  the compile settings, as TensorRT engines are keyed. A ``openvino.json`` beside the cache says what it is for.
  Another bundle, OpenVINO version, CPU kind or precision gets another directory: nothing compiled for one setup is
  offered to another (OpenVINO checks its own blobs too).
* Thread safety: an OpenVINO infer request is not thread-safe, so each graph has one request used under a lock (the
  outputs are copied out before the lock is released).

Nothing here imports torch; ``openvino`` is imported when the backend is built (``pip install 'zsseg_rt[openvino]'``).
"""

from __future__ import annotations

import json
import os
import threading
from typing import Any, Dict, List, Mapping, Optional, Tuple

import numpy as np

from zsseg_rt.bundle import BundleError, BundleMeta, Names, graph_files

from .cpu_features import cpu_features
from .engine_cache import _atomic_write
from .precision_records import PrecisionKey, precision_root, recipe_text

__all__ = [
    "OPENVINO_PRECISIONS",
    "OpenVinoGraphs",
    "TwoStageOpenVinoBackend",
    "check_openvino_device",
    "openvino_cache_key",
    "openvino_config",
]

OPENVINO_PRECISIONS = ("fp32",)
COMPILE_RECIPE_VERSION = 1
CACHE_RECORD = "openvino.json"
# INFERENCE_PRECISION_HINT of each precision (OpenVINO's element type names)
_PRECISION_HINT = {"fp32": "f32"}


def _ov():
    try:
        import openvino
    except ImportError as exc:
        raise ImportError(
            f"the openvino backend needs OpenVINO ({exc}): pip install 'zsseg_rt[openvino]' (or pip install openvino), "
            "or use backend='onnxruntime'"
        ) from exc
    return openvino


def openvino_version() -> str:
    return str(_ov().__version__).split("-")[0]


def validate_openvino_precision(precision: str) -> None:
    if precision not in OPENVINO_PRECISIONS:
        raise ValueError(
            f"the openvino backend's precision must be one of {OPENVINO_PRECISIONS}, got {precision!r} (reduced "
            "precisions on the CPU: backend='onnxruntime' with precision='int8')"
        )


def openvino_config(precision: str, threads: int) -> Dict[str, str]:
    """The CPU plugin's compile settings (the cache key holds them, minus the cache directory itself)."""
    validate_openvino_precision(precision)
    if int(threads) < 0:
        raise ValueError(f"threads must be >= 0 (0: OpenVINO's choice), got {threads}")
    config = {
        "INFERENCE_PRECISION_HINT": _PRECISION_HINT[precision],
        "EXECUTION_MODE_HINT": "ACCURACY",  # no reduced-precision shortcuts the precision hint does not name
        "PERFORMANCE_HINT": "LATENCY",
        "NUM_STREAMS": "1",
        "ENABLE_CPU_PINNING": "NO",
        "DYNAMIC_QUANTIZATION_GROUP_SIZE": "0",  # OpenVINO's run-time int8 activations for MatMuls: off
    }
    if threads:
        config["INFERENCE_NUM_THREADS"] = str(int(threads))
    return config


def _type_name(value: Any) -> str:
    """OpenVINO's short name of an element type ("f32", "bf16"), whether a property returned a Type or a string."""
    return str(value.get_type_name()) if hasattr(value, "get_type_name") else str(value)


def _cpu_name(core: Any) -> str:
    try:
        return str(core.get_property("CPU", "FULL_DEVICE_NAME"))
    except Exception:  # noqa: BLE001 - a property OpenVINO does not report: the flags still key the cache
        return "unknown"


def openvino_cache_key(
    meta: BundleMeta,
    precision: str,
    threads: int,
    ov_version: Optional[str] = None,
    device: Optional[str] = None,
) -> PrecisionKey:
    """What the compiled models of ``meta``'s graphs depend on: the bundle (its digest covers every graph), the
    OpenVINO version, the CPU (name, machine, int8 and bf16 instructions) and the compile settings."""
    if device is None:
        features = cpu_features()
        device = (
            f"cpu {_cpu_name(_ov().Core())} {features.machine} int8 {features.int8_dot_product} bf16 {features.bf16}"
        )
    return PrecisionKey(
        backend="openvino",
        precision=precision,
        source=f"bundle {meta.pipeline}",
        source_sha256=meta.digest,
        library=f"openvino {ov_version or openvino_version()}",
        device=device,
        recipe=recipe_text({"version": COMPILE_RECIPE_VERSION, "config": openvino_config(precision, threads)}),
    )


class OpenVinoGraphs:
    """The graphs of one bundle (``graph_files(meta.pipeline)``) compiled for the CPU; ``run(role, feeds, outputs)``.

    Raises:
        BundleError: a graph OpenVINO cannot read, or whose input/output names are not the ones meta.json records.
        RuntimeError: the compiled model does not report the requested precision.
    """

    def __init__(
        self, meta: BundleMeta, precision: str = "fp32", threads: int = 0, cache_dir: Optional[str] = None
    ) -> None:
        ov = _ov()
        self.precision = precision
        config = openvino_config(precision, threads)
        self.key = openvino_cache_key(meta, precision, threads)
        self.cache_dir = os.path.join(precision_root(meta, cache_dir), self.key.digest())
        os.makedirs(self.cache_dir, exist_ok=True)
        record = os.path.join(self.cache_dir, CACHE_RECORD)
        if not os.path.isfile(record):
            text = json.dumps({"key": self.key.as_dict(), "digest": self.key.digest()}, indent=2, sort_keys=True)
            _atomic_write(record, text.encode())
        core = ov.Core()
        self._io = meta.io
        self._models: Dict[str, Any] = {}
        self._requests: Dict[str, Any] = {}
        self._locks: Dict[str, threading.Lock] = {}
        self._ports: Dict[str, Dict[str, Any]] = {}  # role -> meta.json tensor name -> compiled model port
        for role, name in graph_files(meta.pipeline).items():
            self._ports[role] = {}
            compiled = self._compile(core, meta, role, name, dict(config, CACHE_DIR=self.cache_dir))
            self._models[role] = compiled
            self._requests[role] = compiled.create_infer_request()
            self._locks[role] = threading.Lock()
        self.config = config

    def _compile(self, core: Any, meta: BundleMeta, role: str, name: str, config: Dict[str, str]) -> Any:
        path = meta.file(name)
        try:
            compiled = core.compile_model(path, "CPU", config)
        except Exception as exc:  # noqa: BLE001 - OpenVINO raises its own untyped errors for unreadable graphs
            detail = " ".join(str(exc).split())[:300]
            raise BundleError(
                f"bundle file {path!r} is not an ONNX graph OpenVINO can read ({type(exc).__name__}: {detail}); the "
                "bundle is damaged or was not written by `zsseg export`: re-export it"
            ) from None
        # a port can carry several tensor names (a graph input that feeds a Cast is also named after the Cast's
        # output); meta.json's name must be one of them
        expected = meta.io.get(role, {})
        ports = {"inputs": list(compiled.inputs), "outputs": list(compiled.outputs)}
        for key in ("inputs", "outputs"):
            if key not in expected:
                continue
            found = {name: port for port in ports[key] for name in expected[key] if name in port.get_names()}
            if len(ports[key]) != len(expected[key]) or set(found) != set(expected[key]):
                got = [sorted(port.get_names()) for port in ports[key]]
                raise BundleError(
                    f"bundle file {path!r} has {key} named {got}, but meta.json records {list(expected[key])} for "
                    f"its role {role!r}; the bundle is inconsistent: re-export it"
                )
            self._ports[role].update(found)
        hint = _type_name(compiled.get_property("INFERENCE_PRECISION_HINT"))
        wanted = _PRECISION_HINT[self.precision]
        if hint != wanted:
            raise RuntimeError(
                f"OpenVINO compiled {path!r} with inference precision {hint!r}, not the requested {wanted!r}; "
                f"refusing to run it as precision={self.precision!r}"
            )
        return compiled

    def inference_precision(self, role: str) -> str:
        """The element type the compiled graph ``role`` computes in, as OpenVINO reports it ("f32", "bf16")."""
        return _type_name(self._models[role].get_property("INFERENCE_PRECISION_HINT"))

    def loaded_from_cache(self, role: str) -> bool:
        """Whether OpenVINO took the compiled graph ``role`` from the cache directory instead of compiling it."""
        return bool(self._models[role].get_property("LOADED_FROM_CACHE"))

    def compiled_property(self, role: str, name: str) -> Any:
        """A property of the compiled graph ``role`` as OpenVINO reports it (``INFERENCE_NUM_THREADS``, ...)."""
        return self._models[role].get_property(name)

    def run(self, role: str, feeds: Mapping[str, np.ndarray], outputs: List[str]) -> List[np.ndarray]:
        ports = self._ports[role]
        with self._locks[role]:
            result = self._requests[role].infer({ports[name]: value for name, value in feeds.items()})
            return [np.array(result[ports[name]], copy=True) for name in outputs]


class TwoStageOpenVinoBackend:
    """The three graphs of a two-stage bundle compiled by OpenVINO (the interface of ``TwoStageOrtBackend``)."""

    name = "openvino"

    def __init__(self, meta: BundleMeta, device: str = "auto", threads: int = 0, precision: str = "fp32"):
        check_openvino_device(device)
        self.precision = precision
        self.graphs = OpenVinoGraphs(meta, precision, threads)

    def masks(self, image: np.ndarray, text: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        feeds = {Names.IMAGE: np.ascontiguousarray(image, np.float32), Names.TEXT_EMBEDDINGS: text}
        logits, masks = self.graphs.run("mask", feeds, [Names.CLASS_LOGITS, Names.QUERY_MASKS])
        return logits, masks

    def encode_crops(self, crops: np.ndarray) -> np.ndarray:
        feeds = {Names.CROPS: np.ascontiguousarray(crops, np.float32)}
        return self.graphs.run("clip_image", feeds, [Names.CROP_EMBEDDINGS])[0]

    def encode_text(self, tokens: np.ndarray) -> np.ndarray:
        feeds = {Names.TOKENS: np.ascontiguousarray(tokens, dtype=np.int32)}
        return self.graphs.run("text", feeds, [Names.TEXT_EMBEDDINGS])[0]


def check_openvino_device(device: str) -> None:
    if device not in ("auto", "cpu"):
        raise ValueError(
            f"the openvino backend runs on the CPU: device must be 'auto' or 'cpu', got {device!r} (on a GPU use "
            "backend='tensorrt' or 'onnxruntime')"
        )
