"""Synonyms and the background class on hand-computed cases: a class with several names scores the max over its
names' probabilities (SCLIP / NACLIP / SC-CLIP ``postprocess_result``: softmax over every name, then
``(seg_logits * one_hot(query_idx).T).max(1)``), the area filter and the background threshold act on those class
probabilities, and the Postprocessor applies a vocabulary's name -> class map and background class.

Names of the cases: ``sky, wall`` (class 0, background), ``person, man`` (class 1), ``cat`` (class 2). Logits are
``ln w``, so a pixel's name probabilities are ``w / sum(w)`` exactly (up to fp32 rounding)."""

from __future__ import annotations

import numpy as np
import pytest

from zsseg_rt import pipeline
from zsseg_rt.pipeline import Postprocessor
from zsseg_rt.pipeline.postprocess import softmax_segment, softmax_segment_dense

CLASS_OF = np.array([0, 0, 1, 1, 2], np.int32)  # sky, wall | person, man | cat
NEG = -100.0  # exp(-100) ~ 3.7e-44: a name that adds nothing to a softmax sum of order 1


def _pixels(*weights):
    """Logits ``[1, N, 1, n]`` = ln(w) for each pixel's name weights (NEG for a zero weight)."""
    logits = [[np.log(w) if w > 0 else NEG for w in pixel] for pixel in weights]
    return np.ascontiguousarray(np.array(logits, np.float32).T[None, :, None, :])


# pixel: name weights -> class probabilities (max over names) -> label, score
CASES = [
    ([1, 1, 2, 2, 5], [1 / 11, 2 / 11, 5 / 11], 2),  # cat 5/11 = 0.4545
    ([3, 1, 4, 1, 1], [0.3, 0.4, 0.1], 1),  # person: max(0.4, 0.1)
    ([3, 3, 4, 0, 0], [0.3, 0.4, 0.0], 1),  # a SUM over names would give the background 0.6: the max gives 0.3
    ([1, 1, 1, 1, 1], [0.2, 0.2, 0.2], 0),  # an exact three-way tie: the lowest index
]


@pytest.mark.parametrize("fused", [True, False])
def test_a_class_scores_the_max_over_its_names(fused):
    segment = softmax_segment if fused else softmax_segment_dense
    logits = _pixels(*(w for w, _, _ in CASES))
    labels, scores = segment(logits, (1, len(CASES)), class_of=CLASS_OF)
    assert labels.tolist() == [[[label for _, _, label in CASES]]]
    np.testing.assert_allclose(scores[0, 0], [max(p) for _, p, _ in CASES], rtol=1e-6)
    # the same names as five separate classes: pixel 2 is won by the NAME "person" (index 2), not class 1
    separate, _ = segment(logits, (1, len(CASES)))
    assert separate.tolist() == [[[4, 2, 2, 0]]]
    # and pixel 2 is where a sum over names would disagree with the official max
    w = np.array(CASES[2][0], float)
    assert (w[:2].sum() / w.sum(), w[2:4].sum() / w.sum()) == (0.6, 0.4)


@pytest.mark.parametrize("fused", [True, False])
def test_background_threshold_on_the_class_probabilities(fused):
    """``seg_pred[seg_logits.max(0) < prob_thd] = 0`` after the max over names: 0.45 keeps only the cat pixel
    (5/11 = 0.4545), 0.4 keeps 0.4 (not below), 0.5 keeps nothing."""
    segment = softmax_segment if fused else softmax_segment_dense
    logits = _pixels(*(w for w, _, _ in CASES))
    for threshold, expected in ((0.4, [2, 1, 1, 0]), (0.45, [2, 0, 0, 0]), (0.5, [0, 0, 0, 0])):
        labels, scores = segment(logits, (1, 4), background_threshold=threshold, class_of=CLASS_OF)
        assert labels.tolist() == [[expected]], threshold
        np.testing.assert_allclose(scores[0, 0], [max(p) for _, p, _ in CASES], rtol=1e-6)  # scores unchanged
    # the background class need not be first: pixels under the threshold get background_index
    labels, _ = segment(logits, (1, 4), background_threshold=0.45, background_index=2, class_of=CLASS_OF)
    assert labels.tolist() == [[[2, 2, 2, 2]]]


@pytest.mark.parametrize("fused", [True, False])
def test_area_filter_counts_classes_not_names(fused):
    """Ten pixels: nine won by class 1 through either of its names (``person`` or ``man``), one by ``cat`` (class
    2: probability 0.4 there, person 0.3). Counted per name, ``person`` (5 pixels) and ``man`` (4) would each be
    areas of their own; per class, class 1 has 9 of 10 foreground pixels and class 2 has 1, not above 0.2 * 10:
    class 2 is dropped and its pixel goes to class 1 with 0.3."""
    segment = softmax_segment if fused else softmax_segment_dense
    person, man, cat_pixel = [1, 1, 8, 1, 1], [1, 1, 1, 8, 1], [1, 1, 3, 1, 4]
    logits = _pixels(*([person] * 5 + [man] * 4 + [cat_pixel]))
    plain, plain_scores = segment(logits, (1, 10), class_of=CLASS_OF)
    assert plain.tolist() == [[[1] * 9 + [2]]]
    np.testing.assert_allclose(plain_scores[0, 0, 9], 0.4, rtol=1e-6)
    dropped, dropped_scores = segment(logits, (1, 10), area_threshold=0.2, class_of=CLASS_OF)
    assert dropped.tolist() == [[[1] * 10]]
    np.testing.assert_allclose(dropped_scores[0, 0, 9], 0.3, rtol=1e-6)
    # then prob_thd on what is left: 0.3 < 0.35 -> background
    both, _ = segment(logits, (1, 10), area_threshold=0.2, background_threshold=0.35, class_of=CLASS_OF)
    assert both.tolist() == [[[1] * 9 + [0]]]


def test_postprocessor_applies_a_vocabularys_map_and_background_class():
    """The map and the background class are per vocabulary (the pipeline sets them on its post-processor);
    two windows averaged first, as without synonyms."""
    logits = _pixels(*(w for w, _, _ in CASES))  # [1, 5, 1, 4]
    windows = [pipeline.Window(0, 1, 0, 4)]
    post = Postprocessor(head_size=(1, 4), activation="softmax", background_threshold=0.45)
    plain, _ = post(logits, windows, (1, 4), (1, 4))
    assert plain.tolist() == [[[4, 0, 0, 0]]]  # names as classes: the name "cat" (4) at 0.4545, the rest below 0.45
    mapped = Postprocessor(
        head_size=(1, 4), activation="softmax", background_threshold=0.45, class_of=tuple(CLASS_OF), background_index=1
    )
    labels, _ = mapped(logits, windows, (1, 4), (1, 4))
    assert labels.tolist() == [[[2, 1, 1, 1]]]
    with pytest.raises(ValueError, match="grouped by class"):
        Postprocessor(head_size=(1, 4), activation="softmax", class_of=(0, 2, 2))
    with pytest.raises(ValueError, match="needs softmax"):
        Postprocessor(head_size=(1, 4), activation="sigmoid", class_of=(0, 0, 1))
