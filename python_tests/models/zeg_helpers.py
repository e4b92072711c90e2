"""Helpers for the ZegCLIP model tests (tiny random models: ViT width 64, 2 layers, 64 px, patch 16 -> 4x4)."""

from __future__ import annotations

import pytest
import torch

TINY = "zegclip_tiny_test"


def randomize_(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give every parameter non-trivial random values (LayerNorm weights around 1), deterministically."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g) * 0.2
            if name.endswith(
                (
                    "norm.weight",
                    "ln_1.weight",
                    "ln_2.weight",
                    "ln_pre.weight",
                    "ln_post.weight",
                    "ln_final.weight",
                    "norm2.weight",
                    "norm3.weight",
                    "prompt_norm.weight",
                )
            ):
                p.copy_(1.0 + noise)
            else:
                p.copy_(noise)
    return model


def refuses_checkpoint(path, state_dict, save, load, match: str) -> None:
    """``state_dict`` saved at ``path`` in an official layout (``save(path, state_dict)``); loading that file
    (``load(path)``) raises a WeightsError whose message matches ``match``."""
    from zsseg_rt.models import WeightsError

    save(path, state_dict)
    with pytest.raises(WeightsError, match=match):
        load(path)
