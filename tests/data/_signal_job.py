"""Subprocess entry points for tests/data/test_loader.py (run as ``python _signal_job.py <mode> <out>``).

``train``: a tiny Trainer run with 2 DataLoader workers and the launcher's stop-signal handlers, as a
SLURM job has them; prints ``PREEMPTED <message>`` and exits 3 when stopped by a signal, prints
``DONE <steps> <weights sha256>`` when it finishes. ``hold``: a DataLoader with
:class:`StopSignalsToMain` workers that prints the worker pids and then either exits with the
iterator still alive (``hold exit``) or sleeps until killed (``hold sleep``).
"""
from __future__ import annotations

import hashlib
import os
import sys
import time

import torch
from torch.utils.data import DataLoader, Dataset

STEPS = 30


class SlowPoints(Dataset):
    """Regression points that take a few ms each to load, so the workers are busy when a signal comes."""

    def __init__(self, n: int = 24):
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(n, 8, generator=g)  # (N, 8)
        self.y = self.x @ torch.randn(8, 2, generator=g)  # (N, 2)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        time.sleep(0.01)
        return {"x": self.x[i] + 0.01 * torch.randn(8), "y": self.y[i]}  # noise: the seeded augmentation


def objective(model, batch, gen):
    loss = torch.nn.functional.mse_loss(model(batch["x"]), batch["y"])
    return loss, {}


def train(out: str) -> None:
    import logging

    from ivnext_world.launch.job import route_stop_signals
    from ivnext_world.train import LoopConfig, Preempted, Trainer

    logging.basicConfig(level=logging.INFO)  # the loop's "resumed from ... (step N)", as in a job log
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Dropout(0.2), torch.nn.Linear(16, 2))
    # ckpt_every beyond the run: the only mid-run checkpoint can come from the stop request.
    cfg = LoopConfig(steps=STEPS, batch_size=4, num_workers=2, warmup_steps=2, ckpt_every=1000, log_every=1, base_lr=0.1)
    trainer = Trainer(model, objective, SlowPoints(), cfg, out, device="cpu")
    route_stop_signals()
    try:
        trainer.fit()
    except Preempted as e:
        print(f"PREEMPTED {e}", flush=True)
        sys.exit(3)
    h = hashlib.sha256(b"".join(p.detach().numpy().tobytes() for p in model.parameters())).hexdigest()
    print(f"DONE {trainer.step} {h}", flush=True)


def hold(then: str) -> None:
    from ivnext_world.train.data import StopSignalsToMain

    global iterator  # alive at interpreter exit, as after an exception out of a training loop
    loader = DataLoader(SlowPoints(), batch_size=2, num_workers=2, persistent_workers=True, worker_init_fn=StopSignalsToMain())
    iterator = iter(loader)
    next(iterator)
    print("WORKERS", *[w.pid for w in iterator._workers], flush=True)
    if then == "sleep":
        time.sleep(120)


if __name__ == "__main__":
    mode, arg = sys.argv[1], sys.argv[2]
    train(arg) if mode == "train" else hold(arg)
