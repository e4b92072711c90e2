"""Thin ``nn.Module`` wrappers that give each bundle graph its exact inputs and outputs.

They are what gets exported to ONNX and what the torch backend runs, so the two cannot drift apart.

A model family plugs in through the graph members of its family object (:class:`zsseg_rt.contract.family.Family`,
found through the registry by the model's ``config.family``): ``export_image_outputs(model)`` (names of the image
encoder outputs), ``export_encode_image(model, image)``, ``export_decode(model, text, *image_outputs, grid=(h, w))``
and ``export_postprocess(model)`` (the table recorded in meta.json).
"""

from __future__ import annotations

from typing import Tuple

import torch
from torch import nn


def family_of(model):
    """The family object of ``model`` (:func:`zsseg_rt.contract.registry.family_of_model`)."""
    from zsseg_rt.contract.registry import family_of_model

    return family_of_model(model)


def image_output_names(model) -> Tuple[str, ...]:
    """Names of the image encoder graph's outputs (the family's ``export_image_outputs``)."""
    return tuple(family_of(model).export.image_outputs(model))


class ImageEncoderGraph(nn.Module):
    """``image [B,3,S,S]`` -> image features (ZegCLIP: ``image_global [B,D]``, ``patches [B,N,D]``)."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.family = family_of(model)
        self.eval()  # exporters restore the wrapper's mode afterwards: it must be eval, or dropout turns on

    def forward(self, image: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        return tuple(self.family.export.encode_image(self.model, image))


class HeadGraph(nn.Module):
    """``(text_embeddings [C,D], *image features)`` -> ``mask_logits [B,C,h,w]``.

    The grid is fixed per bundle (the image encoder has a fixed input size); C and B are dynamic.
    """

    def __init__(self, model, grid: Tuple[int, int]):
        super().__init__()
        self.model = model
        self.family = family_of(model)
        self.grid = (int(grid[0]), int(grid[1]))
        self.eval()

    def forward(self, text: torch.Tensor, *features: torch.Tensor) -> torch.Tensor:
        return self.family.export.decode(self.model, text, *features, grid=self.grid)


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
