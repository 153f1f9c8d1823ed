import torch  # noqa: F401  (before the simulator: importing torch after an EGL context has crashed)

import pytest


@pytest.fixture(autouse=True)
def _single_thread(one_torch_thread):
    """Every test here runs torch on one thread (tests/conftest.py)."""


@pytest.fixture(scope="session")
def tiny_wm_run(tmp_path_factory):
    """An untrained, loadable world-model run folder (tiny encoder with a decoder, tiny predictor)."""
    from ._helpers import save_tiny_world_model

    return save_tiny_world_model(tmp_path_factory.mktemp("wm_run"))
