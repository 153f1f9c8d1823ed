"""ivnext/Reacher-v5 and ivnext/Pusher-v5: gymnasium's arms with the shared observation dict."""

import warnings

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from _env_helpers import SIZE, backproject
from envs.gym_adapters import make_adapter
from envs.spaces import OBS_KEYS

ADAPTED = {"reacher": ("Reacher-v5", 4), "pusher": ("Pusher-v5", 14)}  # gym id, proprio size


@pytest.mark.parametrize("task", ADAPTED)
def test_check_env(task):
    # env.unwrapped is gymnasium's own env (flat observations), so the adapter itself is checked.
    env = make_adapter(task, width=SIZE, height=SIZE, render_mode="rgb_array")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*(infinity|different from the unwrapped|symmetric).*")
        check_env(env)
    env.close()


@pytest.mark.parametrize("task", ADAPTED)
def test_same_observation_dict_as_our_tasks(make_env, task):
    ours, _ = make_env("reach").reset(seed=0)
    env = make_env(task, render_mode="rgb_array")
    obs, info = env.reset(seed=0)
    assert tuple(obs) == OBS_KEYS
    for key in OBS_KEYS:
        assert obs[key].dtype == ours[key].dtype, key
        if key != "proprio":
            assert obs[key].shape == ours[key].shape, key
    assert obs["proprio"].shape == (ADAPTED[task][1],)
    assert {"is_success", "distance", "ee_pos", "goal_pos"} <= set(info)
    assert ("object_pos" in info) == (task == "pusher")
    obs, reward, _, _, info = env.step(env.action_space.sample())
    assert "reward_dist" in info  # gymnasium's own info survives
    np.testing.assert_array_equal(env.render(), obs["rgb"])


@pytest.mark.parametrize("task", ADAPTED)
def test_same_actions_and_limits_as_gymnasium(make_env, task):
    gym_id, _ = ADAPTED[task]
    env, original = make_env(task), gymnasium.make(gym_id)
    assert env.action_space == original.action_space
    assert env.spec.max_episode_steps == original.spec.max_episode_steps
    original.close()
    env.reset(seed=0)
    with pytest.raises(ValueError, match=rf"shape \({env.action_space.shape[0]},\)"):
        env.step(np.zeros(env.action_space.shape[0] + 1))


def test_reacher_seeded_and_depth_sees_the_floor(make_env):
    env = make_env("reacher")
    a, _ = env.reset(seed=5)
    b, _ = env.reset(seed=5)
    for key in OBS_KEYS:
        np.testing.assert_array_equal(a[key], b[key])
    # Reacher's arena floor is the plane z = 0: the image centre back-projects onto it.
    points = backproject(a["depth"], a["intrinsics"], a["extrinsics"])
    centre = points[SIZE // 2 - 4: SIZE // 2 + 4, SIZE // 2 - 4: SIZE // 2 + 4, 2]
    assert np.median(np.abs(centre)) < 2e-3


def test_pusher_success_is_object_near_goal(make_env):
    env = make_env("pusher")
    env.reset(seed=0)
    sim = env.unwrapped
    sim.data.qpos[-4:-2] = sim.data.qpos[-2:]  # put the object on the goal (slide joints)
    obs, _, _, _, info = env.step(np.zeros(7, np.float32))
    assert info["is_success"] and info["distance"] < 0.05


def test_adapter_leaves_the_dynamics_alone(make_env):
    env, original = make_env("pusher", width=16, height=16), gymnasium.make("Pusher-v5")
    env.reset(seed=3)
    original.reset(seed=3)
    for action in np.random.default_rng(0).uniform(-2, 2, size=(20, 7)).astype(np.float32):
        _, reward, _, _, _ = env.step(action)
        _, expected, _, _, _ = original.step(action)
        assert reward == expected
    np.testing.assert_array_equal(env.unwrapped.data.qpos, original.unwrapped.data.qpos)
    original.close()
