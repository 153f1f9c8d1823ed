"""One training loop for every stage: optimiser, schedule, precision, logging, checkpoints, resume.

What a stage supplies is a model (the module that is optimised and checkpointed) and an objective
``objective(model, batch, generator) -> (loss, metrics)``. Frozen parts (teachers) live in the
objective, so checkpoints hold only what was trained. All randomness a step uses for masks and
noise comes from ``generator``, seeded from (seed, step): with the resumable data order and the
restored global RNG this makes an interrupted-and-resumed run bit-identical to an uninterrupted one.
"""
from __future__ import annotations

import functools
import json
import logging
import math
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from .checkpoint import TrainState, latest_checkpoint, load_checkpoint, save_checkpoint
from .data import ResumableSampler, SeededDataset, mix_seed

log = logging.getLogger(__name__)

Objective = Callable[[torch.nn.Module, Any, torch.Generator], "tuple[torch.Tensor, Mapping[str, float]]"]


class NonFiniteLossError(RuntimeError):
    """Too many steps produced a NaN/inf loss or gradient."""


class Preempted(RuntimeError):
    """``fit`` stopped early because :data:`STOP` was set; the last finished step is checkpointed."""


# Set from a signal handler (SLURM preemption / time limit, see ivnext_world.launch): the loop writes
# a checkpoint at the end of the current step and raises Preempted. A handler cannot save by itself:
# it interrupts the main thread mid-step, where model, optimiser and schedule disagree.
STOP = threading.Event()
IN_LOOP = threading.Event()  # set while fit() is stepping, i.e. while STOP will be acted on


@dataclass
class LoopConfig:
    steps: int = 1000
    batch_size: int = 8  # per process
    num_workers: int = 2
    base_lr: float = 1e-3  # at a global batch of 256; the paper: 1e-3 (Stage 1), 1e-4 (Stage 2)
    min_lr_ratio: float = 0.01  # cosine decays to base_lr * this
    warmup_steps: int = 100
    weight_decay: float = 0.05
    beta1: float = 0.9
    beta2: float = 0.98
    eps: float = 1e-6
    clip_grad: float = 5.0  # 0 disables
    precision: str = "auto"  # auto = bf16 autocast on CUDA, fp32 on CPU; or "fp32" / "bf16"
    # TF32 tensor cores for the fp32 matmuls on CUDA (the parts autocast keeps in fp32, or every matmul
    # with precision=fp32): ~8x the fp32 matmul rate at a 10-bit mantissa. No effect on the CPU.
    tf32: bool = True
    compile: bool = False  # torch.compile the repeated blocks in place (see compile_in_place)
    log_every: int = 10
    ckpt_every: int = 200
    keep_last: int = 2
    max_nonfinite: int = 20  # skipped steps tolerated before aborting
    seed: int = 0
    resume: bool = True  # continue from the newest complete checkpoint in out/checkpoints
    parallel: str = "ddp"  # with >1 process: "ddp" (a replica per rank) or "fsdp" (sharded: models that do not fit one GPU)


class ObjectiveModule(torch.nn.Module):
    """``objective(model, batch, generator)`` as the forward of a module, for DDP and FSDP to wrap.

    Objectives call the model's parts (``model.encoder``, ``model.predictor``) rather than its
    ``forward``. DDP only synchronises gradients of a backward that follows *its* forward, and FSDP
    only gathers the root's parameters in the root's forward, so the parallel wrapper must sit
    around the whole objective: this module's forward.
    """

    def __init__(self, model: torch.nn.Module, objective: Objective):
        super().__init__()
        self.model = model
        self.objective = objective

    def forward(self, batch, generator: torch.Generator):
        return self.objective(self.model, batch, generator)


def compile_in_place(*roots: torch.nn.Module, **compile_kwargs) -> list[torch.nn.Module]:
    """``torch.compile`` what a training step runs, in place; returns the modules compiled.

    Objectives call a model's parts and their methods (``model.encoder.forward_intermediates``,
    ``model.decoder.loss``), which a ``torch.compile(model)`` wrapper returns uncompiled, and whole
    objectives draw masks and noise from a ``torch.Generator``, which dynamo cannot trace. So every
    element of a ``blocks`` ModuleList / Sequential under each root (the encoder's, predictor's and
    diffusion decoder's blocks, a timm teacher's) is compiled where it sits (``nn.Module.compile``):
    they carry nearly all the FLOPs, blocks of one shape share one graph (the compile time of one
    block), any method that reaches them runs them compiled, and parameter names and state-dict keys
    do not change. A root without blocks is compiled whole. ``compile_kwargs`` go to ``torch.compile``.
    """
    compiled: list[torch.nn.Module] = []
    for root in roots:
        found = [blk for name, m in root.named_modules() if name.rsplit(".", 1)[-1] == "blocks"
                 and isinstance(m, (torch.nn.ModuleList, torch.nn.Sequential)) for blk in m]
        for m in found or [root]:
            if m._compiled_call_impl is None:  # compiling twice would nest the wrappers
                m.compile(**compile_kwargs)
                compiled.append(m)
    return compiled


def scaled_lr(base_lr: float, global_batch: int) -> float:
    """The paper's linear scaling rule: lr = base_lr x global_batch / 256."""
    return base_lr * global_batch / 256


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """AdamW groups: no decay on biases, norms (1-D tensors), position embeddings and tokens."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        skip = p.ndim <= 1 or name.endswith(("pos_embed", "cls_token", "cls_tokens", "mask_token")) or ".pos_embed" in name
        (no_decay if skip else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def warmup_cosine(step: int, warmup: int, total: int, min_ratio: float) -> float:
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


class Trainer:
    def __init__(
        self,
        model: torch.nn.Module,
        objective: Objective,
        dataset: Dataset,
        cfg: LoopConfig,
        out_dir: str | Path,
        collate_fn=None,
        extra_state: dict[str, Any] | None = None,
        device: str | torch.device | None = None,
    ):
        self.cfg = cfg
        self.out_dir = Path(out_dir)
        self.ckpt_dir = self.out_dir / "checkpoints"
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.rank = dist.get_rank() if dist.is_initialized() else 0
        self.world_size = dist.get_world_size() if dist.is_initialized() else 1
        self.is_main = self.rank == 0
        self.model = model.to(self.device)
        if cfg.parallel not in ("ddp", "fsdp"):
            raise ValueError(f"parallel must be 'ddp' or 'fsdp', got {cfg.parallel!r}")
        self.fsdp = cfg.parallel == "fsdp" and self.world_size > 1
        if self.fsdp:  # before the optimiser is built: sharding replaces the parameters
            from .fsdp import shard

            self._fsdp_step = shard(ObjectiveModule(self.model, objective))
        self.objective = objective
        self.dataset = SeededDataset(dataset, cfg.seed)
        self.collate_fn = collate_fn
        self.extra_state = extra_state or {}
        self.lr = scaled_lr(cfg.base_lr, cfg.batch_size * self.world_size)
        self.optimizer = torch.optim.AdamW(
            param_groups(self.model, cfg.weight_decay), lr=self.lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: warmup_cosine(s, cfg.warmup_steps, cfg.steps, cfg.min_lr_ratio)
        )
        self.autocast_dtype = self._autocast_dtype(cfg.precision)
        if self.device.type == "cuda":  # process-wide; "high" = TF32 for fp32 matmuls, "highest" = IEEE fp32
            torch.set_float32_matmul_precision("high" if cfg.tf32 else "highest")
        self.step = 0
        self.data_pos = {"epoch": 0, "sample": 0}
        self.nonfinite = 0
        self.history: list[dict[str, float]] = []

    def _autocast_dtype(self, precision: str) -> torch.dtype | None:
        if precision == "fp32" or (precision == "auto" and self.device.type != "cuda"):
            return None
        if precision in ("auto", "bf16"):
            return torch.bfloat16
        raise ValueError(f"precision must be 'auto', 'fp32' or 'bf16', got {precision!r}")

    # ------------------------------------------------------------------------------------------
    def maybe_resume(self) -> bool:
        ckpt = latest_checkpoint(self.ckpt_dir) if self.cfg.resume else None
        if ckpt is None:
            return False
        if self.fsdp:
            from .fsdp import FullModelView, FullOptimizerView

            state = load_checkpoint(ckpt, FullModelView(self.model), FullOptimizerView(self.model, self.optimizer))
        else:
            state = load_checkpoint(ckpt, self.model, self.optimizer)
        self.scheduler.load_state_dict(state.scheduler)
        self.step, self.data_pos = state.step, dict(state.data)
        self.nonfinite = int(state.extra.get("nonfinite", 0))
        self.history = self._read_history(upto=self.step)
        log.info("resumed from %s (step %d)", ckpt, self.step)
        return True

    def save(self) -> Path | None:
        model, optimizer = self.model, self.optimizer
        if self.fsdp:  # gathering full state dicts is collective: every rank takes part, rank 0 writes
            from .fsdp import FullModelView, FullOptimizerView, Snapshot

            model = Snapshot(FullModelView(self.model).gather())
            optimizer = Snapshot(FullOptimizerView(self.model, self.optimizer).gather())
        if not self.is_main:
            return None
        extra = {**self.extra_state, "nonfinite": self.nonfinite, "loop": asdict(self.cfg)}
        state = TrainState(step=self.step, data=self.data_pos, scheduler=self.scheduler.state_dict(), extra=extra)
        return save_checkpoint(self.ckpt_dir, model, optimizer, state, keep_last=self.cfg.keep_last)

    def _loader(self) -> DataLoader:
        sampler = ResumableSampler(
            len(self.dataset), self.cfg.seed, epoch=self.data_pos["epoch"], start=self.data_pos["sample"],
            rank=self.rank, world_size=self.world_size,
        )
        return DataLoader(
            self.dataset, batch_size=self.cfg.batch_size, sampler=sampler, num_workers=self.cfg.num_workers,
            collate_fn=self.collate_fn, drop_last=True, pin_memory=self.device.type == "cuda",
            persistent_workers=False,
            # Its own generator: otherwise each new iterator draws a worker seed from the global RNG,
            # and a resumed run (one extra iterator) would shift the model's dropout randomness.
            generator=torch.Generator().manual_seed(mix_seed(self.cfg.seed, self.data_pos["epoch"])),
        )

    def _batches(self):
        """Endless stream of batches; ``data_pos`` always names the next unread sample."""
        while True:
            got_any = False
            for batch in self._loader():
                got_any = True
                self.data_pos["sample"] += self.cfg.batch_size
                yield batch
            if not got_any and self.data_pos["sample"] == 0:
                raise ValueError(f"dataset of {len(self.dataset)} items is smaller than one batch ({self.cfg.batch_size})")
            self.data_pos = {"epoch": self.data_pos["epoch"] + 1, "sample": 0}

    # ------------------------------------------------------------------------------------------
    def fit(self, stop_after: int | None = None) -> list[dict[str, float]]:
        """Train until ``cfg.steps`` (or, for tests and preemption drills, ``stop_after`` more steps)."""
        self.maybe_resume()
        if self.cfg.compile:  # in place, so the FSDP step (built around self.model) runs compiled too
            frozen = [m for m in getattr(self.objective, "__dict__", {}).values() if isinstance(m, torch.nn.Module)]
            compile_in_place(self.model, *frozen)
        model = self.model
        if self.fsdp:
            step = self._fsdp_step
        elif self.world_size > 1:
            # find_unused_parameters: a stage's objective may leave parts of the model out (e.g. heads of unused losses).
            step = torch.nn.parallel.DistributedDataParallel(
                ObjectiveModule(model, self.objective), device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=True)
        else:
            step = functools.partial(self.objective, model)
        self.model.train()
        writer = self._tensorboard()
        end = self.cfg.steps if stop_after is None else min(self.cfg.steps, self.step + stop_after)
        bar = tqdm(total=self.cfg.steps, initial=self.step, desc="train", unit="step", disable=not self.is_main, dynamic_ncols=True)
        batches = self._batches()
        t0 = time.perf_counter()
        IN_LOOP.set()
        try:
            self._steps(step, writer, bar, batches, end, t0)
        finally:
            IN_LOOP.clear()
            bar.close()
            if writer is not None:
                writer.close()
        return self.history

    def summary(self, history: list[dict[str, float]], tail: int = 10) -> dict:
        """The fields every run's ``summary.json`` starts with: steps done, first loss, mean loss of
        the last ``tail`` logged steps (None without history) and the latest checkpoint."""
        last = history[-tail:]
        return {
            "steps": self.step,
            "first_loss": history[0]["loss"] if history else None,
            "final_loss": sum(r["loss"] for r in last) / len(last) if last else None,
            "checkpoint": str(latest_checkpoint(self.ckpt_dir)),
        }

    def _steps(self, step, writer, bar, batches, end: int, t0: float) -> None:
        while self.step < end:
            batch = _to_device(next(batches), self.device)
            gen = torch.Generator(device=self.device).manual_seed(mix_seed(self.cfg.seed, self.step, self.rank))
            metrics = self._train_step(step, batch, gen)
            self.step += 1
            bar.update()
            if metrics is not None:
                metrics.update(lr=self.optimizer.param_groups[0]["lr"], step_time=time.perf_counter() - t0)
                self._log(writer, metrics)
                bar.set_postfix(loss=f"{metrics['loss']:.4f}")
            t0 = time.perf_counter()
            stop = self.step < end and self._stop_requested()
            if stop or self.step % self.cfg.ckpt_every == 0 or self.step == self.cfg.steps:
                self.save()
            if stop:
                raise Preempted(f"stopped on request after step {self.step}; checkpoint in {self.ckpt_dir}")

    def _stop_requested(self) -> bool:
        stop = STOP.is_set()
        if self.world_size > 1:  # all ranks must stop after the same step, or DDP would hang
            flag = torch.tensor([float(stop)], device=self.device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            stop = bool(flag.item())
        return stop

    def _train_step(self, step, batch, gen) -> dict[str, float] | None:
        """``step(batch, gen) -> (loss, metrics)``: the objective, bound to the model or wrapped by DDP/FSDP."""
        self.optimizer.zero_grad(set_to_none=True)
        with torch.autocast(self.device.type, dtype=self.autocast_dtype or torch.float32, enabled=self.autocast_dtype is not None):
            loss, metrics = step(batch, gen)
        finite = bool(torch.isfinite(loss))
        if finite:
            loss.backward()
            params = [p for p in self.model.parameters() if p.grad is not None]
            if self.cfg.clip_grad > 0:
                gnorm = torch.nn.utils.clip_grad_norm_(params, self.cfg.clip_grad)
            else:
                gnorm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params]))
            finite = bool(torch.isfinite(gnorm))
        if not finite:
            # Skip the update but keep the schedule moving, so a resumed run stays in step.
            self.nonfinite += 1
            log.warning("non-finite loss or gradient at step %d (%d so far): update skipped", self.step, self.nonfinite)
            self.optimizer.zero_grad(set_to_none=True)
            self.scheduler.step()
            if self.nonfinite > self.cfg.max_nonfinite:
                self.save()
                raise NonFiniteLossError(
                    f"{self.nonfinite} steps had a non-finite loss or gradient (limit {self.cfg.max_nonfinite}); "
                    f"last at step {self.step}. State saved in {self.ckpt_dir}."
                )
            return None
        self.optimizer.step()
        self.scheduler.step()
        out = {"loss": float(loss.detach()), "grad_norm": float(gnorm)}
        out.update({k: float(v) for k, v in metrics.items()})
        return out

    # ------------------------------------------------------------------------------------------
    def _tensorboard(self):
        if not self.is_main:
            return None
        from torch.utils.tensorboard import SummaryWriter

        return SummaryWriter(str(self.out_dir / "tensorboard"), purge_step=self.step or None)

    def _log(self, writer, metrics: dict[str, float]) -> None:
        row = {"step": self.step, **metrics}
        self.history.append(row)
        if not self.is_main:
            return
        if self.step % self.cfg.log_every == 0 or self.step == 1:
            for k, v in metrics.items():
                writer.add_scalar(f"train/{k}", v, self.step)
        with open(self.out_dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")

    def _read_history(self, upto: int) -> list[dict[str, float]]:
        """Metrics logged before the checkpoint; rows after it (from a killed run) are dropped."""
        path = self.out_dir / "metrics.jsonl"
        if not path.exists():
            return []
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        rows = [r for r in rows if r["step"] <= upto]
        if self.is_main:
            path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        return rows


def _to_device(batch, device):
    if torch.is_tensor(batch):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        return {k: _to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to_device(v, device) for v in batch)
    return batch
