"""Export side (needs torch): PyTorch -> ONNX bundle writer and its verification against PyTorch, and the torch
backend (the bundle's source model, which only this side can load).

Import submodules directly (``zsseg_rt.export.onnx_export``, ``zsseg_rt.export.torch_backend``); this package
imports nothing heavy on its own. Preparing a bundle for a machine (TensorRT engines, quantisation, the accuracy
gate, the ``auto`` preparation) is :mod:`zsseg_rt.prepare`; the names it had here are deprecated aliases of its
modules.
"""

# the old paths of the preparation modules (now zsseg_rt.prepare) are zsseg_rt.aliases.MOVED's
