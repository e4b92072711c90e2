"""The bundle's fixed-size graphs rewritten for a smaller window (``zsseg_rt/prepare/window_graphs.py``: issue 90 item
3, ``Engine(window_size=N)``, ``zsseg camera --live``): equal to the PyTorch model run at that window, which
resizes its positional table itself; a size or a graph it cannot rewrite refused in one line."""

import dataclasses

import numpy as np
import pytest

pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from zsseg_rt.bundle import load_meta  # noqa: E402
from zsseg_rt.prepare.window_graphs import WindowGraphError, derive_window_graphs, resize_grid  # noqa: E402


def test_the_grid_resize_is_pytorchs_bilinear():
    """``resize_grid`` against ``F.interpolate(mode="bilinear", align_corners=False)`` (what the model's forward
    does at another grid), to smaller grids, ratios that are not whole."""
    torch = pytest.importorskip("torch")
    table = np.random.default_rng(0).standard_normal((32 * 32, 7)).astype(np.float32)
    for size in (28, 24, 20, 16):  # (the windows below the graph's: a resize down)
        grid = torch.from_numpy(table).reshape(1, 32, 32, 7).permute(0, 3, 1, 2)
        want = torch.nn.functional.interpolate(grid, size=(size, size), mode="bilinear", align_corners=False)
        want = want.permute(0, 2, 3, 1).reshape(size * size, 7).numpy()
        np.testing.assert_allclose(resize_grid(table, size), want, atol=2e-6)


@pytest.mark.parametrize("size", [48, 32])
def test_the_rewritten_graphs_are_the_model_at_that_window(tiny_bundle, size):
    """The tiny ZegCLIP bundle (64 window, 16 patch, 4 prompts) rewritten for 48 and 32: its image graph's patches and
    its head's logits equal the PyTorch model's at that input (its positional table resized by the model itself)."""
    torch = pytest.importorskip("torch")
    from support import golden_tiny_model

    meta = load_meta(tiny_bundle)
    graphs = derive_window_graphs(meta, size)
    image = ort.InferenceSession(graphs["image"], providers=["CPUExecutionProvider"])
    head = ort.InferenceSession(graphs["head"], providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((2, 3, size, size)).astype(np.float32)
    text = np.random.default_rng(1).standard_normal((5, meta.embed_dim)).astype(np.float32)
    text /= np.linalg.norm(text, axis=1, keepdims=True)
    global_, patches = image.run(None, {"image": x})
    logits = head.run(None, {"text_embeddings": text, "image_global": global_, "patches": patches})[0]
    model = golden_tiny_model("zegclip").eval()
    with torch.no_grad():
        want_global, want_patches, grid = model.encode_image(torch.from_numpy(x))
        want = model.decode(torch.from_numpy(text), want_global, want_patches, grid).numpy()
    assert grid == (size // 16, size // 16) and logits.shape == (2, 5) + grid
    np.testing.assert_allclose(patches, want_patches.numpy(), atol=1e-5)
    np.testing.assert_allclose(logits, want, atol=1e-4 * float(np.abs(want).max()))


def test_what_cannot_be_rewritten_is_refused_in_one_line(tiny_bundle):
    meta = load_meta(tiny_bundle)
    for size in (40, 64, 80, 0):
        with pytest.raises(WindowGraphError) as refused:
            derive_window_graphs(meta, size)
        assert str(refused.value) == (
            f"window_size: expected a multiple of 16 (the patch) below 64 (the graph's own window), got {size}"
        )
    other = dataclasses.replace(meta, image_size=128)  # a meta.json that does not describe its graph
    with pytest.raises(
        WindowGraphError, match=r"^image_encoder.onnx: expected an image input of 128x128, found \[64, 64\]$"
    ):
        derive_window_graphs(other, 64)
