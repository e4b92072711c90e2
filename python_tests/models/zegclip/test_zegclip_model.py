"""ZegCLIP forward semantics against an independent transcription of the official code."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from zeg_helpers import TINY, randomize_

from zsseg_rt.models import ZegCLIP, create_model, load_config


# ----------------------------------------------------------------------------------------------------------
# Independent reference: the official VPTCLIPVisionTransformer.forward / forward_deep_prompt and
# ATMSingleHeadSeg.forward transcribed with explicit math (sequence-first layout as in the official code).
# ----------------------------------------------------------------------------------------------------------
def _ln(x, mod):
    return F.layer_norm(x, mod.normalized_shape, mod.weight, mod.bias, mod.eps)


def _clip_block(x, blk, heads):  # x: [L, B, W]; OpenAI ResidualAttentionBlock with QuickGELU
    l, b, w = x.shape
    y = _ln(x, blk.ln_1)
    qkv = y @ blk.attn.in_proj_weight.T + blk.attn.in_proj_bias
    q, k, v = qkv.split(w, dim=-1)
    hd = w // heads

    def split(t):
        return t.reshape(l, b * heads, hd).transpose(0, 1)

    att = (split(q) * hd**-0.5) @ split(k).transpose(1, 2)
    o = att.softmax(-1) @ split(v)
    o = o.transpose(0, 1).reshape(l, b, w)
    x = x + (o @ blk.attn.out_proj.weight.T + blk.attn.out_proj.bias)
    y = _ln(x, blk.ln_2)
    y = y @ blk.mlp.c_fc.weight.T + blk.mlp.c_fc.bias
    y = y * torch.sigmoid(1.702 * y)
    return x + (y @ blk.mlp.c_proj.weight.T + blk.mlp.c_proj.bias)


def official_reference(model: ZegCLIP, img: torch.Tensor, text: torch.Tensor, heads_vit: int):
    bb = model.backbone
    x = F.conv2d(img, bb.conv1.weight, stride=bb.patch_size)
    b, c, h, w = x.shape
    x = x.reshape(b, c, -1).permute(0, 2, 1)
    x = torch.cat([bb.class_embedding + torch.zeros(b, 1, c), x], dim=1)
    pos = bb.positional_embedding
    s = bb.grid[0]
    cls_pos = pos[0, :] + bb.class_embedding  # the quirk
    spatial = F.interpolate(pos[1:].reshape(1, s, s, c).permute(0, 3, 1, 2), size=(h, w), mode="bilinear")
    spatial = spatial.reshape(1, c, h * w).permute(0, 2, 1)
    x = x + torch.cat([cls_pos.reshape(1, 1, c), spatial], dim=1)
    x = _ln(x, bb.ln_pre)
    proj = lambda p: p @ bb.prompt_proj.weight.T + bb.prompt_proj.bias  # noqa: E731
    x = torch.cat((x[:, :1, :], proj(bb.prompt_embeddings).expand(b, -1, -1), x[:, 1:, :]), dim=1)
    x = x.permute(1, 0, 2)
    n = bb.num_tokens
    for i, blk in enumerate(bb.transformer.resblocks):
        if i == 0:
            hs = _clip_block(x, blk, heads_vit)
        else:
            deep = proj(bb.deep_prompt_embeddings[i - 1]).expand(b, -1, -1).permute(1, 0, 2)
            hs = torch.cat((hs[:1], deep, hs[1 + n :]), dim=0)
            hs = _clip_block(hs, blk, heads_vit)
    x = _ln(hs, bb.prompt_norm).permute(1, 0, 2)
    x = _ln(x, bb.ln_post) @ bb.proj
    g = x[:, 0]
    vis = x[:, -(h * w) :].reshape(b, h, w, -1).permute(0, 3, 1, 2)
    vis = vis / vis.norm(dim=1, keepdim=True)
    g = g / g.norm(dim=1, keepdim=True)
    # decode head (get_qs + TPN decoder, sequence-first as in the official code)
    head = model.decode_head
    tq = text.expand(b, -1, -1)  # official get_qs: the embeddings exactly as given (no re-normalisation)
    q = torch.cat((torch.einsum("bd,bcd->bcd", g, tq), tq), dim=-1) @ head.q_proj.weight.T + head.q_proj.bias
    q = q.transpose(0, 1)  # [C, B, D]
    mem = vis.flatten(-2).transpose(-1, -2).transpose(0, 1)  # [HW, B, D]
    attns = []
    for layer in head.layers:
        a = layer.multihead_attn
        xq, xk = q.transpose(0, 1), mem.transpose(0, 1)
        bq, nq, cq = xq.shape
        nh = a.num_heads
        qq = (xq @ a.q.weight.T + a.q.bias).reshape(bq, nq, nh, cq // nh).permute(0, 2, 1, 3)
        kk = (xk @ a.k.weight.T + a.k.bias).reshape(bq, -1, nh, cq // nh).permute(0, 2, 1, 3)
        vv = (xk @ a.v.weight.T + a.v.bias).reshape(bq, -1, nh, cq // nh).permute(0, 2, 1, 3)
        att = (qq @ kk.transpose(-2, -1)) * (cq // nh) ** -0.5
        att_save = att.sum(dim=1) / nh
        o = (att.softmax(-1) @ vv).transpose(1, 2).reshape(bq, nq, cq) @ a.proj.weight.T + a.proj.bias
        tgt = _ln(q + o.transpose(0, 1), layer.norm2)
        ff = F.relu(tgt @ layer.linear1.weight.T + layer.linear1.bias) @ layer.linear2.weight.T + layer.linear2.bias
        q = _ln(tgt + ff, layer.norm3)
        attns.append(att_save)
    last = attns[-1].transpose(-1, -2)  # [B, HW, C]
    nb, hw, cc = last.shape
    return g, vis, last.transpose(1, 2).reshape(nb, cc, h, w)


def test_forward_matches_official_transcription(tiny_model, tiny_images, tiny_text):
    heads = tiny_model.config.width // 32  # tiny config: head_width 32
    tiny_text = F.normalize(tiny_text, dim=-1)  # as the text encoder / official .npy files provide them
    with torch.no_grad():
        g_ref, vis_ref, logits_ref = official_reference(tiny_model, tiny_images, tiny_text, heads)
        g, patches, grid = tiny_model.encode_image(tiny_images)
        logits = tiny_model(tiny_images, tiny_text)
    assert grid == (4, 4)
    torch.testing.assert_close(g, g_ref, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(patches, vis_ref.flatten(2).transpose(1, 2), rtol=1e-4, atol=1e-5)
    assert logits.shape == (2, 5, 4, 4)
    # fp32, ~10 matmuls deep: 1e-4 relative is rounding, a semantic slip (scale, head mean, order) is O(1)
    torch.testing.assert_close(logits, logits_ref, rtol=1e-4, atol=1e-4)


def test_text_used_as_given_unless_renormalize_option(tiny_model, tiny_images, tiny_text):
    unit = F.normalize(tiny_text, dim=-1)
    with torch.no_grad():
        g, p, grid = tiny_model.encode_image(tiny_images)
        as_given = tiny_model.decode(3.0 * unit, g, p, grid)
        unit_logits = tiny_model.decode(unit, g, p, grid)
    assert tiny_model.config.renormalize_text is False
    assert not torch.allclose(as_given, unit_logits, atol=1e-3)  # official: no re-normalisation inside the head
    fixed = create_model(TINY, renormalize_text=True)
    fixed.load_state_dict(tiny_model.state_dict())
    with torch.no_grad():
        renorm = fixed.eval().decode(3.0 * unit, g, p, grid)
    torch.testing.assert_close(renorm, unit_logits, rtol=1e-5, atol=1e-6)


def test_outputs_are_normalised_and_cls_quirk_is_default(tiny_model, tiny_images):
    with torch.no_grad():
        g, p, _ = tiny_model.encode_image(tiny_images)
    torch.testing.assert_close(g.norm(dim=-1), torch.ones(2))
    torch.testing.assert_close(p.norm(dim=-1), torch.ones(2, 16))
    assert tiny_model.config.fix_double_class_embedding is False
    fixed = create_model(TINY, fix_double_class_embedding=True)
    fixed.load_state_dict(tiny_model.state_dict())
    with torch.no_grad():
        g2, _, _ = fixed.eval().encode_image(tiny_images)
        # the fix equals the quirk model with class_embedding removed from the CLS position once
        tokens_fixed, _, _ = fixed.backbone.forward_tokens(tiny_images)
    assert not torch.allclose(g, g2, atol=1e-3)
    pos_q = tiny_model.backbone._positional(4, 4, torch.float32)
    pos_f = fixed.backbone._positional(4, 4, torch.float32)
    torch.testing.assert_close(pos_q[0, 0] - pos_f[0, 0], tiny_model.backbone.class_embedding.detach())
    torch.testing.assert_close(pos_q[0, 1:], pos_f[0, 1:])


def test_positional_embedding_resize_and_non_square_grid(tiny_model):
    bb = tiny_model.backbone
    assert bb.positional_embedding.shape == (1 + 16, 64)  # stored at the training grid 4x4 (64 px / 16)
    pos = bb._positional(4, 4, torch.float32)
    torch.testing.assert_close(pos[0, 1:], bb.positional_embedding[1:].detach())  # identity at the training grid
    pos = bb._positional(3, 6, torch.float32)
    ref = (
        F.interpolate(
            bb.positional_embedding[1:].detach().reshape(1, 4, 4, 64).permute(0, 3, 1, 2),
            size=(3, 6),
            mode="bilinear",
            align_corners=False,
        )
        .reshape(64, 18)
        .T
    )
    torch.testing.assert_close(pos[0, 1:], ref)
    x = torch.randn(1, 3, 48, 96)
    text = torch.randn(3, 32)
    with torch.no_grad():
        logits = tiny_model(x, text)
        # a non-square grid keeps row-major (h, w) order: same as the reference generalised to (h, w)
        _, _, ref_logits = official_reference(tiny_model, x, text, tiny_model.config.width // 32)
    assert logits.shape == (1, 3, 3, 6)
    torch.testing.assert_close(logits, ref_logits, rtol=1e-4, atol=1e-4)


def test_class_count_independence(tiny_model, tiny_images, tiny_text):
    with torch.no_grad():
        all_logits = tiny_model(tiny_images, tiny_text)
        for c in range(tiny_text.shape[0]):
            alone = tiny_model(tiny_images, tiny_text[c : c + 1])
            torch.testing.assert_close(alone[:, 0], all_logits[:, c], rtol=1e-5, atol=1e-5)
        # a batched [B, C, D] text input gives the same as the shared one
        batched = tiny_model(tiny_images, tiny_text.expand(2, -1, -1))
    torch.testing.assert_close(batched, all_logits, rtol=1e-5, atol=1e-5)


def test_gradients_reach_only_prompts_and_head(tiny_images):
    from zsseg_rt.models.zegclip.losses import zegclip_loss

    model = create_model(TINY)
    randomize_(model, seed=5)
    model.freeze().train()
    labels = torch.randint(0, 5, (2, 64, 64))
    labels[:, :8] = 255
    out = zegclip_loss(model(tiny_images, torch.randn(5, 32)), labels, pred_size=64)
    out["loss"].backward()
    with_grad = {n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert with_grad <= trainable
    assert all(n.startswith("decode_head.") or "prompt" in n for n in trainable)
    assert not any(n.startswith("text_encoder.") for n in trainable)
    for must in (
        "backbone.prompt_embeddings",
        "backbone.deep_prompt_embeddings",
        "backbone.prompt_proj.weight",
        "backbone.prompt_norm.weight",
        "decode_head.q_proj.weight",
        "decode_head.layers.0.linear1.weight",
        "decode_head.layers.2.multihead_attn.k.weight",
    ):
        assert must in with_grad, must
    # as in the official code, the last layer's output path is unused and receives no gradient
    assert "decode_head.layers.2.linear1.weight" not in with_grad


def test_full_size_learnable_parameter_counts():
    voc = ZegCLIP(load_config("zegclip_vitb16_voc_inductive"), device="meta")
    coco = ZegCLIP(load_config("zegclip_vitb16_coco_inductive"), device="meta")
    # README: 13.8M (VOC) and 14.6M (COCO) learnable parameters, counted with the unused decoder self_attn
    assert voc.num_learnable_parameters(count_official_unused=True) == 13_821_184
    assert coco.num_learnable_parameters(count_official_unused=True) == 14_650_624
    assert voc.num_learnable_parameters() == 13_821_184 - 3 * (4 * 512 * 512 + 4 * 512 + 2 * 512)
    assert voc.backbone.positional_embedding.shape == (1025, 768)
    assert voc.backbone.deep_prompt_embeddings.shape == (11, 10, 768)


@pytest.mark.parametrize("clip_model,image_size,grid", [("ViT-B-32", 512, 16), ("ViT-L-14", 224, 16)])
def test_other_open_clip_towers_build(clip_model, image_size, grid):
    cfg = load_config("zegclip_vitb16_voc_inductive", clip_model=clip_model, image_size=image_size)
    m = ZegCLIP(cfg, device="meta")
    assert m.backbone.positional_embedding.shape[0] == grid * grid + 1
    assert m.decode_head.q_proj.in_features == 2 * cfg.embed_dim
    assert m.backbone.deep_prompt_embeddings.shape[0] == cfg.layers - 1


def test_vit_b32_real_forward_at_224():
    model = create_model("zegclip_vitb16_voc_inductive", clip_model="ViT-B-32", image_size=224)
    with torch.no_grad():
        logits = model(torch.randn(1, 3, 224, 224), torch.randn(2, 512))
    assert logits.shape == (1, 2, 7, 7)
    assert torch.isfinite(logits).all()


def test_patch8_config_and_eval_is_deterministic():
    model = create_model("zegclip_tiny_p8_test")
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        a = model(x, torch.ones(2, 32))
        b = model(x, torch.ones(2, 32))
    assert a.shape == (1, 2, 4, 4)
    torch.testing.assert_close(a, b, rtol=0, atol=0)  # dropout is off in eval


# ------------------------------------------------------------------ bad input
def test_bad_images(tiny_model, tiny_text):
    with pytest.raises(ValueError, match="rank 4"):
        tiny_model(torch.randn(3, 64, 64), tiny_text)
    with pytest.raises(ValueError, match="3 channels"):
        tiny_model(torch.randn(1, 4, 64, 64), tiny_text)
    with pytest.raises(TypeError, match="floating-point"):
        tiny_model(torch.zeros(1, 3, 64, 64, dtype=torch.uint8), tiny_text)
    with pytest.raises(ValueError, match="multiple of the patch size"):
        tiny_model(torch.randn(1, 3, 70, 64), tiny_text)
    with pytest.raises(ValueError, match="multiple of the patch size"):
        tiny_model(torch.randn(1, 3, 8, 64), tiny_text)


def test_bad_text(tiny_model, tiny_images):
    with pytest.raises(ValueError, match="zero classes"):
        tiny_model(tiny_images, torch.zeros(0, 32))
    with pytest.raises(ValueError, match="embed_dim"):
        tiny_model(tiny_images, torch.zeros(3, 31))
    with pytest.raises(ValueError, match="empty"):
        tiny_model.text_embeddings([])
    with pytest.raises(ValueError, match="duplicate class name"):
        tiny_model.text_embeddings(["cat", "dog", "Cat"])
    with pytest.raises(ValueError, match="text batch"):
        tiny_model(tiny_images, torch.zeros(3, 4, 32))


def test_config_errors():
    with pytest.raises(FileNotFoundError, match="bundled"):
        load_config("no_such_config")
    with pytest.raises(ValueError, match="unknown config keys"):
        load_config(TINY, not_a_key=1)
    with pytest.raises(ValueError, match="multiple of the patch size"):
        load_config(TINY, image_size=70)
    with pytest.raises(ValueError, match="setting"):
        load_config(TINY, setting="semi")
