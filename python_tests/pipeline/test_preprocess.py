import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zsseg_rt import pipeline
from zsseg_rt.pipeline.preprocess import rescaled_size


def test_rescaled_size_matches_mmcv_formula():
    # mmcv.imrescale(scale=(2048, 512)): factor = min(2048 / long, 512 / short); size = int(x * factor + 0.5)
    scale = (2048, 512)
    assert rescaled_size(375, 500, scale) == (512, 683)  # VOC landscape photo: short side -> 512
    assert rescaled_size(500, 375, scale) == (683, 512)
    assert rescaled_size(512, 512, scale) == (512, 512)
    assert rescaled_size(100, 1000, scale) == (205, 2048)  # long side bounded by 2048
    assert rescaled_size(1024, 1536, scale) == (512, 768)  # downscaling


def test_official_zegclip_min_size_resize_has_no_long_side_cap():
    # mmseg 0.x Resize(keep_ratio=True, min_size=512): short side exactly 512, long side unbounded
    assert rescaled_size(300, 1500) == (512, 2560)
    assert rescaled_size(1500, 300, (None, 512)) == (2560, 512)
    assert rescaled_size(375, 500) == (512, 683)


def test_extreme_aspect_ratios_are_clamped_or_refused_clearly():
    assert rescaled_size(1, 10000, (2048, 512)) == (1, 2048)  # capped long side: the short side stays >= 1 px
    with pytest.raises(ValueError, match=r"1x10000 would be rescaled to 512x5120000.*aspect ratio is too extreme"):
        rescaled_size(1, 10000, (None, 512))  # uncapped (official min_size rule): 2.6 G pixels refused


def test_sliding_windows_match_mmseg_slide_inference():
    # 512 x 683 (a rescaled VOC photo) with crop 512 / stride 426: two windows, the last clamped to the edge.
    assert pipeline.sliding_windows(512, 683, 512, 426) == [(0, 512, 0, 512), (0, 512, 171, 683)]
    assert pipeline.sliding_windows(512, 512, 512, 426) == [(0, 512, 0, 512)]
    assert pipeline.sliding_windows(300, 200, 512, 426) == [(0, 300, 0, 200)]  # smaller than one crop


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 1500), st.integers(1, 1500), st.integers(16, 600), st.integers(1, 600))
def test_sliding_windows_cover_the_image(h, w, crop, stride):
    """Every window inside the image and crop-sized (or the image's size), and every pixel covered: the windows are
    the grid of their row spans by their column spans (each pair once), so a pixel is covered exactly when its row
    is covered by a row span and its column by a column span (checked on the two axes, not on h x w pixels per
    window: stride 1 on a 1500 px image is ~10^6 windows)."""
    stride = min(stride, crop)
    wins = pipeline.sliding_windows(h, w, crop, stride)
    for y1, y2, x1, x2 in wins:
        assert 0 <= y1 < y2 <= h and 0 <= x1 < x2 <= w
        assert y2 - y1 == min(crop, h) and x2 - x1 == min(crop, w)
    rows = sorted({(y1, y2) for y1, y2, _, _ in wins})
    cols = sorted({(x1, x2) for _, _, x1, x2 in wins})
    assert len(wins) == len(rows) * len(cols) == len(set(wins))
    assert set(wins) == {(y1, y2, x1, x2) for y1, y2 in rows for x1, x2 in cols}
    for spans, size in ((rows, h), (cols, w)):
        cover = np.zeros(size + 1, dtype=np.int64)
        for start, end in spans:
            cover[start] += 1
            cover[end] -= 1
        assert np.cumsum(cover)[:size].min() >= 1


def test_normalize_uses_imagenet_stats_and_chw():
    rgb = np.zeros((2, 3, 3), dtype=np.uint8)
    rgb[..., 0] = 255
    out = pipeline.normalize_image(rgb)
    assert out.shape == (3, 2, 3) and out.dtype == np.float32
    np.testing.assert_allclose(out[0], (255 - 123.675) / 58.395, rtol=1e-6)
    np.testing.assert_allclose(out[2], (0 - 103.53) / 57.375, rtol=1e-6)


def test_to_rgb_converts_bgr_gray_and_rgba():
    bgr = np.zeros((4, 5, 3), dtype=np.uint8)
    bgr[..., 0] = 7  # blue in BGR
    assert pipeline.to_rgb_uint8(bgr, "bgr")[0, 0].tolist() == [0, 0, 7]
    assert pipeline.to_rgb_uint8(bgr, "rgb")[0, 0].tolist() == [7, 0, 0]
    gray = np.full((4, 5), 9, dtype=np.uint8)
    assert pipeline.to_rgb_uint8(gray).shape == (4, 5, 3)
    rgba = np.zeros((4, 5, 4), dtype=np.uint8)
    assert pipeline.to_rgb_uint8(rgba, "rgb").shape == (4, 5, 3)


@pytest.mark.parametrize(
    "image, error, match",
    [
        (np.zeros((4, 5, 3), dtype=np.float32), TypeError, "dtype uint8.*float32"),
        (np.zeros((0, 5, 3), dtype=np.uint8), ValueError, "empty"),
        (np.zeros((4, 5, 2), dtype=np.uint8), ValueError, "1, 3 or 4 channels, got 2"),
        (np.zeros((2, 4, 5, 3), dtype=np.uint8), ValueError, r"\[H, W, 3\].*\[2, 4, 5, 3\]"),
        ([[1, 2]], TypeError, "numpy.ndarray.*list"),
    ],
)
def test_to_rgb_rejects_bad_images(image, error, match):
    with pytest.raises(error, match=match):
        pipeline.to_rgb_uint8(image)


def test_pad_to_multiple_keeps_valid_region():
    chw = np.ones((3, 17, 30), dtype=np.float32)
    out = pipeline.pad_to_multiple(chw, 16, (32, 32))
    assert out.shape == (3, 32, 32)
    assert out[:, :17, :30].min() == 1 and out[:, 17:].max() == 0 and out[:, :, 30:].max() == 0
