"""GymAdapter on ids it has no preset for (gymnasium's InvertedPendulum) and on gym-pusht's PushT."""

import warnings

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from _env_helpers import SIZE
from envs.adapter_spec import AdapterSpec
from envs.gym_adapters import Source, _crop_resize, _fit_intrinsics, make_gym_env

CHECK_ENV_NOISE = ".*(infinity|different from the unwrapped|symmetric|Box observation|precision).*"


def checked(env):
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=CHECK_ENV_NOISE)
        check_env(env)


@pytest.fixture
def closing():
    made = []
    yield lambda env: made.append(env) or env
    for env in made:
        env.close()


def test_a_gymnasium_mujoco_env_without_preset_renders_its_rgb(closing):
    checked(closing(make_gym_env("InvertedPendulum-v5", image_size=SIZE, max_episode_steps=5, render_mode="rgb_array")))
    # A fresh env: check_env makes and closes other copies (their GL contexts) behind the checked one.
    env = closing(make_gym_env("InvertedPendulum-v5", image_size=SIZE, max_episode_steps=5))
    obs, info = env.reset(seed=0)
    assert set(obs) == {"rgb", "proprio"}  # no depth / camera parameters without a source for them
    assert obs["rgb"].shape == (SIZE, SIZE, 3) and obs["rgb"].dtype == np.uint8 and obs["rgb"].std() > 0
    raw = env.unwrapped
    np.testing.assert_allclose(obs["proprio"], np.r_[raw.data.qpos, raw.data.qvel], rtol=1e-6)  # the flat obs
    assert "is_success" not in info and not env.get_wrapper_attr("has_success")  # no criterion: none invented
    again, _ = env.reset(seed=0)
    np.testing.assert_array_equal(obs["rgb"], again["rgb"])


def test_adapter_settings_pick_sources_and_slices(closing):
    spec = AdapterSpec(proprio=["obs[1:2]", "sim.data.qvel"], success="info.upright", info="_env_helpers:upright_info",
                       distance="_env_helpers:tip_height", ground_truth={"qpos": "sim.data.qpos"})
    env = closing(make_gym_env("InvertedPendulum-v5", adapter=spec, image_size=SIZE, max_episode_steps=5))
    obs, info = env.reset(seed=3)
    data = env.unwrapped.data
    np.testing.assert_allclose(obs["proprio"], np.r_[data.qpos[1], data.qvel], rtol=1e-6)
    assert env.observation_space["proprio"].shape == (3,)
    assert info["is_success"] is True and info["distance"] == pytest.approx(np.cos(data.qpos[1]) * 0.6)
    np.testing.assert_allclose(env.get_wrapper_attr("ground_truth")(info)["qpos"], data.qpos, rtol=1e-6)


@pytest.mark.parametrize("env_id, kwargs, adapter, error, match", [
    ("NoSuchEnv-v0", {}, {}, ValueError, "NoSuchEnv"),
    ("gym_not_installed/Thing-v0", {}, {}, ValueError, "gym_not_installed"),
    ("CartPole-v1", {}, {}, TypeError, "Box action"),
    ("Pendulum-v1", {"render_mode": None}, {}, ValueError, "no RGB source"),
    ("InvertedPendulum-v5", {}, {"rgb": "obs.pixels"}, ValueError, "obs has no key 'pixels'"),
    ("InvertedPendulum-v5", {}, {"proprio": ["qpos"]}, ValueError, "unknown source 'qpos'"),
    ("InvertedPendulum-v5", {}, {"goal": "nowhere_module:fn"}, ValueError, "cannot import 'nowhere_module'"),
    ("InvertedPendulum-v5", {}, {"depth": "render"}, ValueError, "depth cannot come from render"),
])
def test_refused_envs_say_why(env_id, kwargs, adapter, error, match):
    with pytest.raises(error, match=match):
        make_gym_env(env_id, kwargs, adapter, image_size=SIZE).close()


def test_source_syntax():
    assert Source.parse("obs.agent_pos[0:2]", "x") == Source("obs.agent_pos[0:2]", "obs", ("agent_pos",), slice(0, 2))
    assert Source.parse("sim.data.qpos[3]", "x").index == 3 and Source.parse("sim.data.qpos", "x").path == ("data", "qpos")
    assert Source.parse("envs.pusht:task_info", "x").kind == "call"
    for bad in ("obs[1:2:3:4]", "info", "pixels", "obs.[0]"):
        with pytest.raises(ValueError):
            Source.parse(bad, "x")


def test_cropped_and_resized_images_keep_their_intrinsics_consistent():
    # A 40 x 60 image of a point at pixel (u, v) = (37.0, 12.0) under K; centre-cropped to 40 x 40
    # and resized to 20 x 20, the point must project through the new K onto the same scene pixel.
    k = np.array([[50.0, 0, 29.5], [0, 50.0, 19.5], [0, 0, 1]])
    img = np.zeros((40, 60), np.float32)
    _, geom = _crop_resize(img, 20, 20, resample="nearest")
    k2 = _fit_intrinsics(k, geom)
    ray = np.linalg.inv(k) @ [37.0, 12.0, 1.0]
    u2, v2, w2 = k2 @ ray
    # crop removes 10 columns, then every pixel becomes half as large (centres at (x + 0.5) / 2 - 0.5)
    np.testing.assert_allclose([u2 / w2, v2 / w2], [(37.0 - 10 + 0.5) / 2 - 0.5, (12.0 + 0.5) / 2 - 0.5], atol=1e-5)


# ------------------------------------------------------------------------------ PushT (gym-pusht)


@pytest.fixture
def pusht(closing):
    pytest.importorskip("gym_pusht", reason="optional extra: pip install 'ivnext_world[pusht]' (scripts/setup.sh does)")

    def make(**kw):
        kw.setdefault("image_size", SIZE)
        return closing(make_gym_env("gym_pusht/PushT-v0", **kw))

    return make


def test_pusht_passes_gymnasiums_checker_and_is_seeded(pusht):
    env = pusht(max_episode_steps=6, render_mode="rgb_array")
    checked(env)
    assert env.action_space == gymnasium.spaces.Box(0, 512, (2,), np.float32)  # absolute target, pixels
    assert env.observation_space["proprio"].shape == (4,) and set(env.observation_space) == {"rgb", "proprio"}
    actions = np.random.default_rng(0).uniform(100, 400, size=(5, 2)).astype(np.float32)

    def run(seed):
        obs, _ = env.reset(seed=seed)
        frames, props = [obs["rgb"]], [obs["proprio"]]
        for a in actions:
            obs, *_ = env.step(a)
            frames.append(obs["rgb"])
            props.append(obs["proprio"])
        return np.stack(frames), np.stack(props)

    a, b, c = run(4), run(4), run(5)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[1][0], c[1][0])  # another seed, another start
    assert np.abs(np.diff(a[1][:, :2], axis=0)).sum() > 10  # the agent follows the targets


def test_pusht_success_is_coverage_of_the_goal_read_from_info(pusht):
    env = pusht(max_episode_steps=5)
    obs, info = env.reset(seed=0)
    assert info["is_success"] is False and 0 <= info["coverage"] < 0.95
    raw = env.unwrapped
    # Put the block on the goal (angle first: it rotates about its centre of gravity), the agent far away.
    raw.block.angle = raw.goal_pose[2]
    raw.block.position = tuple(raw.goal_pose[:2])
    raw.agent.position = (60.0, 60.0)
    obs, reward, terminated, _, info = env.step(np.array([60.0, 60.0], np.float32))
    assert info["coverage"] > 0.95 and info["is_success"] is True and terminated and reward == 1.0
    assert info["distance"] < 1.0 and info["distance"] == info["pos_error"]
    truth = env.get_wrapper_attr("ground_truth")(info)
    assert truth["block_pose"].shape == (3,) and truth["agent_pos"].shape == (2,)


def test_pusht_goal_image_shows_the_block_on_the_goal_without_touching_the_episode(pusht):
    a, b = pusht(max_episode_steps=8), pusht(max_episode_steps=8)
    obs, info = a.reset(seed=2)
    b.reset(seed=2)
    goal = a.get_wrapper_attr("render_goal")()
    assert goal["rgb"].shape == obs["rgb"].shape and goal["proprio"].shape == (4,)
    np.testing.assert_array_equal(goal["proprio"][:2], obs["proprio"][:2])  # the agent stays where it is
    # The goal T is drawn in light green; with the block on it, hardly any green is left.
    def green(img):
        return int(((img[..., 1] > 200) & (img[..., 0] < 190) & (img[..., 2] < 190)).sum())
    assert green(goal["rgb"]) < 0.2 * green(obs["rgb"])
    for t in range(6):
        act = np.array([100.0 + 40 * t, 300.0], np.float32)
        oa, ra, *_ = a.step(act)
        ob, rb, *_ = b.step(act)
        np.testing.assert_array_equal(oa["rgb"], ob["rgb"])
        assert ra == rb


def test_pusht_rollout_goal_dino_wm_protocol(pusht):
    spec = AdapterSpec(goal="envs.pusht:rollout_goal", goal_kwargs={"steps": 10, "step_std": 0.08},
                       success="envs.pusht:goal_state_reached", distance="envs.pusht:goal_state_distance")
    env = pusht(adapter=spec, max_episode_steps=30)
    start, _ = env.reset(seed=11)
    goal = env.get_wrapper_attr("render_goal")()
    state = env.get_wrapper_attr("goal_state")
    assert state.shape == (5,) and np.linalg.norm(state[:2] - start["proprio"][:2]) > 5  # the agent moved there
    # The episode still starts where it did (re-reset with the same seed).
    from envs.pusht import pusht_state

    again = make_gym_env("gym_pusht/PushT-v0", image_size=SIZE, max_episode_steps=30)
    again.reset(seed=11)
    np.testing.assert_array_equal(pusht_state(env.unwrapped), pusht_state(again.unwrapped))
    again.close()
    # Driving the agent to the goal's agent position succeeds only if the block is where the goal has it:
    # here the random walk did not move the block further than the tolerance, or else it did, and then
    # the distance says by how much. Either way success == both tolerances hold.
    obs, _, _, _, info = env.step(state[:2].astype(np.float32))
    errors = np.linalg.norm(np.r_[info["pos_agent"], info["block_pose"][:2]] - state[:4])
    assert info["distance"] == pytest.approx(errors)
    angle = abs((info["block_pose"][2] - state[4] + np.pi) % (2 * np.pi) - np.pi)
    assert info["is_success"] == (errors < 20 and angle < np.pi / 9)
    assert goal["rgb"].shape == (SIZE, SIZE, 3)


def test_pusht_without_the_package_names_the_extra(monkeypatch):
    import importlib

    class NoPushT:  # importlib as seen by envs.gym_adapters, on a machine without gym-pusht
        @staticmethod
        def import_module(name):
            if name == "gym_pusht":
                raise ImportError("No module named 'gym_pusht'")
            return importlib.import_module(name)

    monkeypatch.setattr("envs.gym_adapters.importlib", NoPushT)
    if "gym_pusht/PushT-v0" in gymnasium.registry:
        monkeypatch.delitem(gymnasium.registry, "gym_pusht/PushT-v0")
    with pytest.raises(ValueError, match=r"needs the package .*gym_pusht.*ivnext_world\[pusht\]"):
        make_gym_env("gym_pusht/PushT-v0", image_size=SIZE)
