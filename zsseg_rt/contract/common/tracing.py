"""Helpers for tracing a family's modules into ONNX graphs."""

from __future__ import annotations

import contextlib

import torch

__all__ = ["mha_fastpath_off_when_tracing"]


@contextlib.contextmanager
def mha_fastpath_off_when_tracing():
    """nn.MultiheadAttention's inference fast path (``_native_multi_head_attention``) has no ONNX export: turn it
    off while tracing (nothing here requires grad, so it would otherwise be taken)."""
    if not (torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()):
        yield
        return
    previous = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        yield
    finally:
        torch.backends.mha.set_fastpath_enabled(previous)
