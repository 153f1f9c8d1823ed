"""Goal images: rendered from the solved configuration, without disturbing the episode."""
import gymnasium as gym
import numpy as np
import pytest

import envs
from envs.goals import two_link_ik


@pytest.mark.parametrize("task", ["reach", "push", "reacher"])
def test_render_goal_leaves_the_episode_untouched(task):
    a, b = (gym.make(envs.TASKS[task], width=32, height=32) for _ in range(2))
    obs_a, _ = a.reset(seed=7)
    b.reset(seed=7)
    goal = a.get_wrapper_attr("render_goal")()
    assert goal["rgb"].shape == (32, 32, 3) and not np.array_equal(goal["rgb"], obs_a["rgb"])
    rng = np.random.default_rng(0)
    for _ in range(5):
        act = rng.uniform(-1, 1, size=a.action_space.shape).astype(np.float32)
        oa, ra, *_ = a.step(act)
        ob, rb, *_ = b.step(act)
        assert np.array_equal(oa["rgb"], ob["rgb"]) and np.array_equal(oa["proprio"], ob["proprio"]) and ra == rb


def test_reach_goal_image_is_what_the_expert_ends_in():
    env = gym.make(envs.TASKS["reach"], width=48, height=48)
    obs, info = env.reset(seed=3)
    goal = env.get_wrapper_attr("render_goal")()
    np.testing.assert_allclose(goal["proprio"][:2], info["goal_pos"][:2], atol=1e-9)
    expert = envs.experts.ExpertPolicy(env)
    for _ in range(40):
        obs, *_ = env.step(expert(obs))
    assert np.abs(obs["rgb"].astype(int) - goal["rgb"]).mean() < 1.0


def test_two_link_ik_reaches_and_picks_the_nearer_solution():
    l1, l2 = 0.1, 0.11
    for target in ([0.15, 0.05], [-0.02, 0.19], [0.0, -0.12]):
        sols = []
        for elbow in (1.0, -1.0):
            q = two_link_ik(np.array(target), l1, l2, near=None if elbow > 0 else -two_link_ik(np.array(target), l1, l2))
            tip = [l1 * np.cos(q[0]) + l2 * np.cos(q.sum()), l1 * np.sin(q[0]) + l2 * np.sin(q.sum())]
            np.testing.assert_allclose(tip, target, atol=1e-9)
            sols.append(q)
        assert not np.allclose(sols[0], sols[1])  # both elbow solutions are found
        for q in sols:  # and asking for one returns it
            np.testing.assert_allclose(two_link_ik(np.array(target), l1, l2, near=q + 0.01), q, atol=1e-9)
