"""Planning objectives: ``objective(states, actions) -> cost (K,)``, lower is better.

``states`` is whatever the dynamics returns (for a world model: imagined latents ``(K, H, n, D)``),
``actions`` the candidate sequences ``(K, H, A)`` in raw environment units. Any callable with this
signature plugs in; :class:`WeightedSum` combines several.
"""
from __future__ import annotations

from typing import Callable, Literal, Sequence

import torch

__all__ = ["LatentGoalCost", "ProprioGoalCost", "WeightedSum", "Objective"]

Objective = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class LatentGoalCost:
    """Distance of imagined latents to the goal image's latents (DINO-WM, V-JEPA 2-AC's energy).

    Args:
        goal: ``(n, D)`` latents of the goal image (or ``(1, n, D)`` / ``(1, 1, n, D)``).
        norm: "l1" (V-JEPA 2-AC: mean absolute difference) or "l2" (DINO-WM: mean squared).
        frames: "last" scores the final imagined frame only (DINO-WM); "all" averages over the
            horizon, which rewards getting there early.
        tokens: "all" tokens, "cls" (the leading ``num_prefix`` ones) or "patch" (the rest).
        num_prefix: how many leading cls tokens each frame has (``WorldModel.num_prefix_tokens``).
    """

    def __init__(self, goal: torch.Tensor, norm: Literal["l1", "l2"] = "l1",
                 frames: Literal["last", "all"] = "last", tokens: Literal["all", "cls", "patch"] = "all",
                 num_prefix: int = 0):
        if norm not in ("l1", "l2") or frames not in ("last", "all") or tokens not in ("all", "cls", "patch"):
            raise ValueError(f"bad LatentGoalCost options: norm={norm!r} frames={frames!r} tokens={tokens!r}")
        goal = torch.as_tensor(goal).float()
        while goal.dim() > 2:
            goal = goal[0]
        if goal.dim() != 2:
            raise ValueError(f"goal must be latents (n, D), got {tuple(goal.shape)}")
        if tokens != "all" and num_prefix <= 0:
            raise ValueError("tokens='cls'/'patch' needs num_prefix > 0")
        self.goal, self.norm, self.frames, self.tokens, self.num_prefix = goal, norm, frames, tokens, num_prefix

    def _select(self, z: torch.Tensor) -> torch.Tensor:
        if self.tokens == "cls":
            return z[..., : self.num_prefix, :]
        if self.tokens == "patch":
            return z[..., self.num_prefix:, :]
        return z

    def __call__(self, states: torch.Tensor, actions: torch.Tensor | None = None) -> torch.Tensor:
        if states.dim() != 4 or states.shape[2:] != self.goal.shape:
            raise ValueError(f"states must be (K, H, {self.goal.shape[0]}, {self.goal.shape[1]}), got {tuple(states.shape)}")
        z = states[:, -1:] if self.frames == "last" else states  # (K, H', n, D)
        diff = self._select(z) - self._select(self.goal.to(z))
        err = diff.abs() if self.norm == "l1" else diff.pow(2)
        return err.flatten(1).mean(1)  # (K,)


class ProprioGoalCost:
    """Distance of predicted proprio to a goal proprio (optional term; the world model does not
    predict proprio, so the caller supplies ``predict(actions (K, H, A)) -> proprio (K, H, S)``,
    e.g. known kinematics). Scored on the last step, L2 over ``dims`` (default: all)."""

    def __init__(self, goal: torch.Tensor, predict: Callable[[torch.Tensor], torch.Tensor],
                 dims: Sequence[int] | None = None):
        self.goal = torch.as_tensor(goal).float()
        self.predict, self.dims = predict, None if dims is None else list(dims)

    def __call__(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        p = self.predict(actions)[:, -1]  # (K, S)
        g = self.goal.to(p)
        if self.dims is not None:
            p, g = p[:, self.dims], g[self.dims]
        return (p - g).pow(2).sum(-1).sqrt()


class WeightedSum:
    """``sum_i w_i * objective_i(states, actions)``."""

    def __init__(self, terms: Sequence[tuple[float, Objective]]):
        if not terms:
            raise ValueError("WeightedSum needs at least one (weight, objective) term")
        self.terms = list(terms)

    def __call__(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return sum(w * f(states, actions) for w, f in self.terms)
