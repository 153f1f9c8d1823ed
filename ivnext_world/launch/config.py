"""Launcher configuration: where and on what a job runs (the ``launcher`` hydra config group).

``configs/launcher/{local,submitit_local,slurm}.yaml`` fill :class:`LauncherConfig`; the cluster
presets in ``slurm/launcher/*.yaml`` extend ``slurm`` (e.g. ``launcher=h100_4x8``). The executor is
always the one named here: SLURM is never picked by auto-detection. :func:`check` rejects a config
that cannot run (unknown key, malformed time limit, more tasks than a node holds) before anything
is submitted, with a message naming the field.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Sequence

from omegaconf import OmegaConf

REPO = Path(__file__).resolve().parents[2]
PRESET_DIR = REPO / "slurm"  # holds launcher/<preset>.yaml, found through hydra's search path
KINDS = ("local", "submitit_local", "slurm")


class LauncherConfigError(ValueError):
    """A launcher setting that cannot run; raised before submission."""


@dataclass
class LauncherConfig:
    kind: str = "local"  # local (this process) | submitit_local (subprocesses) | slurm
    nodes: int = 1
    gpus_per_node: int = 0  # 0 = CPU job (gloo backend)
    tasks_per_node: Optional[int] = None  # None = one process per GPU, or 1 without GPUs
    cpus_per_task: int = 2  # data-loader workers + the main process
    mem_gb: Optional[float] = None  # per node; None = the partition's default
    partition: Optional[str] = None  # None = the cluster's default partition
    account: Optional[str] = None
    qos: Optional[str] = None
    time: str = "01:00:00"  # SLURM time limit: [D-]HH:MM:SS, MM:SS or minutes
    constraint: Optional[str] = None  # SLURM --constraint, e.g. "h100"
    node_cpus: Optional[int] = None  # what one node holds, for the pre-submission check (None = unchecked)
    node_gpus: Optional[int] = None
    # The GPU of a node, for the pre-submission memory check (ivnext_world.launch.memory measures the
    # job's per-GPU memory and refuses a job that does not fit): a name from memory.GPU_MEMORY_GIB
    # (e.g. "h100_80gb") or, for any other GPU, its memory in GiB (wins over the name).
    gpu: Optional[str] = None
    gpu_memory_gib: Optional[float] = None
    memory_headroom: float = 0.10  # fraction of GPU memory a job must leave free (allocator fragmentation)
    backend: str = "auto"  # torch.distributed backend: auto = nccl with GPUs, gloo on CPU
    max_requeues: int = 3  # preemptions/timeouts after which a job is not requeued again (submitit countdown)
    signal_delay_s: int = 120  # SIGUSR2 this long before the time limit: time to write a checkpoint
    array_parallelism: int = 16  # array tasks running at once
    folder: Optional[str] = None  # submitit logs/pickles; None = <run out>/submitit
    setup: List[str] = field(default_factory=list)  # shell lines before the job (module load, env vars)
    name: Optional[str] = None  # SLURM job name; None = the job name (pretrain, collect, ...)

    # ------------------------------------------------------------------------------------------
    @property
    def ntasks_per_node(self) -> int:
        if self.tasks_per_node is not None:
            return self.tasks_per_node
        return self.gpus_per_node or 1

    @property
    def world_size(self) -> int:
        return self.nodes * self.ntasks_per_node

    @property
    def timeout_min(self) -> int:
        return parse_time_limit(self.time)


_TIME = re.compile(r"^(?:(?P<d>\d+)-)?(?P<a>\d+)(?::(?P<b>\d+))?(?::(?P<c>\d+))?$")


def parse_time_limit(text: str) -> int:
    """SLURM time limit -> whole minutes (rounded up).

    Accepts the forms sbatch accepts: ``M``, ``M:S``, ``H:M:S``, ``D-H``, ``D-H:M``, ``D-H:M:S``.
    Minutes and seconds after a colon must be < 60 (``"25:99:00"`` is an error, not 26.65 h).
    """
    m = _TIME.match(str(text).strip())
    if not m:
        raise LauncherConfigError(f"launcher.time={text!r} is not a SLURM time limit ([D-]HH:MM:SS, MM:SS or minutes)")
    d, a, b, c = (None if m[g] is None else int(m[g]) for g in "dabc")
    if d is None:  # M | M:S | H:M:S
        h, mi, s = (0, a, b or 0) if c is None else (a, b, c)
    else:  # D-H | D-H:M | D-H:M:S
        h, mi, s = a, b or 0, c or 0
        if h >= 24:
            raise LauncherConfigError(f"launcher.time={text!r}: hours after 'D-' must be < 24")
    if (c is not None or d is not None) and mi >= 60:
        raise LauncherConfigError(f"launcher.time={text!r}: minutes must be < 60")
    if s >= 60:
        raise LauncherConfigError(f"launcher.time={text!r}: seconds must be < 60")
    total = ((d or 0) * 24 + h) * 60 + mi + (1 if s else 0)
    if total <= 0:
        raise LauncherConfigError(f"launcher.time={text!r}: the limit must be positive")
    return total


def check(cfg: LauncherConfig, distributed: bool = True) -> LauncherConfig:
    """Reject settings that cannot run, naming the field. ``distributed``: can the job use >1 task."""
    if cfg.kind not in KINDS:
        raise LauncherConfigError(f"launcher.kind={cfg.kind!r}: must be one of {KINDS}")
    for name in ("nodes", "cpus_per_task"):
        if getattr(cfg, name) < 1:
            raise LauncherConfigError(f"launcher.{name}={getattr(cfg, name)}: must be >= 1")
    if cfg.gpus_per_node < 0 or (cfg.tasks_per_node is not None and cfg.tasks_per_node < 1):
        raise LauncherConfigError("launcher.gpus_per_node must be >= 0 and launcher.tasks_per_node >= 1")
    cfg.timeout_min  # parses launcher.time
    n = cfg.ntasks_per_node
    if cfg.gpus_per_node and n > cfg.gpus_per_node:
        raise LauncherConfigError(
            f"launcher.tasks_per_node={n} exceeds launcher.gpus_per_node={cfg.gpus_per_node}: one process drives one GPU")
    if cfg.node_gpus is not None and cfg.gpus_per_node > cfg.node_gpus:
        raise LauncherConfigError(f"launcher.gpus_per_node={cfg.gpus_per_node} exceeds launcher.node_gpus={cfg.node_gpus} (what a node holds)")
    if cfg.node_cpus is not None and n * cfg.cpus_per_task > cfg.node_cpus:
        raise LauncherConfigError(
            f"launcher: {n} tasks per node x cpus_per_task={cfg.cpus_per_task} = {n * cfg.cpus_per_task} CPUs "
            f"exceeds launcher.node_cpus={cfg.node_cpus}")
    if cfg.kind == "local" and cfg.world_size > 1:
        raise LauncherConfigError(
            f"launcher=local runs one process in this one; {cfg.world_size} tasks need launcher=submitit_local or slurm "
            "(or torchrun with launcher=local)")
    if cfg.kind == "submitit_local" and cfg.nodes > 1:
        raise LauncherConfigError(f"launcher.nodes={cfg.nodes}: submitit_local runs on this machine only (nodes=1)")
    if not distributed and cfg.world_size > 1:
        raise LauncherConfigError(f"this job runs in a single process; launcher asks for {cfg.world_size} tasks")
    if cfg.gpu is not None or cfg.gpu_memory_gib is not None:
        from .memory import gpu_memory_bytes

        try:
            gpu_memory_bytes(cfg.gpu, cfg.gpu_memory_gib)
        except ValueError as e:
            raise LauncherConfigError(str(e)) from e
    if not 0 <= cfg.memory_headroom < 1:
        raise LauncherConfigError(f"launcher.memory_headroom={cfg.memory_headroom}: must be in [0, 1)")
    if cfg.backend not in ("auto", "gloo", "nccl"):
        raise LauncherConfigError(f"launcher.backend={cfg.backend!r}: must be auto, gloo or nccl")
    return cfg


def compose_launcher(overrides: Sequence[str] = ()) -> LauncherConfig:
    """Compose the ``launcher`` group with ``launcher=<name>`` / ``launcher.<key>=<value>`` overrides.

    Unknown keys and wrong types fail here with the key named (the YAML is merged onto the schema
    in struct mode); :func:`check` then validates the values.
    """
    from hydra import compose, initialize_config_dir
    from hydra.core.config_store import ConfigStore

    cs = ConfigStore.instance()
    cs.store(name="launcher_schema", node=LauncherConfig)
    cs.store(name="ivnext_launch", node={
        "defaults": [{"launcher": "local"}, "_self_"],
        "hydra": {"searchpath": [f"file://{PRESET_DIR}"]},
    })
    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        composed = compose(config_name="ivnext_launch", overrides=list(overrides))
    schema = OmegaConf.structured(LauncherConfig)
    OmegaConf.set_struct(schema, True)
    user = OmegaConf.to_container(composed.launcher, resolve=True)
    try:
        merged = OmegaConf.merge(schema, user)
    except Exception as e:  # omegaconf names the key; say it is a launcher key
        raise LauncherConfigError(f"launcher config: {e}") from e
    return OmegaConf.to_object(merged)
