"""Behaviour cloning: the 256x3 MLP (on features or through the pixel CNN) overfits a tiny dataset."""
import numpy as np
import pytest
import torch

from ivnext_world.policies import BCDataset, BCNet, BCPolicy, pool_latents
from ivnext_world.policies.bc import bc_objective


def _episodes(kind: str, g: torch.Generator):
    if kind == "latent":
        inputs = [torch.randn(6, 10, generator=g) for _ in range(3)]  # 3 episodes x 6 steps, 10 features
    else:
        inputs = [torch.randint(0, 256, (6, 3, 24, 24), generator=g, dtype=torch.uint8) for _ in range(3)]
    actions = [torch.rand(6, 2, generator=g) * 2 - 1 for _ in range(3)]
    return inputs, actions


@pytest.mark.parametrize("kind", ["latent", "pixels"])
def test_bc_overfits_a_tiny_dataset(kind):
    g = torch.Generator().manual_seed(0)
    inputs, actions = _episodes(kind, g)
    ds = BCDataset(inputs, actions, history=3)
    assert len(ds) == 18 and ds[0]["x"].shape[0] == 3
    assert torch.equal(ds[0]["x"][0], ds[0]["x"][2])  # the first step's history repeats the first frame
    torch.manual_seed(0)
    net = BCNet(kind, 10, 2, history=3, hidden=64 if kind == "pixels" else 256, pixel_size=24)
    batch = {k: torch.stack([ds[i][k] for i in range(len(ds))]) for k in ("x", "action")}
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    with torch.no_grad():
        first = float(bc_objective(net, batch, None)[0])
    for _ in range(150):  # the whole dataset as one batch (train_bc runs the same objective in the Trainer)
        loss, _ = bc_objective(net, batch, None)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        final, _ = bc_objective(net.eval(), batch, None)
    assert first > 0.2 and float(final) < 0.01, (first, float(final))


def test_pooling_and_runtime_history():
    z = torch.arange(24.0).view(1, 4, 6)[..., :2].expand(2, -1, -1)  # (2, n=4, D=2), 1 cls token
    p = pool_latents(z, 1)
    assert p.shape == (2, 4) and torch.allclose(p[0], torch.tensor([0.0, 1.0, 12.0, 13.0]))
    net = BCNet("pixels", 1, 2, history=3, pixel_size=32)
    policy = BCPolicy(net, history=3, pixel_size=32, low=np.array([-0.1, -0.1]), high=np.array([0.1, 0.1]))
    obs = {"rgb": np.zeros((40, 40, 3), np.uint8)}
    a = policy(obs)
    assert a.shape == (2,) and np.all(np.abs(a) <= 0.1) and len(policy._frames) == 3
    policy.reset()
    assert len(policy._frames) == 0
