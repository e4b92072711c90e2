"""ZeroSeg student: grouping invariants (one-hot hard rows, sums to 1, straight-through gradient), MAE masking
(exact visible count, restore order), shapes of every output, config validation and registry entry."""

from __future__ import annotations

import pytest
import torch

from zsseg_rt.models import create_model, family_of, list_configs, load_config
from zsseg_rt.models.zeroseg.grouping import AssignAttention, GroupingBlock, assignment, hard_softmax
from zsseg_rt.models.zeroseg.model import patchify, random_masking, sincos_pos_embed_2d

TINY = "zeroseg_tiny_test"


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return create_model(TINY)


def test_registry_and_bundled_configs():
    assert family_of(TINY) == "zeroseg"
    assert set(list_configs("zeroseg")) >= {TINY, "zeroseg_vitb16_in1k"}
    cfg = load_config("zeroseg_vitb16_in1k")
    # the paper's stated numbers
    assert (cfg.mask_ratio, cfg.encoder_layers, cfg.decoder_layers) == (0.6, 12, 8)
    assert sum(cfg.seg_depths) == 5 and cfg.seg_depths[:2] == [2, 2] and cfg.num_group_tokens == [32, 8]
    assert cfg.num_views == 30 and cfg.clip_model == "ViT-L-14" and cfg.embed_dim == 768


@pytest.mark.parametrize(
    "override, match",
    [
        ({"mask_ratio": 1.0}, "mask_ratio"),
        ({"seg_depths": [2, 2]}, "seg_depths"),
        ({"teacher_grids": [2, 1]}, "start with 1"),
        ({"teacher_grids": [1]}, "local crop"),
        ({"loss": {"l1_reduction": "max"}}, "l1_reduction"),
        ({"loss": {"bogus": 1}}, "unknown ZeroSeg loss keys"),
        ({"seg_head_input": "all"}, "seg_head_input"),
    ],
)
def test_config_refuses_bad_values(override, match):
    with pytest.raises(ValueError, match=match):
        load_config(TINY, **override)


def test_hard_softmax_is_one_hot_with_straight_through_gradient():
    torch.manual_seed(1)
    logits = torch.randn(2, 5, 7, requires_grad=True)  # [B, S groups, N tokens]
    a = hard_softmax(logits, dim=-2)
    assert torch.equal(a.detach().sum(dim=-2), torch.ones(2, 7))
    assert set(a.detach().unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(a.detach().argmax(-2), logits.detach().argmax(-2))
    w = torch.randn(2, 5, 7)
    (a * w).sum().backward()
    soft = logits.detach().softmax(-2)
    # straight-through: the gradient is exactly the softmax's Jacobian-vector product
    expected = soft * (w - (soft * w).sum(dim=-2, keepdim=True))
    torch.testing.assert_close(logits.grad, expected, rtol=1e-5, atol=1e-6)


def test_gumbel_assignment_only_while_training():
    torch.manual_seed(2)
    logits = torch.randn(1, 4, 50)
    train = assignment(logits, hard=True, gumbel=True, tau=1.0, training=True)
    evals = assignment(logits, hard=True, gumbel=True, tau=1.0, training=False)
    assert torch.equal(train.sum(-2), torch.ones(1, 50)) and torch.equal(evals.sum(-2), torch.ones(1, 50))
    assert torch.equal(evals.argmax(-2), logits.argmax(-2))  # deterministic without noise
    assert not torch.equal(train.argmax(-2), logits.argmax(-2))  # Gumbel noise changes some of 50 choices


def test_assign_attention_averages_assigned_tokens():
    torch.manual_seed(3)
    attn = AssignAttention(8, hard=True, gumbel=False, assign_eps=0.0).eval()
    groups, tokens = torch.randn(1, 3, 8), torch.randn(1, 10, 8)
    out, maps = attn(groups, tokens)
    hard = maps["hard"][0]  # [3, 10]
    v = attn.v_proj(tokens)[0]
    for s in range(3):
        members = hard[s] > 0.5
        if members.any():  # with eps 0 a group's output is the mean value of its tokens
            expected = attn.proj(v[members].mean(0))
            torch.testing.assert_close(out[0, s], expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(maps["soft"].sum(-2), torch.ones(1, 10))


def test_grouping_block_shapes_and_gradient_reaches_tokens():
    torch.manual_seed(4)
    block = GroupingBlock(16, 2, num_group_tokens=4).train()
    x = torch.randn(2, 12, 16, requires_grad=True)
    g = torch.randn(2, 4, 16, requires_grad=True)
    out, maps = block(x, g)
    assert out.shape == (2, 4, 16) and maps["hard"].shape == (2, 4, 12)
    rows = maps["hard"].detach().sum(-2)
    assert torch.allclose(rows, torch.ones_like(rows))  # every token assigned to exactly one group
    out.square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0 and g.grad.abs().sum() > 0


def test_random_masking_counts_and_restore_order():
    torch.manual_seed(5)
    x = torch.arange(2 * 196, dtype=torch.float32).reshape(2, 196, 1).expand(-1, -1, 3).contiguous()
    vis, mask, ids_restore, ids_keep = random_masking(x, 0.6)
    assert vis.shape == (2, 78, 3)  # int(196 * 0.4)
    assert torch.equal(mask.sum(1), torch.full((2,), 196.0 - 78))
    for b in range(2):
        assert torch.equal(vis[b, :, 0], x[b, ids_keep[b], 0])  # visible = kept originals
        assert torch.equal(mask[b, ids_keep[b]], torch.zeros(78))  # kept patches are unmasked
        # un-shuffling a full shuffled sequence with ids_restore recovers the original order
        shuffled = torch.cat([ids_keep[b], torch.nonzero(mask[b]).flatten()])
        order = torch.argsort(shuffled)
        assert torch.equal(shuffled[order], torch.arange(196))
    assert torch.equal(torch.sort(ids_restore[0]).values, torch.arange(196))


def test_restore_with_mask_token_reproduces_original_positions():
    from zsseg_rt.models.zeroseg.model import unshuffle_with_mask_token

    torch.manual_seed(6)
    x = torch.randn(3, 20, 4)
    vis, mask, ids_restore, _ = random_masking(x, 0.5)
    full = unshuffle_with_mask_token(vis, torch.full((1, 1, 4), 99.0), ids_restore)
    keep = ~mask.bool()
    assert torch.equal(full[keep], x[keep])
    assert torch.all(full[mask.bool()] == 99.0)


def test_patchify_and_sincos():
    img = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8)
    p = patchify(img, 4)
    assert p.shape == (2, 4, 48)
    # patch 1 is the top-right 4x4 block, pixel (0, 0) channel 2 sits at index (0*4+0)*3+2
    assert p[0, 1, 2] == img[0, 2, 0, 4]
    t = sincos_pos_embed_2d(16, 3)
    assert t.shape == (9, 16) and torch.allclose(t[:, :4].square() + t[:, 4:8].square(), torch.ones(9, 4))


def test_model_train_and_inference_shapes(tiny):
    cfg = tiny.config
    torch.manual_seed(7)
    x = torch.randn(3, 3, 64, 64)
    tiny.train()
    out = tiny.forward_train(x)
    n_vis = int(cfg.grid_size**2 * (1 - cfg.mask_ratio))
    assert out["segment_features"].shape == (3, cfg.num_segments, cfg.embed_dim)
    assert out["global_feature"].shape == (3, cfg.embed_dim)
    assert out["pred_patches"].shape == (3, cfg.grid_size**2, cfg.patch_size**2 * 3)
    assert torch.equal(out["mask"].sum(1), torch.full((3,), float(cfg.grid_size**2 - n_vis)))
    a1, a2 = out["assignments"]
    assert a1["hard"].shape == (3, cfg.num_group_tokens[0], n_vis)  # stage 1 sees only the visible patches
    assert a2["hard"].shape == (3, cfg.num_group_tokens[1], cfg.num_group_tokens[0])
    for a in (a1, a2):
        h = a["hard"].detach()
        assert set(h.unique().tolist()) <= {0.0, 1.0} and torch.allclose(h.sum(-2), torch.ones_like(h.sum(-2)))
    tiny.eval()
    seg, glob, maps = tiny(x)
    assert seg.shape == (3, cfg.num_segments, cfg.embed_dim) and glob.shape == (3, cfg.embed_dim)
    assert maps.shape == (3, cfg.num_segments, cfg.grid_size, cfg.grid_size)
    torch.testing.assert_close(maps.sum(1), torch.ones(3, cfg.grid_size, cfg.grid_size))  # soft maps: partition
    assert seg.std() > 1e-3 and maps.std() > 1e-3  # tiny random model is not degenerate


def test_inference_at_another_size_interpolates_positions(tiny):
    tiny.eval()
    seg, glob, maps = tiny(torch.randn(1, 3, 96, 64))
    assert maps.shape == (1, tiny.config.num_segments, 12, 8)


def test_mask_token_head_option_sees_full_grid():
    torch.manual_seed(8)
    m = create_model(TINY, seg_head_input="mask_tokens", seg_pos_embed=True).train()
    out = m.forward_train(torch.randn(2, 3, 64, 64))
    assert out["assignments"][0]["hard"].shape[-1] == m.config.grid_size**2


def test_gradients_reach_every_student_part(tiny):
    from zsseg_rt.models.zeroseg.losses import ZeroSegLoss

    torch.manual_seed(9)
    tiny.train()
    x = torch.randn(4, 3, 64, 64)
    out = tiny.forward_train(x)
    views = torch.randn(4, tiny.config.num_views, tiny.config.embed_dim)
    ZeroSegLoss(tiny.config)(out, x, views)["loss"].backward()
    for name in ("blocks.0.attn.qkv.weight", "decoder_pred.weight", "seg_head.group_tokens.0", "projector.fc2.weight"):
        grad = dict(tiny.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name
    tiny.zero_grad(set_to_none=True)


def test_batch_of_one_in_training_is_a_clear_error():
    m = create_model(TINY).train()
    with pytest.raises(ValueError, match="at least 2 samples"):
        m.forward_train(torch.randn(1, 3, 64, 64))
    m2 = create_model(TINY, projector_norm="none").train()
    assert m2.forward_train(torch.randn(1, 3, 64, 64))["segment_features"].shape[0] == 1
