"""The official sliding-window merge in torch fp64 (SCLIP / SC-CLIP ``forward_slide``): each window's logits resized
to the head size and summed into the scaled image, divided by how many windows cover each pixel. The oracle the
fused softmax ops are held against (python_tests/ops/test_segment_windows_softmax.py, _synonyms.py)."""

from __future__ import annotations

import numpy as np
import pytest


def torch_slide_logits(logits: np.ndarray, windows, head, scaled):
    """``[C, *scaled]`` float64 torch tensor: the windows' logits ``[n, C, h, w]`` merged as ``forward_slide``
    merges them (skips without torch: the runtime-only CI job has none)."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    t = torch.from_numpy(logits.astype(np.float64))
    total = torch.zeros((logits.shape[1],) + tuple(scaled), dtype=torch.float64)
    count = torch.zeros(tuple(scaled), dtype=torch.float64)
    for i, w in enumerate(windows):
        up = F.interpolate(t[i : i + 1], size=head, mode="bilinear", align_corners=False)[0]
        total[:, w.y1 : w.y2, w.x1 : w.x2] += up[:, : w.y2 - w.y1, : w.x2 - w.x1]
        count[w.y1 : w.y2, w.x1 : w.x2] += 1
    return total / count
