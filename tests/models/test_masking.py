"""Mask generators: ratios, equal visible counts, tubes, determinism, attention preference."""

import pytest
import torch

from ivnext_world import masking

GRID = (4, 8, 8)
N = 4 * 8 * 8


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _is_tube(mask):
    per_frame = mask.view(mask.shape[0], GRID[0], -1)
    return bool((per_frame == per_frame[:, :1]).all())


def test_random_tube_mask():
    mask = masking.random_tube_mask(5, GRID, 0.75, _gen())
    assert mask.shape == (5, N) and mask.dtype == torch.bool
    assert (mask.sum(1) == 4 * 48).all()  # round(0.75 * 64) = 48 per frame
    assert _is_tube(mask)
    assert torch.equal(mask, masking.random_tube_mask(5, GRID, 0.75, _gen()))
    assert not torch.equal(mask, masking.random_tube_mask(5, GRID, 0.75, _gen(1)))
    with pytest.raises(ValueError):
        masking.random_tube_mask(1, GRID, 1.0)


def test_attention_guided_mask_ratio_and_determinism():
    attn = torch.rand(3, 4, 64)
    mask = masking.attention_guided_mask(attn, 0.75, _gen())
    assert mask.shape == (3, N)
    assert (mask.view(3, 4, 64).sum(-1) == 48).all()  # per frame
    assert torch.equal(mask, masking.attention_guided_mask(attn, 0.75, _gen()))


def test_attention_guided_mask_keeps_salient_tokens():
    # 16 tokens per frame carry almost all attention: with 16 visible slots they are always kept.
    attn = torch.full((8, 4, 64), 1e-6)
    top = torch.stack([torch.randperm(64, generator=_gen(i))[:16] for i in range(32)]).view(8, 4, 16)
    attn.scatter_(2, top, 1.0)
    mask = masking.attention_guided_mask(attn, 0.75, _gen()).view(8, 4, 64)
    assert not torch.gather(mask, 2, top).any()
    # Statistically: with a ramp, visible tokens have higher attention than masked ones.
    ramp = torch.arange(1, 65, dtype=torch.float).expand(16, 4, 64)
    m = masking.attention_guided_mask(ramp, 0.5, _gen()).view(16, 4, 64)
    assert ramp[~m].mean() > ramp[m].mean() + 10
    # Zero weights are allowed (they fill the quota last).
    z = masking.attention_guided_mask(torch.zeros(2, 1, 64), 0.5, _gen())
    assert (z.sum(1) == 32).all()


@pytest.mark.parametrize("num_blocks, scale", [(8, 0.15), (2, 0.7), (1, 1.0)])
def test_multiblock_tube_mask(num_blocks, scale):
    mask = masking.multiblock_tube_mask(6, GRID, num_blocks, scale, generator=_gen())
    visible = (~mask).sum(1)
    assert (visible == visible[0]).all() and visible[0] >= 1
    assert _is_tube(mask)
    assert torch.equal(mask, masking.multiblock_tube_mask(6, GRID, num_blocks, scale, generator=_gen()))
    if scale == 0.7:  # two 70% blocks leave little: far more masked than visible
        assert mask.float().mean() > 0.6


def test_stage2_mask_views():
    v1, v2 = masking.stage2_mask_views(4, GRID, _gen())
    assert v1.shape == v2.shape == (4, N)
    assert v1.float().mean() < v2.float().mean()


def test_index_helpers():
    mask = torch.tensor([[True, False, True, False], [False, False, True, True]])
    assert masking.visible_indices(mask).tolist() == [[1, 3], [0, 1]]
    assert masking.masked_indices(mask).tolist() == [[0, 2], [2, 3]]
    x = torch.arange(8.0).view(2, 4, 1)
    assert masking.gather_tokens(x, masking.visible_indices(mask)).squeeze(-1).tolist() == [[1, 3], [4, 5]]
    with pytest.raises(ValueError):
        masking.visible_indices(torch.tensor([[True, False], [False, False]]))
