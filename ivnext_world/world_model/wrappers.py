"""gymnasium wrappers around the latent world model (gymnasium >= 1.0 API).

- :class:`LatentObservation`: an observation wrapper that replaces pixel observations by the frozen
  encoder's latents of the frame (the feature backbone for agents trained on the real simulator).
- :class:`ImaginedEnv`: an environment whose ``step`` advances the action-conditioned world model
  (one KV-cached predictor step) instead of the simulator; reward = negative latent distance to a goal.

Latent modes (shared by both):

- ``"pooled"``: ``(D,)`` mean over the frame's patch tokens (the cls tokens are left out: they are
  already a learned summary, and mixing them in would weight them like patches).
- ``"patch"``: ``(n, D)`` the frame's full latent as :meth:`WorldModel.encode` returns it
  (``n = num_cls + patch tokens``), i.e. exactly what the world model rolls forward.

What ``gymnasium.utils.env_checker.check_env`` verifies here: the spaces are valid gymnasium spaces,
``reset`` accepts ``seed``/``options`` and returns ``(obs, info)``, observations lie in (and have the
dtype of) the observation space, ``step`` returns the 5-tuple with the right types, and both are
deterministic for a fixed seed and action. What it cannot verify: that the latents are *meaningful*
(any finite float32 lies in the unbounded ``Box``), that the imagined dynamics match the simulator,
the reward's scale, or anything about episodes longer than one step (truncation by ``max_steps`` is
tested separately). It also warns that a wrapped env is "different from the unwrapped version"
when given :class:`LatentObservation` (expected: checking the wrapper is the point), and that the
latent ``Box`` bounds are infinite (expected: encoder latents are unbounded; inventing finite bounds
would only make ``Box.contains`` lie).
"""
from __future__ import annotations

from typing import Any, Literal

import gymnasium
import numpy as np
import torch
from gymnasium import spaces

from .model import WorldModel
from .train import LOSSES, latent_distance

__all__ = ["ImaginedEnv", "LatentObservation", "latent_observation"]

Mode = Literal["pooled", "patch"]
MODES = ("pooled", "patch")


def latent_observation(latents: torch.Tensor, mode: Mode, num_prefix_tokens: int) -> torch.Tensor:
    """One frame's latents ``(..., n, D)`` -> ``(..., D)`` (pooled over patch tokens) or unchanged (patch)."""
    if mode == "pooled":
        return latents[..., num_prefix_tokens:, :].mean(-2)
    if mode == "patch":
        return latents
    raise ValueError(f"mode must be one of {MODES}, got {mode!r}")


def _latent_box(wm: WorldModel, mode: Mode) -> spaces.Box:
    d = wm.embed_dim
    shape = (d,) if mode == "pooled" else (wm.tokens_per_frame, d)
    return spaces.Box(-np.inf, np.inf, shape, np.float32)


def _as_frames(x) -> torch.Tensor:
    """An image ``(H, W, 3)`` / ``(3, H, W)`` or frames ``(T, H, W, 3)`` / ``(T, 3, H, W)`` -> ``(T, 3, H, W)``."""
    x = torch.as_tensor(np.asarray(x))
    if x.dim() == 3:
        x = x.unsqueeze(0)
    if x.dim() != 4:
        raise ValueError(f"frames must be (H, W, 3) or (T, H, W, 3) (channels first also accepted), got {tuple(x.shape)}")
    if x.shape[-1] == 3 and x.shape[1] != 3:
        x = x.permute(0, 3, 1, 2)  # gymnasium images are channels-last
    if x.shape[1] != 3:
        raise ValueError(f"frames need 3 colour channels, got {tuple(x.shape)}")
    return x


class LatentObservation(gymnasium.ObservationWrapper, gymnasium.utils.RecordConstructorArgs):
    """Pixel observations -> encoder latents of that frame (float32 ``Box``; ``Dict`` with ``keep_keys``).

    Args:
        env: an env whose observation is a ``Dict`` with an ``"rgb"`` key (the ``envs`` tasks) or a
            plain ``(H, W, 3)`` uint8 ``Box``.
        world_model: supplies the frozen encoder (any loaded :class:`WorldModel`, predictor optional).
        mode: ``"pooled"`` ``(D,)`` or ``"patch"`` ``(n, D)`` (see the module docstring).
        keep_keys: keys of a ``Dict`` observation passed through unchanged (e.g. ``("proprio",)``);
            the observation is then ``{"latent": ..., **kept}``.
        rgb_key: the image key of a ``Dict`` observation.
    """

    def __init__(self, env: gymnasium.Env, world_model: WorldModel, mode: Mode = "pooled",
                 keep_keys: tuple[str, ...] = (), rgb_key: str = "rgb"):
        # Recorded so that env.spec can rebuild the wrapped env (check_env does for registered ids).
        gymnasium.utils.RecordConstructorArgs.__init__(self, world_model=world_model, mode=mode,
                                                       keep_keys=keep_keys, rgb_key=rgb_key)
        gymnasium.ObservationWrapper.__init__(self, env)
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.world_model, self.mode, self.keep_keys, self.rgb_key = world_model, mode, tuple(keep_keys), rgb_key
        space = env.observation_space
        if isinstance(space, spaces.Dict):
            if rgb_key not in space.spaces:
                raise ValueError(f"the observation dict has no {rgb_key!r} key (keys: {list(space.spaces)})")
            missing = [k for k in self.keep_keys if k not in space.spaces]
            if missing:
                raise ValueError(f"keep_keys {missing} are not in the observation dict (keys: {list(space.spaces)})")
            image_space = space[rgb_key]
        elif isinstance(space, spaces.Box):
            if self.keep_keys:
                raise ValueError("keep_keys needs a Dict observation; this env's observation is a plain Box")
            image_space = space
        else:
            raise TypeError(f"unsupported observation space {space}: need a Dict with {rgb_key!r} or an RGB Box")
        if len(image_space.shape) != 3 or 3 not in (image_space.shape[0], image_space.shape[-1]):
            raise ValueError(f"the image must be (H, W, 3), got shape {image_space.shape}")
        latent = _latent_box(world_model, mode)
        self.observation_space = (
            spaces.Dict({"latent": latent, **{k: space[k] for k in self.keep_keys}}) if self.keep_keys else latent
        )

    def observation(self, observation):
        rgb = observation[self.rgb_key] if isinstance(observation, dict) else observation
        frames = _as_frames(rgb)[None]  # (1, 1, 3, H, W)
        z = self.world_model.encode(frames)[0, 0]  # (n, D)
        latent = latent_observation(z, self.mode, self.world_model.num_prefix_tokens).cpu().numpy().astype(np.float32)
        if not self.keep_keys:
            return latent
        return {"latent": latent, **{k: observation[k] for k in self.keep_keys}}


class ImaginedEnv(gymnasium.Env):
    """The action-conditioned world model as an environment: ``step`` = one imagined frame.

    ``reset`` encodes the context (initial frames, or latents from :meth:`WorldModel.encode`) and
    the goal, and caches the predictor's keys/values of the context; each ``step(action)`` (raw
    action, environment units: normalised with the checkpoint's statistics) runs one frame's tokens
    against the cache, so step ``k`` costs the same as step 1 and equals
    ``world_model.rollout(context, actions[:k])[:, -1]`` (tested).

    Observation: the imagined frame's latent (``mode`` as in :class:`LatentObservation`). Reward:
    ``-distance(imagined latents, goal latents)`` over the full ``(n, D)`` latents, ``"l1"`` (mean
    absolute difference, the V-JEPA 2-AC planning energy), ``"l2"`` (mean squared) or ``"cosine"``
    (``2 - 2 cos``). ``terminated`` is always False (nothing in latent space says "done");
    ``truncated`` after ``max_steps`` steps.

    Args:
        world_model: an action-conditioned :class:`WorldModel` (pixel decoder only needed to render).
        context, goal: defaults for ``reset()``; override per episode with
            ``reset(options={"frames": ..., "goal": ..., "proprio": ...})``. Each is an image
            ``(H, W, 3)``, frames ``(T, H, W, 3)`` (uint8 or [0, 1] floats, channels-first also
            accepted) or latents ``(T, n, D)`` / ``(n, D)``. The goal uses its last frame.
        proprio: raw proprio ``(T, S)`` or ``(S,)`` of the context frames (None: the training mean);
            imagined frames carry the predicted proprio (or hold the last one), as in :meth:`WorldModel.rollout`.
        action_space: the agent's action ``Box``; default ``mean +- action_std_range * std`` of the
            checkpoint's action statistics (the model saw little outside that range).
        render_mode: None or ``"rgb_array"`` (decodes the current latent with ``render_steps`` DDIM steps).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(self, world_model: WorldModel, context=None, goal=None, *, proprio=None, mode: Mode = "pooled",
                 distance: str = "l1", max_steps: int = 16, action_space: spaces.Box | None = None,
                 action_std_range: float = 3.0, render_mode: str | None = None, render_steps: int = 4):
        if not world_model.action_conditioned:
            raise ValueError("ImaginedEnv needs an action-conditioned world model (this one has no action head)")
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if distance not in LOSSES:
            raise ValueError(f"distance must be one of {LOSSES}, got {distance!r}")
        if render_mode not in (None, *self.metadata["render_modes"]):
            raise ValueError(f"render_mode must be None or one of {self.metadata['render_modes']}")
        if max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {max_steps}")
        self.world_model, self.mode, self.distance, self.max_steps = world_model, mode, distance, max_steps
        self.render_mode, self.render_steps = render_mode, render_steps
        self.default_context, self.default_goal, self.default_proprio = context, goal, proprio
        stats = world_model.stats
        if action_space is None:
            mean, std = np.asarray(stats.action_mean, np.float32), np.asarray(stats.action_std, np.float32)
            action_space = spaces.Box(mean - action_std_range * std, mean + action_std_range * std, dtype=np.float32)
        if action_space.shape != (stats.action_dim,):
            raise ValueError(f"action_space must have shape ({stats.action_dim},) like the model's actions, got {action_space.shape}")
        self.action_space = action_space
        self.observation_space = _latent_box(world_model, mode)
        self._cache, self._frame = None, None

    # ------------------------------------------------------------------ inputs
    def _latents(self, x, name: str) -> torch.Tensor:
        """Frames or latents -> ``(T, n, D)`` latents on the model's device."""
        if x is None:
            raise ValueError(f"no {name}: pass it to ImaginedEnv(...) or reset(options={{{name!r}: ...}})")
        wm = self.world_model
        t = torch.as_tensor(np.asarray(x) if not torch.is_tensor(x) else x)
        nd = (wm.tokens_per_frame, wm.embed_dim)
        if t.dim() >= 2 and tuple(t.shape[-2:]) == nd and t.is_floating_point():
            return (t if t.dim() == 3 else t.reshape(-1, *nd)).to(wm.device).float()
        return wm.encode(_as_frames(t)[None])[0]  # (T, n, D)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        options = options or {}
        wm, pred = self.world_model, self.world_model.predictor
        context = self._latents(options.get("frames", self.default_context), "frames")[None]  # (1, Tc, n, D)
        self._goal = self._latents(options.get("goal", self.default_goal), "goal")[-1:]  # (1, n, D)
        tc = context.shape[1]
        if tc + self.max_steps - 1 > pred.cfg.max_frames:
            raise ValueError(f"context ({tc} frames) + max_steps ({self.max_steps}) - 1 exceeds the predictor's "
                             f"max_frames={pred.cfg.max_frames}")
        self._proprio = None
        if pred.proprio_embed is not None:
            raw = options.get("proprio", self.default_proprio)
            if raw is None:
                self._proprio = context.new_zeros(1, tc, pred.proprio_dim)  # the training mean, normalised
            else:
                raw = torch.as_tensor(np.asarray(raw), dtype=torch.float32).reshape(-1, pred.proprio_dim)
                raw = raw[-tc:] if raw.shape[0] >= tc else raw[-1:].expand(tc, -1)
                self._proprio = wm.stats.normalize_proprio(raw.to(wm.device))[None]  # (1, Tc, S)
        with torch.no_grad(), wm.autocast():  # the world model's inference precision
            self._cache = None
            if tc > 1:  # earlier context frames: unknown actions = the mean (zeros once normalised), as rollout()
                acts = context.new_zeros(1, tc - 1, pred.action_dim)
                x = pred.embed_frames(context[:, :-1], acts, None if self._proprio is None else self._proprio[:, :-1])
                _, self._cache = pred._step(x, None)
        self._frame = context[:, -1:]  # (1, 1, n, D) latest (observed or imagined) frame
        self._t, self._steps = tc - 1, 0
        return self._observe(), {"distance": self._distance(), "step": 0}

    # ------------------------------------------------------------------ dynamics
    @torch.no_grad()
    def step(self, action):
        if self._frame is None:
            raise gymnasium.error.ResetNeeded("call reset() before step()")
        wm, pred = self.world_model, self.world_model.predictor
        a = torch.as_tensor(np.asarray(action, dtype=np.float32)).reshape(1, 1, -1).to(wm.device)  # (1, 1, A)
        a = wm.stats.normalize_actions(a)  # clear error for a wrong action dimension
        prop = None if self._proprio is None else self._proprio[:, -1:]
        with wm.autocast():  # the world model's inference precision; latents and proprio stay fp32 below
            frame, next_prop, self._cache = pred.step(self._frame, a, prop, self._t, self._cache)
        self._frame = frame.float()  # (1, 1, n, D)
        next_prop = None if next_prop is None else next_prop.float()
        if next_prop is not None:  # a proprio-predicting model: the imagined frame carries its prediction
            self._proprio = torch.cat([self._proprio, next_prop], dim=1)
        self._t += 1
        self._steps += 1
        dist = self._distance()
        truncated = self._steps >= self.max_steps
        return self._observe(), -dist, False, truncated, {"distance": dist, "step": self._steps}

    def _observe(self) -> np.ndarray:
        obs = latent_observation(self._frame[0, 0], self.mode, self.world_model.num_prefix_tokens)
        return obs.cpu().numpy().astype(np.float32)

    def _distance(self) -> float:
        return float(latent_distance(self._frame[0], self._goal, self.distance))

    @property
    def latent(self) -> torch.Tensor:
        """The current frame's full latents ``(n, D)`` (whatever the observation mode)."""
        return self._frame[0, 0]

    def render(self):
        if self.render_mode != "rgb_array":
            gymnasium.logger.warn(f"render() does nothing with render_mode={self.render_mode!r}")
            return None
        gen = torch.Generator(device=self.world_model.device).manual_seed(0)
        img = self.world_model.decode(self._frame, num_steps=self.render_steps, generator=gen)[0, -1]  # (3, S, S)
        return (img.permute(1, 2, 0) * 255).round().to(torch.uint8).cpu().numpy()
