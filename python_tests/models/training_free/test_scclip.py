"""SC-CLIP at tiny size against an independent transcription of its official code (``scclip_reference.py``) on a
random CLIP in the OpenAI layout: the pieces (LOF anomalies, repair), the patch features, and the Engine end to end
on the sample photos (labels >= 99.9 %, probabilities within 1e-4), with and without VOC21's thresholds."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scclip_reference import OfficialSCCLIPVisual, official_scclip_inference, openai_state_dict

from zsseg_rt.assets import sample_images

TINY_TF = "training_free_tiny_test"
VOC_IMAGES = [str(p) for p in sample_images()]
# A 5-block tiny ViT at 128 px (8 x 8 = 64 patch tokens, enough for the official 30 LOF neighbours): SC-CLIP's layer
# indices scaled to 5 blocks (f_0 .. f_3), every other setting official.
SETTINGS = {"pre_adjust_idx": 2, "post_adjust_idx": 1, "multi_start_idx": 1, "multi_end_idx": 3}
OVERRIDES = {
    "method": "scclip",
    "image_size": 128,
    "crop_size": 128,
    "stride": 64,
    "short_side": 160,
    "clip_cfg": {"vision_cfg": {"layers": 5}},
    "scclip": SETTINGS,
}
NAMES = ["person", "cat", "dog", "car", "sky", "tree"]


def _randomize(module: torch.nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            noise = torch.randn(p.shape, generator=g) * 0.2
            p.copy_(
                1.0 + noise
                if name.endswith(("ln_1.weight", "ln_2.weight", "ln_pre.weight", "ln_post.weight"))
                else noise
            )


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """(our model loaded from an OpenAI-layout state dict, the oracle's tower holding the same weights)."""
    from safetensors.torch import save_file

    from zsseg_rt.contract.common.clip import build_clip
    from zsseg_rt.models import create_model
    from zsseg_rt.models.training_free.config import load_training_free_config

    official = OfficialSCCLIPVisual(128, 16, 64, 5, 2, 32, **SETTINGS).eval()
    _randomize(official, seed=11)
    text_clip = build_clip(load_training_free_config(TINY_TF, **OVERRIDES))
    _randomize(text_clip, seed=12)
    path = tmp_path_factory.mktemp("scclip") / "clip_openai_layout.safetensors"
    save_file({k: v.contiguous() for k, v in openai_state_dict(official, text_clip).items()}, str(path))
    model = create_model(TINY_TF, pretrained=str(path), **OVERRIDES).eval()
    return model, official


def _tokens(seed: int, b: int, n: int, w: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(b, n, w, generator=g)
    base[:, :3] *= 6.0  # a few high-norm tokens: the anomalies SC-CLIP looks for
    return base


def test_lof_outliers_match_the_official_lof():
    from scclip_reference import _lof

    from zsseg_rt.models.training_free.scclip import lof_outliers

    for seed, n in ((0, 64), (1, 196), (2, 40)):
        x = _tokens(seed, 2, n, 48)
        got = lof_outliers(x, 30, 0.05)
        assert got.shape == (2, n)
        for b in range(2):  # batched: each image on its own, as the official single-image call
            want = torch.zeros(n, dtype=torch.bool)
            want[_lof(x[b], 30, 0.05)] = True
            assert torch.equal(got[b], want), (seed, b)
        assert 0 < int(got[0].sum()) <= n // 10 + 1


def test_repair_matches_the_official_mean_interpolation():
    from zsseg_rt.models.training_free.scclip import repair_anomalies

    x = _tokens(3, 1, 64, 16)
    outliers = torch.zeros(1, 64, dtype=torch.bool)
    outliers[0, [0, 1, 9, 27, 63]] = True  # a corner, a clustered pair (0, 1, 9 neighbour each other), interior
    idx = [(i // 8, i % 8) for i in (0, 1, 9, 27, 63)]
    fmap = x[0].T.reshape(1, 16, 8, 8)
    want = OfficialSCCLIPVisual.mean_interpolation(fmap, idx).reshape(16, 64).T
    torch.testing.assert_close(repair_anomalies(x, outliers, (8, 8))[0], want, rtol=1e-6, atol=1e-6)
    # an anomaly whose 8 neighbours are all anomalies keeps its value
    ring = torch.zeros(1, 64, dtype=torch.bool)
    ring[0, [9, 10, 11, 17, 18, 19, 25, 26, 27]] = True
    assert torch.equal(repair_anomalies(x, ring, (8, 8))[0, 18], x[0, 18])


def test_patch_features_match_the_official_forward(pair):
    model, official = pair
    images = torch.randn(2, 3, 128, 128, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        patches, grid = model.encode_image(images)
        assert grid == (8, 8) and patches.shape == (2, 64, 32)
        for b in range(2):  # the official forward runs one window at a time
            ref = official(images[b : b + 1])
            torch.testing.assert_close(patches[b], ref[0] / ref[0].norm(dim=-1, keepdim=True), rtol=1e-5, atol=1e-5)
        # the test is not vacuous: anomalies were found and the similarity maps keep off-diagonal entries
        x = images[:1]
        from zsseg_rt.models.training_free.scclip import lof_outliers

        v = model.visual
        t = v.conv1(x).flatten(2).transpose(1, 2)
        t = v.ln_pre(torch.cat([v.class_embedding.expand(1, 1, -1), t], 1) + v.positional_embedding)
        for blk in v.transformer.resblocks[:-1]:
            t = blk(t)
        assert int(lof_outliers(t[:, 1:], 30, 0.05).sum()) == 4  # torch.quantile(64 values, 0.95): the top 4
        unit = t[:, 1:] / t[:, 1:].norm(dim=-1, keepdim=True)
        sim = unit @ unit.transpose(1, 2)
        assert 0.05 < float((sim > 0.4).float().mean()) < 0.95


def test_engine_matches_the_official_inference_on_the_sample_photos(pair, tmp_path):
    """The done-when check: the exported bundle run by the Engine (fused softmax post-processing) against the
    transcription of SC-CLIP's official slide inference, on every sample photo; and with VOC21's settings (logit
    scale 50, prob_thd 0.15, area_thd 0.1: the background rule) applied to the same bundle's post-processor."""
    import dataclasses

    import cv2

    from zsseg_rt import Engine
    from zsseg_rt.bundle import load_meta
    from zsseg_rt.export.onnx_export import export_bundle

    model, official = pair
    out = export_bundle(model, str(tmp_path / "bundle"), max_classes=8, verify_images=VOC_IMAGES[:1])
    meta = load_meta(out)
    assert meta.raw["verification"]["passed"] and meta.postprocess["method"] == "scclip"
    assert meta.postprocess["pamr_iterations"] == 0 and meta.test_scale == [2048, 160]
    engine = Engine(out, backend="onnxruntime")
    query = _query_from_patches(model, [cv2.imread(p) for p in VOC_IMAGES], len(NAMES) + 1)
    engine.set_text_embeddings(["background"] + NAMES, query.numpy())
    cfg = model.config
    voc21 = dataclasses.replace(
        engine.postprocessor, logit_scale=50.0 / 40.0, background_threshold=0.15, area_threshold=0.1
    )
    changed, seen = 0, []
    for path in VOC_IMAGES:
        image = cv2.imread(path)
        result = engine(image)
        labels, probs = official_scclip_inference(
            official, query, image, cfg.mean, cfg.std, cfg.short_side, cfg.crop_size, cfg.stride, logit_scale=40.0
        )
        seen.append(set(np.unique(labels).tolist()))
        assert (result.labels == labels).mean() >= 0.999, path
        np.testing.assert_allclose(result.scores, probs, rtol=0, atol=1e-4)  # probabilities, fp32 ORT vs torch
        plain = engine.postprocessor
        engine.postprocessor = voc21
        try:
            thr = engine(image)
        finally:
            engine.postprocessor = plain
        labels, probs = official_scclip_inference(
            official, query, image, cfg.mean, cfg.std, cfg.short_side, cfg.crop_size, cfg.stride, 50.0, 0.15, 0.1
        )
        assert (thr.labels == labels).mean() >= 0.999, path
        np.testing.assert_allclose(thr.scores, probs, rtol=0, atol=1e-4)
        changed += int((thr.labels != result.labels).sum())
    # not vacuous: several classes win, on more than one photo (a smooth photo may get one label from a random model)
    assert len(set().union(*seen)) >= 3 and sum(len(s) > 1 for s in seen) >= 2, seen
    assert changed > 0, "VOC21's rules (area filter / background threshold) changed no label"


def test_engine_with_the_named_voc21_vocabulary_matches_the_official_inference(pair, tmp_path):
    """``classes="voc21"``: the official class file (56 names in 21 classes, the background's 26 names first) on an
    SC-CLIP bundle: softmax over the 56 names, each class the max over its names' probabilities, and the settings
    the bundle records for VOC21 (logit scale 50, prob_thd 0.15, area_thd 0.1), against the transcription of
    SC-CLIP's official ``forward_slide`` + ``postprocess_result`` with ``query_idx``."""
    import cv2

    from zsseg_rt import Engine
    from zsseg_rt.export.onnx_export import export_bundle
    from zsseg_rt.vocabulary import named_vocabulary

    model, official = pair
    out = export_bundle(model, str(tmp_path / "bundle"), max_classes=64, verify_images=())
    voc21 = named_vocabulary("voc21")
    assert len(voc21.names) == 56 and voc21.background == 0 and voc21.labels[0] == "background"
    engine = Engine(out, backend="onnxruntime")
    assert engine.meta.postprocess["vocabulary_settings"]["voc21"] == {
        "logit_scale": 50.0,
        "background_threshold": 0.15,
        "area_threshold": 0.1,
    }
    query = _query_from_patches(model, [cv2.imread(p) for p in VOC_IMAGES], len(voc21.names))
    engine.set_text_embeddings("voc21", query.numpy())  # one embedding per name
    assert engine.class_names == voc21.labels and engine.vocabulary.name == "voc21"
    cfg = model.config
    seen = set()
    for path in VOC_IMAGES:
        image = cv2.imread(path)
        result = engine(image)
        labels, probs = official_scclip_inference(
            official, query, image, cfg.mean, cfg.std, cfg.short_side, cfg.crop_size, cfg.stride,
            50.0, 0.15, 0.1, query_idx=voc21.class_of().tolist(),
        )  # fmt: skip
        assert (result.labels == labels).mean() >= 0.999, path
        np.testing.assert_allclose(result.scores, probs, rtol=0, atol=1e-4)
        seen |= set(np.unique(labels).tolist())
    assert len(seen) >= 3 and 0 in seen, seen  # several classes, the background among them


def _query_from_patches(model, images, count: int) -> torch.Tensor:
    """Class embeddings that image regions resemble: ``count`` patch features of the photos' windows, chosen far
    apart (farthest-point sampling). A random text tower's embeddings are nearly equidistant from every patch of a
    random model, which would give one label everywhere and turn the comparison into a test of near-ties."""
    from zsseg_rt import pipeline

    cfg = model.config
    size, rows = cfg.image_size, []
    for image in images:
        rgb = pipeline.to_rgb_uint8(image, "bgr")
        chw = pipeline.normalize_image(pipeline.rescale_keep_ratio(rgb, (2048, cfg.short_side)), cfg.mean, cfg.std)
        for win in pipeline.sliding_windows(chw.shape[1], chw.shape[2], cfg.crop_size, cfg.stride):
            crop = np.ascontiguousarray(chw[None, :, win.y1 : win.y1 + size, win.x1 : win.x1 + size])
            with torch.no_grad():
                rows.append(model.encode_image(torch.from_numpy(crop))[0][0])
    patches = torch.nn.functional.normalize(torch.cat(rows), dim=-1)
    picks = [0]
    for _ in range(count - 1):
        picks.append(int((patches @ patches[picks].T).max(1).values.argmin()))
    return patches[picks]


def test_settings_are_validated_and_the_bundled_config_is_official():
    from zsseg_rt.models import load_training_free_config

    cfg = load_training_free_config("scclip-vitb16")
    s = cfg.scclip_settings()
    assert (s.pre_adjust_idx, s.post_adjust_idx, s.multi_start_idx, s.multi_end_idx) == (8, 3, 3, 10)
    assert (s.res_cls, s.beta, s.attention_scale, s.lof_neighbors, s.lof_contamination) == (0.3, 0.4, 3.0, 30, 0.05)
    assert (cfg.crop_size, cfg.stride, cfg.short_side, cfg.logit_scale, cfg.pamr_iterations) == (224, 112, 336, 40.0, 0)
    assert len(cfg.templates) == 80 and cfg.mean == [122.771, 116.746, 104.094]
    with pytest.raises(ValueError, match="pre_adjust_idx must be in 0..3"):
        load_training_free_config(TINY_TF, **dict(OVERRIDES, scclip={"pre_adjust_idx": 4}))
    with pytest.raises(ValueError, match="lof_neighbors must be in 1..15"):
        load_training_free_config(TINY_TF, **dict(OVERRIDES, image_size=64, crop_size=64, stride=32))
    with pytest.raises(ValueError, match="unknown SC-CLIP settings"):
        load_training_free_config(TINY_TF, **dict(OVERRIDES, scclip={"gamma": 1}))
    with pytest.raises(ValueError, match="'beta' must be float"):
        load_training_free_config(TINY_TF, **dict(OVERRIDES, scclip={"beta": "0.4"}))
    with pytest.raises(ValueError, match="apply to method 'scclip' only"):
        load_training_free_config(TINY_TF, method="sclip", scclip={"beta": 0.5})
