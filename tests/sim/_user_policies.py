"""User policies loaded by name (``policy.kind=callable policy.target=sim._user_policies:<name>``)."""
import numpy as np

CALLS: list = []  # what the policies saw, for the tests (in-process collection only)


def toward_centre(env, rng):
    """A factory (first parameter ``env``) taking the episode's seeded generator."""
    space = env.action_space
    offset = rng.uniform(-0.5, 0.5, size=space.shape)

    def policy(obs):
        CALLS.append(sorted(obs))
        return (space.low + space.high) / 2 + offset

    return policy


class SeededConstant:
    """A class factory taking the episode's seed."""

    def __init__(self, env, seed):
        self.action = np.full(env.action_space.shape, (seed % 5) / 10, dtype=np.float64)

    def __call__(self, obs):
        return self.action


def zeros(obs):
    """A policy itself (first parameter not ``env``): used as is for every step."""
    return [0.0]


def wrong_shape(obs):
    return np.zeros(3)


def fails_on_third_step(env):
    calls = {"n": 0}

    def policy(obs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("the user's policy crashed")
        return np.zeros(env.action_space.shape)

    return policy
