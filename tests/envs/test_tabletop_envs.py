"""ReachEnv / PushEnv: gymnasium API, seeding, actions, and camera geometry on the real scene."""

import warnings

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from _env_helpers import backproject, project
from envs.spaces import OBS_KEYS

TASKS = ["reach", "push"]


def rollout(env, seed, actions):
    obs, info = env.reset(seed=seed)
    out = [(obs, info)]
    for a in actions:
        obs, _, _, _, info = env.step(a)
        out.append((obs, info))
    return out


@pytest.mark.parametrize("task", TASKS)
def test_check_env(make_env, task):
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*infinity.*")  # unbounded K/T/proprio boxes
        check_env(make_env(task, render_mode="rgb_array").unwrapped)


@pytest.mark.parametrize("task", TASKS)
def test_observation_and_info(make_env, task):
    env = make_env(task, render_mode="rgb_array")
    obs, info = env.reset(seed=1)
    assert tuple(obs) == OBS_KEYS and env.observation_space.contains(obs)
    assert obs["proprio"].shape == (4,)
    np.testing.assert_allclose(obs["proprio"][:2], info["ee_pos"][:2], atol=1e-6)
    expected = {"is_success", "distance", "ee_pos", "goal_pos"} | ({"object_pos"} if task == "push" else set())
    assert set(info) == expected
    assert not info["is_success"]  # never solved at reset
    obs, reward, terminated, truncated, info = env.step(np.zeros(2, np.float32))
    assert reward == pytest.approx(-info["distance"]) and not terminated and not truncated
    np.testing.assert_array_equal(env.render(), obs["rgb"])


@pytest.mark.parametrize("task", TASKS)
def test_same_seed_same_observations(make_env, task):
    actions = np.random.default_rng(0).uniform(-1, 1, size=(6, 2)).astype(np.float32)
    a, b = make_env(task), make_env(task)
    for (obs_a, info_a), (obs_b, info_b) in zip(rollout(a, 7, actions), rollout(b, 7, actions)):
        for key in OBS_KEYS:
            np.testing.assert_array_equal(obs_a[key], obs_b[key])
        np.testing.assert_array_equal(info_a["ee_pos"], info_b["ee_pos"])
    other, _ = a.reset(seed=8)
    first, _ = a.reset(seed=7)
    assert not np.array_equal(other["rgb"], first["rgb"])
    assert not np.array_equal(other["proprio"], first["proprio"])


def test_action_units_and_clipping(make_env):
    env = make_env("reach")
    env.reset(seed=0)
    sim = env.unwrapped
    sim.data.qpos[sim._ee_qpos] = 0.0  # start in the middle so no step meets the border
    env.step(np.array([1.0, 0.0], np.float32))  # from rest: the servo lag shortens the first step
    x0 = sim.ee_xy[0]
    env.step(np.array([1.0, -0.5], np.float32))
    moved = sim.ee_xy[0] - x0
    assert moved == pytest.approx(sim.MAX_STEP, rel=0.01)  # one unit = 0.02 m per step
    x0 = sim.ee_xy[0]
    env.step(np.array([50.0, -0.5], np.float32))  # clipped to 1
    assert sim.ee_xy[0] - x0 == pytest.approx(moved, rel=1e-3)
    for _ in range(30):  # the workspace border holds
        env.step(np.array([1.0, 1.0], np.float32))
    assert np.all(np.abs(sim.ee_xy) <= sim.WORKSPACE + 1e-3)


@pytest.mark.parametrize("bad", [np.zeros(3), np.zeros((1, 2)), 0.5])
def test_wrong_action_shape_raises(make_env, bad):
    env = make_env("push")
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"shape \(2,\)"):
        env.step(bad)
    with pytest.raises(ValueError, match="finite"):
        env.step(np.array([np.nan, 0.0]))


def test_depth_backprojects_onto_the_table(make_env):
    """The lower-middle of the image sees the table top (z = 0) except where a small object is."""
    obs, _ = make_env("push").reset(seed=3)
    points = backproject(obs["depth"], obs["intrinsics"], obs["extrinsics"])
    h, w = obs["depth"].shape
    lower = points[h // 2:, w // 4: 3 * w // 4]
    on_table = np.abs(lower[..., 2]) < 3e-3  # metres
    assert on_table.mean() > 0.95
    assert np.median(np.abs(lower[..., 2])) < 1e-3
    # and the depth is oblique: it grows from the bottom row to the middle row
    assert obs["depth"][-1].mean() < obs["depth"][obs["depth"].shape[0] // 2].mean() - 0.1


def test_goal_marker_projects_onto_its_pixels(make_env):
    env = make_env("reach", width=128, height=128)
    for seed in range(20):  # a start where the arm's boom cannot hide the marker
        obs, info = env.reset(seed=seed)
        if abs(info["ee_pos"][0] - info["goal_pos"][0]) > 0.06:
            break
    uv = project(info["goal_pos"][None], obs["intrinsics"], obs["extrinsics"])[0]
    rgb = obs["rgb"].astype(int)
    # the solid green sphere; the translucent disc under it is blended with the table and fails
    rows, cols = np.nonzero((rgb[..., 1] > 150) & (rgb[..., 0] < 90) & (rgb[..., 2] < 120))
    assert len(rows) > 10
    np.testing.assert_allclose([cols.mean(), rows.mean()], uv, atol=1.5)
    u, v = np.round(uv).astype(int)
    assert rgb[v, u, 1] > 150 > rgb[v, u, 0]
