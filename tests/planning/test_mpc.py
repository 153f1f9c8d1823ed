"""The receding-horizon loop: bounds, replanning cadence, warm starts, and flat memory."""
import gc
import warnings

import numpy as np
import pytest
import torch

from ivnext_world.planning import (MPC, Bounds, CEM, GradientPlanner, LatentGoalCost, PlanResult, WorldModelDynamics,
                                   build_planner, make_cost)

from ._helpers import B


class RecordingPlanner:
    """Returns a fixed ramp and records every call's warm start."""

    horizon = 4

    def __init__(self):
        self.inits = []

    def plan(self, cost_fn, bounds, init=None, generator=None):
        self.inits.append(None if init is None else init.clone())
        plan = bounds.clamp(torch.arange(8.0).view(4, 2))  # rows beyond the box get clamped
        return PlanResult(plan, 0.0, plan.clone())


def test_mpc_replans_every_k_steps_and_warm_starts_from_the_shifted_plan():
    planner, bounds = RecordingPlanner(), Bounds.symmetric(2, 5.0)
    mpc = MPC(planner, bounds, execute=3)
    calls = []
    actions = [mpc.act(lambda: calls.append(1) or (lambda u: u.sum((1, 2)))) for _ in range(7)]
    assert mpc.num_plans == 3 and len(calls) == 3  # steps 0, 3, 6: the cost is built only to replan
    plan = bounds.clamp(torch.arange(8.0).view(4, 2))
    assert torch.equal(torch.stack(actions[:3]), plan[:3]) and torch.equal(actions[3], plan[0])
    assert planner.inits[0] is None
    assert torch.equal(planner.inits[1], torch.cat([plan[3:], plan[3:].expand(3, -1)]))  # shifted by 3, tail = last
    mpc.reset()
    mpc.act(lambda: (lambda u: u.sum((1, 2))))
    assert mpc.num_plans == 1 and planner.inits[-1] is None
    with pytest.raises(ValueError, match="execute"):
        MPC(planner, bounds, execute=5)


@pytest.mark.parametrize("name", ["cem", "mppi", "gradient"])
def test_mpc_drives_a_linear_system_to_its_goal_inside_the_bounds(name):
    goal, bounds = torch.tensor([1.5, -1.0]), Bounds(torch.tensor([-0.4, -0.3]), torch.tensor([0.4, 0.3]))
    overrides = {"iterations": 60, "lr": 0.05} if name == "gradient" else {"samples": 64, "topk": 8} if name == "cem" else {"samples": 64, "elites": 8}
    mpc = MPC(build_planner(name, horizon=4, **overrides), bounds, execute=2, seed=0)
    x = torch.zeros(2)
    for _ in range(24):
        def cost_now(x0=x.clone()):
            # Every step's distance (not only the last one's), so the executed prefix goes straight there.
            return make_cost(lambda u: x0 + torch.cumsum(u @ B.T, dim=1), lambda s, a: (s - goal).pow(2).sum((1, 2)))
        a = mpc.act(cost_now)
        assert (a >= bounds.low - 1e-6).all() and (a <= bounds.high + 1e-6).all()
        x = x + B @ a
    assert mpc.num_plans == 12
    assert torch.linalg.norm(x - goal) < 0.1, x


def _live_tensors() -> tuple[int, int]:
    gc.collect()
    with warnings.catch_warnings():  # isinstance() on some deprecated torch objects warns
        warnings.simplefilter("ignore")
        ts = [o for o in gc.get_objects() if isinstance(o, torch.Tensor)]
    return len(ts), sum(t.numel() * t.element_size() for t in ts)


@pytest.mark.parametrize("planner", [CEM(samples=16, topk=4, iterations=2, horizon=3),
                                     GradientPlanner(iterations=2, restarts=2, horizon=3)], ids=["cem", "gradient"])
def test_memory_is_flat_over_many_mpc_iterations(tiny_wm_run, planner):
    from ivnext_world.world_model import WorldModel

    wm = WorldModel.load(tiny_wm_run)
    rng = np.random.default_rng(0)
    goal = wm.encode(torch.randint(0, 256, (1, 1, 3, 56, 56), dtype=torch.uint8))[0, 0]
    objective = LatentGoalCost(goal)
    mpc = MPC(planner, Bounds.symmetric(2, 2.0), execute=1)

    def step():
        obs = torch.from_numpy(rng.integers(0, 256, (1, 1, 3, 56, 56), dtype=np.uint8))
        dyn = WorldModelDynamics(wm, wm.encode(obs), proprio=torch.zeros(1, 1, 4))
        mpc.act(lambda: make_cost(dyn, objective, dyn.to_raw))

    for _ in range(5):
        step()
    n0, bytes0 = _live_tensors()
    for _ in range(25):
        step()
    n1, bytes1 = _live_tensors()
    assert mpc.num_plans == 30
    assert n1 <= n0 and bytes1 <= bytes0, (n0, n1, bytes0, bytes1)


def test_agent_with_proprio_term_plans_on_the_world_models_imagined_proprio(tiny_wm_run):
    from gymnasium import spaces

    from ivnext_world.planning import Imagined
    from ivnext_world.planning.agent import ObjectiveConfig, PlanningAgent
    from ivnext_world.world_model import WorldModel

    wm = WorldModel.load(tiny_wm_run)
    box = spaces.Box(-1.0, 1.0, (2,), np.float32)
    rng = np.random.default_rng(0)
    img = lambda: rng.integers(0, 256, (56, 56, 3), dtype=np.uint8)  # noqa: E731
    obs = {"rgb": img(), "proprio": np.zeros(4, np.float32)}
    dyn = WorldModelDynamics(wm, wm.encode(torch.from_numpy(obs["rgb"]).permute(2, 0, 1)[None, None]),
                             proprio=torch.zeros(1, 1, 4), with_proprio=True)
    u = torch.randn(3, 4, 2)
    out = dyn(u)
    assert isinstance(out, Imagined) and out.latents.shape[:2] == (3, 4) and out.proprio.shape == (3, 4, 4)
    ref = wm.rollout(dyn.context, dyn.to_raw(u), proprio=torch.zeros(1, 1, 4), return_proprio=True)
    assert torch.equal(out.proprio, ref[1]) and torch.equal(out.latents, ref[0])

    cfg = ObjectiveConfig(proprio_weight=1.0, proprio_dims=[0, 1])
    agent = PlanningAgent(wm, CEM(samples=16, topk=4, iterations=2, horizon=3), box, cfg)
    with pytest.raises(ValueError, match="goal state's proprio"):
        agent.reset(img())
    agent.reset(img(), np.array([0.1, -0.1, 0.0, 0.0], np.float32))
    a = agent(obs)
    assert a.shape == (2,) and np.all(np.abs(a) <= 1.0) and agent.imagined.shape[0] == 3


def test_agent_executes_a_frame_skip_world_models_chunks_one_env_action_at_a_time(tmp_path):
    """A frame_skip=3 world model plans (H, 3 * A) chunks: the agent hands them to the env one action per
    call, encodes frames only at chunk boundaries, and replans after ``execute`` chunks."""
    from gymnasium import spaces

    from ivnext_world.planning.agent import PlanningAgent
    from ivnext_world.world_model import WorldModel

    from ._helpers import save_tiny_world_model

    wm = WorldModel.load(save_tiny_world_model(tmp_path, frame_skip=3))
    assert wm.frame_skip == 3 and wm.stats.action_dim == 6
    box = spaces.Box(np.array([-1.0, -0.2], np.float32), np.array([1.0, 0.2], np.float32))
    agent = PlanningAgent(wm, CEM(samples=16, topk=4, iterations=2, horizon=3), box, execute=2)
    assert torch.allclose(wm.stats.denormalize_actions(agent.bounds.high), torch.tensor([1.0, 0.2] * 3))
    encoded = []
    encode = wm.encode
    wm.encode = lambda frames: encoded.append(1) or encode(frames)
    rng = np.random.default_rng(0)
    obs = lambda: {"rgb": rng.integers(0, 256, (56, 56, 3), dtype=np.uint8), "proprio": np.zeros(4, np.float32)}  # noqa: E731
    agent.reset(obs()["rgb"])
    acts = [agent(obs()) for _ in range(13)]
    # Plans at env steps 0 and 6 and 12 (2 chunks of 3 per plan); goal + one frame per plan encoded.
    assert agent.num_plans == 3 and len(encoded) == 1 + 3
    assert all(a.shape == (2,) and box.contains(a) for a in acts)
    chunk = np.clip(wm.stats.denormalize_actions(agent.mpc.last.actions[0]).numpy(), -1, 1)
    np.testing.assert_allclose(acts[12], np.clip(chunk[:2], box.low, box.high), atol=1e-6)
    with pytest.raises(ValueError, match="chunks of 6"):
        PlanningAgent(wm, CEM(samples=4, topk=2, iterations=1, horizon=2), spaces.Box(-1, 1, (3,), np.float32))
