"""CLIP-RC loss: ZegCLIP's focal + dice plus the official L1 recovery loss against detached targets."""

from __future__ import annotations

import pytest
import torch
from test_cliprc_helpers import make_tiny

from zsseg_rt.models import CLIPRCLoss, zegclip_loss
from zsseg_rt.models.cliprc.model import recovery_loss


def test_recovery_loss_zero_when_the_decoder_returns_its_targets():
    q0 = torch.randn(2, 48, 64)
    p = torch.randn(2, 64, 32)
    out = recovery_loss({"q": q0.clone(), "lateral": p.clone(), "ori_q": q0, "ori_lateral": p}, weight=50.0)
    assert float(out["recovery_loss_q"]) == 0.0 and float(out["recovery_loss_k"]) == 0.0
    # hand case: L1 = mean |difference| times the weight
    out = recovery_loss({"q": q0 + 0.5, "lateral": p - 0.25, "ori_q": q0, "ori_lateral": p}, weight=2.0)
    torch.testing.assert_close(out["recovery_loss_q"], torch.tensor(1.0))
    torch.testing.assert_close(out["recovery_loss_k"], torch.tensor(0.5))


def test_model_recovery_loss_hand_computed_with_a_zero_output_decoder():
    model = make_tiny(prompt_dropout=0.0).train()  # no dropout in the image tower: targets are reproducible
    rec = model.decode_head.recovery_decoder
    with torch.no_grad():
        for lin in (rec.linear_q_out, rec.linear_k_out):
            lin.weight.zero_()
            lin.bias.zero_()
    x = torch.randn(2, 3, 64, 64)
    text = torch.randn(3, 32)
    labels = torch.randint(0, 3, (2, 64, 64))
    loss_fn = model.build_loss()
    logits = model(x, text)
    out = loss_fn(logits, labels)
    assert model.last_recovery is None  # consumed once
    with torch.no_grad():
        g, p, r, _ = model.encode_image(x)
        q0 = model.decode_head.combine_tokens(text, g, r)  # text used as given (official)
    w = model.config.loss["recovery_weight"]
    assert w == 2.0
    torch.testing.assert_close(out["recovery_loss_q"], w * q0.abs().mean(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out["recovery_loss_k"], w * p.abs().mean(), rtol=1e-5, atol=1e-6)
    base = zegclip_loss(logits, labels, pred_size=64)
    torch.testing.assert_close(out["loss_mask"], base["loss_mask"])
    torch.testing.assert_close(out["loss_dice"], base["loss_dice"])
    torch.testing.assert_close(out["loss"], base["loss"] + out["recovery_loss_q"] + out["recovery_loss_k"])


def test_targets_are_detached_and_gradients_reach_trainable_params_only():
    model = make_tiny().train()
    x = torch.randn(1, 3, 64, 64)
    logits = model(x, torch.randn(2, 32))
    rec = model.last_recovery
    assert not rec["ori_q"].requires_grad and not rec["ori_lateral"].requires_grad
    assert rec["q"].requires_grad and rec["q"].shape == (1, 16 * 2, 64) and rec["lateral"].shape == (1, 64, 32)
    out = model.build_loss(recovery_weight=0.0)(logits, torch.randint(0, 2, (1, 64, 64)))
    # recovery-only gradient: the recovery decoder gets one, and the frozen towers none
    model.zero_grad()
    only = recovery_loss(rec, 1.0)
    (only["recovery_loss_q"] + only["recovery_loss_k"]).backward()
    assert model.decode_head.recovery_decoder.linear_q_out.weight.grad is not None
    assert model.backbone.conv1.weight.grad is None and model.backbone.region_level_bridge.grad is None
    assert float(out["recovery_loss_q"].detach()) == 0.0


def test_eval_forward_has_no_recovery_terms():
    model = make_tiny().eval()
    with torch.no_grad():
        logits = model(torch.randn(1, 3, 64, 64), torch.randn(2, 32))
    out = CLIPRCLoss.from_config(model.config, model=model)(logits, torch.randint(0, 2, (1, 64, 64)))
    assert "recovery_loss_q" not in out
    with pytest.raises(ValueError, match="outside"):
        out = model.build_loss()(logits, torch.full((1, 64, 64), 7))
