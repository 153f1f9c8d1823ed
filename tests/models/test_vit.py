"""VideoViT encoder: shapes, masking, intermediates, position interpolation, registry, sizes."""

import pytest
import timm
import torch

from ivnext_world import masking
from ivnext_world.models import PRESETS, VideoPosEmbed, VideoViT, sincos_3d_table

from .conftest import FRAMES, GRID

N = GRID[0] * GRID[1] * GRID[2]


def test_unmasked_and_masked_shapes(encoder, video):
    assert encoder.grid_size == GRID
    out = encoder.forward_features(video)
    assert out.shape == (2, 4 + N, 96)
    mask = masking.random_tube_mask(2, GRID, 0.75, torch.Generator().manual_seed(0))
    n_vis = int((~mask[0]).sum())
    assert encoder.forward_features(video, mask).shape == (2, 4 + n_vis, 96)
    pooled, attn = encoder.forward_head(out, return_attn=True)
    assert pooled.shape == (2, encoder.pool_dim) and attn.shape == (2, 4 + N)
    assert encoder(video, mask).shape == (2, encoder.pool_dim)


def test_all_visible_mask_equals_unmasked(encoder, video):
    mask = torch.zeros(2, N, dtype=torch.bool)
    torch.testing.assert_close(encoder.forward_features(video, mask), encoder.forward_features(video))


def test_masked_pixels_do_not_leak(encoder, video):
    # Tokens at masked positions are dropped before the blocks: their pixels cannot matter.
    mask = masking.random_tube_mask(2, GRID, 0.5, torch.Generator().manual_seed(1))
    pix_mask = mask.view(2, FRAMES, GRID[1], GRID[2]).repeat_interleave(14, 2).repeat_interleave(14, 3)
    noisy = torch.where(pix_mask.unsqueeze(1), torch.randn_like(video), video)
    torch.testing.assert_close(encoder.forward_features(noisy, mask), encoder.forward_features(video, mask))


def test_forward_intermediates(encoder, video):
    mask = masking.random_tube_mask(2, GRID, 0.75, torch.Generator().manual_seed(0))
    final, inter = encoder.forward_intermediates(video, mask, indices=2)
    torch.testing.assert_close(final, encoder.forward_features(video, mask))
    n_vis = final.shape[1] - 4
    assert [t.shape for t in inter] == [(2, n_vis, 96)] * 2
    torch.testing.assert_close(inter[-1], final[:, 4:])  # last block output = final tokens
    with_prefix = encoder.forward_intermediates(video, mask, indices=[-1, 0], return_prefix_tokens=True,
                                                intermediates_only=True, stop_early=True)
    torch.testing.assert_close(with_prefix[0], final)  # order follows the request
    assert with_prefix[1].shape == final.shape
    with pytest.raises(ValueError):
        encoder.forward_intermediates(video, indices=[7])


def test_mask_shape_is_checked(encoder, video):
    with pytest.raises(ValueError):
        encoder.forward_features(video, torch.zeros(2, N + 1, dtype=torch.bool))
    uneven = torch.zeros(2, N, dtype=torch.bool)
    uneven[0, 0] = True
    with pytest.raises(ValueError):
        encoder.forward_features(video, uneven)


def test_pos_embed_interpolates_time_and_space():
    model = VideoViT(img_size=28, patch_size=14, num_frames=8, embed_dim=64, depth=1, num_heads=2,
                     num_cls_tokens=2)
    for t in (4, 8, 16):
        assert model.forward_features(torch.randn(1, 3, t, 28, 28)).shape == (1, 2 + t * 4, 64)
    assert model.forward_features(torch.randn(1, 3, 4, 42, 56)).shape == (1, 2 + 4 * 3 * 4, 64)
    pe = model.pos_embed
    assert pe(pe.grid) is pe.pos_embed  # no interpolation on the native grid
    # Interpolating 8 -> 16 frames keeps the cls slots and the value range of the table.
    up = pe((16, 2, 2))
    torch.testing.assert_close(up[:, :2], pe.pos_embed[:, :2])
    assert up[:, 2:].abs().max() <= pe.pos_embed[:, 2:].abs().max() + 1e-6


def test_sincos_table_splits_time_and_space():
    d, grid = 64, (3, 2, 5)
    table = sincos_3d_table(d, grid).view(*grid, d)
    temporal, spatial = table[..., : d // 4], table[..., d // 4:]
    assert torch.allclose(temporal, temporal[:, :1, :1].expand_as(temporal))  # same over space
    assert torch.allclose(spatial, spatial[:1].expand_as(spatial))  # same over time
    assert not torch.allclose(temporal[0], temporal[1]) and not torch.allclose(spatial[:, 0], spatial[:, 1])
    assert VideoPosEmbed(d, grid, num_prefix=1).pos_embed.shape == (1, 1 + 30, d)


def test_tubelet_and_grad_checkpointing():
    torch.manual_seed(0)
    model = VideoViT(img_size=28, patch_size=14, tubelet_size=2, num_frames=4, embed_dim=64, depth=2,
                     num_heads=2).train()
    x = torch.randn(2, 3, 4, 28, 28)
    assert model.grid_size == (2, 2, 2)
    ref = model(x)
    ref.sum().backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    model.set_grad_checkpointing(True)
    out = model(x)
    out.sum().backward()
    torch.testing.assert_close(out, ref)
    for g, p in zip(grads, model.parameters()):
        torch.testing.assert_close(p.grad, g)


def test_torch_compile_traces(encoder, video):
    compiled = torch.compile(encoder, backend="eager")
    torch.testing.assert_close(compiled.forward_features(video), encoder.forward_features(video))


def test_timm_registry():
    assert set(timm.list_models("ivnext_vit_*")) == set(PRESETS)
    model = timm.create_model("ivnext_vit_tiny_patch14_224", pretrained=False, img_size=28, num_frames=2)
    assert isinstance(model, VideoViT) and model.grid_size == (2, 2, 2)
    with pytest.raises(ValueError, match="checkpoint_path"):
        timm.create_model("ivnext_vit_base_patch14_224", pretrained=True)


@pytest.mark.parametrize("name, low, high", [
    ("ivnext_vit_base_patch14_224", 85e6, 87e6),  # ViT-B: ~86M
    ("ivnext_vit_large_patch14_224", 302e6, 305e6),  # ViT-L: ~304M
])
def test_param_counts_on_meta(name, low, high):
    with torch.device("meta"):  # no memory is allocated
        model = timm.create_model(name)
    backbone = sum(p.numel() for n, p in model.named_parameters()
                   if not n.startswith(("head.", "pos_embed.")))
    assert low < backbone < high
    assert model.pos_embed.pos_embed.shape[1] == 4 + 16 * 16 * 16
