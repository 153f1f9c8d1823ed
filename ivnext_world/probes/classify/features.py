"""Frozen tokens per video view, computed once (``features=cache``) or on the fly (``features=online``).

The backbone is frozen and in eval mode, so a view's tokens never change: extracting them once and
training every head of the grid on the stored tokens costs one backbone pass per view instead of one
per view per epoch. At CPU scale (tiny backbones, hundreds of clips) the backbone pass dominates the
cost and the cache is small, so ``cache`` is the default. The cache holds
``videos x views x tokens x width`` numbers (float16 by default: half the memory, ~1e-3 relative
rounding): e.g. K400 (240k videos) x 1 training view x 2048 tokens x 1024 wide is ~1 TB, which is why
paper-scale runs use ``online`` (the backbone runs inside every training step, V-JEPA 2's way, with
fresh augmentations each epoch). :func:`cache_bytes` gives the number; the run refuses a cache above
``max_cache_gb`` with a message saying so.

Cache files (``<out>/features/<split>.pt``) carry a fingerprint of the backbone, the split's videos
and the view settings; a resumed run reuses them only when the fingerprint matches.
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
from pathlib import Path
from typing import Iterator

import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from ...data.failures import BadItem
from ...utils.io import atomic_write_bytes
from ...backbones import Backbone
from .data import ClipViews

log = logging.getLogger(__name__)
DTYPES = {"float16": torch.float16, "float32": torch.float32, "bfloat16": torch.bfloat16}


def cache_bytes(videos: int, views: int, tokens: int, dim: int, dtype: str = "float16") -> int:
    return videos * views * tokens * dim * torch.tensor([], dtype=DTYPES[dtype]).element_size()


def _collate(items: list[dict]) -> dict:
    return {"video": torch.stack([it["video"] for it in items]), "label": torch.tensor([it["label"] for it in items]),
            "index": torch.tensor([it["index"] for it in items]), "requested": torch.tensor([it["requested"] for it in items])}


def view_batches(backbone: Backbone, views: ClipViews, batch_size: int, num_workers: int = 0,
                 device: torch.device | str = "cpu", desc: str = "views", seed: int = 0) -> Iterator[dict]:
    """Batches of ``{"tokens": (B, V, N, D) float32, "label": (B,), "index": (B,)}`` in dataset order.

    Videos the failure policy replaced (``index != requested``) are dropped from the batch: each
    video is scored once or not at all. Deterministic: training views draw from a generator seeded
    per video (``views`` in train mode), so a rerun extracts the same tokens.
    """
    loader = DataLoader(_Seeded(views, seed), batch_size=batch_size, num_workers=num_workers, collate_fn=_collate, shuffle=False)
    backbone.to(device)
    for batch in tqdm(loader, desc=desc, unit="batch", dynamic_ncols=True, leave=False):
        keep = batch["index"] == batch["requested"]
        if not keep.any():
            continue
        video = batch["video"][keep].to(device)  # (B, V, C, T, S, S)
        b, v = video.shape[:2]
        with torch.no_grad():
            tokens = backbone(video.flatten(0, 1))  # (B*V, N, D)
        yield {"tokens": tokens.float().unflatten(0, (b, v)), "label": batch["label"][keep], "index": batch["index"][keep]}


class _Seeded(torch.utils.data.Dataset):
    """Seeds torch's RNG from the item index before loading: random training views are a function
    of (video, view) only, whichever worker loads them and whatever ran before."""

    def __init__(self, views: ClipViews, seed: int = 0):
        self.views, self.seed = views, seed

    def __len__(self) -> int:
        return len(self.views)

    def __getitem__(self, i: int) -> dict:
        state = torch.get_rng_state()
        torch.manual_seed(self.seed * 1_000_003 + i)
        try:
            return self.views[i]
        finally:
            torch.set_rng_state(state)


def fingerprint(backbone: Backbone, views: ClipViews, dtype: str) -> str:
    """What the cached tokens depend on: backbone, videos (path, size, mtime, label) and view settings."""
    files = []
    for it in views.items:
        st = it.path.stat() if it.path.is_file() else None
        files.append([str(it.path), it.start, it.length, it.label, st.st_size if st else None, st.st_mtime_ns if st else None])
    settings = {k: getattr(views, k) for k in ("num_frames", "frame_step", "size", "mode", "clips", "crops", "train_views",
                                                 "train_scale", "flip", "short_clip")}
    settings.update(mean=views.mean.flatten().tolist(), std=views.std.flatten().tolist(), dtype=dtype)
    blob = json.dumps({"backbone": backbone.record, "settings": settings, "files": files}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def extract_tokens(backbone: Backbone, views: ClipViews, batch_size: int, dtype: str = "float16",
                   num_workers: int = 0, device="cpu", desc: str = "extract", seed: int = 0) -> dict:
    """All views' tokens: ``{"tokens": (N_kept, V, N, D) <dtype>, "labels": (N_kept,), "indices": (N_kept,),
    "skipped": [BadItem-as-dict], "failures": {reason: count}}``."""
    chunks, labels, indices = [], [], []
    for batch in view_batches(backbone, views, batch_size, num_workers, device, desc, seed):
        chunks.append(batch["tokens"].to(DTYPES[dtype]).cpu())
        labels.append(batch["label"])
        indices.append(batch["index"])
    if not chunks:
        raise RuntimeError(f"no video of {desc} could be loaded ({dict(views.failures)})")
    return {"tokens": torch.cat(chunks), "labels": torch.cat(labels), "indices": torch.cat(indices),
            "skipped": [_bad(b) for b in views.failure_examples], "failures": dict(views.failures)}


def _bad(b: BadItem) -> dict:
    return {"index": b.index, "path": b.path, "reason": b.kind, "detail": b.detail}


def cached_tokens(path: Path, backbone: Backbone, views: ClipViews, batch_size: int, dtype: str = "float16",
                  num_workers: int = 0, device="cpu", desc: str = "extract", seed: int = 0) -> dict:
    """:func:`extract_tokens`, stored at ``path`` and reused while its fingerprint matches."""
    fp = fingerprint(backbone, views, dtype) + f"-s{seed}"
    if path.is_file():
        stored = torch.load(path, map_location="cpu", weights_only=True)
        if stored.get("fingerprint") == fp:
            log.info("reusing cached tokens %s (%s)", path, tuple(stored["tokens"].shape))
            return stored
        log.info("cached tokens %s were made for other settings: extracting again", path)
    out = {**extract_tokens(backbone, views, batch_size, dtype, num_workers, device, desc, seed), "fingerprint": fp}
    buf = io.BytesIO()
    torch.save(out, buf)
    atomic_write_bytes(path, buf.getvalue())
    return out


class TokenViews(torch.utils.data.Dataset):
    """Training items from cached tokens: one item per (video, view): ``{"tokens": (N, D) float32, "label": int}``."""

    def __init__(self, tokens: torch.Tensor, labels: torch.Tensor):
        self.tokens, self.labels = tokens, labels
        self.views = tokens.shape[1]

    def __len__(self) -> int:
        return len(self.tokens) * self.views

    def __getitem__(self, i: int) -> dict:
        v, k = divmod(i, self.views)
        return {"tokens": self.tokens[v, k].float(), "label": int(self.labels[v])}


class VideoViews(torch.utils.data.Dataset):
    """Online training items: one random view per video, ``{"video": (C, T, S, S), "label": int}``
    (the trainer's seeded dataset wrapper makes the random view reproducible)."""

    def __init__(self, views: ClipViews):
        if views.mode != "train" or views.train_views != 1:
            raise ValueError("online training reads one random view per item (train mode, train_views=1)")
        self.views = views

    def __len__(self) -> int:
        return len(self.views)

    def __getitem__(self, i: int) -> dict:
        item = self.views[i]
        return {"video": item["video"][0], "label": item["label"]}
