"""Training-free dense CLIP (MaskCLIP / SCLIP / ClearCLIP / NACLIP) at tiny sizes: last-block formulas against
hand-written references, weights, native vs torch similarity, post-processing, export + Engine parity."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from zeg_helpers import randomize_

from zsseg_rt.assets import sample_images

TINY_TF = "training_free_tiny_test"
METHODS = ("maskclip", "sclip", "clearclip", "naclip")
VOC_IMAGES = [str(p) for p in sample_images()]


def _model(method: str, seed: int = 1, **overrides):
    from zsseg_rt.models import create_model

    torch.manual_seed(0)
    return randomize_(create_model(TINY_TF, method=method, **overrides), seed=seed).eval()


@pytest.fixture(scope="module")
def models():
    return {m: _model(m) for m in METHODS}


# ---------------------------------------------------------------------------------------------- references
def _ref_neighbourhood(h: int, w: int, std: float) -> torch.Tensor:
    """NACLIP's Omega written from the paper: a (2h-1)x(2w-1) Gaussian window centred on each query patch."""
    win = torch.zeros(2 * h - 1, 2 * w - 1, dtype=torch.float64)
    for i in range(2 * h - 1):
        for j in range(2 * w - 1):
            win[i, j] = math.exp(-((i - (h - 1)) ** 2 + (j - (w - 1)) ** 2) / (2 * std * std))
    omega = torch.zeros(1 + h * w, 1 + h * w, dtype=torch.float64)
    for a in range(h):
        for b in range(w):
            for c in range(h):
                for d in range(w):
                    omega[1 + a * w + b, 1 + c * w + d] = win[h - 1 + c - a, w - 1 + d - b]
    return omega.float()


def _ref_last_block(block, x: torch.Tensor, grid, method: str, std: float = 5.0) -> torch.Tensor:
    """Per-head loop implementation of the four papers' last block (x: [B, L, W])."""
    width = x.shape[-1]
    heads = block.attn.num_heads
    d = width // heads
    y = F.layer_norm(x, (width,), block.ln_1.weight, block.ln_1.bias, block.ln_1.eps)
    wq, wk, wv = block.attn.in_proj_weight.split(width)
    bq, bk, bv = block.attn.in_proj_bias.split(width)
    q, k, v = y @ wq.T + bq, y @ wk.T + bk, y @ wv.T + bv
    outs = []
    for h in range(heads):
        sl = slice(h * d, (h + 1) * d)
        qh, kh, vh = q[..., sl], k[..., sl], v[..., sl]
        if method == "maskclip":  # each token attends only to itself
            a = vh
        elif method == "sclip":  # correlative self-attention
            a = (
                torch.softmax(qh @ qh.transpose(1, 2) / math.sqrt(d), -1)
                + torch.softmax(kh @ kh.transpose(1, 2) / math.sqrt(d), -1)
            ) @ vh
        elif method == "clearclip":  # query-query attention
            a = torch.softmax(qh @ qh.transpose(1, 2) / math.sqrt(d), -1) @ vh
        else:  # NACLIP: key-key attention + Gaussian neighbourhood
            a = torch.softmax(kh @ kh.transpose(1, 2) / math.sqrt(d) + _ref_neighbourhood(*grid, std), -1) @ vh
        outs.append(a)
    o = torch.cat(outs, -1) @ block.attn.out_proj.weight.T + block.attn.out_proj.bias
    if method in ("clearclip", "naclip"):  # residual and FFN removed
        return o
    z = x + o
    u = F.layer_norm(z, (width,), block.ln_2.weight, block.ln_2.bias, block.ln_2.eps)
    u = u @ block.mlp.c_fc.weight.T + block.mlp.c_fc.bias
    if method == "maskclip":  # mmseg's ViT (MaskCLIP): exact GELU
        u = 0.5 * u * (1.0 + torch.erf(u / math.sqrt(2.0)))
    else:
        u = u * torch.sigmoid(1.702 * u)  # QuickGELU (OpenAI CLIP)
    return z + (u @ block.mlp.c_proj.weight.T + block.mlp.c_proj.bias)


def _ref_patches(model, images: torch.Tensor, method: str) -> torch.Tensor:
    v = model.visual
    x = v.conv1(images)
    b, c, h, w = x.shape
    x = torch.cat([v.class_embedding.reshape(1, 1, c).expand(b, 1, c), x.flatten(2).transpose(1, 2)], 1)
    x = v.ln_pre(x + v.positional_embedding)
    for blk in v.transformer.resblocks[:-1]:
        x = blk(x)
    x = _ref_last_block(v.transformer.resblocks[-1], x, (h, w), method)
    return F.normalize(v.ln_post(x[:, 1:]) @ v.proj, dim=-1)


# ---------------------------------------------------------------------------------------------- model
@pytest.mark.parametrize("method", METHODS)
def test_last_block_and_patches_match_reference(models, method):
    model = models[method]
    g = torch.Generator().manual_seed(5)
    x = torch.randn(2, 17, 64, generator=g)
    block = model.visual.transformer.resblocks[-1]
    with torch.no_grad():
        got = model.dense_block(block, x, (4, 4))
        ref = _ref_last_block(block, x, (4, 4), method)
        torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)  # fp32, different summation order
        images = torch.randn(2, 3, 64, 64, generator=g)
        patches, grid = model.encode_image(images)
        assert grid == (4, 4) and patches.shape == (2, 16, 32)
        torch.testing.assert_close(patches, _ref_patches(model, images, method), rtol=1e-5, atol=1e-5)
    expected = {
        "maskclip": ("identity", True, True),
        "sclip": ("qq+kk", True, True),
        "clearclip": ("qq", False, False),
        "naclip": ("kk", False, False),
    }[method]
    db = model.dense_block
    assert (db.attention, db.residual, db.ffn) == expected
    assert (db.gaussian_std == 5.0) == (method == "naclip")


def test_neighbourhood_bias_matches_naclip_window():
    from zsseg_rt.models.training_free.model import gaussian_neighbourhood_bias

    for (h, w), std in (((4, 4), 5.0), ((3, 5), 1.0)):
        got = torch.from_numpy(gaussian_neighbourhood_bias((h, w), std))
        torch.testing.assert_close(got, _ref_neighbourhood(h, w, std), rtol=0, atol=1e-7)
        assert float(got[0].abs().sum()) == 0.0 and float(got[:, 0].abs().sum()) == 0.0


def test_gaussian_std_changes_naclip_and_only_naclip_accepts_it():
    from zsseg_rt.models.training_free.model import DenseLastBlock

    with pytest.raises(ValueError, match="gaussian_std"):
        DenseLastBlock("qq", False, False, gaussian_std=1.0)
    a, b = _model("naclip", gaussian_std=1.0), _model("naclip", gaussian_std=None)
    images = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert not torch.allclose(a.encode_image(images)[0], b.encode_image(images)[0])


def test_native_similarity_equals_torch_and_classes_are_independent(models):
    model = models["sclip"]
    g = torch.Generator().manual_seed(7)
    images, text = torch.randn(2, 3, 64, 64, generator=g), torch.randn(6, 32, generator=g)
    with torch.no_grad():
        patches, grid = model.encode_image(images)
        ref = model.decode(text, patches, grid)
        native = model.decode_native(text, patches, grid)
        torch.testing.assert_close(native, ref, rtol=1e-5, atol=1e-5)  # logits up to 40: fp32 ~1e-6 relative
        cos = torch.einsum("bnd,cd->bcn", F.normalize(patches, dim=-1), F.normalize(text, dim=-1))
        torch.testing.assert_close(ref, 40.0 * cos.reshape(2, 6, 4, 4), rtol=1e-5, atol=1e-5)
        sub = model.decode(text[[4, 1]], patches, grid)  # a class's logits do not depend on the other classes
        torch.testing.assert_close(sub, ref[:, [4, 1]], rtol=1e-6, atol=1e-5)  # GEMM blocking: a few ulp at 40
        model.use_native_ops = True
        try:
            torch.testing.assert_close(model(images, text), ref, rtol=1e-5, atol=1e-5)
        finally:
            model.use_native_ops = False


def test_stock_weights_load_and_positional_table_is_resized_per_input(tmp_path):
    """The stored table is kept at its grid (2x2 here) and resized to each input's grid in the forward, the method's
    way (SCLIP family: DINO's scale factor (g + 0.1) / g0), as the official code does per window."""
    from safetensors.torch import save_file

    from zsseg_rt.contract.common.clip import build_clip
    from zsseg_rt.models import WeightsError, create_model
    from zsseg_rt.models.training_free.config import load_training_free_config

    torch.manual_seed(3)
    small = load_training_free_config(TINY_TF, image_size=32, crop_size=32, stride=16)  # grid 2x2
    stock = randomize_(build_clip(small), seed=4)
    sd = {k: v.contiguous() for k, v in stock.state_dict().items()}
    save_file(sd, str(tmp_path / "clip.safetensors"))
    torch.save(sd, tmp_path / "clip.pt")
    p = sd["visual.positional_embedding"][1:].reshape(1, 2, 2, 64).permute(0, 3, 1, 2)
    dino = F.interpolate(  # the official interpolate_pos_encoding for a 4x4 grid
        p, scale_factor=(4.1 / 2, 4.1 / 2), mode="bicubic", align_corners=False, recompute_scale_factor=False
    )
    for name in ("clip.safetensors", "clip.pt"):
        model = create_model("training-free-tiny-test", pretrained=str(tmp_path / name), method="clearclip")
        got = model.state_dict()
        torch.testing.assert_close(got["visual.proj"], sd["visual.proj"], rtol=0, atol=0)
        torch.testing.assert_close(
            got["text_encoder.token_embedding.weight"], sd["token_embedding.weight"], rtol=0, atol=0
        )
        torch.testing.assert_close(
            got["visual.positional_embedding"], sd["visual.positional_embedding"], rtol=0, atol=0
        )
        pos = model._positional(4, 4)  # the model's 64 px window: a 4x4 grid
        assert pos.shape == (17, 64)
        torch.testing.assert_close(pos[1:], dino.reshape(64, 16).T, rtol=0, atol=1e-5)
        torch.testing.assert_close(model._positional(2, 2), sd["visual.positional_embedding"], rtol=0, atol=0)
    bad = dict(sd)
    bad.pop("visual.proj")
    save_file(bad, str(tmp_path / "bad.safetensors"))
    with pytest.raises(WeightsError, match="missing"):
        create_model(TINY_TF, pretrained=str(tmp_path / "bad.safetensors"))
    bad = dict(sd, **{"visual.positional_embedding": torch.zeros(6, 64)})  # 5 patch rows: no square grid
    save_file(bad, str(tmp_path / "bad.safetensors"))
    with pytest.raises(WeightsError, match="not a square grid"):
        create_model(TINY_TF, pretrained=str(tmp_path / "bad.safetensors"))


def test_bundled_configs_follow_the_official_settings():
    from zsseg_rt.models import load_training_free_config
    from zsseg_rt.models.training_free.config import training_free_config_path

    expect = {  # crop, stride, short side, logit scale, attention, residual, ffn
        "maskclip-vitb16": (512, 341, 512, 1.0, "identity", True, True),  # softmax of the raw cosine
        "sclip-vitb16": (224, 112, 336, 40.0, "qq+kk", True, True),
        "clearclip-vitb16": (448, 224, 448, 50.0, "qq", False, False),
        "naclip-vitb16": (224, 112, 336, 40.0, "kk", False, False),
    }
    for name, values in expect.items():
        cfg = load_training_free_config(name)
        got = (
            cfg.crop_size,
            cfg.stride,
            cfg.short_side,
            cfg.logit_scale,
            cfg.resolved("attention"),
            cfg.resolved("residual"),
            cfg.resolved("ffn"),
        )
        assert got == values, name
        assert cfg.image_size == cfg.crop_size and cfg.calibration_bias == 0.0 and cfg.background_threshold is None
        # MaskCLIP: the 80 ImageNet templates + 5 scene ones (test_maskclip_official checks the list)
        assert len(cfg.templates) == (85 if name.startswith("maskclip") else 80)
        assert cfg.templates[0] == "a bad photo of a {}." and cfg.patch_size == 16
    assert load_training_free_config("naclip_vitb16").resolved("gaussian_std") == 5.0
    assert training_free_config_path("zegclip_vitb16_voc_inductive") is None
    with pytest.raises(ValueError, match="method"):
        load_training_free_config(TINY_TF, method="gem")


# ---------------------------------------------------------------------------------------------- post-processing
def _dense_reference(logits, size, bg=None, area=None):
    from training_free_reference import softmax_labels

    up = F.interpolate(torch.from_numpy(logits), size=size, mode="bilinear", align_corners=False)
    labels, best = softmax_labels(up, bg, area)
    return labels.numpy(), best.numpy()


def test_softmax_segment_matches_torch_reference_and_thresholds():
    from zsseg_rt.pipeline.postprocess import calibrated_window_scores, softmax_segment, window_scores

    rng = np.random.default_rng(0)
    logits = (rng.standard_normal((2, 7, 5, 6)) * 3).astype(np.float32)
    for bg, area in ((None, None), (0.5, None), (None, 0.1), (0.4, 0.2)):
        labels, scores = softmax_segment(logits, (23, 17), background_threshold=bg, area_threshold=area)
        ref_labels, ref_best = _dense_reference(logits, (23, 17), bg, area)
        assert (labels == ref_labels).mean() > 0.999
        np.testing.assert_allclose(scores, ref_best, rtol=1e-5, atol=1e-6)
        if bg is not None:
            assert (labels[scores < bg] == 0).all() and (scores < bg).any() and (scores >= bg).any()
    plain, plain_scores = softmax_segment(logits, (23, 17))
    thr, thr_scores = softmax_segment(logits, (23, 17), background_threshold=0.5)
    np.testing.assert_array_equal(thr_scores, plain_scores)
    np.testing.assert_array_equal(thr, np.where(plain_scores < 0.5, 0, plain))
    scaled, _ = softmax_segment(logits / 4, (23, 17), logit_scale=4.0)
    np.testing.assert_array_equal(scaled, plain)
    bias = np.zeros(7, np.float32)
    bias[plain[0, 0, 0]] = 2.0  # a bias above any probability removes that class
    assert (softmax_segment(logits, (23, 17), class_bias=bias)[0] != plain[0, 0, 0]).all()
    # the sigmoid branch of window_scores is ZegCLIP's calibrated_window_scores, bit for bit
    cb = np.full(7, 0.1, np.float32)
    np.testing.assert_array_equal(
        window_scores(logits, (16, 16), (12, 10), "sigmoid", cb),
        calibrated_window_scores(logits, (16, 16), (12, 10), cb),
    )
    soft = window_scores(logits, (16, 16), (12, 10), "softmax")
    ref = F.interpolate(
        F.interpolate(torch.from_numpy(logits), size=(16, 16), mode="bilinear"), size=(12, 10), mode="bilinear"
    )
    np.testing.assert_allclose(soft, ref.numpy(), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="activation"):
        window_scores(logits, (16, 16), (16, 16), "relu")


# ---------------------------------------------------------------------------------------------- export + Engine
@pytest.mark.parametrize("method", METHODS)
def test_export_bundle_and_engine_match_torch(models, method, tmp_path):
    import cv2
    from training_free_reference import slide_inference

    from zsseg_rt import Engine
    from zsseg_rt.bundle import load_meta
    from zsseg_rt.export.onnx_export import export_bundle
    from zsseg_rt.models.training_free.predict import segment

    model = models[method]
    out = export_bundle(model, str(tmp_path / "bundle"), max_classes=8, verify_images=VOC_IMAGES[:1])
    meta = load_meta(out)
    assert meta.raw["verification"]["passed"] and meta.family == "training_free"
    assert meta.calibration_bias == 0.0 and meta.raw["io"]["image"]["outputs"] == ["patch_grid"]
    assert meta.whole_image["default"] == ("whole" if method == "maskclip" else "windows")
    assert meta.postprocess["activation"] == "softmax" and meta.postprocess["logit_scale"] == 40.0
    assert (meta.crop_size, meta.stride) == (64, 32)
    names = ["person", "cat", "dog", "car", "sky", "tree"]
    image = cv2.imread(VOC_IMAGES[1])
    engine = Engine(out, classes=names, backend="onnxruntime", inference="windows")
    result = engine(image)
    torch_engine = Engine(out, classes=names, backend="torch", model=model, inference="windows")(image)
    labels, scores = slide_inference(model, image, names, color_order="bgr", short_side=meta.image_size)
    # the package's torch inference (through the one Postprocessor) against the independent torch transcription
    own_labels, own_scores = segment(
        model, image, names, color_order="bgr", short_side=meta.image_size, inference="windows"
    )
    assert (own_labels == labels).mean() > 0.999
    np.testing.assert_allclose(own_scores, scores, rtol=1e-4, atol=1e-5)
    assert result.labels.shape == image.shape[:2] and len(np.unique(labels)) > 1
    assert (result.labels == labels).mean() > 0.999 and (torch_engine.labels == labels).mean() > 0.999
    np.testing.assert_allclose(result.scores, scores, rtol=1e-4, atol=1e-5)  # probabilities, fp32 ORT vs torch
    fast = Engine(out, classes=names, backend="onnxruntime", mode="fast", inference="windows")(
        cv2.resize(image, (64, 64))
    )
    exact = engine(cv2.resize(image, (64, 64)))
    assert (fast.labels == exact.labels).mean() > 0.99  # one resize instead of two: a few boundary pixels


def test_naclip_with_pamr_bundle_engine_matches_torch(tmp_path):
    """NACLIP's reported setting (PAMR, 10 steps, dilations (8, 16)) recorded in the bundle and run by the Engine,
    against the torch transcription of NACLIP's predict (PAMR on the resized logits, guided by the resized input)."""
    import cv2
    from training_free_reference import slide_inference

    from zsseg_rt import Engine
    from zsseg_rt.bundle import load_meta
    from zsseg_rt.export.onnx_export import export_bundle

    model = _model("naclip", pamr_iterations=10)
    out = export_bundle(model, str(tmp_path / "bundle"), max_classes=8)
    meta = load_meta(out)
    assert (meta.postprocess["pamr_iterations"], meta.postprocess["pamr_dilations"]) == (10, [8, 16])
    names = ["person", "cat", "dog", "car", "sky", "tree"]
    image = cv2.imread(VOC_IMAGES[1])
    result = Engine(out, classes=names, backend="onnxruntime")(image)
    labels, scores = slide_inference(model, image, names, color_order="bgr", short_side=meta.image_size)
    assert (result.labels == labels).mean() >= 0.999 and len(np.unique(labels)) > 1
    np.testing.assert_allclose(result.scores, scores, rtol=0, atol=1e-4)  # PAMR's fp32 steps: see test_softmax_rules
    model.config.pamr_iterations = 0
    plain, _ = slide_inference(model, image, names, color_order="bgr", short_side=meta.image_size)
    assert (plain != labels).any()  # PAMR changed labels


def test_pamr_memory_stays_within_the_documented_estimate(tmp_path):
    """The PAMR path holds whole logit maps; the Engine's estimate (``estimate_bytes(pamr_neighbours=)``) counts
    them: the measured peak rise of one call stays below it (plus ONNX Runtime's own working memory)."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    from support import subprocess_env

    from zsseg_rt.export.onnx_export import export_bundle

    out = export_bundle(_model("naclip", pamr_iterations=10), str(tmp_path / "bundle"), max_classes=40)
    tool = Path(__file__).resolve().parents[3] / "benchmarks" / "engine_memory.py"
    code = f"import runpy, sys; sys.argv = ['m'] + sys.argv[1:]; runpy.run_path({str(tool)!r}, run_name='__main__')"
    env = subprocess_env(OMP_NUM_THREADS="2")
    run = subprocess.run(
        [sys.executable, "-c", code, out, "--shape", "600x800", "--classes", "32"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["outcome"] == "ok" and result["estimate_mib"] > 150  # PAMR's 32 x 600 x 800 maps dominate
    assert result["peak_rise_mib"] <= result["estimate_mib"] + 64, result  # + ONNX Runtime's own (15-35 MiB)


def test_engine_background_threshold(models, tmp_path):
    import json

    import cv2

    from zsseg_rt import Engine
    from zsseg_rt.bundle import write_meta
    from zsseg_rt.export.onnx_export import export_bundle

    model = models["naclip"]
    out = export_bundle(model, str(tmp_path / "bundle"), max_classes=8)
    names = ["background", "person", "cat", "dog", "car"]
    image = cv2.imread(VOC_IMAGES[0])
    plain = Engine(out, classes=names, backend="onnxruntime")(image)
    threshold = float(np.quantile(plain.scores, 0.5))
    with open(f"{out}/meta.json") as handle:
        meta = json.load(handle)
    meta["postprocess"]["background_threshold"] = threshold
    write_meta(f"{out}/meta.json", meta)  # a deliberate edit: re-record meta.json's own hash
    thr = Engine(out, classes=names, backend="onnxruntime")(image)
    np.testing.assert_array_equal(thr.scores, plain.scores)
    np.testing.assert_array_equal(thr.labels, np.where(plain.scores < threshold, 0, plain.labels))
    # the threshold really acts: about half the pixels (score below the median) fall back to background
    assert (thr.labels == 0).mean() >= 0.45 and (thr.labels == 0).mean() > (plain.labels == 0).mean()
