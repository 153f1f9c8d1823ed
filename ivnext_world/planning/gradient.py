"""Gradient-based planning: Adam on the action sequence through a differentiable cost.

As DINO-WM's gradient-descent planner, with a few random restarts run as one batch (gradient
descent through a learned model gets stuck in local minima; restarts are cheap when batched). After
every step the actions are projected back into the box. ``cost_fn`` must be differentiable with
respect to its input (for a world model: ``WorldModel.rollout(..., grad=True)``); nothing of the
graph outlives one step.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .base import Bounds, CostFn, PlanResult, check_costs, gaussian_noise, initial_mean

__all__ = ["GradientPlanner", "GradientConfig"]


@dataclass
class GradientConfig:
    horizon: int = 5
    iterations: int = 30
    lr: float = 0.1  # Adam step in normalised action units
    restarts: int = 4  # candidate sequences optimised in parallel; the first starts at the warm start
    init_std: float = 1.0  # spread of the random restarts around the warm start / box centre

    def __post_init__(self):
        if self.restarts < 1 or self.iterations < 1:
            raise ValueError(f"restarts and iterations must be >= 1, got {self.restarts}, {self.iterations}")


class GradientPlanner:
    """``GradientPlanner(cfg).plan(cost_fn, bounds, init) -> PlanResult``."""

    def __init__(self, cfg: GradientConfig | None = None, **overrides):
        self.cfg = cfg or GradientConfig(**overrides)
        self.horizon = self.cfg.horizon

    def plan(self, cost_fn: CostFn, bounds: Bounds, init: torch.Tensor | None = None,
             generator: torch.Generator | None = None) -> PlanResult:
        c = self.cfg
        mean = initial_mean(c.horizon, bounds, init)  # (H, A) on the bounds' device
        noise = gaussian_noise((c.restarts - 1, *mean.shape), mean.device, generator) * c.init_std
        x = bounds.clamp(torch.cat([mean[None], mean + noise])).requires_grad_(True)  # (R, H, A)
        opt = torch.optim.Adam([x], lr=c.lr)
        best, best_cost, history = mean.clone(), float("inf"), []
        for _ in range(c.iterations + 1):
            with torch.enable_grad():
                costs = cost_fn(x)
                detached = check_costs(costs, c.restarts, x.device)
                i = int(detached.argmin())
                if detached[i] < best_cost:
                    best, best_cost = x[i].detach().clone(), float(detached[i])
                history.append(best_cost)
                if len(history) > c.iterations:
                    break  # the last pass only scores the final step
                opt.zero_grad(set_to_none=True)
                costs.sum().backward()  # restarts are independent: the sum's gradient is each one's own
            opt.step()
            with torch.no_grad():
                x.copy_(bounds.clamp(x))
        return PlanResult(best, best_cost, best.clone(), history[1:])
