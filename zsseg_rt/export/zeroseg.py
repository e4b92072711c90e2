"""Deprecated import path, kept for one release (CHANGELOG.md): the ZeroSeg student's ONNX export belongs to its
family, :mod:`zsseg_rt.models.zeroseg.onnx`."""

import warnings

from zsseg_rt.models.zeroseg.onnx import INPUT_NAME, OUTPUT_NAMES, export_zeroseg_onnx, verify_zeroseg_onnx

__all__ = ["export_zeroseg_onnx", "verify_zeroseg_onnx", "INPUT_NAME", "OUTPUT_NAMES"]

warnings.warn(
    "zsseg_rt.export.zeroseg is deprecated: import from zsseg_rt.models.zeroseg.onnx", DeprecationWarning, stacklevel=2
)
