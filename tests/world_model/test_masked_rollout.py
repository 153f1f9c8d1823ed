"""Action-free prediction with the pretrained EPD predictor by masking the future frames."""
import pytest
import torch

from ivnext_world.pretrain.run import load_epd
from ivnext_world.world_model.masked_rollout import masked_future_prediction, normalized_patch_latents

from ._wm_helpers import DIM, save_tiny_epd

N_PATCH = 16  # 4x4 patches of the tiny model; its clip is num_frames=4 token-frames


@pytest.fixture(scope="module")
def stage2(tmp_path_factory):
    epd, _ = load_epd(save_tiny_epd(tmp_path_factory.mktemp("s2"), decoder="none", latent_head=True))
    return epd.eval()


def frames(b=2, t=1, seed=0):
    return torch.randint(0, 256, (b, t, 3, 64, 64), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


def test_stage2_shapes_unit_norm_and_horizon_prefix(stage2):
    ctx = frames()
    out = masked_future_prediction(stage2, ctx, horizon=3)
    assert out.shape == (2, 3, N_PATCH, DIM) and out.dtype == torch.float32
    assert torch.allclose(out.norm(dim=-1), torch.ones(2, 3, N_PATCH), atol=1e-5)
    # Every future position is masked whatever the horizon: a shorter horizon is a prefix.
    assert torch.allclose(masked_future_prediction(stage2, ctx, horizon=1), out[:, :1], atol=1e-5)
    assert masked_future_prediction(stage2, frames(t=2), horizon=2).shape == (2, 2, N_PATCH, DIM)


def test_context_tokens_reach_the_predictor_unaltered(stage2):
    ctx = frames(t=2, seed=1)
    before = ctx.clone()
    seen = {}
    hook = stage2.predictor.register_forward_pre_hook(lambda m, args: seen.update(tokens=args[0], mask=args[1]))
    try:
        masked_future_prediction(stage2, ctx, horizon=2)
    finally:
        hook.remove()
    assert torch.equal(ctx, before)  # the caller's frames are not modified
    mask = seen["mask"]
    assert not mask[:, :2 * N_PATCH].any() and mask[:, 2 * N_PATCH:].all()  # context visible, future masked
    # The visible tokens are the encoder's tokens of the context frames, whatever the future holds.
    from ivnext_world.data.transforms import build_video_transform

    x = build_video_transform(False, 56, crop_pct=1.0, flip=False)(ctx.flatten(0, 1)).unflatten(0, (2, 2))
    other_future = torch.randn(2, 2, 3, 56, 56)  # would change the tokens if the future leaked in
    clip = torch.cat([x, other_future], 1).transpose(1, 2)
    expected = stage2.encoder.forward_features(clip, mask)
    assert seen["tokens"].shape == (2, 4 + 2 * N_PATCH, DIM)
    assert torch.allclose(seen["tokens"], expected, atol=1e-4)


def test_stage1_pixel_round_trip_and_errors(epd_ckpt, tmp_path):
    epd, _ = load_epd(epd_ckpt)
    g = torch.Generator().manual_seed(0)
    out = masked_future_prediction(epd, frames(b=1), horizon=2, num_steps=2, generator=g)
    assert out.shape == (1, 2, N_PATCH, DIM) and torch.isfinite(out).all()
    assert torch.allclose(out.norm(dim=-1), torch.ones(1, 2, N_PATCH), atol=1e-5)
    with pytest.raises(ValueError, match="horizon <= 3"):
        masked_future_prediction(epd, frames(b=1), horizon=4)
    bare, _ = load_epd(save_tiny_epd(tmp_path, decoder="none"))
    with pytest.raises(ValueError, match="neither a latent head"):
        masked_future_prediction(bare, frames(b=1), horizon=1)


def test_normalized_patch_latents_drops_cls_and_normalises():
    z = torch.randn(2, 3, 20, DIM)
    out = normalized_patch_latents(z, 4)
    assert out.shape == (2, 3, 16, DIM)
    assert torch.allclose(out, torch.nn.functional.normalize(z[..., 4:, :], dim=-1))
