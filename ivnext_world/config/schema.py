"""Typed configuration schema (hydra structured configs).

Every YAML file under ``configs/`` is merged onto one of these dataclasses, so an unknown key or a
value of the wrong type fails at start-up with an error naming the key (OmegaConf's struct mode),
before any environment is built or any frame rendered.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Optional


class _StrEnum(str, Enum):
    # str() gives the bare value, so "${env.task}" interpolates to "push", not "Task.push".
    def __str__(self) -> str:
        return self.value


class Task(_StrEnum):
    """Built-in simulation tasks (gymnasium ids live in ``envs.TASKS``)."""

    reach = "reach"  # ivnext/Reach-v0: move the end effector to a goal marker
    push = "push"  # ivnext/Push-v0: push a puck into a goal region
    reacher = "reacher"  # gymnasium Reacher-v5 with our observation dictionary
    pusher = "pusher"  # gymnasium Pusher-v5 with our observation dictionary


class PolicyKind(_StrEnum):
    expert = "expert"  # scripted expert using privileged simulator state
    random = "random"  # uniform over the action box


@dataclass
class EnvConfig:
    task: Task = Task.push
    image_size: int = 128  # square RGB/depth images; 128 px renders at hundreds of frames/s on one core
    max_episode_steps: Optional[int] = None  # None: the registered default of the task


@dataclass
class PolicyConfig:
    kind: PolicyKind = PolicyKind.expert
    # Gaussian noise added to the expert's normalised actions (then clipped to bounds): noisy
    # demonstrations cover more of the state space, which world models need.
    noise_std: float = 0.0


@dataclass
class CollectConfig:
    env: EnvConfig = field(default_factory=EnvConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    episodes: int = 20
    workers: int = 2  # parallel worker processes; 0 runs in-process (useful for debugging)
    seed: int = 0  # episode i is reset with seed + i, so any episode can be regenerated alone
    out: str = "outputs/data/${env.task}"
    overwrite: bool = False  # False: finished episodes already in `out` are kept and skipped
