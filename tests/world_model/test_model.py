"""WorldModel API on a tiny random model: encode / predict / rollout / decode, normalisation, errors."""
import pytest
import torch

from ivnext_world.pretrain.run import load_epd
from ivnext_world.world_model import NormStats, WorldModel

from ._wm_helpers import DIM, N_TOKENS, save_tiny_epd, tiny_predictor

STATS = NormStats(action_mean=[1.0, -2.0], action_std=[2.0, 0.5], proprio_mean=[0.0, 1.0, 2.0], proprio_std=[1.0, 1.0, 4.0])


@pytest.fixture
def wm(epd_ckpt):
    epd, _ = load_epd(epd_ckpt)
    return WorldModel(epd, tiny_predictor(), STATS)


def frames(b=2, t=3, size=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (b, t, 3, size, size), generator=g, dtype=torch.uint8)


def test_encode_shapes_and_input_types(wm):
    x = frames()
    z = wm.encode(x)
    assert z.shape == (2, 3, N_TOKENS, DIM) and z.dtype == torch.float32
    assert wm.num_prefix_tokens == 4 and wm.tokens_per_frame == N_TOKENS
    same_size = frames(size=56)  # no resizing: uint8 and [0, 1] floats give the same latents
    assert torch.allclose(wm.encode(same_size.float() / 255), wm.encode(same_size), atol=1e-4)
    # Per-frame encoding: a frame's latents do not depend on the other frames of the clip.
    assert torch.allclose(wm.encode(x[:, 1:2])[:, 0], z[:, 1], atol=1e-5)
    with pytest.raises(ValueError, match="B, T, 3, H, W"):
        wm.encode(x[0])


def test_predict_rollout_shapes_determinism_and_cache(wm):
    z = wm.encode(frames(b=1, t=2))
    acts = torch.randn(8, 5, 2, generator=torch.Generator().manual_seed(0))
    out = wm.rollout(z, acts)
    assert out.shape == (8, 5, N_TOKENS, DIM)
    assert torch.equal(out, wm.rollout(z, acts))
    assert (out - wm.rollout(z, acts, use_cache=False)).abs().max() <= 1e-5
    assert wm.rollout(z, acts, horizon=3).shape == (8, 3, N_TOKENS, DIM)
    one = wm.predict(z.expand(8, -1, -1, -1), acts[:, 0])
    assert one.shape == (8, N_TOKENS, DIM) and torch.allclose(one, out[:, 0], atol=1e-5)


def test_normalisation_statistics_are_applied(wm):
    z = wm.encode(frames(b=1, t=2))
    g = torch.Generator().manual_seed(1)
    raw, prop, ctx_a = torch.randn(3, 4, 2, generator=g), torch.randn(1, 2, 3, generator=g), torch.randn(1, 1, 2, generator=g)
    norm = lambda x, m, s: (x - torch.tensor(m)) / torch.tensor(s)  # noqa: E731
    expected = wm.predictor.rollout(z, norm(raw, STATS.action_mean, STATS.action_std),
                                    norm(prop, STATS.proprio_mean, STATS.proprio_std),
                                    norm(ctx_a, STATS.action_mean, STATS.action_std))
    got = wm.rollout(z, raw, proprio=prop, context_actions=ctx_a)
    assert torch.allclose(got, expected, atol=1e-6)
    assert torch.allclose(STATS.denormalize_actions(STATS.normalize_actions(raw)), raw, atol=1e-6)


def test_wrong_action_dimension_names_expected_and_given(wm):
    z = wm.encode(frames(b=1, t=1))
    with pytest.raises(ValueError, match=r"2 features.*got 7"):
        wm.rollout(z, torch.zeros(4, 3, 7))
    with pytest.raises(ValueError, match="needs actions"):
        wm.rollout(z, horizon=2)


def test_action_free_model_refuses_actions(epd_ckpt):
    epd, _ = load_epd(epd_ckpt)
    wm = WorldModel(epd, tiny_predictor(action_dim=None, proprio_dim=None))
    z = wm.encode(frames(b=1, t=2))
    assert wm.rollout(z, horizon=3).shape == (1, 3, N_TOKENS, DIM)
    with pytest.raises(ValueError, match="no action head"):
        wm.rollout(z, torch.zeros(1, 3, 2))


def test_pretraining_checkpoint_loads_for_encode_and_decode_only(epd_ckpt):
    wm = WorldModel.load(epd_ckpt.parent.parent)  # the run folder
    z = wm.encode(frames(b=1, t=2))
    with pytest.raises(RuntimeError, match="no world-model predictor"):
        wm.rollout(z, torch.zeros(1, 2, 2))
    video = wm.decode(z, num_steps=2, generator=torch.Generator().manual_seed(0))
    assert video.shape == (1, 2, 3, 56, 56)
    assert video.min() >= 0 and video.max() <= 1
    same = wm.decode(z, num_steps=2, generator=torch.Generator().manual_seed(0))
    assert torch.equal(video, same)  # deterministic given the generator
    assert wm.decode(z, num_steps=2, scheduler="dpmsolver").shape == (1, 2, 3, 56, 56)


def test_decode_without_a_decoder_is_a_clear_error(tmp_path):
    wm = WorldModel.load(save_tiny_epd(tmp_path, decoder="none"))
    with pytest.raises(RuntimeError, match="Stage-1 checkpoint"):
        wm.decode(wm.encode(frames(b=1, t=1)))


def test_rollout_grad_reaches_actions_only_when_asked(wm):
    context = torch.randn(1, 2, wm.tokens_per_frame, wm.encoder.embed_dim)
    actions = torch.zeros(3, 4, 2, requires_grad=True)
    out = wm.rollout(context, actions)
    assert not out.requires_grad
    out = wm.rollout(context, actions, grad=True)
    out.square().mean().backward()
    assert actions.grad is not None and actions.grad.abs().sum() > 0
    assert all(p.grad is None for p in wm.parameters())


def test_decode_conditions_each_token_as_stage1_trained_the_decoder(epd_ckpt):
    """decode_groups=4: every token's condition is the mean of the predictor's outputs at that token
    over the 3 passes where it was masked (never its own visible output, which the decoder never saw)."""
    wm = WorldModel.load(epd_ckpt.parent.parent)
    z = wm.encode(frames(b=1, t=1))[:, 0]  # (1, n, D)
    grid = wm.encoder.token_grid((1, wm.img_size, wm.img_size))
    _, h, w = grid
    with torch.no_grad():
        cond = wm._masked_conditions(z, grid, 4)
        group = ((torch.arange(h)[:, None] % 2) * 2 + torch.arange(w)[None, :] % 2).flatten()
        p = wm.stage1_predictor.num_prefix_tokens
        want = 0
        for g in range(4):
            mask = (group != g)[None]
            inp = torch.cat([z[:, :p], z[:, p:][:, group == g]], 1)
            want = want + wm.stage1_predictor(inp, mask, grid).patches * mask[..., None]
        torch.testing.assert_close(cond, want / 3)
        visible = wm._masked_conditions(z, grid, 1)
    assert not torch.allclose(cond, visible, atol=1e-3)
    assert wm.decode(z[:, None], num_steps=1, decode_groups=1).shape == (1, 1, 3, 56, 56)
    with pytest.raises(ValueError, match="decode_groups must be a square"):
        wm.decode(z[:, None], num_steps=1, decode_groups=3)
