"""Training: recipe/schedule checks, learning on synthetic data, exact resume, crash safety, accumulation."""

from __future__ import annotations

import contextlib
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from zsseg_rt.train import Trainer, load_train_config, poly_lr  # noqa: E402
from zsseg_rt.train.checkpoint import find_resume_checkpoint, load_checkpoint  # noqa: E402

NO_DROPOUT = {"prompt_dropout": 0.0, "decoder_dropout": 0.0, "decoder_attn_dropout": 0.0}


def _cfg(tmp, **kw):
    return load_train_config("tiny_test", work_dir=str(tmp), **kw)


TRANSDUCTIVE_RECIPES = ["voc_transductive", "coco_transductive", "cliprc_voc_transductive", "cliprc_coco_transductive"]


def _simulate_checkpoint_retention(cfg, root):
    """Run the inductive recipe's checkpoint schedule through the real ``Trainer.save`` (tiny states) and
    return the checkpoint files that survive its retention policy."""
    from types import SimpleNamespace

    stub = SimpleNamespace(
        cfg=cfg,
        work_dir=root / cfg.work_dir,
        dist=SimpleNamespace(rank=0),
        iteration=0,
        state_dict=lambda: {"model": {}},
    )
    written = []
    for it in range(1, cfg.iterations + 1):
        if it % cfg.checkpoint_interval == 0 or it == cfg.iterations:  # Trainer.train's save rule
            stub.iteration = it
            written.append(Trainer.save(stub))
    return written, sorted((root / cfg.work_dir / "checkpoints").glob("iter_*.pt"))


def _check_transductive_chain(tmp_path):
    """The documented chain inductive -> transductive: every transductive recipe's init_from is a checkpoint
    its inductive recipe writes AND still holds after the run (retention must not delete it)."""
    for name in TRANSDUCTIVE_RECIPES:
        st = load_train_config(name)
        ind = load_train_config(name.replace("_transductive", "_inductive"))
        assert st.setting in (None, "transductive") and ind.dataset == st.dataset
        assert load_train_config(name).init_from.startswith(ind.work_dir + "/checkpoints/"), name
        written, kept = _simulate_checkpoint_retention(ind, tmp_path / name)
        target = tmp_path / name / st.init_from
        assert target in written, f"{name}: {st.init_from} is not a checkpoint iteration of {ind.name}"
        assert target in kept, f"{name}: {st.init_from} is deleted by {ind.name}'s retention policy"
        assert load_checkpoint(target)["iteration"] == int(target.stem.split("_")[1])
        assert len(kept) <= max(ind.keep_checkpoints, 0) + len(ind.keep_iterations) or ind.keep_checkpoints == 0


def test_checkpoint_retention_keeps_newest_and_protected_iterations(tmp_path):
    """Newest ``keep`` plus the protected iterations survive; 0 keeps everything."""
    from zsseg_rt.train.checkpoint import save_checkpoint

    for keep, protect, expect in [(2, [], [4, 5]), (2, [2], [2, 4, 5]), (0, [], [1, 2, 3, 4, 5])]:
        d = tmp_path / f"keep{keep}_{protect}"
        for it in range(1, 6):
            save_checkpoint({"model": {}}, d, it, keep, protect=protect)
        assert [int(p.stem[5:]) for p in sorted((d / "checkpoints").glob("iter_*.pt"))] == expect


def test_official_recipes_and_schedule(tmp_path):
    _check_transductive_chain(tmp_path)
    for name, iters in [
        ("voc_inductive", 20000),
        ("coco_inductive", 80000),
        ("voc_transductive", 10000),
        ("coco_transductive", 40000),
        ("voc_fully", 20000),
        ("coco_fully", 80000),
    ]:
        cfg = load_train_config(name)
        assert (cfg.iterations, cfg.batch_size, cfg.lr, cfg.weight_decay) == (iters, 16, 2e-4, 0.01)
        assert (cfg.warmup_iters, cfg.warmup_ratio, cfg.poly_power, cfg.min_lr) == (1500, 1e-6, 0.9, 1e-6)
    assert load_train_config("voc_transductive").init_from.endswith("iter_0010000.pt")
    kw = dict(base_lr=2e-4, max_iters=20000, power=0.9, min_lr=1e-6, warmup_iters=1500, warmup_ratio=1e-6)
    assert poly_lr(0, **kw) == pytest.approx(2e-4 * 1e-6, rel=1e-3)  # mmcv: regular_lr * (1 - k), k = 1 - 1e-6
    reg = (2e-4 - 1e-6) * (1 - 750 / 20000) ** 0.9 + 1e-6
    assert poly_lr(750, **kw) == pytest.approx(reg * (1 - 0.5 * (1 - 1e-6)))
    assert poly_lr(1500, **kw) == pytest.approx((2e-4 - 1e-6) * (1 - 1500 / 20000) ** 0.9 + 1e-6)
    assert poly_lr(20000, **kw) == pytest.approx(1e-6)


def test_unknown_config_keys_are_named(tmp_path):
    with pytest.raises(ValueError, match=r"unknown training config keys \['bacth_size'\]"):
        load_train_config("tiny_test", ["bacth_size=4"])
    with pytest.raises(ValueError, match="unknown config keys"):  # model overrides go through the model config
        Trainer(_cfg(tmp_path, model_overrides={"bogus": 1}), progress=False)


@pytest.mark.host_only  # the zegclip_fp32_learning fixture trains on the CPU on every machine (conftest.py)
def test_tiny_model_learns_seen_classes(zegclip_fp32_learning, capsys):
    """300 iterations on synthetic shapes must clearly beat the untrained model on seen-class mIoU (the run is
    the ``zegclip_fp32_learning`` fixture of conftest.py, shared with the mixed-precision test)."""
    run = zegclip_fp32_learning
    before, after = run.before, run.after
    with capsys.disabled():
        print(
            f"\n[learning] mIoU(seen) {before['mIoU_seen']:.1f} -> {after['mIoU_seen']:.1f}, pAcc "
            f"{before['pAcc']:.1f} -> {after['pAcc']:.1f}, {run.seconds:.1f}s for 300 iterations"
        )
    assert run.summary["iteration"] == 300 and (run.work_dir / "final" / "model.safetensors").is_file()
    assert after["mIoU_seen"] >= before["mIoU_seen"] + 20.0
    assert after["pAcc"] >= before["pAcc"] + 20.0
    rows = (run.work_dir / "log.csv").read_text().splitlines()
    assert rows[0].startswith("iter,loss") and len(rows) == 31


RESUME = dict(iterations=10, checkpoint_interval=5, batch_size=4, warmup_iters=3, log_interval=1, save_native=False)


@contextlib.contextmanager
def _deterministic_algorithms():
    """torch's deterministic algorithms (warn_only: an op without one still runs), restored afterwards; cuBLAS's
    deterministic workspace is CUBLAS_WORKSPACE_CONFIG, set for the whole test process (python_tests/conftest.py)."""
    enabled, warn_only = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
    )
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(enabled, warn_only=warn_only)


def adam_step_bound(step: int, beta1: float, beta2: float) -> float:
    """The largest ``|m_hat| / sqrt(v_hat)`` AdamW's step ``step`` (1-based) can take, over every gradient sequence:
    m_hat = sum a_i g_i and v_hat = sum b_i g_i^2 (bias-corrected EMAs), so by Cauchy-Schwarz |m_hat| <=
    sqrt(sum a_i^2 / b_i) sqrt(v_hat). 1 at the first step (m_hat / sqrt(v_hat) = g / |g|)."""
    a = [(1 - beta1) * beta1 ** (step - i) / (1 - beta1**step) for i in range(1, step + 1)]
    b = [(1 - beta2) * beta2 ** (step - i) / (1 - beta2**step) for i in range(1, step + 1)]
    return math.sqrt(sum(x * x / y for x, y in zip(a, b)))


def _same_state(b, c) -> dict:
    """Everything a checkpoint restores, bitwise, between the trainer that wrote it and the one that resumed it
    (weights, optimizer, schedule, iteration); returns the process's RNG states after the resume."""
    from zsseg_rt.train.checkpoint import capture_rng

    assert c.iteration == b.iteration
    for name, value in b.model.state_dict().items():
        assert torch.equal(value, c.model.state_dict()[name]), name
    sb, sc = b.optimizer.state_dict(), c.optimizer.state_dict()
    assert sb["param_groups"] == sc["param_groups"] and sb["state"].keys() == sc["state"].keys()
    for index, state in sb["state"].items():
        for key, value in state.items():
            assert torch.equal(value, sc["state"][index][key]), (index, key)
    assert b.schedule.state_dict() == c.schedule.state_dict()
    return capture_rng()


def _log(work_dir):
    import csv

    with open(Path(work_dir) / "log.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_resume_reproduces_uninterrupted_run(tmp_path, device):
    """Run ``a`` trains 10 iterations; run ``b`` stops after 5 (its checkpoint at 5) and a new trainer ``c`` resumes
    that checkpoint to 10. Any device: ``c`` starts from exactly ``b``'s state (weights, optimizer, schedule, every
    RNG) and sees the same batches at the same learning rates as ``a`` (the logged iterations, lrs and mask counts).
    On the CPU the runs are then bitwise the same (weights, Adam moments, every logged loss).

    On CUDA (torch's deterministic algorithms on, cuBLAS's deterministic workspace) one kernel of this training still
    has no deterministic form: the bilinear upsampling's backward (atomic adds, torch.use_deterministic_algorithms'
    documentation), so two runs on one GPU differ in the last bits of some gradients from their first step on, and
    AdamW can turn such a difference into a whole step where a true gradient is ~0 (it divides by the gradient's own
    scale). The bound is then AdamW's: a weight moves by at most lr_t x ``adam_step_bound(t)`` at step t, so two runs
    with the same learning rates differ by at most the sum of twice that over the steps. A resume that restored the
    wrong state, iteration or data is caught by the exact checks above, not by this bound.

    "cuda" runs where torch sees a device: the GPU machine, and the fake CUDA device of the ``--fake-cuda`` guard
    (which computes on the CPU, so there the bound holds trivially and the test checks the placement)."""
    if device == "cuda" and not torch.cuda.is_available():  # asked at run time: the guard's device exists only then
        pytest.skip("no CUDA device")
    a = Trainer(_cfg(tmp_path / "a", **RESUME), device=device, progress=False)
    with _deterministic_algorithms():
        a.train()
        b = Trainer(_cfg(tmp_path / "b", **RESUME), device=device, progress=False)
        assert b.train(stop_after=5)["iteration"] == 5
        from zsseg_rt.train.checkpoint import capture_rng

        rng_b = capture_rng()  # what b's checkpoint holds (nothing draws after the save)
        c = Trainer(_cfg(tmp_path / "b", **RESUME), device=device, progress=False)
        assert c.resume("auto") is not None
        rng_c = _same_state(b, c)
        assert rng_b.keys() == rng_c.keys()
        assert torch.equal(rng_b["torch"], rng_c["torch"]) and rng_b["python"] == rng_c["python"]
        assert all(torch.equal(x, y) for x, y in zip(rng_b["cuda"], rng_c["cuda"]))
        assert torch.equal(rng_b["numpy"]["keys"], rng_c["numpy"]["keys"])
        del b
        assert c.train()["iteration"] == 10
    la, lc = _log(tmp_path / "a"), _log(tmp_path / "b")
    assert [r["iter"] for r in la] == [r["iter"] for r in lc] == [str(i) for i in range(1, 11)]  # no duplicated row
    for key in ("lr", "num_masks"):  # the same batches, at the same learning rates
        assert [r[key] for r in la] == [r[key] for r in lc], key
    pa, pc = dict(a.model.named_parameters()), dict(c.model.named_parameters())
    assert pa.keys() == pc.keys()
    if device == "cpu":
        for name in pa:
            assert torch.equal(pa[name], pc[name]), name  # bitwise
        sa, sc = a.optimizer.state_dict()["state"], c.optimizer.state_dict()["state"]
        for i in sa:
            assert torch.equal(sa[i]["exp_avg"], sc[i]["exp_avg"])
        assert [list(r.values())[:6] for r in la] == [list(r.values())[:6] for r in lc]  # same losses
        return
    beta1, beta2 = a.cfg.betas
    # the logged lr has 7 significant digits: 1e-6 relative covers its rounding
    bound = sum(2 * float(r["lr"]) * (1 + 1e-6) * adam_step_bound(int(r["iter"]), beta1, beta2) for r in la)
    for name in pa:
        difference = float((pa[name].detach() - pc[name].detach()).abs().max())
        assert difference <= bound, f"{name}: the resumed weights differ by {difference:.3g} > {bound:.3g}"
    for name, value in a.model.named_buffers():  # nothing trained: the same exactly
        assert torch.equal(value, dict(c.model.named_buffers())[name]), name


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    over = dict(iterations=4, checkpoint_interval=2, batch_size=2, save_native=False)
    tr = Trainer(_cfg(tmp_path, **over), progress=False)
    tr.train(stop_after=2)
    good = find_resume_checkpoint(tmp_path)
    assert good.name == "iter_0000002.pt"
    import zsseg_rt.train.checkpoint as ck

    def dying_save(obj, f):
        f.write(b"PK\x03\x04 partial checkpoint bytes")
        raise KeyboardInterrupt("killed while writing")

    monkeypatch.setattr(ck.torch, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        tr.train(stop_after=2)
    monkeypatch.undo()
    files = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert files == ["iter_0000002.pt", "last_checkpoint"]  # no truncated file under any name
    assert find_resume_checkpoint(tmp_path) == good and load_checkpoint(good)["iteration"] == 2
    # a garbage file with a checkpoint name is skipped in favour of the newest readable one
    (tmp_path / "checkpoints" / "iter_0000003.pt").write_bytes(b"garbage")
    (tmp_path / "checkpoints" / "last_checkpoint").write_text("iter_0000003.pt\n")
    with pytest.warns(RuntimeWarning, match="unreadable"):
        assert find_resume_checkpoint(tmp_path) == good


def test_log_rewrite_on_resume_is_atomic(tmp_path, monkeypatch):
    """Resuming rewrites log.csv (rows up to the resumed iteration); a crash during that rewrite must leave the
    old log intact (temporary file + os.replace), not a truncated one."""
    import csv

    over = dict(iterations=4, checkpoint_interval=2, batch_size=2, log_interval=1, save_native=False)
    Trainer(_cfg(tmp_path, **over), progress=False).train()
    log = tmp_path / "log.csv"
    before = log.read_text()
    assert len(before.splitlines()) == 5
    tr = Trainer(_cfg(tmp_path, **over), progress=False)
    tr.iteration = 2

    def dying_writerows(self, rows):
        self.writerow(next(iter(rows)))
        raise KeyboardInterrupt("killed while rewriting the log")

    monkeypatch.setattr(csv.DictWriter, "writerows", dying_writerows)
    with pytest.raises(KeyboardInterrupt):
        tr._open_log()
    monkeypatch.undo()
    assert log.read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("log.csv")) == ["log.csv"]
    f, writer = tr._open_log()
    writer.writerow({"iter": 3, "loss": "1.0"})
    f.close()
    rows = log.read_text().splitlines()
    assert rows[:3] == before.splitlines()[:3] and rows[3].startswith("3,1.0,") and len(rows) == 4


def test_killed_training_process_resumes(tmp_path):
    cmd = [
        sys.executable,
        "-m",
        "zsseg_rt.train",
        "tiny_test",
        "--work-dir",
        str(tmp_path),
        "--no-progress",
        "--iterations",
        "100000",
        "--batch-size",
        "2",
        "--set",
        "checkpoint_interval=2",
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    try:
        deadline = time.time() + 900  # a hang guard only: the kill waits for the checkpoints, not for a time
        while time.time() < deadline and proc.poll() is None:
            if len(list((tmp_path / "checkpoints").glob("iter_*.pt"))) >= 2:
                break
            time.sleep(0.2)
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        assert len(list((tmp_path / "checkpoints").glob("iter_*.pt"))) >= 2, "no 2 checkpoints within the hang guard"
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    path = find_resume_checkpoint(tmp_path)
    assert path is not None
    it = load_checkpoint(path)["iteration"]
    tr = Trainer(_cfg(tmp_path, iterations=100000, batch_size=2, checkpoint_interval=2), progress=False)
    assert tr.train(resume="auto", stop_after=2)["iteration"] == it + 2


def _accumulation_grads(tmp_path, model="tiny_test_default", **extra):
    """One step with grad_accum 1 and 2 (dropout 0, so train mode is deterministic); the step's gradients."""
    over = dict(
        batch_size=4,
        warmup_iters=0,
        save_native=False,
        model_overrides={"image_size": 64, "crop_size": 64, **NO_DROPOUT},
        **extra,
    )
    if model != "tiny_test_default":
        over["model"] = model
    # on the CPU on every machine: the bound below is fp32 summation order; on a GPU cuDNN's TF32 convolutions
    # (torch's default) move gradients by ~1e-3 relative between batch sizes, beyond it
    one = Trainer(_cfg(tmp_path / "1", grad_accum=1, **over), device="cpu", progress=False)
    two = Trainer(_cfg(tmp_path / "2", grad_accum=2, **over), device="cpu", progress=False)
    assert not one.model.training  # create_model returns eval mode: train_step itself must switch
    it1, it2 = iter(one._loader()), iter(two._loader())
    one.train_step([next(it1)])
    two.train_step([next(it2), next(it2)])
    for tr in (one, two):
        # train mode everywhere but the frozen text tower (kept in eval by the model, as officially)
        assert tr.model.training and all(
            m.training for n, m in tr.model.named_modules() if not n.startswith("text_encoder")
        )
        assert all(m.p == 0 for m in tr.model.modules() if isinstance(m, torch.nn.Dropout))
    named1 = {n: p.grad for n, p in one.model.named_parameters() if p.grad is not None}
    named2 = {n: p.grad for n, p in two.model.named_parameters() if p.grad is not None}
    assert named1.keys() == named2.keys() and named1
    return named1, named2


def _assert_grads_close(g1, g2):
    # the gradients of the step (left in .grad) must agree: Adam's first update is ~sign(grad), which would
    # amplify float-rounding differences of near-zero gradients, so compare gradients, not parameters. fp32
    # sums in a different order (2 micro-batches vs 1 batch): rtol 1e-4, atol 1e-6 of the largest gradient.
    scale = max(float(g.abs().max()) for g in g1.values())
    for k in g1:
        torch.testing.assert_close(g1[k], g2[k], rtol=1e-4, atol=1e-6 * scale, msg=lambda m, k=k: f"{k}: {m}")


def test_grad_accumulation_matches_one_big_batch(tmp_path):
    _assert_grads_close(*_accumulation_grads(tmp_path))


def test_cliprc_grad_accumulation_matches_one_big_batch(tmp_path):
    """CLIP-RC: mask + dice are renormalised by the global num_masks, the recovery L1 means by 1/grad_accum."""
    g1, g2 = _accumulation_grads(tmp_path, model="cliprc_tiny_test")
    rec = [k for k in g1 if "recovery_decoder" in k]
    assert rec and all(float(g1[k].abs().max()) > 0 for k in rec)  # the recovery branch does get gradients
    _assert_grads_close(g1, g2)


@pytest.mark.parametrize("setting", ["transductive", "fully"])
def test_other_settings_train(tmp_path, setting):
    tr = Trainer(_cfg(tmp_path, setting=setting, iterations=3, batch_size=2, save_native=False), progress=False)
    assert tr.text_train.shape[0] == 6  # all class embeddings
    if setting == "transductive":
        from zsseg_rt.data.loader import TrainStream

        raw = TrainStream(tr.dataset, tr.stream.augmentation, None, seed=tr.stream.seed)  # same crops, no LUT
        pos = next(p for p in range(64) if (raw[p][1] == 5).any())  # a sample that holds the unseen class
        raw_lab, lab = raw[pos][1], tr.stream[pos][1]
        # unseen (cyan checker, 5) GT -> -1 exactly there, seen classes and ignore unchanged, never 5
        assert torch.equal(lab == -1, raw_lab == 5) and not (lab == 5).any()
        assert torch.equal(lab[raw_lab != 5], raw_lab[raw_lab != 5])
    out = tr.train()
    assert out["iteration"] == 3 and np.isfinite(out["last_loss"])


def test_transductive_init_from_inductive_checkpoint(tmp_path):
    ind = Trainer(_cfg(tmp_path / "ind", iterations=2, batch_size=2, save_native=False), progress=False)
    ckpt = ind.train()["checkpoint"]
    st = Trainer(
        _cfg(tmp_path / "st", setting="transductive", init_from=str(ckpt), iterations=1, batch_size=2), progress=False
    )
    for k, v in ind.model.state_dict().items():
        assert torch.equal(v, st.model.state_dict()[k])
    assert st.iteration == 0


@pytest.mark.host_only  # DDP on the CPU (gloo, --device cpu)
def test_torchrun_two_process_gloo_matches_single_process(tmp_path):
    """DDP on the CPU (gloo, 2 processes): same data partition and loss normalisation as one process."""
    import json
    import shutil

    torchrun = shutil.which("torchrun") or str(Path(sys.executable).parent / "torchrun")
    if not os.path.exists(torchrun):
        pytest.skip("torchrun not found")
    cfg = {
        "model": "zegclip_tiny_p8_test",
        "model_overrides": {"image_size": 64, "crop_size": 64, "stride": 48, "test_scale": [256, 64], **NO_DROPOUT},
        "dataset": {
            "type": "synthetic",
            "length": 32,
            "size": [64, 64],
            "num_classes": 6,
            "seed": 0,
            "unseen": ["cyan checker"],
        },
        "text_embeddings": "random:0",
        "iterations": 3,
        "batch_size": 4,
        "lr": 1e-3,
        "warmup_iters": 0,
        "crop_size": 64,
        "img_scale": [128, 64],
        "num_workers": 0,
        "checkpoint_interval": 3,
        "log_interval": 1,
        "save_native": False,
    }
    path = tmp_path / "cfg.json"
    path.write_text(json.dumps(cfg))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    res = subprocess.run(
        [
            torchrun,
            "--nproc_per_node=2",
            "-m",
            "zsseg_rt.train",
            str(path),
            "--work-dir",
            str(tmp_path / "ddp"),
            "--no-progress",
            "--device",
            "cpu",
        ],
        env=env,
        capture_output=True,
        timeout=180,
    )
    assert res.returncode == 0, res.stderr.decode()[-3000:]
    Trainer(load_train_config(str(path), work_dir=str(tmp_path / "one")), device="cpu", progress=False).train()

    def losses(d):
        rows = (tmp_path / d / "log.csv").read_text().splitlines()[1:]
        return [[float(x) for x in r.split(",")[1:6]] for r in rows]

    a, b = losses("ddp"), losses("one")
    assert len(a) == len(b) == 3
    np.testing.assert_allclose(a, b, rtol=1e-5)
    ddp = load_checkpoint(tmp_path / "ddp" / "checkpoints" / "iter_0000003.pt")
    one = load_checkpoint(tmp_path / "one" / "checkpoints" / "iter_0000003.pt")
    assert len(ddp["rng"]) == 2 and ddp["model"].keys() == one["model"].keys()
    # final weights after 3 AdamW steps: the two runs differ only in fp32 summation order (gradients averaged
    # over 2 ranks by all-reduce vs one batch of 4), ~1e-7 relative on the gradients. Adam's update
    # g/(sqrt(v)+eps) is bounded by lr (1e-3) per step and moves by about lr x the relative gradient error, so
    # the weights agree far inside atol 1e-5 (1% of one step; observed <= 1e-6). Different data per step, a
    # rank stepping on its own half-batch gradient or a wrong per-rank weighting changes the gradient direction
    # and moves the weights by O(lr) (a global loss scale is what the logged losses above check; Adam is
    # ~invariant to it). Exception: attention KEY biases have an exactly-zero true gradient (softmax is
    # invariant to the constant q.b_k it adds over the keys), so their float gradient is rounding noise that
    # Adam divides by eps (1e-8): they get only Adam's hard bound of lr per step (observed ~1e-4).
    for k, v in one["model"].items():
        tol = cfg["iterations"] * cfg["lr"] if k.endswith("multihead_attn.k.bias") else 1e-5
        torch.testing.assert_close(ddp["model"][k], v, rtol=0, atol=tol, msg=lambda m, k=k: f"{k}: {m}")
    init = Trainer(load_train_config(str(path), work_dir=str(tmp_path / "init")), device="cpu", progress=False)
    moved = [k for k, v in init.model.state_dict().items() if not torch.equal(v, one["model"][k])]
    assert moved  # the comparison is about trained weights, not untouched initial ones


def test_cli_commands_register():
    import argparse

    from zsseg_rt.cli.eval import add_command as add_eval_command
    from zsseg_rt.cli.train import add_command as add_train_command

    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="cmd")
    add_train_command(sub)
    add_eval_command(sub)
    a = parser.parse_args(["train", "voc_inductive", "--amp", "--grad-accum", "4", "--set", "iterations=5"])
    assert a.amp is True and a.grad_accum == 4 and a.overrides == ["iterations=5"] and callable(a.func)
    e = parser.parse_args(["eval", "ckpt.pt", "--dataset", "voc", "--data-root", "/x", "--mode", "whole"])
    assert e.dataset == "voc" and e.mode == "whole" and e.skip_corrupt is False


def test_cliprc_recipes_follow_the_official_schedules():
    for name, iters in [
        ("cliprc_voc_inductive", 40000),
        ("cliprc_coco_inductive", 80000),
        ("cliprc_voc_transductive", 20000),
        ("cliprc_coco_transductive", 40000),
    ]:
        cfg = load_train_config(name)
        assert (cfg.iterations, cfg.lr, cfg.weight_decay, cfg.warmup_iters) == (iters, 2e-4, 0.01, 1500)
    assert load_train_config("cliprc_voc_transductive").init_from.endswith(
        "cliprc_voc_inductive/checkpoints/iter_0020000.pt"
    )


def test_cliprc_trains_through_the_same_trainer_with_its_recovery_loss(tmp_path):
    tr = Trainer(
        _cfg(tmp_path, model="cliprc_tiny_test", iterations=2, batch_size=2, save_native=False), progress=False
    )
    assert type(tr.model).__name__ == "CLIPRC"
    images, labels, _ = tr.stream[0]  # one sample of the training stream: CPU tensors, as the DataLoader gives them
    tr.model.train()
    logits = tr.model(torch.as_tensor(images)[None].to(tr.device), tr.text_train)  # on the trainer's device
    parts = tr.loss_fn(logits.float(), torch.as_tensor(labels)[None].long().to(tr.device))
    assert "recovery_loss_q" in parts and float(parts["recovery_loss_q"].detach()) > 0
    out = tr.train()
    assert out["iteration"] == 2 and np.isfinite(out["last_loss"])
