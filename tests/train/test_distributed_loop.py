"""The loop on 2 CPU ranks over gloo: collective non-finite skips, per-rank randomness with identical
init, exact per-rank resume, DDP without find_unused_parameters, FSDP units and mixed precision.

Each test spawns fresh processes (``_ranks.run_ranks``) with a time limit, so a desynchronised
collective fails the test instead of hanging it.
"""
from __future__ import annotations

import time

import pytest
import torch
from timm.layers import DropPath

from ivnext_world.train.loop import Trainer

from ._ranks import run_ranks
from .test_loop import NoisyData, cfg, make_model, mse, weights


def _nan_on_rank1(rank: int, out: str) -> dict:
    def objective(model, batch, gen):
        loss, metrics = mse(model, batch, gen)
        if rank == 1 and trainer.step == 2:  # the third step: only rank 1's loss is NaN
            loss = loss * float("nan")
        return loss, metrics

    trainer = Trainer(make_model(), objective, NoisyData(), cfg(steps=5, ckpt_every=100), out, device="cpu")
    history = trainer.fit()
    return {"nonfinite": trainer.nonfinite, "logged": [r["step"] for r in history], "weights": weights(trainer.model)}


@pytest.mark.slow
def test_nan_on_one_rank_skips_the_step_on_every_rank(tmp_path):
    r0, r1 = run_ranks(_nan_on_rank1, (str(tmp_path / "run"),), tmp_path / "pg", timeout=120, pg_timeout_s=30)
    # Rank 0's own loss was finite, yet it skipped the same step: the decision was collective.
    assert r0["nonfinite"] == r1["nonfinite"] == 1
    assert r0["logged"] == r1["logged"] == [1, 2, 4, 5]
    assert torch.equal(r0["weights"], r1["weights"]) and torch.isfinite(r0["weights"]).all()


class DropNet(torch.nn.Module):
    """A linear model whose objective also applies drop path (global RNG, like the encoder's blocks)."""

    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(4, 1)
        self.drop = DropPath(0.5)


def _drop_objective(model, batch, gen):
    kept = model.drop(torch.ones(16, 1))  # (16, 1): 0 where drop path dropped the sample, 2 where kept
    pred = model.lin(batch["x"]) * kept[: batch["x"].shape[0]]
    loss = torch.nn.functional.mse_loss(pred, batch["y"])
    return loss, {"mask": float(int("".join("1" if k else "0" for k in kept.flatten().tolist()), 2))}


def _full_state(model) -> dict:
    return {k: (v.full_tensor() if hasattr(v, "full_tensor") else v).detach().clone() for k, v in model.state_dict().items()}


def _init_and_drop_masks(rank: int, out: str, parallel: str) -> dict:
    torch.manual_seed(0)
    rank0_init = _full_state(DropNet())
    # As run_pretrain does, every rank seeds alike before building; with FSDP the ranks build
    # different models on purpose: the Trainer must train rank 0's (FSDP2 itself keeps each rank's slice).
    torch.manual_seed(0 if parallel == "ddp" else rank)
    model = DropNet()
    trainer = Trainer(model, _drop_objective, NoisyData(), cfg(steps=4, ckpt_every=100, parallel=parallel), out, device="cpu")
    init = _full_state(model)
    history = trainer.fit()
    return {"rank0_init": rank0_init, "init": init, "final": _full_state(model), "masks": [r["mask"] for r in history]}


@pytest.mark.slow
@pytest.mark.parametrize("parallel", ["ddp", "fsdp"])
def test_ranks_start_identical_but_draw_their_own_drop_path(tmp_path, parallel):
    r0, r1 = run_ranks(_init_and_drop_masks, (str(tmp_path / "run"), parallel), tmp_path / "pg", timeout=120)
    for r in (r0, r1):
        assert all(torch.equal(r["init"][k], r["rank0_init"][k]) for k in r["init"])
    assert all(torch.equal(r0["final"][k], r1["final"][k]) for k in r0["final"])
    assert len(r0["masks"]) == 4 and r0["masks"] != r1["masks"]  # 16 samples x 4 steps: equal only if seeded alike


def _slow_checkpoint_writes(delay_s: float) -> None:
    """This process writes every checkpoint ``delay_s`` late: a loaded machine or a slow shared file system."""
    import ivnext_world.train.checkpoint as checkpoint

    write = checkpoint.write_checkpoint

    def slow(*args, **kwargs):
        time.sleep(delay_s)
        return write(*args, **kwargs)

    checkpoint.write_checkpoint = slow  # what AsyncCheckpointWriter's thread calls


def _full_part_resume(rank: int, root: str, workers: int) -> dict:
    # Rank 0 (the only writer) writes slowly: the step-4 checkpoint is still being written when the
    # "killed" run stops at step 6. Every rank must still resume from it, together.
    if rank == 0:
        _slow_checkpoint_writes(1.0)

    def run(out, stop_after=None):
        torch.manual_seed(0)
        t = Trainer(make_model(), mse, NoisyData(), cfg(steps=8, ckpt_every=4, num_workers=workers), out, device="cpu")
        t.fit(stop_after=stop_after)  # dropout 0.3 above: rank 1 resumed with rank 0's RNG would differ
        return t

    def losses(t):
        return {r["step"]: r["loss"] for r in t.history}

    full = run(f"{root}/full")
    part = run(f"{root}/part", stop_after=6)  # "killed" after step 6; last checkpoint at step 4
    resumed = run(f"{root}/part")
    return {"full": weights(full.model), "resumed": weights(resumed.model), "step": resumed.step,
            "full_losses": losses(full), "part_losses": losses(part), "resumed_losses": losses(resumed)}


@pytest.mark.slow
@pytest.mark.parametrize("workers", [0, 2])
def test_two_rank_resume_restores_each_ranks_rng(tmp_path, workers):
    results = run_ranks(_full_part_resume, (str(tmp_path), workers), tmp_path / "pg", timeout=240)
    for rank, r in enumerate(results):
        full = r["full_losses"]
        assert r["step"] == 8 and list(full) == list(range(1, 9))
        assert r["part_losses"] == {s: full[s] for s in range(1, 7)}
        # Steps 5-8 ran again after the resume, from the step-4 checkpoint, on this rank's data and RNG.
        # (Before step 5 a resumed run's history is rank 0's metrics.jsonl, on every rank.)
        assert {s: r["resumed_losses"][s] for s in range(5, 9)} == {s: full[s] for s in range(5, 9)}, rank
        assert torch.equal(r["full"], r["resumed"]), rank
    assert results[0]["resumed_losses"] == results[0]["full_losses"]
    assert results[0]["full_losses"] != results[1]["full_losses"]  # each rank its own samples and dropout
    assert torch.equal(results[0]["full"], results[1]["full"])


class Leftover(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.body = torch.nn.Linear(4, 1)
        self.unused_head = torch.nn.Linear(4, 3)  # e.g. the head of a loss whose weight is 0


def _unused_param(rank: int, out: str) -> str:
    def objective(model, batch, gen):
        return torch.nn.functional.mse_loss(model.body(batch["x"]), batch["y"]), {}

    try:
        Trainer(Leftover(), objective, NoisyData(), cfg(steps=2), out, device="cpu").fit()
    except ValueError as e:
        return str(e)
    return "no error"


@pytest.mark.slow
def test_ddp_names_parameters_an_objective_leaves_unused(tmp_path):
    for msg in run_ranks(_unused_param, (str(tmp_path / "run"),), tmp_path / "pg", timeout=120):
        assert "no gradient to 2 trainable parameter(s): unused_head.weight, unused_head.bias" in msg
