import torch  # noqa: F401  (before the simulator: importing torch after an EGL context has crashed)

import pytest


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny models run faster on one thread than on two when the CPU is shared."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_wm_run(tmp_path_factory):
    """An untrained, loadable world-model run folder (tiny encoder with a decoder, tiny predictor)."""
    from ._helpers import save_tiny_world_model

    return save_tiny_world_model(tmp_path_factory.mktemp("wm_run"))
