"""Atomic, code-free training checkpoints.

Layout of one checkpoint (a directory ``step_00001234``)::

    model.safetensors       model weights (``safetensors``: tensors only, nothing executable)
    optimizer.safetensors   optimiser state tensors, flattened as ``<param index>/<name>``
    state.json              everything else: step, optimiser hyper-parameters, scheduler state,
                            RNG states (one per rank), data position, model arguments, config,
                            user metadata

A checkpoint is written into ``.step_X.tmp``, every file fsynced, then the directory is renamed,
so a directory named ``step_*`` is always complete; ``latest_checkpoint`` picks the newest one.
Loading never unpickles anything: weights come from safetensors, the rest from JSON.

Saving is two halves so that training need not wait for the disk: :func:`snapshot_checkpoint`
copies everything to private CPU tensors (pinned, reused buffers for GPU tensors) and a JSON string,
then :func:`write_checkpoint` writes that snapshot, which :class:`AsyncCheckpointWriter` does in a
background thread. :func:`save_checkpoint` is both halves in the calling thread.
"""
from __future__ import annotations

import json
import logging
import os
import random
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from ..utils.io import fsync_dir

log = logging.getLogger(__name__)

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
    """This process's RNG states: ``({"torch": ..., "cuda<i>": ...}, {"python": ..., "numpy": ...})``."""
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"cuda{i}"] = s
    py = random.getstate()
    meta = {"python": [py[0], list(py[1]), py[2]], "numpy": _np_state_to_json(np.random.get_state())}
    return tensors, meta


def set_rng_state(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """Inverse of :func:`rng_state`."""
    torch.set_rng_state(tensors["torch"])
    if torch.cuda.is_available():
        states = [tensors[k] for k in sorted(tensors) if k.startswith("cuda")]
        if states:
            torch.cuda.set_rng_state_all(states)
    v, internal, gauss = meta["python"]
    random.setstate((v, tuple(internal), gauss))
    np.random.set_state(_np_state_from_json(meta["numpy"]))


def _rank_rng(tensors: dict[str, torch.Tensor], payload: dict[str, Any], rank: int):
    """Rank ``rank``'s RNG state from a checkpoint's tensors and state.json, or None if it holds none.

    Tensors are ``rng/<rank>/<name>`` and ``state.json["rng"]`` is a list indexed by rank. Checkpoints
    written before per-rank states hold one state (``rng/<name>``, a dict): rank 0's.
    """
    meta = payload.get("rng")
    if isinstance(meta, dict):  # older single-state format
        if rank != 0:
            return None
        return {k[len("rng/"):]: v for k, v in tensors.items() if k.startswith("rng/") and k.count("/") == 1}, meta
    if not meta or rank >= len(meta):
        return None
    prefix = f"rng/{rank}/"
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}, meta[rank]


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


@dataclass
class CheckpointSnapshot:
    """Everything one checkpoint holds, copied off the model: writing it touches no live tensor."""

    step: int
    model: dict[str, torch.Tensor]  # CPU, private copies
    tensors: dict[str, torch.Tensor]  # optimiser state (``<param index>/<name>``) and RNG (``rng/<rank>/<name>``)
    state_json: str


class _PinnedBuffers:
    """Reusable page-locked CPU buffers for device->host copies (allocating pinned memory is slow)."""

    def __init__(self):
        self.bufs: dict[str, torch.Tensor] = {}

    def copy(self, key: str, t: torch.Tensor) -> torch.Tensor:
        buf = self.bufs.get(key)
        if buf is None or buf.shape != t.shape or buf.dtype != t.dtype:
            buf = self.bufs[key] = torch.empty(t.shape, dtype=t.dtype, pin_memory=True)
        return buf.copy_(t.detach(), non_blocking=True)


def _to_cpu(sd: dict[str, torch.Tensor], prefix: str, pinned: _PinnedBuffers | None, owned: bool) -> dict[str, torch.Tensor]:
    """Private CPU copies: training goes on updating the originals in place while the copy is written.

    GPU tensors go to ``pinned`` buffers when given (non-blocking copies; the caller synchronises).
    ``owned``: the CPU tensors are already private copies (e.g. gathered by FSDP), so not cloned again.
    """
    out = {}
    for k, v in sd.items():
        if v.device.type == "cpu":
            out[k] = v.detach().contiguous() if owned else v.detach().contiguous().clone()
        elif pinned is not None:
            out[k] = pinned.copy(prefix + k, v.contiguous())
        else:
            out[k] = v.detach().to("cpu").contiguous()
    return out


def snapshot_checkpoint(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None,
    state: TrainState,
    rng_states: list[tuple[dict[str, torch.Tensor], dict[str, Any]]] | None = None,
    pinned: _PinnedBuffers | None = None,
) -> CheckpointSnapshot:
    """Copy a training state to the CPU now (fast), for :func:`write_checkpoint` to write later.

    ``model``/``optimizer`` may be anything with ``state_dict()``; one with ``owned_state = True``
    hands over private CPU tensors that need no copy. ``rng_states``: one :func:`rng_state` per rank
    (index = rank); default: this process's only.
    """
    owned_model = getattr(model, "owned_state", False)
    sd = model.state_dict() if owned_model else unwrap(model).state_dict()
    model_t = _to_cpu(sd, "model/", pinned, owned_model)
    opt_t, opt_meta = _split_optimizer(optimizer) if optimizer is not None else ({}, None)
    opt_t = _to_cpu(opt_t, "optimizer/", pinned, getattr(optimizer, "owned_state", False))
    rng_states = rng_states if rng_states is not None else [rng_state()]
    rng_t = {f"rng/{r}/{k}": v.detach().cpu().clone() for r, (ts, _) in enumerate(rng_states) for k, v in ts.items()}
    if pinned is not None and torch.cuda.is_available():
        torch.cuda.synchronize()  # the non-blocking device->host copies are done
    payload = {
        "step": state.step,
        "data": state.data,
        "scheduler": state.scheduler,
        "extra": state.extra or {},
        "optimizer": opt_meta,
        "rng": [meta for _, meta in rng_states],
    }
    # Serialised now: the scheduler's and config's dicts are live objects that the next step changes.
    return CheckpointSnapshot(state.step, model_t, {**opt_t, **rng_t}, json.dumps(payload, indent=1))


def write_checkpoint(directory: str | os.PathLike, snap: CheckpointSnapshot, keep_last: int = 2) -> Path:
    """Write ``directory/step_XXXXXXXX`` atomically and prune all but the newest ``keep_last``.

    Files go to ``.step_X.tmp``; ``state.json`` is written last, every file and the folder are
    fsynced, then the folder is renamed: a ``step_*`` folder is complete by construction.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / f"{STEP_PREFIX}{snap.step:08d}"
    tmp = directory / f".{final.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()

    save_file(snap.model, str(tmp / "model.safetensors"))
    save_file(snap.tensors, str(tmp / "optimizer.safetensors"))
    (tmp / "state.json").write_text(snap.state_json)
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


def save_checkpoint(
    directory: str | os.PathLike,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None,
    state: TrainState,
    keep_last: int = 2,
    rng_states: list[tuple[dict[str, torch.Tensor], dict[str, Any]]] | None = None,
) -> Path:
    """Write ``directory/step_XXXXXXXX`` atomically (in this thread) and prune all but the newest ``keep_last``."""
    return write_checkpoint(directory, snapshot_checkpoint(model, optimizer, state, rng_states), keep_last)


class AsyncCheckpointWriter:
    """Writes snapshots in a background thread, one at a time, so the training step is not held up.

    ``submit`` waits for the previous write first (at most one snapshot in memory, and checkpoints
    appear in step order); ``wait`` joins the write in flight and re-raises its error, if any. The
    thread is not a daemon: an interpreter that exits normally still finishes the write.
    """

    def __init__(self):
        self.pinned = _PinnedBuffers()  # reused by every snapshot (safe: one write at a time)
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._result: Path | None = None

    def submit(self, directory: str | os.PathLike, snap: CheckpointSnapshot, keep_last: int = 2) -> None:
        self.wait()

        def run():
            try:
                self._result = write_checkpoint(directory, snap, keep_last)
            except BaseException as e:  # handed to the training thread by wait()
                self._error = e

        self._thread = threading.Thread(target=run, name=f"checkpoint-step-{snap.step}")
        self._thread.start()

    def wait(self) -> Path | None:
        """Block until the write in flight is on disk; returns its folder (None if there was none)."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            err, self._error = self._error, None
            raise RuntimeError(f"writing a checkpoint failed: {err}") from err
        result, self._result = self._result, None
        return result

    @property
    def busy(self) -> bool:
        return self._thread is not None and self._thread.is_alive()


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
    rank: int = 0,
) -> TrainState:
    """Restore a checkpoint written by :func:`save_checkpoint` into ``model`` (and ``optimizer``).

    ``restore_rng``: set this process's RNGs to those rank ``rank`` saved (left untouched, with a
    warning, if the checkpoint holds none for that rank; see :func:`restore_rng`).
    """
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
    if restore_rng and not _restore_rng(tensors, payload, rank):
        log.warning("%s holds no RNG state for rank %d: RNG left as it is", path, rank)
    return TrainState(step=payload["step"], data=payload["data"], scheduler=payload["scheduler"], extra=payload["extra"])


def restore_rng(path: str | os.PathLike, rank: int = 0) -> bool:
    """Set this process's RNGs to those rank ``rank`` saved in checkpoint ``path``.

    Returns False (RNG untouched) when the checkpoint holds no state for that rank, e.g. a run
    resumed on more ranks than it was saved from.
    """
    path = Path(path)
    payload = json.loads((path / "state.json").read_text())
    return _restore_rng(load_file(str(path / "optimizer.safetensors")), payload, rank)


def _restore_rng(tensors: dict[str, torch.Tensor], payload: dict[str, Any], rank: int) -> bool:
    found = _rank_rng(tensors, payload, rank)
    if found is None:
        return False
    set_rng_state(*found)
    return True
