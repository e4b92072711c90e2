"""ZegFormer training through the shared Trainer: the set criterion (Hungarian matching), the official optimiser
groups, learning on synthetic data, and bit-exact resume."""

from __future__ import annotations

import time

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("scipy")

from zsseg_rt.data import SyntheticDataset  # noqa: E402
from zsseg_rt.eval.metrics import ConfusionMatrix  # noqa: E402
from zsseg_rt.models import create_model  # noqa: E402
from zsseg_rt.models.zegformer.losses import ZegFormerLoss, hungarian_match, labels_to_targets  # noqa: E402
from zsseg_rt.train import Trainer, load_train_config  # noqa: E402

NO_DROPOUT = {"dropout": 0.0, "test_short_side": 64, "test_max_size": 128}


def _cfg(tmp, **kw):
    return load_train_config("zegformer_tiny_test", work_dir=str(tmp), **kw)


def test_matching_is_the_optimal_assignment_and_loss_terms():
    """Hungarian matching against brute force on a tiny case, and the loss on a perfect prediction is small."""
    import itertools

    torch.manual_seed(0)
    labels = torch.full((1, 8, 8), 255)
    labels[0, :4] = 0
    labels[0, 4:, :4] = 2
    targets = labels_to_targets(labels)
    assert targets[0]["labels"].tolist() == [0, 2] and targets[0]["masks"].shape == (2, 8, 8)
    logits = torch.randn(1, 4, 4)
    masks = torch.randn(1, 4, 8, 8)
    ((rows, cols),) = hungarian_match(logits, masks, targets, (1.0, 20.0, 1.0), 0.25, 2.0)
    from zsseg_rt.models.zegformer.losses import _dice_cost, _focal_cost

    tm = targets[0]["masks"].flatten(1)
    cost = (
        20 * _focal_cost(masks[0].flatten(1), tm, 0.25, 2.0)
        - logits[0].softmax(-1)[:, [0, 2]]
        + _dice_cost(masks[0].flatten(1), tm)
    )
    best = min(itertools.permutations(range(4), 2), key=lambda p: float(cost[p[0], 0] + cost[p[1], 1]))
    assert sorted(zip(cols.tolist(), rows.tolist())) == [(0, best[0]), (1, best[1])]
    loss = ZegFormerLoss(
        3,
        {
            "class_weight": 1.0,
            "mask_weight": 20.0,
            "dice_weight": 1.0,
            "no_object_weight": 0.1,
            "focal_alpha": 0.25,
            "focal_gamma": 2.0,
        },
    )
    perfect_logits = torch.full((1, 4, 4), -20.0)
    perfect_logits[0, 0, 0] = 20.0
    perfect_logits[0, 1, 2] = 20.0
    perfect_logits[0, 2:, 3] = 20.0
    perfect_masks = torch.full((1, 4, 8, 8), -30.0)
    perfect_masks[0, 0] = torch.where(targets[0]["masks"][0] > 0, 30.0, -30.0)
    perfect_masks[0, 1] = torch.where(targets[0]["masks"][1] > 0, 30.0, -30.0)
    good = loss({"pred_logits": perfect_logits, "pred_masks": perfect_masks}, labels)
    bad = loss({"pred_logits": logits, "pred_masks": masks}, labels)
    assert float(good["num_masks"]) == 2.0
    for k in ("loss_ce", "loss_mask", "loss_dice"):
        assert float(good[k]) < 1e-3 < float(bad[k]), k


def test_optimizer_groups_follow_the_official_recipe():
    model = create_model("zegformer_tiny_test")
    groups = model.optimizer_param_groups(1e-4)
    by_param = {id(g["params"][0]): g for g in groups}
    named = dict(model.named_parameters())
    assert by_param[id(named["backbone.conv1.weight"])]["lr_mult"] == pytest.approx(0.1)
    assert by_param[id(named["pixel_decoder.layer_1.norm.weight"])]["weight_decay"] == 0.0
    assert by_param[id(named["predictor.query_embed.weight"])]["weight_decay"] == 0.0
    assert by_param[id(named["predictor.bg_feature"])]["weight_decay"] == pytest.approx(1e-4)
    assert id(named["predictor.logit_scale"]) not in by_param  # fixed temperature
    assert not any(n.startswith(("clip_visual.", "text_encoder.")) for n, p in named.items() if id(p) in by_param)


def _seen_miou(model, text, dataset, seen_names):
    cm = ConfusionMatrix(dataset.split.num_classes)
    names = list(dataset.split.class_names)
    seen = torch.tensor([n in seen_names for n in names])
    for i in range(len(dataset)):
        rgb, label = dataset.load(i)
        img = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).float()[None]
        with torch.no_grad():
            scores = model.segment(img, names, seen=seen, fusion="none", calibration_bias=0.0, text=text)
        # the seen vocabulary, as in training: the unseen class's embedding never takes part in the loss, so a tiny
        # model's score for it is unconstrained (with some seeds it wins every pixel before and after training)
        seen_scores = scores[0].masked_fill(~seen[:, None, None], float("-inf"))
        cm.update(seen_scores.argmax(0).numpy(), label)
    iou = cm.iou()
    idx = [i for i, n in enumerate(names) if n in seen_names]
    return float(np.nanmean(iou[idx]) * 100)


@pytest.mark.slow
def test_tiny_zegformer_learns_seen_classes(tmp_path, capsys):
    """Training on synthetic shapes must clearly raise the seen-class mIoU of the query classifier + masks."""
    tr = Trainer(_cfg(tmp_path, model_overrides=NO_DROPOUT, iterations=120, checkpoint_interval=1000), progress=False)
    held_out = SyntheticDataset(length=12, size=(64, 64), num_classes=6, seed=999, unseen=["cyan checker"])
    seen_names = [tr.dataset.split.class_names[i] for i in tr.seen]
    text = tr.text_all
    before = _seen_miou(tr.model, text, held_out, seen_names)
    t0 = time.time()
    summary = tr.train()
    tr.model.eval()
    after = _seen_miou(tr.model, text, held_out, seen_names)
    with capsys.disabled():
        print(
            f"\n[zegformer learning] mIoU(seen) {before:.1f} -> {after:.1f}, {time.time() - t0:.1f}s for 120 iterations"
        )
    assert summary["iteration"] == 120
    # Measured (seen vocabulary): 6.0 -> 47.3 with torchvision's ResNet init, 6.5 -> 10.1 with detectron2's trunk
    # (same architecture and init scheme, other random draws); seeds 1 and 3 learn little in 120 iterations with
    # either trunk: this tiny recipe is seed-sensitive, so the bound asks for clear progress, not a large margin.
    assert after >= before + 3.0


def test_resume_reproduces_uninterrupted_run(tmp_path):
    over = dict(iterations=4, checkpoint_interval=2, batch_size=2, save_native=False, model_overrides=NO_DROPOUT)
    a = Trainer(_cfg(tmp_path / "a", **over), progress=False)
    a.train()
    b = Trainer(_cfg(tmp_path / "b", **over), progress=False)
    assert b.train(stop_after=2)["iteration"] == 2
    del b
    c = Trainer(_cfg(tmp_path / "b", **over), progress=False)
    assert c.train(resume="auto")["iteration"] == 4
    sa, sc = a.model.state_dict(), c.model.state_dict()
    assert sa.keys() == sc.keys()
    changed = 0
    for k in sa:
        assert torch.equal(sa[k], sc[k]), k
    init = Trainer(_cfg(tmp_path / "init", **over), progress=False).model.state_dict()
    changed = sum(not torch.equal(init[k], sa[k]) for k in sa)
    assert changed > 10  # training moved the weights


@pytest.mark.slow
def test_torchrun_two_process_gloo(tmp_path):
    """DDP on the CPU (gloo, 2 processes) through ``python -m zsseg_rt.train``: it trains, checkpoints both ranks'
    RNG states and moves the weights, and its first iteration (same weights, same global batch split over the
    ranks) logs the mask and dice losses of one process with the whole batch: the official ``num_masks``
    all-reduce normalisation. (The query-classification CE is a per-rank weighted mean, as in the official
    criterion, so the total loss and later iterations are not compared.)"""
    import csv
    import json
    import math
    import os
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    from zsseg_rt.train.checkpoint import load_checkpoint

    torchrun = shutil.which("torchrun") or str(Path(sys.executable).parent / "torchrun")
    if not os.path.exists(torchrun):
        pytest.skip("torchrun not found")
    cfg = load_train_config("zegformer_tiny_test").to_dict()
    cfg.update(iterations=3, batch_size=4, checkpoint_interval=3, log_interval=1, save_native=False)
    cfg["model_overrides"] = dict(cfg.get("model_overrides") or {}, **NO_DROPOUT)
    cfg["dataset"] = dict(cfg["dataset"], length=16)
    path = tmp_path / "cfg.json"
    path.write_text(json.dumps(cfg))
    cmd = [torchrun, "--nproc_per_node=2", "-m", "zsseg_rt.train", str(path), "--work-dir", str(tmp_path / "ddp")]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    res = subprocess.run([*cmd, "--no-progress", "--device", "cpu"], env=env, capture_output=True, timeout=300)
    assert res.returncode == 0, res.stderr.decode()[-3000:]
    ckpt = load_checkpoint(tmp_path / "ddp" / "checkpoints" / "iter_0000003.pt")
    assert len(ckpt["rng"]) == 2 and ckpt["world_size"] == 2
    Trainer(load_train_config(str(path), work_dir=str(tmp_path / "one")), device="cpu", progress=False).train()
    init = Trainer(load_train_config(str(path), work_dir=str(tmp_path / "init")), device="cpu", progress=False)
    moved = [k for k, v in init.model.state_dict().items() if not torch.equal(v, ckpt["model"][k])]
    assert len(moved) > 10

    def rows(d):
        with open(tmp_path / d / "log.csv", newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f))

    ddp, one = rows("ddp"), rows("one")
    assert len(ddp) == len(one) == 3 and all(math.isfinite(float(r["loss"])) for r in ddp)
    for key in ("loss_mask", "loss_dice", "num_masks"):
        assert float(ddp[0][key]) == pytest.approx(float(one[0][key]), rel=1e-5), key
