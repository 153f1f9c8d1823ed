"""ActionConditionedPredictor: shapes, determinism, block-causal mask, KV-cached rollout == recomputation."""
import pytest
import torch

from ivnext_world.world_model import ACPredictorConfig, ActionConditionedPredictor, block_causal_mask

from ._wm_helpers import DIM, N_TOKENS, tiny_predictor


def inputs(b=2, f=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(b, f, N_TOKENS, DIM, generator=g), torch.randn(b, f, 2, generator=g),
            torch.randn(b, f, 3, generator=g))


def test_block_causal_mask_layout():
    m = block_causal_mask(3, 2)
    assert m.shape == (6, 6) and m.dtype == torch.bool
    assert m[0, :2].all() and not m[0, 2:].any()  # frame 0: itself only
    assert m[5].all()  # last frame sees everything


def test_forward_shapes_and_determinism():
    p = tiny_predictor()
    z, a, s = inputs()
    out = p(z, a, s)
    assert out.shape == (2, 4, N_TOKENS, DIM)
    assert torch.equal(out, p(z, a, s))
    assert torch.isfinite(out).all()


def test_future_actions_do_not_change_past_predictions():
    p = tiny_predictor()
    z, a, s = inputs()
    base = p(z, a, s)
    a2 = a.clone()
    a2[:, 2] += 5.0  # the action at frame 2 only
    out = p(z, a2, s)
    assert torch.equal(out[:, :2], base[:, :2])  # predictions of frames 1 and 2 see no later action
    assert (out[:, 2:] - base[:, 2:]).abs().amax() > 1e-3  # and it matters from frame 3 on
    z2 = z.clone()
    z2[:, 3] += 1.0  # the last frame's latents cannot reach earlier outputs either
    assert torch.equal(p(z2, a, s)[:, :3], base[:, :3])


def test_rollout_earlier_action_changes_later_frames_only_forward():
    p = tiny_predictor()
    z, a, s = inputs(b=1, f=2)
    acts = torch.randn(3, 5, 2, generator=torch.Generator().manual_seed(1))
    base = p.rollout(z, acts, s)
    changed = acts.clone()
    changed[:, 3] += 5.0
    out = p.rollout(z, changed, s)
    assert torch.equal(out[:, :3], base[:, :3])
    assert (out[:, 3:] - base[:, 3:]).abs().amax() > 1e-3
    changed = acts.clone()
    changed[:, 0] += 5.0
    assert ((p.rollout(z, changed, s) - base).abs().amax(dim=(2, 3)) > 1e-4).all()


@pytest.mark.parametrize("tc", [1, 3])
def test_cached_rollout_equals_recomputation(tc):
    p = tiny_predictor()
    z, _, s = inputs(b=1, f=tc)
    g = torch.Generator().manual_seed(2)
    acts, ctx_acts = torch.randn(6, 7, 2, generator=g), torch.randn(1, tc - 1, 2, generator=g)
    cached = p.rollout(z, acts, s, context_actions=ctx_acts)
    full = p.rollout(z, acts, s, context_actions=ctx_acts, use_cache=False)
    assert cached.shape == (6, 7, N_TOKENS, DIM)
    assert (cached - full).abs().max() <= 1e-5
    # Candidates are independent: one candidate alone gives its row of the batch.
    assert torch.allclose(p.rollout(z, acts[4:5], s, context_actions=ctx_acts), cached[4:5], atol=1e-5)


def test_rollout_first_step_is_the_teacher_forced_prediction():
    p = tiny_predictor()
    z, a, s = inputs(b=2, f=3)
    tf = p(z, a, s)[:, -1]  # prediction of frame 3
    ro = p.rollout(z, a[:, -1:], s, context_actions=a[:, :-1])[:, 0]
    assert torch.allclose(ro, tf, atol=1e-5)


def test_action_free_predictor():
    p = tiny_predictor(action_dim=None, proprio_dim=None)
    z, _, _ = inputs(b=2, f=2)
    assert p(z).shape == (2, 2, N_TOKENS, DIM)
    out = p.rollout(z, horizon=4)
    assert out.shape == (2, 4, N_TOKENS, DIM)
    assert (out - p.rollout(z, horizon=4, use_cache=False)).abs().max() <= 1e-5
    with pytest.raises(ValueError, match="action-free"):
        p(z, torch.zeros(2, 2, 2))


def test_errors():
    p = tiny_predictor()
    z, a, s = inputs(b=1, f=2)
    with pytest.raises(ValueError, match="actions are required"):
        p(z)
    with pytest.raises(ValueError, match="2 features"):
        p(z, torch.zeros(1, 2, 5), s)
    with pytest.raises(ValueError, match="max_frames"):
        p.rollout(z, torch.zeros(1, 16, 2))  # 2 + 16 - 1 frames > 16
    with pytest.raises(ValueError, match="context batch"):
        p.rollout(z.expand(2, -1, -1, -1), torch.zeros(3, 2, 2))


def test_init_blocks_from_pretrained_predictor():
    from ivnext_world.models import Predictor

    pre = Predictor(enc_dim=DIM, embed_dim=32, depth=1, num_heads=2, grid_size=(1, 4, 4))
    p = tiny_predictor()
    assert p.init_blocks_from(pre.blocks) == 1
    assert torch.equal(p.blocks[0].attn.qkv.weight, pre.blocks[0].attn.qkv.weight)


def test_shared_context_with_per_candidate_proprio():
    p = tiny_predictor()
    z, _, _ = inputs(b=1, f=2)
    g = torch.Generator().manual_seed(3)
    acts, prop, ctx_a = torch.randn(3, 4, 2, generator=g), torch.randn(3, 2, 3, generator=g), torch.randn(3, 1, 2, generator=g)
    out = p.rollout(z, acts, prop, context_actions=ctx_a)
    ref = p.rollout(z.expand(3, -1, -1, -1), acts, prop, context_actions=ctx_a, use_cache=False)
    assert (out - ref).abs().max() <= 1e-5


def test_untrained_residual_predictor_is_copy_last_and_plain_one_is_not():
    torch.manual_seed(0)
    cfg = dict(enc_dim=DIM, tokens_per_frame=N_TOKENS, action_dim=2, proprio_dim=None, embed_dim=32, depth=1, num_heads=2)
    z = torch.randn(2, 3, N_TOKENS, DIM)
    a = torch.randn(2, 3, 2)
    residual = ActionConditionedPredictor(ACPredictorConfig(**cfg))
    assert torch.equal(residual(z, a), z)  # zero-initialised change: predicts "nothing moves"
    plain = ActionConditionedPredictor(ACPredictorConfig(**cfg, residual=False))
    assert not torch.allclose(plain(z, a), z, atol=1e-2)


def test_untrained_proprio_head_holds_the_proprio():
    torch.manual_seed(0)
    p = ActionConditionedPredictor(ACPredictorConfig(enc_dim=DIM, tokens_per_frame=N_TOKENS, action_dim=2,
                                                     proprio_dim=3, embed_dim=32, depth=1, num_heads=2,
                                                     predict_proprio=True))
    z, a, s = inputs()
    out, prop = p(z, a, s, return_proprio=True)
    assert torch.equal(prop, s)  # zero-initialised change: "the proprio stays"
    _, rolled = p.rollout(z[:1], a[:, :3], s[:1], return_proprio=True)
    assert rolled.shape == (2, 3, 3) and torch.equal(rolled, s[:1, -1:].expand(2, 3, -1))
    with pytest.raises(ValueError, match="predict_proprio needs proprio"):
        ActionConditionedPredictor(ACPredictorConfig(enc_dim=DIM, tokens_per_frame=N_TOKENS, action_dim=2,
                                                     proprio_dim=None, predict_proprio=True))


@pytest.mark.parametrize("tc", [1, 3])
def test_predicted_proprio_feeds_the_next_step_and_cache_equals_recomputation(tc):
    p = tiny_predictor(predict_proprio=True)
    z, _, s = inputs(b=1, f=tc)
    g = torch.Generator().manual_seed(4)
    acts, ctx_acts = torch.randn(5, 6, 2, generator=g), torch.randn(1, tc - 1, 2, generator=g)
    lat, prop = p.rollout(z, acts, s, context_actions=ctx_acts, return_proprio=True)
    lat_ref, prop_ref = p.rollout(z, acts, s, context_actions=ctx_acts, use_cache=False, return_proprio=True)
    assert prop.shape == (5, 6, 3)
    assert (lat - lat_ref).abs().max() <= 1e-5 and (prop - prop_ref).abs().max() <= 1e-5
    # Step 1's proprio is the teacher-forced prediction from the context.
    z1, p1 = p(z, torch.cat([ctx_acts.expand(5, -1, -1), acts[:, :1]], 1), s.expand(5, -1, -1), return_proprio=True)
    assert torch.allclose(prop[:, 0], p1[:, -1], atol=1e-5)
    # Imagined frames carry the prediction, not the held context proprio: changing the first action
    # changes the second step's predicted proprio.
    moved = acts.clone()
    moved[:, 0] += 3.0
    _, prop2 = p.rollout(z, moved, s, context_actions=ctx_acts, return_proprio=True)
    assert (prop2[:, 1] - prop[:, 1]).abs().amax() > 1e-4
    # The proprio head is differentiable with respect to the actions (gradient planning).
    u = acts.clone().requires_grad_(True)
    _, pr = p.rollout(z, u, s, context_actions=ctx_acts, return_proprio=True)
    pr[:, -1].sum().backward()
    assert u.grad is not None and u.grad.abs().sum() > 0
