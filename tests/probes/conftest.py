import torch  # noqa: F401  (before any EGL context)

from pathlib import Path

import pytest

from ._helpers import make_depth_dataset, save_tiny_epd


@pytest.fixture(scope="session")
def depth_data(tmp_path_factory) -> Path:
    return make_depth_dataset(tmp_path_factory.mktemp("depth") / "data")


@pytest.fixture(scope="session")
def tiny_epd(tmp_path_factory) -> Path:
    return save_tiny_epd(tmp_path_factory.mktemp("epd"))


@pytest.fixture(autouse=True)
def _single_thread(one_torch_thread):
    """Every test here runs torch on one thread (tests/conftest.py)."""


@pytest.fixture
def no_o3d_render(monkeypatch):
    """Point-cloud pictures through the matplotlib fallback (the open3d renderer has its own slow test)."""
    from ivnext_world.probes.depth.geometry import offscreen_renderer_works

    monkeypatch.setenv("IVNEXT_NO_O3D_RENDER", "1")
    offscreen_renderer_works.cache_clear()
    yield
    offscreen_renderer_works.cache_clear()


@pytest.fixture(scope="session")
def tiny_probe(depth_data, tiny_epd, tmp_path_factory) -> Path:
    """A linear probe (3 steps) on the tiny pretraining checkpoint: a real probe checkpoint folder."""
    from dataclasses import replace

    from ivnext_world.probes.depth import DepthHeadConfig, DepthProbeConfig, train_depth_probe
    from ivnext_world.probes.depth.train import DepthDataConfig

    cfg = DepthProbeConfig(encoder=str(tiny_epd), head=DepthHeadConfig(kind="linear", num_bins=32),
                           data=DepthDataConfig(source=str(depth_data), train_episodes=[0, 1], test_episodes=[2]),
                           out=str(tmp_path_factory.mktemp("probe") / "run"))
    cfg.loop = replace(cfg.loop, steps=3, batch_size=2, num_workers=0, warmup_steps=1, ckpt_every=3)
    return Path(train_depth_probe(cfg)["checkpoint"])
