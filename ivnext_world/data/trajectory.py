"""Aligned windows of robot trajectories (frames, actions, proprioception, depth, camera) from LeRobot folders."""
from __future__ import annotations

import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch.utils.data import Dataset

from .failures import BAD_DEPTH, BadInput, BadItem, FailurePolicy, PolicyDataset
from .lerobot import LeRobotDataset
from .lerobot.layout import ACTION, STATE, extrinsics_key, intrinsics_key
from .manifest import lerobot_items
from .video_io import check_decoder, open_video, read_frames


def action_chunks(actions: np.ndarray, rows: np.ndarray, k: int) -> np.ndarray:
    """``(N, A)`` actions of an episode -> ``(len(rows), k * A)``: row ``r``'s chunk is actions
    ``r .. r + k - 1`` concatenated in time order (``k = 1``: the rows' own actions).

    Past the episode's last action the chunk repeats it; that only happens for a window's last
    frame, whose action no prediction inside the window uses.
    """
    rows = np.asarray(rows)
    if k == 1:
        return np.ascontiguousarray(actions[rows])
    idx = np.minimum(rows[:, None] + np.arange(k), len(actions) - 1)  # (T, k)
    return np.ascontiguousarray(actions[idx].reshape(len(rows), -1))


class TrajectoryDataset(PolicyDataset, Dataset):
    """Windows of ``window`` steps from every episode of a LeRobot folder (v2.1 or v3.0).

    Window ``k`` of an episode covers parquet rows ``r = start + frame_skip * [0 .. window-1]``,
    starts ``stride`` rows apart; episodes shorter than one window contribute none (with a warning).
    Row ``r``'s action is the one taken after observing frame ``r`` (LeRobot convention). With
    ``chunk_actions`` (world models with ``frame_skip`` k, DINO-WM's "frameskip"), step ``t``'s action
    is instead the concatenation of the k actions taken between frames ``r_t`` and ``r_t + k``
    (see :func:`action_chunks`), so nothing that moved the scene between two frames is dropped.

    Each item is a dict (T = ``window``):

    - ``"frames"``: (T, C, H, W) float32 in [0, 1] of ``camera_key``, decoded (``decoder``) at the rows'
      timestamps (v3.0: shifted by the episode's ``from_timestamp`` in the shared video); with a
      ``transform`` its output for the uint8 (T, C, H, W) clip instead, made contiguous (uint8 for
      training with ``build_video_transform(..., output="uint8")``: the Trainer normalises on the device).
    - ``"actions"``: (T, A) float32 ((T, frame_skip * A) with ``chunk_actions``).
    - ``"proprio"``: (T, S) float32 (``observation.state``).
    - ``"depth"``: (T, H, W) float32 metres, only if the dataset stores depth for the camera.
    - ``"intrinsics"``: (T, 3, 3), ``"extrinsics"``: (T, 4, 4) world-to-camera float32, only if stored.
    - ``"episode_index"``: int, ``"frame_index"``: int64 (T,), ``"index"``: the item returned.

    Args:
        episodes: restrict to these episode indices (train / held-out splits).
        cache_episodes: per-process number of episodes whose tables and depth stay in memory.
        on_error, max_failures, max_failure_fraction: bad-video policy, shared with
            :class:`~ivnext_world.data.video_clips.VideoClipDataset`. A video whose frame count
            disagrees with the parquet table is a bad item (reason ``frame count mismatch``).
        decoder: ``"auto"`` (decord, falling back per file to PyAV / torchcodec, e.g. for AV1, LeRobot's
            default codec), ``"decord"``, ``"pyav"`` or ``"torchcodec"``.
    """

    def __init__(
        self,
        root: str | Path,
        *,
        window: int = 8,
        stride: int = 1,
        frame_skip: int = 1,
        camera_key: str | None = None,
        episodes: list[int] | None = None,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
        on_error: str = "skip",
        max_failures: int | None = 50,
        max_failure_fraction: float | None = 0.1,
        cache_episodes: int = 4,
        chunk_actions: bool = False,
        decoder: str = "auto",
    ):
        self.decoder = check_decoder(decoder)
        if window < 1 or stride < 1 or frame_skip < 1:
            raise ValueError(f"window, stride and frame_skip must be >= 1, got {window}, {stride}, {frame_skip}")
        self.meta = LeRobotDataset(root)
        if not self.meta.camera_keys:
            raise ValueError(f"{root} has no video features")
        self.camera_key = camera_key or self.meta.camera_keys[0]
        if self.camera_key not in self.meta.camera_keys:
            raise KeyError(f"camera {self.camera_key!r} not in {root} (cameras: {self.meta.camera_keys})")
        episodes = self.meta.episode_indices if episodes is None else list(episodes)
        unknown = sorted(set(episodes) - set(self.meta.episode_indices))
        if unknown:
            raise IndexError(f"{root} has no episodes {unknown}")
        self.window, self.stride, self.frame_skip = window, stride, frame_skip
        self.transform, self.cache_episodes = transform, cache_episodes
        self._chunk = frame_skip if chunk_actions else 1  # env actions per item row
        self.has_depth = self.camera_key in self.meta.depth_keys
        self.videos = dict(zip(episodes, lerobot_items(self.meta, [self.camera_key], episodes)))
        span = (window - 1) * frame_skip + 1
        self.windows: list[tuple[int, int]] = []  # (episode, first row)
        short = []
        for ep in episodes:
            n = self.meta.episode_length(ep)
            short += [ep] if n < span else []
            self.windows += [(ep, s) for s in range(0, n - span + 1, stride)]
        if short:
            warnings.warn(f"{root}: episodes {short} are shorter than one window ({span} steps) and are not used")
        if not self.windows:
            raise ValueError(f"{root}: no episode holds a window of {span} steps")
        self.policy = FailurePolicy(on_error, max_failures, max_failure_fraction)
        self._cache: OrderedDict[int, tuple[dict, np.ndarray | None]] = OrderedDict()

    def __len__(self) -> int:
        return len(self.windows)

    def _episode(self, ep: int) -> tuple[dict, np.ndarray | None]:
        """(parquet columns, depth or None) of episode ``ep``, from a small per-process LRU cache."""
        if ep in self._cache:
            self._cache.move_to_end(ep)
            return self._cache[ep]
        table = self.meta.episode_table(ep)
        depth = None
        if self.has_depth:
            try:
                depth = self.meta.depth(ep, self.camera_key)
            except (OSError, ValueError, KeyError) as err:  # missing, corrupt or mis-shaped npz
                raise BadInput(str(self.meta.depth_path(ep, self.camera_key)), BAD_DEPTH, str(err)[:300]) from err
        self._cache[ep] = (table, depth)
        if len(self._cache) > self.cache_episodes:
            self._cache.popitem(last=False)
        return table, depth

    def _load(self, index: int) -> dict:
        ep, start = self.windows[index]
        rows = start + self.frame_skip * np.arange(self.window)
        table, depth = self._episode(ep)
        video = self.videos[ep]
        reader = open_video(video.path, self.decoder)
        video.frames_in(len(reader))  # the video must hold exactly the parquet's frames
        # Decode at the rows' timestamps; ``video.start`` is the episode's offset in a shared v3.0 file.
        fps = reader.get_avg_fps()
        file_frames = video.start + np.round(table["timestamp"][rows] * fps).astype(np.int64)
        clip = torch.from_numpy(read_frames(reader, video.path, file_frames)).permute(0, 3, 1, 2)  # (T, C, H, W)
        item = {
            "frames": self.transform(clip).contiguous() if self.transform is not None else clip.float().div_(255.0),
            "actions": torch.from_numpy(action_chunks(table[ACTION], rows, self._chunk)),
            "proprio": torch.from_numpy(table[STATE][rows]),
            "episode_index": ep,
            "frame_index": torch.from_numpy(table["frame_index"][rows].astype(np.int64)),
            "index": index,
        }
        if depth is not None:
            item["depth"] = torch.from_numpy(depth[rows])
        for name, col, shape in (("intrinsics", intrinsics_key, (3, 3)), ("extrinsics", extrinsics_key, (4, 4))):
            if col(self.camera_key) in table:
                item[name] = torch.from_numpy(table[col(self.camera_key)][rows].reshape(-1, *shape))
        return item

    def scan(self) -> list[BadItem]:
        """Check each used episode up front: its video opens and holds exactly the parquet's frames, and
        its depth file exists. One :class:`BadItem` per bad episode (``index``: its first window)."""
        first_window: dict[int, int] = {}
        for i, (ep, _) in enumerate(self.windows):
            first_window.setdefault(ep, i)
        bad = []
        for ep, i in first_window.items():
            video = self.videos[ep]
            try:
                video.frames_in(len(open_video(video.path, self.decoder)))
                depth_path = self.meta.depth_path(ep, self.camera_key)
                if self.has_depth and not depth_path.is_file():
                    raise BadInput(str(depth_path), BAD_DEPTH, "no such file")
            except BadInput as err:
                bad.append(BadItem(i, err.path, err.kind, err.detail))
        return bad

    validate = scan
