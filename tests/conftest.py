import os

# Headless rendering for every test process (envs/ also sets this default on import).
os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("PYOPENGL_PLATFORM", "egl")

import pytest  # noqa: E402


@pytest.fixture
def one_torch_thread():
    """Tiny models run faster (up to ~10x) on one thread than on two when the CPU is shared; the
    world-model, planning and probe tests use this for every test (autouse in their conftest)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
