"""The training-free softmax post-processing rules on hand-computed cases (background threshold ``prob_thd`` and the
area filter ``area_thd``, in SC-CLIP's / NACLIP's ``postprocess_result`` order) and its PAMR path (NACLIP's
``predict`` / SC-CLIP's ``forward_slide`` order) against a torch transcription."""

from __future__ import annotations

import numpy as np
import pytest

from zsseg_rt import pipeline
from zsseg_rt.pipeline import Postprocessor
from zsseg_rt.pipeline.postprocess import softmax_segment, softmax_segment_dense

NEG = -100.0  # exp(-100) ~ 3.7e-44: a class that never wins and adds nothing to a softmax sum of order 1


def _pixels(*rows):
    """Logits ``[1, C, 1, n]`` from per-pixel logit lists (one output row of n pixels, no resize)."""
    return np.ascontiguousarray(np.array(rows, np.float32).T[None, :, None, :])


@pytest.mark.parametrize("fused", [True, False])
def test_background_threshold_is_strictly_below_the_winning_probability(fused):
    """SC-CLIP / NACLIP: ``seg_pred[seg_logits.max(0) < prob_thd] = 0``. Pixel 0: classes 1 and 2 tie at exactly 0.5
    (the lower index wins); pixel 1: four equal classes, 0.25 each (class 0 wins the tie); pixel 2: class 3 at
    exactly 1/(1 + 3 e^-100) = 1 in fp32."""
    segment = softmax_segment if fused else softmax_segment_dense
    logits = _pixels([NEG, 0, 0, NEG], [0, 0, 0, 0], [NEG, NEG, NEG, 0])
    labels, scores = segment(logits, (1, 3))
    assert labels.tolist() == [[[1, 0, 3]]] and scores.tolist() == [[[0.5, 0.25, 1.0]]]
    above_half = float(np.nextafter(np.float32(0.5), np.float32(1.0)))  # the next float32 after 0.5
    for threshold, expected in ((0.25, [1, 0, 3]), (0.5, [1, 0, 3]), (above_half, [0, 0, 3])):
        got, got_scores = segment(logits, (1, 3), background_threshold=float(threshold))
        assert got.tolist() == [[expected]], threshold
        np.testing.assert_array_equal(got_scores, scores)  # the threshold changes labels, never scores
    # 1.0 is not above a probability of exactly 1: pixel 2 keeps class 3, the 0.5 tie and the 0.25 pixel fall back
    assert segment(logits, (1, 3), background_threshold=1.0)[0].tolist() == [[[0, 0, 3]]]


@pytest.mark.parametrize("fused", [True, False])
def test_area_filter_then_background_threshold(fused):
    """SC-CLIP's ``area_thd``: a class c >= 1 is kept when its argmax area is ABOVE ``area_thd`` times the argmax
    area of all classes >= 1 (background pixels do not count); a dropped class's probabilities become 0, then the
    argmax and ``prob_thd`` act on what is left. 12 pixels: 2 background, 7 of class 1, 1 of class 2 and 2 of
    class 3 (foreground area 10). At the class-2 pixel, class 2 has probability 0.75 and class 3 0.25 (logits 0 and
    -ln 3)."""
    segment = softmax_segment if fused else softmax_segment_dense
    third = float(-np.log(np.float32(3.0)))
    rows = [[0, NEG, NEG, NEG]] * 2 + [[NEG, 0, NEG, NEG]] * 7 + [[NEG, NEG, 0, third]] + [[NEG, NEG, NEG, 0]] * 2
    logits = _pixels(*rows)
    plain, plain_scores = segment(logits, (1, 12))
    assert plain.tolist() == [[[0, 0] + [1] * 7 + [2, 3, 3]]]
    np.testing.assert_allclose(plain_scores[0, 0, 9], 0.75, rtol=1e-6)
    # class 2: 1 pixel is not above 0.1 * 10 -> dropped, its pixel goes to class 3 (2 > 1: kept) with 0.25
    dropped, dropped_scores = segment(logits, (1, 12), area_threshold=0.1)
    assert dropped.tolist() == [[[0, 0] + [1] * 7 + [3, 3, 3]]]
    np.testing.assert_allclose(dropped_scores[0, 0, 9], 0.25, rtol=1e-6)
    np.testing.assert_array_equal(np.delete(dropped_scores, 9), np.delete(plain_scores, 9))
    # 1 > 0.09 * 10: kept
    assert segment(logits, (1, 12), area_threshold=0.09)[0].tolist() == plain.tolist()
    # 0.2: class 3 (2 pixels, not above 2) is dropped too: the class-2 pixel has nothing left but ~0 -> class 0
    assert segment(logits, (1, 12), area_threshold=0.2)[0].tolist() == [[[0, 0] + [1] * 7 + [0, 0, 0]]]
    # the threshold applies to the probability left after the filter: 0.25 < 0.3 -> background; 0.75 would not be
    both = segment(logits, (1, 12), area_threshold=0.1, background_threshold=0.3)[0]
    assert both.tolist() == [[[0, 0] + [1] * 7 + [0, 3, 3]]]
    assert segment(logits, (1, 12), background_threshold=0.3)[0].tolist() == plain.tolist()
    # class 0 (background) is never dropped, however small
    assert segment(logits, (1, 12), area_threshold=0.99)[0][0, 0, :2].tolist() == [0, 0]


def test_postprocessor_applies_the_rules_after_the_window_average():
    """Two windows overlapping on the middle column: the logits are averaged there first (not the probabilities),
    then softmax and threshold. Window A says class 1 (logit 2 vs 0), window B class 2 (0 vs 2): their average
    is a tie (1, 1) at exactly 0.5."""
    post = Postprocessor(head_size=(1, 2), activation="softmax", background_threshold=0.6)
    a = np.array([[NEG, NEG], [2.0, 2.0], [0.0, 0.0]], np.float32)[None, :, None, :]  # [1, 3, 1, 2]
    b = np.array([[NEG, NEG], [0.0, 0.0], [2.0, 2.0]], np.float32)[None, :, None, :]
    windows = [pipeline.Window(0, 1, 0, 2), pipeline.Window(0, 1, 1, 3)]
    labels, scores = post(np.concatenate([a, b]), windows, (1, 3), (1, 3))
    p = 1.0 / (1.0 + np.exp(-2.0))  # 0.8808 for the winner of a single window
    np.testing.assert_allclose(scores[0, 0], [p, 0.5, p], rtol=1e-6)
    assert labels.tolist() == [[[1, 0, 2]]]  # the middle tie (0.5 < 0.6) falls back to background


# ---------------------------------------------------------------------------------------------------- PAMR
def torch_naclip_order(logits, windows, head, scaled_rgb, out_size, mean, std, iterations, dilations, bg=None):
    """NACLIP's ``forward_slide`` + ``predict`` (+ ``postprocess_result``) in torch: window logits resized to the head
    size and cut, averaged, resized to the image, PAMR (guide: the normalised input resized to the image), softmax,
    argmax, ``prob_thd``. ``head=None``: the fast mode's single resize of one window's logits to the image."""
    torch = pytest.importorskip("torch")
    from pamr_oracle import torch_pamr

    F = torch.nn.functional
    t = torch.from_numpy(logits)
    scaled = scaled_rgb.shape[:2]
    total = torch.zeros((logits.shape[1],) + tuple(scaled))
    count = torch.zeros(tuple(scaled))
    for i, w in enumerate(windows):
        up = F.interpolate(t[i : i + 1], size=head or scaled, mode="bilinear", align_corners=False)[0]
        total[:, w.y1 : w.y2, w.x1 : w.x2] += up[:, : w.y2 - w.y1, : w.x2 - w.x1]
        count[w.y1 : w.y2, w.x1 : w.x2] += 1
    seg = F.interpolate((total / count)[None], size=out_size, mode="bilinear", align_corners=False)
    if head is None:
        seg = F.interpolate(t, size=out_size, mode="bilinear", align_corners=False)
    img = torch.from_numpy(pipeline.normalize_image(scaled_rgb, mean, std))[None]
    img = F.interpolate(img, size=out_size, mode="bilinear", align_corners=False)
    seg = torch.from_numpy(torch_pamr(seg.numpy(), img.numpy(), iterations, dilations))
    probs = seg[0].softmax(0)
    labels = probs.argmax(0)
    if bg is not None:
        labels[probs.max(0).values < bg] = 0
    return labels.numpy(), probs.max(0).values.numpy()


@pytest.mark.parametrize("mode", ["exact", "fast"])
def test_pamr_path_matches_the_naclip_order(mode):
    rng = np.random.default_rng(1)
    mean, std = (122.771, 116.746, 104.094), (68.501, 66.632, 70.323)
    original = (45, 61) if mode == "exact" else (37, 29)
    scaled_rgb = rng.integers(0, 256, (32, 43, 3) if mode == "exact" else (32, 32, 3), dtype=np.uint8)
    scaled_rgb[:, :20] //= 4  # a darker region: an edge for PAMR to respect
    windows = pipeline.sliding_windows(scaled_rgb.shape[0], scaled_rgb.shape[1], 32, 16)
    logits = (rng.normal(0, 3.0, (len(windows), 5, 4, 4))).astype(np.float32)
    post = Postprocessor(
        head_size=(32, 32),
        activation="softmax",
        mode=mode,
        background_threshold=0.4,
        pamr_iterations=10,
        pamr_dilations=(8, 16),
        image_mean=mean,
        image_std=std,
    )
    labels, scores = post(logits, windows, scaled_rgb.shape[:2], original, image=scaled_rgb)
    head = (32, 32) if mode == "exact" else None  # fast: one window covering the input, logits straight to the output
    assert post.is_fast(windows) == (mode == "fast")
    want_labels, want_scores = torch_naclip_order(
        logits, windows, head, scaled_rgb, original, mean, std, 10, (8, 16), bg=0.4
    )
    assert (labels[0] == want_labels).mean() >= 0.999
    # probabilities within 1e-4: PAMR's 10 fp32 steps over logits up to ~10 differ by up to ~1e-5 x 10 between two
    # summation orders (each step is a convex combination: errors add, never grow), and dp <= 0.5 d(logit)
    np.testing.assert_allclose(scores[0], want_scores, rtol=0, atol=1e-4)
    plain = Postprocessor(head_size=(32, 32), activation="softmax", mode=mode, background_threshold=0.4)
    assert not np.array_equal(plain(logits, windows, scaled_rgb.shape[:2], original)[1], scores)  # PAMR acted


def test_pamr_needs_its_guide_image_and_softmax():
    post = Postprocessor(
        head_size=(8, 8), activation="softmax", pamr_iterations=2, image_mean=(0, 0, 0), image_std=(1, 1, 1)
    )
    logits = np.zeros((1, 2, 2, 2), np.float32)
    windows = [pipeline.Window(0, 8, 0, 8)]
    with pytest.raises(ValueError, match=r"PAMR needs the rescaled \[H', W', 3\] uint8 RGB image"):
        post(logits, windows, (8, 8), (8, 8))
    with pytest.raises(ValueError, match="PAMR needs the rescaled"):
        post(logits, windows, (8, 8), (8, 8), image=np.zeros((9, 8, 3), np.uint8))
    with pytest.raises(ValueError, match="PAMR refines softmax post-processing only"):
        Postprocessor(
            head_size=(8, 8), activation="sigmoid", pamr_iterations=2, image_mean=(0,) * 3, image_std=(1,) * 3
        )
    with pytest.raises(ValueError, match="image_mean and image_std"):
        Postprocessor(head_size=(8, 8), activation="softmax", pamr_iterations=2)
