"""Export side (needs torch): ONNX bundle writer + verification, TensorRT engine builder, compatibility checks.

Import submodules directly (``zsseg_rt.export.onnx_export``, ``zsseg_rt.export.tensorrt``,
``zsseg_rt.export.trt_compat``); this package imports nothing heavy on its own.
"""
