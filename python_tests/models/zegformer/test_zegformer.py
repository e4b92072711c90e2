"""ZegFormer family: config/registry, and the model + test-time CLIP branch against an independent transcription
of the official forward (``dingjiansw101/ZegFormer`` ``mask_former_model.py``, ``transformer_zeroshot_predictor.py``,
``pixel_decoder.py``, ``transformer.py``, ``position_encoding.py``), at tiny size with random weights.

The reference below is written from the official code's semantics with plain functional ops and the official
per-image loop (one CLIP call per image, the cumsum/argmax box trick, a list of boxes for ``roi_align``, the
in-place fusion with index lists); the package computes the same with batched code.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402
import torchvision  # noqa: E402

from zsseg_rt.contract.registry import family_of  # noqa: E402
from zsseg_rt.models import create_model, list_configs, load_config  # noqa: E402
from zsseg_rt.models.zegformer.clip_branch import mask_boxes  # noqa: E402
from zsseg_rt.models.zegformer.config import CLIP_BRANCH_TEMPLATES, QUERY_TEMPLATE_SETS  # noqa: E402

NAMES = ["cat", "sofa, couch", "road", "tvmonitor"]
SEEN = torch.tensor([True, True, False, False])


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = create_model("zegformer_tiny_test").eval()
    with torch.no_grad():  # spread the mask logits so that masks are partly on, partly off
        for layer in m.predictor.mask_embed.layers:
            layer.weight.mul_(4.0)
        m.clip_logit_scale.fill_(math.log(100.0))
    return m


# ---------------------------------------------------------------------- config / registry
def test_bundled_configs_and_registry():
    names = list_configs("zegformer")
    assert {"zegformer_r101_voc", "zegformer_r101_coco", "zegformer_r50_voc", "zegformer_tiny_test"} <= set(names)
    for n in names:
        cfg = load_config(n)
        assert cfg.family == "zegformer" and family_of(n) == "zegformer"
    voc = load_config("zegformer_r101_voc")
    assert voc.layers_per_stage == [3, 4, 23, 3] and voc.num_queries == 100 and voc.dec_layers == 6
    assert voc.seen_classes == list(range(15)) and voc.calibration_bias == pytest.approx(0.1)
    assert load_config("zegformer_r50_voc").layers_per_stage == [3, 4, 6, 3]
    assert len(load_config("zegformer_r101_coco").seen_classes) == 156
    assert len(CLIP_BRANCH_TEMPLATES) == 32 and len(QUERY_TEMPLATE_SETS["imagenet_select"]) == 8


@pytest.mark.parametrize(
    "field,value,needle",
    [
        ("fusion", "mean", "fusion must be"),
        ("clip_cls_style", "box", "clip_cls_style"),
        ("backbone", "vit", "backbone"),
    ],
)
def test_bad_config_values_are_refused(field, value, needle):
    with pytest.raises(ValueError, match=needle):
        load_config("zegformer_tiny_test", **{field: value})


# ---------------------------------------------------------------------- official transcription (reference)
def ref_position(x, num_pos_feats):
    not_mask = torch.ones((x.size(0), x.size(2), x.size(3)), dtype=torch.bool)
    y_embed = not_mask.cumsum(1, dtype=torch.float32)
    x_embed = not_mask.cumsum(2, dtype=torch.float32)
    y_embed = y_embed / (y_embed[:, -1:, :] + 1e-6) * 2 * math.pi
    x_embed = x_embed / (x_embed[:, :, -1:] + 1e-6) * 2 * math.pi
    dim_t = torch.arange(num_pos_feats, dtype=torch.float32)
    dim_t = 10000 ** (2 * (dim_t // 2) / num_pos_feats)
    pos_x = x_embed[:, :, :, None] / dim_t
    pos_y = y_embed[:, :, :, None] / dim_t
    pos_x = torch.stack((pos_x[:, :, :, 0::2].sin(), pos_x[:, :, :, 1::2].cos()), dim=4).flatten(3)
    pos_y = torch.stack((pos_y[:, :, :, 0::2].sin(), pos_y[:, :, :, 1::2].cos()), dim=4).flatten(3)
    return torch.cat((pos_y, pos_x), dim=3).permute(0, 3, 1, 2)


def ref_conv(mod, x, relu):
    y = F.conv2d(x, mod.weight, mod.bias, padding=mod.weight.shape[-1] // 2)
    y = F.group_norm(y, 32, mod.norm.weight, mod.norm.bias)
    return F.relu(y) if relu else y


def ref_forward(m, images, text):
    """Official MaskFormer + ZegFormerHead + TransformerZeroshotPredictor forward (eval), last layer only."""
    bb = m.backbone
    x = bb.maxpool(bb.relu(bb.bn1(bb.conv1(images))))
    res2 = bb.layer1(x)
    res3 = bb.layer2(res2)
    res4 = bb.layer3(res3)
    res5 = bb.layer4(res4)
    pd = m.pixel_decoder
    y = ref_conv(pd.layer_4, res5, True)
    for adapter, layer, f in (
        (pd.adapter_3, pd.layer_3, res4),
        (pd.adapter_2, pd.layer_2, res3),
        (pd.adapter_1, pd.layer_1, res2),
    ):
        cur = ref_conv(adapter, f, False)
        y = cur + F.interpolate(y, size=cur.shape[-2:], mode="nearest")
        y = ref_conv(layer, y, True)
    mask_features = F.conv2d(y, pd.mask_features.weight, pd.mask_features.bias, padding=1)
    pr = m.predictor
    pos = ref_position(res5, m.config.hidden_dim // 2)
    src = pr.input_proj(res5)
    bs, c, h, w = src.shape
    src = src.flatten(2).permute(2, 0, 1)
    pos = pos.flatten(2).permute(2, 0, 1)
    query_embed = pr.query_embed.weight.unsqueeze(1).repeat(1, bs, 1)
    tgt = torch.zeros_like(query_embed)
    intermediate = []
    for layer in pr.decoder.layers:
        q = k = tgt + query_embed
        tgt = layer.norm1(tgt + layer.self_attn(q, k, value=tgt)[0])
        tgt2 = layer.multihead_attn(query=tgt + query_embed, key=src + pos, value=src)[0]
        tgt = layer.norm2(tgt + tgt2)
        tgt = layer.norm3(tgt + layer.linear2(F.relu(layer.linear1(tgt))))
        intermediate.append(pr.decoder.norm(tgt))
    hs = torch.stack(intermediate).transpose(1, 2)
    x_cls = pr.projection_layer(hs)
    x_cls = x_cls / x_cls.norm(dim=-1, keepdim=True)
    scale = pr.logit_scale.exp()
    logits = torch.cat((scale * x_cls @ text.t(), scale * x_cls @ pr.bg_feature.t()), -1)
    emb = hs
    for i, lin in enumerate(pr.mask_embed.layers):
        emb = F.relu(lin(emb)) if i < 2 else lin(emb)
    masks = torch.einsum("lbqc,bchw->lbqhw", emb, mask_features)
    return logits[-1], masks[-1]


def ref_boxes(binary_mask_preds, pad_h, pad_w):
    """The official cumsum/argmax tight-box trick."""
    sum_y = torch.sum(binary_mask_preds, dim=1)
    cumsum_x = torch.cumsum(sum_y, dim=1).float()
    xmaxs = torch.argmax(cumsum_x, dim=1, keepdim=True)
    cumsum_x[cumsum_x == 0] = np.inf
    xmins = torch.argmin(cumsum_x, dim=1, keepdim=True)
    sum_x = torch.sum(binary_mask_preds, dim=2)
    cumsum_y = torch.cumsum(sum_x, dim=1).float()
    ymaxs = torch.argmax(cumsum_y, dim=1, keepdim=True)
    cumsum_y[cumsum_y == 0] = np.inf
    ymins = torch.argmin(cumsum_y, dim=1, keepdim=True)
    areas = (ymaxs - ymins) * (xmaxs - xmins)
    ymaxs[areas == 0] = pad_h
    ymins[areas == 0] = 0
    xmaxs[areas == 0] = pad_w
    xmins[areas == 0] = 0
    return torch.cat((xmins, ymins, xmaxs, ymaxs), 1)


def ref_segment(m, images, names, seen, style, mode, calibrate, out_size):
    """Official MaskFormer.forward at test time (CLIP_CLASSIFICATION on), image by image."""
    size = m.config.image_size
    seen_idx = [i for i in range(len(names)) if seen[i]]
    unseen_idx = [i for i in range(len(names)) if not seen[i]]
    text = m.text_embeddings(names)
    text_clip = m.clip_text_embeddings(names)
    d = m.config.size_divisibility
    h, w = images.shape[-2:]
    ph, pw = int(math.ceil(h / d) * d), int(math.ceil(w / d) * d)

    def pad(batch):  # ImageList.from_tensors: zeros, then copy
        out = torch.zeros(batch.shape[0], 3, ph, pw)
        out[:, :, :h, :w] = batch
        return out

    clip_images = pad(torch.stack([(x - m.clip_pixel_mean) / m.clip_pixel_std for x in images]))
    norm = pad(torch.stack([(x - m.pixel_mean) / m.pixel_std for x in images]))
    mask_cls_results, mask_pred_results = ref_forward(m, norm, text)
    mask_pred_results = F.interpolate(mask_pred_results, size=(ph, pw), mode="bilinear", align_corners=False)
    m224 = F.interpolate(mask_pred_results, size=(size, size), mode="bilinear", align_corners=False)
    images_tensor = F.interpolate(clip_images, size=(size, size), mode="bilinear", align_corners=False)
    masked_image_tensors = images_tensor.unsqueeze(1) * (m224.sigmoid() > 0.5).unsqueeze(2)
    masked_ori = clip_images.unsqueeze(1) * (mask_pred_results.sigmoid() > 0.5).unsqueeze(2)
    bs, nq, c, hh, ww = masked_ori.shape
    repeat = clip_images.unsqueeze(1).repeat(1, nq, 1, 1, 1).reshape(bs * nq, c, hh, ww)
    masked_ori = masked_ori.reshape(bs * nq, c, hh, ww)
    binary = (mask_pred_results.sigmoid() > 0.5).reshape(bs * nq, hh, ww)
    boxes = ref_boxes(binary, ph, pw)
    boxes_list = [boxes[i].reshape(1, -1).float() for i in range(boxes.shape[0])]
    box_masked = torchvision.ops.roi_align(masked_ori, boxes_list, size, aligned=True).reshape(bs, nq, c, size, size)
    box_images = torchvision.ops.roi_align(repeat, boxes_list, size, aligned=True).reshape(bs, nq, c, size, size)
    results = []
    for i in range(bs):
        mask_cls = mask_cls_results[i]
        clip_in = {"cropmask": box_masked[i], "mask": masked_image_tensors[i], "crop": box_images[i]}[style]
        feats = m.clip_visual(clip_in)
        feats = feats / feats.norm(dim=-1, keepdim=True)
        lpi = m.clip_logit_scale.exp() * feats @ text_clip.t()
        lpi = torch.cat((lpi, mask_cls[:, -1].unsqueeze(1)), 1)
        if mode == "ensemble":
            lam = 2 / 3.0
            mask_cls = F.softmax(mask_cls, dim=-1)[..., :-1]
            lpi = F.softmax(lpi, dim=-1)[..., :-1]
            lpi[:, seen_idx] = lpi[:, seen_idx].mean(dim=1, keepdim=True)
            mask_cls[:, seen_idx] = torch.pow(mask_cls[:, seen_idx], lam) * torch.pow(lpi[:, seen_idx], 1 - lam)
            mask_cls[:, unseen_idx] = torch.pow(mask_cls[:, unseen_idx], 1 - lam) * torch.pow(lpi[:, unseen_idx], lam)
            r = torch.einsum("qc,qhw->chw", mask_cls, mask_pred_results[i].sigmoid())
        elif mode == "ensemble_all":
            lam = 2 / 3.0
            mask_cls = F.softmax(mask_cls, dim=-1)[..., :-1]
            lpi = F.softmax(lpi, dim=-1)[..., :-1]
            mask_cls = torch.pow(mask_cls, 1 - lam) * torch.pow(lpi, lam)
            r = torch.einsum("qc,qhw->chw", mask_cls, mask_pred_results[i].sigmoid())
        else:  # CLIP_CLASSIFICATION without ensembling: semantic_inference on the CLIP logits
            r = torch.einsum("qc,qhw->chw", F.softmax(lpi, dim=-1)[..., :-1], mask_pred_results[i].sigmoid())
        r = r[:, :h, :w].expand(1, -1, -1, -1)
        r = F.interpolate(r, size=out_size, mode="bilinear", align_corners=False)[0]
        if calibrate > 0:
            r[seen_idx, :, :] = r[seen_idx, :, :] - calibrate
        results.append(r)
    return torch.stack(results), mask_pred_results


# ---------------------------------------------------------------------- tests against the reference
def test_forward_matches_official_transcription(model):
    torch.manual_seed(1)
    images = torch.randn(2, 3, 64, 96)
    text = model.text_embeddings(NAMES)
    with torch.no_grad():
        out = model(images, text)
        ref_logits, ref_masks = ref_forward(model, images, text)
    assert out["pred_logits"].shape == (2, 8, 5) and out["pred_masks"].shape == (2, 8, 16, 24)
    assert len(out["aux_outputs"]) == model.config.dec_layers - 1
    torch.testing.assert_close(out["pred_logits"], ref_logits, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(out["pred_masks"], ref_masks, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize(
    "style,mode,calibrate",
    [
        ("cropmask", "ensemble", 0.1),
        ("crop", "ensemble", 0.0),
        ("mask", "ensemble_all", 0.1),
        ("cropmask", "clip_only", 0.0),
    ],
)
def test_segment_matches_official_per_image_loop(model, style, mode, calibrate):
    torch.manual_seed(2)
    images = torch.rand(2, 3, 50, 70) * 255  # padded to 64x96 inside
    with torch.no_grad():
        ref, masks = ref_segment(model, images, NAMES, SEEN, style, mode, calibrate, (61, 83))
        got = model.segment(
            images, NAMES, seen=SEEN, out_size=(61, 83), fusion=mode, clip_cls_style=style, calibration_bias=calibrate
        )
    binary = masks.sigmoid() > 0.5
    assert binary.any() and not binary.all(), "the test needs masks that are partly on"
    assert got.shape == (2, 4, 61, 83)
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-5)


def test_fusion_mode_none_is_query_classifier_only(model):
    images = torch.rand(1, 3, 40, 40) * 255
    with torch.no_grad():
        norm = model.pad((images - model.pixel_mean) / model.pixel_std)
        out = model(norm, model.text_embeddings(NAMES))
        masks = F.interpolate(out["pred_masks"], size=norm.shape[-2:], mode="bilinear", align_corners=False)
        want = torch.einsum("qc,qhw->chw", out["pred_logits"][0].softmax(-1)[:, :-1], masks[0].sigmoid())[
            None, :, :40, :40
        ]
        got = model.segment(images, NAMES, seen=SEEN, fusion="none", calibration_bias=0.0)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_mask_boxes_equal_the_official_cumsum_trick():
    g = torch.Generator().manual_seed(3)
    masks = torch.rand(12, 20, 30, generator=g) > 0.97
    masks[0] = False  # empty
    masks[1] = False
    masks[1, 3:9, 7] = True  # one column wide: zero area -> whole image
    masks[2] = False
    masks[2, 4, 5] = True  # one pixel
    masks[3] = True  # full
    masks[4] = False
    masks[4, 2:5, 10:20] = True
    got = mask_boxes(masks)
    want = ref_boxes(masks.clone(), 20, 30).float()
    torch.testing.assert_close(got, want)
    assert got[4].tolist() == [10.0, 2.0, 19.0, 4.0]


def test_synonyms_are_averaged(model):
    emb = model.text_embeddings(["sofa, couch"])
    enc = model.text_encoder
    t = QUERY_TEMPLATE_SETS["single"][0]
    parts = enc.encode_tokens(enc.tokenize([t.format("sofa"), t.format("couch")])).mean(0)
    torch.testing.assert_close(emb[0], parts / parts.norm())
    assert emb.shape == (1, model.embed_dim)


def test_bad_vocabularies_are_refused(model):
    with pytest.raises(ValueError, match="duplicate class name"):
        model.text_embeddings(["cat", "Cat"])
    with pytest.raises(ValueError, match="empty"):
        model.clip_text_embeddings([])


def test_seen_mask_by_name_and_bad_seen_shape(model):
    assert model.seen_mask(["aeroplane", "sheep", "dog"]).tolist() == [True, False, True]
    with pytest.raises(ValueError, match="seen mask"):
        model.segment(torch.rand(1, 3, 32, 32) * 255, NAMES, seen=torch.tensor([True]))


# ---------------------------------------------------------------------- CLIP precision (official fp16 on CUDA)
def test_clip_precision_official_default_and_fp16_option():
    import copy

    torch.manual_seed(0)
    auto = create_model("zegformer_tiny_test").eval()
    assert auto.config.clip_precision == "auto"
    assert auto.clip_dtype("cpu") == torch.float32 and auto.clip_dtype(torch.device("cuda")) == torch.float16
    fp32 = create_model("zegformer_tiny_test", clip_precision="fp32")
    assert fp32.clip_dtype(torch.device("cuda")) == torch.float32
    with pytest.raises(ValueError, match="clip_precision must be one of"):
        load_config("zegformer_tiny_test", clip_precision="bf16")

    half = create_model("zegformer_tiny_test", clip_precision="fp16").eval()
    half.load_state_dict(auto.state_dict())
    assert half.clip_dtype("cpu") == torch.float16
    crops = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        got = half.encode_crops(crops)
        want = F.normalize(copy.deepcopy(auto.clip_visual).half()(crops.half()), dim=-1, eps=0.0)
        ref32 = auto.encode_crops(crops)
    assert got.dtype == torch.float16 and torch.equal(got, want)  # the tower really ran in half precision
    assert 0 < (got.float() - ref32).abs().max() < 5e-3
    text16, text32 = half.text_embeddings(NAMES), auto.text_embeddings(NAMES)
    assert text16.dtype == torch.float32 and 0 < (text16 - text32).abs().max() < 5e-3
    assert all(p.dtype == torch.float32 for p in half.parameters())  # the model's own weights are untouched
    images = torch.rand(1, 3, 64, 96) * 255
    a, b = half.segment(images, NAMES), auto.segment(images, NAMES)
    assert a.dtype == torch.float32 and (a.argmax(1) == b.argmax(1)).float().mean() > 0.95


def test_fp16_template_ensemble_is_averaged_in_fp16_as_the_official():
    """Official ``zeroshot_classifier`` on half tensors: normalise, ``mean(dim=0)`` and normalise in fp16, then
    ``.float()``; averaging in fp32 instead gives other bits (so this comparison can fail)."""
    torch.manual_seed(0)
    half = create_model("zegformer_tiny_test", clip_precision="fp16").eval()
    names = ["cat", "potted plant", "dog, puppy"]
    got = half.clip_text_embeddings(names)
    tower = half._tower("text_encoder", torch.device("cpu"))
    want, fp32_mean = [], []
    with torch.no_grad():
        for name in names:
            prompts = [t.format(p) for t in CLIP_BRANCH_TEMPLATES for p in name.split(", ")]
            emb = tower.encode_tokens(tower.tokenize(prompts))  # fp16, rows normalised in fp16
            assert emb.dtype == torch.float16
            mean = emb.mean(dim=0)
            want.append((mean / mean.norm()).float())
            m32 = emb.float().mean(0)
            fp32_mean.append(m32 / m32.norm())
    assert torch.equal(got, torch.stack(want))
    assert not torch.equal(got, torch.stack(fp32_mean))
