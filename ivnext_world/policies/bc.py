"""Behaviour cloning on frozen latents vs on raw pixels (CortexBench protocol, arXiv 2303.18240).

The policy is an MLP with three hidden layers of 256 (ReLU), trained with MSE on expert actions,
that sees a short history (3 frames) of per-frame features:

* ``features="latent"``: the frozen video encoder's latents of each frame (``WorldModel.encode``),
  pooled to ``[mean of cls tokens, mean of patch tokens]`` (2D values), standardised with the
  training set's mean/std. Computed once before training (the encoder is frozen).
* ``features="pixels"``: a small CNN (3 strided convs + linear, trained from scratch with the MLP)
  over each ``pixel_size``-px frame; the baseline that shows what the pretrained latents add.

History at the start of an episode repeats the first frame, in training and at test time.
"""
from __future__ import annotations

import json
import logging
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import List, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from ..train import LoopConfig, Trainer, latest_checkpoint
from ..train.checkpoint import load_weights

log = logging.getLogger(__name__)

__all__ = ["BCConfig", "BCDataset", "BCNet", "BCPolicy", "load_bc_policy", "pool_latents", "train_bc"]


@dataclass
class BCConfig:
    data: str = "outputs/data/reach_demos"  # LeRobot folder of expert demonstrations
    episodes: Optional[List[int]] = None  # None: all
    features: str = "latent"  # latent | pixels
    encoder: str = "outputs/world_model"  # world-model or pretraining run whose encoder gives the latents
    history: int = 3  # CortexBench: 3 frames
    hidden: int = 256  # CortexBench: MLP 256 x 3
    depth: int = 3
    pixel_size: int = 64  # input size of the pixel CNN
    loop: LoopConfig = field(default_factory=lambda: LoopConfig(
        steps=2000, batch_size=64, num_workers=0, base_lr=4e-3, warmup_steps=50, ckpt_every=1000, log_every=50))
    out: str = "outputs/bc"

    def __post_init__(self):
        if self.features not in ("latent", "pixels"):
            raise ValueError(f"features must be 'latent' or 'pixels', got {self.features!r}")
        if self.history < 1:
            raise ValueError(f"history must be >= 1, got {self.history}")


def pool_latents(z: torch.Tensor, num_prefix: int) -> torch.Tensor:
    """Latents ``(..., n, D)`` -> ``(..., 2D)``: mean of the cls tokens, mean of the patch tokens."""
    return torch.cat([z[..., :num_prefix, :].mean(-2), z[..., num_prefix:, :].mean(-2)], dim=-1)


class PixelCNN(nn.Module):
    """``(B, 3, S, S)`` uint8 -> ``(B, out_dim)``."""

    def __init__(self, size: int = 64, out_dim: int = 128):
        super().__init__()
        self.convs = nn.Sequential(
            nn.Conv2d(3, 32, 4, 2), nn.ReLU(), nn.Conv2d(32, 64, 4, 2), nn.ReLU(), nn.Conv2d(64, 64, 3, 2), nn.ReLU(),
            nn.Flatten())
        with torch.no_grad():
            n = self.convs(torch.zeros(1, 3, size, size)).shape[1]
        self.proj = nn.Linear(n, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.proj(self.convs(x.float() / 255.0 - 0.5)))


class BCNet(nn.Module):
    """History of per-frame inputs ``(B, T, F)`` (latent features) or ``(B, T, 3, S, S)`` (pixels)
    -> action ``(B, A)``."""

    def __init__(self, features: str, feat_dim: int, action_dim: int, history: int = 3, hidden: int = 256,
                 depth: int = 3, pixel_size: int = 64):
        super().__init__()
        self.features = features
        self.cnn = PixelCNN(pixel_size) if features == "pixels" else None
        per_frame = self.cnn.proj.out_features if self.cnn is not None else feat_dim
        self.register_buffer("feat_mean", torch.zeros(feat_dim))
        self.register_buffer("feat_std", torch.ones(feat_dim))
        layers, d = [], history * per_frame
        for _ in range(depth):
            layers += [nn.Linear(d, hidden), nn.ReLU()]
            d = hidden
        self.mlp = nn.Sequential(*layers, nn.Linear(d, action_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t = x.shape[:2]
        if self.cnn is not None:
            f = self.cnn(x.flatten(0, 1)).unflatten(0, (b, t))  # (B, T, 128)
        else:
            f = (x - self.feat_mean) / self.feat_std  # (B, T, F)
        return self.mlp(f.flatten(1))


class BCDataset(Dataset):
    """Per-step samples from episodes of per-frame inputs ``(T_e, ...)`` and actions ``(T_e, A)``:
    item ``{"x": (history, ...), "action": (A,)}``, the history padded with the episode's first frame."""

    def __init__(self, inputs: list[torch.Tensor], actions: list[torch.Tensor], history: int = 3):
        if len(inputs) != len(actions) or any(len(x) != len(a) for x, a in zip(inputs, actions)):
            raise ValueError("inputs and actions must be lists of equally long episodes")
        self.inputs, self.actions, self.history = inputs, actions, history
        self.index = [(e, t) for e, a in enumerate(actions) for t in range(len(a))]

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict:
        e, t = self.index[i]
        idx = [max(0, t - k) for k in range(self.history - 1, -1, -1)]
        return {"x": self.inputs[e][idx], "action": self.actions[e][t].float()}


def bc_objective(model: BCNet, batch: dict, generator) -> tuple[torch.Tensor, dict]:
    loss = F.mse_loss(model(batch["x"]), batch["action"])
    return loss, {"mse": loss.detach()}


def _load_episodes(source: str, episodes) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Every episode whole: frames ``(T, 3, H, W)`` uint8 and actions ``(T, A)``."""
    from ..data import LeRobotDataset, TrajectoryDataset

    meta = LeRobotDataset(source)
    out = []
    for ep in (episodes if episodes is not None else meta.episode_indices):
        n = meta.episode_length(ep)
        item = TrajectoryDataset(source, window=n, stride=n, episodes=[ep], on_error="raise")[0]
        out.append(((item["frames"] * 255).round().to(torch.uint8), item["actions"]))
    return out


def _frame_inputs(features: str, frames: torch.Tensor, wm=None, pixel_size: int = 64) -> torch.Tensor:
    """Frames ``(T, 3, H, W)`` uint8 -> per-frame policy inputs: ``(T, 2D)`` or ``(T, 3, S, S)`` uint8."""
    if features == "latent":
        z = torch.cat([wm.encode(frames[i:i + 64][:, None])[:, 0] for i in range(0, len(frames), 64)])
        return pool_latents(z, wm.num_prefix_tokens)
    x = F.interpolate(frames.float(), size=(pixel_size, pixel_size), mode="bilinear", antialias=True)
    return x.round().clamp(0, 255).to(torch.uint8)


def train_bc(cfg: BCConfig) -> dict:
    """Train one BC policy; returns a summary (also written to ``out/summary.json``)."""
    from ..world_model import WorldModel

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.loop.seed)
    wm = WorldModel.load(cfg.encoder) if cfg.features == "latent" else None
    eps = _load_episodes(cfg.data, cfg.episodes)
    inputs = [_frame_inputs(cfg.features, f, wm, cfg.pixel_size) for f, _ in eps]
    actions = [a for _, a in eps]
    feat_dim = inputs[0].shape[-1] if cfg.features == "latent" else 0
    net = BCNet(cfg.features, max(feat_dim, 1), actions[0].shape[-1], cfg.history, cfg.hidden, cfg.depth, cfg.pixel_size)
    if cfg.features == "latent":
        allf = torch.cat(inputs)
        net.feat_mean.copy_(allf.mean(0))
        net.feat_std.copy_(allf.std(0).clamp_min(1e-6))
    extra = {"bc": {"config": _plain(asdict(cfg)), "feat_dim": max(feat_dim, 1), "action_dim": int(actions[0].shape[-1]),
                    "encoder": cfg.encoder if cfg.features == "latent" else None}}
    trainer = Trainer(net, bc_objective, BCDataset(inputs, actions, cfg.history), cfg.loop, out, extra_state=extra)
    history = trainer.fit()
    summary = {"features": cfg.features, **trainer.summary(history), "episodes": len(eps),
               "samples": int(sum(len(a) for a in actions))}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


class BCPolicy:
    """Runtime policy: ``reset(goal=None)``, ``policy(obs) -> action (A,)`` clipped to the box."""

    def __init__(self, net: BCNet, history: int, wm=None, pixel_size: int = 64, low=-1.0, high=1.0):
        self.net, self.history, self.wm, self.pixel_size = net.eval(), history, wm, pixel_size
        self.low, self.high = low, high
        self.reset()

    def reset(self, goal=None, goal_proprio=None) -> None:
        self._frames: deque = deque(maxlen=self.history)

    @torch.no_grad()
    def __call__(self, obs: dict) -> np.ndarray:
        frame = torch.from_numpy(np.ascontiguousarray(obs["rgb"])).permute(2, 0, 1)[None]  # (1, 3, H, W)
        x = _frame_inputs(self.net.features, frame, self.wm, self.pixel_size)[0]
        if not self._frames:
            self._frames.extend([x] * self.history)
        self._frames.append(x)
        a = self.net(torch.stack(list(self._frames))[None])[0].numpy()
        return np.clip(a, self.low, self.high).astype(np.float32)


def load_bc_policy(path: str | Path, wm=None, action_space=None) -> BCPolicy:
    """A BC run folder -> :class:`BCPolicy`. A latent policy loads its encoder from the run's config
    unless a WorldModel ``wm`` with the same encoder is passed."""
    from ..world_model import WorldModel

    ckpt = latest_checkpoint(Path(path) / "checkpoints")
    if ckpt is None:
        raise FileNotFoundError(f"no BC checkpoint under {path}/checkpoints")
    info = json.loads((Path(ckpt) / "state.json").read_text())["extra"]["bc"]
    c = info["config"]
    net = BCNet(c["features"], info["feat_dim"], info["action_dim"], c["history"], c["hidden"], c["depth"], c["pixel_size"])
    load_weights(net, Path(ckpt) / "model.safetensors")
    if c["features"] == "latent" and wm is None:
        wm = WorldModel.load(info["encoder"])
    low, high = (-1.0, 1.0) if action_space is None else (action_space.low, action_space.high)
    return BCPolicy(net, c["history"], wm if c["features"] == "latent" else None, c["pixel_size"], low, high)


def _plain(x):
    return json.loads(json.dumps(x, default=str))
