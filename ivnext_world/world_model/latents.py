"""Per-frame latents from the frozen backbone, and the statistics that normalise actions/proprio.

A world-model latent of one frame is the backbone's output for that frame alone
(:meth:`~ivnext_world.backbones.Backbone.latents`): its prefix tokens, if it keeps any, then its
``h * w`` patch tokens (optionally average-pooled ``pool x pool`` for speed), so ``n = prefix +
(h/pool) * (w/pool)``. For our encoder the prefix is its ``num_cls`` cls tokens and the frame is one
clip (the time position table is interpolated to one token-frame); V-JEPA 2 (tubelet 2) sees the
frame repeated; image models keep no prefix (DINO-WM). Each frame on its own, as V-JEPA 2-AC encodes
frames: a frame's latent then never depends on later frames, which a causal world model and a
planner that only has the current observation both need. Keeping our cls tokens makes the latents
exactly what the Stage-1 predictor + diffusion decoder were trained on, so they decode.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from ..backbones import Backbone
from ..models import VideoViT

__all__ = ["NormStats", "encode_video", "tokens_per_frame"]


def tokens_per_frame(encoder: VideoViT | Backbone, img_size: int | None = None, pool: int = 1) -> int:
    """``n``: latent tokens per frame (a backbone knows its own size; a bare encoder needs ``img_size``)."""
    if isinstance(encoder, Backbone):
        return encoder.tokens_per_frame(pool)
    _, gh, gw = encoder.token_grid((encoder.tubelet_size, img_size, img_size))
    if gh % pool or gw % pool:
        raise ValueError(f"pool={pool} does not divide the {gh}x{gw} token grid")
    return encoder.num_prefix_tokens + (gh // pool) * (gw // pool)


def encode_video(encoder: VideoViT | Backbone, video: torch.Tensor, pool: int = 1) -> torch.Tensor:
    """Normalised frames ``(B, T, C, H, W)`` -> latents ``(B, T', n, D)``.

    A :class:`Backbone` encodes each frame on its own (``T' = T``, normalised its way); a bare
    :class:`VideoViT` (ImageNet-normalised input) encodes consecutive tubelets (``T' = T / tubelet``).
    """
    if isinstance(encoder, Backbone):
        return encoder.latents(video, pool)
    b, t, c, h, w = video.shape
    tub = encoder.tubelet_size
    if t % tub:
        raise ValueError(f"{t} frames do not split into tubelets of {tub}")
    tt = t // tub
    clips = video.reshape(b * tt, tub, c, h, w).transpose(1, 2)  # (B*T', C, tub, H, W)
    tokens = encoder.forward_features(clips)  # (B*T', num_cls + H'W', D)
    if pool > 1:
        p = encoder.num_prefix_tokens
        _, gh, gw = encoder.token_grid((tub, h, w))
        grid = tokens[:, p:].transpose(1, 2).unflatten(2, (gh, gw))  # (B*T', D, H', W')
        pooled = F.avg_pool2d(grid, pool).flatten(2).transpose(1, 2)  # (B*T', n_p, D)
        tokens = torch.cat([tokens[:, :p], pooled], dim=1)
    return tokens.reshape(b, tt, tokens.shape[1], tokens.shape[2])


@dataclass
class NormStats:
    """Per-feature mean/std of actions and proprio over the training episodes (stored in checkpoints)."""

    action_mean: list
    action_std: list
    proprio_mean: Optional[list] = None
    proprio_std: Optional[list] = None

    @staticmethod
    def from_lerobot(root: str, episodes: list[int] | None = None) -> "NormStats":
        from ..data import LeRobotDataset
        from ..data.lerobot.layout import ACTION, STATE

        ds = LeRobotDataset(root)
        eps = ds.episode_indices if episodes is None else episodes
        tables = [ds.episode_table(i) for i in eps]
        acts = np.concatenate([tb[ACTION] for tb in tables]).astype(np.float64)
        props = np.concatenate([tb[STATE] for tb in tables]).astype(np.float64) if STATE in tables[0] else None
        am, asd = _mean_std(acts)
        pm, psd = _mean_std(props) if props is not None else (None, None)
        return NormStats(am, asd, pm, psd)

    def chunked(self, k: int) -> "NormStats":
        """Statistics of ``k``-step action chunks (``frame_skip`` world models): the per-step action
        statistics repeated ``k`` times, matching :func:`~ivnext_world.data.trajectory.action_chunks`."""
        if k < 1:
            raise ValueError(f"chunk length must be >= 1, got {k}")
        return replace(self, action_mean=list(self.action_mean) * k, action_std=list(self.action_std) * k)

    @property
    def action_dim(self) -> int:
        return len(self.action_mean)

    @property
    def proprio_dim(self) -> int | None:
        return None if self.proprio_mean is None else len(self.proprio_mean)

    def normalize_actions(self, a: torch.Tensor) -> torch.Tensor:
        return _apply(a, self.action_mean, self.action_std, "actions")

    def denormalize_actions(self, a: torch.Tensor) -> torch.Tensor:
        mean, std = (a.new_tensor(x) for x in (self.action_mean, self.action_std))
        return a * std + mean

    def normalize_proprio(self, s: torch.Tensor) -> torch.Tensor:
        if self.proprio_mean is None:
            raise ValueError("this world model stores no proprio statistics")
        return _apply(s, self.proprio_mean, self.proprio_std, "proprio")

    def denormalize_proprio(self, s: torch.Tensor) -> torch.Tensor:
        if self.proprio_mean is None:
            raise ValueError("this world model stores no proprio statistics")
        mean, std = (s.new_tensor(x) for x in (self.proprio_mean, self.proprio_std))
        return s * std + mean


def _mean_std(x: np.ndarray) -> tuple[list, list]:
    x = x.reshape(len(x), -1)
    std = x.std(0)
    std = np.where(std < 1e-6, 1.0, std)  # constant features: shift only, no blow-up
    return x.mean(0).tolist(), std.tolist()


def _apply(x: torch.Tensor, mean: list, std: list, name: str) -> torch.Tensor:
    if x.shape[-1] != len(mean):
        raise ValueError(f"{name} must have {len(mean)} features (last dim), got {x.shape[-1]} ({tuple(x.shape)})")
    x = x.float()
    return (x - x.new_tensor(mean)) / x.new_tensor(std)
