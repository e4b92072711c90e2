"""Shared pytest fixtures."""

from __future__ import annotations

import os

import pytest
from support import golden_tiny_model


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "slow: full-size models (minutes); run by tools/run_tests.sh, deselect with -m 'not slow'"
    )


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory):
    """A bundle exported once per session from the golden tiny ZegCLIP model (64 px input, 4x4 patch grid, max 32
    classes). Its native checkpoint is saved next to it and recorded in meta.json, so the torch backend can load
    it too. Returns the bundle directory. Needs torch (skips without it)."""
    pytest.importorskip("torch", reason="exporting the tiny test bundle needs torch")
    from zsseg_rt.export.onnx_export import export_bundle
    from zsseg_rt.models.common.convert import save_native

    root = tmp_path_factory.mktemp("tiny_bundle")
    model = golden_tiny_model("zegclip")
    native = save_native(model, os.path.join(root, "native"))
    return export_bundle(model, os.path.join(root, "bundle"), max_classes=32, source=str(native), verify_images=())


@pytest.fixture(autouse=True)
def _private_zsseg_cache(tmp_path_factory, monkeypatch):
    """zsseg_rt's cache directory (verified-file hashes) is a per-session temporary one, never the user's."""
    monkeypatch.setenv("ZSSEG_RT_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "zsseg_rt_cache"))


# Test directories whose tiny CPU models run fastest with one torch intra-op thread (training/evaluation loops
# of many tiny steps, where thread hand-off costs more than it saves).
SINGLE_TORCH_THREAD_DIRS = ("eval", "train")


@pytest.fixture(autouse=True)
def _single_torch_thread(request):
    """One torch intra-op thread for the tests under ``SINGLE_TORCH_THREAD_DIRS``; the old count is restored."""
    if request.node.path.parent.name not in SINGLE_TORCH_THREAD_DIRS:
        yield
        return
    torch = pytest.importorskip("torch")
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
