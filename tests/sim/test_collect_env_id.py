"""ivnext-collect env.id=<any gymnasium id>: MuJoCo envs, PushT, user policies, refused envs."""
import json
import subprocess
import sys

import numpy as np
import pytest
from omegaconf import OmegaConf

from ivnext_world.config import load_config
from ivnext_world.data import LeRobotDataset
from ivnext_world.sim import collect, make_env, make_policy, record_episode

from . import _user_policies


def cfg(out, *overrides):
    return OmegaConf.to_object(load_config("collect", [f"out={out}", "env.image_size=64", "workers=0", *overrides]))


def test_a_gymnasium_mujoco_env_by_id_uses_its_preset_camera_and_expert(tmp_path):
    # Reacher-v5 by id gets the same preset (camera, depth, proprio, expert) as the built-in task.
    by_id = collect(cfg(tmp_path / "id", "env.id=Reacher-v5", "env.max_episode_steps=8", "episodes=2",
                        "policy.noise_std=0.2"))
    builtin = collect(cfg(tmp_path / "task", "env.task=reacher", "env.max_episode_steps=8", "episodes=2",
                          "policy.noise_std=0.2"))
    a, b = LeRobotDataset(by_id.out), LeRobotDataset(builtin.out)
    for ep in (0, 1):
        ta, tb = a.episode_table(ep), b.episode_table(ep)
        for col in ("action", "observation.state", "ground_truth.ee_pos", "camera.scene.intrinsics"):
            np.testing.assert_array_equal(ta[col], tb[col])
        np.testing.assert_array_equal(a.depth(ep, "observation.images.scene"), b.depth(ep, "observation.images.scene"))
    assert by_id.task == "Reacher-v5" and by_id.success_rate is not None


def test_a_mujoco_env_without_preset_renders_rgb_and_has_no_success_criterion(tmp_path):
    summary = collect(cfg(tmp_path / "d", "env.id=InvertedPendulum-v5", "env.max_episode_steps=6", "episodes=2",
                          "policy.kind=random", "env.kwargs={reset_noise_scale: 0.001}"))
    ds = LeRobotDataset(summary.out)
    info = json.loads((tmp_path / "d" / "meta" / "info.json").read_text())
    assert info["fps"] == 25 and info["depth_features"] == {} and info["robot_type"] == "InvertedPendulum-v5"
    assert "camera.scene.intrinsics" not in info["features"]  # no camera source: none stored
    assert ds.episode_table(0)["observation.state"].shape[1] == 4  # the flat observation: qpos, qvel
    assert summary.success_rate is None  # no criterion: not reported as 0%
    assert ds.task(0) == "gymnasium InvertedPendulum-v5"


@pytest.fixture
def pusht_available():
    pytest.importorskip("gym_pusht", reason="optional extra: pip install 'ivnext_world[pusht]' (scripts/setup.sh does)")


def test_pusht_collection_is_seeded_and_stores_its_ground_truth(tmp_path, pusht_available):
    c = cfg(tmp_path / "pusht", "env.id=gym_pusht/PushT-v0", "env.max_episode_steps=10", "episodes=2",
            "policy.kind=random_walk", "policy.step_std=0.1")
    summary = collect(c)
    assert (summary.written, summary.frames, summary.task) == (2, 20, "gym_pusht/PushT-v0")
    assert summary.success_rate == 0.0  # PushT has a criterion (coverage > 0.95); random walks miss it
    ds = LeRobotDataset(summary.out)
    assert ds.task(0) == "push the T-shaped block onto the green goal T"
    info = json.loads((tmp_path / "pusht" / "meta" / "info.json").read_text())
    assert info["fps"] == 10 and info["features"]["observation.images.scene"]["shape"] == [64, 64, 3]
    table = ds.episode_table(1)
    assert table["observation.state"].shape == (10, 4) and table["ground_truth.block_pose"].shape == (10, 3)
    np.testing.assert_array_equal(table["observation.state"][:, :2], table["ground_truth.agent_pos"])
    assert np.all((table["action"] >= 0) & (table["action"] <= 512))
    # Random-walk targets: consecutive actions are close (uniform ones would jump ~200 px).
    assert np.abs(np.diff(table["action"], axis=0)).mean() < 80
    # Episode 1 is exactly what a fresh rollout with its seed gives.
    env = make_env(c.env)
    ep = record_episode(env, make_policy(env, c.policy, seed=1), seed=1)
    env.close()
    np.testing.assert_array_equal(ep.actions, table["action"])
    np.testing.assert_array_equal(ep.proprio, table["observation.state"])
    assert ep.depth is None and ep.has_success


def test_user_policies_by_module_and_name(tmp_path):
    base = ["env.id=InvertedPendulum-v5", "env.max_episode_steps=4", "episodes=2", "policy.kind=callable"]
    _user_policies.CALLS.clear()
    a = collect(cfg(tmp_path / "a", *base, "policy.target=sim._user_policies:toward_centre"))
    b = collect(cfg(tmp_path / "b", *base, "policy.target=sim._user_policies:toward_centre"))
    assert _user_policies.CALLS[0] == ["proprio", "rgb"]  # the policy sees the observation dictionary
    acts = [LeRobotDataset(s.out).episode_table(e)["action"] for s in (a, b) for e in (0, 1)]
    np.testing.assert_array_equal(acts[0], acts[2])  # the factory's rng is seeded by the episode seed
    assert not np.array_equal(acts[0][0], acts[1][0])  # and differs between episodes
    c = collect(cfg(tmp_path / "c", *base, "policy.target=sim._user_policies:SeededConstant", "seed=7"))
    assert LeRobotDataset(c.out).episode_table(1)["action"][0, 0] == pytest.approx((8 % 5) / 10)
    d = collect(cfg(tmp_path / "d", *base, "policy.target=sim._user_policies:zeros"))
    assert not LeRobotDataset(d.out).episode_table(0)["action"].any()


@pytest.mark.parametrize("overrides, error, match", [
    (["env.id=NoSuchEnv-v0"], ValueError, "NoSuchEnv"),
    (["env.id=gym_not_installed/Thing-v0"], ValueError, "gym_not_installed"),
    (["env.id=CartPole-v1", "policy.kind=random"], TypeError, "Box action"),
    (["env.id=Pendulum-v1", "env.kwargs={render_mode: null}", "policy.kind=random"], ValueError, "no RGB source"),
    (["env.id=InvertedPendulum-v5"], ValueError, "no scripted expert"),
    (["env.task=pusher"], ValueError, "no scripted expert"),  # a built-in task, refused the same way
    (["env.id=InvertedPendulum-v5", "policy.kind=callable", "policy.target=sim._user_policies:wrong_shape"],
     ValueError, r"shape \(3,\)"),
    (["env.id=InvertedPendulum-v5", "policy.kind=callable", "policy.target=sim._user_policies:nope"],
     ValueError, "has no attribute 'nope'"),
    (["env.id=InvertedPendulum-v5", "env.max_episode_steps=6", "policy.kind=callable",
      "policy.target=sim._user_policies:fails_on_third_step"], RuntimeError, "crashed"),  # mid-episode
])
def test_a_refused_env_or_policy_leaves_no_folder(tmp_path, overrides, error, match):
    out = tmp_path / "new" / "data"
    with pytest.raises(error, match=match):
        collect(cfg(out, "episodes=2", *overrides))
    assert not (tmp_path / "new").exists()  # nor the parent it would have created


def test_a_refused_run_never_deletes_an_existing_folder(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    for overrides in (["env.id=NoSuchEnv-v0"], ["env.id=InvertedPendulum-v5", "policy.kind=callable",
                                                 "policy.target=sim._user_policies:fails_on_third_step"]):
        with pytest.raises((ValueError, RuntimeError)):
            collect(cfg(out, "episodes=1", *overrides))
    assert [p.name for p in out.iterdir()] == ["notes.txt"] and (out / "notes.txt").read_text() == "keep me"


def test_cli_refusal_leaves_no_folder(tmp_path):
    out = tmp_path / "cli" / "out"
    proc = subprocess.run([sys.executable, "-m", "ivnext_world.cli.collect", "env.id=NoSuchEnv-v0", f"out={out}"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and "NoSuchEnv" in proc.stderr
    assert not (tmp_path / "cli").exists()  # hydra's .hydra/ and collect.log went with it
