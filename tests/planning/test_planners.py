"""CEM, MPPI and the gradient planner find the known optimum of an analytic problem, inside the box."""
import pytest
import torch

from ivnext_world.planning import (PLANNERS, Bounds, CEMConfig, GradientConfig, MPPIConfig, build_planner,
                                   make_cost)

from ._helpers import linear_rollout, optimal_cost, quadratic_goal

FAST = {"cem": {}, "mppi": {}, "gradient": {"iterations": 150, "lr": 0.05}}


@pytest.mark.parametrize("name", sorted(PLANNERS))
def test_planner_finds_the_analytic_optimum(name):
    goal, reg, horizon = torch.tensor([1.0, -0.5]), 0.05, 5
    u_star, c_star = optimal_cost(goal, horizon, reg)
    assert u_star.abs().max() < 0.5  # the optimum is well inside the box: an unconstrained check
    planner = build_planner(name, horizon=horizon, **FAST[name])
    res = planner.plan(make_cost(linear_rollout, quadratic_goal(goal, reg)), Bounds.symmetric(2, 1.0),
                       generator=torch.Generator().manual_seed(0))
    assert res.actions.shape == (horizon, 2)
    assert res.cost == pytest.approx(float(quadratic_goal(goal, reg)(linear_rollout(res.actions[None]), res.actions[None])), rel=1e-4)
    assert res.cost - c_star < 0.01 * (1 + c_star), (res.cost, c_star)
    # The final state reaches the goal up to what the regulariser trades off.
    x_star = linear_rollout(u_star[None])[0, -1]
    assert torch.allclose(linear_rollout(res.actions[None])[0, -1], x_star, atol=0.05)
    assert all(b <= a + 1e-9 for a, b in zip(res.history, res.history[1:]))  # best cost never worsens


@pytest.mark.parametrize("name", sorted(PLANNERS))
def test_planner_respects_bounds_and_finds_the_constrained_optimum(name):
    # The goal needs a total displacement of 6 in x over 3 steps with |a| <= 1: unreachable, so the
    # optimum pushes every action to the box's corner in the goal's direction.
    goal, bounds = torch.tensor([6.0, 6.0]), Bounds(torch.tensor([-1.0, -0.5]), torch.tensor([1.0, 0.5]))
    planner = build_planner(name, horizon=3, **FAST[name])
    res = planner.plan(make_cost(linear_rollout, quadratic_goal(goal)), bounds,
                       generator=torch.Generator().manual_seed(1))
    assert (res.actions >= bounds.low - 1e-6).all() and (res.actions <= bounds.high + 1e-6).all()
    assert torch.allclose(res.actions, torch.tensor([[1.0, 0.5]]).expand(3, -1), atol=0.05)


def test_warm_start_from_the_optimum_is_kept():
    goal, reg = torch.tensor([1.0, -0.5]), 0.05
    u_star, c_star = optimal_cost(goal, 5, reg)
    cost = make_cost(linear_rollout, quadratic_goal(goal, reg))
    for name in PLANNERS:
        res = build_planner(name, horizon=5, iterations=1).plan(cost, Bounds.symmetric(2), init=u_star)
        assert res.cost <= c_star + 1e-5  # the warm start is always a candidate


def test_nan_candidates_never_win():
    def cost(u):
        c = u.pow(2).sum((1, 2))
        return torch.where(u[:, 0, 0] > 0, torch.full_like(c, float("nan")), c)

    res = build_planner("cem", horizon=2, iterations=3).plan(cost, Bounds.symmetric(1), generator=torch.Generator().manual_seed(0))
    assert res.actions[0, 0] <= 0 and res.cost == res.cost  # finite


def test_configs_and_bounds_validate():
    with pytest.raises(ValueError, match="topk"):
        CEMConfig(samples=10, topk=20)
    with pytest.raises(ValueError, match="elites"):
        MPPIConfig(samples=10, elites=0)
    with pytest.raises(ValueError, match="restarts"):
        GradientConfig(restarts=0)
    with pytest.raises(ValueError, match="low must be < high"):
        Bounds(torch.tensor([1.0]), torch.tensor([0.0]))
    with pytest.raises(ValueError, match="unknown planner"):
        build_planner("ilqr")
    with pytest.raises(ValueError, match=r"one cost per candidate"):
        build_planner("cem", samples=4, topk=2, iterations=1).plan(lambda u: u.sum(), Bounds.symmetric(2))
