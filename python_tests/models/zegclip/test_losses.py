"""ZegCLIP loss against a hand computation (explicit per-pixel Python math), both ignore modes."""

from __future__ import annotations

import math

import pytest
import torch

from zsseg_rt.models.zegclip.losses import (
    ZegCLIPLoss,
    remap_labels_inductive,
    remap_labels_transductive,
    transductive_pseudo_labels,
    zegclip_loss,
)

IGN = 255


def _sig(x):
    return 1.0 / (1.0 + math.exp(-x))


def hand_loss(logits, labels, mask_ignore):
    """Loops over images, classes and pixels; official formulas written out."""
    b, c, h, w = logits.shape
    present = [[any(labels[i][y][x] == k for y in range(h) for x in range(w)) for k in range(c)] for i in range(b)]
    num_masks = max(sum(sum(p) for p in present), 1)
    focal = 0.0
    dice = 0.0
    for i in range(b):
        for k in range(c):
            terms, n_valid = 0.0, 0
            inter = psum = tsum = 0.0
            for y in range(h):
                for x in range(w):
                    lab = labels[i][y][x]
                    if mask_ignore and lab == IGN:
                        continue
                    z = float(logits[i, k, y, x])
                    t = 1.0 if lab == k else 0.0
                    p = _sig(z)
                    ce = -(t * math.log(p) + (1 - t) * math.log(1 - p))
                    p_t = p * t + (1 - p) * (1 - t)
                    a_t = 0.25 * t + 0.75 * (1 - t)
                    terms += a_t * ce * (1 - p_t) ** 2
                    n_valid += 1
                    inter += p * t
                    psum += p
                    tsum += t
            focal += terms / (n_valid if mask_ignore else h * w) if n_valid else 0.0
            if present[i][k]:
                dice += 1 - (2 * inter + 1) / (psum + tsum + 1)
    return 100.0 * focal / num_masks, dice / num_masks, num_masks


LABELS = [
    [[0, 0, 2], [IGN, 2, 2], [0, IGN, IGN]],
    [[IGN, IGN, IGN], [IGN, IGN, 1], [1, 1, IGN]],
]


@pytest.mark.parametrize("mask_ignore", [False, True])
def test_loss_matches_hand_computation(mask_ignore):
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 3, 3, generator=g) * 2
    labels = torch.tensor(LABELS)
    out = zegclip_loss(logits, labels, pred_size=None, mask_ignore=mask_ignore)
    f_ref, d_ref, n_ref = hand_loss(logits.double(), LABELS, mask_ignore)
    assert n_ref == 3 and float(out["num_masks"]) == 3
    assert out["loss_mask"].item() == pytest.approx(f_ref, rel=1e-5)
    assert out["loss_dice"].item() == pytest.approx(d_ref, rel=1e-5)
    assert out["loss"].item() == pytest.approx(f_ref + d_ref, rel=1e-5)


def test_ignore_modes_differ_and_official_counts_ignore_as_negative():
    logits = torch.full((1, 2, 2, 2), 3.0)  # confident positive everywhere
    labels = torch.tensor([[[0, IGN], [IGN, IGN]]])
    official = zegclip_loss(logits, labels, pred_size=None, mask_ignore=False)
    masked = zegclip_loss(logits, labels, pred_size=None, mask_ignore=True)
    # ignore pixels are negatives officially -> a confident positive there is penalised
    assert official["loss_mask"] > masked["loss_mask"] + 50
    assert official["loss_dice"] > masked["loss_dice"]


def test_loss_upsamples_to_pred_size_then_label_size():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(1, 2, 4, 4, generator=g)
    labels = torch.randint(0, 2, (1, 16, 16), generator=g)
    up = torch.nn.functional.interpolate(logits, size=(16, 16), mode="bilinear", align_corners=False)
    a = zegclip_loss(logits, labels, pred_size=16)
    b = zegclip_loss(up, labels, pred_size=None)
    torch.testing.assert_close(a["loss"], b["loss"])
    # official two-step: to pred_size (e.g. 512) first, then to the label size
    up2 = torch.nn.functional.interpolate(
        torch.nn.functional.interpolate(logits, size=(32, 32), mode="bilinear", align_corners=False),
        size=(16, 16),
        mode="bilinear",
        align_corners=False,
    )
    c = zegclip_loss(logits, labels, pred_size=32)
    torch.testing.assert_close(c["loss"], zegclip_loss(up2, labels, pred_size=None)["loss"])


def test_no_gt_class_clamps_num_masks_and_module_wrapper():
    from zsseg_rt.models import load_config

    logits = torch.zeros(1, 2, 2, 2)
    labels = torch.full((1, 2, 2), IGN)
    out = zegclip_loss(logits, labels, pred_size=None)
    assert float(out["num_masks"]) == 1.0
    assert out["loss_dice"].item() == 0.0
    # focal: every pixel negative for both classes at p=0.5: 0.75 * ln2 * 0.25 per pixel, x100, 2 maps
    assert out["loss_mask"].item() == pytest.approx(100 * 2 * 0.75 * math.log(2) * 0.25, rel=1e-6)
    crit = ZegCLIPLoss.from_config(load_config("zegclip_tiny_test"), pred_size=None)
    torch.testing.assert_close(crit(logits, labels)["loss"], out["loss"])


def test_bad_labels():
    with pytest.raises(ValueError, match="outside"):
        zegclip_loss(torch.zeros(1, 2, 2, 2), torch.tensor([[[0, 5], [1, 1]]]), pred_size=None)
    with pytest.raises(TypeError, match="integer"):
        zegclip_loss(torch.zeros(1, 2, 2, 2), torch.zeros(1, 2, 2), pred_size=None)
    with pytest.raises(ValueError, match=r"\[B,H,W\]"):
        zegclip_loss(torch.zeros(1, 2, 2, 2), torch.zeros(2, 2, dtype=torch.long), pred_size=None)


def test_label_remapping_and_pseudo_labels():
    seen = [0, 1, 3]
    lab = torch.tensor([[[0, 1, 2, 3, 255, 200]]])
    assert remap_labels_inductive(lab, seen).tolist() == [[[0, 1, 255, 2, 255, 255]]]
    st = remap_labels_transductive(lab, seen)
    assert st.tolist() == [[[0, 1, -1, 3, 255, 200]]]
    pred = torch.zeros(1, 4, 1, 6)
    pred[0, 2] = 5.0  # unseen class 2 wins among unseen channels
    pl = transductive_pseudo_labels(pred, st, seen)
    assert pl.tolist() == [[[0, 1, 2, 3, 255, 200]]]
