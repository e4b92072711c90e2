"""ZegCLIP training (torch): recipes, the training loop, checkpoints, optimizer/schedule.

``zsseg train CONFIG`` or ``torchrun --nproc_per_node=N -m zsseg_rt.train CONFIG``.

Importing this package is light: the recipes (``config``) import no torch, and the names that need it (``Trainer``,
``train``, the optimizer and schedule) are imported on first use, so ``zsseg train --help`` answers without loading
torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .config import TrainConfig, list_train_configs, load_train_config

if TYPE_CHECKING:  # for type checkers; at run time these are imported on first use (__getattr__)
    from .optim import PolyWarmupSchedule, build_optimizer, poly_lr
    from .trainer import Trainer, train

_LAZY = {
    "Trainer": ".trainer",
    "train": ".trainer",
    "poly_lr": ".optim",
    "build_optimizer": ".optim",
    "PolyWarmupSchedule": ".optim",
}

__all__ = [
    "TrainConfig",
    "load_train_config",
    "list_train_configs",
    "Trainer",
    "train",
    "poly_lr",
    "build_optimizer",
    "PolyWarmupSchedule",
]


def __getattr__(name: str) -> Any:  # PEP 562: the torch side is imported when first used
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value
