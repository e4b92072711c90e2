"""What the training-free image towers compute from the patch grid, for a grid of any size: the positional table
resized to the grid (the official bicubic interpolations) and NACLIP's neighbourhood bias.

Everything here is written with tensor operations on the grid sizes, so that a traced image encoder (``zsseg
export``) computes them from its input's height and width: one graph serves every input size (whole-image inference,
windows of any crop). The official code calls ``F.interpolate(mode="bicubic", align_corners=False)`` on the stored
table; :func:`bicubic_matrix` is that interpolation along one axis written as a ``[out, in]`` weight matrix (the same
source coordinates, cubic coefficients ``A = -0.75`` and clamped border taps as PyTorch's CPU and CUDA kernels), so
the 2-D resize is two matrix products. It equals ``F.interpolate`` up to float32 rounding (``python_tests``:
within 1e-5 of the table's scale).
"""

from __future__ import annotations

import math
from typing import Any, Tuple, Union

import numpy as np
import torch

__all__ = [
    "POS_RESIZE_MODES",
    "bicubic_matrix",
    "positional_for_grid",
    "neighbourhood_bias",
    "gaussian_neighbourhood_bias",
]

Size = Any  # a grid side: an int, or a traced 0-dim tensor while exporting
CUBIC_A = -0.75  # PyTorch's (and OpenCV's) bicubic coefficient
# How a method resizes the stored positional table to another grid (``TrainingFreeConfig.pos_resize``):
# "size": mmseg's ``resize_pos_embed`` (MaskCLIP): F.interpolate(size=(h, w)), source step g0 / h;
# "dino": ``interpolate_pos_encoding`` of SCLIP / ClearCLIP / NACLIP / SC-CLIP (DINO's): F.interpolate(
#   scale_factor=((h + 0.1) / g0, (w + 0.1) / g0), recompute_scale_factor=False), source step g0 / (h + 0.1).
POS_RESIZE_MODES = ("size", "dino")


def _cubic_weights(t: torch.Tensor):
    """The four cubic-convolution weights of taps ``x0 - 1 .. x0 + 2`` at fraction ``t`` (PyTorch's
    ``get_cubic_upsample_coefficients``)."""
    a = CUBIC_A

    def near(x):  # |x| <= 1
        return ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0

    def far(x):  # 1 < |x| < 2
        return ((a * x - 5.0 * a) * x + 8.0 * a) * x - 4.0 * a

    return far(t + 1.0), near(t), near(1.0 - t), far(2.0 - t)


def bicubic_matrix(out_size: Size, in_size: int, step: Union[float, torch.Tensor], device=None) -> torch.Tensor:
    """``[out_size, in_size]`` float32 weights of a bicubic resize along one axis (``align_corners=False``).

    Output ``o`` samples source coordinate ``s = (o + 0.5) * step - 0.5``: taps ``floor(s) - 1 .. floor(s) + 2``
    clamped to ``[0, in_size - 1]`` with the cubic weights of ``t = s - floor(s)`` (clamped to [0, 1], the tap
    index to ``in_size - 1``), as ``F.interpolate(mode="bicubic")`` does; ``step`` is ``in / out`` for a resize to
    a size, ``1 / scale_factor`` for a resize by a scale factor. ``out_size`` may be a traced size.
    """
    # float arithmetic throughout (indices are small integers, exact in float32): no int64 Clip for TensorRT
    out = torch.arange(out_size, dtype=torch.float32, device=device)
    source = (out + 0.5) * step - 0.5
    first = torch.floor(source)
    t = (source - first).clamp(0.0, 1.0)
    first = first.clamp(max=float(in_size - 1))
    columns = torch.arange(in_size, dtype=torch.float32, device=device)
    matrix = torch.zeros((), dtype=torch.float32, device=device)
    for k, weight in enumerate(_cubic_weights(t)):
        tap = (first + float(k - 1)).clamp(0.0, float(in_size - 1))
        matrix = matrix + weight[:, None] * (tap[:, None] == columns[None, :]).to(torch.float32)
    return matrix


def _source_steps(h: Size, w: Size, g0: int, mode: str):
    if mode == "size":
        return g0 / h, g0 / w
    if mode == "dino":
        return g0 / (h + 0.1), g0 / (w + 0.1)
    raise ValueError(f"pos_resize must be one of {POS_RESIZE_MODES}, got {mode!r}")


def positional_for_grid(pos: torch.Tensor, h: Size, w: Size, mode: str) -> torch.Tensor:
    """The positional table ``[1 + g0*g0, W]`` (CLS row first, a square grid) for a ``h x w`` patch grid:
    ``[1 + h*w, W]``, the CLS row kept.

    As the official code: a grid with as many tokens as the table (``h * w == g0 * g0``) uses the table as stored,
    in row-major order (both mmseg's ``_pos_embeding`` and CLIP's ``x.shape[1] != positional_embedding.shape[0]``
    test the token count, so a 7 x 28 grid reads the 14 x 14 table unresized); any other grid gets the table
    resized bicubically the method's way (``mode``, :data:`POS_RESIZE_MODES`). Both are computed and one is selected
    with ``torch.where``, so a traced graph keeps the rule for every input size.
    """
    n, width = int(pos.shape[0]), int(pos.shape[1])
    g0 = int(round(math.sqrt(n - 1)))
    if g0 * g0 != n - 1:
        raise ValueError(f"positional table with {n - 1} spatial rows is not a square grid")
    spatial = pos[1:].float()  # [g0*g0, W]
    step_y, step_x = _source_steps(h, w, g0, mode)
    rows = bicubic_matrix(h, g0, step_y, pos.device)  # [h, g0]
    cols = bicubic_matrix(w, g0, step_x, pos.device)  # [w, g0]
    resized = torch.matmul(rows, spatial.reshape(g0, g0 * width)).reshape(-1, g0, width)  # [h, g0, W]
    resized = torch.matmul(cols.unsqueeze(0), resized).reshape(-1, width)  # [h*w, W]
    tokens = torch.arange(h * w, dtype=torch.float32, device=pos.device)
    stored = spatial[tokens.clamp(max=float(g0 * g0 - 1)).to(torch.int64)]  # [h*w, W]: the table when h*w == g0*g0
    same_count = (tokens.new_tensor(float(g0 * g0)) == h * w).reshape(1, 1)
    grid = torch.where(same_count, stored, resized).to(pos.dtype)
    return torch.cat([pos[:1], grid], dim=0)


def neighbourhood_bias(
    h: Size, w: Size, std: float, num_prefix_tokens: int = 1, dtype=torch.float32, device=None
) -> torch.Tensor:
    """NACLIP's attention bias ``Omega [P + h*w, P + h*w]``: ``exp(-d^2 / (2 std^2))`` between the 2-D positions of
    a row-major ``h x w`` patch grid (the official ``gaussian_window`` of size ``(2h-1, 2w-1)`` convolved over
    one-hot position maps), 0 on the ``P`` prefix (CLS) rows and columns. ``h``, ``w`` may be traced sizes."""
    rows = torch.arange(h, dtype=torch.float32, device=device)
    cols = torch.arange(w, dtype=torch.float32, device=device)
    ys = rows[:, None].expand(-1, w).reshape(-1)  # row-major positions of the h*w tokens
    xs = cols[None, :].expand(h, -1).reshape(-1)
    d2 = (ys[:, None] - ys[None, :]) ** 2 + (xs[:, None] - xs[None, :]) ** 2
    omega = torch.exp(d2 * (-1.0 / (2.0 * float(std) ** 2)))  # [N, N]
    omega = torch.cat([omega[:, :1].expand(-1, num_prefix_tokens) * 0.0, omega], dim=1)  # zero prefix columns
    omega = torch.cat([omega[:1].expand(num_prefix_tokens, -1) * 0.0, omega], dim=0)  # and rows
    return omega.to(dtype)


def gaussian_neighbourhood_bias(grid: Tuple[int, int], std: float, num_prefix_tokens: int = 1) -> np.ndarray:
    """:func:`neighbourhood_bias` of a ``grid = (h, w)`` as a float32 NumPy array."""
    return neighbourhood_bias(int(grid[0]), int(grid[1]), std, num_prefix_tokens).numpy()
