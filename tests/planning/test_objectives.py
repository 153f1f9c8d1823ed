"""Objectives: values, options, composition, shape errors."""
import pytest
import torch

from ivnext_world.planning import LatentGoalCost, ProprioGoalCost, WeightedSum


def test_latent_goal_cost_values_and_options():
    goal = torch.zeros(3, 2)  # n=3 tokens (1 cls), D=2
    states = torch.zeros(2, 4, 3, 2)  # K=2, H=4
    states[0, -1] += 1.0  # candidate 0 ends 1 away everywhere
    states[1, 0] += 2.0  # candidate 1 strays early but ends on the goal
    assert torch.allclose(LatentGoalCost(goal)(states), torch.tensor([1.0, 0.0]))
    assert torch.allclose(LatentGoalCost(goal, norm="l2", frames="all")(states), torch.tensor([0.25, 1.0]))
    states[0, -1, 0] = 0.0  # fix candidate 0's cls token only
    assert torch.allclose(LatentGoalCost(goal, tokens="cls", num_prefix=1)(states), torch.tensor([0.0, 0.0]))
    assert torch.allclose(LatentGoalCost(goal, tokens="patch", num_prefix=1)(states), torch.tensor([1.0, 0.0]))
    assert LatentGoalCost(goal[None, None])(states).shape == (2,)
    with pytest.raises(ValueError, match="states must be"):
        LatentGoalCost(goal)(torch.zeros(2, 4, 5, 2))
    with pytest.raises(ValueError, match="num_prefix"):
        LatentGoalCost(goal, tokens="cls")


def test_proprio_term_and_weighted_sum():
    kin = lambda a: torch.cumsum(a, dim=1)  # noqa: E731  known kinematics: position = sum of actions
    prop = ProprioGoalCost(torch.tensor([1.0, 0.0]), kin)
    a = torch.tensor([[[0.5, 0.0], [0.5, 0.0]], [[0.0, 0.0], [0.0, 0.0]]])  # (K=2, H=2, A=2)
    assert torch.allclose(prop(None, a), torch.tensor([0.0, 1.0]))
    total = WeightedSum([(1.0, lambda s, a: torch.ones(2)), (2.0, prop)])
    assert torch.allclose(total(None, a), torch.tensor([1.0, 3.0]))
    with pytest.raises(ValueError):
        WeightedSum([])


def test_proprio_term_reads_the_world_models_imagined_proprio():
    from ivnext_world.planning import Imagined

    lat = torch.zeros(2, 3, 4, 2)
    prop = torch.zeros(2, 3, 4)  # K=2, H=3, S=4: [x, y, vx, vy]
    prop[0, -1, :2] = torch.tensor([0.3, 0.4])  # candidate 0 ends 0.5 from the goal
    prop[1, 0, :2] = 9.0  # candidate 1 strays early only
    prop[1, -1, 2:] = 2.0  # and ends moving
    states = Imagined(lat, prop)
    cost = ProprioGoalCost(torch.zeros(4), dims=[0, 1])
    assert torch.allclose(cost(states, None), torch.tensor([0.5, 0.0]))
    scaled = ProprioGoalCost(torch.zeros(4), scale=[0.1, 0.1, 1.0, 1.0])  # features / std: all dims
    assert torch.allclose(scaled(states, None), torch.tensor([5.0, 8.0 ** 0.5]))
    # The latent term accepts the same states: both terms of a DINO-WM-style objective in one sum.
    total = WeightedSum([(1.0, LatentGoalCost(torch.zeros(4, 2))), (0.5, cost)])
    assert torch.allclose(total(states, None), torch.tensor([0.25, 0.0]))
    with pytest.raises(ValueError, match="imagined proprio"):
        cost(lat, None)
    with pytest.raises(ValueError, match="out of range"):
        ProprioGoalCost(torch.zeros(4), dims=[5])
    with pytest.raises(ValueError, match="scale"):
        ProprioGoalCost(torch.zeros(4), scale=[1.0])
