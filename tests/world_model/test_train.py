"""Action-conditioned fine-tuning on collected push data, and WorldModel.load of the run."""
import json
import shutil

import pytest
import torch

from ivnext_world.train import LoopConfig
from ivnext_world.world_model import WorldModel, WorldModelTrainConfig, train_world_model
from ivnext_world.world_model.train import WMDataConfig, WMPredictorSize


def config(tmp_path, push_data, epd_ckpt, out="wm", **kw):
    loop = LoopConfig(steps=20, batch_size=4, num_workers=0, base_lr=1.0, warmup_steps=3, ckpt_every=20,
                      log_every=5, clip_grad=1.0)
    return WorldModelTrainConfig(
        encoder=str(epd_ckpt), data=WMDataConfig(source=str(push_data), episodes=[0, 1, 2], window=4),
        predictor=WMPredictorSize(embed_dim=32, depth=1, num_heads=2, max_frames=16),
        loop=loop, out=str(tmp_path / out), **kw)


def test_training_reduces_the_loss_and_the_run_loads(tmp_path, push_data, epd_ckpt):
    epd_copy = tmp_path / "epd_copy"
    shutil.copytree(epd_ckpt, epd_copy)
    summary = train_world_model(config(tmp_path, push_data, epd_copy, out="train_run"))
    rows = [json.loads(line) for line in (tmp_path / "train_run" / "metrics.jsonl").read_text().splitlines()]
    assert summary["steps"] == 20 and {"loss_tf", "loss_rollout", "loss_proprio"} <= set(rows[0])
    first = sum(r["loss"] for r in rows[:3]) / 3
    last = sum(r["loss"] for r in rows[-5:]) / 5
    assert last < 0.8 * first, (first, last)
    # The proprio head learns too (it starts at "the proprio stays").
    assert sum(r["loss_proprio"] for r in rows[-5:]) / 5 < sum(r["loss_proprio"] for r in rows[:3]) / 3

    # The run holds its own copy of the encoder: moving it and deleting the pretraining run is fine.
    shutil.rmtree(epd_copy)
    shutil.move(tmp_path / "train_run", tmp_path / "wm")
    assert (tmp_path / "wm" / "encoder" / "model.safetensors").is_file()
    wm = WorldModel.load(tmp_path / "wm")
    extra = json.loads((tmp_path / "wm" / "checkpoints" / "step_00000020" / "state.json").read_text())["extra"]
    assert wm.stats.action_mean == extra["world_model"]["norm_stats"]["action_mean"]
    assert wm.action_conditioned and wm.predictor.proprio_dim == 4 and wm.predicts_proprio
    from ivnext_world.data import TrajectoryDataset

    item = TrajectoryDataset(push_data, window=4, episodes=[3])[0]
    frames = (item["frames"] * 255).round().to(torch.uint8)[None]  # (1, 4, 3, 64, 64)
    z = wm.encode(frames)
    pred = wm.rollout(z[:, :1], item["actions"][None, :3], proprio=item["proprio"][None, :1])
    assert pred.shape == (1, 3, wm.tokens_per_frame, z.shape[-1])
    pred2, prop = wm.rollout(z[:, :1], item["actions"][None, :3], proprio=item["proprio"][None, :1], return_proprio=True)
    assert torch.equal(pred2, pred) and prop.shape == (1, 3, 4)  # raw units, like the dataset's state
    assert (prop - item["proprio"][None, 1:]).abs().mean() < item["proprio"].abs().mean() + 1.0
    # Trained on this task: imagined latents are closer to the truth than untrained-scale noise.
    assert (pred - z[:, 1:]).abs().mean() < (z[:, 1:] - z[:, 1:].mean()).abs().mean() * 2
    assert wm.decode(pred[:, :1], num_steps=2).shape == (1, 1, 3, 56, 56)


def test_action_free_training_and_config_errors(tmp_path, push_data, epd_ckpt):
    cfg = config(tmp_path, push_data, epd_ckpt, action_conditioned=False, loss="cosine", rollout_steps=1)
    cfg.loop.steps = 2
    train_world_model(cfg)
    wm = WorldModel.load(tmp_path / "wm")
    assert not wm.action_conditioned
    with pytest.raises(ValueError, match="no action head"):
        wm.rollout(torch.zeros(1, 1, wm.tokens_per_frame, 48), torch.zeros(1, 2, 2))
    with pytest.raises(ValueError, match="rollout_steps"):
        config(tmp_path, push_data, epd_ckpt, rollout_steps=4)
    with pytest.raises(ValueError, match="loss"):
        config(tmp_path, push_data, epd_ckpt, loss="huber")


def test_frame_skip_trains_on_action_chunks(tmp_path, push_data, epd_ckpt):
    """frame_skip=2 (DINO-WM's frameskip): one world-model step = 2 env steps, its action = the 2 env
    actions concatenated, so a rollout of H steps is driven by (H, 2 * A) chunks."""
    from ivnext_world.data import LeRobotDataset
    from ivnext_world.data.lerobot.layout import ACTION
    from ivnext_world.world_model.latent_cache import LatentWindowDataset

    cfg = config(tmp_path, push_data, epd_ckpt, out="fs2")
    cfg.data.frame_skip, cfg.loop.steps, cfg.loop.ckpt_every = 2, 3, 3
    train_world_model(cfg)
    wm = WorldModel.load(tmp_path / "fs2")
    assert wm.frame_skip == 2 and wm.env_action_dim == 2 and wm.stats.action_dim == 4
    assert wm.stats.action_std[:2] == wm.stats.action_std[2:]  # per-step statistics, repeated
    ds = LatentWindowDataset(tmp_path / "fs2" / "latents", str(push_data), [0], window=4, frame_skip=2)
    item, acts = ds[1], LeRobotDataset(push_data).episode_table(0)[ACTION]
    assert item["actions"].shape == (4, 4) and item["latents"].shape[0] == 4
    torch.testing.assert_close(item["actions"][0], torch.from_numpy(acts[1:3].reshape(-1)))  # window 1 starts at row 1
    torch.testing.assert_close(wm.env_actions(item["actions"])[2], torch.from_numpy(acts[5:7]))
    z = torch.zeros(1, 1, wm.tokens_per_frame, 48)
    assert wm.rollout(z, item["actions"][None, :3], proprio=item["proprio"][None, :1]).shape[1] == 3
    with pytest.raises(ValueError, match="4 features"):
        wm.rollout(z, torch.zeros(1, 3, 2), proprio=item["proprio"][None, :1])  # env actions, not chunks
