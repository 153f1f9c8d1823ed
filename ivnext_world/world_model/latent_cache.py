"""Encode every training frame once: a per-episode latent cache and windows over it.

The encoder is frozen and the world model's input transform is deterministic (resize, centre crop,
normalise: no augmentation), so the target latents of a frame never change during fine-tuning.
Encoding them once instead of at every step removes video decoding and the encoder forward from
the training step, and the latents equal what the on-the-fly path computes (tested).

Layout of ``<cache>/``: ``episode_<index>.safetensors`` (``latents (T, n, D)`` float32) per episode,
written atomically, and ``meta.json`` naming what they were computed from (encoder weights' hash,
image size, pooling, camera); a cache whose ``meta.json`` disagrees is rebuilt, never reused.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from ..data.lerobot.layout import ACTION, STATE
from ..data.trajectory import action_chunks
from ..utils.io import atomic_write_text, fsync_dir
from .latents import encode_video

log = logging.getLogger(__name__)

__all__ = ["LatentWindowDataset", "build_latent_cache"]


def _file_hash(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()[:16]


@torch.no_grad()
def build_latent_cache(
    encoder,
    encoder_weights: Path,
    source: str,
    episodes: list[int],
    cache_dir: Path,
    img_size: int,
    pool: int = 1,
    camera_key: str | None = None,
    chunk_frames: int = 32,
    device: str | torch.device = "cpu",
    decoder: str = "auto",
) -> Path:
    """Encode each episode of ``source`` (LeRobot layout) into ``cache_dir``; episodes already cached
    with the same encoder/settings are kept. Returns ``cache_dir``."""
    from ..data import LeRobotDataset, TrajectoryDataset, build_video_transform

    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    meta = LeRobotDataset(source)
    key = {
        "encoder_weights_sha256": _file_hash(Path(encoder_weights)), "img_size": img_size, "pool": pool,
        "camera_key": camera_key or meta.camera_keys[0], "source": str(Path(source).resolve()),
    }
    meta_path = cache_dir / "meta.json"
    if meta_path.exists() and json.loads(meta_path.read_text()) != key:
        log.warning("latent cache %s was computed from something else: rebuilding it", cache_dir)
        for f in cache_dir.glob("episode_*.safetensors"):
            f.unlink()
    atomic_write_text(meta_path, json.dumps(key, indent=2))
    transform = build_video_transform(False, img_size, crop_pct=1.0, flip=False)
    encoder = encoder.to(device).eval()
    todo = [ep for ep in episodes if not (cache_dir / f"episode_{ep:06d}.safetensors").exists()]
    for ep in tqdm(todo, desc="encode latents", unit="episode", disable=not todo):
        n = meta.episode_length(ep)
        item = TrajectoryDataset(source, window=n, episodes=[ep], camera_key=camera_key, transform=transform,
                                 on_error="raise", decoder=decoder)[0]
        frames = item["frames"].to(device)  # (T, 3, S, S) normalised
        z = torch.cat([encode_video(encoder, frames[None, i:i + chunk_frames], pool)[0].float().cpu()
                       for i in range(0, n, chunk_frames)])  # (T, n, D)
        path = cache_dir / f"episode_{ep:06d}.safetensors"
        tmp = path.with_suffix(".tmp")
        save_file({"latents": z.contiguous()}, str(tmp))
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    fsync_dir(cache_dir)
    return cache_dir


class LatentWindowDataset(Dataset):
    """Windows of cached latents with their actions and proprio, indexed like
    :class:`~ivnext_world.data.TrajectoryDataset` (rows ``start + frame_skip * [0 .. window-1]``,
    starts ``stride`` apart). Items: ``latents (T, n, D)``, ``actions (T, frame_skip * A)`` (the
    env actions between consecutive frames, :func:`~ivnext_world.data.trajectory.action_chunks`),
    ``proprio (T, S)``.
    """

    def __init__(self, cache_dir: Path, source: str, episodes: list[int], window: int, stride: int = 1,
                 frame_skip: int = 1):
        from ..data import LeRobotDataset

        self.cache_dir, self.window, self.frame_skip = Path(cache_dir), window, frame_skip
        meta = LeRobotDataset(source)
        self.tables = {ep: {k: meta.episode_table(ep)[k] for k in (ACTION, STATE)} for ep in episodes}
        span = (window - 1) * frame_skip + 1
        self.windows = [(ep, s) for ep in episodes for s in range(0, len(self.tables[ep][ACTION]) - span + 1, stride)]
        if not self.windows:
            raise ValueError(f"{source}: no episode of {episodes} holds a window of {span} steps")
        self.failures: dict = {}  # same reporting interface as the video datasets (nothing can fail here)

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, index: int) -> dict:
        ep, start = self.windows[index]
        rows = start + self.frame_skip * np.arange(self.window)
        with safe_open(str(self.cache_dir / f"episode_{ep:06d}.safetensors"), "pt") as f:
            sl = f.get_slice("latents")
            z = sl[int(rows[0]):int(rows[-1]) + 1]  # (span, n, D): one contiguous read
        table = self.tables[ep]
        return {
            "latents": z[torch.from_numpy(rows - rows[0])],
            "actions": torch.from_numpy(action_chunks(table[ACTION], rows, self.frame_skip)),
            "proprio": torch.from_numpy(np.ascontiguousarray(table[STATE][rows])),
        }
