"""Run-time inference (no torch needed for the ONNX Runtime and TensorRT backends)."""

from .engine import Engine, validate_class_names
from .result import Result, SegmentationResult, palette

__all__ = ["Engine", "Result", "SegmentationResult", "palette", "validate_class_names"]
