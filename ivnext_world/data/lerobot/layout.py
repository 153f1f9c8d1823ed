"""The LeRobot dataset layout: path templates, column names, conventions, and small shared helpers.

Two on-disk versions are understood (names checked against huggingface/lerobot's ``datasets/utils.py``
and its v2.1 -> v3.0 converter):

- **v2.1**: one parquet file and one mp4 per camera per episode, metadata as JSON lines
  (``meta/episodes.jsonl``, ``meta/tasks.jsonl``, ``meta/episodes_stats.jsonl``).
- **v3.0**: many episodes per parquet file and per mp4 (episodes are time slices of a shared video),
  metadata as parquet (``meta/tasks.parquet``, ``meta/episodes/chunk-XXX/file-XXX.parquet``).

Our extensions, documented inside ``meta/info.json`` so a reader needs nothing but the folder:

- Camera parameters are ordinary parquet columns ``camera.<name>.intrinsics`` (9 floats, row-major K)
  and ``camera.<name>.extrinsics`` (16 floats, row-major 4x4 world-to-camera), where ``<name>`` is the
  camera key without its ``observation.images.`` prefix (``observation.images.scene`` ->
  ``camera.scene.intrinsics``), declared in ``info["features"]`` with their convention and camera key
  in the feature's ``"info"``. LeRobot treats every feature whose name contains "image" as an image
  (stats of shape (3, 1, 1)) and every ``observation.*`` feature as a policy input, so these names
  contain neither.
- Simulator ground truth (probe targets, never model inputs) is stored as ``ground_truth.<name>``
  columns (``ground_truth.ee_pos``), outside ``observation.*`` for the same reason.
- Datasets written before these names existed (``<camera_key>.intrinsics``, ``observation.ee_pos``)
  still load: :func:`legacy_renames` maps their names to the current ones when they are read.
- Depth is stored losslessly beside the videos, one compressed ``.npz`` per camera per episode at
  ``info["depth_path"]``, described in ``info["depth_features"]``. It is deliberately *not* listed in
  ``info["features"]``: LeRobot's own loader maps every feature to a parquet column or a video, and
  an unknown entry there would stop it from opening our datasets.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa

from ...utils.io import atomic_write_text

V21 = "v2.1"
V30 = "v3.0"
DEFAULT_CHUNKS_SIZE = 1000

V21_DATA_PATH = "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet"
V21_VIDEO_PATH = "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4"
V30_DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
V30_VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
V30_EPISODES_PATH = "meta/episodes/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
V30_TASKS_PATH = "meta/tasks.parquet"
# Our extension, identical in both versions (depth is never concatenated).
DEPTH_PATH = "depth/chunk-{episode_chunk:03d}/{depth_key}/episode_{episode_index:06d}.npz"
DEPTH_NPZ_ARRAY = "depth"

INFO_PATH = "meta/info.json"
EPISODES_JSONL = "meta/episodes.jsonl"
TASKS_JSONL = "meta/tasks.jsonl"
EPISODES_STATS_JSONL = "meta/episodes_stats.jsonl"
STATS_JSON = "meta/stats.json"

ACTION = "action"
STATE = "observation.state"
SUCCESS = "next.success"
DONE = "next.done"
# Columns every episode parquet carries besides action/state/camera parameters/extras.
INDEX_COLUMNS = ("timestamp", "frame_index", "episode_index", "index", "task_index")

INTRINSICS_CONVENTION = (
    "3x3 pinhole matrix K = [[fx, 0, cx], [0, fy, cy], [0, 0, 1]] in pixels, flattened row-major. "
    "OpenCV pixel convention: integer pixel coordinates are pixel centres, (0, 0) is the centre of "
    "the top-left pixel, u grows right and v down; a principal point in the image centre is "
    "((W - 1) / 2, (H - 1) / 2)."
)
EXTRINSICS_CONVENTION = (
    "4x4 world-to-camera transform [[R, t], [0, 0, 0, 1]] flattened row-major: x_cam = R @ x_world + t, "
    "in metres. OpenCV camera axes: +x right, +y down, +z forward (optical axis)."
)
DEPTH_UNIT = "m"
DEPTH_STORAGE = (
    f"numpy .npz (np.savez_compressed) with one array '{DEPTH_NPZ_ARRAY}' of shape (T, H, W) float32: "
    "metric z-depth along the optical axis in metres for each frame of the episode, row t matching "
    "parquet row t; stored losslessly (exact float32 round trip)."
)


def depth_key(camera_key: str) -> str:
    """``observation.images.X`` -> ``observation.depth.X``; any other key -> ``<key>.depth``."""
    prefix = "observation.images."
    if camera_key.startswith(prefix):
        return "observation.depth." + camera_key[len(prefix):]
    return camera_key + ".depth"


CAMERA_PREFIX = "camera."
GROUND_TRUTH_PREFIX = "ground_truth."
# The simulator ground truth our collection stored as ``observation.<name>`` before the rename.
LEGACY_GROUND_TRUTH = ("ee_pos", "goal_pos", "object_pos")


def camera_name(camera_key: str) -> str:
    """``observation.images.scene`` -> ``scene``; else without an ``observation.`` prefix."""
    for prefix in ("observation.images.", "observation."):
        if camera_key.startswith(prefix):
            return camera_key[len(prefix):]
    return camera_key


def intrinsics_key(camera_key: str) -> str:
    """Column of the camera's 3x3 K: ``observation.images.scene`` -> ``camera.scene.intrinsics``."""
    return f"{CAMERA_PREFIX}{camera_name(camera_key)}.intrinsics"


def extrinsics_key(camera_key: str) -> str:
    """Column of the camera's 4x4 world-to-camera: ``camera.<name>.extrinsics``."""
    return f"{CAMERA_PREFIX}{camera_name(camera_key)}.extrinsics"


def ground_truth_key(name: str) -> str:
    """Column of a simulator ground-truth quantity: ``ee_pos`` -> ``ground_truth.ee_pos``."""
    return GROUND_TRUTH_PREFIX + name


def legacy_renames(info: dict) -> dict[str, str]:
    """Old column name -> current name for a dataset written by our writer before the rename.

    Old camera-parameter columns are recognised by their feature ``info["camera"]`` (ours only) and
    their ``<camera_key>.intrinsics`` / ``.extrinsics`` name; old ground truth by the names our
    collection used, only in datasets that carry our ``depth_features`` entry (so an
    ``observation.ee_pos`` policy input in someone else's dataset keeps its name). Names already in
    the current form, or whose new name is taken, are left alone. Empty for current datasets.
    """
    features = info.get("features", {})
    renames: dict[str, str] = {}
    for key, ft in features.items():
        camera = (ft.get("info") or {}).get("camera") if isinstance(ft.get("info"), dict) else None
        if camera is not None:
            for suffix, new in ((".intrinsics", intrinsics_key), (".extrinsics", extrinsics_key)):
                if key == camera + suffix:
                    renames[key] = new(camera)
    if "depth_features" in info:
        for name in LEGACY_GROUND_TRUTH:
            if "observation." + name in features:
                renames["observation." + name] = ground_truth_key(name)
    return {old: new for old, new in renames.items() if old != new and new not in features}


def episode_chunk(episode_index: int, chunks_size: int) -> int:
    return episode_index // chunks_size


# ---------------------------------------------------------------------------------------------
# JSON / JSON lines


def read_json(path: Path) -> dict:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def read_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def write_json(path: Path, data: dict) -> None:
    atomic_write_text(path, json.dumps(data, indent=4, ensure_ascii=False) + "\n")


def write_jsonl(path: Path, rows: list[dict]) -> None:
    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


# ---------------------------------------------------------------------------------------------
# Columns and statistics


def column_to_numpy(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """A parquet column as numpy: scalars -> (N,), list columns -> (N, D) float32 (or their dtype)."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if pa.types.is_list(column.type) or pa.types.is_fixed_size_list(column.type) or pa.types.is_large_list(
        column.type
    ):
        n = len(column)
        flat = column.flatten().to_numpy(zero_copy_only=False)
        values = flat.reshape(n, -1) if n else flat.reshape(0, 0)
        return values.astype(np.float32) if values.dtype.kind == "f" else values
    return column.to_numpy(zero_copy_only=False)


def feature_stats(values: np.ndarray) -> dict[str, list]:
    """LeRobot per-episode stats of a (N, ...) array over axis 0: min/max/mean/std and count."""
    x = np.asarray(values, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    return {
        "min": x.min(0).tolist(),
        "max": x.max(0).tolist(),
        "mean": x.mean(0).tolist(),
        "std": x.std(0).tolist(),
        "count": [int(x.shape[0])],
    }


def aggregate_stats(per_episode: list[dict[str, dict]]) -> dict[str, dict]:
    """Combine per-episode stats into dataset stats (count-weighted mean, pooled variance)."""
    out: dict[str, dict] = {}
    for key in sorted({k for s in per_episode for k in s}):
        parts = [s[key] for s in per_episode if key in s]
        counts = np.array([p["count"][0] for p in parts], dtype=np.float64)
        means = [np.asarray(p["mean"], dtype=np.float64) for p in parts]
        w = counts.reshape(-1, *([1] * means[0].ndim)) / counts.sum()
        mean = sum(wi * m for wi, m in zip(w, means))
        # E[x^2] - E[x]^2, with each episode's E[x^2] = std^2 + mean^2.
        second = sum(wi * (np.asarray(p["std"]) ** 2 + m**2) for wi, p, m in zip(w, parts, means))
        out[key] = {
            "min": np.min([np.asarray(p["min"]) for p in parts], axis=0).tolist(),
            "max": np.max([np.asarray(p["max"]) for p in parts], axis=0).tolist(),
            "mean": mean.tolist(),
            "std": np.sqrt(np.maximum(second - mean**2, 0.0)).tolist(),
            "count": [int(counts.sum())],
        }
    return out
