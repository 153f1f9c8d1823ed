"""Linear probe of simulator state (end-effector, object positions) from frozen per-frame features.

The evidence that pretraining learned something physical: on held-out episodes, how much of the
variance of ground-truth positions a ridge regression on frozen encoder features explains (R^2),
compared with the same probe on a randomly initialised encoder.

Any backbone (:mod:`ivnext_world.backbones`: an instance or a spec string) is probed per frame, with
its own input size and normalisation; a bare :class:`VideoViT` (the pretraining pipeline's) encodes
clips of its own length, as before.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..backbones import Backbone, load_backbone
from ..models import VideoViT

DEFAULT_TARGETS = ("ground_truth.ee_pos", "ground_truth.object_pos")


@torch.no_grad()
def frame_features(encoder: VideoViT, video: torch.Tensor, pool_grid: int = 2) -> torch.Tensor:
    """Patch tokens of every token-frame average-pooled to a ``pool_grid x pool_grid`` layout.

    ``(B, C, T, H, W)`` -> ``(B, T', pool_grid**2 * D)``. A global mean (``pool_grid=1``) throws away
    *where* things are, which is exactly what a position probe asks about; a coarse grid keeps it
    while staying small enough for a linear probe.
    """
    tokens = encoder.forward_features(video)[:, encoder.num_prefix_tokens:]  # (B, N, D)
    b, d = tokens.shape[0], tokens.shape[-1]
    t_, h_, w_ = encoder.token_grid(video.shape[2:])
    maps = tokens.reshape(b * t_, h_, w_, d).permute(0, 3, 1, 2)  # (B*T', D, H', W')
    pooled = torch.nn.functional.adaptive_avg_pool2d(maps, pool_grid)  # (B*T', D, g, g)
    return pooled.reshape(b, t_, d * pool_grid * pool_grid)


@torch.no_grad()
def backbone_frame_features(backbone: Backbone, frames: torch.Tensor, pool_grid: int = 2) -> torch.Tensor:
    """Normalised frames ``(B, T, 3, S, S)`` -> ``(B, T, pool_grid**2 * D)``: each frame's patch tokens
    average-pooled to a ``pool_grid x pool_grid`` layout (as :func:`frame_features`)."""
    b, t = frames.shape[:2]
    patches = backbone.forward_frames(frames.flatten(0, 1), pooled=False).patches  # (B*T, N, D)
    h, w = backbone.grid
    maps = patches.transpose(1, 2).unflatten(2, (h, w))  # (B*T, D, h, w)
    pooled = torch.nn.functional.adaptive_avg_pool2d(maps, pool_grid)  # (B*T, D, g, g)
    return pooled.reshape(b, t, -1)


def _features_and_targets(encoder, root, episodes, targets, batch_size=8):
    from torch.utils.data import DataLoader

    from ..data import TrajectoryDataset, build_video_transform

    encoder.eval()
    if isinstance(encoder, Backbone):
        t, transform = 8, encoder.transform()  # windows of 8 frames, each frame encoded on its own
    else:
        t = encoder.grid_size[0] * encoder.tubelet_size
        size = encoder.patch_embed.patch_size * encoder.grid_size[1]
        transform = build_video_transform(False, size, crop_pct=1.0)
    ds = TrajectoryDataset(root, window=t, stride=t, episodes=list(episodes), transform=transform, on_error="raise")
    tables = {ep: ds.meta.episode_table(ep) for ep in episodes}
    missing = [k for k in targets if k not in tables[episodes[0]]]
    if missing:
        raise KeyError(f"{root} has no columns {missing}; columns: {sorted(tables[episodes[0]])}")
    feats, ys = [], []
    for batch in DataLoader(ds, batch_size=batch_size, num_workers=0):
        if isinstance(encoder, Backbone):
            f, tub = backbone_frame_features(encoder, batch["frames"]), 1  # (B, T, D')
        else:
            video = batch["frames"].permute(0, 2, 1, 3, 4)  # (B, T, C, H, W) -> (B, C, T, H, W)
            f, tub = frame_features(encoder, video), encoder.tubelet_size  # (B, T', D')
        for b, ep in enumerate(batch["episode_index"].tolist()):
            rows = batch["frame_index"][b].numpy()[::tub]  # first frame of each tubelet
            y = np.concatenate([tables[ep][k][rows].reshape(len(rows), -1) for k in targets], axis=1)
            feats.append(f[b].float().numpy())
            ys.append(y)
    return np.concatenate(feats), np.concatenate(ys)


def ridge_probe(
    x_tr, y_tr, x_te, y_te, alphas: Sequence[float] = (1e-2, 1e-1, 1, 10, 100, 1e3, 1e4), min_std: float = 1e-3
) -> dict:
    """Standardised ridge regression; alpha picked on a held-out fifth of the training rows.

    Returns R^2 on the test rows (mean over outputs, and per output) and the chosen alpha. Outputs
    whose training standard deviation is below ``min_std`` (1 mm for positions in metres: the height
    of a puck resting on the table, which only jitters with contact physics) are dropped, since R^2
    of an essentially constant quantity measures noise.
    """
    varying = y_tr.std(0) > min_std
    if not varying.any():
        raise ValueError("every probe target is constant in the training episodes")
    y_tr, y_te = y_tr[:, varying], y_te[:, varying]
    mu, sd = x_tr.mean(0), x_tr.std(0) + 1e-6
    xtr, xte = (x_tr - mu) / sd, (x_te - mu) / sd
    ymu = y_tr.mean(0)

    def fit(x, y, a):
        x1 = np.concatenate([x, np.ones((len(x), 1))], 1)
        reg = a * np.eye(x1.shape[1])
        reg[-1, -1] = 0  # no penalty on the intercept
        return np.linalg.solve(x1.T @ x1 + reg, x1.T @ y)

    def predict(w, x):
        return np.concatenate([x, np.ones((len(x), 1))], 1) @ w

    def r2(y, p):
        return 1 - ((y - p) ** 2).sum(0) / ((y - y.mean(0)) ** 2).sum(0).clip(1e-12)

    n_val = max(1, len(xtr) // 5)
    val_scores = [r2(y_tr[-n_val:], predict(fit(xtr[:-n_val], y_tr[:-n_val] - ymu, a), xtr[-n_val:]) + ymu).mean() for a in alphas]
    alpha = alphas[int(np.argmax(val_scores))]
    w = fit(xtr, y_tr - ymu, alpha)
    per = r2(y_te, predict(w, xte) + ymu)
    return {"r2": float(per.mean()), "r2_per_output": per.tolist(), "alpha": alpha, "outputs": np.flatnonzero(varying).tolist()}


@dataclass
class StateProbeResult:
    r2: float
    r2_per_output: list
    alpha: float
    train_frames: int
    test_frames: int
    targets: tuple


def state_probe(
    encoder: VideoViT | Backbone | str,
    root: str | Path,
    train_episodes: Sequence[int],
    test_episodes: Sequence[int],
    targets: Sequence[str] = DEFAULT_TARGETS,
    img_size: int | None = None,
) -> StateProbeResult:
    """Fit on ``train_episodes``, score R^2 on ``test_episodes`` (held out: no frame of them is seen).

    ``encoder``: a bare :class:`VideoViT`, a :class:`Backbone`, or a backbone spec (``img_size``: its frame side)."""
    if set(train_episodes) & set(test_episodes):
        raise ValueError("train and test episodes overlap: the probe would not measure generalisation")
    if isinstance(encoder, (str, Path)):
        encoder = load_backbone(str(encoder), img_size=img_size)
    xtr, ytr = _features_and_targets(encoder, root, list(train_episodes), targets)
    xte, yte = _features_and_targets(encoder, root, list(test_episodes), targets)
    res = ridge_probe(xtr, ytr, xte, yte)
    return StateProbeResult(res["r2"], res["r2_per_output"], res["alpha"], len(xtr), len(xte), tuple(targets))
