"""Reference policies for the planning evaluation: uniform random and the scripted experts.

Every policy here is ``policy(obs) -> raw action`` with ``reset(goal_obs)`` called at the start of
an episode. The expert is ``envs.experts.ExpertPolicy`` without noise (privileged state; for
gymnasium's Reacher-v5 the adapter's PD law towards the inverse-kinematics solution).
"""
from __future__ import annotations

import numpy as np

__all__ = ["EpisodePolicy", "make_baseline"]


class EpisodePolicy:
    """Wraps a stateless ``obs -> action`` callable with a no-op ``reset``."""

    def __init__(self, fn):
        self.fn = fn

    def reset(self, goal_obs=None, goal_proprio=None) -> None:
        pass

    def __call__(self, obs) -> np.ndarray:
        return self.fn(obs)


def make_baseline(name: str, env, seed: int):
    from envs.experts import ExpertPolicy, RandomPolicy

    if name == "random":
        return EpisodePolicy(RandomPolicy(env, rng=seed))
    if name == "expert":
        try:
            return EpisodePolicy(ExpertPolicy(env, noise_std=0.0, rng=seed))
        except TypeError:
            raise ValueError(f"no scripted expert for {env.spec.id if env.spec else env}") from None
    raise ValueError(f"unknown baseline {name!r}")
