"""Shared pytest fixtures."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

GOLDEN = Path(__file__).resolve().parent / "data" / "golden"
# A vocabulary for which the tiny test models give several labels per sample photo (>= 3; asserted by the tests)
VOCAB10 = ["person", "cat", "dog", "car", "chair", "sofa", "table", "plant", "bottle", "tv"]


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: full-size models (minutes); run by tools/run_tests.sh, deselect with "
                                       "-m 'not slow'")


def golden_tiny_model(family: str = "zegclip"):
    """The tiny model of the golden fixtures (python_tests/data/golden), imported from its official-layout
    checkpoint: random but non-degenerate weights (mask logits spread over several units, several classes win),
    unlike a freshly initialised tiny model whose logits are nearly flat (one label everywhere)."""
    import zsseg_rt.models as models

    folder, config = {"zegclip": ("zegclip_tiny", "zegclip_tiny_test"), "cliprc": ("cliprc_tiny", "cliprc_tiny_test")}[family]
    loader = models.load_official_zegclip if family == "zegclip" else models.load_official_cliprc
    return loader(GOLDEN / folder / "official_tiny.safetensors", config=config, decoder_ffn_dim=128).eval()


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory):
    """A bundle exported once per session from the golden tiny ZegCLIP model (64 px input, 4x4 patch grid, max 32
    classes). Its native checkpoint is saved next to it and recorded in meta.json, so the torch backend can load
    it too. Returns the bundle directory. Needs torch (skips without it)."""
    pytest.importorskip("torch", reason="exporting the tiny test bundle needs torch")
    from zsseg_rt.export.onnx_export import export_bundle
    from zsseg_rt.models.convert import save_native

    root = tmp_path_factory.mktemp("tiny_bundle")
    model = golden_tiny_model("zegclip")
    native = save_native(model, os.path.join(root, "native"))
    return export_bundle(model, os.path.join(root, "bundle"), max_classes=32, source=str(native), verify_images=())
