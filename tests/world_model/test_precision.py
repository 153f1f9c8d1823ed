"""Inference precision: fp32 by default on the CPU (bit-identical to calling the modules directly),
bf16 autocast on request (CPU autocast runs bf16 too), fp32 outputs and fp32 planning costs."""
import pytest
import torch

from ivnext_world.planning import CEM, WorldModelDynamics, make_cost
from ivnext_world.pretrain.run import load_epd
from ivnext_world.world_model import WorldModel
from ivnext_world.world_model.latents import encode_video
from ivnext_world.world_model.precision import inference_autocast, inference_dtype

from ._wm_helpers import tiny_predictor
from .test_model import STATS, frames

# bf16 keeps 8 bits of mantissa (relative step 2^-8 = 0.4% per rounding); the tiny model's encode
# and 5-step rollout land at 0.2-0.3% relative L2 error. 2% leaves room for other CPUs' kernels
# while still catching a wrong cast (an fp16 overflow, a bf16 input to a cost).
BF16_REL_TOL = 0.02


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


@pytest.fixture
def wm(epd_ckpt):
    epd, _ = load_epd(epd_ckpt)
    return WorldModel(epd, tiny_predictor(), STATS)


def test_auto_is_fp32_on_the_cpu_and_bit_identical_to_the_modules(wm):
    assert wm.precision == "auto" and inference_dtype("auto", "cpu") is None
    x = frames(b=1, t=2, size=56)
    # encode == transform + encode_video with no autocast, bit for bit
    want = encode_video(wm.encoder, wm._transform(x.flatten(0, 1)).unflatten(0, (1, 2)), wm.pool)
    z = wm.encode(x)
    assert torch.equal(z, want)
    acts = torch.randn(4, 3, 2, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = wm.predictor.rollout(z, STATS.normalize_actions(acts))
    assert torch.equal(wm.rollout(z, acts), want)


@pytest.mark.filterwarnings("ignore:Mismatch dtype between input and weight")  # RMSNorm: bf16 in, fp32 weight
def test_bf16_rollouts_run_under_autocast_and_stay_close_to_fp32(wm):
    x = frames(b=1, t=2)
    acts = torch.randn(8, 5, 2, generator=torch.Generator().manual_seed(0))
    prop = torch.randn(1, 2, 3, generator=torch.Generator().manual_seed(1))
    z32 = wm.encode(x)
    r32 = wm.rollout(z32, acts, proprio=prop)
    wm.precision = "bf16"
    z16 = wm.encode(x)
    r16 = wm.rollout(z32, acts, proprio=prop)
    assert z16.dtype == r16.dtype == torch.float32  # fp32 out whatever ran inside
    # It really ran in bf16 (not silently fp32) and it is close.
    assert not torch.equal(z16, z32) and not torch.equal(r16, r32)
    assert rel_err(z16, z32) < BF16_REL_TOL, rel_err(z16, z32)
    assert rel_err(r16, r32) < BF16_REL_TOL, rel_err(r16, r32)
    # The cached rollout and the recompute-everything reference agree under bf16 too.
    assert rel_err(wm.rollout(z32, acts, proprio=prop, use_cache=False), r16) < BF16_REL_TOL
    # Gradient planning through a bf16 rollout: gradients reach the fp32 actions.
    a = acts.clone().requires_grad_(True)
    wm.rollout(z32, a, grad=True).pow(2).mean().backward()
    assert a.grad is not None and a.grad.dtype == torch.float32 and a.grad.abs().sum() > 0


def test_planner_costs_are_fp32_under_bf16(wm):
    wm.precision = "bf16"
    z = wm.encode(frames(b=1, t=1))
    dyn = WorldModelDynamics(wm, z)
    seen = []

    def objective(states, actions):
        seen.append((states.dtype, actions.dtype, torch.is_autocast_enabled("cpu")))
        return (states[:, -1] - z[0, -1]).abs().flatten(1).mean(1)

    res = CEM(horizon=2, samples=6, topk=2, iterations=2).plan(make_cost(dyn, objective, dyn.to_raw),
                                                               dyn.bounds([-1, -1], [1, 1]),
                                                               generator=torch.Generator().manual_seed(0))
    assert seen and all(s == (torch.float32, torch.float32, False) for s in seen)  # costs outside autocast
    assert res.cost == res.cost and res.actions.dtype == torch.float32


def test_precision_values_are_checked(wm, epd_ckpt):
    with pytest.raises(ValueError, match="precision must be one of"):
        WorldModel(load_epd(epd_ckpt)[0], tiny_predictor(), STATS, precision="fp16")
    with pytest.raises(ValueError, match="precision must be one of"):
        wm.precision = "half"
    with pytest.raises(ValueError, match="precision must be one of"):
        inference_autocast("half", "cpu")
    assert inference_dtype("bf16", "cpu") is torch.bfloat16 and inference_dtype("fp32", "cuda") is None
