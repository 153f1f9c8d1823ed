"""Collection: parallel workers, LeRobot output readable by the loaders, resume after a kill."""
import json

import numpy as np
import pytest

from ivnext_world.config import load_config
from ivnext_world.data import LeRobotDataset, TrajectoryDataset
from ivnext_world.sim import collect, make_env, make_policy, record_episode
from ivnext_world.sim import collection as collect_mod


def cfg(tmp_path, *overrides):
    c = load_config("collect", [f"out={tmp_path / 'data'}", "env.image_size=64", "env.max_episode_steps=12", *overrides])
    from omegaconf import OmegaConf

    return OmegaConf.to_object(c)


def test_parallel_collection_writes_a_readable_dataset(tmp_path):
    summary = collect(cfg(tmp_path, "episodes=3", "workers=2", "policy.noise_std=0.1"))
    assert (summary.written, summary.skipped, summary.frames) == (3, 0, 36)
    ds = LeRobotDataset(summary.out)
    assert ds.version == "v2.1" and ds.num_episodes == 3 and ds.num_frames == 36
    info = json.loads((tmp_path / "data" / "meta" / "info.json").read_text())
    assert info["fps"] == 25 and "depth_path" in info
    table = ds.episode_table(1)
    assert np.array_equal(table["index"], np.arange(12, 24))  # global index across episodes
    assert table["ground_truth.ee_pos"].shape == (12, 3)

    # The stored episode is exactly what a fresh rollout with the same seed produces.
    env = make_env("push", 64, 12)
    ep = record_episode(env, make_policy(env, summary_policy(), seed=1), seed=1)
    assert np.array_equal(ep.actions, table["action"]) and np.array_equal(ep.proprio, table["observation.state"])
    assert np.array_equal(ep.depth, ds.depth(1, "observation.images.scene"))
    window = TrajectoryDataset(summary.out, window=4, episodes=[1])[0]
    frames = (window["frames"].permute(0, 2, 3, 1).numpy() * 255)
    assert np.abs(frames - ep.rgb[:4]).mean() < 4  # H.264 at CRF 18


def summary_policy():
    from ivnext_world.config import PolicyConfig, PolicyKind

    return PolicyConfig(kind=PolicyKind.expert, noise_std=0.1)


def test_rerun_skips_complete_episodes_and_finishes_a_killed_run(tmp_path, monkeypatch):
    real = collect_mod._run_one
    calls = []

    def dies_on_second(index):
        calls.append(index)
        if len(calls) == 2:
            raise KeyboardInterrupt("killed")
        return real(index)

    monkeypatch.setattr(collect_mod, "_run_one", dies_on_second)
    with pytest.raises(KeyboardInterrupt):
        collect(cfg(tmp_path, "episodes=3", "workers=0"))
    monkeypatch.setattr(collect_mod, "_run_one", real)
    summary = collect(cfg(tmp_path, "episodes=3", "workers=0"))
    assert (summary.written, summary.skipped) == (2, 1)
    assert LeRobotDataset(summary.out).num_episodes == 3
    again = collect(cfg(tmp_path, "episodes=3", "workers=0"))
    assert (again.written, again.skipped) == (0, 3) and again.success_rate == summary.success_rate


def test_random_policy_and_gymnasium_task(tmp_path):
    summary = collect(cfg(tmp_path, "episodes=2", "workers=0", "env.task=reacher", "policy.kind=random"))
    ds = LeRobotDataset(summary.out)
    assert ds.episode_table(0)["observation.state"].shape == (12, 4)  # Reacher: 2 joints, qpos + qvel
    assert ds.depth(0, "observation.images.scene").shape == (12, 64, 64)
