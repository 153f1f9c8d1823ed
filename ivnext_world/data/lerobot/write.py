"""Write trajectories as a LeRobot v2.1 dataset, safely from several processes at once.

Design (why it is safe to run ``write_episode`` in parallel workers and to kill them at any time):

- ``write_episode`` touches only files of its own episode. Every file is written to a temporary name
  beside its target, fsynced and renamed into place (:mod:`ivnext_world.utils.io`), and a completion
  marker ``meta/_complete/episode_XXXXXX.json`` is written *last*. Before anything else the old marker
  is removed, so an interrupted (re)write is never mistaken for a complete episode.
- ``is_complete`` trusts an episode only if its marker parses and every file it lists is present
  with the recorded size (the parquet: with the recorded number of rows).
- Two columns depend on *other* episodes: ``index`` (global frame index, LeRobot's row id across the
  whole dataset) and ``task_index`` (position in ``meta/tasks.jsonl``). Workers cannot know them, so
  they write -1 there; ``finalize`` (run by one process once the workers are done) orders the complete
  episodes by ``episode_index``, assigns ``index = frames before this episode + frame_index`` and task
  indices by first appearance, atomically rewrites the parquet files whose values differ, and
  rewrites all shared metadata from what is on disk. Calling it again after a resume is idempotent.
"""
from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ...utils.io import atomic_write_bytes
from ..video_io import DEFAULT_CRF, DEFAULT_GOP, encode_mp4_bytes
from . import layout as L

_COMPLETE_DIR = "meta/_complete"


class LeRobotWriter:
    """Writes episodes of one robot/task family into ``root`` (LeRobot v2.1 layout).

    Args:
        root: dataset folder (created if missing).
        fps: control / video frame rate; frame ``t`` has timestamp ``t / fps`` s.
        robot_type: free text stored in ``info.json``.
        camera_keys: video feature keys, e.g. ``["observation.images.scene"]``.
        image_size: (height, width) of every camera's frames, both even (H.264 yuv420p).
        action_dim, state_dim: widths of ``action`` and ``observation.state``.
        action_names, state_names: optional per-dimension names for ``info.json``.
        crf, gop: H.264 quality (lower = better) and keyframe interval.
        chunks_size: episodes per ``chunk-XXX`` folder (LeRobot's default 1000).
    """

    def __init__(
        self,
        root: str | Path,
        fps: int,
        robot_type: str,
        camera_keys: list[str],
        image_size: tuple[int, int],
        action_dim: int,
        state_dim: int,
        action_names: list[str] | None = None,
        state_names: list[str] | None = None,
        *,
        crf: int = DEFAULT_CRF,
        gop: int = DEFAULT_GOP,
        chunks_size: int = L.DEFAULT_CHUNKS_SIZE,
    ):
        h, w = (int(s) for s in image_size)
        if h % 2 or w % 2:
            raise ValueError(f"image_size {image_size} must be even in both dimensions for H.264 yuv420p video")
        for names, dim, what in ((action_names, action_dim, "action_names"), (state_names, state_dim, "state_names")):
            if names is not None and len(names) != dim:
                raise ValueError(f"{what} has {len(names)} entries, expected {dim}")
        names = [L.camera_name(k) for k in camera_keys]
        if len(set(names)) != len(names):
            raise ValueError(f"camera_keys {list(camera_keys)} share a camera name {names}: their "
                             "camera.<name>.intrinsics/extrinsics columns would collide")
        self.root = Path(root)
        self.fps, self.robot_type = int(fps), robot_type
        self.camera_keys = list(camera_keys)
        self.image_size = (h, w)
        self.action_dim, self.state_dim = int(action_dim), int(state_dim)
        self.action_names = list(action_names) if action_names else [f"action_{i}" for i in range(action_dim)]
        self.state_names = list(state_names) if state_names else [f"state_{i}" for i in range(state_dim)]
        self.crf, self.gop, self.chunks_size = crf, gop, chunks_size

    # -- paths --------------------------------------------------------------------------------

    def _rel(self, template: str, episode_index: int, **keys) -> str:
        return template.format(episode_chunk=L.episode_chunk(episode_index, self.chunks_size), episode_index=episode_index, **keys)

    def data_file(self, episode_index: int) -> Path:
        return self.root / self._rel(L.V21_DATA_PATH, episode_index)

    def video_file(self, episode_index: int, camera_key: str) -> Path:
        return self.root / self._rel(L.V21_VIDEO_PATH, episode_index, video_key=camera_key)

    def depth_file(self, episode_index: int, camera_key: str) -> Path:
        return self.root / self._rel(L.DEPTH_PATH, episode_index, depth_key=L.depth_key(camera_key))

    def marker_file(self, episode_index: int) -> Path:
        return self.root / _COMPLETE_DIR / f"episode_{episode_index:06d}.json"

    # -- per episode (any process) ------------------------------------------------------------

    def is_complete(self, episode_index: int) -> bool:
        """True only if the episode's marker exists and all its files are present and whole."""
        return self._read_marker(episode_index) is not None

    def _read_marker(self, episode_index: int) -> dict | None:
        try:
            marker = L.read_json(self.marker_file(episode_index))
            if marker["episode_index"] != episode_index:
                return None
            for rel, size in marker["files"].items():
                if (self.root / rel).stat().st_size != size:
                    return None
            if pq.read_metadata(self.root / marker["data_file"]).num_rows != marker["length"]:
                return None
            return marker
        except (OSError, ValueError, KeyError, TypeError, pa.ArrowException):
            return None

    def write_episode(
        self,
        episode_index: int,
        task: str,
        frames: dict[str, np.ndarray],
        depth: dict[str, np.ndarray],
        intrinsics: dict[str, np.ndarray],
        extrinsics: dict[str, np.ndarray],
        actions: np.ndarray,
        states: np.ndarray,
        success: np.ndarray,
        extra: dict[str, np.ndarray] | None = None,
    ) -> None:
        """Write one episode of ``T`` steps atomically (see the module docstring).

        Args:
            frames: camera key -> (T, H, W, 3) uint8 RGB; every key of ``camera_keys``.
            depth: camera key -> (T, H, W) float32 metric depth in metres (may be empty).
            intrinsics: camera key -> (T, 3, 3) float32 pixel-space K (OpenCV pixel centres).
            extrinsics: camera key -> (T, 4, 4) float32 world-to-camera, OpenCV axes.
            actions: (T, A) float32.  states: (T, S) float32.  success: (T,) bool, per step.
            extra: optional per-step float arrays, key -> (T,) or (T, D), e.g. ``ground_truth.ee_pos``
                (simulator ground truth goes under ``ground_truth.``: LeRobot feeds ``observation.*``
                to policies; no name may contain "image", which LeRobot reserves for images).
        """
        arrays = self._validated(frames, depth, intrinsics, extrinsics, actions, states, success, extra or {})
        t = len(arrays[L.ACTION])
        _remove_stale_temps(self.marker_file(episode_index))
        self.marker_file(episode_index).unlink(missing_ok=True)  # a rewrite is incomplete until the end

        files: dict[str, int] = {}

        def store(path: Path, data: bytes, record: bool = True) -> None:
            _remove_stale_temps(path)
            atomic_write_bytes(path, data)
            if record:
                files[path.relative_to(self.root).as_posix()] = len(data)

        for key in self.camera_keys:
            store(self.video_file(episode_index, key), encode_mp4_bytes(frames[key], self.fps, crf=self.crf, gop=self.gop))
        for key, d in depth.items():
            buf = io.BytesIO()
            np.savez_compressed(buf, **{L.DEPTH_NPZ_ARRAY: np.asarray(d, dtype=np.float32)})
            store(self.depth_file(episode_index, key), buf.getvalue())

        table = self._episode_table(episode_index, t, arrays)
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink)
        # Not size-checked by is_complete: finalize may rewrite index/task_index in place.
        store(self.data_file(episode_index), sink.getvalue().to_pybytes(), record=False)

        marker = {
            "episode_index": episode_index,
            "length": t,
            "task": task,
            "data_file": self.data_file(episode_index).relative_to(self.root).as_posix(),
            "files": files,  # videos and depth: immutable after this call, so sizes are checked
            "columns": {name: list(arr.shape[1:]) for name, arr in arrays.items()},
            "depth_keys": sorted(depth),
            "image_stats": {key: _image_stats(frames[key]) for key in self.camera_keys},
        }
        L.write_json(self.marker_file(episode_index), marker)

    def _validated(self, frames, depth, intrinsics, extrinsics, actions, states, success, extra) -> dict[str, np.ndarray]:
        """Check shapes against the writer's spec; return the per-step parquet columns (T, ...)."""
        h, w = self.image_size
        lengths = {"actions": len(actions), "states": len(states), "success": len(success)}
        per_key = {"frames": frames, "depth": depth, "intrinsics": intrinsics, "extrinsics": extrinsics, "extra": extra}
        for name, d in per_key.items():
            lengths |= {f"{name}[{k}]": len(v) for k, v in d.items()}
        if len(set(lengths.values())) != 1:
            raise ValueError(f"arrays disagree on the number of steps T: {lengths}")
        t = len(actions)

        def check(name: str, arr, shape: tuple, dtype=np.float32) -> np.ndarray:
            arr = np.asarray(arr)
            if arr.shape != (t, *shape):
                raise ValueError(f"{name}: expected shape {(t, *shape)}, got {arr.shape}")
            if dtype == np.uint8 and arr.dtype != np.uint8:
                raise ValueError(f"{name}: expected uint8 RGB, got {arr.dtype}")
            return arr.astype(dtype, copy=False)

        if t == 0:
            raise ValueError("an episode needs at least one step")
        if sorted(frames) != sorted(self.camera_keys):
            raise ValueError(f"frames keys {sorted(frames)} != camera_keys {sorted(self.camera_keys)}")
        for key, arr in frames.items():
            check(f"frames[{key}]", arr, (h, w, 3), np.uint8)
        for name, d in (("depth", depth), ("intrinsics", intrinsics), ("extrinsics", extrinsics)):
            unknown = set(d) - set(self.camera_keys)
            if unknown:
                raise ValueError(f"{name} has keys {sorted(unknown)} that are not camera_keys {self.camera_keys}")
        for key, arr in depth.items():
            check(f"depth[{key}]", arr, (h, w))
        cols = {L.ACTION: check("actions", actions, (self.action_dim,)), L.STATE: check("states", states, (self.state_dim,))}
        cols[L.DONE] = np.arange(t) == t - 1
        cols[L.SUCCESS] = check("success", success, (), bool)
        for key in self.camera_keys:
            if (key in intrinsics or key in extrinsics) and "image" in L.intrinsics_key(key):
                raise ValueError(
                    f"camera {key!r}: its parameter columns would be named {L.intrinsics_key(key)!r}, and LeRobot "
                    "treats any feature whose name contains 'image' as an image; name the camera "
                    "'observation.images.<name>' with a <name> without 'image'")
            if key in intrinsics:
                cols[L.intrinsics_key(key)] = check(f"intrinsics[{key}]", intrinsics[key], (3, 3)).reshape(t, 9)
            if key in extrinsics:
                cols[L.extrinsics_key(key)] = check(f"extrinsics[{key}]", extrinsics[key], (4, 4)).reshape(t, 16)
        for key, arr in extra.items():
            arr = np.asarray(arr, dtype=np.float32)
            if "image" in key:
                raise ValueError(f"extra[{key!r}]: LeRobot treats any feature whose name contains 'image' as an "
                                 "image (stats of shape (3, 1, 1)); choose another name")
            if key in cols or key in L.INDEX_COLUMNS or arr.ndim not in (1, 2) or len(arr) != t:
                raise ValueError(f"extra[{key!r}]: need a new column name and shape (T,) or (T, D) with T={t}, got {arr.shape}")
            cols[key] = arr
        return cols

    def _episode_table(self, episode_index: int, t: int, cols: dict[str, np.ndarray]) -> pa.Table:
        frame_index = np.arange(t, dtype=np.int64)
        columns = {
            L.ACTION: _arrow(cols[L.ACTION]),
            L.STATE: _arrow(cols[L.STATE]),
            "timestamp": pa.array((frame_index / self.fps).astype(np.float32)),
            "frame_index": pa.array(frame_index),
            "episode_index": pa.array(np.full(t, episode_index, dtype=np.int64)),
            "index": pa.array(np.full(t, -1, dtype=np.int64)),  # set by finalize
            "task_index": pa.array(np.full(t, -1, dtype=np.int64)),  # set by finalize
        }
        columns.update({k: _arrow(v) for k, v in cols.items() if k not in columns})
        return pa.table(columns)

    # -- shared metadata (one process, after the workers) --------------------------------------

    def finalize(self) -> dict:
        """Rebuild ``meta/*`` from the complete episodes on disk and fix ``index``/``task_index``.

        Returns the ``info.json`` dict. Incomplete episodes are left out with a warning.
        """
        markers = self._complete_markers()
        indices = sorted(markers)
        expected = set(range(indices[-1] + 1)) if indices else set()
        if set(indices) != expected:
            warnings.warn(f"{self.root}: episodes {sorted(expected - set(indices))} are missing or incomplete; "
                          "meta lists only the complete ones (rewrite the missing episodes and call finalize again)")
        tasks: dict[str, int] = {}
        episodes, stats_rows, offset, schema = [], [], 0, None
        for ep in indices:
            m = markers[ep]
            task_index = tasks.setdefault(m["task"], len(tasks))
            if schema is None:
                schema = (m["columns"], m["depth_keys"], ep)
            elif (m["columns"], m["depth_keys"]) != schema[:2]:
                raise ValueError(f"{self.root}: episode {ep} has columns/depth {m['columns']}, {m['depth_keys']} "
                                 f"but episode {schema[2]} has {schema[0]}, {schema[1]}; one dataset needs one schema")
            table = self._fix_global_columns(self.root / m["data_file"], offset, task_index)
            ep_stats = {name: L.feature_stats(L.column_to_numpy(table[name])) for name in table.column_names}
            ep_stats.update(m["image_stats"])
            episodes.append({"episode_index": ep, "tasks": [m["task"]], "length": m["length"]})
            stats_rows.append({"episode_index": ep, "stats": ep_stats})
            offset += m["length"]
        columns, depth_keys = (schema[0], schema[1]) if schema else ({}, [])
        info = self._info(len(indices), offset, len(tasks), (indices[-1] + 1) if indices else 0, columns, depth_keys)
        L.write_json(self.root / L.INFO_PATH, info)
        L.write_jsonl(self.root / L.EPISODES_JSONL, episodes)
        L.write_jsonl(self.root / L.TASKS_JSONL, [{"task_index": i, "task": s} for s, i in tasks.items()])
        L.write_jsonl(self.root / L.EPISODES_STATS_JSONL, stats_rows)
        return info

    def _complete_markers(self) -> dict[int, dict]:
        markers = {}
        for path in sorted((self.root / _COMPLETE_DIR).glob("episode_*.json")):
            ep = int(path.stem.split("_")[1])
            marker = self._read_marker(ep)
            if marker is not None:
                markers[ep] = marker
        on_disk = {int(p.stem.split("_")[1]) for top in ("data", "videos", "depth") for p in (self.root / top).rglob("episode_*.*")}
        partial = sorted(on_disk - set(markers))
        if partial:
            warnings.warn(f"{self.root}: episodes {partial} have files but no valid completion marker "
                          "(interrupted writes); they are left out until rewritten")
        return markers

    def _fix_global_columns(self, path: Path, offset: int, task_index: int) -> pa.Table:
        table = pq.read_table(path)
        frame_index = table["frame_index"].to_numpy()
        want_index, want_task = frame_index + offset, np.full(len(frame_index), task_index, dtype=np.int64)
        if np.array_equal(table["index"].to_numpy(), want_index) and np.array_equal(table["task_index"].to_numpy(), want_task):
            return table
        table = table.set_column(table.schema.get_field_index("index"), "index", pa.array(want_index))
        table = table.set_column(table.schema.get_field_index("task_index"), "task_index", pa.array(want_task))
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink)
        atomic_write_bytes(path, sink.getvalue().to_pybytes())
        return table

    def _info(self, n_episodes: int, n_frames: int, n_tasks: int, n_slots: int, columns: dict, depth_keys: list) -> dict:
        h, w = self.image_size
        features: dict[str, dict] = {
            L.ACTION: {"dtype": "float32", "shape": [self.action_dim], "names": self.action_names},
            L.STATE: {"dtype": "float32", "shape": [self.state_dim], "names": self.state_names},
        }
        for key in self.camera_keys:
            features[key] = {
                "dtype": "video", "shape": [h, w, 3], "names": ["height", "width", "channels"],
                "info": {"video.height": h, "video.width": w, "video.codec": "h264", "video.pix_fmt": "yuv420p",
                         "video.is_depth_map": False, "video.fps": self.fps, "video.channels": 3, "has_audio": False,
                         "video.crf": self.crf, "video.g": self.gop},
            }
        features["timestamp"] = {"dtype": "float32", "shape": [1], "names": None}
        for name in ("frame_index", "episode_index", "index", "task_index"):
            features[name] = {"dtype": "int64", "shape": [1], "names": None}
        for name in (L.DONE, L.SUCCESS):
            features[name] = {"dtype": "bool", "shape": [1], "names": None}
        for key in self.camera_keys:
            for col, conv, shape in ((L.intrinsics_key(key), L.INTRINSICS_CONVENTION, [3, 3]),
                                     (L.extrinsics_key(key), L.EXTRINSICS_CONVENTION, [4, 4])):
                if col in columns:
                    features[col] = {"dtype": "float32", "shape": [int(np.prod(shape))], "names": None,
                                     "info": {"camera": key, "matrix_shape": shape, "convention": conv}}
        for col, shape in columns.items():
            if col not in features:
                features[col] = {"dtype": "float32", "shape": shape or [1], "names": None}
        depth_features = {
            L.depth_key(key): {"dtype": "float32", "shape": [h, w], "names": ["height", "width"], "camera": key,
                               "info": {"unit": L.DEPTH_UNIT, "storage": L.DEPTH_STORAGE}}
            for key in depth_keys
        }
        return {
            "codebase_version": L.V21,
            "robot_type": self.robot_type,
            "total_episodes": n_episodes,
            "total_frames": n_frames,
            "total_tasks": n_tasks,
            "total_videos": n_episodes * len(self.camera_keys),
            "total_chunks": -(-n_slots // self.chunks_size),
            "chunks_size": self.chunks_size,
            "fps": self.fps,
            "splits": {"train": f"0:{n_episodes}"},
            "data_path": L.V21_DATA_PATH,
            "video_path": L.V21_VIDEO_PATH,
            "depth_path": L.DEPTH_PATH,
            "features": features,
            "depth_features": depth_features,
        }


def _remove_stale_temps(path: Path) -> None:
    """Delete temporaries of ``path`` left by a killed earlier write (``utils.io`` names them ``.<name>.*.tmp``)."""
    if path.parent.is_dir():
        for stale in path.parent.glob(f".{path.name}.*.tmp"):
            stale.unlink(missing_ok=True)


def _arrow(values: np.ndarray) -> pa.Array:
    """(T,) -> scalar column; (T, D) -> fixed-size list column of D values (LeRobot's vector features)."""
    if values.ndim == 1:
        return pa.array(values)
    return pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), values.shape[1])


def _image_stats(frames: np.ndarray, max_frames: int = 64, max_side: int = 64) -> dict[str, list]:
    """LeRobot-style per-channel stats in [0, 1], shape (3, 1, 1), from a frame and pixel subsample."""
    t, h, w, _ = frames.shape
    sub = frames[np.linspace(0, t - 1, min(t, max_frames)).astype(int)]
    sub = sub[:, :: max(1, h // max_side), :: max(1, w // max_side)]
    s = L.feature_stats(sub.reshape(-1, 3) / 255.0)
    return {k: (v if k == "count" else [[[c]] for c in v]) for k, v in s.items()} | {"count": [len(sub)]}
