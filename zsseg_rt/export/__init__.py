"""Export side (needs torch): PyTorch -> ONNX bundle writer and its verification against PyTorch, and the torch
backend (the bundle's source model, which only this side can load).

Import submodules directly (``zsseg_rt.export.onnx_export``, ``zsseg_rt.export.torch_backend``); this package
imports nothing heavy on its own. Preparing a bundle for a machine (TensorRT engines, quantisation, the accuracy
gate, the ``auto`` preparation) is :mod:`zsseg_rt.prepare`; the names it had here are deprecated aliases of its
modules.
"""

from zsseg_rt.aliases import install_moved

# deprecated 2026-11-26 (0.1.x), removed in 0.2.0: the preparation modules moved to zsseg_rt.prepare (issue 63)
install_moved(
    {
        "zsseg_rt.export.accuracy_gate": "zsseg_rt.prepare.gate",
        "zsseg_rt.export.two_stage_gate": "zsseg_rt.prepare.gate_two_stage",
        "zsseg_rt.export.gated_precision": "zsseg_rt.prepare.gated",
        "zsseg_rt.export.auto_precision": "zsseg_rt.prepare.auto",
        "zsseg_rt.export.ort_quantize": "zsseg_rt.prepare.onnxruntime",
        "zsseg_rt.export.openvino_precision": "zsseg_rt.prepare.openvino",
        "zsseg_rt.export.tensorrt": "zsseg_rt.prepare.tensorrt.build",
        "zsseg_rt.export.trt_compat": "zsseg_rt.prepare.tensorrt.compat",
        "zsseg_rt.export.trt_op_rules": "zsseg_rt.prepare.tensorrt.op_rules",
        "zsseg_rt.export.trt_profile_check": "zsseg_rt.prepare.tensorrt.profile_check",
        "zsseg_rt.export.trt_precision": "zsseg_rt.prepare.tensorrt.precision",
        "zsseg_rt.export.trt_memory": "zsseg_rt.prepare.tensorrt.memory",
        "zsseg_rt.export.progress": "zsseg_rt.console.progress",
    },
    "deprecated since 2026-11-26, removed in 0.2.0",
)
