"""Deterministic, resumable training data: sample POSITIONS instead of indices.

The training stream is an endless sequence of positions ``0, 1, 2, ...``. Position ``p`` maps to dataset index
``perm_e[p % N]`` with ``e = p // N`` and ``perm_e`` a permutation seeded by ``(seed, e)`` (a fresh shuffle
every epoch, like mmseg's ``DistributedSampler`` + ``IterLoader``), and its augmentation RNG is seeded by
``(seed, p)``. Iteration ``it`` of a run with global batch ``B`` consumes positions ``[it*B, (it+1)*B)``; rank
``r`` of ``W`` with ``A`` accumulation steps takes micro-batch ``m`` = positions
``it*B + (m*W + r)*b + [0, b)`` with ``b = B/(W*A)``. So the data a step sees depends only on (seed, it) —
not on the number of GPUs, workers or accumulation steps — and resuming at iteration ``it`` just starts
the sampler there (no loader RNG state to save).
"""

from __future__ import annotations

from typing import Iterator, Optional

import numpy as np

from .datasets import SegmentationDataset
from .labels import apply_lut
from .transforms import TrainAugmentation

__all__ = ["TrainStream", "PositionSampler", "epoch_permutation"]


def epoch_permutation(seed: int, epoch: int, n: int) -> np.ndarray:
    return np.random.default_rng([int(seed), 7919, int(epoch)]).permutation(n)


class TrainStream:
    """``stream[p]`` -> ``(image [3,S,S] float32 tensor, label [S,S] int64 tensor, dataset index)``.

    A map-style torch dataset over positions (length is nominal: the sampler is infinite). Corrupt samples with
    ``on_corrupt="skip"`` are replaced by the next dataset index (deterministically) with a warning.
    """

    def __init__(
        self, dataset: SegmentationDataset, augmentation: TrainAugmentation, lut: Optional[np.ndarray], seed: int = 0
    ):
        if len(dataset) == 0:
            raise ValueError(f"{dataset!r} is empty: nothing to train on")
        self.dataset = dataset
        self.augmentation = augmentation
        self.lut = lut
        self.seed = int(seed)
        self._perm_cache: dict = {}

    def __len__(self) -> int:
        return 2**62

    def index_of(self, position: int) -> int:
        n = len(self.dataset)
        epoch = position // n
        perm = self._perm_cache.get(epoch)
        if perm is None:
            perm = epoch_permutation(self.seed, epoch, n)
            self._perm_cache = {epoch: perm}
        return int(perm[position % n])

    def __getitem__(self, position: int):
        import torch

        n = len(self.dataset)
        index = self.index_of(int(position))
        sample = None
        for attempt in range(min(n, 64)):
            sample = self.dataset.load_safe((index + attempt) % n)
            if sample is not None:
                index = (index + attempt) % n
                break
        if sample is None:
            raise RuntimeError(f"{self.dataset!r}: 64 consecutive samples are corrupt; check the dataset")
        rng = np.random.default_rng([self.seed, int(position)])
        image, label = self.augmentation(sample[0], sample[1], rng)
        label = apply_lut(label, self.lut)
        return torch.from_numpy(image), torch.from_numpy(label), index


class PositionSampler:
    """Infinite sampler of this rank's positions from iteration ``start_iter`` on (see module docstring)."""

    def __init__(
        self, global_batch: int, world_size: int = 1, rank: int = 0, accum_steps: int = 1, start_iter: int = 0
    ):
        if global_batch % (world_size * accum_steps):
            raise ValueError(
                f"batch_size {global_batch} must be divisible by world_size x grad_accum = {world_size} x {accum_steps}"
            )
        self.global_batch = int(global_batch)
        self.world_size = int(world_size)
        self.rank = int(rank)
        self.accum_steps = int(accum_steps)
        self.micro_batch = global_batch // (world_size * accum_steps)
        self.start_iter = int(start_iter)

    def positions(self, iteration: int, micro_step: int):
        base = iteration * self.global_batch + (micro_step * self.world_size + self.rank) * self.micro_batch
        return range(base, base + self.micro_batch)

    def __iter__(self) -> Iterator[int]:
        it = self.start_iter
        while True:
            for m in range(self.accum_steps):
                yield from self.positions(it, m)
            it += 1

    def __len__(self) -> int:
        return 2**62
