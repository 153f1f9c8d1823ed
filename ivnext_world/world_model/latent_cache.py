"""Encode every training frame once: a per-episode latent cache and windows over it.

The encoder is frozen and the world model's input transform is deterministic (resize, centre crop,
normalise: no augmentation), so the target latents of a frame never change during fine-tuning.
Encoding them once instead of at every step removes video decoding and the encoder forward from
the training step, and the latents equal what the on-the-fly path computes (tested).

Layout of ``<cache>/``: ``episode_<index>.safetensors`` (``latents (T, n, D)`` float32, and the
rank that encoded it in the file's metadata) per episode, written atomically, and ``meta.json``
naming what they were computed from (encoder weights' hash: our checkpoint file's, or another
backbone's weight fingerprint and spec; image size, pooling, camera, and the precision when not
fp32); a cache whose ``meta.json`` disagrees is rebuilt, never reused.

Under ``torch.distributed`` every rank calls :func:`build_latent_cache`: the episodes are shared out
by length over the ranks, each rank encodes its share on its own device (``cuda:LOCAL_RANK``) and
writes its files, and the call returns on every rank once all parts are there. An interrupted build
resumes: an episode file that exists is complete (atomic rename) and is not encoded again.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from safetensors import safe_open
from safetensors.torch import save_file
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from ..backbones import Backbone
from ..data.lerobot.layout import ACTION, STATE
from ..data.trajectory import action_chunks
from ..utils.io import atomic_write_text, fsync_dir
from .latents import encode_video
from .precision import inference_autocast, inference_dtype

log = logging.getLogger(__name__)

__all__ = ["LatentWindowDataset", "build_latent_cache", "default_device", "encoded_by", "shard_episodes"]


def _file_hash(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()[:16]


def default_device() -> torch.device:
    """This process's accelerator: ``cuda:LOCAL_RANK`` (the trainer's GPU under torchrun/SLURM) or the CPU."""
    if not torch.cuda.is_available():
        return torch.device("cpu")
    local = os.environ.get("LOCAL_RANK")
    index = int(local) % torch.cuda.device_count() if local is not None else torch.cuda.current_device()
    return torch.device("cuda", index)


def shard_episodes(episodes: list[int], lengths: list[int], world_size: int) -> list[list[int]]:
    """Episodes -> ``world_size`` disjoint shares of about equal frame counts (longest first to the
    least-loaded rank; ties go to the lowest rank, so every rank computes the same split)."""
    shares, load = [[] for _ in range(world_size)], [0] * world_size
    for n, ep in sorted(zip(lengths, episodes), key=lambda x: (-x[0], x[1])):
        r = min(range(world_size), key=lambda i: (load[i], i))
        shares[r].append(ep)
        load[r] += n
    return [sorted(s) for s in shares]


def episode_path(cache_dir: Path, ep: int) -> Path:
    return Path(cache_dir) / f"episode_{ep:06d}.safetensors"


@torch.no_grad()
def build_latent_cache(
    encoder,
    encoder_weights: Path | None,
    source: str,
    episodes: list[int],
    cache_dir: Path,
    img_size: int,
    pool: int = 1,
    camera_key: str | None = None,
    chunk_frames: int = 32,
    device: str | torch.device | None = None,
    precision: str = "auto",
    decoder: str = "auto",
) -> Path:
    """Encode each episode of ``source`` (LeRobot layout) into ``cache_dir``; episodes already cached
    with the same encoder/settings are kept. Returns ``cache_dir``.

    ``encoder``: a :class:`~ivnext_world.backbones.Backbone` (frames resized to ``img_size`` and
    normalised its way) or our bare ``VideoViT`` (ImageNet); ``encoder_weights``: its checkpoint file
    (hashed into the cache key), or None for a backbone (its :meth:`Backbone.fingerprint` instead).

    ``device``: where frames are transformed and encoded (None: :func:`default_device`). ``precision``:
    auto | fp32 | bf16, as :mod:`~ivnext_world.world_model.precision` (the latents are stored in fp32).
    Collective under ``torch.distributed`` (every rank must call it; see the module docstring).
    """
    from ..data import LeRobotDataset

    distributed = dist.is_available() and dist.is_initialized()
    rank, world = (dist.get_rank(), dist.get_world_size()) if distributed else (0, 1)
    device = torch.device(device) if device is not None else default_device()
    cache_dir = Path(cache_dir)
    meta = LeRobotDataset(source)

    def prepare():  # one rank checks and (re)starts the cache while the others wait
        cache_dir.mkdir(parents=True, exist_ok=True)
        if encoder_weights is None and not isinstance(encoder, Backbone):
            raise ValueError("build_latent_cache needs encoder_weights (the checkpoint file) for a bare encoder")
        weights = _file_hash(Path(encoder_weights)) if encoder_weights is not None else encoder.fingerprint()
        key = {
            "encoder_weights_sha256": weights, "img_size": img_size, "pool": pool,
            "camera_key": camera_key or meta.camera_keys[0], "source": str(Path(source).resolve()),
        }
        if encoder_weights is None:  # another backbone: its spec and normalisation (our caches keep their old key)
            key.update(backbone=encoder.spec, mean=list(encoder.mean), std=list(encoder.std))
        if inference_dtype(precision, device) is not None:  # fp32 caches keep their old key (no rebuild)
            key["precision"] = "bf16"
        meta_path = cache_dir / "meta.json"
        if meta_path.exists() and json.loads(meta_path.read_text()) != key:
            log.warning("latent cache %s was computed from something else: rebuilding it", cache_dir)
            for f in cache_dir.glob("episode_*.safetensors"):
                f.unlink()
        for f in cache_dir.glob("episode_*.tmp"):  # left by an interrupted build
            f.unlink()
        atomic_write_text(meta_path, json.dumps(key, indent=2))

    def encode():
        # Every rank computes the same split from the dataset's metadata (not from which files
        # exist, which a shared filesystem may show to the ranks at different times).
        mine = shard_episodes(list(episodes), [meta.episode_length(ep) for ep in episodes], world)[rank]
        todo = [ep for ep in mine if not episode_path(cache_dir, ep).exists()]
        _encode_episodes(encoder, source, todo, cache_dir, img_size, pool, camera_key, chunk_frames, device,
                         precision, rank, meta, decoder)
        fsync_dir(cache_dir)

    _together(prepare if rank == 0 else None, distributed, "preparing")
    _together(encode, distributed, "encoding its episodes")
    missing = [ep for ep in episodes if not episode_path(cache_dir, ep).exists()]
    if missing:
        raise RuntimeError(f"latent cache {cache_dir} is incomplete after the build: episodes {missing[:10]} "
                           f"({len(missing)} in all) have no file; is {cache_dir} on a filesystem all ranks share?")
    return cache_dir


def _together(fn, distributed: bool, what: str) -> None:
    """Run ``fn`` (None: nothing) on this rank, then wait for every rank; a failure on any rank
    raises on all of them (instead of leaving the others in a barrier until the timeout)."""
    error = None
    try:
        if fn is not None:
            fn()
    except Exception as e:
        if not distributed:
            raise
        error = e
    if not distributed:
        return
    failed = torch.tensor([float(error is not None)], device=_collective_device())
    dist.all_reduce(failed, op=dist.ReduceOp.MAX)  # doubles as the barrier
    if error is not None:
        raise error
    if failed.item() > 0:
        raise RuntimeError(f"latent cache: another rank failed while {what} (see its log)")


def _encode_episodes(encoder, source, todo, cache_dir, img_size, pool, camera_key, chunk_frames, device,
                     precision, rank, meta, decoder) -> None:
    from ..data import TrajectoryDataset, build_video_transform

    if not todo:
        return
    # The transform runs where the on-the-fly path runs it (the CPU, in the dataset): torchvision
    # resizes uint8 on the CPU with rounding that a GPU's float resize does not reproduce, and the
    # cached latents must equal the on-the-fly ones. The encoder, the expensive part, runs on `device`.
    if isinstance(encoder, Backbone):
        if img_size != encoder.img_size:
            raise ValueError(f"img_size={img_size} but backbone {encoder.spec!r} takes {encoder.img_size}-px frames")
        transform = encoder.transform()
    else:
        transform = build_video_transform(False, img_size, crop_pct=1.0, flip=False)
    encoder = encoder.to(device).eval()
    for ep in tqdm(todo, desc=f"encode latents (rank {rank})", unit="episode", disable=rank != 0):
        n = meta.episode_length(ep)
        frames = TrajectoryDataset(source, window=n, episodes=[ep], camera_key=camera_key, transform=transform,
                                   on_error="raise", decoder=decoder)[0]["frames"]  # (T, 3, S, S) normalised
        parts = []
        for i in range(0, n, chunk_frames):
            x = frames[None, i:i + chunk_frames].to(device, non_blocking=True)
            with inference_autocast(precision, device):
                parts.append(encode_video(encoder, x, pool)[0].float().cpu())
        z = torch.cat(parts)  # (T, n, D)
        path = episode_path(cache_dir, ep)
        tmp = path.with_suffix(".tmp")
        save_file({"latents": z.contiguous()}, str(tmp), metadata={"rank": str(rank), "device": str(device)})
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)


def _collective_device() -> torch.device:
    """NCCL reduces CUDA tensors only; gloo CPU ones."""
    return default_device() if dist.get_backend() == "nccl" else torch.device("cpu")


def encoded_by(cache_dir: Path, ep: int) -> dict:
    """The metadata an episode file was written with: ``{"rank": ..., "device": ...}``."""
    with safe_open(str(episode_path(cache_dir, ep)), "pt") as f:
        return f.metadata() or {}


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
        with safe_open(str(episode_path(self.cache_dir, ep)), "pt") as f:
            sl = f.get_slice("latents")
            z = sl[int(rows[0]):int(rows[-1]) + 1]  # (span, n, D): one contiguous read
        table = self.tables[ep]
        return {
            "latents": z[torch.from_numpy(rows - rows[0])],
            "actions": torch.from_numpy(action_chunks(table[ACTION], rows, self.frame_skip)),
            "proprio": torch.from_numpy(np.ascontiguousarray(table[STATE][rows])),
        }
