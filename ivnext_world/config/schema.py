"""Typed configuration schema (hydra structured configs).

Every YAML file under ``configs/`` is merged onto one of these dataclasses, so an unknown key or a
value of the wrong type fails at start-up with an error naming the key (OmegaConf's struct mode),
before any environment is built or any frame rendered.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Dict, Optional

from envs.adapter_spec import AdapterSpec, CameraSpec  # noqa: F401  (plain dataclasses; re-exported)


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
    random_walk = "random_walk"  # smooth random actions: a random walk in the action box (step_std)
    callable = "callable"  # the user's own policy: policy.target=package.module:callable


@dataclass
class GymEnvConfig:
    """Any gymnasium env through ``envs.gym_adapters.GymAdapter`` (``env.id`` set), else a built-in task."""

    id: Optional[str] = None  # any gymnasium id ("ns/Id" imports package ns, "module:Id" imports module)
    kwargs: Dict[str, Any] = field(default_factory=dict)  # gymnasium.make keyword arguments
    adapter: AdapterSpec = field(default_factory=AdapterSpec)  # RGB/proprio/depth sources, goal, expert


@dataclass
class EnvConfig(GymEnvConfig):
    task: Task = Task.push  # a built-in task; ignored when `id` is set
    image_size: int = 128  # square RGB/depth images; 128 px renders at hundreds of frames/s on one core
    max_episode_steps: Optional[int] = None  # None: the registered default of the task / id

    @property
    def name(self) -> str:
        """The env's name for folders and summaries: the task, or the id with '/' and ':' made '_'."""
        return env_name(self.task, self.id)


def env_name(task, env_id: Optional[str]) -> str:
    """``${ivnext.env_name:${env.task},${env.id}}``: the id made a path component, else the task."""
    if env_id:
        return re.sub(r"[/:]", "_", str(env_id))
    return str(task.value if isinstance(task, Enum) else task)


@dataclass
class PolicyConfig:
    kind: PolicyKind = PolicyKind.expert
    # Gaussian noise added to the expert's normalised actions (then clipped to bounds): noisy
    # demonstrations cover more of the state space, which world models need.
    noise_std: float = 0.0
    step_std: float = 0.05  # random_walk: std of each step as a fraction of the action range
    # callable: "package.module:name", a factory f(env) -> policy (a class, or a function whose first
    # parameter is named env; given rng=/seed= when it takes them) or a policy itself: obs -> action.
    target: Optional[str] = None

    def __post_init__(self):
        if (self.target is not None) != (PolicyKind(self.kind) == PolicyKind.callable):
            raise ValueError("policy.target=package.module:callable and policy.kind=callable go together "
                             f"(got kind={PolicyKind(self.kind).value}, target={self.target!r})")


@dataclass
class CollectConfig:
    env: EnvConfig = field(default_factory=EnvConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    episodes: int = 20
    workers: int = 2  # parallel worker processes; 0 runs in-process (useful for debugging)
    seed: int = 0  # episode i is reset with seed + i, so any episode can be regenerated alone
    out: str = "outputs/data/${ivnext.env_name:${env.task},${env.id}}"
    overwrite: bool = False  # False: finished episodes already in `out` are kept and skipped
