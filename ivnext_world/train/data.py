"""Deterministic, resumable data order for training.

Exact resume needs two things from the data pipeline: the order of samples must be a function of
(seed, epoch) only, and the random augmentation of a sample must not depend on which worker
process happened to load it or on what that worker loaded before. ``ResumableSampler`` yields
``(epoch, index)`` keys in a seeded order starting at any position; ``SeededDataset`` seeds every
RNG from that key before calling the wrapped dataset, so a resumed run sees bit-identical batches.
Because every key carries its epoch, one set of persistent workers serves the whole run: a new epoch
only moves the sampler (:meth:`ResumableSampler.set_epoch`).

:class:`StopSignalsToMain` keeps DataLoader workers alive through a cluster's stop signals, so the main
process can finish its step and checkpoint.
"""
from __future__ import annotations

import os
import random
import signal
import threading
from typing import Callable, Iterator

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

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Move to ``epoch``, skipping its first ``start`` samples; takes effect at the next ``iter()``,
        which is how a DataLoader with persistent workers starts an epoch without new workers."""
        self.epoch, self.start = epoch, start

    def __iter__(self) -> Iterator[tuple[int, int]]:
        # Eager: the keys are fixed when the epoch starts, whatever set_epoch does later.
        epoch = self.epoch
        return iter([(epoch, i) for i in self.order()[self.start :]])

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


# SIGTERM: scontrol requeue, scancel, preemption. SIGUSR2: submitit's warning before the time limit.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR2)


class StopSignalsToMain:
    """``worker_init_fn`` for DataLoader workers: SIGTERM and SIGUSR2 belong to the main process.

    SLURM signals every process of a job, workers included. A worker's default (PyTorch's handler)
    is to die of SIGTERM, and of SIGUSR2 too; the main process then fails with "DataLoader worker
    (pid ...) is killed by signal" in the middle of the step it was about to checkpoint. With this
    init function a worker ignores both signals from anyone but the main process, which handles
    its own copy (``ivnext_world.launch.job``: finish the step, checkpoint, exit).

    A plain ``SIG_IGN`` is not enough: the DataLoader's shutdown, and multiprocessing at interpreter
    exit, end workers with SIGTERM from the main process (terminate, then join without a timeout),
    so a worker that ignores every SIGTERM can hang the main process at exit. Instead both signals
    are blocked and a thread reads them with ``sigwaitinfo``, which names the sender: a SIGTERM from
    the main process ends the worker at once (as PyTorch's own handler does), anything else is
    dropped. A worker whose main process dies of SIGKILL still exits on its own: the DataLoader's
    worker loop notices the new parent within seconds.

    Args:
        then: an existing ``worker_init_fn`` to call afterwards (composed, not replaced).

    Build it in the process that creates the workers (it records that process's pid).
    """

    def __init__(self, then: Callable[[int], None] | None = None):
        self.main_pid = os.getpid()
        self.then = then

    def __call__(self, worker_id: int) -> None:
        if hasattr(signal, "sigwaitinfo"):  # Linux; elsewhere workers keep PyTorch's handlers
            for sig in STOP_SIGNALS:
                # A handler, not SIG_IGN: an ignored signal is discarded before sigwaitinfo sees its
                # sender; the handler only runs in a thread that does not block the signals (none do).
                signal.signal(sig, _drop)
            # Blocked in this thread before any other starts, so every later thread inherits the mask
            # and the signals wait for the reader below.
            signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
            threading.Thread(target=_read_stop_signals, args=(self.main_pid,), name="stop-signals", daemon=True).start()
        if self.then is not None:
            self.then(worker_id)


def _drop(signum, frame) -> None:
    pass


def _read_stop_signals(main_pid: int) -> None:
    while True:
        info = signal.sigwaitinfo(STOP_SIGNALS)
        if info.si_signo == signal.SIGTERM and info.si_pid == main_pid:
            os._exit(0)  # the main process is shutting this worker down
