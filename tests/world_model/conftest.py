import torch  # noqa: F401  (before the simulator: importing torch after an EGL context has crashed)

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def push_data(tmp_path_factory) -> Path:
    """Four short episodes of the built-in push task (64 px, 12 steps) in LeRobot layout."""
    from omegaconf import OmegaConf

    from ivnext_world.config import load_config
    from ivnext_world.sim import collect

    out = tmp_path_factory.mktemp("wm") / "push"
    cfg = load_config("collect", [f"out={out}", "env.image_size=64", "env.max_episode_steps=12", "episodes=4",
                                  "workers=0", "policy.noise_std=0.3"])
    return Path(collect(OmegaConf.to_object(cfg)).out)


@pytest.fixture(scope="session")
def epd_ckpt(tmp_path_factory) -> Path:
    from ._wm_helpers import save_tiny_epd

    return save_tiny_epd(tmp_path_factory.mktemp("epd"))


@pytest.fixture(autouse=True)
def _single_thread(one_torch_thread):
    """Every test here runs torch on one thread (tests/conftest.py)."""
