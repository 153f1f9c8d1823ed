"""Receding-horizon control: plan H actions, execute the first k, replan from the new observation.

DINO-WM executes 5 of 5 planned actions before replanning; executing fewer costs more planning per
action and reacts faster. Each replan warm-starts from the previous plan shifted by the k executed
actions (the tail padded with its last action, as TD-MPC2 does). The controller holds only the
current plan (a small detached tensor): no rollout, cache or graph survives a call, so memory stays
flat however long it runs.
"""
from __future__ import annotations

from typing import Callable

import torch

from .base import Bounds, CostFn, PlanResult, Planner

__all__ = ["MPC"]


class MPC:
    """``mpc.act(make_cost) -> action (A,)`` in planner space, inside ``bounds``, on the CPU (what an
    env takes; the search itself runs on the bounds' device, see :mod:`.base`).

    Args:
        planner: any :class:`~.base.Planner`.
        bounds: the action box in planner space.
        execute: actions executed per plan (1 .. planner.horizon).
        warm_start: start each search from the previous plan, shifted.
        seed: seeds the planner's sampling.

    ``make_cost`` is called only when a new plan is needed (so the observation is encoded only
    then). ``num_plans`` counts the plans made since ``reset()``; ``last`` is the last PlanResult.
    """

    def __init__(self, planner: Planner, bounds: Bounds, execute: int = 1, warm_start: bool = True, seed: int = 0):
        if not 1 <= execute <= planner.horizon:
            raise ValueError(f"execute must be in 1..horizon={planner.horizon}, got {execute}")
        self.planner, self.bounds, self.execute, self.warm_start = planner, bounds, execute, warm_start
        self.generator = torch.Generator().manual_seed(seed)
        self.reset()

    def reset(self) -> None:
        self._queue: list[torch.Tensor] = []
        self._prev: torch.Tensor | None = None
        self.num_plans = 0
        self.last: PlanResult | None = None

    @property
    def needs_plan(self) -> bool:
        """True when the next ``act`` will plan (the executed part of the last plan is used up)."""
        return not self._queue

    def act(self, make_cost: Callable[[], CostFn]) -> torch.Tensor:
        if not self._queue:
            init = None
            if self.warm_start and self._prev is not None:
                prev = self._prev
                init = torch.cat([prev[self.execute:], prev[-1:].expand(self.execute, -1)])  # shifted, tail = last
            result = self.planner.plan(make_cost(), self.bounds, init=init, generator=self.generator)
            self.last = result
            self.num_plans += 1
            self._prev = result.mean.detach().clone()
            # One transfer per plan: the executed actions go to the CPU, the warm start stays on the device.
            self._queue = list(self.bounds.clamp(result.actions.detach())[: self.execute].cpu())
        return self._queue.pop(0)
