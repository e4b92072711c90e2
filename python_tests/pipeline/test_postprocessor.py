"""The one Postprocessor: window loop, exact/fast rule, sigmoid/softmax, built from bundle meta or a config."""

import types

import numpy as np
import pytest

from zsseg_rt import pipeline
from zsseg_rt.pipeline import postprocess as post
from zsseg_rt.pipeline.postprocessor import Postprocessor

HEAD = (16, 16)


def _case(seed=0, classes=5):
    rng = np.random.default_rng(seed)
    windows = pipeline.sliding_windows(20, 28, 16, 12)  # overlapping 16x16 windows on a 20x28 image
    logits = rng.normal(size=(len(windows), classes, 4, 4)).astype(np.float32) * 3
    bias = np.zeros(classes, np.float32)
    bias[:2] = 0.1
    return logits, windows, bias


def _meta(image_size=16, **postprocess):
    return types.SimpleNamespace(image_size=image_size, postprocess=dict({"activation": "sigmoid"}, **postprocess))


def test_exact_sigmoid_is_the_official_composition():
    logits, windows, bias = _case()
    labels, scores = Postprocessor.from_meta(_meta())(logits, windows, (20, 28), (41, 57), bias)
    parts = []
    for i, win in enumerate(windows):
        full = post.calibrated_window_scores(logits[i : i + 1], HEAD, HEAD, bias)
        parts.append(full[:, :, : win.y2 - win.y1, : win.x2 - win.x1])
    ref_labels, ref_scores = post.finalize_scores(post.merge_windows(parts, windows, (20, 28)), (41, 57))
    assert labels.shape == (1, 41, 57) and labels.dtype == np.int32 and scores.dtype == np.float32
    np.testing.assert_array_equal(labels, ref_labels)
    np.testing.assert_array_equal(scores, ref_scores)


def test_fitted_windows_resize_scores_to_the_window():
    logits, _, bias = _case(1)
    windows = [pipeline.Window(0, 12, 0, 12), pipeline.Window(0, 12, 4, 16)]
    pp = Postprocessor.from_config(types.SimpleNamespace(image_size=16))
    assert pp.window_logits == "fitted"
    labels, scores = pp(logits[:2], windows, (12, 16), (12, 16), bias)
    parts = [post.calibrated_window_scores(logits[i : i + 1], HEAD, (12, 12), bias) for i in range(2)]
    ref = post.finalize_scores(post.merge_windows(parts, windows, (12, 16)), (12, 16))
    np.testing.assert_array_equal(labels, ref[0])
    np.testing.assert_array_equal(scores, ref[1])


def test_fast_rule_only_for_one_whole_window():
    logits, _, bias = _case(2)
    whole = [pipeline.Window(0, 16, 0, 16)]
    fast = Postprocessor.from_meta(_meta(), mode="fast")
    exact = Postprocessor.from_meta(_meta(), mode="exact")
    assert fast.is_fast(whole) and not exact.is_fast(whole)
    assert not fast.is_fast([pipeline.Window(0, 16, 0, 12)])
    got = fast(logits[:1], whole, (16, 16), (30, 30), bias)
    ref = post.segment_fast(logits[:1], (30, 30), bias)
    np.testing.assert_array_equal(got[0], ref[0])
    np.testing.assert_array_equal(got[1], ref[1])
    exact_labels = exact(logits[:1], whole, (16, 16), (30, 30), bias)[0]
    assert (exact_labels == ref[0]).mean() > 0.9  # same image, official order: at most boundary pixels differ


def test_softmax_from_meta_uses_the_bundle_options():
    logits, windows, _ = _case(3)
    meta = _meta(activation="softmax", logit_scale=4.0, logit_scale_in_head=False, background_threshold=0.4)
    pp = Postprocessor.from_meta(meta)
    assert (pp.activation, pp.logit_scale, pp.background_threshold) == ("softmax", 4.0, 0.4)
    labels, scores = pp(logits, windows, (20, 28), (20, 28))
    parts = [
        post.window_scores(logits[i : i + 1], HEAD, HEAD, "softmax")[:, :, : w.y2 - w.y1, : w.x2 - w.x1]
        for i, w in enumerate(windows)
    ]
    ref = post.softmax_segment(
        post.merge_windows(parts, windows, (20, 28)), (20, 28), logit_scale=4.0, background_threshold=0.4
    )
    np.testing.assert_array_equal(labels, ref[0])
    np.testing.assert_allclose(scores, ref[1], rtol=1e-6)
    assert (labels == 0).any() and (scores >= 0).all() and (scores <= 1).all()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"activation": "relu"}, "activation must be one of"),
        ({"mode": "quick"}, "mode must be one of"),
        ({"window_logits": "cropped"}, "window_logits must be one of"),
        ({"head_size": (0, 16)}, "head_size"),
    ],
)
def test_bad_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Postprocessor(**dict({"head_size": HEAD}, **kwargs))


def test_logits_must_match_windows():
    logits, windows, bias = _case()
    with pytest.raises(ValueError, match=r"one row per window \(4\)"):
        Postprocessor(HEAD)(logits[:2], windows, (20, 28), (20, 28), bias)


def test_whole_image_orders_resize_the_grid_logits_the_methods_way():
    """``Postprocessor.whole``: "rescaled" (mmseg whole_inference: the grid logits bilinear to the rescaled image,
    then to the output) and "original" (straight to the output), each the NumPy composition of ``ops.upsample`` +
    softmax + argmax; the two differ (two resizes are not one); fast mode takes the single resize; bad calls are
    refused."""
    from zsseg_rt import ops

    rng = np.random.default_rng(3)
    logits = (rng.normal(size=(1, 5, 4, 6)) * 3).astype(np.float32)
    softmax = Postprocessor(head_size=HEAD, activation="softmax")

    def reference(*sizes):
        up = logits
        for size in sizes:
            up = ops.upsample(np.ascontiguousarray(up), size)
        probs = np.exp(up - up.max(1, keepdims=True))
        probs /= probs.sum(1, keepdims=True)
        return probs.argmax(1), probs.max(1)

    for order, sizes in (("rescaled", [(61, 90), (117, 181)]), ("original", [(117, 181)])):
        labels, scores = softmax.whole(logits, (61, 90), (117, 181), order)
        want_labels, want_scores = reference(*sizes)
        assert (labels == want_labels).mean() > 0.999, order
        np.testing.assert_allclose(scores, want_scores, rtol=1e-5, atol=1e-6)
    twice, once = (
        softmax.whole(logits, (61, 90), (117, 181))[1],
        softmax.whole(logits, (61, 90), (117, 181), "original")[1],
    )
    assert np.abs(twice - once).max() > 1e-3
    fast = Postprocessor(head_size=HEAD, activation="softmax", mode="fast")
    np.testing.assert_allclose(fast.whole(logits, (61, 90), (117, 181))[1], once, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="logits_to must be one of"):
        softmax.whole(logits, (61, 90), (117, 181), "window")
    with pytest.raises(ValueError, match=r"need the logits \[1, C, h, w\] of one whole image"):
        softmax.whole(np.concatenate([logits, logits]), (61, 90), (117, 181))
    with pytest.raises(ValueError, match="softmax"):
        Postprocessor(head_size=HEAD).whole(logits, (61, 90), (117, 181))
