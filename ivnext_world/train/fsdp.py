"""FSDP (``LoopConfig.parallel="fsdp"``): parameters, gradients and optimiser state sharded over ranks.

For models whose weights + AdamW state do not fit one GPU. Uses PyTorch's FSDP2 ``fully_shard``:
each transformer block (the encoder's, predictor's and world-model predictor's ``Block``, the
diffusion decoder's ``AdaLNResBlock``) is one shard group, all-gathered just before it runs and
freed after; the diffusion decoder's denoiser is one more, and everything else (embeddings,
heads, norms) belongs to the root group. With bf16 the parameters are gathered and computed in bf16
and gradients reduced in fp32, except in the decoder, which computes in fp32. Checkpoints stay the
ordinary single-file format of ``checkpoint.py``: all ranks gather the *full* state dicts
(``torch.distributed.checkpoint``'s ``full_state_dict``), rank 0 writes them, and every rank loads
the full file and keeps its shard, so an FSDP checkpoint loads into a DDP or single-process run and
vice versa.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)


def block_types() -> tuple[type[torch.nn.Module], ...]:
    """Module types that are one FSDP unit each: the repeated blocks that hold almost all weights.

    A finer split (every ``Linear``) costs one all-gather and one reduce-scatter per layer, each too
    small to keep the network busy; a coarser one (only the root) gathers the whole model at once.
    """
    from timm.models.vision_transformer import Block as TimmBlock

    from ..models.block import Block
    from ..models.diffusion_decoder import AdaLNResBlock

    return (Block, AdaLNResBlock, TimmBlock)


def fp32_types() -> tuple[type[torch.nn.Module], ...]:
    """Modules that run with autocast off, in fp32 (the diffusion decoder's denoiser, for the
    precision of small noise levels): their parameters must stay fp32 under a bf16 policy, so each
    is its own FSDP unit without one (under autocast fp32 parameters are always correct). A unit
    must be a module whose ``forward`` is called (FSDP2 gathers in forward hooks): the denoiser,
    not ``DiffusionDecoder``, whose ``loss`` method is what the objective calls."""
    from ..models.diffusion_decoder import AdaLNMLPDenoiser

    return (AdaLNMLPDenoiser,)


def mixed_precision(autocast_dtype: torch.dtype | None):
    """The FSDP2 policy for the loop's precision; None for fp32.

    Parameters are gathered and used in ``autocast_dtype`` (half the all-gather traffic, no per-op
    weight casts); gradients are reduced in fp32 (a bf16 sum over many ranks loses small gradients).
    Inputs are not cast (``cast_forward_inputs=False``): autocast already picks each op's dtype, and
    the residual stream and the reconstruction targets stay fp32 exactly as in a DDP run.
    """
    if autocast_dtype is None:
        return None
    from torch.distributed.fsdp import MixedPrecisionPolicy

    return MixedPrecisionPolicy(param_dtype=autocast_dtype, reduce_dtype=torch.float32, cast_forward_inputs=False)


def shard(model: torch.nn.Module, mp_policy=None, blocks: tuple[type, ...] | None = None,
          keep_fp32: tuple[type, ...] | None = None) -> torch.nn.Module:
    """Apply ``fully_shard`` in place, parameters becoming DTensors. Units: every trainable module
    of a ``blocks`` type (default :func:`block_types`), every trainable module of a ``keep_fp32``
    type (default :func:`fp32_types`; it and its blocks get no ``mp_policy``), then the root.

    Frozen blocks (a teacher's) are left to the root group: they get no gradients to reduce.
    """
    from torch.distributed.fsdp import fully_shard

    blocks = blocks or block_types()
    keep_fp32 = keep_fp32 if keep_fp32 is not None else fp32_types()
    fp32 = {id(m) for f in model.modules() if isinstance(f, keep_fp32) for m in f.modules()}
    # modules() lists parents before children: reversed, inner units are sharded before the units
    # that contain them, as fully_shard requires.
    for module in reversed(list(model.modules())):
        unit = isinstance(module, blocks) or isinstance(module, keep_fp32)
        if module is not model and unit and any(p.requires_grad for p in module.parameters()):
            policy = None if id(module) in fp32 else mp_policy
            fully_shard(module, **({} if policy is None else {"mp_policy": policy}))
    fully_shard(model, **({} if mp_policy is None else {"mp_policy": mp_policy}))
    return model


def broadcast_from_rank0(module: torch.nn.Module) -> None:
    """Make every rank's parameters and buffers rank 0's (collective). ``fully_shard`` keeps each
    rank's own slice of its own initialisation, so ranks that initialised differently would train
    a model no rank ever built."""
    with torch.no_grad():
        for t in list(module.parameters()) + list(module.buffers()):
            dist.broadcast(t, src=0)


class Snapshot:
    """A state dict gathered beforehand, handed to ``save_checkpoint`` in place of a module/optimiser."""

    owned_state = True  # private CPU tensors (gathered with cpu_offload): the snapshot need not copy them again

    def __init__(self, sd: dict[str, Any]):
        self.sd = sd

    def state_dict(self) -> dict[str, Any]:
        return self.sd


class FullModelView:
    """Stands in for the sharded model in ``load_checkpoint``: takes a full state dict, keeps this rank's shard."""

    def __init__(self, model: torch.nn.Module):
        self.model = model

    def gather(self) -> dict[str, torch.Tensor]:
        """Full state dict on rank 0 (CPU), ``{}`` elsewhere. Collective: every rank must call it."""
        return get_model_state_dict(self.model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))

    def state_dict(self) -> dict[str, torch.Tensor]:
        # What load_weights checks shapes against: global shapes, no memory (a DTensor's .shape is global).
        return {k: torch.empty(v.shape, dtype=v.dtype, device="meta") for k, v in self.model.state_dict().items()}

    def load_state_dict(self, state: dict[str, torch.Tensor], strict: bool = True):
        return set_model_state_dict(self.model, state, options=StateDictOptions(full_state_dict=True, strict=strict))


class FullOptimizerView:
    """Looks like an optimiser to ``save_checkpoint``/``load_checkpoint``: full state keyed by param index.

    ``torch.distributed.checkpoint`` keys optimiser state by parameter name; the checkpoint format
    keys it by position (as ``Optimizer.state_dict``), so names are mapped to positions and back.
    """

    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer):
        self.model, self.optimizer = model, optimizer
        names = {id(p): n for n, p in model.named_parameters()}
        self.order = [names[id(p)] for g in optimizer.param_groups for p in g["params"]]  # position -> name
        self.index = {n: i for i, n in enumerate(self.order)}

    def gather(self) -> dict[str, Any]:
        """Full optimiser state on rank 0 (CPU), keyed by position. Collective."""
        sd = get_optimizer_state_dict(self.model, self.optimizer, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        if not sd:  # ranks > 0 get nothing back with cpu_offload
            return {"state": {}, "param_groups": []}
        groups = [{**g, "params": [self.index[n] for n in g["params"]]} for g in sd["param_groups"]]
        return {"state": {self.index[n]: st for n, st in sd["state"].items()}, "param_groups": groups}

    def load_state_dict(self, sd: dict[str, Any]) -> None:
        groups = [{**g, "params": [self.order[i] for i in g["params"]]} for g in sd["param_groups"]]
        full = {"state": {self.order[int(i)]: st for i, st in sd["state"].items()}, "param_groups": groups}
        set_optimizer_state_dict(self.model, self.optimizer, full, options=StateDictOptions(full_state_dict=True))
