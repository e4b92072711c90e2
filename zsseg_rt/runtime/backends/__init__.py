"""Backends run a bundle's graphs; everything around them (pre/post-processing) is the pipelines'.

A backend is a row of the backend table (``table.py``: name, runner factory, devices, precisions, the graph roles
its runner opens) and a :class:`GraphRunner` (``run(role, feeds, outputs)``); a pipeline wires its roles once
(:class:`WindowedGraphs`, :class:`TwoStageGraphs`), so a backend serves every pipeline whose roles its runner opens.
ONNX Runtime, TensorRT and OpenVINO are built in, each in one folder (``onnxruntime/``, ``tensorrt/``, ``openvino/``:
its runner, its precisions, its device specifics); the torch backend's runner lives on the torch side
(``zsseg_rt.export.torch_backend``), found through its row; other backends
join through the ``zsseg_rt.backends`` entry points or :func:`register_backend`. Nothing here imports torch, and the
runtime libraries are imported only when their backend is opened. docs/development.md walks through adding one.
"""

from __future__ import annotations

import importlib
from typing import Any

from .table import (
    AUTO,
    BACKEND_ENTRY_POINTS,
    BUILTIN_BACKENDS,
    REFERENCE_BACKEND,
    BackendSpec,
    backend_names,
    backend_row,
    backend_rows,
    precision_names,
    rows_serving,
)

# Everything else loads on first use (PEP 562): importing the table costs neither NumPy nor a runtime library.
_LAZY = {
    "Backend": "base",
    "Features": "base",
    "GraphRunner": "base",
    "OpenRequest": "base",
    "runner_factory": "base",
    "RoleGraphs": "base",
    "TwoStageGraphs": "base",
    "WindowedGraphs": "base",
    "backend_factory": "select",
    "default_precision": "select",
    "make_backend": "select",
    "open_backend": "select",
    "open_reference": "select",
    "register_backend": "select",
    "OnnxRuntimeBackend": "legacy",
    "OrtRunner": "onnxruntime",
    "open_ort_session": "onnxruntime",
    "ort_providers": "onnxruntime",
    "session_options": "onnxruntime",
    "TwoStageOrtBackend": "legacy",
    "TensorRTBackend": "legacy",
    "TrtRunner": "tensorrt",
    "OpenVinoBackend": "legacy",
    "OpenVinoRunner": "openvino",
}


def __getattr__(name: str) -> Any:
    if name == "KNOWN_BACKENDS":  # zsseg_rt 0.1's name: every backend name, "auto" first
        return tuple(backend_names())
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "AUTO",
    "BACKEND_ENTRY_POINTS",
    "BUILTIN_BACKENDS",
    "BackendSpec",
    "KNOWN_BACKENDS",
    "REFERENCE_BACKEND",
    "backend_names",
    "backend_row",
    "backend_rows",
    "precision_names",
    "rows_serving",
    *_LAZY,
]
