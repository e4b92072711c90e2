"""Thin ``nn.Module`` wrappers that give each bundle graph its exact inputs and outputs.

They are what gets exported to ONNX and what the torch backend runs, so the two cannot drift apart.

A model family plugs in through optional hooks (ZegCLIP needs none):
  * ``export_image_outputs``: names of the image encoder outputs (default: image_global, patches);
  * ``export_encode_image(image) -> tuple`` of those outputs (default: ``encode_image(image)[:2]``);
  * ``export_decode(text, *image_outputs, grid=(h, w)) -> mask_logits`` (default: ``decode(text, g, p, grid)``);
  * ``export_postprocess``: dict recorded in meta.json (activation, logit_scale, background_threshold).
"""

from __future__ import annotations

from typing import Tuple

import torch
from torch import nn

from zsseg_rt.bundle import Names


def image_output_names(model) -> Tuple[str, ...]:
    return tuple(getattr(model, "export_image_outputs", Names.IMAGE_ENCODER_OUTPUTS))


class ImageEncoderGraph(nn.Module):
    """``image [B,3,S,S]`` -> image features (ZegCLIP: ``image_global [B,D]``, ``patches [B,N,D]``)."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.eval()  # exporters restore the wrapper's mode afterwards: it must be eval, or dropout turns on

    def forward(self, image: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        hook = getattr(self.model, "export_encode_image", None)
        if hook is not None:
            return tuple(hook(image))
        image_global, patches, _ = self.model.encode_image(image)
        return image_global, patches


class HeadGraph(nn.Module):
    """``(text_embeddings [C,D], *image features)`` -> ``mask_logits [B,C,h,w]``.

    The grid is fixed per bundle (the image encoder has a fixed input size); C and B are dynamic.
    """

    def __init__(self, model, grid: Tuple[int, int]):
        super().__init__()
        self.model = model
        self.grid = (int(grid[0]), int(grid[1]))
        self.eval()

    def forward(self, text: torch.Tensor, *features: torch.Tensor) -> torch.Tensor:
        hook = getattr(self.model, "export_decode", None)
        if hook is not None:
            return hook(text, *features, grid=self.grid)
        image_global, patches = features
        return self.model.decode(text, image_global, patches, self.grid)


class TextEncoderGraph(nn.Module):
    """``tokens [P,L] int32`` -> ``text_embeddings [P,D]`` L2-normalised (open_clip ``encode_text``).

    The end-of-text position is found with an argmax over int32 ids (TensorRT has no int64 ArgMax); the causal mask
    is finite and the end-token pooling a one-hot MatMul (``export.text_graph``: the same numbers, TensorRT-friendly).
    """

    def __init__(self, model):
        super().__init__()
        from .text_graph import ExportTextEncoder

        self.text = ExportTextEncoder(model.text_encoder)
        self.eval()

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.text(tokens)
