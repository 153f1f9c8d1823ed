"""The policies ``ivnext-collect`` runs: scripted expert, random, random walk, or the user's own.

``policy.kind=callable policy.target=package.module:name`` loads the user's object, which is either

* a **factory** ``f(env) -> policy``: a class, or a function whose first parameter is named ``env``.
  It is called once per episode with the env (the adapted env, whose observations are the ``envs``
  dictionary: ``rgb``, ``proprio``, ...), plus ``rng=`` (a ``numpy.random.Generator`` seeded by the
  episode's seed) and/or ``seed=`` (that seed, an int) when it takes parameters of those names; or
* a **policy** itself: ``policy(obs) -> action``, called as is for every step of every episode.

Either way the policy returns an action of the env's action shape (anything ``np.asarray`` turns
into one; it is cast to float32, and the env clips it to the action box). The module must be
importable by name in worker processes (on ``PYTHONPATH``, or installed).
"""
from __future__ import annotations

import inspect
from typing import Callable

import numpy as np

from ..config.schema import PolicyConfig, PolicyKind

__all__ = ["load_user_policy", "make_policy"]


def make_policy(env, cfg: PolicyConfig, seed: int) -> Callable[[dict], np.ndarray]:
    """A callable ``obs -> action`` for ``env``; its randomness is seeded by ``seed`` alone.

    Raises:
        ValueError: no scripted expert for the env, or a user policy that cannot be loaded.
    """
    from envs.experts import ExpertPolicy, RandomPolicy, RandomWalkPolicy

    rng = np.random.default_rng(seed)
    kind = PolicyKind(cfg.kind)
    if kind == PolicyKind.random:
        return RandomPolicy(env, rng=rng)
    if kind == PolicyKind.random_walk:
        return RandomWalkPolicy(env, step_std=cfg.step_std, rng=rng)
    if kind == PolicyKind.callable:
        return load_user_policy(cfg.target, env, seed)
    try:
        return ExpertPolicy(env, noise_std=cfg.noise_std, rng=rng)
    except TypeError as e:
        raise ValueError(f"{e}: use policy.kind=random, random_walk or callable (policy.target=module:callable), "
                         "or give the env an expert (env.adapter.expert=module:callable)") from None


def load_user_policy(target: str, env, seed: int) -> Callable[[dict], np.ndarray]:
    """The user's policy for one episode (see the module docstring for the contract)."""
    from envs.gym_adapters import load_callable

    obj = load_callable(target, "policy.target")
    if _is_factory(obj):
        params = _parameters(obj)
        extra = {}
        if "rng" in params:
            extra["rng"] = np.random.default_rng(seed)
        if "seed" in params:
            extra["seed"] = seed
        policy = obj(env, **extra)
        if not callable(policy):
            raise ValueError(f"policy.target {target!r} is a factory (first parameter 'env') but returned "
                             f"{type(policy).__name__}, not a callable policy(obs) -> action")
        return policy
    return obj


def _parameters(obj) -> dict:
    try:
        return dict(inspect.signature(obj).parameters)
    except (TypeError, ValueError):  # builtins without a signature: treat as a policy
        return {}


def _is_factory(obj) -> bool:
    if inspect.isclass(obj):
        return True
    params = list(_parameters(obj))
    return bool(params) and params[0] == "env"
