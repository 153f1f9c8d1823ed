"""Planners, MPC, agent and WorldModel with the world model on a GPU: everything stays on its device.

No GPU exists on the test machines, so "cuda" is the CPU-backed stand-in of ``_fake_cuda`` (real
values, ``device == cuda:0``, and mixing CPU and CUDA tensors in one op fails as it does on a GPU).
At cf2c997 the sampling planners drew candidates on the CPU whatever the world model's device, and
indexing them with the CUDA costs' ``topk`` crashed (issue 13 item 4).
"""
import numpy as np
import pytest
import torch

from ivnext_world.planning import PLANNERS, Bounds, build_planner, make_cost

from ._fake_cuda import fake_cuda
from ._helpers import B, X0, quadratic_goal

TINY = {"cem": dict(samples=12, topk=3, iterations=3), "mppi": dict(samples=12, elites=3, iterations=3),
        "gradient": dict(restarts=3, iterations=3)}


def linear_rollout_on(device_type: str):
    """The analytic system of ``_helpers``, checking that the candidates arrive on ``device_type``
    and computing on their device."""
    seen = []

    def rollout(u: torch.Tensor) -> torch.Tensor:
        seen.append(u.device.type)
        assert u.device.type == device_type, f"candidates on {u.device}, expected {device_type}"
        return X0.to(u.device) + torch.cumsum(u @ B.T.to(u.device), dim=1)

    return rollout, seen


@pytest.mark.parametrize("name", sorted(PLANNERS))
def test_planners_search_on_the_bounds_device_and_match_the_cpu(name):
    goal = torch.tensor([1.0, -0.5])
    planner = build_planner(name, horizon=3, **TINY[name])
    rollout, _ = linear_rollout_on("cpu")
    ref = planner.plan(make_cost(rollout, quadratic_goal(goal)), Bounds.symmetric(2), generator=torch.Generator().manual_seed(0))
    with fake_cuda():
        rollout, seen = linear_rollout_on("cuda")
        bounds = Bounds(-torch.ones(2).to("cuda"), torch.ones(2).to("cuda"))  # = Bounds.symmetric(2).to("cuda")
        assert bounds.low.device.type == "cuda"
        res = planner.plan(make_cost(rollout, quadratic_goal(goal.to("cuda"))), bounds,
                           generator=torch.Generator().manual_seed(0))
        assert res.actions.device.type == res.mean.device.type == "cuda" and seen
        actions = res.actions.cpu()
    # The same seed draws the same candidates on either device: the same plan.
    torch.testing.assert_close(actions, ref.actions)
    assert res.cost == pytest.approx(ref.cost, rel=1e-6)


@pytest.mark.parametrize("name", sorted(PLANNERS))
def test_costs_returned_on_another_device_than_the_candidates(name):
    """CPU candidates, costs that come back on the GPU (a CUDA world model fed CPU actions moves them)."""
    goal = torch.tensor([1.0, -0.5])
    rollout, _ = linear_rollout_on("cpu")
    cost = make_cost(rollout, quadratic_goal(goal))
    planner = build_planner(name, horizon=3, **TINY[name])
    ref = planner.plan(cost, Bounds.symmetric(2), generator=torch.Generator().manual_seed(0))
    with fake_cuda():
        res = planner.plan(lambda u: cost(u).to("cuda"), Bounds.symmetric(2), generator=torch.Generator().manual_seed(0))
        assert res.actions.device.type == "cpu"
    torch.testing.assert_close(res.actions, ref.actions)


def _obs(seed: int) -> dict:
    rng = np.random.default_rng(seed)
    return {"rgb": rng.integers(0, 256, (56, 56, 3), dtype=np.uint8), "proprio": rng.normal(size=4).astype(np.float32)}


def _run_agent(wm, name: str) -> tuple[list[np.ndarray], list[str]]:
    """Two replans of a PlanningAgent; returns the env actions and the devices every world-model call
    received its candidate actions on."""
    from gymnasium import spaces

    from ivnext_world.planning.agent import ObjectiveConfig, PlanningAgent

    devices = []
    rollout = wm.rollout

    def recording_rollout(context, actions=None, *args, **kwargs):
        devices.append(actions.device.type)
        return rollout(context, actions, *args, **kwargs)

    wm.rollout = recording_rollout
    try:
        agent = PlanningAgent(wm, build_planner(name, horizon=2, **TINY[name]), spaces.Box(-1.0, 1.0, (2,), np.float32),
                              ObjectiveConfig(proprio_weight=0.5), context_frames=2, seed=0)
        agent.reset(_obs(0)["rgb"], _obs(0)["proprio"])
        actions = [agent(_obs(1)), agent(_obs(2))]
        assert agent.num_plans == 2 and agent.imagined.device.type == wm.device.type
    finally:
        del wm.rollout
    return actions, devices


@pytest.mark.parametrize("name", sorted(PLANNERS))
def test_agent_plans_on_the_world_models_device(tiny_wm_run, name):
    from ivnext_world.world_model import WorldModel

    wm = WorldModel.load(tiny_wm_run)
    want, cpu_devices = _run_agent(wm, name)
    assert set(cpu_devices) == {"cpu"}
    with fake_cuda():
        wm = wm.to("cuda")
        assert wm.device.type == "cuda"
        got, devices = _run_agent(wm, name)
    # Every candidate batch the world model scored was already on its device; the env gets numpy.
    assert devices and set(devices) == {"cuda"}, devices
    for g, w in zip(got, want):
        assert isinstance(g, np.ndarray) and g.dtype == np.float32 and g.shape == (2,)
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)


def test_world_model_moves_to_a_device_and_takes_cpu_inputs(tiny_wm_run):
    from ivnext_world.world_model import WorldModel

    wm = WorldModel.load(tiny_wm_run)
    g = torch.Generator().manual_seed(0)
    # At the encoder's size (56 px): torchvision resizes CPU uint8 with its own rounding, a GPU in float.
    frames = torch.randint(0, 256, (1, 2, 3, 56, 56), dtype=torch.uint8, generator=g)
    acts, prop, ctx_a = torch.randn(3, 2, 2, generator=g), torch.randn(1, 2, 4, generator=g), torch.randn(1, 1, 2, generator=g)
    z_ref = wm.encode(frames)
    r_ref, p_ref = wm.rollout(z_ref, acts, proprio=prop, context_actions=ctx_a, return_proprio=True)
    with fake_cuda():
        wm = wm.to("cuda")
        z = wm.encode(frames)  # CPU uint8 in
        r, p = wm.rollout(z.cpu(), acts, proprio=prop, context_actions=ctx_a, return_proprio=True)  # CPU inputs
        assert z.device.type == r.device.type == p.device.type == "cuda"
        z, r, p = z.cpu(), r.cpu(), p.cpu()
    torch.testing.assert_close(z, z_ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(r, r_ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(p, p_ref, rtol=1e-5, atol=1e-5)
