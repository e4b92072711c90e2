"""ZegFormer's test-time resize (``zsseg_rt.pipeline.resize``): detectron2's ``ResizeShortestEdge`` size rule and
``PIL.Image.resize(BILINEAR)`` pixels, held against

* hand-computed sizes (rounding half up, the long-side cap, square and thin images, a refused 0-pixel side);
* an independent NumPy transcription of Pillow's resampler (``libImaging/Resample.c``: triangle filter widened by
  the scale when shrinking, coefficients normalised then rounded to 22-bit fixed point, horizontal pass rounded
  to uint8 before the vertical one, as every Pillow up to 12), on many sizes (down- and up-scaling, 1xN and Nx1);
* Pillow itself in one ``resize`` call wherever the installed Pillow also runs the horizontal pass first (all
  the sizes a photo gets; Pillow 13 goes vertical-first when the height shrinks much more than the width,
  python-pillow/Pillow#9549, and there the official Pillow's result is the transcription's).

Torch-free (runs in the runtime-only job too).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from zsseg_rt.pipeline.resize import pil_resize_bilinear, pil_resize_shortest_edge, shortest_edge_shape

PRECISION_BITS = 32 - 8 - 2


def _coefficients(in_size: int, out_size: int):
    """Pillow's ``precompute_coeffs`` (bilinear, support 1) + ``normalize_coeffs_8bpc``: per output index the
    first source index and the fixed-point weights."""
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = 1.0 * filterscale
    rows = []
    for xx in range(out_size):
        center = (xx + 0.5) * scale
        xmin = max(int(center - support + 0.5), 0)
        xmax = min(int(center + support + 0.5), in_size)
        w = np.array([max(0.0, 1.0 - abs((x + xmin - center + 0.5) / filterscale)) for x in range(xmax - xmin)])
        total = w.sum()
        if total != 0.0:
            w = w / total
        fixed = np.where(w < 0, np.trunc(-0.5 + w * (1 << PRECISION_BITS)), np.trunc(0.5 + w * (1 << PRECISION_BITS)))
        rows.append((xmin, fixed.astype(np.int64)))
    return rows


def _pass(image: np.ndarray, out_size: int) -> np.ndarray:
    """One pass along axis 1 of ``[H, W, C]`` uint8: integer accumulation from 1 << 21, shift, clip to uint8."""
    out = np.empty((image.shape[0], out_size, image.shape[2]), dtype=np.uint8)
    for xx, (xmin, k) in enumerate(_coefficients(image.shape[1], out_size)):
        acc = (1 << (PRECISION_BITS - 1)) + np.tensordot(
            image[:, xmin : xmin + len(k)].astype(np.int64), k, axes=([1], [0])
        )
        out[:, xx] = np.clip(acc >> PRECISION_BITS, 0, 255)
    return out


def pillow_bilinear_reference(rgb: np.ndarray, height: int, width: int) -> np.ndarray:
    """The NumPy transcription of ``Image.resize((width, height), BILINEAR)`` for RGB uint8."""
    out = rgb
    if width != rgb.shape[1]:
        out = _pass(out, width)
    if height != rgb.shape[0]:
        out = _pass(out.transpose(1, 0, 2), height).transpose(1, 0, 2)
    return np.ascontiguousarray(out)


def test_output_shape_follows_detectron2():
    assert shortest_edge_shape(375, 500, 512, 2048) == (512, 683)  # 682.67 -> 683
    assert shortest_edge_shape(500, 375, 512, 2048) == (683, 512)
    assert shortest_edge_shape(480, 640, 640, 2560) == (640, 853)  # 853.33
    assert shortest_edge_shape(300, 300, 512, 2048) == (512, 512)  # square: the "else" branch, same result
    assert shortest_edge_shape(100, 1000, 512, 2048) == (205, 2048)  # long side capped: 204.8 -> 205
    assert shortest_edge_shape(3, 2, 64, 128) == (96, 64)
    assert shortest_edge_shape(2, 3, 64, 128) == (64, 96)
    assert shortest_edge_shape(1, 7, 64, 128) == (18, 128)  # 18.29 after the cap
    assert shortest_edge_shape(7, 1, 64, 128) == (128, 18)
    assert shortest_edge_shape(1, 1, 64, 128) == (64, 64)
    assert shortest_edge_shape(10, 7, 7, 100) == (10, 7)  # already at size
    assert shortest_edge_shape(1, 2, 3, 5) == (3, 5)  # 2.5 + 0.5 -> int(3.0)... the cap: 6 > 5 -> (2.5, 5) -> (3, 5)
    with pytest.raises(ValueError, match="0 pixels"):
        shortest_edge_shape(1, 4097, 512, 2048)  # 2048 / 4097 = 0.4999 -> 0
    assert shortest_edge_shape(1, 4095, 512, 2048) == (1, 2048)
    with pytest.raises(ValueError, match="positive"):
        shortest_edge_shape(0, 10, 64, 128)


SIZES = [
    ((90, 140), (64, 100)),  # shrink
    ((37, 53), (64, 92)),  # enlarge
    ((64, 64), (64, 64)),  # unchanged
    ((1, 57), (18, 128)),  # 1xN, enlarged
    ((57, 1), (128, 18)),  # Nx1
    ((1, 300), (1, 128)),  # 1xN, shrunk along N only
    ((300, 2), (128, 1)),
    ((23, 311), (9, 128)),  # shrink much on one axis
    ((5, 3), (107, 64)),  # enlarge much
    ((375, 500), (64, 85)),  # the golden photo's size at the tiny model's short side
]


@pytest.mark.parametrize("src,dst", SIZES)
def test_pixels_are_pillows_and_match_its_transcription(src, dst):
    rng = np.random.default_rng(src[0] * 1000 + src[1])
    rgb = rng.integers(0, 256, (*src, 3), dtype=np.uint8)
    rgb[0, 0] = (0, 255, 0)  # extremes: rounding and clipping at both ends
    got = pil_resize_bilinear(rgb, *dst)
    assert got.shape == (*dst, 3) and got.dtype == np.uint8
    np.testing.assert_array_equal(got, pillow_bilinear_reference(rgb, *dst))
    pillow = np.asarray(Image.fromarray(rgb).resize((dst[1], dst[0]), Image.Resampling.BILINEAR))
    vertical_first = _pass(_pass(rgb.transpose(1, 0, 2), dst[0]).transpose(1, 0, 2), dst[1])
    if not np.array_equal(pillow, vertical_first) or np.array_equal(pillow, got):
        np.testing.assert_array_equal(got, pillow)  # the installed Pillow runs the horizontal pass first here


def test_pillow_13_pass_order_is_not_followed():
    """A tall image whose height shrinks much more than its width: the installed Pillow (13 and later) may run the
    vertical pass first; the official results come from the horizontal-first order, which is what we compute."""
    rgb = np.random.default_rng(300002).integers(0, 256, (300, 2, 3), dtype=np.uint8)
    got = pil_resize_bilinear(rgb, 128, 1)
    np.testing.assert_array_equal(got, pillow_bilinear_reference(rgb, 128, 1))
    vertical_first = _pass(_pass(rgb.transpose(1, 0, 2), 128).transpose(1, 0, 2), 1)
    assert np.count_nonzero(vertical_first != got) > 10  # the two orders really differ here


@pytest.mark.parametrize("src,short,max_size", [((375, 500), 64, 128), ((1, 57), 64, 128), ((480, 7), 16, 40)])
def test_resize_shortest_edge_is_the_size_rule_then_pillow(src, short, max_size):
    rgb = np.random.default_rng(1).integers(0, 256, (*src, 3), dtype=np.uint8)
    out = pil_resize_shortest_edge(rgb, short, max_size)
    h, w = shortest_edge_shape(*src, short, max_size)
    assert out.shape == (h, w, 3)
    np.testing.assert_array_equal(out, pillow_bilinear_reference(rgb, h, w))
    assert math.isclose(min(out.shape[:2]), short, abs_tol=1) or max(out.shape[:2]) == max_size


def test_the_transcription_is_not_torch_antialias():
    """Mutation self-check: the former resize (torch antialiased bilinear, rounded) differs from Pillow's on a
    shrink, so the pixel test above can fail."""
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F

    rgb = np.random.default_rng(7).integers(0, 256, (90, 140, 3), dtype=np.uint8)
    t = torch.from_numpy(rgb).permute(2, 0, 1).float()[None]
    old = F.interpolate(t, size=(64, 100), mode="bilinear", align_corners=False, antialias=True)
    old = old.round().clamp(0, 255)[0].permute(1, 2, 0).numpy().astype(np.uint8)
    assert np.count_nonzero(old != pil_resize_bilinear(rgb, 64, 100)) > 100


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="uint8"):
        pil_resize_bilinear(np.zeros((4, 4, 3), np.float32), 2, 2)
    with pytest.raises(ValueError, match="at least 1x1"):
        pil_resize_bilinear(np.zeros((4, 4, 3), np.uint8), 0, 2)
    with pytest.raises(ValueError, match="0 pixels"):
        pil_resize_shortest_edge(np.zeros((1, 5000, 3), np.uint8), 512, 2048)
