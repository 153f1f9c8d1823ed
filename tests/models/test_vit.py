"""VideoViT encoder and its patch embedding: shapes, masking, intermediates, positions, registry, sizes."""

import copy

import pytest
import timm
import torch
import torch.nn.functional as F

from ivnext_world import masking
from ivnext_world.models import PRESETS, PatchEmbed3D, VideoPosEmbed, VideoViT, patchify, sincos_3d_table, unpatchify

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
    # The method itself: torch.compile(encoder).forward_features would be the uncompiled method.
    compiled = torch.compile(encoder.forward_features, backend="eager", fullgraph=True)
    torch.testing.assert_close(compiled(video), encoder.forward_features(video))


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


# ---------------------------------------------------------------------- patch embedding
def _conv3d_reference(pe: PatchEmbed3D, video: torch.Tensor) -> torch.Tensor:
    """The original formulation: per-patch RMSNorm on the patchified clip, un-patchify, Conv3d, RMSNorm."""
    p, tub, c = pe.patch_size, pe.tubelet_size, pe.in_chans
    grid = pe.grid(tuple(video.shape[2:]))
    x = pe.norm_before(patchify(video, p, tub))  # (B, N, t*p*p*C), channels last
    x = unpatchify(x, grid, p, tub, c)  # (B, C, T, H, W)
    x = F.conv3d(x, pe.proj.weight, pe.proj.bias, stride=pe.proj.stride)  # (B, D, T', H', W')
    return pe.norm(x.flatten(2).transpose(1, 2))


def _randomise_affine(pe: PatchEmbed3D) -> None:
    # Non-trivial norm scales and bias, so a wrong weight/scale layout cannot pass unnoticed.
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for prm in (pe.norm_before.weight, pe.norm.weight):
            prm.copy_(0.5 + torch.rand(prm.shape, generator=g))
        pe.proj.bias.copy_(torch.randn(pe.proj.bias.shape, generator=g))


@pytest.mark.parametrize("tubelet", [1, 2])
def test_patch_embed_matches_conv3d_formulation(tubelet):
    torch.manual_seed(0)
    pe = PatchEmbed3D(patch_size=14, tubelet_size=tubelet, in_chans=3, embed_dim=64)
    _randomise_affine(pe)
    video = torch.randn(2, 3, 4, 28, 42, generator=torch.Generator().manual_seed(1))
    out = pe(video)
    ref = _conv3d_reference(pe, video)
    assert out.shape == ref.shape == (2, (4 // tubelet) * 2 * 3, 64)
    assert (out - ref).abs().max() < 1e-5
    # Same gradients for every parameter (norm_before's scale is folded into the projection).
    grads = torch.autograd.grad(out.square().sum(), list(pe.parameters()))
    ref_grads = torch.autograd.grad(ref.square().sum(), list(pe.parameters()))
    for g, rg in zip(grads, ref_grads):
        torch.testing.assert_close(g, rg, rtol=1e-4, atol=1e-4)


def test_patch_embed_keeps_checkpoint_layout():
    pe = PatchEmbed3D(patch_size=14, tubelet_size=2, in_chans=3, embed_dim=64)
    assert isinstance(pe.proj, torch.nn.Conv3d)
    assert {k: tuple(v.shape) for k, v in pe.state_dict().items()} == {
        "norm_before.weight": (2 * 14 * 14 * 3,),
        "proj.weight": (64, 3, 2, 14, 14),
        "proj.bias": (64,),
        "norm.weight": (64,),
    }
    other = PatchEmbed3D(patch_size=14, tubelet_size=2, in_chans=3, embed_dim=64)
    _randomise_affine(other)
    pe.load_state_dict(other.state_dict())  # strict: same names and shapes
    video = torch.randn(1, 3, 2, 28, 28)
    torch.testing.assert_close(pe(video), other(video))


@pytest.mark.parametrize("tubelet", [1, 2])
def test_patch_embed_visible_indices_equal_full_then_gather(tubelet):
    pe = PatchEmbed3D(patch_size=14, tubelet_size=tubelet, in_chans=3, embed_dim=64)
    _randomise_affine(pe)
    video = torch.randn(2, 3, 4, 28, 42, generator=torch.Generator().manual_seed(2))
    grid = pe.grid((4, 28, 42))
    mask = masking.random_tube_mask(2, grid, 0.5, torch.Generator().manual_seed(0))
    idx = masking.visible_indices(mask)
    full = pe(video)
    torch.testing.assert_close(pe(video, idx), masking.gather_tokens(full, idx), rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError):
        pe(video, idx[:1])


@pytest.mark.parametrize("ratio", [0.0, 0.5, 0.75])
def test_masked_embed_equals_full_embed_then_gather(encoder, video, ratio):
    mask = masking.random_tube_mask(2, GRID, ratio, torch.Generator().manual_seed(4))
    idx = masking.visible_indices(mask)
    full = encoder.embed(video)  # (B, 4 + N, D): every token embedded, positions added
    expected = torch.cat([full[:, :4], masking.gather_tokens(full[:, 4:], idx)], dim=1)
    torch.testing.assert_close(encoder.embed(video, mask), expected, rtol=1e-6, atol=1e-6)


def test_masked_embed_on_interpolated_grid_and_gradients():
    # A grid other than the native one (interpolated positions) and the backward pass.
    torch.manual_seed(0)
    model = VideoViT(img_size=28, patch_size=14, num_frames=4, embed_dim=64, depth=1, num_heads=2)
    video = torch.randn(2, 3, 6, 42, 28)
    grid = model.token_grid(video.shape[2:])
    mask = masking.random_tube_mask(2, grid, 0.5, torch.Generator().manual_seed(5))
    idx = masking.visible_indices(mask)
    out = model.embed(video, mask)
    full = model.embed(video)
    ref = torch.cat([full[:, :4], masking.gather_tokens(full[:, 4:], idx)], dim=1)
    torch.testing.assert_close(out, ref, rtol=1e-6, atol=1e-6)
    params = [model.pos_embed.pos_embed, model.patch_embed.proj.weight, model.patch_embed.norm_before.weight]
    grads = torch.autograd.grad(out.square().sum(), params)
    ref_grads = torch.autograd.grad(ref.square().sum(), params)
    for g, rg in zip(grads, ref_grads):
        torch.testing.assert_close(g, rg, rtol=1e-5, atol=1e-6)


def test_torch_compile_traces_masked(encoder, video):
    # With the mask's visible count given, the masked encoder is one graph: no count read back.
    mask = masking.random_tube_mask(2, GRID, 0.75, torch.Generator().manual_seed(0))
    n_vis = masking.visible_count(GRID, 0.75)
    compiled = torch.compile(encoder.forward_intermediates, backend="eager", fullgraph=True)
    out, inter = compiled(video, mask, indices=2, num_visible=n_vis)
    ref, ref_inter = encoder.forward_intermediates(video, mask, indices=2)
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(inter, ref_inter)


def test_rmsnorm_is_torchs_fused_op_and_equals_timms(encoder, video):
    from timm.layers import RmsNorm as TimmRmsNorm
    from torch.overrides import TorchFunctionMode

    norms = {name: m for name, m in encoder.named_modules() if isinstance(m, torch.nn.RMSNorm)}
    assert len(norms) == 2 + 4 * encoder.depth  # patch embedding (2), per block norm1, norm2, q, k
    # The same computation as timm's unfused RmsNorm, in fp32 to 1e-6.
    for dim in {m.normalized_shape[0] for m in norms.values()}:
        ours = torch.nn.RMSNorm(dim, eps=1e-6)
        torch.nn.init.normal_(ours.weight)
        theirs = TimmRmsNorm(dim, eps=1e-6)
        theirs.load_state_dict(ours.state_dict())  # same parameter name
        x = 3 * torch.randn(64, dim)
        torch.testing.assert_close(ours(x), theirs(x), rtol=0, atol=1e-6)
    # An encoder built with timm's norm has the same state-dict keys and outputs: checkpoints load.
    old = copy.deepcopy(encoder)
    for name, m in norms.items():
        parent, _, attr = name.rpartition(".")
        setattr(old.get_submodule(parent), attr, TimmRmsNorm(m.normalized_shape[0], eps=m.eps))
    assert list(old.state_dict()) == list(encoder.state_dict())
    old.load_state_dict(encoder.state_dict())
    mask = masking.random_tube_mask(2, GRID, 0.5, torch.Generator().manual_seed(0))
    torch.testing.assert_close(encoder.forward_features(video, mask), old.forward_features(video, mask),
                               rtol=1e-5, atol=1e-5)

    class Calls(TorchFunctionMode):  # which functions the forward calls
        def __init__(self):
            super().__init__()
            self.names = []

        def __torch_function__(self, func, types, args=(), kwargs=None):
            self.names.append(getattr(func, "__name__", ""))
            return func(*args, **(kwargs or {}))

    with Calls() as calls:
        encoder.forward_features(video)
    assert calls.names.count("rms_norm") >= len(norms) - 1  # norm_before is folded into the projection
    assert "rsqrt" not in calls.names  # no hand-written norm left
