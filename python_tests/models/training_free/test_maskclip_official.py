"""MaskCLIP against an independent transcription of its official forward (``maskclip_official.py``: mmseg ViT with
exact GELU and LayerNorm eps 1e-6, the last-block value-embedding trick, MaskClipHead, mmseg windows and softmax;
its official whole-image mode: ``test_training_free_whole.py``),
on a tiny random model given to both sides in MaskCLIP's own converted checkpoint layout, through PyTorch and
through an exported bundle run by the Engine (ONNX Runtime).

The tiny tower's patch/class/position embeddings are scaled by ``EMBED_SCALE`` so that ``ln_pre``'s input has a
small variance (std ~0.05 here; real CLIP's patch embeddings are small too), the regime where LayerNorm's eps
matters: with the stock random scale (std ~5) eps 1e-5 vs 1e-6 would change nothing and the eps control below
could not fail.

Measured (CPU, fp32; three photos of 500x338, 180x360 and 500x150 pixels, windows 64/43 at short side 64, 6
classes, 3-6 of them present per photo): labels 100 % equal and max probability difference 4.5e-8 on both paths
(torch ``segment`` and the ONNX Runtime Engine). The probabilities are held to 1e-6 (the issue's bar is 1e-4).
Controls (``test_old_towers_fail_the_official_comparison``, same photos, torch path): the stock-CLIP tower
(QuickGELU + eps 1e-5) 92.9 % labels / 9.4e-4; QuickGELU alone 98.4 % / 2.0e-4; eps 1e-5 alone 93.4 % / 9.7e-4:
each fails on labels alone, and on probabilities even at the issue's 1e-4.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
import torch.nn as nn
from maskclip_official import MASKCLIP_SCENE_TEMPLATES, convert_clip_weights, official_segment
from zeg_helpers import randomize_

from zsseg_rt.assets import sample_images

TINY_CLIP = {
    "embed_dim": 32,
    "vision_cfg": {"width": 64, "layers": 2, "head_width": 32, "patch_size": 16},
    "text_cfg": {"width": 64, "heads": 2, "layers": 2},
}
HEADS = 2
TINY = dict(clip_cfg=TINY_CLIP, image_size=64, crop_size=64, stride=43, short_side=64)
EMBED_SCALE = 0.01
NAMES = ["person", "cat", "dog", "car", "sky", "tree"]
# Issue 41's bar is labels >= 99.9 % and probabilities within 1e-4; both paths measure ~5e-8 here (fp32, tiny
# model), so the probabilities are held to 1e-6, which every control misses by two orders of magnitude.
LABELS_MIN, PROB_ATOL = 0.999, 1e-6


def _photos():
    """Three photos of different sizes and aspect ratios (a VOC photo and two crops of another)."""
    first, second = (cv2.imread(str(p)) for p in sample_images()[:2])
    return [first, np.ascontiguousarray(second[:360, :180]), np.ascontiguousarray(second[100:250, :500])]


@pytest.fixture(scope="module")
def stock(tmp_path_factory):
    """A tiny stock CLIP (OpenAI key layout, 7x7 positional grid) and MaskCLIP's two converted files of it."""
    from zsseg_rt.contract.common.clip import build_clip
    from zsseg_rt.models.training_free.config import load_training_free_config

    torch.manual_seed(0)
    clip = randomize_(
        build_clip(
            load_training_free_config("maskclip_vitb16", clip_cfg=TINY_CLIP, image_size=112, crop_size=112, stride=56)
        ),
        5,
    )
    with torch.no_grad():
        for t in (clip.visual.conv1.weight, clip.visual.class_embedding, clip.visual.positional_embedding):
            t.mul_(EMBED_SCALE)
    sd = {k: v.detach().clone().contiguous() for k, v in clip.state_dict().items()}
    backbone, weights = convert_clip_weights(sd)
    d = tmp_path_factory.mktemp("maskclip_weights")
    torch.save(sd, d / "clip.pt")
    torch.save(backbone, d / "ViT16_clip_backbone.pth")
    torch.save(weights, d / "ViT16_clip_weights.pth")
    return {"sd": sd, "dir": d, "weights": weights}


def _model(stock, **overrides):
    from zsseg_rt.models import create_model

    return create_model("maskclip_vitb16", pretrained=str(stock["dir"] / "clip.pt"), **TINY, **overrides).eval()


def test_maskclip_builds_the_official_tower_and_text_by_default():
    from zsseg_rt.models import create_model, load_training_free_config

    cfg = load_training_free_config("maskclip_vitb16")
    assert cfg.resolved("tower") == "mmseg" and cfg.logit_scale == 1.0 and len(cfg.templates) == 85
    assert cfg.templates[:80] == load_training_free_config("sclip_vitb16").templates  # the 80 ImageNet ones
    assert cfg.templates[80:] == MASKCLIP_SCENE_TEMPLATES
    model = create_model("maskclip_vitb16", **TINY)
    norms = {n: m.eps for n, m in model.visual.named_modules() if isinstance(m, nn.LayerNorm)}
    assert len(norms) == 2 + 2 * 2 and set(norms.values()) == {1e-6}  # ln_pre, ln_1/ln_2 x 2 blocks, ln_post
    assert all(
        type(b.mlp.gelu) is nn.GELU and b.mlp.gelu.approximate == "none" for b in model.visual.transformer.resblocks
    )
    text_tower = model.text_encoder
    assert {m.eps for m in text_tower.modules() if isinstance(m, nn.LayerNorm)} == {1e-5}  # stock OpenAI text tower
    assert all(type(m).__name__ == "QuickGELU" for n, m in text_tower.named_modules() if n.endswith("mlp.gelu"))
    old = create_model("maskclip_vitb16", tower="open_clip", **TINY)  # the stock-CLIP variant, a named option
    assert {m.eps for m in old.visual.modules() if isinstance(m, nn.LayerNorm)} == {1e-5}
    assert all(type(b.mlp.gelu).__name__ == "QuickGELU" for b in old.visual.transformer.resblocks)
    with pytest.raises(ValueError, match="tower must be one of"):
        load_training_free_config("maskclip_vitb16", tower="timm")


def test_official_converted_weights_are_accepted(stock, tmp_path):
    from zsseg_rt.models import WeightsError, create_model

    ref = _model(stock).state_dict()
    # a stock file whose image tower is wrong: the converted image weights must replace all of it
    wrong = {
        k: (torch.randn_like(v) if k.startswith("visual.") and k != "visual.proj" else v)
        for k, v in stock["sd"].items()
    }
    torch.save(wrong, tmp_path / "wrong.pt")
    for name in ("ViT16_clip_weights.pth", "ViT16_clip_backbone.pth"):  # the --backbone file has no proj
        got = create_model(
            "maskclip_vitb16", pretrained=str(tmp_path / "wrong.pt"), image_weights=str(stock["dir"] / name), **TINY
        ).state_dict()
        assert set(got) == set(ref)
        for k in ref:
            torch.testing.assert_close(got[k], ref[k], rtol=0, atol=0, msg=f"{name}: {k}")
    with pytest.raises(WeightsError, match="no text tower"):
        create_model("maskclip_vitb16", pretrained=str(stock["dir"] / "ViT16_clip_backbone.pth"), **TINY)
    with pytest.raises(ValueError, match="needs pretrained"):
        create_model("maskclip_vitb16", image_weights=str(stock["dir"] / "ViT16_clip_weights.pth"), **TINY)
    bad = torch.load(stock["dir"] / "ViT16_clip_weights.pth", weights_only=True)
    bad["clip"]["layers.0.extra.weight"] = torch.zeros(1)
    torch.save(bad, tmp_path / "bad.pth")
    with pytest.raises(WeightsError, match="layers.0.extra.weight"):
        create_model(
            "maskclip_vitb16", pretrained=str(tmp_path / "wrong.pt"), image_weights=str(tmp_path / "bad.pth"), **TINY
        )


def _compare(model, stock, engine=None):
    """Worst label agreement and max |probability difference| of the package (torch ``segment``, or ``engine``)
    against the official transcription over the photos."""
    from zsseg_rt.models.training_free.predict import segment

    text = model.text_embeddings(NAMES)
    worst_labels, worst_prob = 1.0, 0.0
    for bgr in _photos():
        labels, probs = official_segment(
            bgr, stock["weights"], text, HEADS, (2048, 64), 64, 43, model.config.mean, model.config.std
        )
        if engine is None:
            got_labels, got_scores = segment(
                model, bgr, NAMES, color_order="bgr", short_side=64, text=text, inference="windows"
            )
        else:
            result = engine(bgr)
            got_labels, got_scores = result.labels, result.scores
        assert got_labels.shape == labels.shape and len(np.unique(labels)) >= 3  # seed 5: 3-6 classes per photo
        worst_labels = min(worst_labels, float((got_labels == labels).mean()))
        worst_prob = max(worst_prob, float(np.abs(got_scores - probs.max(0)).max()))
    return worst_labels, worst_prob


def test_maskclip_matches_the_official_forward_in_torch_and_engine(stock, tmp_path):
    from zsseg_rt import Engine
    from zsseg_rt.bundle import load_meta
    from zsseg_rt.export.onnx_export import export_bundle

    model = _model(stock)
    labels, prob = _compare(model, stock)
    assert labels >= LABELS_MIN and prob <= PROB_ATOL, (labels, prob)
    out = export_bundle(model, str(tmp_path / "bundle"), max_classes=8)
    meta = load_meta(out)
    assert meta.postprocess["logit_scale"] == 1.0 and meta.raw["architecture"]["config"]["method"] == "maskclip"
    import onnx

    ops = {
        n.op_type for f in ("image_encoder.onnx",) for n in onnx.load(f"{out}/{f}", load_external_data=False).graph.node
    }
    assert "Erf" in ops or "Gelu" in ops, sorted(ops)  # exact GELU in the graph (QuickGELU is Sigmoid * x)
    engine = Engine(out, classes=NAMES, backend="onnxruntime", inference="windows")
    labels, prob = _compare(model, stock, engine)
    assert labels >= LABELS_MIN and prob <= PROB_ATOL, (labels, prob)


def test_old_towers_fail_the_official_comparison(stock):
    """Controls: the comparison above fails for the stock-CLIP tower and for each half of it (measured: labels /
    max probability difference 92.9 % / 9.4e-4 for tower="open_clip", 98.4 % / 2.0e-4 with QuickGELU only,
    93.4 % / 9.7e-4 with eps 1e-5 only)."""
    from zsseg_rt.models.training_free.model import apply_image_tower

    results = {}
    old = _model(stock, tower="open_clip")
    results["open_clip"] = _compare(old, stock)
    quick = _model(stock)  # mmseg eps, QuickGELU
    for b, ob in zip(quick.visual.transformer.resblocks, old.visual.transformer.resblocks):
        b.mlp.gelu = ob.mlp.gelu
    results["quick_gelu only"] = _compare(quick, stock)
    eps = _model(stock)  # exact GELU, eps 1e-5
    for m in eps.visual.modules():
        if isinstance(m, nn.LayerNorm):
            m.eps = 1e-5
    results["eps 1e-5 only"] = _compare(eps, stock)
    for name, (labels, prob) in results.items():
        assert labels < LABELS_MIN or prob > PROB_ATOL, (name, labels, prob)
    assert apply_image_tower(old.visual, "open_clip") is old.visual
