"""Per-GPU memory of a training step, measured before submission on a machine without a GPU.

:func:`measure_step` runs one real training step -- the objective's forward pass under autocast,
``backward()``, gradient clipping and the AdamW step, as :class:`~ivnext_world.train.Trainer`
does -- on fake tensors (``FakeTensorMode``: shapes, dtypes and storages, no data), made to
behave as on a CUDA GPU by :mod:`~ivnext_world.launch.fake_gpu` (CUDA's autocast policy, the
FlashAttention / memory-efficient SDPA kernels). :class:`PeakMemory` counts the bytes of every
live tensor storage (once per storage, views are free, each rounded up to 512 bytes as the CUDA
caching allocator does) and their peak, which is what ``torch.cuda.max_memory_allocated`` reports
on a GPU. The AdamW state exists already, as it does from the second step on.

:func:`estimate_pretrain` builds the pretraining step of a :class:`~ivnext_world.pretrain.run.PretrainConfig`
(model, teacher, objective, batch, precision, gradient checkpointing) and adds what FakeTensor
does not see: DDP's gradient buckets (one more copy of the trainable parameters' gradients) and
a fixed allowance for the CUDA context, cuBLAS/cuDNN workspaces and NCCL buffers.
:func:`check_fits` refuses a step that leaves less than ``headroom`` of the GPU free (allocator
fragmentation lives there).

Not modelled: allocator fragmentation (hence the headroom), kernel workspaces of fused kernels,
and for ``loop.parallel=fsdp`` the exact prefetch schedule (sharded states + two gathered blocks).
"""
from __future__ import annotations

import contextlib
import json
import logging
import weakref
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Callable, Iterable, Optional

import torch
from torch import nn
from torch._subclasses.fake_tensor import FakeTensorMode, unset_fake_temporarily
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.weak import WeakIdKeyDictionary

from .fake_gpu import autocast_region, cuda_autocast_policy, gpu_kernels, small_constants

GIB = 1024**3
ALLOC_ROUND = 512  # the CUDA caching allocator rounds every block up to a multiple of 512 bytes
# CUDA context, cuBLAS/cuDNN workspaces, NCCL communicator buffers: GPU memory outside PyTorch's
# allocator, hence invisible to FakeTensor. Typically 0.5-1.5 GiB on an H100; rounded up.
RUNTIME_OVERHEAD = 2 * GIB
DEFAULT_HEADROOM = 0.10

# Device memory in GiB as nvidia-smi reports it ("total"); keys are what launcher.gpu accepts.
GPU_MEMORY_GIB: dict[str, float] = {
    "a10_24gb": 22.5,
    "l40s_48gb": 45.0,
    "v100_16gb": 16.0,
    "v100_32gb": 32.0,
    "a100_40gb": 40.0,
    "a100_80gb": 80.0,
    "h100_80gb": 79.6,  # SXM5 and PCIe: 81559 MiB
    "h100_94gb": 93.6,  # H100 NVL
    "h200_141gb": 140.4,  # 143771 MiB
    "gh200_96gb": 94.5,
}
GPU_ALIASES = {"h100": "h100_80gb", "h200": "h200_141gb", "l40s": "l40s_48gb", "a10": "a10_24gb"}


class MemoryCheckError(ValueError):
    """The configured step will not fit the GPU named by the launcher."""


def gpu_memory_bytes(gpu: Optional[str], gpu_memory_gib: Optional[float] = None) -> tuple[str, int] | None:
    """``(name, bytes)`` of the launcher's GPU; an explicit ``gpu_memory_gib`` wins over the table."""
    if gpu_memory_gib is not None:
        if gpu_memory_gib <= 0:
            raise ValueError(f"launcher.gpu_memory_gib={gpu_memory_gib}: must be > 0")
        return (gpu or "gpu", int(gpu_memory_gib * GIB))
    if gpu is None:
        return None
    key = GPU_ALIASES.get(gpu.lower(), gpu.lower())
    if key not in GPU_MEMORY_GIB:
        raise ValueError(f"launcher.gpu={gpu!r} is not a known GPU ({sorted(GPU_MEMORY_GIB)}); "
                         "set launcher.gpu_memory_gib=<GiB> instead")
    return key, int(GPU_MEMORY_GIB[key] * GIB)


# --------------------------------------------------------------------------------------------
class PeakMemory(TorchDispatchMode):
    """Live bytes of tensor storages created by ops (or :meth:`add`-ed), and their peak.

    A storage is counted once however many views use it, rounded up to ``ALLOC_ROUND`` bytes,
    and uncounted when it is freed (its last tensor dies).
    """

    def __init__(self):
        super().__init__()
        self.live = 0
        self.peak = 0
        self._seen = WeakIdKeyDictionary()

    def add(self, t: torch.Tensor) -> None:
        st = t.untyped_storage()
        if st in self._seen:
            return
        n = -(-st.nbytes() // ALLOC_ROUND) * ALLOC_ROUND
        self._seen[st] = n
        self.live += n
        weakref.finalize(st, self._free, n)
        self.peak = max(self.peak, self.live)

    def _free(self, n: int) -> None:
        self.live -= n

    def reset_peak(self) -> None:
        self.peak = self.live

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor):
                self.add(t)
        return out


@dataclass
class StepMemory:
    """Bytes of one training step on one GPU (all measured except ``ddp_buckets``/``runtime``)."""

    params: int = 0  # trained model: parameters and buffers
    optimizer: int = 0  # AdamW's exp_avg / exp_avg_sq (and step counters)
    frozen: int = 0  # frozen teacher (parameters and buffers)
    activations: int = 0  # live at the end of the forward pass beyond the above (batch, saved tensors, loss)
    peak_forward: int = 0
    peak_backward: int = 0  # backward, gradient clipping and the optimizer step
    ddp_buckets: int = 0  # DDP's flat gradient buckets (world size > 1, loop.parallel=ddp)
    runtime: int = RUNTIME_OVERHEAD
    notes: list[str] = field(default_factory=list)

    @property
    def peak(self) -> int:
        return max(self.peak_forward, self.peak_backward)

    @property
    def total(self) -> int:
        return self.peak + self.ddp_buckets + self.runtime

    def describe(self) -> str:
        g = lambda n: f"{n / GIB:.1f} GiB"  # noqa: E731
        return (f"weights {g(self.params)}, AdamW {g(self.optimizer)}, frozen teacher {g(self.frozen)}, "
                f"activations {g(self.activations)}; peak {g(self.peak)} (forward {g(self.peak_forward)}, "
                f"backward+step {g(self.peak_backward)}) + DDP buckets {g(self.ddp_buckets)} "
                f"+ CUDA runtime {g(self.runtime)} = {g(self.total)} per GPU")


def _storages_bytes(tensors: Iterable[torch.Tensor]) -> int:
    seen, total = set(), 0
    for t in tensors:
        st = t.untyped_storage()
        if id(st) not in seen:
            seen.add(id(st))
            total += -(-st.nbytes() // ALLOC_ROUND) * ALLOC_ROUND
    return total


def _module_tensors(m: nn.Module | None) -> list[torch.Tensor]:
    return [] if m is None else [*m.parameters(), *m.buffers()]


def measure_step(
    build: Callable[[], tuple[nn.Module, Callable, Optional[nn.Module]]],
    batch: Callable[[], dict],
    precision: Optional[torch.dtype] = torch.bfloat16,
    weight_decay: float = 0.05,
    clip_grad: float = 5.0,
) -> StepMemory:
    """Measure one training step as it runs on a CUDA GPU.

    Args:
        build: ``() -> (model, objective, frozen)``, called on the meta device: the trained
            module, ``objective(model, batch, generator) -> (loss, metrics)`` and the frozen
            module the objective holds (teacher) or None.
        batch: ``() -> batch`` for the objective, called under ``FakeTensorMode``; counted as activations.
        precision: autocast dtype (bfloat16: what ``loop.precision=auto`` picks on a GPU), or None for float32.
    """
    from ..train.loop import param_groups

    # Built on the meta device (no memory, no init: some initialisers read values, e.g. timm's
    # drop-path rates), then given fake storages. Tensors that are plain attributes, not
    # parameters or buffers (a noise schedule), stay real and are converted when first used.
    with torch.device("meta"):
        model, objective, frozen = build()
    with FakeTensorMode(allow_non_fake_inputs=True) as fake_mode:
        model.to_empty(device="cpu")
        if frozen is not None:
            frozen.to_empty(device="cpu")
        model.train()
        # foreach=True: what AdamW picks for CUDA parameters (one temporary per state tensor list).
        opt = torch.optim.AdamW(param_groups(model, weight_decay), lr=1e-4, betas=(0.9, 0.98), eps=1e-6, foreach=True)
        trained = [p for p in model.parameters() if p.requires_grad]
        for p in trained:  # the state as after the first step
            p.grad = torch.zeros_like(p)
        opt.step()
        opt.zero_grad(set_to_none=True)
        state = [t for s in opt.state.values() for t in s.values() if isinstance(t, torch.Tensor)]

        mem = StepMemory(params=_storages_bytes(_module_tensors(model)), optimizer=_storages_bytes(state),
                         frozen=_storages_bytes(_module_tensors(frozen)))
        data = batch()  # before small_constants: a batch is data, never a constant
        policy = cuda_autocast_policy() if precision is not None else contextlib.nullcontext()
        with small_constants(fake_mode), gpu_kernels(), policy, PeakMemory() as tracker:
            for t in [*_module_tensors(model), *state, *_module_tensors(frozen)]:
                tracker.add(t)
            start = tracker.live
            for t in tree_flatten(data)[0]:
                if isinstance(t, torch.Tensor):
                    tracker.add(t)
            generator = torch.Generator().manual_seed(0)
            with autocast_region(precision):
                loss, _ = objective(model, data, generator)
            mem.activations = tracker.live - start
            mem.peak_forward = tracker.peak
            tracker.reset_peak()
            loss.backward()  # the batch stays alive, as in Trainer's loop
            grads = [p for p in model.parameters() if p.grad is not None]
            if clip_grad > 0:
                torch.nn.utils.clip_grad_norm_(grads, clip_grad)
            opt.step()
            opt.zero_grad(set_to_none=True)
            mem.peak_backward = tracker.peak
    return mem


# --------------------------------------------------------------------------------------------
class _Pinned(nn.Module):
    """A frozen module the objective moves to the batch's device (``teacher.to(video.device)``).

    Its tensors are fake and already there; ``nn.Module.to`` would try to swap every fake
    parameter for itself, which PyTorch refuses, so moving is a no-op here.
    """

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def to(self, *args, **kwargs) -> "_Pinned":
        return self

    def forward(self, *args, **kwargs):
        return self.module(*args, **kwargs)


class _UniformAttentionTeacher(_Pinned):
    """The Stage-1 teacher with its pooling attention replaced by a uniform constant.

    The attention only chooses *which* tokens are masked (their number is fixed by the mask
    ratio), so memory does not depend on it; a constant lets the mask be computed for real.
    """

    def forward(self, video: torch.Tensor, out_grid=None):
        out = self.module(video, out_grid=out_grid)
        with unset_fake_temporarily():
            uniform = torch.full(tuple(out.attn.shape), 1.0 / out.attn.shape[-1], dtype=out.attn.dtype)
        mode = torch._guards.detect_fake_mode(out.attn)
        out.attn = mode.fake_tensor_converter.from_real_tensor(mode, uniform, make_constant=True)
        return out


def _stage1_model_config(cfg) -> tuple[dict, bool]:
    """Stage 2 starts from the Stage-1 model: ``(its stored config, True)`` when ``init_from`` is
    readable here, else ``(the job's model settings, False)``."""
    from ..pretrain.run import resolve_checkpoint

    if cfg.init_from:
        try:
            ckpt = resolve_checkpoint(cfg.init_from)
            return json.loads((ckpt / "state.json").read_text())["extra"]["model"], True
        except (FileNotFoundError, KeyError, ValueError):
            pass
    return asdict(cfg.model), False


def pretrain_step_builder(cfg) -> tuple[Callable, Callable, list[str]]:
    """``(build, batch, notes)`` for :func:`measure_step` from a ``PretrainConfig``, as
    :func:`~ivnext_world.pretrain.run.run_pretrain` builds them (random weights: only shapes matter)."""
    from ..pretrain.epd import EPDConfig, FrozenEncoder, build_epd
    from ..pretrain.stage1 import Stage1Objective
    from ..pretrain.stage2 import Stage2Objective

    notes: list[str] = []
    m = cfg.model
    if cfg.stage == 2:
        stage1, found = _stage1_model_config(cfg)
        if not found:
            notes.append("Stage 2: architecture from the job's model.* settings (no Stage-1 checkpoint readable at init_from)")

    def build():
        if cfg.stage == 1:
            from ..pretrain.run import stage1_loss

            teacher, loss = None, stage1_loss(cfg)  # no teacher weights named: reconstruction only, as the run
            if loss.w_middle or loss.w_final:
                from ..models import ImageTeacher

                logging.getLogger("ivnext_world.models.teacher").disabled = True  # the random-weights banner
                try:
                    teacher = ImageTeacher(cfg.teacher.model, None, num_layers=cfg.teacher.num_layers, img_size=m.img_size)
                finally:
                    logging.getLogger("ivnext_world.models.teacher").disabled = False
            mcfg = EPDConfig(**{**asdict(m), "teacher_dim": teacher.embed_dim if teacher else None, "latent_head": False})
            if loss.w_recon == 0:
                mcfg.decoder = "none"
            model = build_epd(mcfg)
            wrapped = _UniformAttentionTeacher(teacher) if teacher is not None else None
            return model, Stage1Objective(loss, wrapped), teacher
        if cfg.stage == 2:
            s1 = build_epd(stage1)
            model = build_epd(replace(s1.cfg, decoder="none", teacher_dim=None, latent_head=True,
                                      grad_checkpointing=m.grad_checkpointing))
            frozen = FrozenEncoder(model.encoder)
            return model, Stage2Objective(_Pinned(frozen)), frozen
        raise ValueError(f"stage must be 1 or 2, got {cfg.stage}")

    def batch():
        frames = stage1["num_frames"] if cfg.stage == 2 else m.num_frames
        size = stage1["img_size"] if cfg.stage == 2 else m.img_size
        return {"video": torch.randn(cfg.loop.batch_size, 3, frames, size, size)}

    return build, batch, notes


def _precision(loop_precision: str) -> Optional[torch.dtype]:
    if loop_precision in ("auto", "bf16"):
        return torch.bfloat16  # auto = bf16 autocast on a GPU
    if loop_precision == "fp32":
        return None
    raise ValueError(f"loop.precision must be 'auto', 'fp32' or 'bf16', got {loop_precision!r}")


def estimate_pretrain(cfg, world_size: int = 1) -> StepMemory:
    """Per-GPU memory of the pretraining step ``cfg`` (a ``PretrainConfig``) on ``world_size`` ranks."""
    build, batch, notes = pretrain_step_builder(cfg)
    mem = measure_step(build, batch, _precision(cfg.loop.precision), cfg.loop.weight_decay, cfg.loop.clip_grad)
    mem.notes += notes
    trainable = mem.params  # buffers are a rounding error next to the weights
    if world_size > 1 and cfg.loop.parallel == "ddp":
        mem.ddp_buckets = trainable
    elif world_size > 1 and cfg.loop.parallel == "fsdp":
        # Weights, gradients (as large as the weights) and AdamW state are sharded over the ranks.
        states = (mem.params + mem.optimizer) * (world_size - 1) // world_size
        grads = mem.params * (world_size - 1) // world_size
        mem.peak_forward -= states
        mem.peak_backward -= states + grads
        mem.notes.append("FSDP: weights, gradients and AdamW state divided over the ranks; "
                         "the gathered blocks in flight are not counted")
    return mem


def check_fits(mem: StepMemory, gpu: str, gpu_bytes: int, headroom: float = DEFAULT_HEADROOM, what: str = "") -> float:
    """Free fraction of the GPU left by ``mem``; :class:`MemoryCheckError` when it is below ``headroom``."""
    free = 1 - mem.total / gpu_bytes
    if free < headroom:
        raise MemoryCheckError(
            f"{what}needs {mem.total / GIB:.1f} GiB per GPU, but one {gpu} has {gpu_bytes / GIB:.1f} GiB and "
            f"{headroom:.0%} must stay free ({(1 - headroom) * gpu_bytes / GIB:.1f} GiB usable): set "
            "model.grad_checkpointing=true, lower loop.batch_size, or shard with loop.parallel=fsdp "
            f"[{mem.describe()}]")
    return free


def describe_pretrain(cfg) -> str:
    ckpt = "on" if cfg.model.grad_checkpointing else "off"
    prec = "bf16" if _precision(cfg.loop.precision) else "fp32"
    return (f"Stage {cfg.stage}, {cfg.model.encoder}, {cfg.model.num_frames}x{cfg.model.img_size}, "
            f"batch {cfg.loop.batch_size}/GPU, {prec}, grad checkpointing {ckpt}")


def _pretrain_key(cfg) -> str:
    """What the memory of a pretraining step depends on (sweep tasks sharing it are measured once)."""
    return json.dumps([cfg.stage, asdict(cfg.model), asdict(cfg.loss), cfg.teacher.model, cfg.teacher.num_layers,
                       cfg.init_from, cfg.loop.batch_size, cfg.loop.precision, cfg.loop.parallel], sort_keys=True, default=str)


@dataclass(frozen=True)
class Estimator:
    estimate: Callable[[Any, int], StepMemory]  # (job config, world size) -> per-GPU memory
    describe: Callable[[Any], str]
    key: Callable[[Any], str]


# Jobs (by config name) whose per-GPU memory the launcher measures before submission.
ESTIMATORS: dict[str, Estimator] = {"pretrain": Estimator(estimate_pretrain, describe_pretrain, _pretrain_key)}


def check_job_memory(config_name: str, cfgs: Iterable[Any], launcher, log: Callable[[str], None] = print) -> list[StepMemory]:
    """Measure the per-GPU memory of each distinct job config and refuse one that does not fit.

    Applies to GPU launchers (``gpus_per_node > 0``); without ``launcher.gpu`` /
    ``launcher.gpu_memory_gib`` the memory is printed but not checked. Raises
    :class:`MemoryCheckError` naming the config, the measured bytes and the GPU.
    """
    if launcher.gpus_per_node == 0:
        return []
    est = ESTIMATORS.get(config_name)
    if est is None:
        log(f"memory: no estimator for {config_name!r} jobs; not checked")
        return []
    gpu = gpu_memory_bytes(launcher.gpu, launcher.gpu_memory_gib)
    seen: dict[str, StepMemory] = {}
    for cfg in cfgs:
        key = est.key(cfg)
        if key in seen:
            continue
        what = est.describe(cfg)
        log(f"memory per GPU ({what}; {launcher.world_size} rank(s)), measured with FakeTensor as on a CUDA GPU:")
        mem = seen[key] = est.estimate(cfg, launcher.world_size)
        log(f"  {mem.describe()}")
        for note in mem.notes:
            log(f"  note: {note}")
        if gpu is None:
            log("  not checked: set launcher.gpu (e.g. h100_80gb) or launcher.gpu_memory_gib")
            continue
        free = check_fits(mem, gpu[0], gpu[1], launcher.memory_headroom, what=f"{what}: ")
        log(f"  fits one {gpu[0]} ({gpu[1] / GIB:.1f} GiB) with {free:.0%} free (at least {launcher.memory_headroom:.0%} required)")
    return list(seen.values())
