"""Turn dynamics + an objective into the planners' ``cost_fn``; the world model as dynamics.

``make_cost(dynamics, objective, to_raw)``: ``cost(u) = objective(dynamics(u), to_raw(u))`` for
candidate sequences ``u (K, H, A)`` in planner space. :class:`WorldModelDynamics` is the
world-model case: planner space = the checkpoint's normalised actions, and the imagined latents
come from one batched, KV-cached ``WorldModel.rollout`` of all ``K`` candidates from the current
context. Under autograd (the gradient planner) it rolls out with ``grad=True``; otherwise no graph
is built, and nothing is kept between calls (the cache lives inside one rollout).
"""
from __future__ import annotations

from typing import Callable

import torch

from .base import Bounds, CostFn
from .objectives import Imagined, Objective

__all__ = ["WorldModelDynamics", "make_cost"]


def make_cost(dynamics: Callable[[torch.Tensor], torch.Tensor], objective: Objective,
              to_raw: Callable[[torch.Tensor], torch.Tensor] | None = None) -> CostFn:
    """``cost(u (K, H, A)) -> (K,)`` = ``objective(dynamics(u), to_raw(u))``."""
    to_raw = to_raw or (lambda u: u)

    def cost(u: torch.Tensor) -> torch.Tensor:
        return objective(dynamics(u), to_raw(u))

    return cost


class WorldModelDynamics:
    """Normalised candidate actions ``(K, H, A)`` -> imagined latents ``(K, H, n, D)``, or with
    ``with_proprio=True`` an :class:`~ivnext_world.planning.objectives.Imagined` of the latents and
    the model's predicted raw proprio ``(K, H, S)`` (for proprio objectives).

    Args:
        wm: an action-conditioned :class:`~ivnext_world.world_model.WorldModel`.
        context: ``(1, Tc, n, D)`` latents of the observed frames (shared by all candidates).
        proprio: raw ``(1, Tc, S)`` proprio of those frames, or None.
        context_actions: raw ``(1, Tc - 1, A)`` actions taken between them, or None.
        use_cache: False = the naive recompute-everything rollout (benchmark reference).
        with_proprio: return :class:`Imagined` with the predicted proprio (needs ``wm.predicts_proprio``).
    """

    def __init__(self, wm, context: torch.Tensor, proprio: torch.Tensor | None = None,
                 context_actions: torch.Tensor | None = None, use_cache: bool = True, with_proprio: bool = False):
        if not wm.action_conditioned:
            raise ValueError("planning needs an action-conditioned world model (this one has no action head)")
        if with_proprio and not wm.predicts_proprio:
            raise ValueError("this world model does not predict proprio (trained with predict_proprio=false or "
                             "without proprio): use a latent-only objective")
        self.wm, self.context, self.proprio, self.context_actions = wm, context, proprio, context_actions
        self.use_cache, self.with_proprio = use_cache, with_proprio
        self.calls = 0

    def to_raw(self, u: torch.Tensor) -> torch.Tensor:
        return self.wm.stats.denormalize_actions(u)

    def from_raw(self, a: torch.Tensor) -> torch.Tensor:
        return self.wm.stats.normalize_actions(torch.as_tensor(a, dtype=torch.float32))

    def bounds(self, low, high) -> Bounds:
        """The environment's raw action box ``low, high (A,)`` in normalised units, on the world
        model's device (so the planners search there)."""
        return self.bounds_of(self.wm.stats, low, high).to(self.wm.device)

    @staticmethod
    def bounds_of(stats, low, high) -> Bounds:
        """``low, high (A,)`` raw -> the box in ``stats``' normalised units (std > 0 keeps the order)."""
        norm = lambda x: stats.normalize_actions(torch.as_tensor(x, dtype=torch.float32))  # noqa: E731
        return Bounds(norm(low), norm(high))

    def __call__(self, u: torch.Tensor):
        self.calls += 1
        out = self.wm.rollout(self.context, self.to_raw(u), horizon=u.shape[1], proprio=self.proprio,
                              context_actions=self.context_actions, use_cache=self.use_cache,
                              grad=torch.is_grad_enabled() and u.requires_grad, return_proprio=self.with_proprio)
        return Imagined(*out) if self.with_proprio else out
