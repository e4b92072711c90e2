"""Run-time inference (no torch needed for the ONNX Runtime, TensorRT and OpenVINO backends).

Light to import: the Engine and its pieces load on first use, so ``zsseg_rt.runtime.backends.table`` (the backend
names the command line offers) costs no NumPy, no ONNX Runtime and no Engine.
"""

from __future__ import annotations

from zsseg_rt.aliases import install_moved

# deprecated 2026-11-26 (0.1.x), removed in 0.2.0: each backend's modules moved into its folder (issue 63)
install_moved(
    {
        "zsseg_rt.runtime.ort_precision": "zsseg_rt.runtime.backends.onnxruntime.precision",
        "zsseg_rt.runtime.openvino_backend": "zsseg_rt.runtime.backends.openvino",
        "zsseg_rt.runtime.tensorrt": "zsseg_rt.runtime.backends.tensorrt.engines",
    },
    "deprecated since 2026-11-26, removed in 0.2.0",
)
# deprecated 2026-11-27 (0.1.x), removed in 0.2.0: the device pipeline's modules moved into runtime/device/ (issue 73)
install_moved(
    {
        f"zsseg_rt.runtime.{name}": f"zsseg_rt.runtime.device.{name}"
        for name in (
            "buffer_views",
            "cuda_driver",
            "cuda_graphs",
            "cuda_memory",
            "device_pipeline",
            "device_video",
            "in_flight",
            "postprocess_plans",
            "stage_timing",
        )
    },
    "deprecated since 2026-11-27, removed in 0.2.0",
)

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
