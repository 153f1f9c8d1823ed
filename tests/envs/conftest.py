"""Shared helpers for the environment tests: small images, envs closed after each test."""

import gymnasium
import pytest

import envs
from _env_helpers import SIZE


@pytest.fixture
def make_env():
    """``make_env(task, **kwargs)`` -> ``gymnasium.make(envs.TASKS[task], width=SIZE, ...)``."""
    made = []

    def _make(task: str, **kwargs):
        kwargs.setdefault("width", SIZE)
        kwargs.setdefault("height", SIZE)
        env = gymnasium.make(envs.TASKS[task], **kwargs)
        made.append(env)
        return env

    yield _make
    for env in made:
        env.close()
