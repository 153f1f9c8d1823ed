"""Cross-entropy method (CEM) over action sequences, with DINO-WM's defaults.

DINO-WM (arXiv 2411.04983, Sec. 3.3 / App.): horizon 5, 300 samples, the top 30 refit a diagonal
Gaussian, 30 iterations. The current mean is always one of the candidates (so the best cost never
gets worse from one iteration to the next), samples are clipped into the action box, and the
standard deviation is floored at ``min_std`` so a collapsed search can still move.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .base import Bounds, CostFn, PlanResult, population_search

__all__ = ["CEM", "CEMConfig"]


@dataclass
class CEMConfig:
    horizon: int = 5  # DINO-WM
    samples: int = 300  # DINO-WM
    topk: int = 30  # DINO-WM
    iterations: int = 30  # DINO-WM
    init_std: float = 1.0  # in normalised action units: the data's own spread
    min_std: float = 0.05
    warm_std: float = 0.5  # initial std when warm-started (the previous plan is already informed)

    def __post_init__(self):
        if not 0 < self.topk <= self.samples:
            raise ValueError(f"topk must be in 1..samples={self.samples}, got {self.topk}")
        if self.horizon < 1 or self.iterations < 1:
            raise ValueError(f"horizon and iterations must be >= 1, got {self.horizon}, {self.iterations}")


class CEM:
    """``CEM(cfg).plan(cost_fn, bounds, init) -> PlanResult``; costs are evaluated without autograd."""

    def __init__(self, cfg: CEMConfig | None = None, **overrides):
        self.cfg = cfg or CEMConfig(**overrides)
        self.horizon = self.cfg.horizon

    def plan(self, cost_fn: CostFn, bounds: Bounds, init: torch.Tensor | None = None,
             generator: torch.Generator | None = None) -> PlanResult:
        c = self.cfg

        def refit(elites: torch.Tensor, costs: torch.Tensor):  # the elites' own mean and (floored) std
            return elites.mean(0), elites.std(0, unbiased=False).clamp_min(c.min_std)

        return population_search(cost_fn, bounds, init, horizon=c.horizon, samples=c.samples, elites=c.topk,
                                 iterations=c.iterations, init_std=c.init_std, warm_std=c.warm_std, refit=refit,
                                 generator=generator)
