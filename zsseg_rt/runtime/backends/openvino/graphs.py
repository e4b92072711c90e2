"""The OpenVINO backend's compiled graphs: a bundle's ONNX graphs compiled by OpenVINO for the CPU
(:class:`OpenVinoGraphs`), the compile settings and the compiled-model cache. What precision runs is ``precision.py``.

OpenVINO reads the bundle's ONNX graphs as they are (every bundle kind: the windowed families' image encoder, head
and text encoder; the two-stage pipeline's mask branch, CLIP image tower and text encoder) and compiles them for the
CPU with its oneDNN kernels (AVX2, AVX-512, AMX).

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
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
from contextlib import contextmanager
from typing import Any, Dict, List, Mapping, Optional

import numpy as np

from zsseg_rt.bundle import BundleError, BundleMeta, graph_files

from ...engine_cache import atomic_write
from ...file_verification import cached_sha256, unreadable_graph_error
from ...precision_records import PrecisionKey, precision_root, recipe_text
from .precision import (
    NAME,
    PRECISION_HINT,
    REDUCED_ROLES,
    _device_class,
    _ov,
    openvino_version,
    validate_openvino_precision,
)

__all__ = [
    "CACHE_RECORD",
    "COMPILE_LOCK",
    "OpenVinoGraphs",
    "check_openvino_device",
    "compile_lock",
    "openvino_cache_key",
    "openvino_config",
]

COMPILE_RECIPE_VERSION = 1
CACHE_RECORD = "openvino.json"
COMPILE_LOCK = "openvino.lock"


def openvino_config(precision: str, threads: int) -> Dict[str, str]:
    """The CPU plugin's compile settings of a graph run at ``precision`` ("fp32" / "bf16"; the cache key holds them,
    minus the cache directory itself)."""
    if precision not in PRECISION_HINT:
        validate_openvino_precision(precision)
        raise ValueError(f"openvino_config needs a concrete precision ('fp32' / 'bf16'), got {precision!r}")
    if int(threads) < 0:
        raise ValueError(f"threads must be >= 0 (0: OpenVINO's choice), got {threads}")
    config = {
        "INFERENCE_PRECISION_HINT": PRECISION_HINT[precision],
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


def openvino_cache_key(
    meta: BundleMeta,
    precision: str,
    threads: int,
    ov_version: Optional[str] = None,
    device: Optional[str] = None,
    image_sha256: Optional[str] = None,
) -> PrecisionKey:
    """What the compiled models of ``meta``'s graphs depend on: the bundle (its digest covers every graph), the
    OpenVINO version, the CPU (name, machine, int8 and bf16 instructions), the compile settings and, for int8, the
    quantised image encoder's sha256."""
    recipe: Dict[str, Any] = {"version": COMPILE_RECIPE_VERSION, "config": openvino_config(precision, threads)}
    if precision != "fp32":  # the reduced precision applies to these graphs only; the others are compiled f32
        recipe["reduced_roles"] = list(REDUCED_ROLES)
    if image_sha256:
        recipe["image_model_sha256"] = image_sha256
    return PrecisionKey(
        backend=NAME,
        precision=precision,
        source=f"bundle {meta.pipeline}",
        source_sha256=meta.digest,
        library=f"openvino {ov_version or openvino_version()}",
        device=device or _device_class(),
        recipe=recipe_text(recipe),
    )


class OpenVinoGraphs:
    """The graphs of one bundle (``graph_files(meta.pipeline)``) compiled for the CPU; ``run(role, feeds, outputs)``.

    Raises:
        BundleError: a graph OpenVINO cannot read, or whose input/output names are not the ones meta.json records.
        RuntimeError: the compiled model does not report the requested precision.
    """

    def __init__(
        self,
        meta: BundleMeta,
        precision: str = "fp32",
        threads: int = 0,
        cache_dir: Optional[str] = None,
        image_model: Optional[str] = None,
    ) -> None:
        ov = _ov()
        validate_openvino_precision(precision)
        if precision not in PRECISION_HINT:
            raise ValueError(f"OpenVinoGraphs compiles a concrete precision (fp32 / bf16 / int8), got {precision!r}")
        if (precision == "int8") != (image_model is not None):
            raise ValueError("precision='int8' runs a quantised image encoder (image_model=...), and only it does")
        self.precision = precision
        config = openvino_config(precision, threads)
        image_sha = cached_sha256(image_model) if image_model else None
        self.key = openvino_cache_key(meta, precision, threads, image_sha256=image_sha)
        self.cache_dir = os.path.join(precision_root(meta, cache_dir), self.key.digest())
        os.makedirs(self.cache_dir, exist_ok=True)
        record = os.path.join(self.cache_dir, CACHE_RECORD)
        if not os.path.isfile(record):
            text = json.dumps({"key": self.key.as_dict(), "digest": self.key.digest()}, indent=2, sort_keys=True)
            atomic_write(record, text.encode())
        core = ov.Core()
        self._io = meta.io
        self._models: Dict[str, Any] = {}
        self._requests: Dict[str, Any] = {}
        self._locks: Dict[str, threading.Lock] = {}
        self._ports: Dict[str, Dict[str, Any]] = {}  # role -> meta.json tensor name -> compiled model port
        self._wanted: Dict[str, str] = {}  # role -> the element type it must compute in
        self._ranks: Dict[str, Dict[str, int]] = {}  # role -> output name -> declared rank (int8 image encoder)
        with compile_lock(self.cache_dir):  # one process at a time compiles into (or loads from) this cache
            for role, name in graph_files(meta.pipeline).items():
                self._ports[role] = {}
                role_precision = precision if role in REDUCED_ROLES else "fp32"
                self._wanted[role] = PRECISION_HINT[role_precision]
                role_config = dict(openvino_config(role_precision, threads), CACHE_DIR=self.cache_dir)
                path = meta.file(name)
                if role == "image" and image_model:  # the quantised IR: output ranks as the bundle's graph declares
                    declared = core.read_model(path).outputs
                    self._ranks[role] = {
                        n: o.get_partial_shape().rank.get_length() for o in declared for n in o.get_names()
                    }
                    path = image_model
                compiled = self._compile(core, meta, role, path, role_config)
                self._models[role] = compiled
                self._requests[role] = compiled.create_infer_request()
                self._locks[role] = threading.Lock()
        self.config = config

    def _compile(self, core: Any, meta: BundleMeta, role: str, path: str, config: Dict[str, str]) -> Any:
        try:
            compiled = core.compile_model(path, "CPU", config)
        except Exception as exc:  # noqa: BLE001 - OpenVINO raises its own untyped errors for unreadable graphs
            raise unreadable_graph_error(path, "OpenVINO can read", exc) from None
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
        wanted = self._wanted[role]
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
            arrays = [np.array(result[ports[name]], copy=True) for name in outputs]
        ranks = self._ranks.get(role, {})
        return [_declared_rank(a, ranks[name], name) if name in ranks else a for a, name in zip(arrays, outputs)]


def _declared_rank(array: np.ndarray, rank: int, name: str) -> np.ndarray:
    """``array`` with the rank the bundle's graph declares. OpenVINO 2026.4's CPU plugin returns the NNCF-quantised
    ViT encoder's ``image_global`` ([B, D], a Gather after a quantised MatMul) as [1, B, D] (its shape inference
    says [B, D]; the values are the fp32 graph's within int8 error: measured). Leading size-1 axes beyond the
    declared rank are dropped; any other rank mismatch is an error."""
    if array.ndim == rank:
        return array
    extra = array.ndim - rank
    if extra > 0 and all(size == 1 for size in array.shape[:extra]):
        return array.reshape(array.shape[extra:])
    raise RuntimeError(
        f"OpenVINO returned output {name!r} with shape {list(array.shape)}; the graph declares rank {rank}"
    )


@contextmanager
def compile_lock(folder: str):
    """An exclusive lock (``flock`` on ``folder/openvino.lock``) held while compiling into or loading from the
    compiled-model cache in ``folder``: two processes (Ray workers on one machine, two Engines) starting at once take
    turns, so the second finds the first's complete blobs instead of both writing the same files."""
    with open(os.path.join(folder, COMPILE_LOCK), "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def check_openvino_device(device: str) -> None:
    if device not in ("auto", "cpu"):
        raise ValueError(
            f"the openvino backend runs on the CPU: device must be 'auto' or 'cpu', got {device!r} (on a GPU use "
            "backend='tensorrt' or 'onnxruntime')"
        )
