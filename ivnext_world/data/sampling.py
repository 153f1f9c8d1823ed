"""Which frames of a clip to decode: TSN segment sampling and dense strided sampling.

Both return indices *within the clip* (0 .. n-1). Randomness uses torch's global generator, which
DataLoader seeds differently in every worker and ``torch.manual_seed`` makes reproducible.
"""
from __future__ import annotations

import math

import numpy as np
import torch


def frames_needed(num_frames: int, sampling: str, step: float) -> int:
    """Shortest clip that fits ``num_frames`` samples without repeating a frame."""
    if sampling == "segment":
        return num_frames
    if sampling == "dense":
        return int(_dense_offsets(num_frames, step)[-1]) + 1
    raise ValueError(f"sampling must be 'segment' or 'dense', got {sampling!r}")


def sample_indices(n: int, num_frames: int, sampling: str, step: float = 1.0, train: bool = True) -> np.ndarray:
    """``num_frames`` sorted frame indices into a clip of ``n`` frames.

    - ``"segment"`` (TSN): split the clip into ``num_frames`` equal segments and take one frame of
      each, at a random position in training and at the segment centre otherwise.
    - ``"dense"``: ``num_frames`` frames ``step`` apart (``step`` may be fractional, e.g. after fps
      conversion; positions are rounded), starting at a random offset in training, centred otherwise.

    A clip shorter than :func:`frames_needed` is padded by repeating its last frame; callers that
    treat short clips as errors check the length first.
    """
    if n <= 0:
        raise ValueError("cannot sample from an empty clip")
    if sampling == "segment":
        if n < num_frames:
            return np.minimum(np.arange(num_frames), n - 1)
        edges = np.linspace(0, n, num_frames + 1)
        lo, hi = np.floor(edges[:-1]).astype(np.int64), np.floor(edges[1:]).astype(np.int64)  # [lo, hi)
        if train:
            return lo + (torch.rand(num_frames).numpy() * (hi - lo)).astype(np.int64)
        return (lo + hi) // 2
    offsets = _dense_offsets(num_frames, step)
    slack = n - (offsets[-1] + 1)
    if slack < 0:
        return np.minimum(offsets, n - 1)
    start = int(torch.randint(0, slack + 1, ()).item()) if train else slack // 2
    return start + offsets


def _dense_offsets(num_frames: int, step: float) -> np.ndarray:
    # Round half up (not numpy's half-to-even) so fractional steps spread evenly: 1.5 -> 0, 2, 3, 5.
    return np.floor(np.arange(num_frames) * step + 0.5).astype(np.int64)


def fps_step(stride: float, video_fps: float, target_fps: float | None) -> float:
    """Frames to advance in the file per sample: ``stride`` is counted at ``target_fps`` when given,
    so a 60 fps and a 30 fps video sampled with the same stride span the same duration."""
    if target_fps is None:
        return float(stride)
    if not (video_fps > 0 and math.isfinite(video_fps)):
        raise ValueError(f"video fps {video_fps} is unusable for fps-aware sampling")
    return float(stride) * video_fps / float(target_fps)
