"""Diffusion decoder, linear ablation, and the patchify helpers that define their targets."""

import math

import pytest
import torch
import torch.nn.functional as F
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


def _decoder(**kw):
    torch.manual_seed(0)
    return DiffusionDecoder(cond_dim=16, patch_dim=P, width=32, depth=2, **kw)


@pytest.mark.parametrize("learn_sigma", [False, True])
def test_loss_masked_tokens_only_and_gradients(learn_sigma):
    dec = _decoder(learn_sigma=learn_sigma)
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


# ---------------------------------------------------------------- official variants (fidelity)
@pytest.mark.parametrize("tubelet", [1, 2])
def test_channel_first_order_round_trips_and_matches_the_official_layout(tubelet):
    from ivnext_world.models import PatchEmbed3D

    video = torch.randn(2, 3, 4, 8, 12)
    tokens = patchify(video, patch=4, tubelet=tubelet, order="cthw")
    grid = (4 // tubelet, 2, 3)
    assert torch.equal(unpatchify(tokens, grid, 4, tubelet, order="cthw"), video)
    # token 4 = frame-group 0, row 1, col 1; vector laid out (C, tubelet, p, p)
    expected = video[0, :, 0:tubelet, 4:8, 4:8].reshape(-1)
    assert torch.equal(tokens[0, 4], expected)
    # The patch projection's own layout (Conv3d weight flattened) is the same order.
    assert torch.equal(tokens, PatchEmbed3D(4, tubelet, 3, 16).patch_vectors(video))
    if tubelet == 1:  # the official targets: F.pixel_unshuffle per frame, tokens time-major
        frames = video.transpose(1, 2).flatten(0, 1)  # (B*T, C, H, W)
        official = F.pixel_unshuffle(frames, 4).permute(0, 2, 3, 1).reshape(2, -1, 48)
        assert torch.equal(tokens, official)
    # The two orders hold the same pixels, permuted; mixing them up scrambles the frames.
    last = patchify(video, patch=4, tubelet=tubelet, order="thwc")
    assert not torch.equal(last, tokens) and torch.equal(last.sort(-1).values, tokens.sort(-1).values)
    assert not torch.equal(unpatchify(tokens, grid, 4, tubelet, order="thwc"), video)
    with pytest.raises(ValueError, match="pixel order"):
        patchify(video, patch=4, tubelet=tubelet, order="hwc")


def _sigma_decoder(**kw):
    torch.manual_seed(0)
    return DiffusionDecoder(cond_dim=16, patch_dim=P, width=32, depth=2, learn_sigma=True, **kw)


class FixedOutput(nn.Module):
    """Stand-in denoiser returning given (eps | v) rows, whatever its input."""

    def __init__(self, out):
        super().__init__()
        self.out = out

    def forward(self, x, t, cond):
        return self.out


def test_learned_variance_loss_is_mse_plus_vlb_with_diffusers_variance():
    from diffusers import DDPMScheduler

    dec = _sigma_decoder()
    assert dec.net.out.out_features == 2 * P
    m = 6
    gen = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(m, P, generator=gen), torch.randn(m, P, generator=gen)
    eps = noise + 0.3 * torch.randn(m, P, generator=gen)  # an imperfect epsilon prediction
    v = torch.rand(m, P, generator=gen) * 2 - 1  # variance interpolation in [-1, 1]
    t = torch.tensor([0, 1, 7, 250, 600, 999])
    dec.net = FixedOutput(torch.cat([eps, v], dim=1))
    terms = dec.loss_terms(torch.zeros(m, 16), x0, noise, t)

    # Reference: the reverse step's mean and variance from diffusers' own DDPM step with
    # variance_type="learned_range" (the full 1000-step chain), the KL in closed form, bits per pixel.
    sched = DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", prediction_type="epsilon",
                          clip_sample=False, variance_type="learned_range")
    # Its tables in float64 (diffusers keeps float32; the first steps' betas are ~1e-5) and every
    # input in float64: the reference is then exact, whatever precision the decoder computes in.
    sched.betas = sched.betas.double()
    sched.alphas = 1 - sched.betas
    sched.alphas_cumprod, sched.one = torch.cumprod(sched.alphas, 0), torch.tensor(1.0, dtype=torch.float64)
    x_t = dec.add_noise(x0, noise, t)
    x0, x_t, eps, noise, v = (a.double() for a in (x0, x_t, eps, noise, v))
    for i, ti in enumerate(t.tolist()):
        def mean_of(e, _i=i, _t=ti):  # step() = mean + exp(0.5 logvar) z; subtract the same z
            out = torch.cat([e[_i:_i + 1], v[_i:_i + 1]], dim=1)
            prev = sched.step(out, _t, x_t[_i:_i + 1], generator=torch.Generator().manual_seed(9)).prev_sample
            z = torch.randn(1, P, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
            return prev - (torch.exp(0.5 * sched._get_variance(_t, v[_i:_i + 1])) * z if _t > 0 else 0)

        model_mean, true_mean = mean_of(eps), mean_of(noise)  # eps == noise gives the true posterior mean
        if ti > 0:
            model_lv = sched._get_variance(ti, v[i:i + 1])
            true_lv = torch.log(sched._get_variance(ti, variance_type="fixed_small"))
            nats = 0.5 * (-1 + model_lv - true_lv + torch.exp(true_lv - model_lv)
                          + (true_mean - model_mean) ** 2 * torch.exp(-model_lv))
        else:
            # t = 0: the posterior variance is 0; improved DDPM clips its log to t = 1's (diffusers:
            # log 1e-20, unused as the last step adds no noise), and the term is the decoder NLL
            # of 8-bit bins (half-width 1/255, open-ended beyond +-0.999).
            frac = (v[i:i + 1] + 1) / 2
            model_lv = frac * torch.log(sched.betas[0]) + (1 - frac) * torch.log(
                sched._get_variance(1, variance_type="fixed_small"))
            xi = x0[i:i + 1]
            normal = torch.distributions.Normal(model_mean, torch.exp(0.5 * model_lv))
            hi, lo = normal.cdf(xi + 1 / 255), normal.cdf(xi - 1 / 255)
            nats = -torch.where(xi < -0.999, hi.log(), torch.where(xi > 0.999, (1 - lo).log(), (hi - lo).log()))
        vlb = nats.mean() / math.log(2.0)
        mse = ((eps[i] - noise[i]) ** 2).mean()
        torch.testing.assert_close(terms["mse"][i].double(), mse)
        torch.testing.assert_close(terms["vlb"][i].double(), vlb, rtol=1e-4, atol=1e-6)
    # loss() is their sum, averaged over rows (same draws as loss_terms with the generator's t, noise).
    dec2 = _sigma_decoder()
    cond, target = torch.randn(m, 16), torch.randn(m, P)
    g = torch.Generator().manual_seed(4)
    t2 = torch.randint(0, 1000, (m,), generator=g)
    n2 = torch.randn((m, P), generator=g)
    terms2 = dec2.loss_terms(cond, target, n2, t2)
    torch.testing.assert_close(dec2.loss(cond, target, generator=torch.Generator().manual_seed(4)),
                               (terms2["mse"] + terms2["vlb"]).mean())


def test_variational_bound_trains_the_variance_only():
    dec = _sigma_decoder()
    out = torch.randn(5, 2 * P, requires_grad=True)
    dec.net = FixedOutput(out)
    terms = dec.loss_terms(torch.zeros(5, 16), torch.randn(5, P), torch.randn(5, P), torch.tensor([0, 3, 40, 500, 990]))
    (g_vlb,) = torch.autograd.grad(terms["vlb"].sum(), out, retain_graph=True)
    (g_mse,) = torch.autograd.grad(terms["mse"].sum(), out)
    assert g_vlb[:, :P].abs().sum() == 0 and g_vlb[:, P:].abs().sum() > 0  # stop-grad on the mean
    assert g_mse[:, P:].abs().sum() == 0 and g_mse[:, :P].abs().sum() > 0


def test_ddpm_sampling_uses_the_learned_variance_and_few_step_samplers_ignore_it():
    dec = _sigma_decoder().eval()
    cond = torch.zeros(4, 16)
    eps = 0.1 * torch.randn(4, P)

    def sample(v, kind):
        dec.net = FixedOutput(torch.cat([eps, torch.full((4, P), v)], dim=1))
        return dec.sample(cond, num_steps=6, scheduler=kind, generator=torch.Generator().manual_seed(1))

    for kind in ("ddim", "dpmsolver"):  # deterministic samplers: epsilon only
        assert torch.equal(sample(-1.0, kind), sample(1.0, kind))
    small, large = sample(-1.0, "ddpm"), sample(1.0, "ddpm")  # posterior variance vs beta_t
    assert not torch.allclose(small, large)
    assert torch.equal(sample(1.0, "ddpm"), large)  # reproducible from the generator
    # An exact epsilon oracle brings ancestral sampling back to x0 too (the last step adds no noise
    # and its mean is x0 itself), with the variance output present.
    x0 = 1.5 * torch.randn(4, P)
    alphas = dec.scheduler.alphas_cumprod

    class Oracle(nn.Module):
        def forward(self, x, t, c):
            a = alphas[t].view(-1, 1)
            return torch.cat([(x - a.sqrt() * x0) / (1 - a).sqrt(), torch.zeros_like(x)], dim=1)

    dec.net = Oracle()
    for kind in ("ddpm", "ddim"):
        out = dec.sample(cond, num_steps=10, scheduler=kind, generator=torch.Generator().manual_seed(0))
        torch.testing.assert_close(out, x0, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("order", ["cthw", "thwc"])
def test_decoded_samples_read_back_in_the_decoders_pixel_order(order):
    # Encode (targets) and decode (samples) use the decoder's order: an oracle that reproduces the
    # targets yields the clip itself after unpatchify(order=decoder.pixel_order).
    video = torch.randn(1, 3, 2, 8, 8)
    dec = DiffusionDecoder(cond_dim=16, patch_dim=3 * 4 * 4, width=32, depth=1, pixel_order=order)
    x0 = patchify(video, 4, 1, order=dec.pixel_order)[0]  # (N, P)
    alphas = dec.scheduler.alphas_cumprod

    class Oracle(nn.Module):
        def forward(self, x, t, c):
            a = alphas[t].view(-1, 1)
            return (x - a.sqrt() * x0) / (1 - a).sqrt()

    dec.net = Oracle()
    pix = dec.sample(torch.zeros(1, x0.shape[0], 16), num_steps=10, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(unpatchify(pix, (2, 2, 2), 4, 1, order=dec.pixel_order), video, atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="pixel order"):
        DiffusionDecoder(cond_dim=16, patch_dim=48, width=32, depth=1, pixel_order="chw")


class _Oracle(nn.Module):
    """A denoiser that knows x0: returns the exact epsilon or v for any (x_t, t)."""

    def __init__(self, dec: DiffusionDecoder, x0: torch.Tensor, error: float = 0.0):
        super().__init__()
        self.dec, self.x0, self.error = dec, x0, error

    def forward(self, x_t, t, cond):
        ab = self.dec.alphas_cumprod.double()[t.long()].unsqueeze(-1)
        x_t, x0 = x_t.double(), self.x0.double()
        eps = (x_t - ab.sqrt() * x0) / (1 - ab).sqrt()
        out = eps if self.dec.prediction_type == "epsilon" else ab.sqrt() * eps - (1 - ab).sqrt() * x0
        out = out + self.error * torch.ones_like(out)  # a small, fixed prediction error
        return torch.cat([out, torch.zeros_like(out)], -1).float() if self.dec.learn_sigma else out.float()


def test_v_prediction_keeps_the_first_sampler_step_sane_where_epsilon_amplifies_errors_20000x():
    """With the cosine schedule abar_T ~ 2e-9: an epsilon model's first DDIM step estimates x0 by dividing
    by sqrt(abar_T) ~ 5e-5, so an error of 1e-3 becomes ~20 (the sample leaves the data range and the
    denoiser never recovers); v-prediction's estimate has no division. With exact predictions both
    samplers return x0 in 4 steps."""
    x0 = torch.randn(16, P, generator=torch.Generator().manual_seed(0))
    first = {}
    for kind in ("epsilon", "v_prediction"):
        dec = DiffusionDecoder(8, P, width=16, depth=1, learn_sigma=True, prediction_type=kind)
        dec.net = _Oracle(dec, x0)
        out = dec.sample(torch.zeros(16, 8), num_steps=4, generator=torch.Generator().manual_seed(1))
        assert (out - x0).abs().mean() < 1e-4
        sched = dec.make_sampler("ddim")
        sched.set_timesteps(4)
        t = sched.timesteps[0]
        assert int(t) == 999  # trailing spacing starts at the last training step
        x_t = torch.randn(16, P, generator=torch.Generator().manual_seed(2))
        dec.net = _Oracle(dec, x0, error=1e-3)
        pred = dec.net(x_t, t.expand(16), None)[:, :P]
        first[kind] = (sched.step(pred, t, x_t).pred_original_sample - x0).abs().mean().item()
    assert first["v_prediction"] < 1e-2 and first["epsilon"] > 10.0
    with pytest.raises(ValueError, match="prediction_type"):
        DiffusionDecoder(8, P, prediction_type="sample")


def test_v_prediction_loss_targets_v_and_its_bound_uses_the_implied_epsilon():
    torch.manual_seed(0)
    x0, noise = torch.randn(6, P), torch.randn(6, P)
    t = torch.tensor([0, 10, 200, 500, 900, 999])
    dec = DiffusionDecoder(8, P, width=16, depth=1, learn_sigma=True, prediction_type="v_prediction")
    ab = dec.alphas_cumprod[t].unsqueeze(-1)
    v = ab.sqrt() * noise - (1 - ab).sqrt() * x0
    dec.net = _Oracle(dec, x0)
    terms = dec.loss_terms(torch.zeros(6, 8), x0, noise, t)
    assert terms["mse"].max() < 1e-8  # the oracle's v is the target
    eps_dec = DiffusionDecoder(8, P, width=16, depth=1, learn_sigma=True)
    eps_dec.net = _Oracle(eps_dec, x0)
    torch.testing.assert_close(terms["vlb"], eps_dec.loss_terms(torch.zeros(6, 8), x0, noise, t)["vlb"], atol=1e-3, rtol=1e-3)
    assert not torch.allclose(v, noise)
