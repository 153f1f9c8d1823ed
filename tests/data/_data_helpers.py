"""Synthetic videos and episodes for the data tests (real files, tiny sizes).

Every synthetic frame carries its own index as 8 black/white blocks along the top rows (bit k of t
in block k), which survives H.264, so a test can read back *which* frame a decoder returned.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ivnext_world.data.lerobot import LeRobotWriter
from ivnext_world.data.video_io import encode_mp4

CAM = "observation.images.scene"
H, W = 64, 64
FPS = 10
ACTION_DIM, STATE_DIM = 3, 5
BITS, BLOCK = 8, 8  # frame-id blocks: 8 blocks of 8x8 pixels -> ids 0..255


def synthetic_frames(t: int, h: int = H, w: int = W, seed: int = 0) -> np.ndarray:
    """(t, h, w, 3) uint8: soft gradient background, a moving coloured square, frame-id blocks on top."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 160 // w + 40, yy * 160 // h + 40, np.full_like(xx, 90 + 30 * (seed % 3))], -1)
    colour = rng.integers(60, 200, 3)
    frames = np.repeat(base[None].astype(np.uint8), t, axis=0)
    for i in range(t):
        y, x = (BLOCK + 4 + 2 * i) % (h - BLOCK - 16) + BLOCK, (3 * i + 7 * seed) % (w - 16)
        frames[i, y : y + 12, x : x + 12] = colour
        for k in range(BITS):
            frames[i, :BLOCK, k * BLOCK : (k + 1) * BLOCK] = 255 if (i >> k) & 1 else 0
    return frames


def frame_ids(frames: np.ndarray) -> np.ndarray:
    """Read back the ids of decoded (T, H, W, 3) frames (or (T, 3, H, W) tensors as numpy)."""
    frames = np.asarray(frames)
    if frames.shape[-1] != 3:
        frames = frames.transpose(0, 2, 3, 1)
    blocks = frames[:, 2 : BLOCK - 2, :, :].astype(np.float32).mean(axis=(1, 3))  # (T, W) over inner rows
    bits = np.stack([blocks[:, k * BLOCK + 2 : (k + 1) * BLOCK - 2].mean(1) > 127 for k in range(BITS)], 1)
    return (bits * (1 << np.arange(BITS))).sum(1)


def write_video(path: Path, t: int, fps: int = 30, seed: int = 0, h: int = H, w: int = W) -> np.ndarray:
    frames = synthetic_frames(t, h, w, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    encode_mp4(path, frames, fps)
    return frames


def episode_arrays(ep: int, t: int) -> dict:
    """Keyword arguments for ``LeRobotWriter.write_episode`` with random, exactly checkable values."""
    rng = np.random.default_rng(100 + ep)
    return dict(
        task="push the puck" if ep % 2 == 0 else "reach the goal",
        frames={CAM: synthetic_frames(t, seed=ep)},
        depth={CAM: rng.uniform(0.1, 5.0, (t, H, W)).astype(np.float32)},
        intrinsics={CAM: rng.normal(size=(t, 3, 3)).astype(np.float32)},
        extrinsics={CAM: rng.normal(size=(t, 4, 4)).astype(np.float32)},
        actions=rng.normal(size=(t, ACTION_DIM)).astype(np.float32),
        states=rng.normal(size=(t, STATE_DIM)).astype(np.float32),
        success=rng.random(t) > 0.5,
        extra={"ground_truth.ee_pos": rng.normal(size=(t, 3)).astype(np.float32)},
    )


def make_writer(root: Path) -> LeRobotWriter:
    return LeRobotWriter(root, fps=FPS, robot_type="synthetic_arm", camera_keys=[CAM], image_size=(H, W),
                         action_dim=ACTION_DIM, state_dim=STATE_DIM, action_names=["dx", "dy", "dz"])


def write_episodes(root: Path, lengths: dict[int, int]) -> None:
    """Process entry point too: writes the given episodes (index -> length) into ``root``."""
    writer = make_writer(root)
    for ep, t in lengths.items():
        writer.write_episode(ep, **episode_arrays(ep, t))


def write_then_die(root: Path, ep: int, t: int, die_after_files: int) -> None:
    """Process entry point: start writing episode ``ep`` and hard-exit (like SIGKILL, no cleanup)
    after ``die_after_files`` files reached their final names."""
    import ivnext_world.data.lerobot.write as write_module
    import ivnext_world.utils.io as io_module

    real = io_module.atomic_write_bytes
    done = []

    def dying_write(path, data):
        if len(done) == die_after_files:
            # Leave a half-written temp file behind, as a kill during the write would.
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            (Path(path).parent / f".{Path(path).name}.abc123.tmp").write_bytes(data[: len(data) // 2])
            os._exit(3)
        done.append(path)
        return real(path, data)

    # Both names: the writer's own import, and the one the JSON marker write goes through.
    write_module.atomic_write_bytes = io_module.atomic_write_bytes = dying_write
    make_writer(root).write_episode(ep, **episode_arrays(ep, t))


def make_dataset(root: Path, lengths: dict[int, int]) -> Path:
    write_episodes(root, lengths)
    make_writer(root).finalize()
    return root
