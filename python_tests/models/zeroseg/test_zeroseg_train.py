"""ZeroSeg training through the shared trainer: losses fall and segment tokens come to agree with a planted
teacher on synthetic images; resume is exact; the teacher-feature cache is filled once and then read."""

from __future__ import annotations

import csv
import math

import pytest
import torch
import torch.nn.functional as F

from zsseg_rt.models.zeroseg.trainer import ZeroSegTrainer, cosine_lr
from zsseg_rt.train.config import load_train_config
from zsseg_rt.train.trainer import trainer_class

pytestmark = pytest.mark.single_torch_thread  # one torch thread, as the tests under eval/ and train/


def _cfg(tmp_path, **kw):
    return load_train_config("zeroseg_tiny_test", work_dir=str(tmp_path / "run"), **kw)


def _agreement(trainer: ZeroSegTrainer, positions=range(1000, 1016)) -> float:
    """Mean over segment tokens of the best cosine to any local-crop teacher feature (eval pass, no masking)."""
    batch = torch.utils.data.default_collate([trainer.stream[p] for p in positions])
    views = trainer.teacher(batch["image"].float())
    images = (batch["image"].float() - trainer.mean) / trainer.std
    trainer.model.eval()
    with torch.no_grad():
        seg, _, _ = trainer.model(images)
    cos = F.normalize(seg, dim=-1) @ F.normalize(views[:, 1:], dim=-1).transpose(1, 2)  # [B, m, n-1]
    return float(cos.max(-1).values.mean())


def test_cosine_schedule():
    assert cosine_lr(0, 1.0, 100, 10) == 0.0 and cosine_lr(5, 1.0, 100, 10) == 0.5
    assert cosine_lr(10, 1.0, 100, 10) == 1.0 and abs(cosine_lr(55, 1.0, 100, 10) - 0.5) < 1e-12
    assert abs(cosine_lr(100, 1.0, 100, 10, min_lr=0.1) - 0.1) < 1e-12


def test_recipes_load():
    assert trainer_class(load_train_config("zeroseg_tiny_test")) is ZeroSegTrainer
    paper = load_train_config("zeroseg_in1k")
    assert (paper.batch_size, paper.lr_schedule, paper.lr) == (4096, "cosine", 1.5e-4 * 4096 / 256)
    assert paper.iterations == 80 * math.ceil(1281167 / 4096) and paper.warmup_iters == 20 * math.ceil(1281167 / 4096)
    with pytest.raises(ValueError, match="lr_schedule"):
        load_train_config("zeroseg_tiny_test", lr_schedule="step")


@pytest.mark.slow
def test_losses_fall_and_segments_agree_with_planted_teacher(tmp_path):
    torch.manual_seed(0)
    trainer = ZeroSegTrainer(_cfg(tmp_path, iterations=40, checkpoint_interval=40), device="cpu", progress=False)
    before = _agreement(trainer)
    trainer.train(resume=None)
    after = _agreement(trainer)
    with open(tmp_path / "run" / "log.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    first, last = rows[0], rows[-1]
    for k in ("loss", "loss_rec", "loss_distill", "loss_match"):
        assert float(last[k]) < 0.8 * float(first[k]), (k, first[k], last[k])
    assert after > before + 0.4 and after > 0.6, (
        before,
        after,
    )  # segment tokens match the planted crops (0.12 -> 0.82 measured)
    assert (tmp_path / "run" / "final" / "model.safetensors").is_file()


def test_resume_is_exact(tmp_path):
    over = ["dataset.length=8", "batch_size=4", "iterations=4", "checkpoint_interval=2"]
    straight = ZeroSegTrainer(load_train_config("zeroseg_tiny_test", over, work_dir=str(tmp_path / "a")), "cpu", False)
    straight.train(resume=None)
    first = ZeroSegTrainer(load_train_config("zeroseg_tiny_test", over, work_dir=str(tmp_path / "b")), "cpu", False)
    first.train(resume=None, stop_after=2)
    torch.manual_seed(123)  # a different global RNG state: resume must restore it
    second = ZeroSegTrainer(load_train_config("zeroseg_tiny_test", over, work_dir=str(tmp_path / "b")), "cpu", False)
    second.train(resume="auto")
    assert second.iteration == 4
    a, b = straight.model.state_dict(), second.model.state_dict()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_teacher_cache_filled_once_then_read(tmp_path):
    over = ["dataset.length=8", "batch_size=4", "iterations=2", f"dataset.teacher_cache={tmp_path / 'cache'}"]
    cfg = load_train_config("zeroseg_tiny_test", over, work_dir=str(tmp_path / "a"), save_native=False)
    t1 = ZeroSegTrainer(cfg, "cpu", False)
    t1.train(resume=None)
    assert t1.teacher_runs == 8 and len(list((tmp_path / "cache").rglob("*.safetensors"))) == 8  # one epoch
    t2 = ZeroSegTrainer(cfg.__class__.from_dict(dict(cfg.to_dict(), work_dir=str(tmp_path / "b"))), "cpu", False)
    t2.train(resume=None)
    assert t2.teacher_runs == 0  # every view read from the cache
    item = t2.stream[3]
    assert item["has_views"]
    torch.testing.assert_close(item["views"], t2.teacher(item["image"][None].float())[0], rtol=2e-3, atol=2e-3)


@pytest.mark.slow
@pytest.mark.host_only  # DDP on the CPU (gloo, --device cpu)
def test_torchrun_two_process_gloo(tmp_path):
    """DDP on the CPU (gloo, 2 processes) through ``python -m zsseg_rt.train``: trains, checkpoints both ranks'
    RNG states and moves the weights. (Not compared with one process: masking/Gumbel noise is drawn per rank.)"""
    import json
    import os
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    from zsseg_rt.train.checkpoint import load_checkpoint

    torchrun = shutil.which("torchrun") or str(Path(sys.executable).parent / "torchrun")
    if not os.path.exists(torchrun):
        pytest.skip("torchrun not found")
    cfg = load_train_config("zeroseg_tiny_test").to_dict()
    cfg.update(iterations=3, batch_size=4, checkpoint_interval=3, log_interval=1, save_native=False)
    cfg["dataset"] = dict(cfg["dataset"], length=8)
    path = tmp_path / "cfg.json"
    path.write_text(json.dumps(cfg))
    cmd = [torchrun, "--nproc_per_node=2", "-m", "zsseg_rt.train", str(path), "--work-dir", str(tmp_path / "ddp")]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    res = subprocess.run([*cmd, "--no-progress", "--device", "cpu"], env=env, capture_output=True, timeout=300)
    assert res.returncode == 0, res.stderr.decode()[-3000:]
    ckpt = load_checkpoint(tmp_path / "ddp" / "checkpoints" / "iter_0000003.pt")
    assert len(ckpt["rng"]) == 2 and ckpt["world_size"] == 2
    init = ZeroSegTrainer(load_train_config(str(path), work_dir=str(tmp_path / "init")), "cpu", False)
    moved = [k for k, v in init.model.state_dict().items() if not torch.equal(v, ckpt["model"][k])]
    assert len(moved) > 10
    with open(tmp_path / "ddp" / "log.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3 and all(math.isfinite(float(r["loss"])) for r in rows)
