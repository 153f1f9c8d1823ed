"""Tiny depth data and models for the probe tests (real files, CPU, seconds)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ivnext_world.data.lerobot import LeRobotWriter
from ivnext_world.pretrain import EPDConfig, build_epd
from ivnext_world.train.checkpoint import TrainState, save_checkpoint

CAM = "observation.images.scene"
S = 56  # pixels; patch 14 -> a 4x4 token grid
K = np.array([[50.0, 0, (S - 1) / 2], [0, 50.0, (S - 1) / 2], [0, 0, 1]], np.float32)
# 56 px encoder, 4x4 patches + 4 cls tokens, width 48, 2 blocks.
TINY_EPD = dict(img_size=S, num_frames=4, encoder_kwargs={"embed_dim": 48, "depth": 2, "num_heads": 2, "pool_num_heads": 2},
                predictor_dim=48, predictor_depth=1, predictor_heads=2, decoder="none")


def scene(t: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(t, S, S, 3)`` uint8 frames and ``(t, S, S)`` depth: a floor receding with the rows (brighter
    = farther) and a moving dark box 0.8 m away, so depth is visible in the pixels."""
    rng = np.random.default_rng(seed)
    rows = np.linspace(0, 1, S, dtype=np.float32)[:, None].repeat(S, 1)
    depth = np.repeat((3.0 - 2.0 * rows)[None], t, 0)  # far at the top (3 m), near at the bottom (1 m)
    frames = np.repeat((40 + 180 * (1 - rows))[None, ..., None].repeat(3, -1), t, 0)
    frames[..., 2] = 90
    for i in range(t):
        y, x = 10 + (3 * i + seed) % 24, 8 + (5 * i + 7 * seed) % 30
        depth[i, y:y + 14, x:x + 14] = 0.8
        frames[i, y:y + 14, x:x + 14] = rng.integers(0, 40, 3)
    return frames.round().clip(0, 255).astype(np.uint8), depth.astype(np.float32)


def make_depth_dataset(root: Path, episodes: int = 3, t: int = 8) -> Path:
    writer = LeRobotWriter(root, fps=10, robot_type="synthetic", camera_keys=[CAM], image_size=(S, S), action_dim=2, state_dim=3)
    for ep in range(episodes):
        frames, depth = scene(t, ep)
        rng = np.random.default_rng(ep)
        writer.write_episode(
            ep, "look", frames={CAM: frames}, depth={CAM: depth}, intrinsics={CAM: np.repeat(K[None], t, 0)},
            extrinsics={CAM: np.repeat(np.eye(4, dtype=np.float32)[None], t, 0)},
            actions=rng.normal(size=(t, 2)).astype(np.float32), states=rng.normal(size=(t, 3)).astype(np.float32),
            success=np.zeros(t, bool))
    writer.finalize()
    return root


def save_tiny_epd(root: Path, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    model = build_epd(EPDConfig(**TINY_EPD))
    return save_checkpoint(root / "checkpoints", model, None,
                           TrainState(step=1, data={}, extra={"model": model.config_dict(), "stage": 1}))
