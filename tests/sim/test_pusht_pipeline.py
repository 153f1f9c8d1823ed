"""A PushT dataset collected through env.id feeds the world model, ivnext-plan-eval, the state probe and
LatentObservation (tiny models, 64 px, a few steps each)."""
# The model stack (torch, and triton through it) is imported when pytest collects this file, before any
# test creates an EGL context: importing those C extensions after one has crashed the process.
import torch  # noqa: F401

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from ivnext_world.config import load_config
from ivnext_world.planning.evaluate import run_plan_eval
from ivnext_world.pretrain.run import load_epd
from ivnext_world.probes.state import state_probe
from ivnext_world.train import LoopConfig
from ivnext_world.world_model import LatentObservation, WorldModel, WorldModelTrainConfig, train_world_model
from ivnext_world.world_model.train import WMDataConfig, WMPredictorSize

pytest.importorskip("gym_pusht", reason="optional extra: pip install 'ivnext_world[pusht]' (scripts/setup.sh does)")

PUSHT = "env.id=gym_pusht/PushT-v0"
STEPS = 12


@pytest.fixture(autouse=True)
def _single_thread(one_torch_thread):
    """Tiny models run faster on one thread when the CPU is shared (tests/conftest.py)."""


@pytest.fixture(scope="module")
def pusht_data(tmp_path_factory):
    from ivnext_world.sim import collect

    out = tmp_path_factory.mktemp("pusht") / "data"
    cfg = load_config("collect", [f"out={out}", PUSHT, "env.image_size=64", f"env.max_episode_steps={STEPS}",
                                  "episodes=4", "workers=0", "policy.kind=random_walk", "policy.step_std=0.1"])
    return collect(OmegaConf.to_object(cfg)).out


@pytest.fixture(scope="module")
def pusht_wm(pusht_data, tmp_path_factory):
    """A tiny world model trained for a few steps on the PushT data, in 2-step action chunks."""
    from world_model._wm_helpers import save_tiny_epd


    root = tmp_path_factory.mktemp("pusht_wm")
    cfg = WorldModelTrainConfig(
        encoder=str(save_tiny_epd(root / "epd")),
        data=WMDataConfig(source=pusht_data, episodes=[0, 1, 2], window=4, frame_skip=2),
        predictor=WMPredictorSize(embed_dim=32, depth=1, num_heads=2, max_frames=16),
        loop=LoopConfig(steps=4, batch_size=2, num_workers=0, warmup_steps=1, ckpt_every=4, log_every=1),
        out=str(root / "wm"))
    return cfg, train_world_model(cfg)


def test_pusht_dataset_trains_a_world_model(pusht_wm):

    cfg, summary = pusht_wm
    rows = [json.loads(line) for line in (Path(cfg.out) / "metrics.jsonl").read_text().splitlines()]
    assert summary["steps"] == 4 and len(rows) == 4 and all(np.isfinite(r["loss"]) for r in rows)
    wm = WorldModel.load(cfg.out)
    assert wm.frame_skip == 2 and wm.stats.action_dim == 2 * 2  # PushT's (x, y) targets, 2 per chunk
    assert wm.predictor.proprio_dim == 4  # agent position and velocity
    assert 50 < np.mean(wm.stats.action_mean) < 460  # raw pixel targets on the 512 board, normalised inside


def test_plan_eval_runs_a_pusht_episode(pusht_wm, tmp_path):

    cfg, _ = pusht_wm
    out = tmp_path / "eval"
    # The same overrides as `ivnext-plan-eval world_model=... env.id=gym_pusht/PushT-v0 ...` on the command line.
    plan = load_config("plan_eval", [
        f"world_model={cfg.out}", PUSHT, "image_size=64", "episodes=1", "max_episode_steps=4", "methods=[cem,random]",
        "execute=1", "cem.samples=8", "cem.topk=2", "cem.iterations=2", "cem.horizon=2", "videos=1",
        "video_view=none", f"out={out}"])
    results = run_plan_eval(OmegaConf.to_object(plan))
    assert results["task"] == "gym_pusht/PushT-v0" and set(results["methods"]) == {"cem", "random"}
    cem = results["methods"]["cem"]["episodes_detail"][0]
    assert cem["steps"] == 4 and cem["plans"] == 2  # one 2-step chunk executed per plan
    assert np.isfinite(cem["final_distance"]) and cem["final_distance"] > 0  # the block is off its goal (px)
    assert json.loads((out / "results.json").read_text())["methods"]["random"]["episodes"] == 1
    assert (out / "video_cem_ep0.mp4").stat().st_size > 0


def test_latent_observation_wraps_the_pusht_env(pusht_wm):
    from gymnasium.utils.env_checker import check_env

    from envs.gym_adapters import make_gym_env

    cfg, _ = pusht_wm
    wm = WorldModel.load(cfg.out)
    env = LatentObservation(make_gym_env("gym_pusht/PushT-v0", image_size=64, max_episode_steps=3), wm,
                            keep_keys=("proprio",))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*(infinity|different from the unwrapped|precision).*")
        check_env(env)
    obs, _ = env.reset(seed=0)
    assert obs["latent"].shape == (wm.encoder.embed_dim,) and obs["proprio"].shape == (4,)
    env.close()


def test_state_probe_reads_pusht_ground_truth(pusht_data, pusht_wm):

    cfg, _ = pusht_wm
    epd, _ = load_epd(Path(cfg.encoder))
    res = state_probe(epd.encoder, pusht_data, [0, 1, 2], [3], targets=("ground_truth.agent_pos", "ground_truth.block_pose"))
    frames_per_episode = STEPS // epd.encoder.tubelet_size
    assert (res.train_frames, res.test_frames) == (3 * frames_per_episode, frames_per_episode)
    assert len(res.r2_per_output) == 5 and np.isfinite(res.r2)  # agent x, y and block x, y, angle
