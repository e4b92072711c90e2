"""CLIP-RC model: attention mask (cell by cell), region bridge, head, freezing, configs, bad input."""

from __future__ import annotations

import pytest
import torch
from test_cliprc_helpers import CLIPRC_TINY, make_tiny

from zsseg_rt.models import CLIPRC, ZegCLIP, create_model, load_cliprc_config
from zsseg_rt.models.cliprc.backbone import region_bridge_attention_mask


def _hand_mask(n: int, g: int, r: int) -> torch.Tensor:
    """Who may attend to whom, written out from the rules of the official ``gen_attention_mask``."""
    s = g // r
    hw = g * g
    size = 1 + n + hw + r * r

    def kind(i):
        if i == 0:
            return "cls"
        if i <= n:
            return "prompt"
        if i < 1 + n + hw:
            return "patch"
        return "bridge"

    def region_of(i):  # patch token -> its bridge index (row-major) or None
        p = i - 1 - n
        row, col = p // g, p % g
        if row // s >= r or col // s >= r:
            return None
        return (row // s) * r + col // s

    mask = torch.empty(size, size)
    for qi in range(size):
        for ki in range(size):
            kq, kk = kind(qi), kind(ki)
            if kq == "bridge":
                b = qi - (1 + n + hw)
                ok = ki == qi or (kk == "patch" and region_of(ki) == b)
            elif kq == "patch":
                ok = kk != "bridge" or region_of(qi) == ki - (1 + n + hw)
            else:  # cls, prompt
                ok = kk != "bridge"
            mask[qi, ki] = 0.0 if ok else float("-inf")
    return mask


@pytest.mark.parametrize("n,g,r", [(4, 8, 4), (0, 4, 2), (3, 6, 2), (2, 9, 4), (1, 4, 4)])
def test_attention_mask_matches_hand_built_mask_cell_by_cell(n, g, r):
    got = region_bridge_attention_mask(n, g, r)
    want = _hand_mask(n, g, r)
    assert got.shape == want.shape == (1 + n + g * g + r * r,) * 2
    assert torch.equal(torch.isinf(got), torch.isinf(want))
    assert torch.equal(got.nan_to_num(neginf=-1.0), want.nan_to_num(neginf=-1.0))


def test_full_size_mask_geometry():
    m = region_bridge_attention_mask(10, 32, 4)  # official VOC: 1 + 10 + 1024 + 16 tokens
    assert m.shape == (1051, 1051)
    bridges = m[-16:]
    assert ((bridges == 0).sum(1) == 8 * 8 + 1).all()  # 8x8 patch block + itself
    assert torch.isinf(m[:11, -16:]).all()  # CLS and prompts never see bridges
    patch_rows = m[11:-16]
    assert ((patch_rows[:, -16:] == 0).sum(1) == 1).all()  # each patch sees exactly its own bridge
    assert (patch_rows[:, :-16] == 0).all()
    # patch (row 9, col 17) -> block (1, 2) -> bridge 1*4+2
    assert m[11 + 9 * 32 + 17, 1051 - 16 + 6] == 0 and torch.isinf(m[11 + 9 * 32 + 17, 1051 - 16 + 5])


def test_model_uses_the_mask_one_layer_functional_check():
    """With one transformer layer, a bridge token only sees its own block, and CLS never sees bridges."""
    model = make_tiny(clip_cfg={"vision_cfg": {"layers": 1}})
    assert model.backbone.deep_layers == 0
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        g0, p0, r0, _ = model.encode_image(x)
        x2 = x.clone()
        x2[:, :, 0:16, 0:16] += 1.0  # patches of block (0, 0) only (2x2 patches of 8 px)
        g1, p1, r1, _ = model.encode_image(x2)
        assert not torch.allclose(r0[:, 0], r1[:, 0])
        torch.testing.assert_close(r0[:, 1:], r1[:, 1:], rtol=0, atol=0)
        model.backbone.region_level_bridge[5] += torch.randn(64)  # (a constant shift would vanish in ln_pre)
        g2, p2, r2, _ = model.encode_image(x)
    torch.testing.assert_close(g0, g2, rtol=0, atol=0)  # CLS never attends to bridges
    assert not torch.allclose(r0[:, 5], r2[:, 5])
    torch.testing.assert_close(r0[:, :5], r2[:, :5], rtol=0, atol=0)
    # only the 4 patches of block 5 = (1, 1) (patch rows 2-3, cols 2-3) changed
    changed = (p0 - p2).abs().amax(-1)[0] > 0
    expect = torch.zeros(8, 8, dtype=torch.bool)
    expect[2:4, 2:4] = True
    assert torch.equal(changed, expect.reshape(-1))


def test_forward_shapes_and_region_bridge_init():
    model = create_model(CLIPRC_TINY)
    assert isinstance(model, CLIPRC) and isinstance(model, ZegCLIP) and model.family == "cliprc"
    bb = model.backbone
    torch.testing.assert_close(bb.region_level_bridge, (bb.class_embedding + bb.positional_embedding[0]).expand(16, -1))
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        g, p, r, grid = model.encode_image(x)
        logits = model(x, torch.randn(5, 32))
    assert g.shape == (2, 32) and p.shape == (2, 64, 32) and r.shape == (2, 16, 32) and grid == (8, 8)
    for t in (g, p, r):
        torch.testing.assert_close(t.norm(dim=-1), torch.ones(t.shape[:-1]))
    assert logits.shape == (2, 5, 8, 8)
    assert model.last_recovery is None


def test_head_matches_a_direct_transcription_of_the_official_forward():
    model = make_tiny()
    head = model.decode_head
    x = torch.randn(2, 3, 64, 64)
    text = torch.nn.functional.normalize(torch.randn(3, 32), dim=-1)
    with torch.no_grad():
        g, p, r, grid = model.encode_image(x)
        got = model.decode(text, g, p, r, grid)
        # transcription: combine_token with einsum, lateral with a [B,D,4,4] map, sequential fusion sum
        b, d = g.shape
        rlb = r.transpose(1, 2).reshape(b, d, 4, 4)
        rl = rlb.reshape(b, d, -1).transpose(1, 2)
        tt = text.expand(b, -1, -1)
        mixed = torch.einsum("bld,bcd->blcd", rl + g.unsqueeze(1).expand(-1, 16, -1), tt).reshape(b, -1, d)
        plain = tt.unsqueeze(1).expand(-1, 16, -1, -1).reshape(b, -1, d)
        q = head.q_proj(torch.cat([mixed, plain], -1))
        up = torch.nn.functional.interpolate(rlb, size=(8, 8), mode="bilinear", align_corners=False)
        lat = torch.cat([up.reshape(b, d, 64).transpose(1, 2), g.unsqueeze(1).expand(b, 64, -1), p], -1)
        lat = head.lateral_proj(lat)
        for i in range(3):
            q, lat = head.decoder_q.layers[i](q, lat)[0], head.decoder_v.layers[i](lat, q)[0]
        attn = q @ lat.transpose(-2, -1)  # [B, 16C, HW]
        fused = attn[:, :3].clone()
        for i in range(1, 16):
            fused += attn[:, i * 3 : (i + 1) * 3]
        want = (fused / 16.0).reshape(b, 3, 8, 8)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_classes_are_coupled_but_order_free():
    model = make_tiny()
    x = torch.randn(1, 3, 64, 64)
    t = torch.randn(4, 32)
    with torch.no_grad():
        base = model(x, t)
        perm = model(x, t[[2, 0, 3, 1]])
        more = model(x, torch.cat([t, torch.randn(1, 32)]))
    torch.testing.assert_close(perm, base[:, [2, 0, 3, 1]], rtol=1e-4, atol=1e-4)
    assert not torch.allclose(more[:, :4], base, atol=1e-4)  # documented: scores depend on the vocabulary


def test_official_freezing_and_bridge_option():
    model = create_model(CLIPRC_TINY)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert "backbone.region_level_bridge" not in trainable  # official: name lacks "prompt"
    assert {n for n in trainable if n.startswith("backbone.")} == {
        "backbone.prompt_embeddings",
        "backbone.deep_prompt_embeddings",
        "backbone.prompt_proj.weight",
        "backbone.prompt_proj.bias",
        "backbone.prompt_norm.weight",
        "backbone.prompt_norm.bias",
    }
    assert all(p.requires_grad for n, p in model.named_parameters() if n.startswith("decode_head."))
    assert not any(p.requires_grad for n, p in model.named_parameters() if n.startswith("text_encoder."))
    opt = create_model(CLIPRC_TINY, train_region_bridge=True)
    assert opt.backbone.region_level_bridge.requires_grad
    assert opt.num_learnable_parameters() == model.num_learnable_parameters() + 16 * 64


def test_full_size_learnable_parameter_counts():
    voc = CLIPRC(load_cliprc_config("cliprc_vitb16_voc_inductive"), device="meta")
    coco = CLIPRC(load_cliprc_config("cliprc_vitb16_coco_inductive"), device="meta")
    prompts_voc = 10 * 768 + 11 * 10 * 768 + 768 * 768 + 768 + 2 * 768
    tpn = 4 * (512 * 512 + 512) + (512 * 2048 + 2048) + (2048 * 512 + 512) + 4 * 512
    head = (
        8 * tpn
        + 2 * (512 * 512 + 512)
        + (512 * 1024 + 1024)
        + (512 * 512 + 512)
        + (1536 * 512 + 512)
        + (1024 * 512 + 512)
    )
    assert voc.num_learnable_parameters() == prompts_voc + head == 28_528_384
    assert coco.num_learnable_parameters() == 29_357_824
    unused = 8 * ((3 * 512 * 512 + 3 * 512) + (512 * 512 + 512) + 2 * 512)
    assert voc.num_learnable_parameters(count_official_unused=True) == 28_528_384 + unused == 36_941_568


def test_configs_follow_the_official_release():
    want = {  # (prompts, mask, dice, recovery, iterations, calibration)
        "cliprc_vitb16_voc_inductive": (10, 100.0, 1.0, 2.0, 40000, 0.1),
        "cliprc_vitb16_voc_transductive": (10, 100.0, 1.0, 2.0, 20000, 0.0),
        "cliprc_vitb16_voc_fully": (10, 100.0, 1.0, 0.0, 40000, 0.1),
        "cliprc_vitb16_coco_inductive": (100, 200.0, 3.0, 50.0, 80000, 0.1),
        "cliprc_vitb16_coco_transductive": (100, 200.0, 3.0, 50.0, 40000, 0.0),
        "cliprc_vitb16_coco_fully": (100, 100.0, 1.5, 1.0, 80000, 0.1),
    }
    for name, (n, mw, dw, rw, iters, cal) in want.items():
        c = load_cliprc_config(name)
        assert (
            c.num_prompt_tokens,
            c.loss["mask_weight"],
            c.loss["dice_weight"],
            c.loss["recovery_weight"],
            c.schedule["iterations"],
            c.calibration_bias,
        ) == (n, mw, dw, rw, iters, cal), name
        assert c.region_bridge_size == 16 and c.image_size == 512 and c.crop_size == 512 and c.stride == 426
        assert c.region_stride == 8 and not c.train_region_bridge and "whole vocabulary" in c.notes
    assert "inductive" in load_cliprc_config("cliprc_vitb16_voc_transductive").schedule["init_from"]
    assert load_cliprc_config("cliprc-vitb16-voc").name == "cliprc_vitb16_voc_inductive"
    assert load_cliprc_config("cliprc-vitb16-coco-transductive").name == "cliprc_vitb16_coco_transductive"
    assert isinstance(create_model("zegclip_tiny_test"), ZegCLIP) and not isinstance(
        create_model("zegclip_tiny_test"), CLIPRC
    )
    with pytest.raises(ValueError, match="crop_size must equal"):
        load_cliprc_config(CLIPRC_TINY, crop_size=32)
    with pytest.raises(ValueError, match="square"):
        load_cliprc_config(CLIPRC_TINY, region_bridge_size=12)
    with pytest.raises(ValueError, match="smaller than"):
        load_cliprc_config(CLIPRC_TINY, region_bridge_size=81)
    with pytest.raises(FileNotFoundError, match="bundled"):
        load_cliprc_config("cliprc-vitb16-ade")


def test_bad_images_and_vocabularies():
    model = create_model(CLIPRC_TINY)
    t = torch.randn(3, 32)
    with pytest.raises(ValueError, match="64x64 inputs only.*sliding windows"):
        model(torch.randn(1, 3, 128, 128), t)
    with pytest.raises(ValueError, match="64x64 inputs only"):
        model(torch.randn(1, 3, 32, 64), t)
    with pytest.raises(ValueError, match="not a positive multiple of the patch size"):
        model(torch.randn(1, 3, 60, 64), t)
    with pytest.raises(ValueError, match="3 channels"):
        model(torch.randn(1, 1, 64, 64), t)
    with pytest.raises(TypeError, match="floating-point"):
        model(torch.zeros(1, 3, 64, 64, dtype=torch.uint8), t)
    with pytest.raises(ValueError, match="zero classes"):
        model(torch.randn(1, 3, 64, 64), torch.randn(0, 32))
    with pytest.raises(ValueError, match="embed_dim"):
        model(torch.randn(1, 3, 64, 64), torch.randn(3, 16))
    with pytest.raises(ValueError, match="duplicate"):
        model.text_embeddings(["cat", "Cat"])
    with pytest.raises(ValueError, match="empty"):
        model.text_embeddings([])


def test_clip_weights_fill_towers_and_initialise_bridges(tmp_path):
    from safetensors.torch import save_file

    from zsseg_rt.contract.common.clip import build_clip

    cfg = load_cliprc_config(CLIPRC_TINY)
    torch.manual_seed(5)
    clip = build_clip(cfg)
    sd = {k: v.detach().clone().contiguous() for k, v in clip.state_dict().items()}
    save_file(sd, str(tmp_path / "clip.safetensors"))
    model = create_model(CLIPRC_TINY, pretrained=str(tmp_path / "clip.safetensors"))
    torch.testing.assert_close(model.backbone.conv1.weight, sd["visual.conv1.weight"])
    torch.testing.assert_close(model.text_encoder.token_embedding.weight, sd["token_embedding.weight"])
    want = sd["visual.class_embedding"] + sd["visual.positional_embedding"][0]
    torch.testing.assert_close(model.backbone.region_level_bridge, want.expand(16, -1))


def test_text_used_as_given_unless_renormalize_option():
    model = make_tiny()
    x = torch.randn(1, 3, 64, 64)
    unit = torch.nn.functional.normalize(torch.randn(3, 32), dim=-1)
    with torch.no_grad():
        g, p, r, grid = model.encode_image(x)
        as_given = model.decode(3.0 * unit, g, p, r, grid)
        unit_logits = model.decode(unit, g, p, r, grid)
        assert not torch.allclose(as_given, unit_logits, atol=1e-3)  # official combine_token: no normalisation
        model.config.renormalize_text = True
        try:
            torch.testing.assert_close(model.decode(3.0 * unit, g, p, r, grid), unit_logits, rtol=1e-5, atol=1e-6)
        finally:
            model.config.renormalize_text = False
