"""Run-time inference (no torch needed for the ONNX Runtime, TensorRT and OpenVINO backends).

Light to import: the Engine and its pieces load on first use, so ``zsseg_rt.runtime.backends.table`` (the backend
names the command line offers) costs no NumPy, no ONNX Runtime and no Engine.
"""

from __future__ import annotations

# the old paths of its modules (runtime/device/, backends/<name>/) are zsseg_rt.aliases.MOVED's

_LAZY = {
    "Engine": "engine",
    "validate_class_names": "engine",
    "Result": "result",
    "SegmentationResult": "result",
    "palette": "result",
}


def __getattr__(name):  # PEP 562 lazy attributes
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["Engine", "Result", "SegmentationResult", "palette", "validate_class_names"]
