"""gymnasium wrappers: latent observations of a real env, and the imagined env (env checker + behaviour)."""
import warnings

import gymnasium
import numpy as np
import pytest
import torch
from gymnasium import spaces
from gymnasium.utils.env_checker import check_env

from ivnext_world.pretrain.run import load_epd
from ivnext_world.world_model import NormStats, WorldModel
from ivnext_world.world_model.wrappers import ImaginedEnv, LatentObservation

from ._wm_helpers import DIM, N_TOKENS, tiny_predictor

STATS = NormStats(action_mean=[0.0, 0.0], action_std=[0.5, 0.5], proprio_mean=[0.0, 1.0, 2.0], proprio_std=[1.0, 1.0, 4.0])


@pytest.fixture
def wm(epd_ckpt):
    epd, _ = load_epd(epd_ckpt)
    return WorldModel(epd, tiny_predictor(), STATS)


def image(seed=0, size=64):
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


class RGBEnv(gymnasium.Env):
    """A plain-Box RGB env (deterministic given the seed), to test the non-dict path cheaply."""

    observation_space = spaces.Box(0, 255, (64, 64, 3), np.uint8)
    action_space = spaces.Box(-1, 1, (2,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return self.np_random.integers(0, 256, (64, 64, 3), dtype=np.uint8), {}

    def step(self, action):
        return self.np_random.integers(0, 256, (64, 64, 3), dtype=np.uint8), 0.0, False, False, {}


def checked(env):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env, skip_render_check=True)
    # Expected notices only: "this env is wrapped" and "unbounded Box" (latents have no bounds).
    serious = [str(w.message) for w in caught if not any(k in str(w.message) for k in ("unwrapped", "infinity"))]
    assert not serious, serious


@pytest.mark.parametrize("mode,shape", [("pooled", (DIM,)), ("patch", (N_TOKENS, DIM))])
def test_latent_observation_on_plain_rgb_env(wm, mode, shape):
    env = LatentObservation(RGBEnv(), wm, mode=mode)
    assert env.observation_space.shape == shape and env.observation_space.dtype == np.float32
    obs, _ = env.reset(seed=0)
    assert obs.shape == shape and obs.dtype == np.float32
    z = wm.encode(torch.as_tensor(env.unwrapped.reset(seed=0)[0]).permute(2, 0, 1)[None, None])[0, 0]
    expected = z[4:].mean(0) if mode == "pooled" else z  # pooled: patch tokens only, cls left out
    assert np.allclose(obs, expected.numpy(), atol=1e-5)
    checked(env)
    with pytest.raises(ValueError, match="keep_keys needs a Dict"):
        LatentObservation(RGBEnv(), wm, keep_keys=("proprio",))


def test_latent_observation_on_push_env_with_passthrough(wm):
    import envs

    env = LatentObservation(gymnasium.make(envs.TASKS["push"], width=64, height=64), wm, keep_keys=("proprio",))
    assert set(env.observation_space.spaces) == {"latent", "proprio"}
    obs, _ = env.reset(seed=1)
    assert obs["latent"].shape == (DIM,) and obs["proprio"].shape == (4,)
    checked(env)
    env.close()
    with pytest.raises(ValueError, match="not in the observation dict"):
        LatentObservation(gymnasium.make(envs.TASKS["push"], width=64, height=64), wm, keep_keys=("nope",))


def test_imagined_env_passes_checker_and_matches_rollout(wm):
    ctx, goal = image(0), image(1)
    # The real env's action Box (the checker advises a symmetric [-1, 1] range).
    env = ImaginedEnv(wm, ctx, goal, proprio=[0.1, 0.9, 2.5], max_steps=5, action_space=spaces.Box(-1, 1, (2,), np.float32))
    checked(env)
    obs, info = env.reset(seed=0)
    assert obs.shape == (DIM,) and info["step"] == 0
    acts = np.random.default_rng(0).uniform(-1, 1, (5, 2)).astype(np.float32)
    rewards, truncs = [], []
    for a in acts:
        obs, r, term, trunc, info = env.step(a)
        rewards.append(r)
        truncs.append(trunc)
        assert not term
    assert truncs == [False] * 4 + [True]
    z0 = wm.encode(torch.as_tensor(ctx).permute(2, 0, 1)[None, None])
    ref = wm.rollout(z0, torch.as_tensor(acts)[None], proprio=torch.tensor([[[0.1, 0.9, 2.5]]]))[0, -1]  # (n, D)
    assert (env.latent - ref).abs().max() <= 1e-5  # the KV-cached steps are the world model's rollout
    goal_z = wm.encode(torch.as_tensor(goal).permute(2, 0, 1)[None, None])[0, 0]
    assert rewards[-1] == pytest.approx(-(ref - goal_z).abs().mean().item(), abs=1e-5)


def test_imagined_env_options_latents_patch_mode_and_errors(wm, epd_ckpt):
    z = wm.encode(torch.as_tensor(np.stack([image(2), image(3)])).permute(0, 3, 1, 2)[None])[0]  # (2, n, D)
    env = ImaginedEnv(wm, mode="patch", distance="l2", max_steps=3)
    assert np.allclose(env.action_space.low, -1.5) and np.allclose(env.action_space.high, 1.5)  # mean +- 3 std
    with pytest.raises(ValueError, match="no frames"):
        env.reset()
    obs, _ = env.reset(options={"frames": z, "goal": z[0]})
    assert obs.shape == (N_TOKENS, DIM) and np.allclose(obs, z[1].numpy())
    _, r, *_ = env.step(np.zeros(2, np.float32))
    ref = wm.rollout(z[None], torch.zeros(1, 1, 2))[0, 0]
    assert r == pytest.approx(-((ref - z[0]) ** 2).mean().item(), abs=1e-5)
    with pytest.raises(ValueError, match="2 features"):
        env.step(np.zeros(5, np.float32))
    with pytest.raises(ValueError, match="max_frames"):
        ImaginedEnv(wm, z, z, max_steps=20).reset()
    with pytest.raises(ValueError, match="action head"):
        ImaginedEnv(WorldModel(load_epd(epd_ckpt)[0], tiny_predictor(action_dim=None, proprio_dim=None)), z, z)



def test_imagined_env_renders_decoded_latent(wm):
    env = ImaginedEnv(wm, image(0), image(1), max_steps=2, render_mode="rgb_array", render_steps=2)
    env.reset()
    env.step(np.zeros(2, np.float32))
    img = env.render()
    assert img.shape == (56, 56, 3) and img.dtype == np.uint8
