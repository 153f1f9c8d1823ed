"""Policies that generate demonstrations and exploration data: a noisy scripted expert, a uniform
random policy and a smooth random walk. Both are callables ``policy(obs) -> action`` (float32, inside the env's
action space) and draw all randomness from their own ``numpy.random.Generator``, so a dataset is
reproducible from (env seed, policy seed)."""

from __future__ import annotations

import gymnasium
import numpy as np

__all__ = ["ExpertPolicy", "RandomPolicy", "RandomWalkPolicy"]


def _box(env: gymnasium.Env) -> gymnasium.spaces.Box:
    space = env.action_space
    if not isinstance(space, gymnasium.spaces.Box):
        raise TypeError(f"expected a Box action space, got {space}")
    return space


class ExpertPolicy:
    """The env's scripted expert plus Gaussian action noise.

    Args:
        env: an env (wrapped or not) with an ``expert_action()`` on it or on one of its wrappers:
            ``ivnext/Reach-v0``, ``ivnext/Push-v0`` and ``ivnext/Reacher-v5`` (PD control to the
            inverse-kinematics solution). The expert reads privileged simulator state, so ``obs``
            passed to the call is ignored.
        noise_std: standard deviation of the added noise, in action units (1 = full scale).
        rng: a ``numpy.random.Generator`` or a seed for one.
    """

    def __init__(self, env: gymnasium.Env, noise_std: float = 0.0,
                 rng: np.random.Generator | int | None = None):
        try:
            self._expert = env.get_wrapper_attr("expert_action")
        except AttributeError:
            raise TypeError(f"{type(env.unwrapped).__name__} has no scripted expert (expert_action)") from None
        if noise_std < 0:
            raise ValueError(f"noise_std must be >= 0, got {noise_std}")
        self.env, self.noise_std = env, float(noise_std)
        self.space = _box(env)
        self.rng = np.random.default_rng(rng)

    def __call__(self, obs=None) -> np.ndarray:
        action = np.asarray(self._expert(), dtype=np.float64)
        if self.noise_std > 0:
            action = action + self.rng.normal(0.0, self.noise_std, size=action.shape)
        return np.clip(action, self.space.low, self.space.high).astype(np.float32)


class RandomPolicy:
    """Uniformly random actions in the env's (bounded) Box action space.

    Args:
        env: any env with a bounded Box action space.
        rng: a ``numpy.random.Generator`` or a seed for one (independent of ``env``'s own RNG).
    """

    def __init__(self, env: gymnasium.Env, rng: np.random.Generator | int | None = None):
        self.space = _box(env)
        if not self.space.is_bounded():
            raise ValueError(f"RandomPolicy needs a bounded action space, got {self.space}")
        self.rng = np.random.default_rng(rng)

    def __call__(self, obs=None) -> np.ndarray:
        return self.rng.uniform(self.space.low, self.space.high).astype(np.float32)


class RandomWalkPolicy:
    """Smooth random actions: a random walk in the (bounded) Box action space.

    The first action is uniform in the box; each later one adds Gaussian noise of ``step_std`` x the
    box's range per dimension and is clipped to the box. For position-target actions (gym-pusht's
    PushT: where the agent should go) this moves the agent along smooth random paths, the kind of
    exploratory data DINO-WM-style world models train on; uniform actions would make it jump.

    Args:
        env: any env with a bounded Box action space.
        step_std: standard deviation of each step, as a fraction of the action range.
        rng: a ``numpy.random.Generator`` or a seed for one.
    """

    def __init__(self, env: gymnasium.Env, step_std: float = 0.05,
                 rng: np.random.Generator | int | None = None):
        self.space = _box(env)
        if not self.space.is_bounded():
            raise ValueError(f"RandomWalkPolicy needs a bounded action space, got {self.space}")
        if step_std <= 0:
            raise ValueError(f"step_std must be > 0, got {step_std}")
        self.step_std = float(step_std)
        self.rng = np.random.default_rng(rng)
        self._last: np.ndarray | None = None

    def __call__(self, obs=None) -> np.ndarray:
        low, high = self.space.low.astype(np.float64), self.space.high.astype(np.float64)
        if self._last is None:
            a = self.rng.uniform(low, high)
        else:
            a = np.clip(self._last + self.rng.normal(0.0, self.step_std * (high - low)), low, high)
        self._last = a
        return a.astype(np.float32)
