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

pytestmark = pytest.mark.single_torch_thread  # one torch thread, as the tests under eval/ and train/

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
        cm.update(seen_scores.argmax(0).cpu().numpy(), label)
    iou = cm.iou()
    idx = [i for i, n in enumerate(names) if n in seen_names]
    return float(np.nanmean(iou[idx]) * 100)


# The learning recipe: zegformer_tiny_test (batch 8 of 64 px synthetic shapes, AdamW, backbone lr x0.1, grad clip
# 0.01, poly, no dropout) with a 4x larger lr, 150 iterations and a ResNet trunk of half the widths (LEARNING_TRUNK:
# the same 1-1-1-1 bottleneck stages, pixel decoder, queries and CLIP towers). How the lr was chosen (an lr sweep
# with 2 torch threads by the session that wrote this test, with the full-width trunk, not re-run since; seen-class
# mIoU after training, 1.5-9.4 before): lr 5e-4 x 120 iterations (the former test) 10.5 / 12.0 at seeds 0 / 1; lr
# 2e-3 x 120: 50.6 / 16.5 / 53.6 / 39.3 / 21.4 at seeds 0-4; lr 4e-3 x 120: worse (24.8 / 12.3 / 15.4 / 4.7 at
# seeds 0-3); no grad clip at lr 2e-3 x 120: 6.2 (seed 1). The former test's 47.3 (seed 0, lr 5e-4 x 120) came
# from the torchvision ResNet's random draws at that one seed; the lr, not the init, is what makes every seed learn.
# The trunk and the length (issue 88 item 6): with the full widths (stem 64, res2 256, 64 per group: 8.0 M trunk
# parameters of the model's 8.8 M trainable) and 200 iterations this test took 182 of the fake-CUDA CI session's
# 828 CPU-s, nearly all of it the trunk's convolutions and AdamW over its weights (~60 CPU-s a seed). Measured on a
# 2-core AMD EPYC (one torch thread, the same lr and seeds; mIoU(seen) before -> after at seeds 0-4, CPU-s a seed):
# - full widths x 200 (the former recipe): 6.5 -> 56.5, 6.0 -> 24.3, 9.4 -> 49.0 at seeds 0-2 (see the docstring);
# - widths / 2 x 200: 5.8 -> 47.6, 1.5 -> 53.8, 10.4 -> 58.3, 6.4 -> 33.4, 6.0 -> 40.7; ~25 CPU-s;
# - widths / 2 x 150 (this recipe): the docstring's numbers, ~19 CPU-s;
# - widths / 4 x 200: 2.0 -> 35.3, 2.9 -> 54.2, 5.0 -> 24.0, 3.5 -> 14.8, 5.9 -> 42.7 (+11.3 at seed 3: too near
#   the floor of +10, where another CPU's rounding moves a seed by 10 points, see MIOU_GAIN); ~16 CPU-s;
# - widths / 8 x 200: 7.2 -> 46.8, 5.8 -> 53.3, 7.9 -> 19.5 at seeds 0-2 (+11.6 at seed 2); ~14 CPU-s.
LEARNING_TRUNK = {"stem_channels": 32, "res2_channels": 128, "width_per_group": 32}
LEARNING = dict(
    iterations=150,
    lr=2e-3,
    log_interval=1,
    checkpoint_interval=1000,
    save_native=False,
    model_overrides=dict(NO_DROPOUT, **LEARNING_TRUNK),
)
LEARNING_SEEDS = (0, 1, 2)
# Seen-class mIoU gain over the untrained model: at least MIOU_GAIN points on average over the seeds (the ZegCLIP
# twin's bound) and at least MIOU_FLOOR at every seed. The trajectory of a tiny model differs between CPUs (torch's
# fp32 kernels round differently: with the former full-width recipe the first 20 iterations' mean loss at seed 1 was
# 17.49 on one x86 CPU, 17.42 on another), and one seed's gain with it (seed 1: +29.1 on an Intel Xeon, +18.3 on an
# AMD EPYC), so a per-seed +20 held on one CPU and failed on the other; the mean and the floor hold with a margin
# (see the test).
MIOU_GAIN = 20.0
MIOU_FLOOR = 10.0  # the lr = 0 control: +0.0 exactly
LOSS_RATIO = 0.8  # the last 10 % of the logged iterations' mean loss (and dice loss) < 0.8 x the first 10 %'s


def _learning_run(tmp, seed: int, **overrides) -> dict:
    """Train the learning recipe at ``seed`` (model init, data order, augmentation); the seen-class mIoU on 12
    held-out images before and after, and the mean total / dice loss over the first and last 10 % of iterations."""
    import csv

    recipe = dict(LEARNING, **overrides)
    # on the CPU on every machine: the bounds below were measured on CPUs (a GPU's kernels round otherwise, and a
    # tiny model's trajectory follows its rounding, see MIOU_GAIN)
    tr = Trainer(_cfg(tmp, seed=seed, **recipe), device="cpu", progress=False)
    held_out = SyntheticDataset(length=12, size=(64, 64), num_classes=6, seed=999, unseen=["cyan checker"])
    seen_names = [tr.dataset.split.class_names[i] for i in tr.seen]
    before = _seen_miou(tr.model, tr.text_all, held_out, seen_names)
    t0 = time.time()
    summary = tr.train()
    seconds = time.time() - t0
    tr.model.eval()
    after = _seen_miou(tr.model, tr.text_all, held_out, seen_names)
    with open(tmp / "log.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert summary["iteration"] == len(rows) == recipe["iterations"]
    w = len(rows) // 10
    windows = {
        key: (float(np.mean([float(r[key]) for r in rows[:w]])), float(np.mean([float(r[key]) for r in rows[-w:]])))
        for key in ("loss", "loss_dice")
    }
    return {"seed": seed, "before": before, "after": after, "seconds": seconds, **windows}


def _check_learned(run: dict) -> None:
    """What learning means here: a clear seen-class mIoU gain and both losses clearly down."""
    assert run["after"] >= run["before"] + MIOU_FLOOR, (
        f"seed {run['seed']}: mIoU(seen) {run['before']:.1f} -> {run['after']:.1f} (< +{MIOU_FLOOR})"
    )
    for key in ("loss", "loss_dice"):
        first, last = run[key]
        assert last < LOSS_RATIO * first, f"seed {run['seed']}: {key} {first:.3f} -> {last:.3f} (not < {LOSS_RATIO}x)"


def _report(run: dict) -> str:
    return (
        f"seed {run['seed']}: mIoU(seen) {run['before']:.1f} -> {run['after']:.1f}, loss {run['loss'][0]:.2f} -> "
        f"{run['loss'][1]:.2f}, dice {run['loss_dice'][0]:.3f} -> {run['loss_dice'][1]:.3f}, {run['seconds']:.1f}s"
    )


@pytest.mark.slow
@pytest.mark.host_only  # trains on the CPU on every machine (see _learning_run): CI's, not the GPU lease's
def test_tiny_zegformer_learns_seen_classes(tmp_path, capsys):
    """The query classifier + masks learn the seen classes of synthetic shapes: seen-class mIoU (the seen
    vocabulary, as in training) at least +20 points over the untrained model on average over three seeds and at
    least +10 at every seed, and the total and dice losses of the last 15 iterations below 0.8x those of the first
    15, at every seed.

    Measured (2-core x86 CPUs shared with other work; one torch thread, python_tests/conftest.py's
    ``_single_torch_thread``, marked; mIoU(seen) before -> after, loss and dice first -> last window; the same
    numbers in every run on one CPU, other numbers on another):
    - AMD EPYC (AVX-512, no AMX), this recipe (trunk widths / 2, 150 iterations): seed 0: 5.8 -> 39.4, 25.23 ->
      4.02, 1.393 -> 0.831; seed 1: 1.5 -> 57.8, 23.04 -> 3.07, 1.376 -> 0.702; seed 2: 10.4 -> 52.8, 31.30 ->
      3.43, 1.368 -> 0.765 (mean gain +44.1); seeds 3 and 4, not run by the test: 6.4 -> 42.5 and 6.0 -> 49.8.
      51 CPU-s for the three seeds (pytest --cpu-durations), against 182 for the former recipe in CI.
    - The former recipe (full-width trunk, 200 iterations), for the spread between CPUs: Intel Xeon (AVX-512, AMX):
      seed 0: 6.5 -> 52.8, seed 1: 6.0 -> 35.1, seed 2: 9.4 -> 47.8 (mean +37.9); AMD EPYC: 6.5 -> 56.5, 6.0 ->
      24.3, 9.4 -> 49.0 (mean +36.0): one seed's gain moved by 10.8 points between the two CPUs.
    The smallest single gain seen with this recipe is +33.6 (seed 0) against the floor of +10, the mean +44.1 against
    +20; not measured on another CPU. ``test_the_learning_check_fails_without_learning`` runs the
    no-learning control."""
    runs = []
    for seed in LEARNING_SEEDS:
        run = _learning_run(tmp_path / f"seed{seed}", seed)
        with capsys.disabled():
            print(f"\n[zegformer learning] {_report(run)}")
        runs.append(run)
    for run in runs:
        _check_learned(run)
    mean_gain = float(np.mean([run["after"] - run["before"] for run in runs]))
    assert mean_gain >= MIOU_GAIN, (
        f"mean mIoU(seen) gain over seeds {LEARNING_SEEDS}: +{mean_gain:.1f} (< +{MIOU_GAIN})"
    )


@pytest.mark.slow
@pytest.mark.host_only  # the learning test's control, on the CPU as it is
def test_the_learning_check_fails_without_learning(tmp_path, capsys):
    """The control: the same recipe and seed with lr = 0 (every step computed, nothing moves) must fail the
    learning check, on both its mIoU gain and its loss decrease. With lr = 0 the weights stay where they started
    however long it runs (FrozenBN: no running statistics either), so the control runs 60 iterations (loss
    windows of 6). Measured (seed 0, AMD EPYC): mIoU(seen) 5.8 -> 5.8, loss 109.02 -> 111.18 (1.02x), dice 1.216
    -> 1.178 (0.97x), 7.5 CPU-s; against the bounds +20 mIoU and < 0.8x. (The former full-width recipe: 6.5 -> 6.5,
    loss 1.04x, dice 0.99x; over its 200 iterations 1.01x and 0.98x.)"""
    run = _learning_run(tmp_path, LEARNING_SEEDS[0], lr=0.0, iterations=60)
    with capsys.disabled():
        print(f"\n[zegformer learning, control lr=0] {_report(run)}")
    assert run["after"] == run["before"]  # the weights never moved
    with pytest.raises(AssertionError, match="mIoU"):
        _check_learned(run)
    for key in ("loss", "loss_dice"):  # the loss check fails on its own too
        first, last = run[key]
        assert last >= LOSS_RATIO * first, (key, first, last)


def test_resume_reproduces_uninterrupted_run(tmp_path):
    """Bitwise, so on the CPU on every machine: on CUDA the shared trainer's resume rule (a bound for the kernels
    without a deterministic form) is python_tests/train/test_training.py's."""
    over = dict(iterations=4, checkpoint_interval=2, batch_size=2, save_native=False, model_overrides=NO_DROPOUT)
    a = Trainer(_cfg(tmp_path / "a", **over), device="cpu", progress=False)
    a.train()
    b = Trainer(_cfg(tmp_path / "b", **over), device="cpu", progress=False)
    assert b.train(stop_after=2)["iteration"] == 2
    del b
    c = Trainer(_cfg(tmp_path / "b", **over), device="cpu", progress=False)
    assert c.train(resume="auto")["iteration"] == 4
    sa, sc = a.model.state_dict(), c.model.state_dict()
    assert sa.keys() == sc.keys()
    changed = 0
    for k in sa:
        assert torch.equal(sa[k], sc[k]), k
    init = Trainer(_cfg(tmp_path / "init", **over), device="cpu", progress=False).model.state_dict()
    changed = sum(not torch.equal(init[k], sa[k]) for k in sa)
    assert changed > 10  # training moved the weights


@pytest.mark.slow
@pytest.mark.host_only  # DDP on the CPU (gloo, --device cpu)
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
