"""Planning objectives: ``objective(states, actions) -> cost (K,)``, lower is better.

``states`` is whatever the dynamics returns (for a world model: imagined latents ``(K, H, n, D)``,
or an :class:`Imagined` of latents and predicted proprio), ``actions`` the candidate sequences
``(K, H, A)`` in raw environment units. Any callable with this signature plugs in;
:class:`WeightedSum` combines several.
"""
from __future__ import annotations

from typing import Callable, Literal, NamedTuple, Optional, Sequence

import torch

__all__ = ["Imagined", "LatentGoalCost", "ProprioGoalCost", "WeightedSum", "Objective"]

Objective = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class Imagined(NamedTuple):
    """What a proprio-predicting world model imagines: latents ``(K, H, n, D)``, raw proprio ``(K, H, S)``."""

    latents: torch.Tensor
    proprio: Optional[torch.Tensor]


def _latents(states) -> torch.Tensor:
    return states.latents if isinstance(states, Imagined) else states


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
        if tokens == "cls" and num_prefix <= 0:
            raise ValueError("tokens='cls' needs cls tokens (num_prefix > 0); this world model's latents have "
                             "none (a backbone without prefix tokens, e.g. V-JEPA 2 or an image model)")
        self.goal, self.norm, self.frames, self.tokens, self.num_prefix = goal, norm, frames, tokens, num_prefix

    def _select(self, z: torch.Tensor) -> torch.Tensor:
        if self.tokens == "cls":
            return z[..., : self.num_prefix, :]
        if self.tokens == "patch":
            return z[..., self.num_prefix:, :]
        return z

    def __call__(self, states, actions: torch.Tensor | None = None) -> torch.Tensor:
        states = _latents(states)
        if states.dim() != 4 or states.shape[2:] != self.goal.shape:
            raise ValueError(f"states must be (K, H, {self.goal.shape[0]}, {self.goal.shape[1]}), got {tuple(states.shape)}")
        z = (states[:, -1:] if self.frames == "last" else states).float()  # (K, H', n, D), scored in fp32
        diff = self._select(z) - self._select(self.goal.to(z))
        err = diff.abs() if self.norm == "l1" else diff.pow(2)
        return err.flatten(1).mean(1)  # (K,)


class ProprioGoalCost:
    """Distance of the imagined final proprio to a goal proprio (DINO-WM plans on visual latents and
    proprio together). The proprio comes from the world model (``states`` an :class:`Imagined`, the
    default) or from ``predict(actions (K, H, A)) -> proprio (K, H, S)`` (e.g. known kinematics).
    Scored on the last step: Euclidean distance over ``dims`` (default: all), each feature divided
    by ``scale`` (e.g. the training data's std, so features in different units weigh alike).
    """

    def __init__(self, goal: torch.Tensor, predict: Callable[[torch.Tensor], torch.Tensor] | None = None,
                 dims: Sequence[int] | None = None, scale: torch.Tensor | Sequence[float] | None = None):
        self.goal = torch.as_tensor(goal).float().reshape(-1)
        self.predict, self.dims = predict, None if dims is None else list(dims)
        self.scale = None if scale is None else torch.as_tensor(scale).float().reshape(-1)
        for name, x in (("dims", self.dims), ("scale", self.scale)):
            if x is not None and (len(x) == 0 or (name == "scale" and len(x) != len(self.goal))):
                raise ValueError(f"ProprioGoalCost: {name} must {'match the goal' if name == 'scale' else 'not be empty'}")
        if self.dims is not None and max(self.dims) >= len(self.goal):
            raise ValueError(f"ProprioGoalCost: dims {self.dims} out of range for a goal of {len(self.goal)} features")

    def __call__(self, states, actions: torch.Tensor) -> torch.Tensor:
        if self.predict is not None:
            p = self.predict(actions)
        elif isinstance(states, Imagined) and states.proprio is not None:
            p = states.proprio
        else:
            raise ValueError("ProprioGoalCost needs imagined proprio (a world model with predict_proprio, "
                             "planned with with_proprio=True) or a predict function")
        p = p[:, -1].float()  # (K, S)
        g = self.goal.to(p)
        if self.scale is not None:
            p, g = p / self.scale.to(p), g / self.scale.to(p)
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
        costs = [f(states, actions) for _, f in self.terms]
        # A term may score on another device (e.g. a proprio predict() on the CPU): sum on the first's.
        return sum(w * c.to(costs[0].device) for (w, _), c in zip(self.terms, costs))
