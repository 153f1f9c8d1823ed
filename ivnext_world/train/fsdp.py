"""FSDP (``LoopConfig.parallel="fsdp"``): parameters, gradients and optimiser state sharded over ranks.

For models whose weights + AdamW state do not fit one GPU. Uses PyTorch's FSDP2 ``fully_shard``:
every parameterised element of an ``nn.ModuleList`` / ``nn.Sequential`` (the transformer blocks)
is its own shard group, then the root. Checkpoints stay the ordinary single-file format of
``checkpoint.py``: all ranks gather the *full* state dicts (``torch.distributed.checkpoint``'s
``full_state_dict``), rank 0 writes them, and every rank loads the full file and keeps its shard,
so an FSDP checkpoint loads into a DDP or single-process run and vice versa.
"""
from __future__ import annotations

from typing import Any

import torch
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)


def shard(model: torch.nn.Module) -> torch.nn.Module:
    """Apply ``fully_shard`` in place (blocks first, then the root); parameters become DTensors."""
    from torch.distributed.fsdp import fully_shard

    # modules() lists parents before children: reversed, inner blocks are sharded before the blocks
    # that contain them, as fully_shard requires.
    for module in reversed(list(model.modules())):
        if isinstance(module, (torch.nn.ModuleList, torch.nn.Sequential)):
            for child in module:
                if any(p.requires_grad for p in child.parameters()):
                    fully_shard(child)
    fully_shard(model)
    return model


class Snapshot:
    """A state dict gathered beforehand, handed to ``save_checkpoint`` in place of a module/optimiser."""

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
