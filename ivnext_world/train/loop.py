"""One training loop for every stage: optimiser, schedule, precision, logging, checkpoints, resume.

What a stage supplies is a model (the module that is optimised and checkpointed) and an objective
``objective(model, batch, generator) -> (loss, metrics)``. Frozen parts (teachers) live in the
objective, so checkpoints hold only what was trained. All randomness a step uses for masks and
noise comes from ``generator``, seeded from (seed, step, rank); the global RNG (dropout, drop path)
is re-seeded per rank when the Trainer is built and saved per rank in every checkpoint. With the
resumable data order this makes an interrupted-and-resumed run bit-identical to an uninterrupted
one on the CPU; on a GPU it is equal up to the non-determinism of some CUDA kernels (atomics in
backward passes) unless ``torch.use_deterministic_algorithms(True)`` is set.

With several processes every decision that changes which collectives run (skip a non-finite step,
stop on a signal, abort, the checkpoint to resume from) is taken on all-reduced or broadcast values,
so all ranks always take it together; no rank leaves ``fit`` before rank 0's last checkpoint is on disk.
"""
from __future__ import annotations

import functools
import json
import logging
import math
import random
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from .checkpoint import (
    AsyncCheckpointWriter, TrainState, latest_checkpoint, load_checkpoint, restore_rng, rng_state, snapshot_checkpoint,
)
from .data import ResumableSampler, SeededDataset, StopSignalsToMain, mix_seed

log = logging.getLogger(__name__)

# An objective may also define ``freeze_unused(model)``: freeze (``requires_grad_(False)``) the parts
# of the model it never gives a gradient, e.g. the head of a loss whose weight is 0. The Trainer calls
# it before sharding and building the optimiser, so DDP can run without find_unused_parameters.
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
    prefetch_factor: int = 2  # batches each worker keeps loaded ahead (num_workers > 0)
    base_lr: float = 1e-3  # at a global batch of 256; the paper: 1e-3 (Stage 1), 1e-4 (Stage 2)
    min_lr_ratio: float = 0.01  # cosine decays to base_lr * this
    warmup_steps: int = 100
    weight_decay: float = 0.05
    beta1: float = 0.9
    beta2: float = 0.98
    eps: float = 1e-6
    clip_grad: float = 5.0  # 0 disables
    precision: str = "auto"  # auto = bf16 autocast on GPUs that have bf16 (Ampere+), else fp32; or "fp32" / "bf16"
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


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype ``LoopConfig.precision`` means on ``device``; None = fp32, no autocast.

    ``auto`` is bf16 only on a GPU with native bf16 (compute capability 8.0+): older GPUs (V100, T4)
    would emulate it slowly or not at all, so they train in fp32. fp16 is not offered: it needs a
    GradScaler and loss-scale state in every checkpoint, for GPUs that are rare on today's clusters.
    """
    if precision not in ("auto", "fp32", "bf16"):
        raise ValueError(f"precision must be 'auto', 'fp32' or 'bf16', got {precision!r}")
    if precision == "fp32" or (precision == "auto" and device.type != "cuda"):
        return None
    if device.type == "cuda" and not torch.cuda.is_bf16_supported(including_emulation=False):
        if precision == "bf16":
            raise ValueError(f"precision=bf16, but {torch.cuda.get_device_name(device)} has no native bf16 "
                             "(needs compute capability 8.0+): use precision=fp32 or auto")
        log.warning("precision=auto: %s has no native bf16, training in fp32", torch.cuda.get_device_name(device))
        return None
    return torch.bfloat16


def seed_rank_rng(seed: int, rank: int, step: int = 0) -> None:
    """Seed the global RNGs (torch CPU + CUDA, numpy, random) from (seed, rank, step).

    Model initialisation must be the same on every rank, but what the global RNG drives during
    training (drop path, dropout) must differ, or every rank would drop the same blocks.
    """
    s = mix_seed(seed, _GLOBAL_RNG_TAG, rank, step)
    torch.manual_seed(s)
    np.random.seed(s % 2**32)
    random.seed(s)


_GLOBAL_RNG_TAG = 0x676C6F62  # keeps these seeds apart from mix_seed(seed, epoch, ...) of the data order


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
        if self.device.type == "cuda" and self.device.index is None:
            # The current device: cuda:LOCAL_RANK once launch.distributed has set it. DDP needs the index.
            self.device = torch.device("cuda", torch.cuda.current_device())
        self.rank = dist.get_rank() if dist.is_initialized() else 0
        self.world_size = dist.get_world_size() if dist.is_initialized() else 1
        self.is_main = self.rank == 0
        self.model = model.to(self.device)
        if hasattr(objective, "freeze_unused"):
            objective.freeze_unused(self.model)
        if cfg.parallel not in ("ddp", "fsdp"):
            raise ValueError(f"parallel must be 'ddp' or 'fsdp', got {cfg.parallel!r}")
        self.autocast_dtype = resolve_precision(cfg.precision, self.device)
        self.fsdp = cfg.parallel == "fsdp" and self.world_size > 1
        if self.fsdp:  # before the optimiser is built: sharding replaces the parameters
            from .fsdp import broadcast_from_rank0, mixed_precision, shard

            broadcast_from_rank0(self.model)  # DDP does this itself; FSDP would shard each rank's own init
            self._fsdp_step = shard(ObjectiveModule(self.model, objective), mp_policy=mixed_precision(self.autocast_dtype))
        # From here on each rank draws its own randomness (the model is built, identically on every rank).
        seed_rank_rng(cfg.seed, self.rank)
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
        if self.device.type == "cuda":  # process-wide; "high" = TF32 for fp32 matmuls, "highest" = IEEE fp32
            torch.set_float32_matmul_precision("high" if cfg.tf32 else "highest")
        self.step = 0
        self.data_pos = {"epoch": 0, "sample": 0}
        self.nonfinite = 0
        self.history: list[dict[str, float]] = []
        self._writer = AsyncCheckpointWriter()
        self._check_unused = False  # set by fit() for DDP: the first backward checks every parameter got a gradient

    # ------------------------------------------------------------------------------------------
    def maybe_resume(self) -> bool:
        ckpt = self._checkpoint_to_resume()
        if ckpt is None:
            return False
        if self.fsdp:
            from .fsdp import FullModelView, FullOptimizerView

            state = load_checkpoint(ckpt, FullModelView(self.model), FullOptimizerView(self.model, self.optimizer), restore_rng=False)
        else:
            state = load_checkpoint(ckpt, self.model, self.optimizer, restore_rng=False)
        self.scheduler.load_state_dict(state.scheduler)
        self.step, self.data_pos = state.step, dict(state.data)
        if not restore_rng(ckpt, self.rank):  # e.g. resumed on more ranks than saved the checkpoint
            log.warning("%s holds no RNG state for rank %d: seeding it from (seed, rank, step)", ckpt, self.rank)
            seed_rank_rng(self.cfg.seed, self.rank, self.step)
        self.nonfinite = int(state.extra.get("nonfinite", 0))
        self.history = self._read_history(upto=self.step)
        log.info("resumed from %s (step %d)", ckpt, self.step)
        return True

    def save(self, wait: bool = False) -> Path | None:
        """Checkpoint the current step; collective (every rank calls it), rank 0 writes.

        Rank 0 copies the state to the CPU (pinned buffers on GPUs) and writes it in a background
        thread while training goes on; the previous write is joined first, and :meth:`fit` joins the
        last one, on every rank, before it returns or raises (see :meth:`_join_checkpoint`). Returns
        the folder the checkpoint is (being) written to on rank 0, None elsewhere; ``wait`` blocks
        rank 0 until it is on disk.
        """
        self._writer.wait()  # the previous checkpoint is complete, and its pinned buffers free again
        rngs = self._gather_rng()
        model, optimizer = self.model, self.optimizer
        if self.fsdp:  # gathering full state dicts is collective: every rank takes part, rank 0 writes
            from .fsdp import FullModelView, FullOptimizerView, Snapshot

            model = Snapshot(FullModelView(self.model).gather())
            optimizer = Snapshot(FullOptimizerView(self.model, self.optimizer).gather())
        if not self.is_main:
            return None
        extra = {**self.extra_state, "nonfinite": self.nonfinite, "loop": asdict(self.cfg)}
        state = TrainState(step=self.step, data=self.data_pos, scheduler=self.scheduler.state_dict(), extra=extra)
        pinned = self._writer.pinned if self.device.type == "cuda" else None
        self._writer.submit(self.ckpt_dir, snapshot_checkpoint(model, optimizer, state, rngs, pinned), self.cfg.keep_last)
        if wait:
            self._writer.wait()
        return self.ckpt_dir / f"step_{self.step:08d}"

    def wait_for_checkpoint(self) -> None:
        """Block until the checkpoint being written in the background (if any) is on disk."""
        self._writer.wait()

    def _checkpoint_to_resume(self) -> Path | None:
        """The checkpoint every rank resumes from: rank 0's newest, the same on all ranks; collective.

        Each rank looking for the newest checkpoint itself would let them disagree: a rank that looks
        while rank 0 is still writing (or before the shared file system shows the folder on its node)
        would start from an older step, and from then on its collectives pair with the wrong steps of
        the others (different gradients averaged, then a timed-out collective).
        """
        if not self.cfg.resume:
            return None
        ckpt = latest_checkpoint(self.ckpt_dir) if self.is_main else None
        if self.world_size == 1:
            return ckpt
        box = [None if ckpt is None else ckpt.name]
        dist.broadcast_object_list(box, src=0)
        if box[0] is None:
            return None
        ckpt = self.ckpt_dir / box[0]
        seen = torch.tensor([float((ckpt / "state.json").is_file())], device=self.device)
        dist.all_reduce(seen, op=dist.ReduceOp.MIN)  # every rank raises, or none: no rank left waiting
        if not seen.item():
            raise FileNotFoundError(
                f"rank 0 resumes from {ckpt}, but not every rank can read it (this rank: "
                f"{'yes' if (ckpt / 'state.json').is_file() else 'no'}): the output folder must be on a file "
                "system that every node shares")
        return ckpt

    def _join_checkpoint(self, collective: bool) -> None:
        """Wait for rank 0's checkpoint in flight; with ``collective``, no rank returns before it is on disk.

        Only rank 0 writes, so without this the other ranks would leave :meth:`fit` while the last
        checkpoint is still being written, and whatever they do next (resume, evaluate, read the
        folder) would see the previous one. A failed write fails :meth:`fit` on every rank.
        ``collective`` is False when ``fit`` ends in an error that not every rank may share: a
        collective then could wait for a rank that is gone.
        """
        try:
            self._writer.wait()
            failed = None
        except RuntimeError as e:
            failed = e
        if collective and self.world_size > 1:
            flag = torch.tensor([float(failed is not None)], device=self.device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            if flag.item() and failed is None:
                raise RuntimeError(f"rank 0 failed to write the checkpoint in {self.ckpt_dir} (its error is in its log)")
        if failed is not None:
            raise failed

    def _gather_rng(self) -> list:
        """Every rank's global RNG state, on rank 0 (index = rank); collective."""
        mine = rng_state()
        if self.world_size == 1:
            return [mine]
        gathered = [None] * self.world_size if self.is_main else None
        dist.gather_object(mine, gathered, dst=0)
        return gathered

    @functools.cached_property
    def _loader(self) -> DataLoader:
        """The run's one DataLoader. Its workers persist for the Trainer's life: a new epoch moves the
        sampler (see :meth:`_batches`) instead of starting workers that re-import and re-open everything."""
        workers = self.cfg.num_workers
        sampler = ResumableSampler(len(self.dataset), self.cfg.seed, rank=self.rank, world_size=self.world_size)
        return DataLoader(
            self.dataset, batch_size=self.cfg.batch_size, sampler=sampler, num_workers=workers,
            collate_fn=self.collate_fn, drop_last=True, pin_memory=self.device.type == "cuda",
            persistent_workers=workers > 0, prefetch_factor=self.cfg.prefetch_factor if workers > 0 else None,
            # SLURM signals every process of the job: workers leave SIGTERM/SIGUSR2 to this process,
            # which finishes the step and checkpoints.
            worker_init_fn=StopSignalsToMain() if workers > 0 else None,
            # Its own generator: otherwise each new iterator draws a worker seed from the global RNG,
            # and a resumed run (one extra iterator) would shift the model's dropout randomness.
            generator=torch.Generator().manual_seed(self.cfg.seed),
        )

    def _batches(self):
        """Endless stream of batches on the device, uint8 pixels ImageNet-normalised there (see
        :func:`~ivnext_world.data.transforms.normalize_batch`); ``data_pos`` always names the next unread sample."""
        from ..data.transforms import normalize_batch  # here: importing ivnext_world.data loads the video decoders

        loader = self._loader
        while True:
            loader.sampler.set_epoch(self.data_pos["epoch"], start=self.data_pos["sample"])
            got_any = False
            for batch in loader:
                got_any = True
                self.data_pos["sample"] += self.cfg.batch_size
                yield normalize_batch(_to_device(batch, self.device))
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
            # No find_unused_parameters (a graph traversal every step): parts an objective does not
            # train are frozen or not built; the first backward checks it (_check_all_params_used).
            step = torch.nn.parallel.DistributedDataParallel(
                ObjectiveModule(model, self.objective), device_ids=[self.device.index] if self.device.type == "cuda" else None)
            self._check_unused = True
        else:
            step = functools.partial(self.objective, model)
        self.model.train()
        writer = self._tensorboard()
        end = self.cfg.steps if stop_after is None else min(self.cfg.steps, self.step + stop_after)
        bar = tqdm(total=self.cfg.steps, initial=self.step, desc="train", unit="step", disable=not self.is_main, dynamic_ncols=True)
        batches = self._batches()
        t0 = time.perf_counter()
        IN_LOOP.set()
        collective = False  # whether every rank leaves the loop the same way (see _join_checkpoint)
        try:
            self._steps(step, writer, bar, batches, end, t0)
            collective = True
        except (Preempted, NonFiniteLossError):  # decided on all-reduced values: every rank raises it
            collective = True
            raise
        finally:
            try:
                # A run ends (or stops for preemption) only with its checkpoint on disk, on every rank.
                self._join_checkpoint(collective)
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
            "world_size": self.world_size,
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
        # Every rank runs backward, even with a non-finite loss: DDP and FSDP reduce gradients inside
        # backward, and a rank that skipped it would pair its next collective with the others'
        # gradient reduction (gloo: a collective mismatch; NCCL: a hang). A NaN loss gives NaN
        # gradients, which the reduction spreads to every rank; the update is skipped below.
        loss.backward()
        if self._check_unused:
            self._check_unused = False
            self._check_all_params_used()
        params = [p for p in self.model.parameters() if p.grad is not None]
        if self.cfg.clip_grad > 0:
            gnorm = torch.nn.utils.clip_grad_norm_(params, self.cfg.clip_grad)
        else:
            gnorm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params]))
        if hasattr(gnorm, "full_tensor"):  # FSDP: a replicated DTensor
            gnorm = gnorm.full_tensor()
        # One decision for all ranks: [loss non-finite on rank r for each r..., gradient non-finite].
        bad = torch.zeros(self.world_size + 1, device=self.device)
        bad[self.rank] = (~torch.isfinite(loss.detach())).float()
        bad[-1] = (~torch.isfinite(gnorm.detach())).float()
        if self.world_size > 1:
            dist.all_reduce(bad, op=dist.ReduceOp.MAX)
        bad = bad.tolist()
        if any(bad):
            # Skip the update on every rank but keep the schedule moving, so a resumed run stays in step.
            self.nonfinite += 1
            ranks = [r for r in range(self.world_size) if bad[r]]
            log.warning("non-finite %s at step %d (%d so far): update skipped", f"loss on rank(s) {ranks}" if ranks else "gradient",
                        self.step, self.nonfinite)
            self.optimizer.zero_grad(set_to_none=True)
            self.scheduler.step()
            if self.nonfinite > self.cfg.max_nonfinite:
                self.save(wait=True)
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

    def _check_all_params_used(self) -> None:
        """DDP without find_unused_parameters fails at the next step when a parameter got no gradient,
        naming it only by index: name the parameters now, and the fix."""
        unused = [n for n, p in self.model.named_parameters() if p.requires_grad and p.grad is None]
        if unused:
            more = f" ... and {len(unused) - 10} more" if len(unused) > 10 else ""
            raise ValueError(
                f"the objective gave no gradient to {len(unused)} trainable parameter(s): {', '.join(unused[:10])}{more}. "
                "DDP runs without find_unused_parameters: freeze what a stage does not train "
                "(requires_grad_(False)) or do not build it."
            )

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
