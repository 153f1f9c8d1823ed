"""Deterministic, resumable data order for training.

Exact resume needs two things from the data pipeline: the order of samples must be a function of
(seed, epoch) only, and the random augmentation of a sample must not depend on which worker
process happened to load it or on what that worker loaded before. ``ResumableSampler`` yields
``(epoch, index)`` keys in a seeded order starting at any position; ``SeededDataset`` seeds every
RNG from that key before calling the wrapped dataset, so a resumed run sees bit-identical batches.
"""
from __future__ import annotations

import random
from typing import Iterator

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler


def mix_seed(*xs: int) -> int:
    # SplitMix-style hash: nearby (seed, epoch, index) triples give unrelated 63-bit seeds.
    h = 0x9E3779B97F4A7C15
    for x in xs:
        h ^= (x + 0x9E3779B97F4A7C15 + ((h << 6) & (2**64 - 1)) + (h >> 2)) & (2**64 - 1)
        h = (h * 0xBF58476D1CE4E5B9) & (2**64 - 1)
    return h & (2**63 - 1)


class ResumableSampler(Sampler):
    """Seeded per-epoch permutation over ``length`` items, sharded over ``world_size`` ranks.

    Yields ``(epoch, index)``. ``start`` skips that many of this rank's samples of the epoch
    without touching the data, which is how a run resumes mid-epoch.
    """

    def __init__(self, length: int, seed: int, epoch: int = 0, start: int = 0, shuffle: bool = True, rank: int = 0, world_size: int = 1):
        if length <= 0:
            raise ValueError("ResumableSampler needs a non-empty dataset")
        self.length, self.seed, self.epoch, self.start = length, seed, epoch, start
        self.shuffle, self.rank, self.world_size = shuffle, rank, world_size

    def order(self) -> list[int]:
        if self.shuffle:
            g = torch.Generator().manual_seed(mix_seed(self.seed, self.epoch))
            perm = torch.randperm(self.length, generator=g).tolist()
        else:
            perm = list(range(self.length))
        # Pad by wrapping so every rank gets the same number of samples (DDP needs equal steps).
        per_rank = -(-self.length // self.world_size)
        perm = (perm * (1 + self.world_size))[: per_rank * self.world_size]
        return perm[self.rank :: self.world_size]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        for i in self.order()[self.start :]:
            yield (self.epoch, i)

    def __len__(self) -> int:
        return max(0, -(-self.length // self.world_size) - self.start)


class SeededDataset(Dataset):
    """Wraps a map-style dataset; item ``(epoch, i)`` is loaded under RNG seeds derived from it."""

    def __init__(self, dataset: Dataset, seed: int):
        self.dataset, self.seed = dataset, seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]):
        epoch, index = key
        s = mix_seed(self.seed, epoch, index)
        in_worker = torch.utils.data.get_worker_info() is not None
        # In the training process itself (num_workers=0) the global RNGs also drive dropout and
        # drop path: restore them afterwards so loading data does not change the model's randomness.
        saved = None if in_worker else (torch.get_rng_state(), np.random.get_state(), random.getstate())
        torch.manual_seed(s)
        np.random.seed(s % 2**32)
        random.seed(s)
        try:
            return self.dataset[index]
        finally:
            if saved is not None:
                torch.set_rng_state(saved[0])
                np.random.set_state(saved[1])
                random.setstate(saved[2])
