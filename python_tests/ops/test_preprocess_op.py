"""preprocess (CPU) against OpenCV + the pipeline's NumPy pre-processing (the Engine's current path), and against
zsseg_rt.ops.reference.preprocess; bad inputs raise clear errors. CUDA cases skip without a device."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from cuda_support import EMULATED, device, requires_cuda, to_host
from hypothesis import given, settings
from hypothesis import strategies as st

from zsseg_rt import ops, pipeline
from zsseg_rt.ops import reference

MEAN, STD = pipeline.preprocess.IMAGENET_MEAN, pipeline.preprocess.IMAGENET_STD


def pipeline_batch(image, color_order, short, crop, stride):
    """What the Engine computes today: to_rgb -> cv2 rescale -> normalise -> windows -> pad (NumPy + OpenCV)."""
    rgb = pipeline.to_rgb_uint8(image, color_order)
    scaled = pipeline.rescale_keep_ratio(rgb, (None, short))
    chw = pipeline.normalize_image(scaled, MEAN, STD)
    windows = pipeline.sliding_windows(chw.shape[1], chw.shape[2], crop, stride)
    crops = [pipeline.pad_to_multiple(chw[:, w.y1 : w.y2, w.x1 : w.x2], 1, (crop, crop)) for w in windows]
    return np.stack(crops), scaled.shape[:2], windows


@settings(max_examples=60, deadline=None)
@given(
    h=st.integers(1, 300),
    w=st.integers(1, 300),
    channels=st.sampled_from([0, 1, 3, 4]),
    order=st.sampled_from(["bgr", "rgb"]),
    short=st.integers(8, 200),
    pad=st.sampled_from([0, 0, 3, 17]),
    seed=st.integers(0, 2**31 - 1),
)
def test_matches_the_opencv_pipeline_bit_for_bit(h, w, channels, order, short, pad, seed):
    rng = np.random.default_rng(seed)
    shape = (h, w) if channels == 0 else (h, w, channels)
    image = rng.integers(0, 256, shape, dtype=np.uint8)
    crop = short + pad  # pad > 0: every window is smaller than the graph input and gets zero padding
    expected, scaled_hw, windows = pipeline_batch(image, order, short, crop, max(1, crop * 5 // 6))
    got = ops.preprocess(image, scaled_hw, windows, crop, MEAN, STD, color_order=order)
    assert got.shape == expected.shape and got.dtype == np.float32
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(got, reference.preprocess(image, scaled_hw, windows, crop, MEAN, STD, order))


def test_reference_resize_equals_opencv_on_many_sizes():
    rng = np.random.default_rng(0)
    for _ in range(40):
        h, w = rng.integers(1, 400, 2)
        dh, dw = rng.integers(1, 700, 2)
        image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        expected = cv2.resize(image, (int(dw), int(dh)), interpolation=cv2.INTER_LINEAR)
        np.testing.assert_array_equal(reference.resize_u8_linear(image, int(dh), int(dw)), expected)


def test_camera_frame_gives_two_padded_windows():
    image = np.random.default_rng(1).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    expected, scaled_hw, windows = pipeline_batch(image, "bgr", 512, 512, 426)
    assert scaled_hw == (512, 683) and len(windows) == 2
    out = np.full((2, 3, 512, 512), np.nan, dtype=np.float32)
    result = ops.preprocess(image, scaled_hw, windows, 512, MEAN, STD, out=out)
    assert result is out
    np.testing.assert_array_equal(out, expected)


def test_many_windows_cross_the_launch_chunk():
    image = np.random.default_rng(2).integers(0, 256, (8, 300, 3), dtype=np.uint8)
    expected, scaled_hw, windows = pipeline_batch(image, "rgb", 16, 16, 4)
    assert len(windows) > 32
    np.testing.assert_array_equal(ops.preprocess(image, scaled_hw, windows, 16, MEAN, STD, "rgb"), expected)


def test_a_one_level_change_is_seen():  # the comparison can fail: one grey level moves the output by 1/std
    image = np.full((20, 30, 3), 100, dtype=np.uint8)
    base = ops.preprocess(image, (20, 30), [(0, 20, 0, 30)], 32, MEAN, STD)
    image[5, 7, 0] += 1  # B of pixel (5, 7) -> output channel 2
    moved = ops.preprocess(image, (20, 30), [(0, 20, 0, 30)], 32, MEAN, STD)
    diff = np.argwhere(moved != base)
    assert diff.tolist() == [[0, 2, 5, 7]]


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(image=np.zeros((4, 4, 3), np.float32)), TypeError, "uint8"),
        (dict(image=np.zeros((4, 4, 2), np.uint8)), ValueError, "C in"),
        (dict(image=np.zeros((4, 4, 3, 1), np.uint8)), ValueError, "shape"),
        (dict(windows=[]), ValueError, "non-empty"),
        (dict(windows=[(0, 5, 0, 4)]), ValueError, "inside the rescaled image"),
        (dict(windows=[(0, 4, 0, 4, 1)]), ValueError, "4 ints"),
        (dict(windows=[(0, 4, 0, 4.0)]), TypeError, "int"),
        (dict(crop=2), ValueError, "at most 2"),
        (dict(crop=0), ValueError, "crop"),
        (dict(scaled_size=(0, 4)), ValueError, "scaled_size"),
        (dict(std=(1.0, 0.0, 1.0)), ValueError, "std"),
        (dict(mean=(1.0, float("nan"), 1.0)), ValueError, "mean"),
        (dict(color_order="yuv"), ValueError, "color_order"),
        (dict(dtype="float16"), TypeError, "CUDA only"),
        (dict(dtype="int8"), ValueError, "dtype"),
        (dict(out=np.zeros((1, 3, 4, 5), np.float32)), ValueError, "out"),
        (dict(out=np.zeros((1, 3, 4, 4), np.float64)), TypeError, "out"),
        (dict(stream=1), ValueError, "stream"),
    ],
)
def test_bad_inputs(kwargs, error, match):
    args = dict(
        image=np.zeros((4, 4, 3), np.uint8), scaled_size=(4, 4), windows=[(0, 4, 0, 4)], crop=4, mean=MEAN, std=STD
    )
    args.update(kwargs)
    with pytest.raises(error, match=match):
        ops.preprocess(**args)


def test_non_contiguous_image_is_refused():
    image = np.zeros((4, 8, 3), np.uint8)[:, ::2]
    with pytest.raises(ValueError, match="contiguous"):
        ops.preprocess(image, (4, 4), [(0, 4, 0, 4)], 4, MEAN, STD)


@pytest.mark.cuda
@requires_cuda
@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_cuda_matches_cpu(dtype):
    # torch-free (cuda_support.device), so it also runs on the emulated CUDA runtime in CI; a smaller photo there
    # (the emulation runs each CUDA thread on a host thread): the same code paths, borders and two windows
    image = np.random.default_rng(3).integers(0, 256, (375, 500, 3), dtype=np.uint8)
    scale, crop, stride = (512, 512, 426) if not EMULATED else (64, 64, 53)
    if EMULATED:
        image = image[:47, :63].copy()
    expected, scaled_hw, windows = pipeline_batch(image, "bgr", scale, crop, stride)
    assert len(windows) == 2
    got = ops.preprocess(device(image), scaled_hw, windows, crop, MEAN, STD, dtype=dtype)
    got = to_host(got).astype(np.float32)
    if dtype == "float32":
        np.testing.assert_array_equal(got, expected)
    else:  # one fp16 rounding of values within about +-2.7: half an ulp at 2 is 2^-10
        np.testing.assert_allclose(got, expected, rtol=0, atol=2.0**-10)
