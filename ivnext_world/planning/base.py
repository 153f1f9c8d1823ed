"""The one planner interface: a batched cost over action sequences in, the best sequence out.

Every planner (:class:`~.cem.CEM`, :class:`~.mppi.MPPI`, :class:`~.gradient.GradientPlanner`)
minimises ``cost_fn(actions (K, H, A)) -> (K,)`` over action sequences inside a box. It never sees
a world model: ``cost_fn`` is any batched callable (a world model rolled out and scored by an
objective, see :class:`~.problem.LatentPlanningProblem`, or an analytic system in the tests), so
the same code is tested on problems with a known optimum. The gradient planner also needs
``cost_fn`` to be differentiable.

Convention: planners work in the *checkpoint's normalised action space* (``(a - mean) / std`` with
the statistics stored in the world-model checkpoint), where the data's actions have unit spread
and ``N(0, 1)`` is a sensible initial search distribution; :class:`Bounds` holds the environment's
action box mapped into that space.

Devices: a planner searches on the device of its :class:`Bounds` (``bounds.to(wm.device)``;
:meth:`~.problem.WorldModelDynamics.bounds` and the agent put them on the world model's): the
candidates, means, stds and costs all live there, so a CUDA world model is fed CUDA candidates.
Costs returned on another device are moved to the candidates'. Random draws come from the
``generator``'s device (the CPU by default) and are moved, so a seed gives the same candidates on
every device. ``PlanResult`` tensors are on the bounds' device.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Protocol

import torch

__all__ = ["Bounds", "CostFn", "PlanResult", "Planner"]

CostFn = Callable[[torch.Tensor], torch.Tensor]  # (K, H, A) -> (K,)


@dataclass
class Bounds:
    """Per-dimension box ``low <= a <= high``, each ``(A,)``, in the planner's action space."""

    low: torch.Tensor
    high: torch.Tensor

    def __post_init__(self):
        self.low = torch.as_tensor(self.low, dtype=torch.float32)
        self.high = torch.as_tensor(self.high, dtype=torch.float32).to(self.low.device)
        if self.low.shape != self.high.shape or self.low.dim() != 1:
            raise ValueError(f"low/high must both be (A,), got {tuple(self.low.shape)} and {tuple(self.high.shape)}")
        if not bool((self.low < self.high).all()):
            raise ValueError(f"every low must be < high, got low={self.low.tolist()} high={self.high.tolist()}")

    @property
    def dim(self) -> int:
        return self.low.numel()

    @property
    def device(self) -> torch.device:
        """Where the planners search (candidates, means, stds, costs)."""
        return self.low.device

    def to(self, device: str | torch.device) -> "Bounds":
        return Bounds(self.low.to(device), self.high.to(device))

    @property
    def center(self) -> torch.Tensor:
        return (self.low + self.high) / 2

    def clamp(self, a: torch.Tensor) -> torch.Tensor:
        """``(..., A)`` -> the same, projected into the box."""
        return torch.maximum(torch.minimum(a, self.high.to(a)), self.low.to(a))

    @staticmethod
    def symmetric(dim: int, limit: float = 1.0) -> "Bounds":
        return Bounds(torch.full((dim,), -limit), torch.full((dim,), limit))


@dataclass
class PlanResult:
    """``actions (H, A)``: the best sequence found (planner space, inside the bounds); ``cost``: its
    cost; ``mean (H, A)``: the final search mean (what MPC warm-starts from; the best sequence for the
    gradient planner); ``history``: best cost after each iteration."""

    actions: torch.Tensor
    cost: float
    mean: torch.Tensor
    history: list[float] = field(default_factory=list)


class Planner(Protocol):
    """``plan(cost_fn, horizon, bounds, init=None) -> PlanResult``; ``init (H, A)`` warm-starts the search."""

    horizon: int

    def plan(self, cost_fn: CostFn, bounds: Bounds, init: torch.Tensor | None = None,
             generator: torch.Generator | None = None) -> PlanResult: ...


def initial_mean(horizon: int, bounds: Bounds, init: torch.Tensor | None) -> torch.Tensor:
    """Warm start ``(H, A)``: ``init`` (clamped; a shorter one is padded with its last row) or the box centre."""
    if init is None:
        return bounds.center.expand(horizon, -1).clone()
    init = torch.as_tensor(init, dtype=torch.float32).to(bounds.device)
    if init.dim() != 2 or init.shape[1] != bounds.dim:
        raise ValueError(f"init must be (H, {bounds.dim}), got {tuple(init.shape)}")
    if init.shape[0] < horizon:
        init = torch.cat([init, init[-1:].expand(horizon - init.shape[0], -1)])
    return bounds.clamp(init[:horizon].clone())


def check_costs(costs: torch.Tensor, k: int, device: torch.device) -> torch.Tensor:
    """``(k,)`` costs as fp32 on ``device`` (the candidates'), NaN -> +inf."""
    if costs.shape != (k,):
        raise ValueError(f"cost_fn must return one cost per candidate, shape ({k},), got {tuple(costs.shape)}")
    # A NaN candidate (e.g. a diverged rollout) must never win: rank it last.
    return torch.nan_to_num(costs.detach().float().to(device), nan=float("inf"))


def gaussian_noise(shape: tuple[int, ...], device: torch.device, generator: torch.Generator | None = None) -> torch.Tensor:
    """Standard normal draws on ``device``: from ``generator`` on its own device, then moved (a CPU
    generator cannot draw onto CUDA; this way one seed gives one search whatever the device)."""
    if generator is None:
        return torch.randn(shape, device=device)
    return torch.randn(shape, generator=generator, device=generator.device).to(device)


def sample_elites(cost_fn: CostFn, mean: torch.Tensor, std: torch.Tensor, bounds: Bounds, samples: int, k: int,
                  generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One population step shared by the sampling planners: the mean ``(H, A)`` and ``samples - 1``
    Gaussian perturbations of it (clamped to ``bounds``) are costed, and the ``k`` cheapest are
    returned: ``(k, H, A)`` actions and their ``(k,)`` costs, ascending."""
    noise = gaussian_noise((samples - 1, *mean.shape), mean.device, generator)
    cand = bounds.clamp(torch.cat([mean[None], mean + std * noise]))  # (K, H, A) on the bounds' device
    costs = check_costs(cost_fn(cand), samples, cand.device)
    elite_cost, idx = costs.topk(k, largest=False)
    return cand[idx], elite_cost


Refit = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def population_search(cost_fn: CostFn, bounds: Bounds, init: torch.Tensor | None, *, horizon: int, samples: int,
                      elites: int, iterations: int, init_std: float, warm_std: float, refit: Refit,
                      generator: torch.Generator | None = None) -> PlanResult:
    """The search loop of the sampling planners (CEM, MPPI): start from ``initial_mean`` with std
    ``warm_std`` when warm-started (else ``init_std``); each iteration runs :func:`sample_elites`,
    keeps the best sequence seen, and ``refit(elites (k, H, A), costs (k,)) -> (mean, std)`` sets
    the next sampling distribution. Costs are evaluated without autograd."""
    mean = initial_mean(horizon, bounds, init)  # (H, A)
    std = torch.full_like(mean, warm_std if init is not None else init_std)
    best, best_cost, history = mean.clone(), float("inf"), []
    with torch.no_grad():
        for _ in range(iterations):
            top, top_cost = sample_elites(cost_fn, mean, std, bounds, samples, elites, generator)  # (k, H, A)
            if top_cost[0] < best_cost:
                best, best_cost = top[0].clone(), float(top_cost[0])
            mean, std = refit(top, top_cost)
            history.append(best_cost)
    return PlanResult(best, best_cost, mean, history)
