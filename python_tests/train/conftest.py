"""Shared training runs for python_tests/train/: the tiny ZegCLIP recipe trained once in fp32, used by its learning
test (test_training.py) and as the baseline the mixed-precision test (test_amp_training.py) compares with: one run
of 300 iterations instead of two.

This file only provides the session fixture below; it changes nothing for the other tests of this folder (no
autouse fixture, no hook). The one-torch-thread policy for train/ is python_tests/conftest.py's autouse
``_single_torch_thread``, which is function-scoped: pytest builds a session fixture before any function-scoped
one, so the fixture sets one thread itself for its run (as the learning test had when it trained in its own body)
and restores the count afterwards."""

from __future__ import annotations

import csv
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Dict, List

import pytest


def read_log(work_dir) -> List[Dict[str, str]]:
    """The rows of a training run's ``log.csv``."""
    with open(Path(work_dir) / "log.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="session")
def zegclip_fp32_learning(tmp_path_factory):
    """``tiny_test`` (300 iterations, batch 8, 64 px synthetic shapes) trained in fp32 through the Trainer on the
    CPU, with ``metrics(model)``: the seen-class metrics on 16 held-out images (whole-image mode, the run's fixed
    random text embeddings, no seen calibration: the unseen class's random embedding is meaningless here)."""
    torch = pytest.importorskip("torch")
    from zsseg_rt.data import SyntheticDataset
    from zsseg_rt.eval import evaluate
    from zsseg_rt.train import Trainer, load_train_config

    work_dir = tmp_path_factory.mktemp("tiny_test_fp32")
    # on the CPU on every machine (a GPU too): the learning bounds and the mixed-precision comparison were measured
    # on CPUs, and the mixed-precision runs are CPU ones
    tr = Trainer(
        load_train_config("tiny_test", work_dir=str(work_dir), checkpoint_interval=1000), device="cpu", progress=False
    )
    assert tr.cfg.iterations == 300 and not tr.cfg.amp
    text = tr.text_all.cpu().numpy()
    held_out = SyntheticDataset(length=16, size=(64, 64), num_classes=6, seed=999, unseen=["cyan checker"])

    def metrics(model):
        with torch.no_grad():
            return evaluate(model, held_out, mode="whole", text_embeddings=text, seen_classes=[], progress=False)

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # see the module docstring
    try:
        before = metrics(tr.model)
        t0 = time.time()
        summary = tr.train()
        seconds = time.time() - t0
        after = metrics(tr.model)
    finally:
        torch.set_num_threads(threads)
    return SimpleNamespace(
        before=before,
        after=after,
        summary=summary,
        work_dir=work_dir,
        text=text,
        seconds=seconds,
        metrics=metrics,
        log=read_log(work_dir),
    )
