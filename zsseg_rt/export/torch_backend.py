"""The torch backend of ``zsseg_rt.Engine``: the PyTorch model a windowed bundle was exported from, run through the
same graph wrappers the exporter traced (``zsseg_rt.export.graphs``), so the two cannot drift apart.

It lives on the torch side: the runtime finds it by name (``backend="torch"``) through the ``zsseg_rt.backends``
entry point of the installed package, and never imports this module itself.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from zsseg_rt.bundle import BundleMeta
from zsseg_rt.runtime.backends import Backend, register_backend

__all__ = ["TorchBackend", "source_model"]


def source_model(meta: BundleMeta, model: Any = None) -> Any:
    """The PyTorch model a bundle runs on the torch backend: ``model`` when given, else the bundle's source
    checkpoint, as its family decides (``Family.bundle_model``)."""
    from zsseg_rt.models.registry import get_family

    return get_family(meta.family).bundle_model(meta, model)


class TorchBackend(Backend):
    """Runs the PyTorch model the bundle was exported from (reference backend; needs torch)."""

    name = "torch"

    def __init__(self, meta: BundleMeta, device: str = "auto", model: Any = None):
        import torch

        from zsseg_rt.export.graphs import HeadGraph, ImageEncoderGraph, TextEncoderGraph

        model = source_model(meta, model)
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self._torch = torch
        self.device = torch.device(device)
        model = model.eval().to(self.device)
        self._image = ImageEncoderGraph(model)
        self._head = HeadGraph(model, meta.grid)
        self._text = TextEncoderGraph(model)
        self._io = meta.io

    # the graphs and I/O table, for the device-resident pipeline (runtime/device_pipeline.py)
    @property
    def image_graph(self):
        return self._image

    @property
    def head_graph(self):
        return self._head

    @property
    def io(self):
        return self._io

    def _np(self, tensor):
        return tensor.detach().float().cpu().numpy()

    def _tensor(self, array, dtype=np.float32):
        return self._torch.from_numpy(np.ascontiguousarray(array, dtype)).to(self.device)

    def encode_image(self, images):
        with self._torch.inference_mode():
            outs = self._image(self._tensor(images))
        return {name: self._np(t) for name, t in zip(self._io["image"]["outputs"], outs)}

    def head(self, text, features):
        names = self._io["head"]["inputs"][1:]
        with self._torch.inference_mode():
            out = self._head(self._tensor(text), *(self._tensor(features[name]) for name in names))
        return self._np(out)

    def encode_text(self, tokens):
        with self._torch.inference_mode():
            out = self._text(self._tensor(tokens, np.int32))
        return self._np(out)


register_backend("torch", TorchBackend)  # also found through the entry point without importing this module
