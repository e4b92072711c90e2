"""The ``warps`` candidate of CUDA ``segment_windows``' sigmoid path (csrc/cuda/segment_windows_warps.cu, issue 78
item 5): the CPU op's decisions and scores (the choice's check: scores within 2e-6, NaN at the same pixels, >= 99.9 %
of the labels equal) on geometries beyond the photo case the other candidates' test uses: one window, a 2x2 grid,
three windows over one column (the IEEE division), odd sizes, an output larger than the rescaled image and one much
smaller (narrow tiles), class counts that leave warps idle or chunks short, a class bias, fp16, NaN / infinite /
huge logits; and that the kernel really ran there (``warp_tiles``, counted by the emulated build), or, where a
footprint meets more than 4 windows, that the launcher ran the tiled default instead (the same results).
On the emulated build (CI) and on a GPU the same test runs (the counter is zero on a GPU: checked only emulated)."""

from __future__ import annotations

import numpy as np
import pytest
from cuda_support import EMULATED, cuda_testing, device, requires_cuda, to_host

from zsseg_rt import ops, pipeline

SCORE_TOL, LABELS_MIN = 2e-6, 0.999

# name: (grid (logit rows, cols), head, scaled, out, stride) with windows from pipeline.sliding_windows
GEOMETRIES = {
    "photo_1_8": ((4, 4), (64, 64), (64, 85), (47, 63), 43),  # 2 side by side (the Engine's at 1/8)
    "one_window": ((3, 5), (48, 48), (41, 37), (29, 23), 32),  # odd sizes, the window cut to the image
    "grid_2x2": ((4, 4), (48, 48), (75, 70), (53, 49), 32),  # 2x2 windows: up to 4 over a pixel
    "three_over_a_column": ((3, 3), (48, 48), (48, 80), (31, 57), 16),  # 3 windows over x in [32, 48): a division
    "upsampled_output": ((4, 4), (32, 32), (40, 52), (95, 121), 21),  # output larger than the rescaled image
    "downsampled_output": ((5, 5), (80, 80), (80, 150), (13, 23), 70),  # ~6.3x smaller: 4-column tiles
}


def _windows(scaled, head, stride):
    return [tuple(int(v) for v in w) for w in pipeline.sliding_windows(scaled[0], scaled[1], head[0], stride)]


def _logits(windows: int, classes: int, grid, rng: np.random.Generator, wild: bool) -> np.ndarray:
    logits = (rng.standard_normal((windows, classes, *grid)) * 3).astype(np.float32)
    if wild:  # the generic arithmetic's inputs: NaN, +-inf, |x| > 1e30, below -60
        logits[0, 1, 0, 0] = np.nan
        logits[-1, 2, grid[0] - 1, grid[1] - 1] = np.inf
        logits[0, 0, grid[0] // 2, :] = -np.inf
        logits[-1, classes - 1, 0, :] = 1e35
        logits[0, classes // 2, :, 0] = -80.0
    return logits


def check_against_cpu(name, logits, windows, head, scaled, out, bias):
    """The choice's check of one kernel against the CPU op; returns the largest score difference (NaN excluded)."""
    want_labels, want_scores = ops.segment_windows(logits.astype(np.float32), windows, head, scaled, out,
                                                   class_bias=bias)  # fmt: skip
    d_bias = None if bias is None else device(bias)
    labels, scores = (
        to_host(a) for a in ops.segment_windows(device(logits), windows, head, scaled, out, class_bias=d_bias)
    )
    nan = np.isnan(want_scores)
    assert np.array_equal(np.isnan(scores), nan), f"{name}: NaN at other pixels"
    diff = float(np.abs(scores[~nan] - want_scores[~nan]).max()) if (~nan).any() else 0.0
    assert diff <= SCORE_TOL, f"{name}: scores differ by {diff:.3g}"
    agree = float((labels == want_labels).mean())
    assert agree >= LABELS_MIN, f"{name}: {agree:.4f} of the labels equal the CPU's"
    return diff


@pytest.fixture
def warps():
    testing = cuda_testing()
    before = testing.segment_windows_variant("warps")
    testing.segment_windows_counters(True)
    yield testing
    testing.segment_windows_variant(before)


@requires_cuda
@pytest.mark.cuda
@pytest.mark.parametrize("geometry", list(GEOMETRIES))
@pytest.mark.parametrize("classes", [3, 37])
def test_warps_gives_the_cpu_results(warps, geometry, classes):
    grid, head, scaled, out, stride = GEOMETRIES[geometry]
    windows = _windows(scaled, head, stride)
    rng = np.random.default_rng(78 + classes)
    logits = _logits(len(windows), classes, grid, rng, wild=False)
    bias = np.where(np.arange(classes) % 3 == 0, 0.1, 0.0).astype(np.float32)
    check_against_cpu(geometry, logits, windows, head, scaled, out, bias)
    if EMULATED:
        assert warps.segment_windows_counters(True)["warp_tiles"] > 0, "the warps kernel ran"


@requires_cuda
@pytest.mark.cuda
@pytest.mark.parametrize("geometry", ["photo_1_8", "grid_2x2", "three_over_a_column"])
@pytest.mark.parametrize("half", [False, True], ids=["fp32", "fp16"])
def test_warps_with_nan_infinite_and_huge_logits(warps, geometry, half):
    """NaN wins its pixels (torch's argmax) at the same pixels as the CPU op's; +-inf, 1e35 and -80 go through the
    same sigmoid (no tame range here: the kernel has one arithmetic)."""
    grid, head, scaled, out, stride = GEOMETRIES[geometry]
    windows = _windows(scaled, head, stride)
    classes = 9
    logits = _logits(len(windows), classes, grid, np.random.default_rng(5), wild=True)
    if half:
        logits[np.abs(logits) > 6e4] = np.sign(logits[np.abs(logits) > 6e4]) * np.inf  # fp16's range
        logits = logits.astype(np.float16)
    want = ops.segment_windows(logits.astype(np.float32), windows, head, scaled, out)[1]
    assert np.isnan(want).any() and not np.isnan(want).all(), "the case has NaN pixels and others"
    check_against_cpu(geometry, logits, windows, head, scaled, out, None)
    if EMULATED:
        assert warps.segment_windows_counters(True)["warp_tiles"] > 0


@requires_cuda
@pytest.mark.cuda
def test_more_than_four_windows_per_footprint_run_the_tiled_default(warps):
    """A stride of 8 over 32-pixel windows on 48x56 puts up to 12 windows over a pixel: the warps kernel keeps 4 per
    tile, so the launcher runs the tiled default (the same results; the counter says which ran). Control: one row of
    windows at a stride of 16 (3 over a column) runs the warps kernel."""
    grid, head, out = (2, 2), (32, 32), (37, 41)
    for stride, scaled, ran in ((8, (48, 56), False), (16, (32, 56), True)):
        windows = _windows(scaled, head, stride)
        logits = _logits(len(windows), 5, grid, np.random.default_rng(stride), wild=False)
        check_against_cpu(f"stride {stride}", logits, windows, head, scaled, out, None)
        if EMULATED:
            assert (warps.segment_windows_counters(True)["warp_tiles"] > 0) == ran, stride


@requires_cuda
@pytest.mark.cuda
def test_warps_splits_classes_into_ordered_ranges(warps):
    """Ties across the warps' class ranges go to the lower class (torch): every class the same logits, so every
    pixel ties across all 40 classes (8 ranges of 5) and the label must be 0; then class 33 alone raised wins."""
    grid, head, scaled, out, stride = GEOMETRIES["photo_1_8"]
    windows = _windows(scaled, head, stride)
    base = (np.random.default_rng(1).standard_normal((len(windows), 1, *grid)) * 3).astype(np.float32)
    logits = np.repeat(base, 40, axis=1)
    labels = to_host(ops.segment_windows(device(logits), windows, head, scaled, out)[0])
    assert (labels == 0).all()
    logits[:, 33] += 0.5
    labels = to_host(ops.segment_windows(device(logits), windows, head, scaled, out)[0])
    assert (labels == 33).all()
