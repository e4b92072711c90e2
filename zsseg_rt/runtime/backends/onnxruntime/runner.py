"""The ONNX Runtime runner: a bundle's graphs as ``InferenceSession``s (``InferenceSession.run`` is thread-safe).

``precision``: "fp32" (default, the bundle's graphs), "int8" (the image encoder's weight MatMuls dynamically
quantised) or "bf16" (Arm64 CPUs with bf16: the image encoder's GEMMs in bf16), or "auto" (the fastest that passed
the accuracy gate on this CPU, else fp32); a reduced precision runs only after the accuracy gate passed for this CPU
(``precision.py``; prepared on first use unless ``prepare=False``) and concerns the image encoder only
(a pipeline without one, two-stage bundles, runs fp32).
"""

from __future__ import annotations

import logging
from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np

from zsseg_rt.bundle import BundleError, BundleMeta, graph_files

from ...file_verification import unreadable_graph_error
from ..base import OpenRequest, WindowedGraphs, runner_factory

__all__ = [
    "OrtRunner",
    "open_onnxruntime",
    "open_ort_session",
    "ort_providers",
    "runs_on_gpu",
    "session_options",
]

NAME = "onnxruntime"
LOG = logging.getLogger("zsseg_rt.precision")


def _ort():
    try:
        import onnxruntime
    except ImportError as exc:
        raise ImportError("the onnxruntime backend needs onnxruntime: pip install onnxruntime") from exc
    return onnxruntime


def _gpu_index(device: str) -> Optional[int]:
    """N of "cuda:N", 0 of "cuda", None of any other device."""
    if device == "cuda":
        return 0
    head, _, index = device.partition(":")
    return int(index) if head == "cuda" and index.isdigit() else None


def ort_providers(device: str) -> List[str]:
    """ONNX Runtime execution providers for ``device`` ("auto", "cpu", "cuda" or "cuda:N"); refuses a GPU where
    this onnxruntime has none (never the CPU instead)."""
    available = _ort().get_available_providers()
    if device == "cpu":
        return ["CPUExecutionProvider"]
    if _gpu_index(device) is not None:
        if "CUDAExecutionProvider" not in available:
            raise RuntimeError(
                f"device={device!r} was requested but this onnxruntime has no CUDAExecutionProvider "
                f"(available: {available}); install onnxruntime-gpu or use Engine(..., device='cpu')"
            )
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if device != "auto":
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}")
    return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]


def runs_on_gpu(device: str) -> bool:
    """Whether ONNX Runtime would run the bundle's graphs on a GPU for ``device`` (the table row's ``gpu_check``:
    "auto" on a machine whose onnxruntime has the CUDA execution provider)."""
    try:
        return device != "cpu" and ort_providers(device)[0] == "CUDAExecutionProvider"
    except (ImportError, RuntimeError, ValueError):
        return False


def session_options(threads: int = 0, extra: Optional[Mapping[str, str]] = None) -> Any:
    """The session options of every graph: ``threads`` intra-op threads (0: ONNX Runtime's choice), no spinning,
    ``extra`` session config entries (a reduced-precision image encoder's)."""
    options = _ort().SessionOptions()
    if threads:
        options.intra_op_num_threads = int(threads)
    # ONNX Runtime's idle worker threads spin by default; on small CPUs (Jetson, small VMs) they then steal the cores
    # the native post-processing (OpenMP) runs on next: measured 4-30x slower post-processing here.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    for key, value in (extra or {}).items():
        options.add_session_config_entry(key, value)
    return options


def open_ort_session(
    meta: BundleMeta,
    role: str,
    file_name: str,
    options: Any,
    providers: List[str],
    path: Optional[str] = None,
    device: str = "auto",
) -> Any:
    """An ONNX Runtime session of bundle graph ``file_name`` (role ``role`` of meta.json's "io" table), checked to be
    a graph ONNX Runtime loads whose input and output names are the ones meta.json records. ``path``: another file
    standing for that graph (a reduced-precision image encoder prepared beside the bundle). ``device``: a GPU
    asked for ("cuda", "cuda:N": its index) that the session does not run on (ONNX Runtime falls back to the CPU
    where its CUDA provider cannot start) is refused with the reason, never run on the CPU.

    Raises:
        BundleError: the file is not a loadable ONNX graph (e.g. a corrupt protobuf whose hash was recomputed) or
            its tensors are not the recorded ones, with the file named; never ONNX Runtime's raw error.
        RuntimeError: a GPU asked for that ONNX Runtime could not use.
    """
    ort = _ort()
    path = path or meta.file(file_name)
    index = _gpu_index(device)
    entries: List[Any] = list(providers)
    if index is not None and providers and providers[0] == "CUDAExecutionProvider":
        entries[0] = ("CUDAExecutionProvider", {"device_id": str(index)})
    try:
        session = ort.InferenceSession(path, options, providers=entries)
    except Exception as exc:  # noqa: BLE001 - ONNX Runtime raises its own untyped errors (InvalidProtobuf, Fail...)
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if index is not None and any(word in reason.lower() for word in ("cuda", "device")):  # the GPU, not the file
            raise RuntimeError(f"device={device!r}: ONNX Runtime could not start on that GPU ({reason})") from exc
        raise unreadable_graph_error(path, "ONNX Runtime can load", exc) from None
    if index is not None and "CUDAExecutionProvider" not in session.get_providers():
        raise RuntimeError(
            f"device={device!r} was requested but ONNX Runtime's CUDA execution provider did not start here (the "
            f"session runs on {session.get_providers()}: no usable GPU, or its CUDA/cuDNN libraries are missing); "
            "use Engine(..., device='cpu') or Engine(..., device='auto')"
        )
    expected = meta.io.get(role, {})
    got = {"inputs": [i.name for i in session.get_inputs()], "outputs": [o.name for o in session.get_outputs()]}
    for key in ("inputs", "outputs"):
        if key in expected and sorted(expected[key]) != sorted(got[key]):
            raise BundleError(
                f"bundle file {path!r} has {key} {got[key]}, but meta.json records {list(expected[key])} for its "
                f"role {role!r}; the bundle is inconsistent: re-export it"
            )
    return session


class OrtRunner:
    """The graphs of ``roles`` (default: every graph of the bundle's pipeline) under ONNX Runtime (module
    docstring). ``image_encoder`` / ``image_config`` open the image encoder from that file with those session
    entries instead (the accuracy gate's candidate)."""

    name = NAME

    def __init__(
        self,
        meta: BundleMeta,
        roles: Optional[Sequence[str]] = None,
        device: str = "auto",
        threads: int = 0,
        precision: str = "fp32",
        *,
        cache_dir: Optional[str] = None,
        prepare: bool = True,
        image_encoder: Optional[str] = None,
        image_config: Optional[Dict[str, str]] = None,
    ):
        files = graph_files(getattr(meta, "pipeline", "windowed"))
        roles = list(files) if roles is None else list(roles)
        providers = ort_providers(device)
        self.providers = providers
        self.runs_on_gpu = providers[0] == "CUDAExecutionProvider"
        self.requested_precision = precision
        self.precision = precision
        self.precision_record: Optional[dict] = None  # the accuracy-gate record a reduced precision runs under
        image_path = image_encoder
        config = dict(image_config or {})
        if image_path is None and precision == "auto":
            from .precision import resolve_ort_auto, validate_ort_precision

            validate_ort_precision(precision)
            if providers[0] != "CPUExecutionProvider" or "image" not in roles:  # reduced: CPU image encoders only
                LOG.info(
                    "ONNX Runtime precision='auto' runs fp32 (%s)",
                    f"on {providers[0]}: its reduced precisions are CPU ones"
                    if "image" in roles
                    else "the bundle's pipeline has no image encoder to reduce",
                )
                self.precision = precision = "fp32"
            else:
                self.precision, found = resolve_ort_auto(meta, cache_dir, prepare)
                precision = self.precision
                if found is not None:
                    image_path, config, self.precision_record = found
                    config = dict(config)
        if image_path is None and precision != "fp32":
            if "image" not in roles:
                raise ValueError(
                    f"precision={precision!r} on the onnxruntime backend reduces a windowed bundle's image encoder; "
                    f"bundles of the {getattr(meta, 'pipeline', 'windowed')} pipeline run fp32 (precision='fp32' or None)"
                )
            if providers[0] != "CPUExecutionProvider":
                raise ValueError(
                    f"precision={precision!r} on the onnxruntime backend is a CPU precision; use "
                    "Engine(..., device='cpu') (or "
                    "the torch / TensorRT backend on a GPU)"
                )
            from .precision import image_encoder_graph

            image_path, config, self.precision_record = image_encoder_graph(meta, precision, cache_dir, prepare)
        self._sessions = {}
        for role in roles:
            path = image_path if role == "image" and image_path is not None else meta.file(files[role])
            options = session_options(threads, config if role == "image" else None)
            self._sessions[role] = open_ort_session(
                meta, role, files[role], options, providers, path=path, device=device
            )
        started = [getattr(session, "get_providers", lambda: providers)() for session in self._sessions.values()]
        if self.runs_on_gpu and any("CUDAExecutionProvider" not in names for names in started):  # device "auto"
            LOG.info("ONNX Runtime device=%r: its CUDA execution provider did not start here; the CPU runs", device)
            self.runs_on_gpu, self.providers = False, ["CPUExecutionProvider"]
        self._meta = meta

    def run(self, role: str, feeds: Mapping[str, np.ndarray], outputs: Sequence[str]) -> List[np.ndarray]:
        return self._sessions[role].run(list(outputs), dict(feeds))

    def batch_limit(self, role: str, input: str) -> Optional[int]:
        return None

    def device_executor(self):
        """The device pipeline's executor on host buffers (``device_pipeline=True`` on the CPU)."""
        from ...device.device_pipeline import OnnxRuntimeExecutor

        return OnnxRuntimeExecutor(WindowedGraphs(self, self._meta))


@runner_factory
def open_onnxruntime(request: OpenRequest) -> OrtRunner:
    """The table row's factory: the graphs of the request's roles, their files verified first when it asks."""
    meta = request.meta
    if request.verify:  # the graphs ONNX Runtime is about to open
        from ...file_verification import verify_bundle_files

        files = graph_files(getattr(meta, "pipeline", "windowed"))
        verify_bundle_files(meta, sorted(files[role] for role in request.roles))
    precision = request.precision or "fp32"
    return OrtRunner(meta, request.roles, request.device, request.threads, precision, **request.options)
