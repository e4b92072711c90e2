"""Whole-image / sliding-window inference (official §9 order) and the native-op inference path."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F


def _native_available():
    try:
        from zsseg_rt.ops import native_module

        native_module()
        return True
    except ImportError:
        return False


needs_native = pytest.mark.skipif(not _native_available(), reason="zsseg_rt._C (native ops) is not built")


@needs_native
def test_native_ops_path_equals_pure_torch(tiny_model, tiny_images, tiny_text):
    with torch.no_grad():
        ref = tiny_model(tiny_images, tiny_text)
        tiny_model.use_native_ops = True
        try:
            nat = tiny_model(tiny_images, tiny_text)
            nat_b = tiny_model(tiny_images, tiny_text.expand(2, -1, -1).contiguous())
        finally:
            tiny_model.use_native_ops = False
    # fp32: the native path sums over all heads at once (scale/H * q.k) instead of per head, ~1e-6 relative
    torch.testing.assert_close(nat, ref, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(nat_b, ref, rtol=1e-4, atol=1e-5)


def _reference_slide(model, chw, text, bias, crop, stride, out_hw):
    """Reference §9 in torch: per-window logits -> 512-equivalent (image_size) -> sigmoid - bias -> window size
    -> average overlaps -> resize to the original size -> argmax."""
    _, h, w = chw.shape
    x = torch.from_numpy(chw)[None]
    c = text.shape[0]
    preds = torch.zeros(1, c, h, w)
    count = torch.zeros(1, 1, h, w)
    hg = max(h - crop + stride - 1, 0) // stride + 1
    wg = max(w - crop + stride - 1, 0) // stride + 1
    s = model.config.image_size
    for hi in range(hg):
        for wi in range(wg):
            y1, x1 = hi * stride, wi * stride
            y2, x2 = min(y1 + crop, h), min(x1 + crop, w)
            y1, x1 = max(y2 - crop, 0), max(x2 - crop, 0)
            with torch.no_grad():
                lg = model(x[:, :, y1:y2, x1:x2], text)
            pm = F.interpolate(lg, size=(s, s), mode="bilinear", align_corners=False).sigmoid()
            pm = pm - torch.from_numpy(bias)[None, :, None, None]
            pm = F.interpolate(pm, size=(y2 - y1, x2 - x1), mode="bilinear", align_corners=False)
            preds[:, :, y1:y2, x1:x2] += pm
            count[:, :, y1:y2, x1:x2] += 1
    preds = preds / count
    preds = F.interpolate(preds, size=out_hw, mode="bilinear", align_corners=False)
    return preds.argmax(1)[0].numpy(), preds.max(1).values[0].numpy()


@needs_native
def test_sliding_window_equals_whole_image_at_crop_size(tiny_model):
    """At the crop size both modes run the same single window: identical results (a consistency check)."""
    from zsseg_rt.contract.common.predict import predict

    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    names = ["cat", "dog", "sheep", "person"]  # sheep is unseen in VOC: no calibration bias
    lab_s, sc_s = predict(tiny_model, img, class_names=names, mode="slide")
    lab_w, sc_w = predict(tiny_model, img, class_names=names, mode="whole")
    assert lab_s.shape == (64, 64) and lab_s.dtype == np.int32 and sc_s.dtype == np.float32
    np.testing.assert_array_equal(lab_s, lab_w)
    np.testing.assert_allclose(sc_s, sc_w, rtol=0, atol=1e-6)


@needs_native
def test_slide_and_whole_on_an_image_with_several_windows():
    """70x130 -> 64x119: slide runs 3 windows, whole runs the model once on the whole (patch-floored) image. Each
    must match its own torch transcription of the official order, and they must differ (the windows matter)."""
    from support import VOCAB10, golden_tiny_model

    from zsseg_rt.contract.common.predict import predict, seen_class_bias
    from zsseg_rt.pipeline import preprocess as pre

    model = golden_tiny_model("zegclip")
    cfg = model.config
    img = np.ascontiguousarray(np.random.default_rng(2).integers(0, 256, (70, 130, 3), dtype=np.uint8))
    text = model.text_embeddings(VOCAB10, cfg.templates)
    bias = torch.from_numpy(seen_class_bias(model, VOCAB10))[None, :, None, None]
    chw = pre.normalize_image(pre.rescale_keep_ratio(img, tuple(cfg.test_scale)), cfg.mean, cfg.std)
    assert len(pre.sliding_windows(chw.shape[1], chw.shape[2], cfg.crop_size, cfg.stride)) == 3
    lab_s, sc_s = predict(model, img, class_names=VOCAB10, mode="slide")
    ref_s, ref_sc = _reference_slide(model, chw, text, bias[0, :, 0, 0].numpy(), cfg.crop_size, cfg.stride, (70, 130))
    np.testing.assert_array_equal(lab_s, ref_s)
    lab_w, sc_w = predict(model, img, class_names=VOCAB10, mode="whole")
    h, w = chw.shape[1:]
    fh, fw = h // 16 * 16, w // 16 * 16  # the official patch embedding floors the input to the patch grid
    with torch.no_grad():
        logits = model(torch.from_numpy(chw)[None, :, :fh, :fw], text)
    s = cfg.image_size
    pm = F.interpolate(logits, size=(s, s), mode="bilinear", align_corners=False).sigmoid() - bias
    pm = F.interpolate(pm, size=(h, w), mode="bilinear", align_corners=False)
    pm = F.interpolate(pm, size=(70, 130), mode="bilinear", align_corners=False)
    agree = lab_w == pm.argmax(1)[0].numpy()
    assert agree.mean() >= 0.999
    np.testing.assert_allclose(sc_w[agree], pm.max(1).values[0].numpy()[agree], rtol=0, atol=1e-5)
    assert (lab_w != lab_s).mean() > 0.01 and len(np.unique(lab_s)) >= 2  # not the same computation


@needs_native
def test_sliding_window_matches_reference_order(tiny_model):
    from zsseg_rt.contract.common.predict import predict, seen_class_bias
    from zsseg_rt.pipeline import preprocess as pre

    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (70, 130, 3), dtype=np.uint8)  # rescaled to 64 x 119 -> 3 windows of 64
    names = ["cat", "dog", "sheep", "person", "sofa"]
    text = tiny_model.text_embeddings(names)
    bias = seen_class_bias(tiny_model, names)
    np.testing.assert_array_equal(bias, np.array([0.1, 0.1, 0, 0.1, 0], dtype=np.float32))
    labels, scores = predict(tiny_model, img, class_names=names)
    chw = pre.normalize_image(pre.rescale_keep_ratio(img, tuple(tiny_model.config.test_scale)))
    assert chw.shape[1:] == (64, 119)
    ref_l, ref_s = _reference_slide(tiny_model, chw, text, bias, 64, 48, (70, 130))
    assert labels.shape == (70, 130)
    np.testing.assert_allclose(scores, ref_s, rtol=0, atol=1e-5)
    # argmax can only flip where the top-2 scores tie within rounding
    assert (labels != ref_l).mean() < 0.002


@needs_native
def test_predict_with_precomputed_text_and_small_image(tiny_model):
    from zsseg_rt.contract.common.predict import predict

    rng = np.random.default_rng(2)
    img = rng.integers(0, 256, (20, 150, 3), dtype=np.uint8)  # short side < crop after rescale
    text = torch.randn(3, 32)
    labels, scores = predict(tiny_model, img, text=text, rescale=False)
    assert labels.shape == (20, 150) and set(np.unique(labels)) <= {0, 1, 2}
    with pytest.raises(ValueError, match="mode"):
        predict(tiny_model, img, text=text, mode="tiles")
    with pytest.raises(ValueError, match="class names but"):
        predict(tiny_model, img, text=text, class_names=["a"])
    with pytest.raises(TypeError, match="uint8"):
        predict(tiny_model, img.astype(np.float32), text=text)
