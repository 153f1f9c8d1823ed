"""Diffusion decoder, linear ablation, and the patchify helpers that define their targets."""

import pytest
import torch
from torch import nn

from ivnext_world.models import DiffusionDecoder, LinearPixelDecoder, patchify, unpatchify

P = 2 * 4 * 4 * 3  # tubelet 2, patch 4, RGB


@pytest.mark.parametrize("tubelet", [1, 2])
def test_patchify_round_trip(tubelet):
    video = torch.randn(2, 3, 4, 8, 12)
    tokens = patchify(video, patch=4, tubelet=tubelet)
    assert tokens.shape == (2, (4 // tubelet) * 2 * 3, tubelet * 4 * 4 * 3)
    assert torch.equal(unpatchify(tokens, (4 // tubelet, 2, 3), 4, tubelet), video)


def test_patchify_layout():
    video = torch.randn(1, 3, 2, 8, 8)
    tokens = patchify(video, patch=4, tubelet=1)
    # token 3 = frame 0, row 1, col 1; vector laid out (tubelet, p, p, C)
    expected = video[0, :, 0, 4:8, 4:8].permute(1, 2, 0).reshape(-1)
    assert torch.equal(tokens[0, 3], expected)
    with pytest.raises(ValueError):
        patchify(torch.randn(1, 3, 3, 8, 8), patch=4, tubelet=2)


def _decoder():
    torch.manual_seed(0)
    return DiffusionDecoder(cond_dim=16, patch_dim=P, width=32, depth=2)


def test_loss_masked_tokens_only_and_gradients():
    dec = _decoder()
    # Modulations and the output layer start at zero (DiT init), which makes the condition's
    # gradient exactly zero at step 0; give them small weights to test the wiring.
    for m in dec.net.modules():
        if isinstance(m, nn.Linear) and m.weight.abs().sum() == 0:
            nn.init.normal_(m.weight, std=0.02)
    cond = torch.randn(2, 6, 16, requires_grad=True)
    target = torch.randn(2, 6, P)
    mask = torch.zeros(2, 6, dtype=torch.bool)
    mask[:, :3] = True
    loss = dec.loss(cond, target, mask, generator=torch.Generator().manual_seed(0))
    loss.backward()
    assert loss.ndim == 0 and torch.isfinite(loss)
    assert cond.grad[:, :3].abs().sum() > 0 and cond.grad[:, 3:].abs().sum() == 0
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in dec.net.parameters())
    # Changing visible targets does not change the loss.
    other = target.clone()
    other[:, 3:] = 100.0
    again = dec.loss(cond, other, mask, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(again, loss)


def test_batch_mul_repeats_rows():
    dec = _decoder()
    dec.batch_mul = 3
    loss = dec(torch.randn(5, 16), torch.randn(5, P))
    assert torch.isfinite(loss)


@pytest.mark.parametrize("kind", ["ddim", "dpmsolver"])
def test_sample_shape_and_determinism(kind):
    dec = _decoder().eval()
    cond = torch.randn(2, 3, 16)
    a = dec.sample(cond, num_steps=5, scheduler=kind, generator=torch.Generator().manual_seed(1))
    b = dec.sample(cond, num_steps=5, scheduler=kind, generator=torch.Generator().manual_seed(1))
    c = dec.sample(cond, num_steps=5, scheduler=kind, generator=torch.Generator().manual_seed(2))
    assert a.shape == (2, 3, P)
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize("kind", ["ddim", "dpmsolver"])
def test_sampler_recovers_target_with_oracle_denoiser(kind):
    # An exact epsilon predictor for a known x0 must lead any correct sampler back to x0.
    dec = _decoder()
    x0 = 1.5 * torch.randn(4, P)
    alphas = dec.scheduler.alphas_cumprod

    class Oracle(nn.Module):
        def forward(self, x, t, cond):
            a = alphas[t].view(-1, 1)
            return (x - a.sqrt() * x0) / (1 - a).sqrt()

    dec.net = Oracle()
    out = dec.sample(torch.zeros(4, 16), num_steps=10, scheduler=kind, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(out, x0, atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError):
        dec.sample(torch.zeros(4, 16), scheduler="euler")


def test_linear_decoder_interface():
    dec = LinearPixelDecoder(cond_dim=16, patch_dim=P)
    cond, target = torch.randn(2, 6, 16), torch.randn(2, 6, P)
    mask = torch.rand(2, 6) > 0.5
    loss = dec.loss(cond, target, mask)
    loss.backward()
    assert dec.proj.weight.grad is not None
    assert dec.sample(cond, num_steps=3, scheduler="ddim").shape == (2, 6, P)


def _trained_looking_decoder():
    """A decoder whose zero-initialised layers (DiT/MAR init) have small weights, so every matmul
    contributes to the output as after some training."""
    dec = _decoder()
    for m in dec.net.modules():
        if isinstance(m, nn.Linear) and m.weight.abs().sum() == 0:
            nn.init.normal_(m.weight, std=0.05)
    return dec


def test_forward_process_is_diffusers_add_noise():
    dec = _decoder()
    x0, noise = torch.randn(50, P), torch.randn(50, P)
    t = torch.randint(0, 1000, (50,), generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(dec.add_noise(x0, noise, t), dec.scheduler.add_noise(x0, noise, t))
    with torch.autocast("cpu", dtype=torch.bfloat16):  # the schedule stays fp32 under autocast
        assert dec.add_noise(x0, noise, t).dtype == torch.float32
    assert "alphas_cumprod" not in dec.state_dict()  # derived from the config, not a checkpoint entry


def test_denoiser_matmuls_run_in_the_autocast_dtype():
    dec = _trained_looking_decoder()
    dtypes = {}
    for name, m in dec.net.named_modules():
        if isinstance(m, nn.Linear):
            m.register_forward_hook(lambda mod, args, out, name=name: dtypes.__setitem__(name, out.dtype))
    cond, target = torch.randn(64, 16), torch.randn(64, P)
    fp32 = dec.loss(cond, target, generator=torch.Generator().manual_seed(0))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        bf16 = dec.loss(cond, target, generator=torch.Generator().manual_seed(0))
    # Every matmul in bf16 but the input projection of the noisy pixels (their small noise levels
    # are below bf16's resolution); the loss itself is reduced in fp32.
    assert dtypes.pop("input_proj") == torch.float32
    linears = sum(isinstance(m, nn.Linear) for m in dec.net.modules())
    assert len(dtypes) == linears - 1 and set(dtypes.values()) == {torch.bfloat16}, dtypes
    assert bf16.dtype == torch.float32 and torch.isfinite(bf16)
    torch.testing.assert_close(bf16, fp32, rtol=2e-2, atol=0)
