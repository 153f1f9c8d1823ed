"""Mask generators: ratios, equal visible counts, tubes, determinism, attention preference."""

import math

import pytest
import torch
from _host_reads import HostReads  # tests/ is on sys.path (rootdir conftest)

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


def test_visible_indices_with_a_known_count():
    mask = masking.random_tube_mask(3, GRID, 0.75, _gen())
    k = masking.visible_count(GRID, 0.75)
    assert k == 4 * 16
    assert torch.equal(masking.visible_indices(mask, k), masking.visible_indices(mask))
    assert torch.equal(masking.masked_indices(mask, N - k), masking.masked_indices(mask))
    with HostReads() as reads:
        masking.visible_indices(mask, k)
    assert reads.total == 0  # without the count: the count itself is read back
    with pytest.raises(ValueError, match="num_visible=63"):
        masking.visible_indices(mask, k - 1)


# V-JEPA's multi-block collator as this module sampled it before it moved to batched tensor ops
# (sample by sample, try by try, reading every block position back to the host). The batched
# sampler must draw masks with the same statistics.
def _reference_multiblock(batch_size, grid, num_blocks, scale, generator, aspect_ratio=(0.75, 1.5), max_tries=20):
    t, h, w = grid
    r = torch.rand(2, generator=generator).tolist()
    s = scale[0] + r[0] * (scale[1] - scale[0])
    ar = aspect_ratio[0] + r[1] * (aspect_ratio[1] - aspect_ratio[0])
    area = max(1, int(h * w * s))
    bh, bw = min(h, max(1, round(math.sqrt(area * ar)))), min(w, max(1, round(math.sqrt(area / ar))))
    spatial = torch.zeros(batch_size, h, w, dtype=torch.bool)
    for i in range(batch_size):
        for _ in range(max_tries):
            m = torch.zeros(h, w, dtype=torch.bool)
            tops = torch.randint(0, h - bh + 1, (num_blocks,), generator=generator).tolist()
            lefts = torch.randint(0, w - bw + 1, (num_blocks,), generator=generator).tolist()
            for top, left in zip(tops, lefts):
                m[top:top + bh, left:left + bw] = True
            if not m.all():
                break
        else:
            m.view(-1)[int(torch.randint(0, h * w, (1,), generator=generator))] = False
        spatial[i] = m
    visible = ~spatial.reshape(batch_size, h * w)
    scores = torch.rand(visible.shape, generator=generator).masked_fill(~visible, -1.0)
    keep = torch.zeros_like(visible).scatter_(1, scores.topk(int(visible.sum(1).min()), 1).indices, True)
    return (~keep).unsqueeze(1).expand(batch_size, t, h * w).reshape(batch_size, -1)


def test_block_shape_is_the_collators_formula():
    for h, w, scale, ar in [(16, 16, (0.15, 0.15), (0.75, 1.5)), (8, 10, (0.1, 0.9), (0.5, 2.0))]:
        g = _gen()
        for _ in range(300):
            state = g.get_state()
            bh, bw = masking._sample_block_shape(h, w, scale, ar, g, "cpu")
            r = torch.rand(2, generator=torch.Generator().set_state(state)).tolist()
            s, a = scale[0] + r[0] * (scale[1] - scale[0]), ar[0] + r[1] * (ar[1] - ar[0])
            area = max(1, int(h * w * s))
            assert (int(bh), int(bw)) == (min(h, max(1, round(math.sqrt(area * a)))),
                                          min(w, max(1, round(math.sqrt(area / a)))))


@pytest.mark.parametrize("num_blocks, scale", [(8, 0.15), (2, 0.7)])  # Stage 2's two views
def test_multiblock_statistics_match_the_per_sample_collator(num_blocks, scale, one_torch_thread):
    grid, batches = (1, 16, 16), 300  # tolerances below are ~4 standard errors of the difference
    g_new, g_ref = _gen(1), _gen(2)
    new = torch.cat([masking.multiblock_tube_mask(8, grid, num_blocks, scale, generator=g_new) for _ in range(batches)])
    ref = torch.cat([_reference_multiblock(8, grid, num_blocks, (scale, scale), g_ref) for _ in range(batches)])
    # Masked fraction (mean, spread over batches) and where in the frame tokens get masked.
    frac_new, frac_ref = new.float().mean(1).view(batches, 8)[:, 0], ref.float().mean(1).view(batches, 8)[:, 0]
    assert abs(frac_new.mean() - frac_ref.mean()) < 0.015
    assert abs(frac_new.std() - frac_ref.std()) < 0.015
    where_new, where_ref = new.float().mean(0).view(4, 4, 4, 4), ref.float().mean(0).view(4, 4, 4, 4)
    torch.testing.assert_close(where_new.mean((1, 3)), where_ref.mean((1, 3)), rtol=0, atol=0.05)  # 4x4 regions


def test_stage2_mask_sampling_reads_nothing_back():
    # On a GPU each value read on the host is a sync: the per-sample sampler read ~50 for these 8.
    with HostReads() as reads:
        v1, v2 = masking.stage2_mask_views(8, GRID, _gen())
    assert reads.total == 0, reads.reads
    assert _is_tube(v1) and _is_tube(v2)
