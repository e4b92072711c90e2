"""Fixtures for the ZegCLIP model tests."""

from __future__ import annotations

import pytest
import torch
from zeg_helpers import TINY, randomize_


@pytest.fixture(scope="session")
def tiny_model():
    from zsseg_rt.models import create_model

    torch.manual_seed(0)
    model = create_model(TINY)
    randomize_(model, seed=1)
    return model.eval()


@pytest.fixture()
def tiny_images():
    g = torch.Generator().manual_seed(3)
    return torch.randn(2, 3, 64, 64, generator=g)


@pytest.fixture()
def tiny_text():
    g = torch.Generator().manual_seed(4)
    return torch.randn(5, 32, generator=g)
