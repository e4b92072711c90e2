"""Thin ``nn.Module`` wrappers that give each bundle graph its exact inputs and outputs.

They are what gets exported to ONNX and what the torch backend runs, so the two cannot drift apart.
"""
from __future__ import annotations

from typing import Tuple

import torch
from torch import nn


class ImageEncoderGraph(nn.Module):
    """``image [B,3,S,S]`` -> ``(image_global [B,D], patches [B,N,D])``, both L2-normalised."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.eval()  # exporters restore the wrapper's mode afterwards: it must be eval, or dropout turns on

    def forward(self, image: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        image_global, patches, _ = self.model.encode_image(image)
        return image_global, patches


class HeadGraph(nn.Module):
    """``(text_embeddings [C,D], image_global [B,D], patches [B,N,D])`` -> ``mask_logits [B,C,h,w]``.

    The grid is fixed per bundle (the image encoder has a fixed input size); C and B are dynamic.
    """

    def __init__(self, model, grid: Tuple[int, int]):
        super().__init__()
        self.model = model
        self.grid = (int(grid[0]), int(grid[1]))
        self.eval()

    def forward(self, text: torch.Tensor, image_global: torch.Tensor, patches: torch.Tensor) -> torch.Tensor:
        return self.model.decode(text, image_global, patches, self.grid)


class TextEncoderGraph(nn.Module):
    """``tokens [P,L] int32`` -> ``text_embeddings [P,D]`` L2-normalised (open_clip ``encode_text``).

    The end-of-text position is found with an argmax over int32 ids (TensorRT has no int64 ArgMax).
    """

    def __init__(self, model):
        super().__init__()
        self.text = model.text_encoder
        self.eval()

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.text.encode_tokens(tokens)
