"""Atomic, code-free training checkpoints.

Layout of one checkpoint (a directory ``step_00001234``)::

    model.safetensors       model weights (``safetensors``: tensors only, nothing executable)
    optimizer.safetensors   optimiser state tensors, flattened as ``<param index>/<name>``
    state.json              everything else: step, optimiser hyper-parameters, scheduler state,
                            RNG states, data position, model arguments, config, user metadata

A checkpoint is written into ``.step_X.tmp``, every file fsynced, then the directory is renamed,
so a directory named ``step_*`` is always complete; ``latest_checkpoint`` picks the newest one.
Loading never unpickles anything: weights come from safetensors, the rest from JSON.
"""
from __future__ import annotations

import json
import os
import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from ..utils.io import fsync_dir

STEP_PREFIX = "step_"


class CheckpointMismatchError(RuntimeError):
    """A checkpoint's tensors do not fit the model (another architecture or size)."""


# ----------------------------------------------------------------------------------------------
# Model weights


def _contiguous_cpu(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # safetensors refuses shared storage; clone-on-CPU also detaches from autograd and devices.
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in sd.items()}


def save_weights(model: torch.nn.Module, path: str | os.PathLike, metadata: dict[str, str] | None = None) -> None:
    save_file(_contiguous_cpu(unwrap(model).state_dict()), str(path), metadata=metadata)


def load_weights(model: torch.nn.Module, path: str | os.PathLike, strict: bool = True, prefix: str = "") -> list[str]:
    """Load safetensors weights into ``model``; returns the model keys that were not in the file.

    Raises:
        FileNotFoundError: the file does not exist.
        CheckpointMismatchError: shapes differ, or (with ``strict``) keys are missing or unexpected;
            the message names the tensors, e.g. ``blocks.0.attn.qkv.weight: checkpoint (576, 192)
            vs model (1152, 384)``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint weights not found: {path}")
    state = load_file(str(path))
    if prefix:
        state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    target = unwrap(model).state_dict()
    check_state_dict(state, target, source=str(path), strict=strict)
    unwrap(model).load_state_dict(state, strict=strict)
    return sorted(set(target) - set(state))


def check_state_dict(state: dict[str, torch.Tensor], target: dict[str, torch.Tensor], source: str, strict: bool = True) -> None:
    shape_err = [
        f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(target[k].shape)}"
        for k, v in state.items()
        if k in target and v.shape != target[k].shape
    ]
    missing = sorted(set(target) - set(state)) if strict else []
    unexpected = sorted(set(state) - set(target)) if strict else []
    if shape_err or missing or unexpected:
        lines = [f"checkpoint {source} does not fit this model:"]
        for title, items in (("shape mismatch", shape_err), ("missing in checkpoint", missing), ("unexpected in checkpoint", unexpected)):
            if items:
                more = f" ... and {len(items) - 8} more" if len(items) > 8 else ""
                lines.append(f"  {title} ({len(items)}): " + "; ".join(items[:8]) + more)
        raise CheckpointMismatchError("\n".join(lines))


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The bare module under DDP / torch.compile wrappers (their state-dict keys carry prefixes)."""
    while True:
        if hasattr(model, "module") and isinstance(model.module, torch.nn.Module):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return model


# ----------------------------------------------------------------------------------------------
# Optimiser and RNG state as tensors + JSON


def _split_optimizer(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    sd = opt.state_dict()
    tensors, scalars = {}, {}
    for pid, st in sd["state"].items():
        for name, v in st.items():
            if torch.is_tensor(v):
                tensors[f"{pid}/{name}"] = v
            else:
                scalars[f"{pid}/{name}"] = v
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def _join_optimizer(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for key, v in list(tensors.items()) + list(meta["scalars"].items()):
        pid, name = key.split("/", 1)
        state.setdefault(int(pid), {})[name] = v
    return {"state": state, "param_groups": meta["param_groups"]}


def rng_state() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors = {"rng/torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng/cuda{i}"] = s
    py = random.getstate()
    meta = {"python": [py[0], list(py[1]), py[2]], "numpy": _np_state_to_json(np.random.get_state())}
    return tensors, meta


def set_rng_state(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    torch.set_rng_state(tensors["rng/torch"])
    if torch.cuda.is_available():
        states = [tensors[k] for k in sorted(tensors) if k.startswith("rng/cuda")]
        if states:
            torch.cuda.set_rng_state_all(states)
    v, internal, gauss = meta["python"]
    random.setstate((v, tuple(internal), gauss))
    np.random.set_state(_np_state_from_json(meta["numpy"]))


def _np_state_to_json(st) -> list:
    name, keys, pos, has_gauss, cached = st
    return [name, keys.tolist(), int(pos), int(has_gauss), float(cached)]


def _np_state_from_json(st) -> tuple:
    name, keys, pos, has_gauss, cached = st
    return (name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached)


# ----------------------------------------------------------------------------------------------
# Whole training checkpoints


@dataclass
class TrainState:
    """What a resumed run needs besides tensors: where it was and how it was configured."""

    step: int
    data: dict[str, Any]  # sampler position, e.g. {"epoch": 3, "batch": 17}
    scheduler: dict[str, Any] | None = None
    extra: dict[str, Any] | None = None  # model args, resolved config, counters, warnings


def save_checkpoint(
    directory: str | os.PathLike,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None,
    state: TrainState,
    keep_last: int = 2,
) -> Path:
    """Write ``directory/step_XXXXXXXX`` atomically and prune all but the newest ``keep_last``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / f"{STEP_PREFIX}{state.step:08d}"
    tmp = directory / f".{final.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()

    save_weights(model, tmp / "model.safetensors")
    rng_t, rng_meta = rng_state()
    opt_t, opt_meta = _split_optimizer(optimizer) if optimizer is not None else ({}, None)
    save_file(_contiguous_cpu({**opt_t, **rng_t}), str(tmp / "optimizer.safetensors"))
    payload = {
        "step": state.step,
        "data": state.data,
        "scheduler": state.scheduler,
        "extra": state.extra or {},
        "optimizer": opt_meta,
        "rng": rng_meta,
    }
    (tmp / "state.json").write_text(json.dumps(payload, indent=1))
    for f in tmp.iterdir():
        with open(f, "rb") as fh:
            os.fsync(fh.fileno())
    fsync_dir(tmp)
    if final.exists():  # same step written again (e.g. after a requeue): replace it whole
        shutil.rmtree(final)
    os.replace(tmp, final)
    fsync_dir(directory)

    for old in list_checkpoints(directory)[:-keep_last] if keep_last > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def list_checkpoints(directory: str | os.PathLike) -> list[Path]:
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = [p for p in directory.iterdir() if p.is_dir() and p.name.startswith(STEP_PREFIX) and (p / "state.json").is_file()]
    return sorted(found, key=lambda p: int(p.name[len(STEP_PREFIX):]))


def latest_checkpoint(directory: str | os.PathLike) -> Path | None:
    found = list_checkpoints(directory)
    return found[-1] if found else None


def load_checkpoint(
    path: str | os.PathLike,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    restore_rng: bool = True,
) -> TrainState:
    """Restore a checkpoint written by :func:`save_checkpoint` into ``model`` (and ``optimizer``)."""
    path = Path(path)
    if not (path / "state.json").is_file():
        raise FileNotFoundError(f"{path} is not a complete checkpoint (no state.json)")
    payload = json.loads((path / "state.json").read_text())
    load_weights(model, path / "model.safetensors")
    tensors = load_file(str(path / "optimizer.safetensors"))
    if optimizer is not None:
        if payload["optimizer"] is None:
            raise CheckpointMismatchError(f"{path} holds no optimiser state")
        opt_t = {k: v for k, v in tensors.items() if not k.startswith("rng/")}
        optimizer.load_state_dict(_join_optimizer(opt_t, payload["optimizer"]))
    if restore_rng:
        set_rng_state({k: v for k, v in tensors.items() if k.startswith("rng/")}, payload["rng"])
    return TrainState(step=payload["step"], data=payload["data"], scheduler=payload["scheduler"], extra=payload["extra"])
