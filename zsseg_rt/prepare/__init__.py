"""Make a bundle fast on this machine, ahead of use: the accuracy gate every reduced precision passes
(``gate.py``, ``gate_two_stage.py``), the gated record of a CPU backend's precision (``gated.py``), one preparer
per backend with something to prepare (``onnxruntime.py``: int8 / bf16; ``openvino.py``: bf16 / NNCF int8;
``tensorrt/``: engines built and gated on this GPU) and the ``auto`` preparation of every CPU path
(``auto.py``; ``python -m zsseg_rt.prepare.auto BUNDLE``). Torch-free: it runs the bundle's graphs through the
runtime (one layer below) and writes the records the runtime reads (``runtime/precision_records.py``); the torch
backend's own precisions are prepared on the torch side (``zsseg_rt.export.torch_backend``).

Import the modules directly; this package imports nothing on its own. docs/precision.md says what is prepared
when, and why.
"""
