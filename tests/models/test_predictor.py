"""Predictor: full-sequence prediction from visible tokens, extra tokens, attention masks."""

import pytest
import torch

from ivnext_world import masking
from ivnext_world.models import Block, Predictor

from .conftest import GRID

N = GRID[0] * GRID[1] * GRID[2]


@pytest.fixture
def predictor():
    torch.manual_seed(0)
    return Predictor(enc_dim=96, embed_dim=64, depth=2, num_heads=4, grid_size=GRID).eval()


def test_shapes_masked_and_unmasked(encoder, predictor, video):
    out = predictor(encoder.forward_features(video))
    assert out.patches.shape == (2, N, 64) and out.cls.shape == (2, 4, 64) and out.extra is None
    mask = masking.random_tube_mask(2, GRID, 0.75, torch.Generator().manual_seed(0))
    out = predictor(encoder.forward_features(video, mask), mask)
    assert out.patches.shape == (2, N, 64)
    target = masking.gather_tokens(out.patches, masking.masked_indices(mask))
    assert target.shape == (2, int(mask[0].sum()), 64)
    assert all(isinstance(b, Block) for b in predictor.blocks)


def test_scatter_places_visible_tokens_and_mask_tokens():
    # Without blocks or final norm the predictor returns its input sequence (plus positions).
    p0 = Predictor(enc_dim=96, embed_dim=64, depth=0, num_heads=4, grid_size=GRID, final_norm=False)
    mask = torch.ones(1, N, dtype=torch.bool)
    mask[0, [5, 9]] = False
    tokens = torch.randn(1, 4 + 2, 96)
    out = p0(tokens, mask).patches - p0.pos_embed(GRID)[:, 4:]
    proj = p0.input_proj(tokens)[0, 4:]
    torch.testing.assert_close(out[0, [5, 9]], proj)
    torch.testing.assert_close(out[0, mask[0]], p0.mask_token[0].expand(N - 2, -1))


def test_extra_tokens_and_attn_mask(encoder, predictor, video):
    tokens = encoder.forward_features(video)
    extra = torch.randn(2, 3, 64)
    out = predictor(tokens, extra_tokens=extra)
    assert out.extra.shape == (2, 3, 64) and out.patches.shape == (2, N, 64)
    # Block the cls+patch queries from attending to the extra tokens: then they cannot change them.
    length = 4 + N + 3
    attn_mask = torch.ones(length, length, dtype=torch.bool)
    attn_mask[: 4 + N, 4 + N:] = False
    a = predictor(tokens, extra_tokens=extra, attn_mask=attn_mask)
    b = predictor(tokens, extra_tokens=torch.randn(2, 3, 64), attn_mask=attn_mask)
    torch.testing.assert_close(a.patches, b.patches)
    assert not torch.allclose(a.extra, b.extra)
    # Without the mask the extra tokens do influence the patches.
    c = predictor(tokens, extra_tokens=torch.randn(2, 3, 64))
    assert not torch.allclose(c.patches, out.patches)


def test_gradients_reach_mask_token_and_encoder(encoder, predictor, video):
    mask = masking.random_tube_mask(2, GRID, 0.5, torch.Generator().manual_seed(0))
    encoder.train()
    predictor.train()
    predictor(encoder.forward_features(video, mask), mask).patches.square().mean().backward()
    assert predictor.mask_token.grad.abs().sum() > 0
    assert encoder.cls_token.grad.abs().sum() > 0


def test_other_grid_and_errors(predictor):
    grid = (8, 4, 4)  # twice the frames: position table is interpolated in time
    mask = masking.random_tube_mask(1, grid, 0.5, torch.Generator().manual_seed(0))
    tokens = torch.randn(1, 4 + int((~mask).sum()), 96)
    assert predictor(tokens, mask, grid=grid).patches.shape == (1, 128, 64)
    with pytest.raises(ValueError):
        predictor(tokens, mask)  # mask does not match the default grid
    with pytest.raises(ValueError):
        predictor(tokens[:, :-1], mask, grid=grid)  # visible count disagrees with the mask
    with pytest.raises(ValueError):
        predictor(tokens, mask, grid=grid, extra_tokens=torch.randn(1, 2, 32))


def test_masked_forward_traces_in_one_graph(predictor):
    # The visible count comes from the tokens' shape: nothing is read back from the mask, so the
    # whole masked forward is one graph (and on a GPU, no host sync).
    mask = masking.random_tube_mask(2, GRID, 0.75, torch.Generator().manual_seed(0))
    tokens = torch.randn(2, 4 + masking.visible_count(GRID, 0.75), 96)
    compiled = torch.compile(predictor, backend="eager", fullgraph=True)
    torch.testing.assert_close(compiled(tokens, mask).patches, predictor(tokens, mask).patches)
