"""Each released-weights backbone, on random weights at tiny size, through the three downstream pipelines:
a world model trains for a few steps (``train_world_model``), CEM plans with it in the simulator
(``ivnext-plan-eval``'s ``run_plan_eval``), and ``ivnext-depth compare`` probes it.

Backbones: the official InternVideo-Next layout (official key names, ``.pth``, released pooling and
GELU; at 56 px through the position-table interpolation), V-JEPA 2 (transformers folder; tubelet 2,
patch 16: a 2x2 grid, no cls token) and DINOv2 (transformers folder; a 4x4 grid, no cls token).
"""
import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from ._backbone_helpers import dinov2_hf_folder, official_checkpoint, vjepa2_folder

pytest.importorskip("transformers")  # a declared dependency; the skip only guards partial installs

# kind -> (builder, encoder_img_size, latent tokens per frame, width)
CASES = {
    "official": (official_checkpoint, 56, 4 + 16, 192),
    "vjepa2": (vjepa2_folder, None, 4, 48),
    "dinov2": (dinov2_hf_folder, None, 16, 32),
}


@pytest.fixture(scope="module")
def push_data(tmp_path_factory):
    """Four short episodes of the built-in push task (64 px, 12 steps, with depth) in LeRobot layout."""
    from omegaconf import OmegaConf

    from ivnext_world.config import load_config
    from ivnext_world.sim import collect

    out = tmp_path_factory.mktemp("bb_pipeline") / "push"
    cfg = load_config("collect", [f"out={out}", "env.image_size=64", "env.max_episode_steps=12", "episodes=4",
                                  "workers=0", "policy.noise_std=0.3"])
    return collect(OmegaConf.to_object(cfg)).out


@pytest.fixture
def no_o3d_render(monkeypatch):
    from ivnext_world.probes.depth.geometry import offscreen_renderer_works

    monkeypatch.setenv("IVNEXT_NO_O3D_RENDER", "1")
    offscreen_renderer_works.cache_clear()
    yield
    offscreen_renderer_works.cache_clear()


@pytest.mark.slow
@pytest.mark.parametrize("kind", list(CASES))
def test_world_model_planning_and_depth_probe_on_backbone(kind, push_data, tmp_path, one_torch_thread, no_o3d_render):
    from ivnext_world.cli.depth import main as depth_main
    from ivnext_world.config.schema import Task
    from ivnext_world.planning.cem import CEMConfig
    from ivnext_world.planning.evaluate import PlanEvalConfig, run_plan_eval
    from ivnext_world.probes.depth import load_depth_probe
    from ivnext_world.train import LoopConfig
    from ivnext_world.world_model import WorldModel, WorldModelTrainConfig, train_world_model
    from ivnext_world.world_model.train import WMDataConfig, WMPredictorSize

    build, img_size, n_tokens, dim = CASES[kind]
    spec, _ = build(tmp_path)

    # 1. A world model trains for a few steps on the frozen backbone's (cached) latents.
    run = tmp_path / "wm"
    cfg = WorldModelTrainConfig(
        encoder=spec, encoder_img_size=img_size,
        data=WMDataConfig(source=str(push_data), episodes=[0, 1, 2], window=3),
        predictor=WMPredictorSize(embed_dim=32, depth=1, num_heads=2, max_frames=8),
        loop=LoopConfig(steps=4, batch_size=2, num_workers=0, base_lr=1.0, warmup_steps=1, ckpt_every=4, log_every=1),
        out=str(run))
    summary = train_world_model(cfg)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert summary["steps"] == 4 and len(rows) == 4 and all(np.isfinite(r["loss"]) for r in rows)
    assert not (run / "encoder").exists()  # released weights are named, not copied
    wm = WorldModel.load(run)
    assert wm.backbone.spec == spec and wm.tokens_per_frame == n_tokens and wm.embed_dim == dim
    assert wm.predictor.cfg.tokens_per_frame == n_tokens and wm.predictor.cfg.enc_dim == dim
    from ivnext_world.data import TrajectoryDataset

    item = TrajectoryDataset(push_data, window=3, episodes=[0])[0]
    z = wm.encode((item["frames"] * 255).round().to(torch.uint8)[None])  # (1, 3, n, D)
    cached = load_file(str(run / "latents" / "episode_000000.safetensors"))["latents"][:3]
    torch.testing.assert_close(z[0], cached, atol=1e-4, rtol=1e-4)  # same backbone, size and normalisation
    assert wm.rollout(z[:, :1], item["actions"][None, :2]).shape == (1, 2, n_tokens, dim)
    with pytest.raises(RuntimeError, match="no pixel decoder"):
        wm.decode(z[:, :1])
    # The gymnasium wrappers: pixel observations -> this backbone's latents; imagined steps.
    import gymnasium

    import envs
    from ivnext_world.world_model import ImaginedEnv, LatentObservation

    env = LatentObservation(gymnasium.make(envs.TASKS["push"], width=64, height=64), wm, mode="patch")
    obs, _ = env.reset(seed=1)
    assert obs.shape == (n_tokens, dim) and np.isfinite(obs).all()
    env.close()
    imagined = ImaginedEnv(wm, z[0, :1], z[0, 2:], max_steps=2)
    imagined.reset(seed=0)
    obs, reward, *_ = imagined.step(imagined.action_space.sample())
    assert obs.shape == (dim,) and np.isfinite(reward)

    # 2. CEM plans with it under MPC in the simulator (the ivnext-plan-eval path).
    results = run_plan_eval(PlanEvalConfig(
        world_model=str(run), task=Task.push, episodes=1, image_size=64, max_episode_steps=2, methods=["cem"],
        cem=CEMConfig(samples=8, topk=2, iterations=2, horizon=2), videos=1, bank_frames=8, out=str(tmp_path / "plan")))
    cem = results["methods"]["cem"]
    assert cem["episodes"] == 1 and cem["episodes_detail"][0]["plans"] >= 1
    assert results["world_model"]["encoder"] == spec and len(results["videos"]) == 1

    # 3. ivnext-depth compare probes it (linear head, 2 steps) on held-out episodes.
    out = tmp_path / "depth"
    args = ["compare", "--data", str(push_data), "--train-episodes", "0-2", "--test-episodes", "3",
            "--encoder", f"{kind}={spec}", "--heads", "linear", "--steps", "2", "--eval-stride", "4", "--out", str(out)]
    depth_main(args + (["--img-size", str(img_size)] if img_size else []))
    table = json.loads((out / "comparison.json").read_text())
    row = table["rows"][0]
    assert (row["encoder"], row["head"]) == (kind, "linear") and np.isfinite(row["abs_rel"]) and 0 <= row["d1"] <= 1
    probe, features, info = load_depth_probe(row["checkpoint"])
    assert info["encoder"]["spec"] == spec and features.grid == wm.backbone.grid
    # The probe's last-layer map is the world model's latent patch tokens, so it reads imagined latents.
    x = wm._transform((item["frames"][:1] * 255).round().to(torch.uint8))  # the world model's input frame
    maps = features(x, normalised=True)
    torch.testing.assert_close(maps[-1].flatten(2).transpose(1, 2), z[0, :1, wm.num_prefix_tokens:],
                               atol=1e-4, rtol=1e-4)
    from ivnext_world.probes.depth import imagined_depth

    imag = imagined_depth(probe, features, wm, str(push_data), [3], context=1, horizon=2, max_windows=1)
    assert imag["windows"] == 1 and all(np.isfinite(v) for v in imag["methods"]["imagined"]["abs_rel"])
    # ivnext-depth predict: the probe checkpoint rebuilds the backbone from its record for any video.
    from ivnext_world.data.video_io import encode_mp4

    video = tmp_path / "clip.mp4"
    encode_mp4(video, (item["frames"].permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8), 10)
    depth_main(["predict", str(video), "--probe", row["checkpoint"], "--out", str(tmp_path / "pred"), "--no-ply"])
    assert np.load(tmp_path / "pred" / "depth.npz")["depth"].shape == (3, 64, 64)

    # 4. The state probe reads it too (a spec string is enough), per frame, on held-out episodes.
    from ivnext_world.probes import state_probe

    res = state_probe(spec, push_data, [0, 1, 2], [3], img_size=img_size)
    assert res.train_frames == 24 and res.test_frames == 8 and np.isfinite(res.r2)


@pytest.mark.slow
def test_moved_or_changed_backbone_files(push_data, tmp_path, one_torch_thread):
    """A world model on released weights names them: moved files are found again with ``encoder=``,
    other weights at the same path are refused (fingerprint), a spec alone gives an encode-only model."""
    import shutil

    from ivnext_world.train import LoopConfig
    from ivnext_world.world_model import WorldModel, WorldModelTrainConfig, train_world_model
    from ivnext_world.world_model.train import WMDataConfig, WMPredictorSize

    spec, _ = dinov2_hf_folder(tmp_path / "a")
    train_world_model(WorldModelTrainConfig(
        encoder=spec, data=WMDataConfig(source=str(push_data), episodes=[0], window=3, cache_latents=False),
        predictor=WMPredictorSize(embed_dim=32, depth=1, num_heads=2, max_frames=8),
        loop=LoopConfig(steps=1, batch_size=2, num_workers=0, warmup_steps=1, ckpt_every=1), out=str(tmp_path / "wm")))
    folder = spec.split(":", 1)[1]
    moved = tmp_path / "moved"
    shutil.move(folder, moved)
    with pytest.raises(FileNotFoundError, match="encoder="):
        WorldModel.load(tmp_path / "wm")
    wm = WorldModel.load(tmp_path / "wm", encoder=f"hf:{moved}")
    assert wm.action_conditioned and wm.backbone.spec == f"hf:{moved}"
    with pytest.raises(ValueError, match="not the kind of backbone"):
        WorldModel.load(tmp_path / "wm", encoder=f"vjepa2:{moved}")
    from transformers import Dinov2Config, Dinov2Model

    from ._backbone_helpers import TINY_DINO_HF

    torch.manual_seed(1)  # same architecture, other weights, at the place the run names
    Dinov2Model(Dinov2Config(**TINY_DINO_HF)).save_pretrained(folder)
    with pytest.raises(ValueError, match="other weights"):
        WorldModel.load(tmp_path / "wm")
    enc_only = WorldModel.load(f"hf:{moved}")
    assert enc_only.predictor is None
    assert enc_only.encode(torch.zeros(1, 1, 3, 64, 64, dtype=torch.uint8)).shape == (1, 1, 16, 32)
