"""The segmentation training loop (ZegCLIP's recipe, used by every trainable family unless the family brings its own
trainer): inductive / transductive (self-training) / fully supervised.

One process (CPU or one GPU) or several under ``torchrun`` (DistributedDataParallel; gloo on CPU, nccl on GPU).
Exactness notes:

* Loss normalisation follows the official criterion: ``num_masks`` (present (image, class) pairs) is summed over
  the whole global batch (all ranks, all accumulation steps) and divided by the world size, DDP then averages
  the gradients, so any (GPUs x accumulation) split of batch 16 gives the gradient of one batch of 16. In
  transductive mode with ``grad_accum > 1`` the pseudo-labelled count of a later micro-batch is not known when
  an earlier one back-propagates, so each micro-batch is normalised by its own count / ``grad_accum``
  (approximation; exact for ``grad_accum = 1``). Only mask + dice are re-normalised that way: CLIP-RC's recovery
  losses are per-sample means (official ``nn.L1Loss`` per rank, gradients averaged by DDP), so each
  micro-batch's recovery terms are weighted ``1 / grad_accum`` (exact for equal micro-batches).
* ``train_step`` puts the network in training mode (dropout on, CLIP-RC's recovery branch active), as the
  official runner does.
* Resume restores the full model state, optimizer, schedule, grad scaler, iteration and every RNG (torch, CUDA,
  NumPy, Python; one set per rank). Data order and augmentation are functions of (seed, iteration)
  (``zsseg_rt.data.loader``), so a resumed run continues bit-identically (same device/threads).
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.distributed as dist

from zsseg_rt.data import TrainAugmentation, build_dataset, inductive_lut, transductive_lut
from zsseg_rt.data.loader import PositionSampler, TrainStream

from .checkpoint import (
    _atomic_write,
    capture_rng,
    find_resume_checkpoint,
    load_checkpoint,
    restore_rng,
    save_checkpoint,
)
from .config import TrainConfig, load_train_config
from .optim import LrSchedule, PolyWarmupSchedule, build_optimizer

__all__ = ["Trainer", "trainer_class", "train", "load_model_weights", "make_text_embeddings", "count_present"]

LOG_FIELDS = ["iter", "loss", "loss_mask", "loss_dice", "lr", "num_masks", "seconds", "eta_seconds"]
# mean-reduced terms beyond mask + dice (CLIP-RC's recovery losses, ZegFormer's query classification CE)
EXTRA_LOSS_KEYS = ("recovery_loss_q", "recovery_loss_k", "loss_ce")


# ------------------------------------------------------------------------------------------------ helpers
def count_present(labels: torch.Tensor, ignore_index: int = 255) -> int:
    """(image, class) pairs present in ``labels [B,H,W]`` (what the loss counts as ``num_masks``)."""
    n = 0
    for lab in labels:
        v = lab[(lab != ignore_index) & (lab >= 0)]
        n += int(torch.unique(v).numel())
    return n


def make_text_embeddings(model, class_names: Sequence[str], spec: Optional[str]) -> torch.Tensor:
    """``[C, D]`` float32 class embeddings: CLIP text tower (None), a file, or ``"random:SEED"`` (fixed random
    unit vectors; for tests with random towers)."""
    d = model.embed_dim
    if spec is None:
        with torch.no_grad():
            return model.text_embeddings(list(class_names)).detach().float().cpu()
    if str(spec).startswith("random:"):
        g = torch.Generator().manual_seed(int(str(spec).split(":", 1)[1]))
        t = torch.randn(len(class_names), d, generator=g)
        return torch.nn.functional.normalize(t, dim=-1)
    from zsseg_rt.contract.common.text import load_text_embeddings

    t = torch.as_tensor(np.asarray(load_text_embeddings(spec), dtype=np.float32))
    if t.shape != (len(class_names), d):
        raise ValueError(
            f"text embeddings {spec!r} have shape {tuple(t.shape)}, expected [{len(class_names)}, {d}] "
            "(classes x embed_dim, in the dataset's class order)"
        )
    return t


def load_model_weights(model, path: Union[str, Path]) -> None:
    """Load a training checkpoint (``.pt``) or native checkpoint directory's weights into ``model`` (strict)."""
    p = Path(path)
    if p.is_dir() or p.suffix == ".safetensors":
        from safetensors.torch import load_file

        f = p / "model.safetensors" if p.is_dir() else p
        state = load_file(str(f))
    else:
        state = load_checkpoint(p)["model"]
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise RuntimeError(f"weights in {p} do not fit the model: missing {missing[:5]}, unexpected {unexpected[:5]}")


class _Dist:
    def __init__(self):
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.enabled = self.world > 1

    def init(self, backend: Optional[str], device: torch.device) -> None:
        if self.enabled and not dist.is_initialized():
            # the training device's, not the machine's: `--device cpu` on a GPU machine took nccl, which cannot
            # reduce CPU tensors (found on the first H200 run)
            backend = backend or ("nccl" if device.type == "cuda" else "gloo")
            dist.init_process_group(backend=backend)

    def all_sum(self, x: float, device) -> float:
        if not self.enabled:
            return float(x)
        t = torch.tensor([float(x)], dtype=torch.float64, device=device)
        dist.all_reduce(t)
        return float(t.item())


# ------------------------------------------------------------------------------------------------ trainer
class Trainer:
    """Build everything from a :class:`TrainConfig` and run :meth:`train`.

    Args:
        cfg: the recipe.
        device: "auto" (cuda:LOCAL_RANK when available, else cpu), "cpu", "cuda", ...
        progress: show a tqdm bar (rank 0 only).
        dist_backend: torch.distributed backend under torchrun (default nccl when training on CUDA, else gloo).
    """

    def __init__(
        self, cfg: TrainConfig, device: str = "auto", progress: bool = True, dist_backend: Optional[str] = None
    ):
        self.cfg = cfg.validate()
        self.dist = _Dist()
        if device == "auto":
            device = f"cuda:{self.dist.local_rank}" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        if self.device.type == "cuda":
            if not torch.cuda.is_available():
                raise RuntimeError(
                    f"device {str(device)!r} asked for, but torch sees no CUDA device here (torch {torch.__version__}, "
                    "built for CUDA " + str(torch.version.cuda) + "): use --device cpu or auto"
                )
            if self.device.index is None:  # "cuda": this process's GPU (set_device refuses a device without index)
                index = self.dist.local_rank if self.dist.enabled else torch.cuda.current_device()
                self.device = torch.device("cuda", index)
            torch.cuda.set_device(self.device)
        self.dist.init(dist_backend, self.device)
        self.progress = progress and self.dist.rank == 0
        self.work_dir = Path(cfg.work_dir)
        self.iteration = 0
        self._build()

    # -------------------------------------------------------------- setup
    def _build(self) -> None:
        cfg = self.cfg
        if cfg.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
        self.dataset = build_dataset(
            dict(cfg.dataset),
            on_corrupt=cfg.dataset.get("on_corrupt", cfg.on_corrupt),
            on_bad_label=cfg.dataset.get("on_bad_label", cfg.on_bad_label),
            **({"unseen": cfg.unseen} if cfg.unseen is not None else {}),
        )
        split = self.dataset.split
        from zsseg_rt.contract.registry import create_model, load_model_config

        base = load_model_config(cfg.model, **cfg.model_overrides)  # ZegCLIP or CLIP-RC
        setting = cfg.setting or base.setting
        seen = list(range(split.num_classes)) if setting == "fully" else list(split.seen)
        if not seen:
            raise ValueError(f"{self.dataset!r}: no seen classes to train on")
        overrides = dict(cfg.model_overrides, class_names=list(split.class_names), seen_classes=seen, setting=setting)
        torch.manual_seed(cfg.seed)  # model init identical on every rank (DDP also broadcasts)
        self.model = create_model(cfg.model, pretrained=cfg.pretrained, **overrides).to(self.device)
        if cfg.init_from:
            load_model_weights(self.model, cfg.init_from)
        self.setting, self.seen = setting, seen
        text = make_text_embeddings(self.model, split.class_names, cfg.text_embeddings)
        self.text_all = text.to(self.device)
        self.text_train = self.text_all[seen] if setting == "inductive" else self.text_all
        if setting == "inductive":
            lut = inductive_lut(seen)
        elif setting == "transductive":
            lut = transductive_lut(seen, split.num_classes)  # official _visiable_mask_st table
        else:
            lut = None
        mc = self.model.config
        aug = TrainAugmentation(
            crop_size=(cfg.crop_size, cfg.crop_size),
            img_scale=(int(cfg.img_scale[0]), int(cfg.img_scale[1])),
            ratio_range=None if cfg.ratio_range is None else (float(cfg.ratio_range[0]), float(cfg.ratio_range[1])),
            cat_max_ratio=cfg.cat_max_ratio,
            flip_prob=cfg.flip_prob,
            photometric=cfg.photometric,
            mean=mc.mean,
            std=mc.std,
            ignore_index=mc.ignore_index,
        )
        self.stream = TrainStream(self.dataset, aug, lut, seed=cfg.seed)
        from zsseg_rt.contract.registry import family_of_model

        training = training_of(family_of_model(self.model))
        self.loss_fn = training.loss(self.model)  # the family's loss (CLIP-RC adds its recovery terms)
        # the family's parameter groups (ZegFormer: backbone lr multiplier, no decay on norms/embeddings)
        params = training.parameter_groups(self.model, cfg.weight_decay)
        self.optimizer = build_optimizer(params, cfg.lr, cfg.weight_decay, cfg.betas)
        self.schedule = self.make_schedule()
        self.setup_amp()
        self.net = self.model
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel as DDP

            # the last decoder layer's query-update params never get a gradient (official too)
            self.net = DDP(
                self.model,
                device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=True,
            )
        torch.manual_seed(cfg.seed * 1000 + 17 + self.dist.rank)  # dropout stream, per rank
        np.random.seed((cfg.seed * 1000 + self.dist.rank) % 2**32)

    # -------------------------------------------------------------- hooks for a family's trainer
    # A family's trainer (ZeroSeg's) subclasses this one and changes what differs through these, instead of copying.
    collate_fn: Optional[Callable[[List[Any]], Any]] = None
    """The DataLoader's batch collation (:meth:`_loader`): None, torch's ``default_collate``. A family's trainer sets
    its own as ``collate_fn = staticmethod(function)`` (a module-level function, so DataLoader workers can pickle it)."""

    def make_schedule(self) -> LrSchedule:
        """The lr schedule (called by ``_build`` once ``self.optimizer`` exists): the recipe's poly + warm-up."""
        cfg = self.cfg
        return PolyWarmupSchedule(
            self.optimizer, cfg.lr, cfg.iterations, cfg.poly_power, cfg.min_lr, cfg.warmup_iters, cfg.warmup_ratio
        )

    def setup_amp(self) -> None:
        """``amp_dtype`` and the grad ``scaler`` (enabled for float16 autocast on CUDA only), from the recipe."""
        cfg = self.cfg
        self.amp_dtype = torch.float16 if cfg.amp_dtype == "float16" else torch.bfloat16
        use_scaler = cfg.amp and self.amp_dtype == torch.float16 and self.device.type == "cuda"
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=use_scaler)

    def apply_gradients(self, logs: Dict[str, float], lr: float) -> Dict[str, float]:
        """The end of a step once every micro-batch has back-propagated: refuse a non-finite ``logs["loss"]``, clip
        (``grad_clip``), optimizer + scaler step, count the iteration; returns ``logs`` with ``lr`` added."""
        cfg = self.cfg
        if not math.isfinite(logs["loss"]):
            raise FloatingPointError(
                f"loss is {logs['loss']} at iteration {self.iteration}; lower the lr or disable amp"
            )
        if cfg.grad_clip:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.trainable_parameters(), cfg.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.iteration += 1
        logs["lr"] = lr
        return logs

    # -------------------------------------------------------------- checkpoints
    def state_dict(self) -> Dict[str, Any]:
        rng = capture_rng()
        if self.dist.enabled:
            gathered: List[Any] = [None] * self.dist.world
            dist.all_gather_object(gathered, rng)
            rng_all = gathered
        else:
            rng_all = [rng]
        return {
            "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "model_config": self.model.config.to_dict(),
            "train_config": self.cfg.to_dict(),
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else None,
            "rng": rng_all,
            "world_size": self.dist.world,
            "text_embeddings": self.text_all.detach().cpu(),
        }

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"], strict=True)
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        if state.get("scaler") and self.scaler.is_enabled():
            self.scaler.load_state_dict(state["scaler"])
        self.iteration = int(state["iteration"])
        rng = state["rng"]
        if len(rng) == self.dist.world:
            restore_rng(rng[self.dist.rank])
        else:
            warnings.warn(
                f"checkpoint was written by {len(rng)} processes, this run has {self.dist.world}: the "
                "dropout RNG streams are re-seeded (data order/augmentation are unaffected)",
                RuntimeWarning,
            )
            torch.manual_seed(self.cfg.seed * 1000 + 17 + self.dist.rank + 7 * self.iteration)

    def save(self) -> Optional[Path]:
        state = self.state_dict()  # collective under DDP: every rank calls it
        if self.dist.rank != 0:
            return None
        return save_checkpoint(
            state, self.work_dir, self.iteration, self.cfg.keep_checkpoints, protect=self.cfg.keep_iterations
        )

    def resume(self, path: Union[str, Path, None] = "auto") -> Optional[Path]:
        """Resume from ``path`` or, with "auto", the newest readable checkpoint in ``work_dir`` (if any)."""
        if path is None:
            return None
        p = find_resume_checkpoint(self.work_dir) if path == "auto" else Path(path)
        if p is None:
            return None
        self.load_state_dict(load_checkpoint(p, map_location="cpu"))
        return p

    # -------------------------------------------------------------- training
    def _share_skip_record(self):
        """With DataLoader workers, samples are loaded (and corrupt ones skipped) in the workers' processes: the
        dataset's ``skipped`` record becomes a dict of a multiprocessing manager shared with them, so the summary's
        ``skipped_samples`` counts what they skipped (it said 0). Returns the manager (None without workers)."""
        if self.cfg.num_workers <= 0 or not isinstance(getattr(self.dataset, "skipped", None), dict):
            return None
        if getattr(self.dataset, "on_corrupt", "skip") != "skip":  # nothing is skipped: nothing to share
            return None
        import multiprocessing

        manager = multiprocessing.Manager()
        self.dataset.skipped = manager.dict(self.dataset.skipped)
        return manager

    def _unshare_skip_record(self, manager) -> None:
        """Copy the shared skip record back into a plain dict and stop the manager's process."""
        import gc

        gc.collect()  # a dropped loader iterator shuts its workers down now, not at some later collection
        try:
            self.dataset.skipped = dict(self.dataset.skipped)
        finally:
            manager.shutdown()

    def _loader(self):
        """The training DataLoader over ``self.stream`` (positions from the iteration on; ``collate_fn``)."""
        from torch.utils.data import DataLoader

        sampler = PositionSampler(
            self.cfg.batch_size, self.dist.world, self.dist.rank, self.cfg.grad_accum, start_iter=self.iteration
        )
        return DataLoader(
            self.stream,
            batch_size=sampler.micro_batch,
            sampler=sampler,
            num_workers=self.cfg.num_workers,
            pin_memory=self.device.type == "cuda",
            persistent_workers=False,
            generator=torch.Generator().manual_seed(self.cfg.seed),  # never draw from the global (restored) RNG
            collate_fn=self.collate_fn,
        )

    def _micro_loss(self, images, labels, norm: Optional[float]):
        cfg, mc = self.cfg, self.model.config
        with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=cfg.amp):
            logits = self.net(images, self.text_train)
        if self.setting == "transductive":
            from zsseg_rt.contract.common.losses import transductive_pseudo_labels, upsample_logits

            pred = upsample_logits(logits.detach().float(), mc.image_size, tuple(labels.shape[-2:]))
            labels = transductive_pseudo_labels(pred, labels, self.seen, mc.ignore_index)
        out = self.loss_fn(logits.float() if isinstance(logits, torch.Tensor) else logits, labels)
        nm = float(out["num_masks"])
        if norm is None:  # transductive: the count is known only now
            if cfg.grad_accum == 1:
                total = self.dist.all_sum(count_present(labels, mc.ignore_index), self.device)
                norm = max(total / self.dist.world, 1.0)
            else:
                norm = nm * cfg.grad_accum
        # mask + dice are sums over (image, class) pairs / num_masks: re-normalised by the global count. Extra
        # terms (CLIP-RC's recovery L1 losses) are per-micro-batch MEANS (official nn.L1Loss per rank, DDP
        # averaging the ranks): equal-sized micro-batches average exactly with a 1 / grad_accum weight.
        seg = out["loss_mask"] + out["loss_dice"]
        extra = [out[k] for k in EXTRA_LOSS_KEYS if k in out]
        loss = seg * (nm / norm)
        for term in extra:
            loss = loss + term / cfg.grad_accum
        return out, loss

    def train_step(self, batches) -> Dict[str, float]:
        self.net.train()  # official training runs with dropout on (and CLIP-RC's recovery branch needs it)
        lr = self.schedule.step(self.iteration)
        self.optimizer.zero_grad(set_to_none=True)
        norm = None
        if self.setting != "transductive":
            local = sum(count_present(lab, self.model.config.ignore_index) for _, lab, _ in batches)
            norm = max(self.dist.all_sum(local, self.device) / self.dist.world, 1.0)
        logs = {"loss": 0.0, "loss_mask": 0.0, "loss_dice": 0.0, "num_masks": 0.0}
        for m, (images, labels, _) in enumerate(batches):
            sync = contextlib.nullcontext()
            if self.dist.enabled and m < len(batches) - 1:
                sync = self.net.no_sync()
            with sync:
                out, loss = self._micro_loss(
                    images.to(self.device, non_blocking=True), labels.to(self.device, non_blocking=True), norm
                )
                self.scaler.scale(loss).backward()
            nm = float(out["num_masks"])
            for k in ("loss_mask", "loss_dice"):
                logs[k] += float(out[k].detach()) * nm
            logs["loss"] += float(loss.detach())
            logs["num_masks"] += nm
        if self.dist.enabled:  # log the global-batch values (rank-local losses are partial sums)
            t = torch.tensor(
                [logs["loss"], logs["loss_mask"], logs["loss_dice"], logs["num_masks"]],
                dtype=torch.float64,
                device=self.device,
            )
            dist.all_reduce(t)
            logs.update(
                loss=float(t[0]) / self.dist.world, loss_mask=float(t[1]), loss_dice=float(t[2]), num_masks=float(t[3])
            )
        total_nm = max(logs["num_masks"], 1.0)
        logs["loss_mask"] /= total_nm
        logs["loss_dice"] /= total_nm
        return self.apply_gradients(logs, lr)

    log_fields: Sequence[str] = LOG_FIELDS  # a family's trainer (ZeroSeg) logs its own loss terms
    tensorboard_keys: Tuple[str, ...] = ("loss", "loss_mask", "loss_dice", "lr")
    # what _build sets; a family's trainer (ZeroSeg) brings its own dataset and stream types
    dataset: Any
    stream: Any

    def _log_row(self, logs: Dict[str, float], elapsed: float, eta: float) -> Dict[str, Any]:
        return {
            "iter": self.iteration,
            "loss": f"{logs['loss']:.6f}",
            "loss_mask": f"{logs['loss_mask']:.6f}",
            "loss_dice": f"{logs['loss_dice']:.6f}",
            "lr": f"{logs['lr']:.6e}",
            "num_masks": int(logs["num_masks"]),
            "seconds": f"{elapsed:.2f}",
            "eta_seconds": f"{eta:.0f}",
        }

    def _open_log(self):
        if self.dist.rank != 0:
            return None, None
        self.work_dir.mkdir(parents=True, exist_ok=True)
        path = self.work_dir / "log.csv"
        rows = []
        if path.is_file():  # keep only rows up to the resumed iteration
            with open(path, "r", newline="", encoding="utf-8") as f:
                rows = [
                    r for r in csv.DictReader(f) if r.get("iter", "").isdigit() and int(r["iter"]) <= self.iteration
                ]

        def rewrite(f) -> None:
            writer = csv.DictWriter(f, fieldnames=self.log_fields, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)

        # rewritten as checkpoints are (temporary file + os.replace): a crash mid-rewrite leaves the old log intact
        _atomic_write(path, rewrite, text=True)
        f = open(path, "a", newline="", encoding="utf-8")
        return f, csv.DictWriter(f, fieldnames=self.log_fields)

    def _tensorboard(self):
        if not self.cfg.tensorboard or self.dist.rank != 0:
            return None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except Exception as exc:  # tensorboard not installed
            warnings.warn(
                f"tensorboard logging requested but unavailable ({exc}); pip install tensorboard", RuntimeWarning
            )
            return None
        return SummaryWriter(str(self.work_dir / "tensorboard"))

    def train(self, resume: Union[str, Path, None] = None, stop_after: Optional[int] = None) -> Dict[str, Any]:
        """Train until ``cfg.iterations`` (or ``stop_after`` more iterations, for tests / time limits).

        Args:
            resume: None (fresh start), "auto" (newest checkpoint in work_dir, if any) or a checkpoint path.
        Returns:
            summary dict: ``iteration``, ``last_loss``, ``checkpoint``, ``native`` (final model dir or None).
        """
        from zsseg_rt.console.progress import progress_bar

        cfg = self.cfg
        resumed = self.resume(resume)
        if self.dist.rank == 0:
            self.work_dir.mkdir(parents=True, exist_ok=True)
            with open(self.work_dir / "train_config.json", "w", encoding="utf-8") as f:
                json.dump(cfg.to_dict(), f, indent=1)
        end = cfg.iterations if stop_after is None else min(cfg.iterations, self.iteration + int(stop_after))
        self.net.train()
        log_file, writer = self._open_log()
        tb = self._tensorboard()
        bar = progress_bar(
            total=cfg.iterations,
            initial=self.iteration,
            disable=not self.progress,
            dynamic_ncols=True,
            desc=f"train {cfg.name or self.setting}",
        )
        last_ckpt, logs = resumed, {}
        start_time, start_iter = time.time(), self.iteration
        if cfg.num_workers > 0:  # the DataLoader sets a SIGCHLD handler: its signal frame must fit (AMX state)
            from zsseg_rt.runtime.signal_stack import ensure_signal_stack

            ensure_signal_stack()
        shared_skips = self._share_skip_record()
        data_iter = iter(self._loader()) if self.iteration < end else None
        try:
            while self.iteration < end:
                assert data_iter is not None  # set whenever the loop runs
                batches = [next(data_iter) for _ in range(cfg.grad_accum)]
                logs = self.train_step(batches)
                bar.update(1)
                done = self.iteration - start_iter
                elapsed = time.time() - start_time
                eta = elapsed / done * (cfg.iterations - self.iteration)
                if self.progress:
                    bar.set_postfix(loss=f"{logs['loss']:.4f}", lr=f"{logs['lr']:.2e}")
                if writer is not None and (self.iteration % cfg.log_interval == 0 or self.iteration == end):
                    writer.writerow(self._log_row(logs, elapsed, eta))
                    log_file.flush()
                    if tb is not None:
                        for k in self.tensorboard_keys:
                            tb.add_scalar(f"train/{k}", logs[k], self.iteration)
                if self.iteration % cfg.checkpoint_interval == 0 or self.iteration == cfg.iterations:
                    last_ckpt = self.save() or last_ckpt
        finally:
            data_iter = None  # the loader's workers end here, before their shared skip record is read back
            if shared_skips is not None:
                self._unshare_skip_record(shared_skips)
            bar.close()
            if log_file is not None:
                log_file.close()
            if tb is not None:
                tb.close()
        native = None
        if self.iteration >= cfg.iterations and cfg.save_native and self.dist.rank == 0:
            from zsseg_rt.contract.common.convert import save_native

            native = save_native(
                self.model,
                self.work_dir / "final",
                overwrite=True,
                extra={"trained_iterations": self.iteration, "train_config": cfg.to_dict()},
            )
        if self.dist.enabled:
            dist.barrier()
        return {
            "iteration": self.iteration,
            "last_loss": logs.get("loss"),
            "checkpoint": last_ckpt,
            "native": native,
            "skipped_samples": len(self.dataset.skipped),
        }


def training_of(family: Any) -> Any:
    """The family's training capability (``Family.training``); a family whose models are not trained is refused."""
    if family.training is None:
        raise ValueError(f"the {family.label} family's models are not trained (it has no training recipe)")
    return family.training


def trainer_class(cfg: TrainConfig) -> type:
    """The trainer of the recipe's model family (a family's own, e.g. a distillation trainer, or this one)."""
    from zsseg_rt.contract.registry import family_of, get_family

    return training_of(get_family(family_of(cfg.model))).trainer_class() or Trainer


def train(
    config,
    overrides: Optional[List[str]] = None,
    resume: Union[str, None] = "auto",
    device: str = "auto",
    progress: bool = True,
    stop_after: Optional[int] = None,
    dist_backend: Optional[str] = None,
    **kw,
) -> Dict[str, Any]:
    """Load a recipe, build a :class:`Trainer` and train (resuming from work_dir by default); ``dist_backend``: the
    torch.distributed backend under torchrun (default nccl on GPU, gloo on CPU)."""
    cfg = load_train_config(config, overrides, **kw)
    trainer = trainer_class(cfg)(cfg, device=device, progress=progress, dist_backend=dist_backend)
    try:
        return trainer.train(resume=resume, stop_after=stop_after)
    finally:
        if trainer.dist.enabled and dist.is_initialized():
            dist.destroy_process_group()
