"""A goal-image-conditioned agent: world model + objective + planner under MPC, one env action at a time.

    agent = PlanningAgent(wm, CEM(), env.action_space)
    agent.reset(goal_rgb, goal_proprio)       # (H, W, 3) uint8 image of the solved task (+ its proprio)
    action = agent(obs)                       # obs dict with "rgb" (and "proprio") -> raw action (A,)

At each replan the current frame (and up to ``context_frames - 1`` earlier ones, with the actions
taken between them) is encoded, every candidate action sequence is rolled out in one batched,
KV-cached ``WorldModel.rollout`` and scored against the goal latents. ``imagined`` holds the latents
the chosen plan leads to (for videos).

A world model trained with ``frame_skip`` k (DINO-WM's frameskip) plans in k-step action chunks:
the bounds are the env's box repeated k times, each planned chunk is executed as k env actions one
call at a time, and the observation is encoded only at chunk boundaries (where the world model's
frames are). ``execute`` counts world-model steps, so a plan executes ``execute * k`` env actions.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import List, Optional

import numpy as np
import torch

from .base import Planner
from .mpc import MPC
from .objectives import LatentGoalCost, Objective, ProprioGoalCost, WeightedSum
from .problem import WorldModelDynamics, make_cost

__all__ = ["ObjectiveConfig", "PlanningAgent"]


@dataclass
class ObjectiveConfig:
    norm: str = "l1"  # l1 (V-JEPA 2-AC) | l2 (DINO-WM)
    frames: str = "last"  # last (DINO-WM) | all
    tokens: str = "all"  # all | cls | patch
    # DINO-WM's proprio term: + proprio_weight x distance of the world model's predicted final proprio
    # to the goal state's proprio (each feature divided by the training std; only proprio_dims,
    # None = all). Needs a world model trained with predict_proprio and a goal proprio at reset.
    proprio_weight: float = 0.0
    proprio_dims: Optional[List[int]] = None


class PlanningAgent:
    """Args:
        wm: an action-conditioned WorldModel.
        planner: any Planner (its horizon is the plan length).
        action_space: the env's Box action space (raw units); its bounds become the planner's box.
        objective: how imagined latents are scored against the goal (or a callable
            ``goal_latents (n, D) -> Objective`` for a custom objective).
        execute: actions executed per plan (MPC).
        context_frames: observed frames given to the world model as context.
        seed: planner sampling seed.
    """

    def __init__(self, wm, planner: Planner, action_space, objective: ObjectiveConfig | None = None,
                 execute: int = 1, context_frames: int = 1, seed: int = 0):
        self.wm, self.planner, self.context_frames = wm, planner, context_frames
        self.objective_cfg = objective or ObjectiveConfig()
        stats, k = wm.stats, wm.frame_skip
        if stats.action_dim != k * int(np.prod(action_space.shape)):
            raise ValueError(f"the world model acts in chunks of {stats.action_dim} features (frame_skip={k}); "
                             f"the env's actions have shape {action_space.shape}")
        self.low, self.high = np.tile(action_space.low, k), np.tile(action_space.high, k)  # chunk bounds
        low = torch.as_tensor(self.low, dtype=torch.float32)
        high = torch.as_tensor(self.high, dtype=torch.float32)
        # On the world model's device: the planners draw and score candidates there (see planning.base).
        self.bounds = WorldModelDynamics.bounds_of(stats, low, high).to(wm.device)
        self.mpc = MPC(planner, self.bounds, execute=execute, seed=seed)
        self.objective: Objective | None = None
        self.imagined: torch.Tensor | None = None  # (H, n, D) latents of the current plan

    @property
    def uses_proprio(self) -> bool:
        cfg = self.objective_cfg
        return not callable(cfg) and cfg.proprio_weight > 0

    def reset(self, goal_rgb: np.ndarray, goal_proprio: np.ndarray | None = None) -> None:
        self.goal = self.wm.encode_image(goal_rgb)  # (n, D)
        cfg = self.objective_cfg
        if callable(cfg):
            self.objective = cfg(self.goal)
        else:
            self.objective = LatentGoalCost(self.goal, cfg.norm, cfg.frames, cfg.tokens, self.wm.num_prefix_tokens)
            if self.uses_proprio:
                if goal_proprio is None:
                    raise ValueError("objective.proprio_weight > 0 needs the goal state's proprio: reset(goal_rgb, goal_proprio)")
                if not self.wm.predicts_proprio:
                    raise ValueError("objective.proprio_weight > 0 needs a world model trained with predict_proprio=true")
                prop = ProprioGoalCost(goal_proprio, dims=cfg.proprio_dims, scale=self.wm.stats.proprio_std)
                self.objective = WeightedSum([(1.0, self.objective), (cfg.proprio_weight, prop)])
        self.mpc.reset()
        self._latents: deque = deque(maxlen=self.context_frames)
        self._proprio: deque = deque(maxlen=self.context_frames)
        self._actions: deque = deque(maxlen=max(self.context_frames - 1, 0))
        self._pending: list[np.ndarray] = []  # env actions left of the current chunk
        self.imagined = None

    @property
    def num_plans(self) -> int:
        return self.mpc.num_plans

    def __call__(self, obs: dict) -> np.ndarray:
        if self.objective is None:
            raise RuntimeError("call reset(goal_rgb) before acting")
        if self._pending:  # inside a chunk: no new frame for the world model yet
            return self._pending.pop(0)
        replanning = self.mpc.needs_plan
        if replanning or self.context_frames > 1:
            self._latents.append(self.wm.encode_image(obs["rgb"]))
            self._proprio.append(torch.as_tensor(obs["proprio"], dtype=torch.float32))
        dyn_holder = {}

        def cost_now():
            ctx = torch.stack(list(self._latents))[None]  # (1, Tc, n, D)
            prop = torch.stack(list(self._proprio))[None]  # (1, Tc, S)
            tc = ctx.shape[1]
            acts = torch.stack(list(self._actions)[-(tc - 1):])[None] if tc > 1 else None  # (1, Tc-1, A)
            dyn = WorldModelDynamics(self.wm, ctx, prop, acts, with_proprio=self.uses_proprio)
            dyn_holder["dyn"] = dyn
            return make_cost(dyn, self.objective, dyn.to_raw)

        u = self.mpc.act(cost_now)
        if "dyn" in dyn_holder:  # a new plan: keep what it imagines (one extra 1-candidate rollout)
            dyn = dyn_holder["dyn"]
            with torch.no_grad():
                out = dyn(self.mpc.last.actions[None])
                self.imagined = (out.latents if self.uses_proprio else out)[0]  # (H, n, D)
        raw = self.wm.stats.denormalize_actions(u).cpu().numpy()
        raw = np.clip(raw, self.low, self.high).astype(np.float32)  # one chunk (k * A,)
        if self.context_frames > 1:
            self._actions.append(torch.as_tensor(raw))
        first, *self._pending = list(raw.reshape(self.wm.frame_skip, -1))
        return first
