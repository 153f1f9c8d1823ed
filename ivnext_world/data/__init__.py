"""Data: the LeRobot trajectory format, video clip and trajectory datasets, clip transforms.

- :mod:`.lerobot`: write LeRobot v2.1 datasets from parallel workers, read v2.1 and v3.0, convert.
- :class:`VideoClipDataset`: clips from manifests or LeRobot folders, for video pretraining.
- :class:`TrajectoryDataset`: aligned (frames, actions, proprio, depth, camera) windows.
- :mod:`.failures`: the one bad-input policy both datasets use.
"""
from importlib import import_module

from .failures import BadItem, FailurePolicy, VideoLoadError, VideoLoadWarning
from .lerobot import LeRobotDataset, LeRobotWriter, convert_v21_to_v30
from .manifest import VideoItem, read_manifest
from .video_io import concat_mp4, encode_mp4

# torch-based names load on first use, so processes that only write datasets (spawned collection
# workers) do not pay torch's ~1.3 s import.
_LAZY = {
    "TrajectoryDataset": ".trajectory",
    "VideoClipDataset": ".video_clips",
    "build_video_transform": ".transforms",
    "IMAGENET_MEAN": ".transforms",
    "IMAGENET_STD": ".transforms",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "LeRobotWriter",
    "LeRobotDataset",
    "convert_v21_to_v30",
    "VideoClipDataset",
    "TrajectoryDataset",
    "build_video_transform",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "VideoLoadError",
    "VideoLoadWarning",
    "BadItem",
    "FailurePolicy",
    "VideoItem",
    "read_manifest",
    "encode_mp4",
    "concat_mp4",
]
