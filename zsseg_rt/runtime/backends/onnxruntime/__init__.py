"""The ONNX Runtime backend, in one place: its runner and the row's factory (``runner.py``: sessions, execution
providers) and its precisions (``precision.py``: the int8 / bf16 image encoders and their gate records). What
prepares them is ``zsseg_rt.prepare.onnxruntime``."""

from .precision import gated_choices, image_encoder_graph, precision_key, resolve_ort_auto, validate_ort_precision
from .runner import OrtRunner, open_onnxruntime, open_ort_session, ort_providers, runs_on_gpu, session_options

__all__ = [
    "OrtRunner",
    "gated_choices",
    "image_encoder_graph",
    "open_onnxruntime",
    "open_ort_session",
    "ort_providers",
    "precision_key",
    "resolve_ort_auto",
    "runs_on_gpu",
    "session_options",
    "validate_ort_precision",
]
