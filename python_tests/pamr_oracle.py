"""Test oracle shared by the PAMR tests: PAMR's reference implementation (visinf/1-stage-wseg @d905fca
``models/mods/pamr.py``, vendored unchanged by NACLIP and SC-CLIP as ``pamr.py``) transcribed independently in
torch. Callers skip without torch (``pytest.importorskip("torch")`` before calling)."""

from __future__ import annotations

import numpy as np

__all__ = ["torch_pamr"]


def torch_pamr(mask: np.ndarray, image: np.ndarray, iterations: int, dilations) -> np.ndarray:
    """Test oracle: PAMR as the reference implementation computes it, transcribed independently in torch fp32.

    Shift kernels as 3x3 convolutions on the replicate-padded input, one per dilation: the affinity kernel has +1 at
    the centre and -1 at each of the 8 outer cells (|.| taken), the copy kernel +1 at an outer cell, the std kernel
    +1 at each of the 9 cells; the std is over all 9 * len(dilations) values (unbiased); the affinity divided by
    (1e-8 + 0.1 std), averaged over image channels, softmaxed over the 8 * len(dilations) neighbours; the mask is
    first resized to the image (bilinear, align_corners=True), then refined ``iterations`` times.
    """
    import torch

    F = torch.nn.functional
    outer = [(i, j) for i in range(3) for j in range(3) if (i, j) != (1, 1)]
    aff_kernel = torch.zeros(8, 1, 3, 3)
    copy_kernel = torch.zeros(8, 1, 3, 3)
    for n, (i, j) in enumerate(outer):
        aff_kernel[n, 0, 1, 1] = 1
        aff_kernel[n, 0, i, j] = -1
        copy_kernel[n, 0, i, j] = 1
    std_kernel = torch.zeros(9, 1, 3, 3)
    for n in range(9):
        std_kernel[n, 0, n // 3, n % 3] = 1

    def local(x, kernel):  # [B, K, H, W] -> [B, K, P, H, W]
        b, k, h, w = x.shape
        flat = x.reshape(b * k, 1, h, w)
        parts = [F.conv2d(F.pad(flat, [d] * 4, mode="replicate"), kernel, dilation=d) for d in dilations]
        return torch.cat(parts, 1).reshape(b, k, -1, h, w)

    x = torch.from_numpy(image).float()
    m = torch.from_numpy(mask).float()
    m = F.interpolate(m, size=x.shape[-2:], mode="bilinear", align_corners=True)
    x_std = local(x, std_kernel).std(2, keepdim=True)
    aff = -local(x, aff_kernel).abs() / (1e-8 + 0.1 * x_std)
    aff = F.softmax(aff.mean(1, keepdim=True), 2)
    for _ in range(iterations):
        m = (local(m, copy_kernel) * aff).sum(2)
    return m.numpy()
