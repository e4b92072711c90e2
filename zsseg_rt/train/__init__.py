"""ZegCLIP training (torch): recipes, the training loop, checkpoints, optimizer/schedule.

``zsseg train CONFIG`` or ``torchrun --nproc_per_node=N -m zsseg_rt.train CONFIG``.
"""

from .config import TrainConfig, list_train_configs, load_train_config
from .optim import PolyWarmupSchedule, build_optimizer, poly_lr
from .trainer import Trainer, train

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
