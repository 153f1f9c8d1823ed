"""Reference policies for the planning evaluation: uniform random and the scripted experts.

Every policy here is ``policy(obs) -> raw action`` with ``reset(goal_obs)`` called at the start of
an episode. The tabletop tasks' expert is ``envs.experts.ExpertPolicy`` (privileged state); for
gymnasium's Reacher-v5, which has none, :class:`ReacherExpert` tracks the analytic inverse
kinematics solution (``goal_joint_angles`` of the adapter) with a PD torque law.
"""
from __future__ import annotations

import numpy as np

__all__ = ["EpisodePolicy", "ReacherExpert", "make_baseline"]


class EpisodePolicy:
    """Wraps a stateless ``obs -> action`` callable with a no-op ``reset``."""

    def __init__(self, fn):
        self.fn = fn

    def reset(self, goal_obs=None, goal_proprio=None) -> None:
        pass

    def __call__(self, obs) -> np.ndarray:
        return self.fn(obs)


class ReacherExpert:
    """PD control of Reacher-v5's joints to the IK solution: ``tau = kp (q* - q) - kd dq`` (clipped).
    ``obs["proprio"] = [q1, q2, dq1, dq2]`` (rad, rad/s)."""

    def __init__(self, env, kp: float = 2.0, kd: float = 0.15):
        self.env, self.kp, self.kd = env, kp, kd
        self.target = None

    def reset(self, goal_obs=None, goal_proprio=None) -> None:
        self.target = np.asarray(self.env.get_wrapper_attr("goal_joint_angles")())

    def __call__(self, obs) -> np.ndarray:
        q, dq = obs["proprio"][:2], obs["proprio"][2:4]
        err = (self.target - q + np.pi) % (2 * np.pi) - np.pi
        return np.clip(self.kp * err - self.kd * dq, -1.0, 1.0).astype(np.float32)


def make_baseline(name: str, env, seed: int):
    from envs.experts import ExpertPolicy, RandomPolicy

    if name == "random":
        return EpisodePolicy(RandomPolicy(env, rng=seed))
    if name == "expert":
        if hasattr(env.unwrapped, "expert_action"):
            return EpisodePolicy(ExpertPolicy(env, noise_std=0.0, rng=seed))
        try:
            env.get_wrapper_attr("goal_joint_angles")
        except AttributeError:
            raise ValueError(f"no scripted expert for {env.spec.id if env.spec else env}") from None
        return ReacherExpert(env)
    raise ValueError(f"unknown baseline {name!r}")
