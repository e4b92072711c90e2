"""The backend classes of zsseg_rt 0.1, kept as deprecated aliases (deprecated since 2026-11-26, removed in 0.2.0).

Each is the windowed (or two-stage) role object over its row's runner: ``OnnxRuntimeBackend(meta, ...)`` is
``make_backend(meta, "onnxruntime", ...)``'s backend (``zsseg_rt.runtime.backends.make_backend``: open any backend
through the backend table). Nothing in zsseg_rt constructs them any more.
"""

from __future__ import annotations

import warnings
from typing import Any

from zsseg_rt.bundle import BundleMeta

from .base import TwoStageGraphs, WindowedGraphs
from .onnxruntime.runner import OrtRunner
from .openvino.runner import OpenVinoRunner
from .tensorrt.runner import TrtRunner

__all__ = ["OnnxRuntimeBackend", "OpenVinoBackend", "TensorRTBackend", "TwoStageOrtBackend"]


def _deprecated(cls: type) -> None:
    warnings.warn(
        f"{cls.__name__} is deprecated since 2026-11-26 and removed in 0.2.0: open backends through the backend "
        "table, zsseg_rt.runtime.backends.make_backend(meta, NAME, ...)",
        DeprecationWarning,
        stacklevel=3,
    )


class OnnxRuntimeBackend(WindowedGraphs):
    """A windowed bundle's graphs under ONNX Runtime: ``OrtRunner``'s arguments after its roles (deprecated)."""

    def __init__(self, meta: BundleMeta, *args: Any, **options: Any):
        _deprecated(type(self))
        super().__init__(OrtRunner(meta, WindowedGraphs.roles, *args, **options), meta)


class TwoStageOrtBackend(TwoStageGraphs):
    """A two-stage bundle's graphs under ONNX Runtime, fp32: ``OrtRunner``'s device and threads (deprecated)."""

    def __init__(self, meta: BundleMeta, *args: Any, **options: Any):
        _deprecated(type(self))
        super().__init__(OrtRunner(meta, TwoStageGraphs.roles, *args, **options), meta)


class OpenVinoBackend(WindowedGraphs):
    """A windowed bundle's graphs under OpenVINO: ``OpenVinoRunner``'s arguments (deprecated)."""

    def __init__(self, meta: BundleMeta, *args: Any, **options: Any):
        _deprecated(type(self))
        super().__init__(OpenVinoRunner(meta, *args, **options), meta)


class TensorRTBackend(WindowedGraphs):
    """A windowed bundle's engines: ``TrtRunner``'s arguments (precision, engine_paths, cuda_graphs; deprecated)."""

    def __init__(self, meta: BundleMeta, *args: Any, **options: Any):
        _deprecated(type(self))
        super().__init__(TrtRunner(meta, *args, roles=WindowedGraphs.roles, **options), meta)  # type: ignore[misc]
