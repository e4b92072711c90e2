"""ZeroSeg distillation training through the shared :class:`~zsseg_rt.train.trainer.Trainer` machinery
(checkpoints with every RNG, resume, DDP, logs): a subclass that swaps the data (unlabeled images + teacher
features), the loss (:class:`~zsseg_rt.models.zeroseg.losses.ZeroSegLoss`) and the schedule (linear warm-up +
cosine, MAE's; ``lr_schedule="cosine"``).

Recipe ``dataset`` keys: ``type`` ("image_folder": ``root`` [+ ``limit``], or any :func:`build_dataset` type,
whose labels are ignored), ``teacher_cache`` (directory; features read from it, missing ones computed once and
stored), ``teacher`` (None: the CLIP teacher of the model config with ``pretrained`` weights; ``"planted:SEED"``:
the synthetic :class:`~zsseg_rt.models.zeroseg.teacher.PlantedTeacher` for tests), ``cache_dtype``.
Data order is a function of (seed, iteration) exactly as for the segmentation trainer, so resume is exact.
"""

from __future__ import annotations

import contextlib
import math
from typing import Any, Dict, List, Union

import numpy as np
import torch
import torch.distributed as dist

from zsseg_rt.data.loader import epoch_permutation
from zsseg_rt.train.config import TrainConfig
from zsseg_rt.train.optim import LrSchedule
from zsseg_rt.train.trainer import Trainer, load_model_weights

__all__ = ["ZeroSegTrainer", "CosineWarmupSchedule", "ZeroSegStream", "collate_stream", "cosine_lr"]

ZEROSEG_LOG_FIELDS = [
    "iter",
    "loss",
    "loss_rec",
    "loss_distill",
    "loss_match",
    "lr",
    "teacher_runs",
    "seconds",
    "eta_seconds",
]
NO_DECAY_NAMES = ("cls_token", "mask_token", "group_tokens", "seg_mask_token", "seg_pos_embed")


def cosine_lr(iteration: int, base_lr: float, max_iters: int, warmup_iters: int, min_lr: float = 0.0) -> float:
    """MAE's schedule: linear warm-up from 0, then half-cosine to ``min_lr`` (per iteration)."""
    i = min(max(int(iteration), 0), int(max_iters))
    if i < warmup_iters:
        return base_lr * i / warmup_iters
    t = (i - warmup_iters) / max(1, max_iters - warmup_iters)
    return min_lr + (base_lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * t))


class CosineWarmupSchedule(LrSchedule):
    """:func:`cosine_lr` as an :class:`~zsseg_rt.train.optim.LrSchedule` (state = the iteration): its arguments
    (``base_lr``, ``max_iters``, ``warmup_iters``, ``min_lr``), positional in that order or by name."""

    def __init__(self, optimizer, *args: Any, **lr_args: Any):
        super().__init__(optimizer, cosine_lr, *args, **lr_args)


class _ArrayImages:
    """Any segmentation dataset (labels dropped) as centre-cropped RGB uint8 images keyed by pixel hash."""

    def __init__(self, dataset, image_size: int):
        self.dataset, self.image_size = dataset, int(image_size)

    @property
    def skipped(self) -> List[str]:
        return list(getattr(self.dataset, "skipped", []))

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Dict[str, Any]:
        import hashlib

        from torchvision.transforms import InterpolationMode
        from torchvision.transforms import functional as TF

        img = torch.from_numpy(np.ascontiguousarray(self.dataset.load(index)[0])).permute(2, 0, 1)  # [3, H, W]
        img = TF.resize(img, self.image_size, interpolation=InterpolationMode.BICUBIC, antialias=True)
        img = TF.center_crop(img, [self.image_size, self.image_size])
        key = hashlib.sha256(img.numpy().tobytes()).hexdigest()
        return {"image": img, "key": key, "index": index, "path": self.dataset.image_id(index)}

    def views_of(self, index: int, grids, size: int) -> torch.Tensor:
        """The teacher's views of image ``index`` at its own resolution, ``[n, 3, size, size]`` uint8."""
        from .teacher import image_views

        return image_views(np.ascontiguousarray(self.dataset.load(index)[0]), grids, size)


class ZeroSegStream:
    """``stream[p]`` -> dict(image uint8 [3,S,S], views [n,E] float32 (zeros when not cached), has_views, key,
    index, and ``view_pixels`` [n,3,T,T] uint8 for an image the teacher still has to see when its views are cut
    from the image itself, else None): positions map to images exactly as
    :class:`zsseg_rt.data.loader.TrainStream` maps them. Batches are put together by :func:`collate_stream`."""

    def __init__(self, images, cache, num_views: int, embed_dim: int, seed: int = 0, view_spec=None):
        if len(images) == 0:
            raise ValueError("the image dataset is empty: nothing to train on")
        self.images, self.cache, self.seed = images, cache, int(seed)
        self.num_views, self.embed_dim = int(num_views), int(embed_dim)
        self.view_spec = view_spec  # (grids, teacher size) for teacher_view_source="image", else None

    def __len__(self) -> int:
        return 2**62

    def __getitem__(self, position: int) -> Dict[str, Any]:
        n = len(self.images)
        perm = epoch_permutation(self.seed, int(position) // n, n)
        item = dict(self.images[int(perm[int(position) % n])])
        views = self.cache.get(item["key"]) if self.cache is not None else None
        item["has_views"] = views is not None
        item["views"] = views if views is not None else torch.zeros(self.num_views, self.embed_dim)
        item["view_pixels"] = None
        if views is None and self.view_spec is not None:
            item["view_pixels"] = self.images.views_of(item["index"], *self.view_spec)
        return item


def collate_stream(items: List[Dict[str, Any]]) -> Dict[str, Any]:
    """The default collation, except ``view_pixels``: a list (None where the views are cached)."""
    from torch.utils.data import default_collate

    pixels = [it.pop("view_pixels", None) for it in items]
    batch = default_collate(items)
    batch["view_pixels"] = pixels
    return batch


class ZeroSegTrainer(Trainer):
    """ZeroSeg's trainer: every step = student forward (masked) + losses against the teacher's view features."""

    log_fields = ZEROSEG_LOG_FIELDS
    tensorboard_keys = ("loss", "loss_rec", "loss_distill", "loss_match", "lr")
    collate_fn = staticmethod(collate_stream)  # the DataLoader's (Trainer._loader): view_pixels stay a list

    def _build(self) -> None:
        from zsseg_rt.models import create_model

        from .data import UnlabeledImageFolder
        from .losses import ZeroSegLoss
        from .teacher import CLIPTeacher, PlantedTeacher, TeacherFeatureCache

        cfg: TrainConfig = self.cfg
        if cfg.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
        torch.manual_seed(cfg.seed)  # student init identical on every rank
        self.model = create_model(cfg.model, **cfg.model_overrides).to(self.device)
        if cfg.init_from:
            load_model_weights(self.model, cfg.init_from)
        mc = self.model.config
        spec = dict(cfg.dataset)
        teacher_spec = spec.pop("teacher", None)
        cache_dir = spec.pop("teacher_cache", None)
        cache_dtype = spec.pop("cache_dtype", "float16")
        self.teacher: Union[PlantedTeacher, CLIPTeacher]
        if teacher_spec is not None and str(teacher_spec).startswith("planted:"):
            self.teacher = PlantedTeacher(mc, int(str(teacher_spec).split(":", 1)[1]))
        elif teacher_spec is None:
            self.teacher = CLIPTeacher(mc, cfg.pretrained)
        else:
            raise ValueError(f"dataset.teacher must be null (CLIP teacher) or 'planted:SEED', got {teacher_spec!r}")
        self.teacher = self.teacher.to(self.device)
        self.cache = TeacherFeatureCache(cache_dir, self.teacher.fingerprint, cache_dtype) if cache_dir else None
        images: Union[UnlabeledImageFolder, _ArrayImages]
        if spec.get("type") == "image_folder":
            images = UnlabeledImageFolder(
                spec["root"], mc.image_size, spec.get("on_corrupt", cfg.on_corrupt), spec.get("limit")
            )
        else:
            from zsseg_rt.data import build_dataset

            images = _ArrayImages(build_dataset(spec, on_corrupt=spec.get("on_corrupt", cfg.on_corrupt)), mc.image_size)
        self.dataset = images
        view_spec = (list(mc.teacher_grids), int(mc.teacher_image_size)) if mc.teacher_view_source == "image" else None
        self.stream = ZeroSegStream(images, self.cache, mc.num_views, mc.embed_dim, seed=cfg.seed, view_spec=view_spec)
        self.loss_fn = ZeroSegLoss(mc)
        self.register_buffers(mc)
        self.setting, self.seen = "distillation", []
        self.text_all = torch.zeros(0, mc.embed_dim)  # no text in training ([P]); kept for the checkpoint layout
        self.optimizer = self._optimizer()
        self.schedule = self.make_schedule()
        self.setup_amp()
        self.net = self.model
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel as DDP

            net = (
                torch.nn.SyncBatchNorm.convert_sync_batchnorm(self.model) if self.device.type == "cuda" else self.model
            )
            self.net = DDP(net, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        self.teacher_runs = 0
        torch.manual_seed(cfg.seed * 1000 + 17 + self.dist.rank)  # masking / Gumbel stream, per rank
        np.random.seed((cfg.seed * 1000 + self.dist.rank) % 2**32)

    def register_buffers(self, mc) -> None:
        self.mean = torch.tensor(mc.mean, device=self.device).view(1, 3, 1, 1)
        self.std = torch.tensor(mc.std, device=self.device).view(1, 3, 1, 1)

    def _optimizer(self) -> torch.optim.AdamW:
        """AdamW, no weight decay on biases, norms and learned tokens (MAE/timm convention; inferred)."""
        decay: List[torch.nn.Parameter] = []
        no_decay: List[torch.nn.Parameter] = []
        for name, p in self.model.named_parameters():
            if not p.requires_grad:
                continue
            skip = p.ndim <= 1 or name.endswith(".bias") or any(k in name for k in NO_DECAY_NAMES)
            (no_decay if skip else decay).append(p)
        groups = [{"params": decay, "weight_decay": self.cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        return torch.optim.AdamW(groups, lr=self.cfg.lr, betas=(float(self.cfg.betas[0]), float(self.cfg.betas[1])))

    def make_schedule(self) -> LrSchedule:
        """``lr_schedule="cosine"``: MAE's linear warm-up + cosine; otherwise the generic trainer's poly schedule."""
        cfg = self.cfg
        if cfg.lr_schedule == "cosine":
            return CosineWarmupSchedule(self.optimizer, cfg.lr, cfg.iterations, cfg.warmup_iters, cfg.min_lr)
        return super().make_schedule()

    def teacher_views(self, batch: Dict[str, Any]) -> torch.Tensor:
        """[b, n, E] teacher features of a micro-batch: cached rows as read, the rest computed (and stored)."""
        views = batch["views"].to(self.device, non_blocking=True).float()
        missing = [i for i, ok in enumerate(batch["has_views"].tolist()) if not ok]
        if missing:
            if self.model.config.teacher_view_source == "image":
                pixels = torch.stack([batch["view_pixels"][i] for i in missing]).to(self.device)
                fresh = self.teacher.encode_views(pixels)
            else:
                fresh = self.teacher(batch["image"][missing].to(self.device))
            views[missing] = fresh.float()
            self.teacher_runs += len(missing)
            if self.cache is not None:
                for i, f in zip(missing, fresh):
                    self.cache.put(batch["key"][i], f)
        return views

    def train_step(self, batches: List[Dict[str, Any]]) -> Dict[str, float]:
        cfg = self.cfg
        self.net.train()
        lr = self.schedule.step(self.iteration)
        self.optimizer.zero_grad(set_to_none=True)
        keys = ("loss", "loss_rec", "loss_distill", "loss_match")
        logs = {k: 0.0 for k in keys}
        for m, batch in enumerate(batches):
            sync = self.net.no_sync() if self.dist.enabled and m < len(batches) - 1 else contextlib.nullcontext()
            views = self.teacher_views(batch)
            images = (batch["image"].to(self.device, non_blocking=True).float() - self.mean) / self.std
            with sync:
                with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=cfg.amp):
                    out = self.net(images, masked=True)
                terms = self.loss_fn(out, images, views)
                # every term is a per-micro-batch mean: equal micro-batches average exactly with 1 / grad_accum
                self.scaler.scale(terms["loss"] / cfg.grad_accum).backward()
            for k in keys:
                logs[k] += float(terms[k].detach()) / cfg.grad_accum
        if self.dist.enabled:
            t = torch.tensor([logs[k] for k in keys], dtype=torch.float64, device=self.device)
            dist.all_reduce(t)
            logs = {k: float(v) / self.dist.world for k, v in zip(keys, t)}
        return self.apply_gradients(logs, lr)

    def _log_row(self, logs: Dict[str, float], elapsed: float, eta: float) -> Dict[str, Any]:
        row: Dict[str, Any] = {"iter": self.iteration, "lr": f"{logs['lr']:.6e}", "teacher_runs": self.teacher_runs}
        row.update({k: f"{logs[k]:.6f}" for k in ("loss", "loss_rec", "loss_distill", "loss_match")})
        row.update(seconds=f"{elapsed:.2f}", eta_seconds=f"{eta:.0f}")
        return row
