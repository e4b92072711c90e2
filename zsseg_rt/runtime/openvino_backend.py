"""The OpenVINO backend: a bundle's ONNX graphs compiled by OpenVINO for the CPU (``backend="openvino"``). Its runner
is ``runtime/backends/openvino.py`` (a row of the backend table, serving both pipelines); the compiled graphs
(:class:`OpenVinoGraphs`) and the precision choice are here (this module never imports ``backends``).

OpenVINO reads the bundle's ONNX graphs as they are (every bundle kind: the windowed families' image encoder, head
and text encoder; the two-stage pipeline's mask branch, CLIP image tower and text encoder) and compiles them for the
CPU with its oneDNN kernels (AVX2, AVX-512, AMX).

* Precision: ``"fp32"`` asks for ``INFERENCE_PRECISION_HINT=f32`` explicitly. OpenVINO's CPU plugin computes in bf16
  by default on CPUs with AVX-512-BF16 or AMX, which would change results silently; here the compiled model's
  precision is read back after compilation and a model that does not report the requested one is refused.
  ``"bf16"`` (CPUs with AMX-BF16 or AVX-512-BF16 only) compiles the image encoder with ``bf16``; the head (which
  computes the mask logits every label comes from) and the text encoder stay f32. It runs only after the accuracy
  gate passed for this bundle, CPU and OpenVINO version (``openvino_precision_record``: the record beside the
  bundle, ``runtime/precision_records.py``; prepared on first use by ``export/openvino_precision.py``).
  ``"int8"`` (x86 CPUs with VNNI or AMX-INT8 only) runs the image encoder quantised by NNCF post-training
  quantisation (``export/openvino_precision.py``: calibrated on the Engine's own windows of the sample photos plus
  the user's), its IR kept beside the record with its sha256; the rest of the graph and the other graphs stay f32.
  ``"auto"`` runs the fastest precision that passed the gate here (``AUTO_ORDER``, else fp32) and says which.
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

import fcntl
import functools
import importlib.util
import json
import logging
import os
import threading
from contextlib import contextmanager
from typing import Any, Dict, List, Mapping, Optional, Tuple

import numpy as np

from zsseg_rt.bundle import BundleError, BundleMeta, graph_files

from .cpu_features import CpuFeatures, cpu_features
from .engine_cache import atomic_write
from .file_verification import cached_sha256, unreadable_graph_error
from .precision_records import (
    GatedChoice,
    PrecisionKey,
    PrecisionRecordError,
    find_or_prepare,
    gated_choice,
    load_preparer,
    pick_gated_precision,
    precision_root,
    recipe_text,
)

__all__ = [
    "OPENVINO_PRECISIONS",
    "OpenVinoGraphs",
    "gate_key",
    "gated_choices",
    "openvino_precision_record",
    "resolve_openvino_precision",
    "check_openvino_device",
    "openvino_cache_key",
    "openvino_config",
]

OPENVINO_PRECISIONS = ("fp32", "bf16", "int8", "auto")
# the reduced precisions "auto" tries. Among those with a gate record, the fastest by the speed measured when they
# were gated goes first (precision_records.rank_choices); without records they are gated on first use in this order
# (bf16 first: cheap to gate, no quantisation). A CPU without bf16 skips it and tries int8 (VNNI / AMX-INT8).
AUTO_ORDER = ("bf16", "int8")
INT8_INSTRUCTIONS = ("amx-int8", "avx512-vnni", "avx-vnni")
COMPILE_RECIPE_VERSION = 1
GATE_RECIPE_VERSION = 1
CACHE_RECORD = "openvino.json"
COMPILE_LOCK = "openvino.lock"
# INFERENCE_PRECISION_HINT of each precision (OpenVINO's element type names)
# (int8: the NNCF-quantised IR's quantised operations run int8 whatever the hint; the rest of it stays f32)
_PRECISION_HINT = {"fp32": "f32", "bf16": "bf16", "int8": "f32"}
# the graphs a reduced precision applies to; every other graph stays f32 (the head computes the mask logits)
REDUCED_ROLES = ("image",)
# the export side that gates a reduced precision (found by name: the runtime never imports the exporter)
PREPARER = "zsseg_rt.export.openvino_precision:prepare_openvino_precision"
LOG = logging.getLogger("zsseg_rt.precision")
NAME = "openvino"  # this module's backend row


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


def validate_openvino_precision(precision: str, features: Optional[CpuFeatures] = None) -> None:
    """Raise ValueError for a precision OpenVINO cannot run on this CPU, saying why and what to use."""
    if precision not in OPENVINO_PRECISIONS:
        raise ValueError(
            f"the openvino backend's precision must be one of {OPENVINO_PRECISIONS}, got {precision!r} (int8 on the "
            "CPU: backend='onnxruntime' with precision='int8')"
        )
    if precision == "bf16":
        features = features or cpu_features()
        if not (features.x86 and features.bf16 in ("amx-bf16", "avx512-bf16")):
            raise ValueError(
                f"precision='bf16' on the openvino backend needs an x86 CPU with AMX-BF16 or AVX-512-BF16 (bf16 "
                f"arithmetic in hardware); this CPU is {features.summary()}. Use precision='fp32', or "
                "precision='auto' (the fastest precision that passed the accuracy gate on this CPU)"
            )
    if precision == "int8":
        features = features or cpu_features()
        if not (features.x86 and features.int8_dot_product in INT8_INSTRUCTIONS):
            raise ValueError(
                f"precision='int8' on the openvino backend needs an x86 CPU with VNNI or AMX-INT8 (int8 dot products "
                f"summed exactly in int32); this CPU is {features.summary()}. Use precision='fp32', or "
                "precision='auto' (the fastest precision that passed the accuracy gate on this CPU)"
            )


def openvino_config(precision: str, threads: int) -> Dict[str, str]:
    """The CPU plugin's compile settings of a graph run at ``precision`` ("fp32" / "bf16"; the cache key holds them,
    minus the cache directory itself)."""
    if precision not in _PRECISION_HINT:
        validate_openvino_precision(precision)
        raise ValueError(f"openvino_config needs a concrete precision ('fp32' / 'bf16'), got {precision!r}")
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
        backend="openvino",
        precision=precision,
        source=f"bundle {meta.pipeline}",
        source_sha256=meta.digest,
        library=f"openvino {ov_version or openvino_version()}",
        device=device or _device_class(),
        recipe=recipe_text(recipe),
    )


def _device_class(features: Optional[CpuFeatures] = None) -> str:
    features = features or cpu_features()
    return f"cpu {_core_cpu_name()} {features.machine} int8 {features.int8_dot_product} bf16 {features.bf16}"


@functools.lru_cache(maxsize=1)
def _core_cpu_name() -> str:
    """The CPU's name as OpenVINO reports it (read once per process: the CPU does not change under it)."""
    return _cpu_name(_ov().Core())


def gate_key(meta: BundleMeta, precision: str, ov_version: Optional[str] = None, device: Optional[str] = None):
    """The accuracy-gate record key of ``precision`` for ``meta``'s image encoder on this CPU and OpenVINO version
    (threads are not in it: they do not change what is computed)."""
    recipe: Dict[str, Any] = {
        "version": GATE_RECIPE_VERSION,
        "inference_precision": {role: _PRECISION_HINT[precision] for role in REDUCED_ROLES},
        "execution_mode": "ACCURACY",
        "other_graphs": "f32",
    }
    if precision == "int8":
        recipe["quantisation"] = dict(INT8_RECIPE)
    library = f"openvino {ov_version or openvino_version()}"
    return PrecisionKey.of_image_encoder(meta, "openvino", precision, library, device or _device_class(), recipe)


# how the int8 image encoder is made (export/openvino_precision.py; part of its record's key)
INT8_RECIPE = {
    "tool": "nncf.quantize (post-training, OpenVINO backend)",
    "model_type": "transformer",
    "preset": "mixed",
    "calibration": "the Engine's windows of the sample photos plus the user's calibration photos",
}
INT8_WEIGHTS_FIELD = "weights_sha256"  # the IR's .bin (the record's artefact is its .xml)


def _preparer():
    return load_preparer(
        PREPARER,
        "gating an OpenVINO precision needs the exporter's accuracy gate ({exc}); prepare it on another machine of "
        "the same CPU kind with `zsseg build-engine BUNDLE --backend openvino --precision bf16` and copy the "
        "bundle's engines/ folder",
    )


def openvino_precision_record(
    meta: BundleMeta, precision: str, cache_dir: Optional[str] = None, prepare: bool = True
) -> Tuple[Dict[str, Any], Optional[str]]:
    """``(record, artefact)``: the passing accuracy-gate record of ``precision`` ("bf16" / "int8") here and its
    artefact (int8: the quantised image encoder's IR ``.xml``, its ``.bin`` beside it; bf16: None); a missing record
    is prepared (gated) when ``prepare``, else refused.

    Raises:
        ValueError (the CPU cannot run it), PrecisionRecordError / PrecisionGateRefused (no passing record, or a
        modified artefact), EngineAccuracyError (the first-use gate failed; recorded refused).
    """
    validate_openvino_precision(precision)
    key = gate_key(meta, precision)
    root = precision_root(meta, cache_dir)
    found = find_or_prepare(
        root,
        key,
        prepare,
        lambda: _preparer()(meta.path, precision=precision, cache_dir=cache_dir),
        lambda why: LOG.warning(
            "OpenVINO precision=%r has no gated record for this CPU yet (%s): %s it now and gating it against ONNX "
            "Runtime fp32 (once; `zsseg build-engine BUNDLE --backend openvino --precision %s` does it ahead)",
            precision,
            why,
            "quantising" if precision == "int8" else "compiling",
            precision,
        ),
    )
    record, artefact = found
    if artefact is not None:
        weights = os.path.splitext(artefact)[0] + ".bin"
        if not os.path.isfile(weights) or cached_sha256(weights) != record.get(INT8_WEIGHTS_FIELD):
            raise PrecisionRecordError(
                f"{weights!r} is missing or does not match the sha256 in its record (truncated or modified); delete "
                f"{os.path.dirname(artefact)!r} to have it made again"
            )
    return record, artefact


def resolve_openvino_precision(
    meta: BundleMeta,
    precision: str,
    cache_dir: Optional[str] = None,
    prepare: bool = True,
    features: Optional[CpuFeatures] = None,
) -> Tuple[str, Optional[Dict[str, Any]], Optional[str]]:
    """``(precision to run, its gate record, its image-encoder artefact)``: fp32 without a record; an explicit
    reduced precision needs its passing record; ``"auto"`` takes the first of ``AUTO_ORDER`` this CPU can run whose
    gate passed (gating it on first use when ``prepare``), else fp32, and logs which and why."""
    validate_openvino_precision(precision, features)
    if precision == "fp32":
        return "fp32", None, None
    if precision != "auto":
        return (precision, *openvino_precision_record(meta, precision, cache_dir, prepare))

    def try_one(candidate: str):
        validate_openvino_precision(candidate, features)
        return openvino_precision_record(meta, candidate, cache_dir, prepare)

    def existing(candidate: str) -> GatedChoice:
        validate_openvino_precision(candidate, features)
        return gated_choice(precision_root(meta, cache_dir), gate_key(meta, candidate))

    chosen, found = pick_gated_precision(AUTO_ORDER, try_one, "OpenVINO", LOG, existing)
    if found is None:
        return "fp32", None, None
    return (chosen, *found)


def gated_choices(
    meta: BundleMeta, cache_dir: Optional[str] = None, features: Optional[CpuFeatures] = None
) -> List[GatedChoice]:
    """The backend table row's ``gated_choices`` (the CPU ``auto`` policy, ``runtime/backends/cpu_auto.py``): bf16
    and int8 for this bundle, CPU and OpenVINO version, from their records (nothing is prepared or compiled); a
    windowed bundle's image encoder only. Raises ImportError without OpenVINO."""
    _ov()
    if getattr(meta, "pipeline", "windowed") != "windowed":
        return []
    features = features or cpu_features()
    root = precision_root(meta, cache_dir)
    choices = []
    for precision in AUTO_ORDER:
        try:
            validate_openvino_precision(precision, features)
        except ValueError as exc:
            choices.append(GatedChoice(NAME, precision, "cannot", str(exc).split(". Use ")[0].splitlines()[0]))
            continue
        choice = gated_choice(root, gate_key(meta, precision, device=_device_class(features)))
        if choice.status == "missing" and precision == "int8" and importlib.util.find_spec("nncf") is None:
            why = "quantising needs NNCF (pip install 'zsseg_rt[openvino-int8]')"
            choice = GatedChoice(NAME, precision, "cannot", why)
        choices.append(choice)
    return choices


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
        if precision not in _PRECISION_HINT:
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
                self._wanted[role] = _PRECISION_HINT[role_precision]
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
