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

from .base import Bounds, CostFn, PlanResult, population_search

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

    def plan(self, cost_fn: CostFn, bounds: Bounds, init: torch.Tensor | None = None,
             generator: torch.Generator | None = None) -> PlanResult:
        c = self.cfg
        return population_search(cost_fn, bounds, init, horizon=c.horizon, samples=c.samples, elites=c.elites,
                                 iterations=c.iterations, init_std=c.init_std, warm_std=c.warm_std, refit=self._refit,
                                 generator=generator)

    def _refit(self, elites: torch.Tensor, costs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Path-integral weights of the elites ``(E, H, A)`` by their ascending costs ``(E,)`` -> mean, std."""
        c = self.cfg
        finite = torch.isfinite(costs)
        spread = (costs[finite].max() - costs[0]).clamp_min(1e-12) if finite.any() else 1.0
        w = torch.softmax(-(costs - costs[0]) / (c.temperature * spread), dim=0)  # (E,)
        w = torch.where(finite, w, torch.zeros_like(w))
        w = w / w.sum()
        mean = torch.einsum("e,eha->ha", w, elites)
        var = torch.einsum("e,eha->ha", w, (elites - mean) ** 2)
        return mean, var.sqrt().clamp(c.min_std, c.init_std)
