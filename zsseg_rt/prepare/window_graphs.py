"""A fixed-size image graph at a smaller window (``Engine(window_size=N)``, ``zsseg camera --live``): the bundle's
image encoder and head graphs, traced at the window S x S, rewritten for N x N. Torch-free; needs ``onnx``.

A ViT traced at S holds what depends on the window as constants: the image input's height and width, the positional
table ``[1, 1 + g*g, W]`` (g = S / patch; row 0 the CLS position), the token count L = 1 + P + g*g of its attention
reshapes (P extra tokens, e.g. prompts) and, in the head, the patch grid g of its logits' reshape and the ``patches``
input's g*g rows. At N (a patch multiple, h = N / patch) the table's grid is resized to h x h, bilinearly with
``align_corners=False`` and no anti-aliasing (what a windowed model's forward does at another input size: ZegCLIP's
``PromptedVisionTransformer._positional``, twin of :func:`resize_grid`; ``python_tests/prepare/test_window_graphs.py``
holds the rewritten graphs equal to the PyTorch model at N), L becomes 1 + P + h*h and g becomes h. A graph where
these are not found once each (another layout) is refused in one line, never guessed; the rewritten graphs are run
once by the caller (``runtime/pipelines/window.py``), which checks the shapes they give.
"""

from __future__ import annotations

from typing import Any, Dict, List

import numpy as np

from zsseg_rt.bundle import graph_files
from zsseg_rt.runtime.pipelines.window import NEEDS

__all__ = ["WindowGraphError", "derive_window_graphs", "resize_grid"]

MAX_EXTRA_TOKENS = 256  # tokens beside CLS and the patches a graph may carry (ZegCLIP's 10 prompts)


class WindowGraphError(ValueError):
    """The bundle's graphs cannot be rewritten for another window (one line: why)."""


def _onnx() -> Any:
    missing = NEEDS.missing()
    if missing:
        raise ImportError(NEEDS.refusal("", missing, who="window_size (zsseg camera --live on the exact CPU path)"))
    import onnx

    return onnx


def resize_grid(table: np.ndarray, size: int) -> np.ndarray:
    """``[g*g, W]`` rows of a square grid -> ``[size*size, W]``: bilinear, ``align_corners=False``, no anti-aliasing
    (``torch.nn.functional.interpolate(mode="bilinear")``'s rule, source clamped at the borders)."""
    grid = int(round(np.sqrt(table.shape[0])))
    weights = np.zeros((size, grid), dtype=np.float64)
    scale = np.float32(grid) / np.float32(size)  # in float32, as PyTorch computes the source index
    for out in range(size):
        source = max(scale * (np.float32(out) + np.float32(0.5)) - np.float32(0.5), np.float32(0.0))
        low = min(int(source), grid - 1)
        high = min(low + 1, grid - 1)
        fraction = np.float32(source - np.float32(low))
        weights[out, low] += np.float32(1.0) - fraction
        weights[out, high] += fraction
    cube = table.astype(np.float64).reshape(grid, grid, -1)
    resized = np.einsum("ag,ghw,bh->abw", weights, cube, weights)
    return resized.reshape(size * size, -1).astype(table.dtype)


def _int_tensors(graph: Any) -> List[Any]:
    """Every small int64 tensor of the graph (initializers and Constant nodes' values): the shapes it reshapes to."""
    tensors = [t for t in graph.initializer if t.data_type == 7 and np.prod(list(t.dims) or [1]) <= 8]
    for node in graph.node:
        if node.op_type == "Constant":
            tensors += [a.t for a in node.attribute if a.name == "value" and a.t.data_type == 7]
    return [t for t in tensors if int(np.prod(list(t.dims) or [1])) <= 8]


def _replace_ints(graph: Any, old: int, new: int) -> int:
    """Replace the value ``old`` by ``new`` in the graph's small int64 tensors; how many elements changed."""
    from onnx import numpy_helper

    changed = 0
    for tensor in _int_tensors(graph):
        array = numpy_helper.to_array(tensor)
        hits = array == old
        if hits.any():
            changed += int(hits.sum())
            tensor.CopyFrom(numpy_helper.from_array(np.where(hits, new, array).astype(np.int64), tensor.name))
    return changed


def _int_values(graph: Any) -> set:
    from onnx import numpy_helper

    return {int(v) for t in _int_tensors(graph) for v in numpy_helper.to_array(t).ravel()}


def _set_dims(value: Any, dims: Dict[int, int]) -> None:
    shape = value.type.tensor_type.shape.dim
    for axis, size in dims.items():
        shape[axis].dim_value = int(size)


def _image_graph(model: Any, window: int, size: int, patch: int, name: str) -> None:
    """Rewrite the image graph in place (module docstring)."""
    from onnx import numpy_helper

    graph, g, h = model.graph, window // patch, size // patch
    image = graph.input[0]
    dims = [d.dim_value for d in image.type.tensor_type.shape.dim]
    if dims[2:] != [window, window]:
        raise WindowGraphError(f"{name}: expected an image input of {window}x{window}, found {dims[2:]}")
    tables = [
        t
        for t in graph.initializer
        if t.data_type == 1 and list(t.dims)[-2:-1] == [1 + g * g] and len(t.dims) in (2, 3)
    ]
    if len(tables) != 1:
        raise WindowGraphError(
            f"{name}: expected one positional table of {1 + g * g} rows (CLS + {g}x{g}), found {len(tables)}"
        )
    table = numpy_helper.to_array(tables[0])
    rows = table.reshape(1 + g * g, -1)
    resized = np.concatenate([rows[:1], resize_grid(rows[1:], h)]).reshape(*table.shape[:-2], 1 + h * h, -1)
    tables[0].CopyFrom(numpy_helper.from_array(np.ascontiguousarray(resized), tables[0].name))
    counts = [v for v in _int_values(graph) if 1 + g * g <= v <= 1 + g * g + MAX_EXTRA_TOKENS]
    if len(counts) != 1:
        raise WindowGraphError(
            f"{name}: expected one token count (1 + extra tokens + {g * g} patches) among its reshapes, found {counts}"
        )
    _replace_ints(graph, counts[0], counts[0] - g * g + h * h)
    for rows_of_patches in (g * g, -(g * g)):  # a slice of the last g*g tokens, where a graph has one
        _replace_ints(graph, rows_of_patches, rows_of_patches // (g * g) * h * h)
    _set_dims(image, {2: size, 3: size})


def _head_graph(model: Any, window: int, size: int, patch: int, name: str) -> None:
    """Rewrite the head graph in place: its ``patches`` input's rows, its logits' grid (module docstring)."""
    graph, g, h = model.graph, window // patch, size // patch
    for value in graph.input:
        dims = [d.dim_value for d in value.type.tensor_type.shape.dim]
        if len(dims) == 3 and dims[1] == g * g:
            _set_dims(value, {1: h * h})
    for value in graph.output:
        dims = [d.dim_value for d in value.type.tensor_type.shape.dim]
        if len(dims) == 4 and dims[2:] == [g, g]:
            _set_dims(value, {2: h, 3: h})
    if _replace_ints(graph, g, h) == 0:
        raise WindowGraphError(f"{name}: expected the patch grid {g} among its reshapes, found none")
    _replace_ints(graph, g * g, h * h)


def derive_window_graphs(meta: Any, size: int) -> Dict[str, bytes]:
    """The bundle's image and head graphs rewritten for a window of ``size`` x ``size`` (a patch multiple below
    the graphs' own ``meta.image_size``), serialised: ``{"image": ..., "head": ...}`` (ONNX Runtime opens bytes).

    Raises:
        WindowGraphError: a size that is not such a multiple, or graphs of another layout (one line).
        ImportError: no onnx package (the line says how to install it).
    """
    onnx = _onnx()
    window, patch = int(meta.image_size), int(meta.patch_size)
    if size % patch or not patch <= size < window:
        raise WindowGraphError(
            f"window_size: expected a multiple of {patch} (the patch) below {window} (the graph's own window), "
            f"got {size}"
        )
    files = graph_files(getattr(meta, "pipeline", "windowed"))
    out: Dict[str, bytes] = {}
    for role, rewrite in (("image", _image_graph), ("head", _head_graph)):
        model = onnx.load(meta.file(files[role]))
        del model.graph.value_info[:]  # shapes recorded at S: ONNX Runtime infers them again
        rewrite(model, window, size, patch, files[role])
        out[role] = model.SerializeToString()
    return out
