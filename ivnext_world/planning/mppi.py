"""Model predictive path integral (MPPI) control, as TD-MPC2 runs it (arXiv 2310.16828, App. H).

TD-MPC2: 512 samples, 64 elites, 6 iterations, temperature 0.5, std clamped to [0.05, 2]. The
elites' weights are ``exp(-(cost - min) / (temperature * scale))`` and refit the mean and std.
TD-MPC2 scores returns whose scale its value normalisation controls; our costs are latent
distances with an arbitrary scale (it changes with the encoder and the objective), so the costs
are divided by ``scale`` = the elites' cost spread (max - min), which makes ``temperature``
unit-free: 0.5 = the worst elite weighs ``e^-2`` of the best.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .base import Bounds, CostFn, PlanResult, initial_mean, sample_elites

__all__ = ["MPPI", "MPPIConfig"]


@dataclass
class MPPIConfig:
    horizon: int = 5  # TD-MPC2 uses 3 with a value function; without one a longer horizon is needed
    samples: int = 512  # TD-MPC2
    elites: int = 64  # TD-MPC2
    iterations: int = 6  # TD-MPC2
    temperature: float = 0.5  # TD-MPC2 (unit-free here, see the module docstring)
    init_std: float = 2.0  # TD-MPC2 max_std
    min_std: float = 0.05  # TD-MPC2
    warm_std: float = 1.0

    def __post_init__(self):
        if not 0 < self.elites <= self.samples:
            raise ValueError(f"elites must be in 1..samples={self.samples}, got {self.elites}")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")


class MPPI:
    """``MPPI(cfg).plan(cost_fn, bounds, init) -> PlanResult``; costs are evaluated without autograd."""

    def __init__(self, cfg: MPPIConfig | None = None, **overrides):
        self.cfg = cfg or MPPIConfig(**overrides)
        self.horizon = self.cfg.horizon

    @torch.no_grad()
    def plan(self, cost_fn: CostFn, bounds: Bounds, init: torch.Tensor | None = None,
             generator: torch.Generator | None = None) -> PlanResult:
        c = self.cfg
        mean = initial_mean(c.horizon, bounds, init)  # (H, A)
        std = torch.full_like(mean, c.warm_std if init is not None else c.init_std)
        best, best_cost, history = mean.clone(), float("inf"), []
        for _ in range(c.iterations):
            elites, elite_cost = sample_elites(cost_fn, mean, std, bounds, c.samples, c.elites, generator)  # (E, H, A)
            if elite_cost[0] < best_cost:
                best, best_cost = elites[0].clone(), float(elite_cost[0])
            finite = torch.isfinite(elite_cost)
            spread = (elite_cost[finite].max() - elite_cost[0]).clamp_min(1e-12) if finite.any() else 1.0
            w = torch.softmax(-(elite_cost - elite_cost[0]) / (c.temperature * spread), dim=0)  # (E,)
            w = torch.where(finite, w, torch.zeros_like(w))
            w = w / w.sum()
            mean = torch.einsum("e,eha->ha", w, elites)
            var = torch.einsum("e,eha->ha", w, (elites - mean) ** 2)
            std = var.sqrt().clamp(c.min_std, c.init_std)
            history.append(best_cost)
        return PlanResult(best, best_cost, mean, history)
