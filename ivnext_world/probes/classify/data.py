"""Labelled videos for the classification probe: sources, class lists, label checks, multi-view clips.

Sources are what the toolkit's loaders read: a Kinetics / SSv2-style manifest (``.csv`` rows
``path,label`` or ``.jsonl`` objects with ``path`` and ``label``; labels are class names or integer
indices) or a LeRobot folder whose episodes carry a label column (one label per episode, read from
its first row; ``task_index`` names classes by the dataset's task strings).

Bad labels are configuration errors and stop the run before any training, naming the row or the class
(:class:`LabelError`): a label missing from the class list, a row without a label, a class with no
training clip. Bad *videos* (missing, truncated, undecodable files, malformed rows) follow the
loaders' skip-and-count policy (:class:`~ivnext_world.data.FailurePolicy`): skipped with a warning,
counted, and the run stops only past the policy's limits.

:class:`ClipViews` decodes each video once and cuts its views: at evaluation ``clips x crops`` fixed
views (clip starts evenly spread over the video, crops evenly spread along the long side after the
short side is resized to the probe's resolution, as V-JEPA 2's ``EvalVideoTransform``); in training
``train_views`` random views (random start, random resized crop, optional flip).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from ...data.failures import BAD_ROW, TOO_SHORT, BadInput, FailurePolicy, PolicyDataset
from ...data.manifest import VideoItem, lerobot_items, read_manifest
from ...data.sampling import frames_needed
from ...data.video_io import open_video, read_frames


class LabelError(ValueError):
    """A label problem that makes the probe meaningless; names the row or the class."""


# ------------------------------------------------------------------------------ class lists
def read_classes(path: str | Path) -> list[str]:
    """A class-names file: one name per line, in index order (blank lines and ``#`` comments skipped)."""
    names = [ln.strip() for ln in Path(path).read_text(encoding="utf-8").splitlines()]
    names = [n for n in names if n and not n.startswith("#")]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise LabelError(f"{path}: class names listed twice: {dup}")
    if len(names) < 2:
        raise LabelError(f"{path}: a class list needs at least 2 classes, got {names}")
    return names


@dataclass
class Split:
    """One split's videos: ``items[i].label`` is an index into the run's class list (-1: unlabelled)."""

    name: str
    source: str
    items: list[VideoItem]


def _raw_labels(source: str, label_column: str, camera_key: str | None, episodes: Sequence[int] | None):
    """``(items, raw_labels, where)``: raw labels are class names (str) or integers, None when missing."""
    src = Path(source)
    if src.is_dir():
        from ...data.lerobot import LeRobotDataset

        ds = LeRobotDataset(src)
        cams = [camera_key] if camera_key else ds.camera_keys[:1]
        eps = list(episodes) if episodes is not None else ds.episode_indices
        items = lerobot_items(ds, cams, eps)
        raw = []
        for ep in eps:
            table = ds.episode_table(ep)
            if label_column not in table:
                raise LabelError(f"{src}: episode {ep} has no label column {label_column!r} (columns: {sorted(table)})")
            # task_index: the dataset's own task strings are the class names
            raw.append(ds.task(ep) if label_column == "task_index" else int(round(float(table[label_column][0]))))
        return items, raw
    if not src.is_file():
        raise FileNotFoundError(f"labelled video source {src} is neither a manifest file nor a LeRobot folder")
    items, names = read_manifest(src)
    if episodes is not None:
        raise ValueError(f"{src}: episode lists apply to LeRobot folders only, not to manifests")
    raw = [None if it.label < 0 else (names[it.label] if names is not None else int(it.label)) for it in items]
    return items, raw


def load_splits(
    sources: dict[str, str | None], classes_file: str | None = None, label_column: str = "label",
    camera_key: str | None = None, episodes: dict[str, Sequence[int] | None] | None = None,
) -> tuple[dict[str, Split], list[str]]:
    """Read every split (``train`` required), resolve labels against one class list and check them.

    The class list is ``classes_file`` when given; otherwise the sorted class names of the training
    split (integer labels: ``0 .. max``). Raises :class:`LabelError` for a label missing from the
    class list (naming the row), a labelled row without a label, and a class with no training clip.
    """
    if not sources.get("train"):
        raise ValueError("the probe needs a training split (data.train)")
    episodes = episodes or {}
    raw = {name: _raw_labels(src, label_column, camera_key, episodes.get(name)) for name, src in sources.items() if src}
    if classes_file:
        classes = read_classes(classes_file)
    else:
        train_raw = [r for r, it in zip(raw["train"][1], raw["train"][0]) if r is not None and it.error is None]
        if train_raw and all(isinstance(r, int) for r in train_raw):
            classes = [str(i) for i in range(max(train_raw) + 1)]
        else:
            classes = sorted({str(r) for r in train_raw})
    index = {name: i for i, name in enumerate(classes)}
    splits = {}
    for name, (items, labels) in raw.items():
        resolved = []
        for it, lab in zip(items, labels):
            if it.error is not None:  # malformed row: the loaders' skip-and-count policy handles it
                resolved.append(it)
                continue
            if lab is None:
                raise LabelError(f"{it.where}: {name} row has no label (every clip of a classification split needs one)")
            # integers index the class list; names are looked up in it
            idx = (lab if 0 <= lab < len(classes) else None) if isinstance(lab, int) else index.get(str(lab))
            if idx is None:
                shown = f"{classes[:8]}{' ...' if len(classes) > 8 else ''}"
                raise LabelError(f"{it.where}: label {lab!r} of the {name} split is not in the class list "
                                 f"({len(classes)} classes{' from ' + str(classes_file) if classes_file else ''}: {shown})")
            resolved.append(VideoItem(it.path, label=idx, start=it.start, length=it.length, exact=it.exact, where=it.where))
        splits[name] = Split(name, str(sources[name]), resolved)
    counts = np.bincount([it.label for it in splits["train"].items if it.error is None], minlength=len(classes))
    empty = [classes[i] for i in np.flatnonzero(counts == 0)]
    if empty:
        raise LabelError(f"class{'es' if len(empty) > 1 else ''} {empty} ha{'ve' if len(empty) > 1 else 's'} no training clips "
                         f"in {sources['train']}: a probe cannot learn {'them' if len(empty) > 1 else 'it'}")
    return splits, classes


# ------------------------------------------------------------------------------ clip views
def clip_starts(n: int, span: int, clips: int) -> list[int]:
    """``clips`` start frames of windows of ``span`` frames spread evenly over a video of ``n`` frames
    (one clip: centred). A video shorter than ``span`` starts every clip at 0 (then padded)."""
    slack = max(0, n - span)
    if clips == 1:
        return [slack // 2]
    return [int(round(i * slack / (clips - 1))) for i in range(clips)]


def crop_offsets(long_side: int, size: int, crops: int) -> list[int]:
    """``crops`` offsets of a ``size`` window along the long side, first/last touching the borders."""
    slack = max(0, long_side - size)
    if crops == 1:
        return [slack // 2]
    return [int(round(i * slack / (crops - 1))) for i in range(crops)]


class ClipViews(PolicyDataset, Dataset):
    """Views of labelled videos: item ``i`` is ``{"video": (V, C, T, S, S) float32 normalised,
    "label": int, "index": int, "requested": int}``.

    Args:
        num_frames, frame_step: ``num_frames`` frames ``frame_step`` apart per clip (dense sampling).
        resolution: side ``S`` of the square views.
        mean, std: the backbone's per-channel normalisation.
        views: ``"eval"`` (``clips x crops`` fixed views, clip-major) or ``"train"`` (``train_views``
            random views drawn from torch's global RNG, which the caller seeds).
        short_clip: ``"pad"`` (repeat the last frame, V-JEPA 2's loaders do the same) or ``"error"``
            (a bad item, reason ``clip too short``).

    ``index`` differs from ``requested`` when the failure policy replaced a bad video by the next
    good one; feature extraction drops such items instead (a replaced video would be counted twice).
    """

    def __init__(
        self, items: list[VideoItem], *, num_frames: int, frame_step: int, resolution: int, mean, std,
        views: str = "eval", clips: int = 1, crops: int = 1, train_views: int = 1, train_scale=(0.5, 1.0),
        flip: bool = False, short_clip: str = "pad", on_error: str = "skip", max_failures: int | None = 50,
        max_failure_fraction: float | None = 0.1,
    ):
        if views not in ("eval", "train"):
            raise ValueError(f"views must be 'eval' or 'train', got {views!r}")
        if min(num_frames, frame_step, resolution, clips, crops, train_views) < 1:
            raise ValueError("num_frames, frame_step, resolution, clips, crops and train_views must all be >= 1")
        if short_clip not in ("pad", "error"):
            raise ValueError(f"short_clip must be 'pad' or 'error', got {short_clip!r}")
        self.items = items
        self.num_frames, self.frame_step, self.size = num_frames, frame_step, resolution
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
        self.mode, self.clips, self.crops, self.train_views = views, clips, crops, train_views
        self.train_scale, self.flip, self.short_clip = tuple(train_scale), flip, short_clip
        self.policy = FailurePolicy(on_error, max_failures, max_failure_fraction)

    @property
    def num_views(self) -> int:
        return self.clips * self.crops if self.mode == "eval" else self.train_views

    @property
    def labels(self) -> list[int]:
        return [it.label for it in self.items]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        return {**super().__getitem__(index), "requested": index}

    def _load(self, index: int) -> dict:
        item = self.items[index]
        if item.error is not None:
            raise BadInput(item.where, BAD_ROW, item.error)
        reader = open_video(item.path)
        n = item.frames_in(len(reader))
        span = frames_needed(self.num_frames, "dense", self.frame_step)
        if n < span and self.short_clip == "error":
            raise BadInput(str(item.path), TOO_SHORT, f"{n} frames, needs {span} ({self.num_frames} frames, step {self.frame_step})")
        offsets = self.frame_step * np.arange(self.num_frames)
        if self.mode == "eval":
            starts = clip_starts(n, span, self.clips)
        else:
            starts = [int(torch.randint(0, max(0, n - span) + 1, ()).item()) for _ in range(self.train_views)]
        local = [np.minimum(s + offsets, n - 1) for s in starts]  # (clips, T) frame indices in the clip
        wanted = np.unique(np.concatenate(local))
        frames = torch.from_numpy(read_frames(reader, item.path, item.start + wanted))  # (U, H, W, 3) uint8
        pos = {int(f): i for i, f in enumerate(wanted)}
        views = []
        for c, idx in enumerate(local):
            clip = frames[[pos[int(f)] for f in idx]].permute(0, 3, 1, 2).float().div_(255.0)  # (T, 3, H, W)
            if self.mode == "eval":
                views += [self._eval_crop(clip, j) for j in range(self.crops)]
            else:
                views.append(self._train_crop(clip))
        video = torch.stack(views)  # (V, T, 3, S, S)
        video = (video - self.mean) / self.std
        return {"video": video.permute(0, 2, 1, 3, 4).contiguous(), "label": item.label, "index": index}  # (V, C, T, S, S)

    def _resize_short(self, clip: torch.Tensor) -> torch.Tensor:
        h, w = clip.shape[-2:]
        scale = self.size / min(h, w)
        new = (max(self.size, round(h * scale)), max(self.size, round(w * scale)))
        if new == (h, w):
            return clip
        return F.interpolate(clip, size=new, mode="bilinear", align_corners=False, antialias=True)

    def _eval_crop(self, clip: torch.Tensor, j: int) -> torch.Tensor:
        clip = self._resize_short(clip)
        h, w = clip.shape[-2:]
        s = self.size
        if h >= w:
            top, left = crop_offsets(h, s, self.crops)[j], (w - s) // 2
        else:
            top, left = (h - s) // 2, crop_offsets(w, s, self.crops)[j]
        return clip[..., top:top + s, left:left + s]

    def _train_crop(self, clip: torch.Tensor) -> torch.Tensor:
        from torchvision.transforms import v2

        crop = v2.RandomResizedCrop(self.size, scale=self.train_scale, ratio=(3 / 4, 4 / 3), antialias=True)
        out = crop(clip)  # one crop for every frame of the clip
        if self.flip and bool(torch.rand(()) < 0.5):
            out = out.flip(-1)
        return out
