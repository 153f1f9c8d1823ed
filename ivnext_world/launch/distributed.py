"""Job environment -> ``torch.distributed``: rank, world size and rendezvous for every launcher.

Inside a submitit job (SLURM or the local executor) the ranks, the master node and a port derived
from the job id come from :class:`submitit.helpers.TorchDistributedEnvironment`, which reads
:class:`submitit.JobEnvironment`. Under ``torchrun`` the same variables are already set. Either way
``torch.distributed`` is then initialised with ``init_method="env://"``, so there is one code path:
the training loop only ever asks ``torch.distributed`` for its rank.

Collective timeout: ``timeout_min`` (default :data:`DEFAULT_TIMEOUT_MIN` = 60, or the environment
variable ``IVNEXT_DIST_TIMEOUT_MIN``). torch's NCCL default is 10 minutes, shorter than one-off
phases in which ranks wait for each other (building the world model's latent cache, a large
synchronous checkpoint); a rank that really hangs is still caught after this long.
"""
from __future__ import annotations

import datetime
import logging
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_MIN = 60.0


def dist_timeout(timeout_min: float | None = None) -> datetime.timedelta:
    """``timeout_min``, else ``$IVNEXT_DIST_TIMEOUT_MIN``, else :data:`DEFAULT_TIMEOUT_MIN` minutes."""
    if timeout_min is None:
        timeout_min = float(os.environ.get("IVNEXT_DIST_TIMEOUT_MIN", DEFAULT_TIMEOUT_MIN))
    if timeout_min <= 0:
        raise ValueError(f"the process-group timeout must be > 0 minutes, got {timeout_min}")
    return datetime.timedelta(minutes=timeout_min)


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    master: str = ""  # "host:port" of rank 0, empty for a single process
    backend: str = ""  # "" when torch.distributed was not initialised (one process)
    source: str = "single"  # submitit | torchrun | single


def in_submitit_job() -> bool:
    return "SUBMITIT_EXECUTOR" in os.environ


def pick_backend(backend: str = "auto") -> str:
    """nccl when this process has a GPU, gloo otherwise (CPU tests and CPU clusters)."""
    if backend != "auto":
        return backend
    return "nccl" if torch.cuda.is_available() else "gloo"


def init_distributed(backend: str = "auto", timeout_min: float | None = None) -> DistInfo:
    """Export the job environment and initialise ``torch.distributed`` when there is more than one task.

    ``timeout_min``: how long a collective may wait for the other ranks (see :func:`dist_timeout`).

    With GPUs each task uses ``cuda:<local_rank>`` (set as the current device, so the training
    loop's ``"cuda"`` device is the task's own GPU).
    """
    if in_submitit_job():
        from submitit.helpers import TorchDistributedEnvironment

        # overwrite: a requeued or nested job may inherit the variables of its parent.
        env = TorchDistributedEnvironment().export(set_cuda_visible_devices=False, overwrite=True)
        info = DistInfo(env.rank, env.world_size, env.local_rank, f"{env.master_addr}:{env.master_port}", source="submitit")
    elif "WORLD_SIZE" in os.environ and "RANK" in os.environ:
        info = DistInfo(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", 0)),
                        f"{os.environ.get('MASTER_ADDR', '')}:{os.environ.get('MASTER_PORT', '')}", source="torchrun")
    else:
        return DistInfo()
    if torch.cuda.is_available():
        torch.cuda.set_device(info.local_rank % torch.cuda.device_count())
    if info.world_size > 1 and not dist.is_initialized():
        info.backend = pick_backend(backend)
        dist.init_process_group(info.backend, init_method="env://", rank=info.rank, world_size=info.world_size,
                                timeout=dist_timeout(timeout_min))
        log.info("torch.distributed: rank %d/%d via %s (%s, from %s)", info.rank, info.world_size, info.master, info.backend, info.source)
    return info


def shutdown_distributed() -> None:
    if dist.is_initialized():
        dist.barrier()  # rank 0 may still be writing the last checkpoint
        dist.destroy_process_group()
